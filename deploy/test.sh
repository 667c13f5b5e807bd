#!/usr/bin/env bash
# Runs every test. Without DATABASE_URL it starts a throwaway PostgreSQL
# under .data/test-pg for the run and stops it afterwards; each test package
# creates its own fresh database on it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
go=${GO:-go}
if [ -z "${DATABASE_URL:-}" ]; then
  DATABASE_URL=$(deploy/pg.sh start "$root/.data/test-pg")
  export DATABASE_URL
  trap 'deploy/pg.sh stop "$root/.data/test-pg"' EXIT
fi
# The Vault tests need a real Vault: built once from the module proxy and
# cached outside the clone (about 4 minutes the first time, instant after).
VARSEL_VAULT_BIN=$(deploy/vault/build.sh)
export VARSEL_VAULT_BIN
# The portal's browser tests need Chromium and axe-core: installed once
# (apt-get, npm ci) when missing. Should that fail, the tests fail too.
if VARSEL_CHROMIUM=$(deploy/browser.sh chromium) && deploy/browser.sh axe >/dev/null; then
  export VARSEL_CHROMIUM
fi
"$go" test -race -count=1 -timeout 20m "$@" ./...
# fuzz PKG TARGET TIME fuzzes one target for TIME. Go 1.26's fuzzing
# coordinator can report a bare "context deadline exceeded" as the target's
# failure when -fuzztime ends under CPU contention (golang/go#75804, fixed
# in Go 1.27): such a run, which found no failing input, is run once more.
# A real finding writes its input to testdata/fuzz and fails again.
fuzz() {
  local log
  log=$(mktemp)
  if "$go" test -run '^$' -fuzz "^$2\$" -fuzztime "$3" "$1" 2>&1 | tee "$log"; then
    rm -f "$log"
    return 0
  fi
  if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
    rm -f "$log"
    echo "$2: the fuzzing coordinator's deadline race (golang/go#75804), no failing input; once more"
    "$go" test -run '^$' -fuzz "^$2\$" -fuzztime "$3" "$1"
    return
  fi
  rm -f "$log"
  return 1
}
# The verifier's fuzz target, for a bounded time, on top of its seed corpus.
if grep -q 'func FuzzVerify' broker/auth/*_test.go 2>/dev/null; then
  fuzz ./broker/auth FuzzVerify "${FUZZTIME:-20s}"
fi
# Every request body decoder of the API and the export reader, a few
# seconds each (FUZZTIME_EACH=1m for longer); their seed corpora ran above.
for pkg in ./broker/strict ./audit; do
  for target in $("$go" test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    fuzz "$pkg" "$target" "${FUZZTIME_EACH:-3s}"
  done
done
