#!/usr/bin/env bash
# Prints the path of wrk, the C HTTP load generator varsel-bench can hand its
# pre-signed requests to (--wrk): WRK if set, else wrk on PATH, else Debian's
# wrk package installed with apt-get (as root; otherwise it says the one
# command to run). Exits non-zero, saying why on stderr, when it cannot be had.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "wrk.sh: $*" >&2; exit 1; }

if [ -n "${WRK:-}" ]; then
  [ -x "$WRK" ] || die "WRK is not an executable: $WRK"
  echo "$WRK"
  exit 0
fi
b=$(command -v wrk 2>/dev/null || true)
if [ -z "$b" ]; then
  [ "$(id -u)" -eq 0 ] || die "wrk not found; install it with: sudo apt-get install -y wrk"
  mkdir -p "$root/.data"
  (
    flock 8
    if ! command -v wrk >/dev/null 2>&1; then
      echo "wrk.sh: installing Debian's wrk (once)" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq wrk >&2 || { apt-get update -qq >&2 && apt-get install -y -qq wrk >&2; } \
        || die "apt-get install wrk failed"
    fi
  ) 8>"$root/.data/wrk-apt.lock"
  b=$(command -v wrk 2>/dev/null || true)
  [ -n "$b" ] || die "wrk installed but not on PATH"
fi
echo "$b"
