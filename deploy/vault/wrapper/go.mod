// Wrapper module that builds the Vault v1.13.2 server binary from the Go
// module proxy for local tests (deploy/vault/build.sh). It is a separate
// module: ./... of the varsel module does not descend into it.
// Do not run `go mod tidy` here: it lifts grpc and x/crypto and breaks the
// build. Build with -mod=mod.
module varsel.local/vaultbuild

go 1.20

require (
	github.com/hashicorp/vault v1.13.2
	github.com/hashicorp/vault/api v1.9.0
	github.com/hashicorp/vault/sdk v0.8.1
)
