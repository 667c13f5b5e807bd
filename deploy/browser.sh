#!/usr/bin/env bash
# What the portal's browser tests (broker/portal/e2e) need, installed when
# missing, for a developer's machine and CI:
#
#   deploy/browser.sh chromium   print the path of a headless-capable Chromium
#                                (VARSEL_CHROMIUM, else Debian's chromium,
#                                installed with apt-get when missing)
#   deploy/browser.sh axe        print the path of axe.min.js (axe-core, pinned
#                                by deploy/browser/package-lock.json, installed
#                                with npm ci when missing or stale)
#
# Both print one path on stdout and exit non-zero, saying why on stderr, when
# it cannot be had.
set -euo pipefail

cmd=${1:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/deploy/browser

die() { echo "browser.sh: $*" >&2; exit 1; }

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "$1 not found; install it with: sudo apt-get install -y $*"
  echo "browser.sh: installing Debian's $* (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

find_chromium() {
  if [ -n "${VARSEL_CHROMIUM:-}" ]; then
    [ -x "$VARSEL_CHROMIUM" ] || die "VARSEL_CHROMIUM is not an executable: $VARSEL_CHROMIUM"
    echo "$VARSEL_CHROMIUM"
    return
  fi
  local b
  b=$(command -v chromium 2>/dev/null || true)
  if [ -z "$b" ]; then
    mkdir -p "$root/.data"
    (
      flock 8
      command -v chromium >/dev/null 2>&1 || apt_install chromium fonts-dejavu-core
    ) 8>"$root/.data/browser-apt.lock"
    b=$(command -v chromium 2>/dev/null || true)
    [ -n "$b" ] || die "chromium installed but not on PATH"
  fi
  echo "$b"
}

find_axe() {
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local want stamp=$here/node_modules/.varsel-stamp
  want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
  if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    mkdir -p "$root/.data"
    (
      flock 8
      [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
      echo "browser.sh: npm ci in deploy/browser (once)" >&2
      (cd "$here" && umask 022 && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
        || die "npm ci failed in $here"
      echo "$want" >"$stamp"
    ) 8>"$root/.data/browser-npm.lock"
  fi
  [ -f "$here/node_modules/axe-core/axe.min.js" ] || die "no axe.min.js after npm ci"
  echo "$here/node_modules/axe-core/axe.min.js"
}

case "$cmd" in
  chromium) find_chromium ;;
  axe) find_axe ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
