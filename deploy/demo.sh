#!/usr/bin/env bash
# Seeds the demo agencies of the embedded default, once: a NAV office whose
# state and municipal parts share the office id nav-grorud (and nav-arstad), a
# police district, a health trust and the broker operator's auditors. Each
# gets an ES256 signing key; the private JWKs stay in .data/demo/ for trying
# the API with `varsel call`. Safe to run again: what exists is kept.
#
#   VARSEL_DATABASE_URL=... deploy/demo.sh [VARSEL_BINARY]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
varsel=${1:-$root/bin/varsel}
demo=${VARSEL_DEMO_DIR:-$root/.data/demo}
mkdir -p "$demo"
: "${VARSEL_DATABASE_URL:?set VARSEL_DATABASE_URL}"

existing=$("$varsel" agency list --json | grep -o '"id": "[^"]*"' | cut -d'"' -f4 || true)

add() { # id kind name offices...
  local id=$1 kind=$2 name=$3; shift 3
  if [ ! -f "$demo/$id.jwk" ]; then
    rm -f "$demo/$id.jwks"
    "$varsel" keygen --alg ES256 --kid "$id-1" --out "$demo/$id.jwk" --jwks-out "$demo/$id.jwks" >/dev/null
  fi
  if grep -qx "$id" <<<"$existing"; then return; fi
  local args=()
  for o in "$@"; do args+=(--office "$o"); done
  "$varsel" agency add --id "$id" --kind "$kind" --name "$name" --jwks "$demo/$id.jwks" "${args[@]}"
}

add nav-stat     nav-state     "NAV (statlig del)"              nav-grorud nav-arstad
add oslo-kommune nav-municipal "Oslo kommune (kommunal del av NAV)" nav-grorud nav-arstad
add oslo-pd      police        "Oslo politidistrikt"            oslo-pd-sentrum
add ous          health        "Oslo universitetssykehus"       ous-psykiatri
add varsel-ops   broker        "Varsel operatørens revisorer"
