//go:build tools

// Package tools pins the Vault server for deploy/vault/build.sh, which runs
// `go build -mod=mod github.com/hashicorp/vault` in a copy of this module.
package tools

import _ "github.com/hashicorp/vault"
