#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for development and tests.
#
#   deploy/pg.sh start [DIR]   start (initialising on first use) and print its URL
#   deploy/pg.sh stop  [DIR]   stop it cleanly (fast shutdown)
#   deploy/pg.sh url   [DIR]   print the URL of a cluster started earlier
#   deploy/pg.sh status [DIR]  exit 0 when it runs
#   deploy/pg.sh wipe  [DIR]   stop it and delete its files
#
# DIR defaults to .data/pg under the repository. The cluster listens on a Unix
# socket in DIR/run and on a free loopback port (kept in DIR/port so a restart
# reuses it). Authentication is "trust", so it must only ever listen on
# loopback: it is for a developer's machine and CI, never for production.
# Debian's postgresql is installed with apt-get when no server is found.
# VARSEL_PG_OPTIONS adds server settings when the cluster starts (e.g.
# "-c shared_buffers=4GB" for a full-size load run, docs/performance.md).
# PostgreSQL refuses to run as root, so as root the cluster belongs to the
# "postgres" system user (created by Debian's package, or here if missing).
set -euo pipefail

cmd=${1:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${2:-${VARSEL_PG_DIR:-$root/.data/pg}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
db=varsel

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ] || [ ! -x "$d/pg_ctl" ]; then
    [ "$(id -u)" -eq 0 ] || die "no PostgreSQL server found; install it with: sudo apt-get install -y postgresql"
    echo "pg.sh: installing Debian's postgresql (once)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq postgresql >&2 || die "apt-get install postgresql failed"
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin found"
  fi
  echo "$d"
}

# as_owner runs a command as the cluster's owner: ourselves, or "postgres" as root.
owner=
as_owner() {
  if [ -n "$owner" ]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

setup_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    owner=postgres
    id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
    chown "$owner" "$dir"
    # The owner must be able to reach DIR through its parents.
    local p=$dir
    while [ "$p" != / ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
}

# shellcheck source=deploy/lib.sh
. "$root/deploy/lib.sh"

url() { echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")/$db?sslmode=disable"; }

running() { [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

start() {
  exec 9>"$dir/lock"
  flock 9
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir/data"
    mkdir -p "$dir/data" "$dir/run"
    [ -n "$owner" ] && chown -R "$owner" "$dir/data" "$dir/run"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  [ -f "$dir/port" ] || free_port >"$dir/port"
  if ! running; then
    local port; port=$(cat "$dir/port")
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      port=$(free_port); echo "$port" >"$dir/port"
    fi
    mkdir -p "$dir/run"; [ -n "$owner" ] && chown "$owner" "$dir/run"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/run -c max_connections=300 -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on ${VARSEL_PG_OPTIONS:-}" \
      start </dev/null >/dev/null 9>&- || { tail -n 20 "$dir/server.log" >&2; die "pg_ctl start failed"; }
  fi
  if ! as_owner "$bin/psql" -h "$dir/run" -p "$(cat "$dir/port")" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    as_owner "$bin/createdb" -h "$dir/run" -p "$(cat "$dir/port")" -U postgres "$db"
  fi
  url
}

stop() {
  if running; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  fi
}

case "$cmd" in
  start) bin=$(find_bin); setup_owner; start ;;
  stop) bin=$(find_bin); setup_owner; stop ;;
  url) [ -f "$dir/port" ] || die "no cluster in $dir: run deploy/pg.sh start"; url ;;
  status) bin=$(find_bin); setup_owner; running ;;
  wipe) bin=$(find_bin); setup_owner; stop; rm -rf "$dir" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
