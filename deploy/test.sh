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
# The verifier's fuzz target, for a bounded time, on top of its seed corpus.
if grep -q 'func FuzzVerify' broker/auth/*_test.go 2>/dev/null; then
  "$go" test -run '^$' -fuzz '^FuzzVerify$' -fuzztime "${FUZZTIME:-20s}" ./broker/auth
fi
# Every request body decoder of the API and the export reader, a few
# seconds each (FUZZTIME_EACH=1m for longer); their seed corpora ran above.
for pkg in ./broker/strict ./audit; do
  for target in $("$go" test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    "$go" test -run '^$' -fuzz "^$target\$" -fuzztime "${FUZZTIME_EACH:-3s}" "$pkg"
  done
done
