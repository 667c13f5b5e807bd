#!/usr/bin/env bash
# What `make run` starts: the dev Postgres under .data/, migrations, the demo
# agencies, the dev OpenID provider, the broker on 127.0.0.1:8080 and the
# agency portal on 127.0.0.1:8090 (serving every demo agency behind one login:
# development only; production runs one portal per agency). Ctrl-C stops the
# broker and the portal; `make stop` stops Postgres, the provider and Vault.
#
#   deploy/run.sh [VARSEL_BINARY]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
varsel=${1:-$root/bin/varsel}
listen=${LISTEN:-127.0.0.1:8080}
portal_listen=${PORTAL_LISTEN:-127.0.0.1:8090}

VARSEL_DATABASE_URL=$(deploy/pg.sh start)
export VARSEL_DATABASE_URL
"$varsel" migrate
deploy/demo.sh "$varsel"
issuer=$(VARSEL_OIDC_PORT=${VARSEL_OIDC_PORT:-8091} deploy/oidc/oidc.sh start)

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

"$varsel" serve --listen "$listen" --keys file:.data/keys --test-subjects &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
agencies=()
for id in nav-stat oslo-kommune oslo-pd ous varsel-ops; do agencies+=(--agency "$id=.data/demo/$id.jwk"); done
VARSEL_OIDC_CLIENT_SECRET=varsel-dev-secret "$varsel" portal --listen "$portal_listen" --broker-url "http://$listen" \
  --oidc-issuer "$issuer" --oidc-client-id varsel-portal --session-key-file .data/portal/session.key \
  --test-subjects "${agencies[@]}" &
pids+=($!)

cat <<MSG

  Broker:  http://$listen   (try: bin/varsel call GET /v1/whoami --key .data/demo/oslo-pd.jwk --agency oslo-pd --sub ola --role police-liaison)
  Portal:  http://$portal_listen
  Login:   $issuer   password varsel-demo for every demo user, e.g.
             kari.grorud        caseworker, NAV Grorud (state)
             sikkerhet.arstad   security coordinator, NAV Årstad (state)
             ola.politi         police liaison, Oslo police district
             lege.ous           health worker, Oslo University Hospital
             personvern.politi  privacy officer, Oslo police district
           (all of them: deploy/oidc/README.md)

MSG
wait -n "${pids[@]}"
