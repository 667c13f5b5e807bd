package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"varsel/broker/client"
	"varsel/policies"
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
		{"operator with a space", []string{"--id", "agency-op", "--kind", "police", "--name", "x", "--jwks", good, "--operator", "kari nordmann"}, "--operator"},
		{"operator with a control character", []string{"--id", "agency-op2", "--kind", "police", "--name", "x", "--jwks", good, "--operator", "kari\x1b[2J"}, "control characters"},
		{"operator too long", []string{"--id", "agency-op3", "--kind", "police", "--name", "x", "--jwks", good, "--operator", strings.Repeat("k", 65)}, "1 to 64 characters"},
		{"empty broker id", []string{"--id", "agency-bid", "--kind", "police", "--name", "x", "--jwks", good, "--broker-id", ""}, "--broker-id"},
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

// TestAgencyChangesAuditedCLI: each of the five registry changes is one
// audit entry, by the operator for the broker, naming what changed but no
// key material; refused changes write none; and the chain still verifies,
// signed checkpoints and all.
func TestAgencyChangesAuditedCLI(t *testing.T) {
	db := freshDB(t)
	ctx := context.Background()
	runOn := func(env map[string]string, args ...string) (string, error) {
		var out, errOut strings.Builder
		err := run(ctx, args, &out, &errOut, func(k string) string {
			if k == "VARSEL_DATABASE_URL" {
				return db
			}
			return env[k]
		})
		return out.String(), err
	}
	must := func(env map[string]string, want string, args ...string) {
		t.Helper()
		out, err := runOn(env, args...)
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("varsel %s: %v %q, want %q", strings.Join(args, " "), err, out, want)
		}
	}
	refused := func(want string, args ...string) {
		t.Helper()
		if _, err := runOn(nil, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("varsel %s: %v, want an error mentioning %q", strings.Join(args, " "), err, want)
		}
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.jwk"), filepath.Join(dir, "k.jwks")
	mustCLI(t, "keygen", "--alg", "ES256", "--kid", "nav-ops-1", "--out", priv, "--jwks-out", pub)
	second := writeJWKS(t, jose.JSONWebKey{Key: mustECPub(t), KeyID: "second"})
	op := []string{"--operator", "ops-kari"}

	must(nil, "agency nav-ops added (nav-state, 1 offices, 1 keys) (audit seq 1)",
		append([]string{"agency", "add", "--id", "nav-ops", "--kind", "nav-state", "--name", "NAV ops", "--office", "nav-x", "--jwks", pub}, op...)...)
	refused("already registered", append([]string{"agency", "add", "--id", "nav-ops", "--kind", "nav-state", "--name", "again", "--jwks", second}, op...)...)
	must(nil, "agency nav-ops disabled (audit seq 2)", append([]string{"agency", "disable", "--id", "nav-ops"}, op...)...)
	refused(`agency "nav-ops" is already disabled`, append([]string{"agency", "disable", "--id", "nav-ops"}, op...)...)
	refused(`no agency "no-such-agency"`, append([]string{"agency", "disable", "--id", "no-such-agency"}, op...)...)
	must(map[string]string{"VARSEL_OPERATOR": "ops-kari"}, "agency nav-ops enabled (audit seq 3)", "agency", "enable", "--id", "nav-ops")
	refused(`agency "nav-ops" is already active`, append([]string{"agency", "enable", "--id", "nav-ops"}, op...)...)
	must(nil, "1 keys added to agency nav-ops (audit seq 4)", append([]string{"agency", "key", "add", "--id", "nav-ops", "--jwks", second}, op...)...)
	refused("already has a key", append([]string{"agency", "key", "add", "--id", "nav-ops", "--jwks", second}, op...)...)
	must(nil, "key second of agency nav-ops retired (audit seq 5)", append([]string{"agency", "key", "retire", "--id", "nav-ops", "--kid", "second"}, op...)...)
	refused(`key "second" of agency "nav-ops" is already retired`, append([]string{"agency", "key", "retire", "--id", "nav-ops", "--kid", "second"}, op...)...)
	refused(`has no key "nope"`, append([]string{"agency", "key", "retire", "--id", "nav-ops", "--kid", "nope"}, op...)...)
	refused("--operator", "agency", "disable", "--id", "nav-ops", "--operator", "ops kari")

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT seq, actor_agency, actor, role, office, action, decision, reasons,
		policy_version, request_jti, to_jsonb(a)::text FROM audit_entries a ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		seq                                                                     int64
		actorAgency, actor, role, office, action, decision, policy, jti, asJSON string
		reasons                                                                 []string
	}
	var got []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.seq, &e.actorAgency, &e.actor, &e.role, &e.office, &e.action, &e.decision, &e.reasons,
			&e.policy, &e.jti, &e.asJSON); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	version, err := policies.Version()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		action  string
		reasons []string
	}{
		{"agency.add", []string{"agency:nav-ops", "kind:nav-state", "office:nav-x", "kid:nav-ops-1"}},
		{"agency.disable", []string{"agency:nav-ops"}},
		{"agency.enable", []string{"agency:nav-ops"}},
		{"agency.key.add", []string{"agency:nav-ops", "kid:second"}},
		{"agency.key.retire", []string{"agency:nav-ops", "kid:second"}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d audit entries for %d changes: %+v", len(got), len(want), got)
	}
	var jwks struct{ Keys []struct{ X string } }
	if b, err := os.ReadFile(pub); err != nil || json.Unmarshal(b, &jwks) != nil || len(jwks.Keys) != 1 || jwks.Keys[0].X == "" {
		t.Fatalf("read %s: %v", pub, err)
	}
	for i, e := range got {
		w := want[i]
		if e.seq != int64(i+1) || e.action != w.action || !slices.Equal(e.reasons, w.reasons) || e.actor != "ops-kari" ||
			e.actorAgency != "varsel" || e.role != "operator" || e.decision != "allow" || e.office != "" || e.jti != "" || e.policy != version {
			t.Errorf("entry %d: %+v; want %s %v by ops-kari for varsel under policy %s", i+1, e, w.action, w.reasons, version)
		}
		if strings.Contains(e.asJSON, jwks.Keys[0].X) {
			t.Errorf("entry %d holds key material: %s", e.seq, e.asJSON)
		}
	}

	// The chain verifies; then a broker signs a checkpoint over it and an
	// employee of the re-enabled agency, and the signatures verify too.
	if out, err := cliOn(t, db, "audit", "verify", "--no-signatures"); exitCode(err) != 2 || !strings.Contains(out, "chain ok: 5 entries") {
		t.Fatalf("verify: %v %s", err, out)
	}
	signer, err := client.LoadSigner("nav-ops", priv)
	if err != nil {
		t.Fatal(err)
	}
	m, base := startMain(t, db, nil)
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	var w whoami
	if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, &w); err != nil || w.Audit.Seq != 6 {
		t.Fatalf("whoami after the changes: %v %+v", err, w)
	}
	checkpointNow(t, m)
	key, err := c.Do(ctx, "GET", "/v1/audit/key", nil)
	if err != nil || key.Status != 200 {
		t.Fatalf("key: %v %+v", err, key)
	}
	keyFile := filepath.Join(dir, "checkpoint.pub")
	if err := os.WriteFile(keyFile, key.Body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--origin", "varsel/audit")
	if err != nil || !strings.Contains(out, "ok: 6 entries") || strings.Contains(out, "NOT checked") {
		t.Fatalf("verify with signatures: %v %s", err, out)
	}
}

func TestAgencyOperatorName(t *testing.T) {
	saved := currentUser
	t.Cleanup(func() { currentUser = saved })
	osUser := func(name string, err error) { currentUser = func() (string, error) { return name, err } }
	noUser := errors.New("no such user")
	cases := []struct {
		name, flag, osUser, envUser string
		osErr                       error
		want, wantErr               string
	}{
		{name: "flag wins", flag: "ops-kari", osUser: "root", envUser: "ola", want: "ops-kari"},
		{name: "OS user", osUser: "root", envUser: "ola", want: "root"},
		{name: "then $USER", osErr: noUser, envUser: "ola", want: "ola"},
		{name: "empty OS user", osUser: "", envUser: "ola", want: "ola"},
		{name: "nobody", osErr: noUser, wantErr: "pass --operator NAME"},
		{name: "domain user", flag: `NAV\kari.nordmann`, want: `NAV\kari.nordmann`},
		{name: "non-ASCII", flag: "kåre-ø", want: "kåre-ø"},
		{name: "64 characters", flag: strings.Repeat("ø", 64), want: strings.Repeat("ø", 64)},
		{name: "65 characters", flag: strings.Repeat("k", 65), wantErr: "1 to 64 characters"},
		{name: "space", flag: "kari nordmann", wantErr: "no spaces"},
		{name: "tab", flag: "kari\tx", wantErr: "no spaces"},
		{name: "escape", flag: "kari\x1b[2J", wantErr: "control characters"},
		{name: "newline", flag: "kari\nroot", wantErr: "control characters"},
		{name: "invalid UTF-8", flag: "kari\xff", wantErr: "valid UTF-8"},
		{name: "bad OS user", osUser: "bad user", wantErr: "the OS user name"},
		{name: "bad $USER", osErr: noUser, envUser: "x\x00", wantErr: "$USER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			osUser(tc.osUser, tc.osErr)
			got, err := operatorName(tc.flag, func(k string) string {
				if k == "USER" {
					return tc.envUser
				}
				return ""
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || oneLine(err.Error()) != err.Error() {
					t.Fatalf("got %q, %v; want one line mentioning %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
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
	// bench is the separate varsel-bench now: the broker does not carry it.
	for _, name := range []string{"frobnicate", "bench"} {
		if _, err := cli(t, name); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("%s: %v", name, err)
		}
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
