#!/usr/bin/env bash
# Throwaway HashiCorp Vault dev server for development and tests.
#
#   deploy/vault/dev.sh start  [DIR]  start it (building Vault once), set it up, print its address
#   deploy/vault/dev.sh stop   [DIR]  stop it
#   deploy/vault/dev.sh env    [DIR]  print "export VAULT_ADDR=..." and "export VAULT_TOKEN=..."
#                                     lines, the token being the broker's varsel token
#   deploy/vault/dev.sh status [DIR]  exit 0 when it runs
#
# DIR defaults to .data/vault under the repository and holds vault.log, pid,
# addr (http://127.0.0.1:PORT), root-token and varsel-token (a renewable 1h
# token with only the "varsel" policy, see setup.sh; `env` mints a new one
# when it has expired). The server listens on a free loopback port only: the
# binary (deploy/vault/build.sh) is an old, unpatched Vault for tests, never
# for production. Set VARSEL_VAULT_BIN to use another vault binary.
#
# A dev server keeps everything in memory: nothing survives a stop or a
# restart. Each start is a new, empty Vault with a new root token, a new
# transit key varsel-checkpoint and a new subject key, so checkpoint
# signatures and subject refs from an earlier run no longer match.
set -euo pipefail

cmd=${1:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
umask 077
dir=${2:-${VARSEL_VAULT_DIR:-$root/.data/vault}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

die() { echo "dev.sh: $*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq curl >&2; } || die "curl not found (Debian package curl)"

# shellcheck source=deploy/lib.sh
. "$root/deploy/lib.sh"

# running: the pid file names a live dev server (not a recycled pid).
running() {
  local pid
  [ -f "$dir/pid" ] || return 1
  pid=$(cat "$dir/pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- ' server -dev '
}

health() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/v1/sys/health" 2>/dev/null || true; }

# token_ok: varsel-token exists and Vault still accepts it.
token_ok() {
  local c
  [ -s "$dir/varsel-token" ] || return 1
  c=$(printf 'X-Vault-Token: %s\n' "$(cat "$dir/varsel-token")" \
    | curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H @- "$(cat "$dir/addr")/v1/auth/token/lookup-self" 2>/dev/null) || return 1
  [ "$c" = 200 ]
}

# ensure_token: run setup.sh (idempotent) unless the varsel token still works.
ensure_token() {
  token_ok && return 0
  VAULT_ADDR=$(cat "$dir/addr") VAULT_TOKEN=$(cat "$dir/root-token") \
    "$here/setup.sh" >"$dir/varsel-token.tmp" </dev/null 9>&- || { rm -f "$dir/varsel-token.tmp"; die "setup.sh failed"; }
  mv -f "$dir/varsel-token.tmp" "$dir/varsel-token"
}

start() {
  local vault token port pid addr attempt i
  exec 9>"$dir/lock"
  flock 9
  if ! running; then
    rm -f "$dir/pid" "$dir/addr" "$dir/root-token" "$dir/varsel-token"
    vault=${VARSEL_VAULT_BIN:-}
    [ -n "$vault" ] || vault=$("$here/build.sh" </dev/null 9>&-) || die "build.sh failed"
    [ -x "$vault" ] || die "not an executable: $vault"
    token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    [ "${#token}" -eq 32 ] || die "cannot read /dev/urandom"
    for attempt in 1 2 3; do
      port=$(free_port)
      addr=http://127.0.0.1:$port
      echo "=== $(date -u +%FT%TZ) dev.sh: starting $vault on 127.0.0.1:$port" >>"$dir/vault.log"
      # In the background, in its own session, stdin from /dev/null, output
      # to the log and every other inherited fd closed: the lock fd 9 (a
      # daemon holding it would keep the lock forever) and whatever the
      # caller left open (a pipe of a CI runner would never see EOF). The
      # root token goes in through the environment rather than
      # -dev-root-token-id, so ps does not show it.
      (
        for fd in /proc/"$BASHPID"/fd/*; do
          fd=${fd##*/}
          [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec env -u VAULT_ADDR -u VAULT_TOKEN VAULT_DEV_ROOT_TOKEN_ID="$token" \
          setsid "$vault" server -dev -dev-no-store-token -dev-listen-address="127.0.0.1:$port"
      ) </dev/null >>"$dir/vault.log" 2>&1 &
      pid=$!
      for i in $(seq 1 240); do
        [ "$(health "$addr")" = 200 ] && break
        kill -0 "$pid" 2>/dev/null || break
        [ "$i" -lt 240 ] || { kill "$pid" 2>/dev/null || true; tail -n 20 "$dir/vault.log" >&2; die "Vault did not answer on $addr within 60s"; }
        sleep 0.25
      done
      kill -0 "$pid" 2>/dev/null && break
      # It exited: most likely the port was taken meanwhile; try another.
      [ "$attempt" -lt 3 ] || { tail -n 20 "$dir/vault.log" >&2; die "Vault exited at start (see $dir/vault.log)"; }
    done
    echo "$pid" >"$dir/pid"
    echo "$addr" >"$dir/addr"
    echo "$token" >"$dir/root-token"
    echo "dev.sh: Vault dev server (in memory) pid $pid on $addr" >&2
  fi
  ensure_token
  cat "$dir/addr"
}

stop() {
  local pid i
  exec 9>"$dir/lock"
  flock 9
  if running; then
    pid=$(cat "$dir/pid")
    kill "$pid"
    for i in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      [ "$i" -lt 60 ] || kill -KILL "$pid" 2>/dev/null || true
      sleep 0.25
    done
  fi
  # Its state died with it.
  rm -f "$dir/pid" "$dir/addr" "$dir/root-token" "$dir/varsel-token" "$dir/varsel-token.tmp"
}

env_lines() {
  exec 9>"$dir/lock"
  flock 9
  running || die "no Vault dev server runs for $dir: run deploy/vault/dev.sh start"
  ensure_token
  printf 'export VAULT_ADDR=%q\n' "$(cat "$dir/addr")"
  printf 'export VAULT_TOKEN=%q\n' "$(cat "$dir/varsel-token")"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  status) running ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
