#!/usr/bin/env bash
# Builds the HashiCorp Vault v1.13.2 binary (server and CLI in one) once and
# caches it outside the clone, then prints its path on stdout:
#
#   deploy/vault/build.sh        -> ${VARSEL_CACHE:-$HOME/.cache/varsel}/vault-1.13.2
#
# Debian has no Vault package, so it is built from the Go module proxy with the
# wrapper module in deploy/vault/wrapper (go.mod, go.sum, tools.go), copied to
# a temporary directory so the build never touches the clone. v1.13.2 is the
# newest release that builds from a wrapper module without patches (1.14.x
# does not). Never run `go mod tidy` on the wrapper: it lifts grpc and
# x/crypto and breaks the build. The first build takes several minutes (about
# 4 with a warm module cache); later calls return at once.
#
# The binary is old and unpatched: only ever run it as a loopback test server
# (deploy/vault/dev.sh), never in production.
set -euo pipefail

version=1.13.2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VARSEL_CACHE:-$HOME/.cache/varsel}
out=$cache/vault-$version

die() { echo "build.sh: $*" >&2; exit 1; }
works() { [ -x "$out" ] && "$out" version >/dev/null 2>&1; }

if works; then echo "$out"; exit 0; fi

command -v go >/dev/null 2>&1 || die "go not found in PATH"
command -v flock >/dev/null 2>&1 || die "flock not found (Debian package util-linux)"
for f in go.mod go.sum tools.go; do
  [ -f "$here/wrapper/$f" ] || die "missing $here/wrapper/$f"
done
mkdir -p "$cache" || die "cannot create $cache"

# One build at a time: a second caller waits here, then finds the binary.
exec 8>"$out.lock"
if ! flock -n 8; then
  echo "build.sh: another build of Vault v$version is running, waiting for it" >&2
  flock 8
fi
if works; then echo "$out"; exit 0; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/varsel-vault-build.XXXXXX")
trap 'rm -rf "$work" "$out.tmp"' EXIT
cp "$here/wrapper/go.mod" "$here/wrapper/go.sum" "$here/wrapper/tools.go" "$work/"

echo "build.sh: building Vault v$version into $out (several minutes the first time)" >&2
start=$SECONDS
# -mod=mod: go.sum is committed, but a missing entry is fetched rather than
# failing. CGO off like HashiCorp's release builds. The lock fd is closed for
# the go command and its children.
(cd "$work" && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 \
  go build -mod=mod -o "$out.tmp" github.com/hashicorp/vault) </dev/null >&2 8>&- \
  || die "go build of github.com/hashicorp/vault v$version failed (see above)"
"$out.tmp" version </dev/null >/dev/null 2>&1 8>&- || die "the built binary does not run: $out.tmp"
mv -f "$out.tmp" "$out"
echo "build.sh: built in $((SECONDS - start))s: $("$out" version 8>&-)" >&2
echo "$out"
