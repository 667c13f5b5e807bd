#!/usr/bin/env bash
# Prepares a Vault for the Varsel broker and prints its credentials.
#
#   VAULT_ADDR=... VAULT_TOKEN=<root or admin token> deploy/vault/setup.sh [options]
#
#   (default)        print a token with only the "varsel" policy (renewable)
#   --approle        instead enable AppRole at auth/approle/, write role
#                    "varsel" and print "role_id=..." and "secret_id=..." lines
#                    (each run mints a new secret_id; earlier ones stay valid)
#   --ttl DUR        TTL of the token / of AppRole logins (default 1h)
#   --period DUR     make it a periodic token (renewable indefinitely by
#                    renew-self within each period); default: not periodic
#
# Idempotent; on each run it ensures that:
#   - KV v2 is mounted at secret/ (a -dev server already has it)
#   - transit is mounted at transit/, with the ed25519 key "varsel-checkpoint"
#   - secret/varsel/subject-key holds field "key": 32 random bytes, base64
#     (written only if the secret never existed; never overwritten)
#   - policy "varsel" is deploy/vault/varsel-policy.hcl
# Only credentials go to stdout; a failure prints one line on stderr.
# Speaks HTTP to Vault with curl and jq (no vault binary needed). Tokens are
# passed to curl in a private header file, not on its command line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
policy_file=$here/varsel-policy.hcl

die() { echo "setup.sh: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

mode=token ttl=1h period=
while [ $# -gt 0 ]; do
  case "$1" in
    --approle) mode=approle ;;
    --ttl) [ $# -ge 2 ] || usage; ttl=$2; shift ;;
    --period) [ $# -ge 2 ] || usage; period=$2; shift ;;
    -h|--help) usage ;;
    *) echo "setup.sh: unknown argument: $1" >&2; usage ;;
  esac
  shift
done

[ -n "${VAULT_ADDR:-}" ] || die "VAULT_ADDR is not set"
[ -n "${VAULT_TOKEN:-}" ] || die "VAULT_TOKEN is not set (a root or admin token)"
command -v curl >/dev/null 2>&1 || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq curl >&2; } || die "curl not found (Debian package curl)"
command -v jq >/dev/null 2>&1 || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq jq >&2; } || die "jq not found (Debian package jq)"
[ -f "$policy_file" ] || die "missing $policy_file"
addr=${VAULT_ADDR%/}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/varsel-vault-setup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf 'X-Vault-Token: %s\n' "$VAULT_TOKEN" >"$tmp/hdr"
curl_tls=()
[ -n "${VAULT_CACERT:-}" ] && curl_tls+=(--cacert "$VAULT_CACERT")

# req METHOD PATH [JSON]: the response body goes to $tmp/body, the HTTP
# status to $code. Dies only when Vault cannot be reached.
code=
req() {
  local method=$1 path=$2 data=${3:-}
  local args=(-sS "${curl_tls[@]}" --max-time 30 -o "$tmp/body" -w '%{http_code}' -X "$method" -H "@$tmp/hdr")
  if [ -n "$data" ]; then
    code=$(printf '%s' "$data" | curl "${args[@]}" -H 'Content-Type: application/json' --data-binary @- "$addr/v1/$path" 2>"$tmp/err") \
      || die "cannot reach Vault at $addr: $(tr '\n' ' ' <"$tmp/err")"
  else
    code=$(curl "${args[@]}" "$addr/v1/$path" </dev/null 2>"$tmp/err") \
      || die "cannot reach Vault at $addr: $(tr '\n' ' ' <"$tmp/err")"
  fi
}

# verr: Vault's error message from the last response, on one line.
verr() {
  local m
  m=$(jq -r '(.errors // []) | map(gsub("^[0-9]+ errors? occurred:"; "") | gsub("\\n\\t\\* "; " ") | gsub("\\s+"; " ") | ltrimstr(" ") | rtrimstr(" ")) | join("; ")' "$tmp/body" 2>/dev/null) || m=$(head -c 200 "$tmp/body" | tr '\n' ' ')
  echo "HTTP $code${m:+: $m}"
}

# must WHAT METHOD PATH [JSON]: req, dying with "cannot WHAT" unless 2xx.
must() {
  local what=$1; shift
  req "$@"
  case "$code" in 2??) ;; *) die "cannot $what: $(verr)" ;; esac
}

# mount_type KIND PATH: "TYPE VERSION" of the mount at PATH/ (kind: mounts
# or auth), or nothing when there is none.
mount_type() {
  must "list sys/$1" GET "sys/$1"
  jq -r --arg p "$2/" '(.data // .)[$p] // empty | "\(.type) \(.options.version // "1")"' "$tmp/body"
}

# KV v2 at secret/.
m=$(mount_type mounts secret)
case "$m" in
  "") must "enable KV v2 at secret/" POST sys/mounts/secret '{"type":"kv","options":{"version":"2"},"description":"key/value secrets (KV v2)"}' ;;
  "kv 2") ;;
  kv\ *) die "secret/ is a KV version ${m#kv } mount, not KV v2 (upgrade it with: vault kv enable-versioning secret/)" ;;
  *) die "secret/ is a ${m%% *} mount, not KV v2" ;;
esac

# Transit at transit/.
m=$(mount_type mounts transit)
case "$m" in
  "") must "enable transit at transit/" POST sys/mounts/transit '{"type":"transit","description":"Varsel checkpoint signing"}' ;;
  transit\ *) ;;
  *) die "transit/ is a ${m%% *} mount, not transit" ;;
esac

# The ed25519 transit key (not exportable, not deletable: Vault's defaults).
req GET transit/keys/varsel-checkpoint
case "$code" in
  200) t=$(jq -r '.data.type' "$tmp/body")
       [ "$t" = ed25519 ] || die "transit key varsel-checkpoint exists with type $t, not ed25519" ;;
  404) must "create transit key varsel-checkpoint" POST transit/keys/varsel-checkpoint '{"type":"ed25519"}' ;;
  *) die "cannot read transit key varsel-checkpoint: $(verr)" ;;
esac

# The subject key, written once. A freshly enabled KV v2 mount answers with
# an error for a moment while it initialises, hence the retries.
for i in $(seq 1 30); do
  req GET secret/metadata/varsel/subject-key
  case "$code" in 200|404) break ;; esac
  [ "$i" -lt 30 ] || die "cannot read secret/metadata/varsel/subject-key: $(verr)"
  sleep 0.5
done
if [ "$code" = 404 ]; then
  key=$(head -c 32 /dev/urandom | base64 -w0)
  [ "${#key}" -eq 44 ] || die "cannot read 32 random bytes from /dev/urandom"
  # cas=0: written only if it still does not exist (a concurrent run wins).
  req POST secret/data/varsel/subject-key "{\"options\":{\"cas\":0},\"data\":{\"key\":\"$key\"}}"
  case "$code" in
    2??) ;;
    *) err=$(verr)
       req GET secret/metadata/varsel/subject-key
       [ "$code" = 200 ] || die "cannot write secret/varsel/subject-key: $err" ;;
  esac
fi
req GET secret/data/varsel/subject-key
if [ "$code" != 200 ] || [ -z "$(jq -r '.data.data.key // empty' "$tmp/body")" ]; then
  die "secret/varsel/subject-key exists but its current version has no field \"key\" (deleted or destroyed?): restore it with vault kv undelete/rollback, it is never overwritten here"
fi

# The policy.
must "write policy varsel" PUT sys/policies/acl/varsel "$(jq -Rs '{policy: .}' "$policy_file")"

# The credentials: only the varsel policy, without "default".
if [ "$mode" = token ]; then
  must "create a token with policy varsel" POST auth/token/create "$(jq -nc --arg ttl "$ttl" --arg period "$period" \
    '{policies: ["varsel"], no_default_policy: true, renewable: true, ttl: $ttl, display_name: "varsel", meta: {app: "varsel"}}
     + (if $period == "" then {} else {period: $period} end)')"
  jq -er '.auth.client_token' "$tmp/body" || die "no client_token in Vault's answer"
  exit 0
fi

m=$(mount_type auth approle)
case "$m" in
  "") must "enable approle at auth/approle/" POST sys/auth/approle '{"type":"approle"}' ;;
  approle\ *) ;;
  *) die "auth/approle/ is a ${m%% *} auth method, not approle" ;;
esac
must "write approle role varsel" POST auth/approle/role/varsel "$(jq -nc --arg ttl "$ttl" --arg period "$period" \
  '{token_policies: ["varsel"], token_no_default_policy: true, token_ttl: $ttl, token_type: "service"}
   + (if $period == "" then {} else {token_period: $period} end)')"
must "read the role_id of approle role varsel" GET auth/approle/role/varsel/role-id
role_id=$(jq -er '.data.role_id' "$tmp/body") || die "no role_id in Vault's answer"
must "create a secret_id for approle role varsel" POST auth/approle/role/varsel/secret-id '{}'
secret_id=$(jq -er '.data.secret_id' "$tmp/body") || die "no secret_id in Vault's answer"
printf 'role_id=%s\nsecret_id=%s\n' "$role_id" "$secret_id"
