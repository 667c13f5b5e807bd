#!/usr/bin/env bash
# Throwaway OpenID provider for development and tests (never production).
#
#   deploy/oidc/oidc.sh start  [DIR]  start it (installing what is missing), print its issuer URL
#   deploy/oidc/oidc.sh stop   [DIR]  stop it
#   deploy/oidc/oidc.sh url    [DIR]  print the issuer URL of a provider started earlier
#   deploy/oidc/oidc.sh env    [DIR]  print export lines: VARSEL_OIDC_ISSUER, and the
#                                     first client's VARSEL_OIDC_CLIENT_ID and _SECRET
#   deploy/oidc/oidc.sh status [DIR]  exit 0 when it runs
#
# DIR defaults to .data/oidc under the repository and holds oidc.log, pid,
# port, issuer (http://127.0.0.1:PORT), jwks.json (the signing key, made on
# first start and reused) and config.json. The configuration (clients and
# users) is VARSEL_OIDC_CONFIG, or else DIR/config.json, written from
# deploy/oidc/default-config.json when missing; a start with a changed
# configuration restarts a running provider. The port is VARSEL_OIDC_PORT,
# or else a free loopback port kept in DIR/port so a restart keeps the issuer.
#
# It is oidc-provider (Node.js, pinned by package-lock.json, installed with
# npm ci into deploy/oidc/node_modules when missing or stale); Debian's nodejs
# and npm are installed with apt-get when node is missing. Users log in with
# plain-text passwords from the config, sessions live in memory: for a
# developer's machine and tests only, listening on loopback only.
set -euo pipefail

cmd=${1:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
umask 077
dir=${2:-${VARSEL_OIDC_DIR:-$root/.data/oidc}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

die() { echo "oidc.sh: $*" >&2; exit 1; }

# shellcheck source=deploy/lib.sh
. "$root/deploy/lib.sh"

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "$1 not found; install it with: sudo apt-get install -y $*"
  echo "oidc.sh: installing Debian's $* (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

need_tools() {
  command -v curl >/dev/null 2>&1 || apt_install curl
  command -v node >/dev/null 2>&1 || apt_install nodejs npm
  command -v npm >/dev/null 2>&1 || apt_install npm
  # oidc-provider 9 needs crypto.hash and the global WebCrypto (Node 20.12
  # and later; 22 LTS is what its authors test).
  node -e 'process.exit(typeof require("node:crypto").hash === "function" && globalThis.crypto?.subtle ? 0 : 1)' 2>/dev/null \
    || die "node $(node --version) is too old for oidc-provider 9: Node.js 20.12 or later is needed"
}

# ensure_modules runs npm ci when node_modules is missing or was installed
# from another package-lock.json (or another node). Serialised, since test
# packages may start providers at the same time.
ensure_modules() {
  local want stamp=$here/node_modules/.varsel-stamp
  want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1) $(node --version)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  mkdir -p "$root/.data"
  (
    flock 8
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
    echo "oidc.sh: npm ci in deploy/oidc (once)" >&2
    (cd "$here" && umask 022 && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
      || die "npm ci failed in $here"
    echo "$want" >"$stamp"
  ) 8>"$root/.data/oidc-npm.lock"
}

config_file() {
  if [ -n "${VARSEL_OIDC_CONFIG:-}" ]; then
    [ -f "$VARSEL_OIDC_CONFIG" ] || die "VARSEL_OIDC_CONFIG names no file: $VARSEL_OIDC_CONFIG"
    (cd "$(dirname "$VARSEL_OIDC_CONFIG")" && echo "$(pwd)/$(basename "$VARSEL_OIDC_CONFIG")")
  else
    [ -f "$dir/config.json" ] || cp "$here/default-config.json" "$dir/config.json"
    echo "$dir/config.json"
  fi
}

# alive: the process exists and is not a zombie (the daemon's parent is
# init, which may take a while to reap it).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# running: the pid file names a live provider of this DIR (not a recycled pid).
running() {
  local pid
  [ -f "$dir/pid" ] || return 1
  pid=$(cat "$dir/pid")
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "server.js --dir $dir "
}

discovery() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/.well-known/openid-configuration" 2>/dev/null || true; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_locked() {
  local pid i
  if running; then
    pid=$(cat "$dir/pid")
    kill "$pid"
    for i in $(seq 1 80); do
      alive "$pid" || break
      [ "$i" -lt 80 ] || kill -KILL "$pid" 2>/dev/null || true
      sleep 0.25
    done
  fi
  rm -f "$dir/pid" "$dir/issuer" "$dir/config.used"
}

start() {
  local config used port pid issuer attempt i off
  need_tools
  ensure_modules
  exec 9>"$dir/lock"
  flock 9
  config=$(config_file)
  used="$config $(sha256sum "$config" | cut -d' ' -f1)"
  if running && [ "$(cat "$dir/config.used" 2>/dev/null)" != "$used" ]; then
    echo "oidc.sh: configuration changed, restarting" >&2
    stop_locked
  fi
  if ! running; then
    rm -f "$dir/pid" "$dir/issuer" "$dir/config.used"
    for attempt in 1 2 3; do
      if [ -n "${VARSEL_OIDC_PORT:-}" ]; then
        port=$VARSEL_OIDC_PORT
        port_busy "$port" && die "port $port (VARSEL_OIDC_PORT) is taken"
      else
        [ -s "$dir/port" ] || free_port >"$dir/port"
        port=$(cat "$dir/port")
        if port_busy "$port"; then port=$(free_port); fi
      fi
      echo "$port" >"$dir/port"
      issuer=http://127.0.0.1:$port
      off=$(stat -c %s "$dir/oidc.log" 2>/dev/null || echo 0)
      echo "=== $(date -u +%FT%TZ) oidc.sh: starting on 127.0.0.1:$port with $config" >>"$dir/oidc.log"
      # In the background, in its own session, stdin from /dev/null, output
      # to the log and every other inherited fd closed (the lock fd 9, and
      # a caller's pipe, which would otherwise never see EOF).
      (
        for fd in /proc/"$BASHPID"/fd/*; do
          fd=${fd##*/}
          [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        cd "$here"
        exec setsid node server.js --dir "$dir" --config "$config" --port "$port"
      ) </dev/null >>"$dir/oidc.log" 2>&1 &
      pid=$!
      for i in $(seq 1 240); do
        [ "$(discovery "$issuer")" = 200 ] && break
        alive "$pid" || break
        [ "$i" -lt 240 ] || { kill "$pid" 2>/dev/null || true; tail -c +"$((off + 1))" "$dir/oidc.log" | tail -n 20 >&2; die "no discovery answer on $issuer within 60s"; }
        sleep 0.25
      done
      alive "$pid" && break
      # It exited: a bad config (say so), or the port was taken meanwhile.
      if [ -n "${VARSEL_OIDC_PORT:-}" ] || ! tail -c +"$((off + 1))" "$dir/oidc.log" | grep -q EADDRINUSE || [ "$attempt" -eq 3 ]; then
        tail -c +"$((off + 1))" "$dir/oidc.log" | tail -n 20 >&2
        die "the provider exited at start (see $dir/oidc.log)"
      fi
      rm -f "$dir/port"
    done
    echo "$pid" >"$dir/pid"
    echo "$issuer" >"$dir/issuer"
    echo "$used" >"$dir/config.used"
    echo "oidc.sh: dev OpenID provider pid $pid on $issuer (dev and tests only)" >&2
  fi
  cat "$dir/issuer"
}

stop() {
  exec 9>"$dir/lock"
  flock 9
  stop_locked
}

url() {
  running || die "no provider runs for $dir: run deploy/oidc/oidc.sh start"
  cat "$dir/issuer"
}

env_lines() {
  local config client
  running || die "no provider runs for $dir: run deploy/oidc/oidc.sh start"
  config=$(cut -d' ' -f1 "$dir/config.used")
  mapfile -t client < <(node -e '
    const c = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).clients[0];
    console.log(c.client_id); console.log(c.client_secret ?? "");
  ' "$config")
  printf 'export VARSEL_OIDC_ISSUER=%q\n' "$(cat "$dir/issuer")"
  printf 'export VARSEL_OIDC_CLIENT_ID=%q\n' "${client[0]}"
  [ -z "${client[1]:-}" ] || printf 'export VARSEL_OIDC_CLIENT_SECRET=%q\n' "${client[1]}"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  env) env_lines ;;
  status) running ;;
  *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
