package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func writeJWKS(t *testing.T, keys ...jose.JSONWebKey) string {
	t.Helper()
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	p := filepath.Join(t.TempDir(), "keys.jwks")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgencyAddRefuses(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := writeJWKS(t, jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k"})
	malformed := filepath.Join(t.TempDir(), "bad.jwks")
	os.WriteFile(malformed, []byte("{not json"), 0o600)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"private key", []string{"--id", "agency-priv", "--kind", "police", "--name", "x", "--jwks", writeJWKS(t, jose.JSONWebKey{Key: ec, KeyID: "k"})}, "private key material"},
		{"RSA key", []string{"--id", "agency-rsa", "--kind", "police", "--name", "x", "--jwks", writeJWKS(t, jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "k"})}, "only ES256"},
		{"malformed file", []string{"--id", "agency-bad", "--kind", "police", "--name", "x", "--jwks", malformed}, "not valid JSON"},
		{"missing file", []string{"--id", "agency-none", "--kind", "police", "--name", "x", "--jwks", "/nonexistent.jwks"}, "read JWKS"},
		{"bad id", []string{"--id", "Bad_ID", "--kind", "police", "--name", "x", "--jwks", good}, "must match"},
		{"short id", []string{"--id", "ab", "--kind", "police", "--name", "x", "--jwks", good}, "must match"},
		{"bad kind", []string{"--id", "agency-kind", "--kind", "army", "--name", "x", "--jwks", good}, `kind "army": want one of`},
		{"bad office", []string{"--id", "agency-off", "--kind", "police", "--name", "x", "--office", "Bad Office", "--jwks", good}, `office "Bad Office" must match`},
		{"no name", []string{"--id", "agency-noname", "--kind", "police", "--jwks", good}, "name is required"},
		{"office twice", []string{"--id", "agency-twice", "--kind", "police", "--name", "x", "--office", "off-a,off-a", "--jwks", good}, `office "off-a" given twice`},
		{"no jwks", []string{"--id", "agency-nojwks", "--kind", "police", "--name", "x"}, "--jwks"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cli(t, append([]string{"agency", "add"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if msg := oneLine(err.Error()); msg != err.Error() {
				t.Fatalf("error is not one line: %q", err.Error())
			}
		})
	}
	list := mustCLI(t, "agency", "list")
	for _, tc := range cases {
		if strings.Contains(list, tc.args[1]+" ") {
			t.Errorf("refused agency %s was stored", tc.args[1])
		}
	}
}

func TestAgencyLifecycleCLI(t *testing.T) {
	id := uniq("police")
	demoAgency(t, id, "police", "station-a")
	if _, err := cli(t, "agency", "add", "--id", id, "--kind", "police", "--name", "again", "--jwks", writeJWKS(t, jose.JSONWebKey{Key: mustECPub(t), KeyID: "z"})); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("duplicate add: %v", err)
	}
	mustCLI(t, "agency", "key", "add", "--id", id, "--jwks", writeJWKS(t, jose.JSONWebKey{Key: mustECPub(t), KeyID: "second"}))
	mustCLI(t, "agency", "key", "retire", "--id", id, "--kid", id+"-1")
	mustCLI(t, "agency", "disable", "--id", id)

	var rows []struct {
		ID      string   `json:"id"`
		Status  string   `json:"status"`
		Offices []string `json:"offices"`
		Keys    []struct {
			KID    string `json:"kid"`
			Status string `json:"status"`
			Alg    string `json:"alg"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "agency", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r.ID != id {
			continue
		}
		found = true
		if r.Status != "disabled" || len(r.Offices) != 1 || len(r.Keys) != 2 {
			t.Fatalf("row %+v", r)
		}
		st := map[string]string{}
		for _, k := range r.Keys {
			st[k.KID] = k.Status + "/" + k.Alg
		}
		if st[id+"-1"] != "retired/ES256" || st["second"] != "active/ES256" {
			t.Fatalf("keys %v", st)
		}
	}
	if !found {
		t.Fatalf("agency %s not listed", id)
	}
	if _, err := cli(t, "agency", "disable", "--id", "no-such-agency"); err == nil || !strings.Contains(err.Error(), "no agency") {
		t.Fatalf("disable unknown: %v", err)
	}
	if _, err := cli(t, "agency", "key", "retire", "--id", id, "--kid", "nope"); err == nil {
		t.Fatal("retiring an unknown kid succeeded")
	}
}

func mustECPub(t *testing.T) *ecdsa.PublicKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

func TestHelpAndErrors(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"serve", "--help"}, {"migrate", "--help"}, {"agency", "--help"}, {"keygen", "--help"}, {"call", "--help"}} {
		out, err := cli(t, args...)
		if err != nil || !strings.Contains(out, "Usage") && !strings.Contains(out, "usage") {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
	if _, err := cli(t, "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := cli(t, "serve", "--no-such-flag"); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag: %v", err)
	}
	if _, err := cli(t, "keygen", "--alg", "RS256", "--kid", "x", "--out", filepath.Join(t.TempDir(), "k")); err == nil {
		t.Error("keygen RS256 succeeded")
	}
	out := mustCLI(t, "migrate")
	if !strings.Contains(out, "schema version") {
		t.Errorf("migrate: %q", out)
	}
}

func TestConfigLogNeverShowsPasswords(t *testing.T) {
	for _, u := range []string{
		"postgres://varsel:s3cret-pw@db.example:5432/varsel?sslmode=disable",
		"postgres://varsel@db.example/varsel?password=s3cret-pw",
		"host=db.example user=varsel password=s3cret-pw dbname=varsel",
	} {
		got := redactURL(u)
		if strings.Contains(got, "s3cret-pw") || !strings.Contains(got, "db.example") {
			t.Errorf("redactURL(%q) = %q", u, got)
		}
	}
}
