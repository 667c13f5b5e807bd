package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	vault "github.com/hashicorp/vault/api"

	"varsel/broker/client"
	"varsel/broker/keys"
)

// TestVaultTransitAgencySigner: an agency's requests signed by Vault
// Transit (ecdsa-p256 for ES256, ed25519 for EdDSA) with a token that may
// only sign with and read that key are accepted by the broker.
func TestVaultTransitAgencySigner(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	root := v.rootClient(t)
	policy, err := os.ReadFile(filepath.Join("..", "..", "deploy", "vault", "portal-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ typ, name string }{{"ecdsa-p256", "varsel-agency-pd-es"}, {"ed25519", "varsel-agency-pd-ed"}} {
		t.Run(tc.typ, func(t *testing.T) {
			if _, err := root.Logical().Write("transit/keys/"+tc.name, map[string]any{"type": tc.typ}); err != nil {
				t.Fatal(err)
			}
			if err := root.Sys().PutPolicy("portal-"+tc.name, strings.ReplaceAll(string(policy), "NAME", tc.name)); err != nil {
				t.Fatal(err)
			}
			tok, err := root.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"portal-" + tc.name}, NoDefaultPolicy: true})
			if err != nil {
				t.Fatal(err)
			}
			src, err := keys.OpenVault(ctx, keys.VaultConfig{Address: v.addr, Token: tok.Auth.ClientToken})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			op, err := src.TransitAgencySigner(ctx, "transit/keys/"+tc.name, tc.name+"-1")
			if err != nil {
				t.Fatal(err)
			}
			// Register the public half with the broker as a JWKS file.
			set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*op.Public()}})
			jwks := filepath.Join(t.TempDir(), "pub.jwks")
			if err := os.WriteFile(jwks, set, 0o644); err != nil {
				t.Fatal(err)
			}
			db := freshDB(t)
			id := "pd-" + strings.TrimPrefix(tc.typ, "ecdsa-")
			if out, err := cliOn(t, db, "agency", "add", "--id", id, "--kind", "police", "--name", "PD", "--jwks", jwks, "--operator", "test"); err != nil {
				t.Fatalf("register: %v %s", err, out)
			}
			_, base := startMain(t, db, nil)
			signer, err := client.NewOpaqueSigner(id, op)
			if err != nil {
				t.Fatal(err)
			}
			c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "ola", Role: "police-liaison"}}
			var who struct{ Agency, Sub string }
			if r, err := c.JSON(ctx, "GET", "/v1/whoami", nil, &who); err != nil || who.Agency != id {
				t.Fatalf("whoami signed by Transit: %v %+v", err, r)
			}
			// The token may not sign with another key.
			if _, err := src.TransitAgencySigner(ctx, "transit/keys/varsel-checkpoint", "x"); err == nil {
				t.Fatal("read another transit key with the portal's token")
			}
		})
	}
}
