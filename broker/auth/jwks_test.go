package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker/auth"
)

func jwks(t *testing.T, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseJWKSAccepts(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	data := jwks(t,
		jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ec-1"},
		jose.JSONWebKey{Key: ed.Public(), KeyID: "ed-1", Algorithm: "EdDSA", Use: "sig"},
	)
	keys, err := auth.ParseJWKS("nav-test", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Alg != "ES256" || keys[1].Alg != "EdDSA" || keys[0].KID != "ec-1" {
		t.Fatalf("parsed %+v", keys)
	}
	for _, k := range keys {
		if strings.Contains(string(k.JWK), `"d"`) {
			t.Fatalf("stored JWK holds private material: %s", k.JWK)
		}
	}
}

func TestParseJWKSRefuses(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "ok"}

	cases := []struct {
		name, data, want string
	}{
		{"malformed", `{"keys": [`, "not valid JSON"},
		{"not a set", `[1,2]`, "not valid JSON"},
		{"empty", `{"keys": []}`, "no keys"},
		{"private EC", string(jwks(t, jose.JSONWebKey{Key: ec, KeyID: "p"})), "private key material"},
		{"private Ed25519 among public", string(jwks(t, good, jose.JSONWebKey{Key: ed, KeyID: "p"})), "private key material"},
		{"RSA", string(jwks(t, jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "r"})), "only ES256"},
		{"symmetric", `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, "private key material"},
		{"P-384", string(jwks(t, jose.JSONWebKey{Key: &ec384.PublicKey, KeyID: "c"})), "P-256"},
		{"no kid", string(jwks(t, jose.JSONWebKey{Key: &ec.PublicKey})), "no kid"},
		{"duplicate kid", string(jwks(t, good, jose.JSONWebKey{Key: ed.Public(), KeyID: "ok"})), "two keys with kid"},
		{"alg mismatch", string(jwks(t, jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "m", Algorithm: "EdDSA"})), "does not match"},
		{"encryption use", string(jwks(t, jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "u", Use: "enc"})), "use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.ParseJWKS("nav-test", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestGenerateKeyRoundTrip(t *testing.T) {
	for _, alg := range []string{auth.AlgES256, auth.AlgEdDSA} {
		priv, pub, err := auth.GenerateKey(alg, "kid-"+alg)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := auth.ParseJWKS("a-b-c", pub)
		if err != nil || len(keys) != 1 || keys[0].Alg != alg {
			t.Fatalf("%s: public set %v %v", alg, keys, err)
		}
		if _, err := auth.ParseJWKS("a-b-c", []byte(`{"keys":[`+string(priv)+`]}`)); err == nil {
			t.Fatalf("%s: private key accepted as JWKS", alg)
		}
	}
	if _, _, err := auth.GenerateKey("RS256", "x"); err == nil {
		t.Fatal("RS256 key generated")
	}
}
