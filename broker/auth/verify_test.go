package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/client"
)

// opEntry is the audit entry of a registry change made by the test.
func opEntry(action string) *audit.Entry {
	return &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "varsel", Actor: "test-operator", Role: "operator",
		Action: action, Decision: audit.Allow, PolicyVersion: "test"}
}

// fixture is a set of agencies registered in the test database.
type fixture struct {
	police, nav, off   string // agency ids
	policeES, policeEd *client.Signer
	navKey             *client.Signer
	policePublic       []byte // JWKS of the police ES256 key
	verifier           *auth.Verifier
	cacheClock         *fakeClock // the verifier's key cache's clock
}

var fixtureN atomic.Int64

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	n := fixtureN.Add(1)
	f := &fixture{
		police: fmt.Sprintf("police-%d-%d", time.Now().UnixNano()%1e6, n),
		nav:    fmt.Sprintf("nav-%d-%d", time.Now().UnixNano()%1e6, n),
		off:    fmt.Sprintf("off-%d-%d", time.Now().UnixNano()%1e6, n),
	}
	register := func(id string, kind broker.AgencyKind, offices []string, algs map[string]string) map[string]*client.Signer {
		signers := map[string]*client.Signer{}
		var keys []broker.AgencyKey
		for kid, alg := range algs {
			priv, pub, err := auth.GenerateKey(alg, kid)
			if err != nil {
				t.Fatal(err)
			}
			ks, err := auth.ParseJWKS(id, pub)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, ks...)
			s, err := client.NewSigner(id, priv)
			if err != nil {
				t.Fatal(err)
			}
			signers[kid] = s
			if kid == "p-es" {
				f.policePublic = pub
			}
		}
		if err := testDB.CreateAgency(ctx, &broker.Agency{ID: id, Kind: kind, Name: id, Offices: offices}, keys, opEntry("agency.add")); err != nil {
			t.Fatal(err)
		}
		return signers
	}
	ps := register(f.police, broker.KindPolice, []string{"police-hq"}, map[string]string{"p-es": auth.AlgES256, "p-ed": auth.AlgEdDSA})
	f.policeES, f.policeEd = ps["p-es"], ps["p-ed"]
	f.navKey = register(f.nav, broker.KindNAVState, []string{"nav-grorud"}, map[string]string{"n-1": auth.AlgES256})["n-1"]
	f.cacheClock = &fakeClock{}
	f.verifier = &auth.Verifier{
		Audience: "varsel",
		Keys:     &auth.KeyCache{Registry: testDB, TTL: cacheTTL, MinRefresh: cacheMinRefresh, Now: f.cacheClock.Now},
		Replay:   &auth.Replay{}, // as the broker runs it: across replicas, the audit append refuses a replay
	}
	return f
}

// The fixture's key cache limits; its clock moves only when a test says.
const (
	cacheTTL        = time.Minute
	cacheMinRefresh = 10 * time.Second
)

// fakeClock is the real time plus an offset a test advances.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

var liaison = client.Employee{Sub: "liaison-1", Role: "police-liaison"}

// claims are valid claims for a GET /v1/whoami by the police liaison.
func (f *fixture) claims() map[string]any {
	now := time.Now()
	var id [16]byte
	_, _ = rand.Read(id[:])
	return map[string]any{
		"iss": f.police, "sub": "liaison-1", "aud": "varsel",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(id[:]),
		"htm": "GET", "htu": "/v1/whoami", "bsh": auth.BodyHash(nil), "role": "police-liaison",
	}
}

func signWith(t *testing.T, key any, alg jose.SignatureAlgorithm, header map[jose.HeaderKey]any, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range header {
		opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func encodeSegment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyAcceptsBothAlgorithms(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, s := range []*client.Signer{f.policeES, f.policeEd} {
		body := []byte(`{"a":1}`)
		tok, err := s.Token(liaison, "POST", "/v1/checks?x=1", body)
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.verifier.Verify(ctx, tok, "POST", "/v1/checks?x=1", body)
		if err != nil {
			t.Fatalf("%s: %v", s.KID(), err)
		}
		if p.Agency != f.police || p.AgencyKind != broker.KindPolice || p.Role != "police-liaison" || p.Sub != "liaison-1" || p.KID != s.KID() || len(p.JTI) < 16 {
			t.Fatalf("principal %+v", p)
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	hdr := func(kid string) map[jose.HeaderKey]any {
		return map[jose.HeaderKey]any{"kid": kid, "typ": auth.TokenType}
	}
	with := func(mod func(map[string]any)) map[string]any {
		c := f.claims()
		mod(c)
		return c
	}
	es := func(c map[string]any) string { tok, _ := f.policeES.SignClaims(c); return tok }

	// HS256 with the registered public key's bytes as the HMAC secret: the
	// classic algorithm-confusion attack.
	hsHeader := encodeSegment(map[string]string{"alg": "HS256", "typ": auth.TokenType, "kid": "p-es"})
	hsPayload := encodeSegment(f.claims())
	mac := hmac.New(sha256.New, f.policePublic)
	mac.Write([]byte(hsHeader + "." + hsPayload))
	hsToken := hsHeader + "." + hsPayload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	noneToken := encodeSegment(map[string]string{"alg": "none", "typ": auth.TokenType, "kid": "p-es"}) + "." + encodeSegment(f.claims()) + "."

	// The nav agency's private key, claiming to be the police key.
	navAsPolice := func() string {
		var k jose.JSONWebKey
		priv, _, _ := auth.GenerateKey(auth.AlgES256, "p-es")
		_ = k.UnmarshalJSON(priv)
		return signWith(t, k.Key, jose.ES256, hdr("p-es"), f.claims())
	}()

	validBody := func() string { tok, _ := f.policeES.Token(liaison, "GET", "/v1/whoami", nil); return tok }

	cases := []struct {
		name, token, method, uri, body, want string
	}{
		{"empty token", "", "GET", "/v1/whoami", "", "malformed_token"},
		{"not a JWS", "abc.def", "GET", "/v1/whoami", "", "malformed_token"},
		{"garbage segments", "!!!.???.***", "GET", "/v1/whoami", "", "malformed_token"},
		{"alg none", noneToken, "GET", "/v1/whoami", "", "bad_alg"},
		{"HS256 with public key bytes", hsToken, "GET", "/v1/whoami", "", "bad_alg"},
		{"RS256", signWith(t, rsaKey, jose.RS256, hdr("p-es"), f.claims()), "GET", "/v1/whoami", "", "bad_alg"},
		{"EdDSA header on the ES256 key", signWith(t, mustEdKey(t), jose.EdDSA, hdr("p-es"), f.claims()), "GET", "/v1/whoami", "", "bad_alg"},
		{"another key under this kid", navAsPolice, "GET", "/v1/whoami", "", "bad_signature"},
		{"kid of another agency", signWith(t, mustEdKey(t), jose.EdDSA, hdr("n-1"), f.claims()), "GET", "/v1/whoami", "", "unknown_key"},
		{"no kid", signWith(t, mustEdKey(t), jose.EdDSA, map[jose.HeaderKey]any{"typ": auth.TokenType}, f.claims()), "GET", "/v1/whoami", "", "unknown_key"},
		{"wrong typ", signWith(t, mustEdKey(t), jose.EdDSA, map[jose.HeaderKey]any{"kid": "p-ed", "typ": "JWT"}, f.claims()), "GET", "/v1/whoami", "", "bad_typ"},
		{"no typ", signWith(t, mustEdKey(t), jose.EdDSA, map[jose.HeaderKey]any{"kid": "p-ed"}, f.claims()), "GET", "/v1/whoami", "", "bad_typ"},
		{"unknown agency", es(with(func(c map[string]any) { c["iss"] = "no-such-agency" })), "GET", "/v1/whoami", "", "unknown_agency"},
		{"bad audience", es(with(func(c map[string]any) { c["aud"] = "other-broker" })), "GET", "/v1/whoami", "", "bad_audience"},
		{"expired", es(with(func(c map[string]any) {
			c["iat"] = time.Now().Add(-3 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		})), "GET", "/v1/whoami", "", "expired"},
		{"not yet valid", es(with(func(c map[string]any) {
			c["iat"] = time.Now().Add(2 * time.Minute).Unix()
			c["exp"] = time.Now().Add(3 * time.Minute).Unix()
		})), "GET", "/v1/whoami", "", "not_yet_valid"},
		{"over-long lifetime", es(with(func(c map[string]any) { c["exp"] = time.Now().Add(301 * time.Second).Unix() })), "GET", "/v1/whoami", "", "bad_claims"},
		{"no exp", es(with(func(c map[string]any) { delete(c, "exp") })), "GET", "/v1/whoami", "", "bad_claims"},
		{"short jti", es(with(func(c map[string]any) { c["jti"] = "short" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"long jti", es(with(func(c map[string]any) { c["jti"] = strings.Repeat("j", 129) })), "GET", "/v1/whoami", "", "bad_claims"},
		{"empty sub", es(with(func(c map[string]any) { c["sub"] = "" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"unknown role", es(with(func(c map[string]any) { c["role"] = "janitor" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"caseworker without office", es(with(func(c map[string]any) { c["role"] = "caseworker" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"office of another agency", es(with(func(c map[string]any) { c["role"] = "caseworker"; c["office"] = "nav-grorud" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"unknown claim", es(with(func(c map[string]any) { c["scope"] = "admin" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"claim of the wrong type", es(with(func(c map[string]any) { c["exp"] = "tomorrow" })), "GET", "/v1/whoami", "", "bad_claims"},
		{"other method", validBody(), "POST", "/v1/whoami", "", "binding_mismatch"},
		{"other path", validBody(), "GET", "/v1/flags/1", "", "binding_mismatch"},
		{"other query", validBody(), "GET", "/v1/whoami?x=1", "", "binding_mismatch"},
		{"body changed after signing", validBody(), "GET", "/v1/whoami", `{"x":1}`, "binding_mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.verifier.Verify(ctx, tc.token, tc.method, tc.uri, []byte(tc.body))
			if got := broker.ErrorCode(err); got != tc.want {
				t.Fatalf("got %v (code %q), want %q", err, got, tc.want)
			}
			if broker.ErrorKind(err) != broker.EUNAUTHORIZED {
				t.Fatalf("kind %q, want unauthorized", broker.ErrorKind(err))
			}
		})
	}
}

func mustEdKey(t *testing.T) any {
	t.Helper()
	priv, _, err := auth.GenerateKey(auth.AlgEdDSA, "x")
	if err != nil {
		t.Fatal(err)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(priv); err != nil {
		t.Fatal(err)
	}
	return k.Key
}

func TestVerifyMissingToken(t *testing.T) {
	f := newFixture(t)
	for _, h := range []string{"", "Basic abc", "Bearer ", "bearer x"} {
		r := httptest.NewRequest("GET", "/v1/whoami", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		_, err := f.verifier.Authenticate(context.Background(), r, nil)
		if broker.ErrorCode(err) != "missing_token" {
			t.Errorf("Authorization %q: %v", h, err)
		}
	}
}

// replica is one broker replica's request path, as broker/app builds it:
// a verifier with its own key cache and local replay map, and an audit
// writer on the shared log, whose append records the request's token id in
// the same transaction and refuses one used before on any replica.
type replica struct {
	verifier *auth.Verifier
	audit    *audit.Writer
}

func newReplica(t *testing.T) *replica {
	w := audit.NewWriter(&auditpg.Store{Pool: testDB.Pool}, audit.WriterConfig{})
	t.Cleanup(w.Close)
	return &replica{
		verifier: &auth.Verifier{Audience: "varsel", Keys: &auth.KeyCache{Registry: testDB}, Replay: &auth.Replay{}},
		audit:    w,
	}
}

// whoami verifies tok and appends the request's audit entry, as every /v1
// request does before it answers. verified says whether the verifier
// alone let the token through.
func (r *replica) whoami(tok string) (verified bool, err error) {
	ctx := context.Background()
	p, err := r.verifier.Verify(ctx, tok, "GET", "/v1/whoami", nil)
	if err != nil {
		return false, err
	}
	_, err = r.audit.Append(ctx, &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: p.Agency, Actor: p.Sub,
		Role: p.Role, Action: "whoami", Decision: audit.Allow, PolicyVersion: "test", RequestJTI: p.JTI})
	return true, err
}

func TestVerifyReplayAcrossReplicas(t *testing.T) {
	f := newFixture(t)
	one, two := newReplica(t), newReplica(t)
	tok, _ := f.policeEd.Token(liaison, "GET", "/v1/whoami", nil)
	if _, err := one.whoami(tok); err != nil {
		t.Fatalf("first use: %v", err)
	}
	// The same replica refuses it in the verifier, from its own map.
	if verified, err := one.whoami(tok); verified || broker.ErrorCode(err) != "replayed" {
		t.Fatalf("second use on the same replica: verified %v, %v", verified, err)
	}
	// A second replica has not seen it: its verifier lets it through, and
	// the audit append refuses it (the broker answers 401 replayed).
	if verified, err := two.whoami(tok); !verified || !errors.Is(err, audit.ErrReplayed) {
		t.Fatalf("use on a second replica: verified %v, %v (want the append to refuse it)", verified, err)
	}
	// And the other way round: first used on the second replica.
	tok2, _ := f.policeEd.Token(liaison, "GET", "/v1/whoami", nil)
	if _, err := two.whoami(tok2); err != nil {
		t.Fatalf("fresh token on the second replica: %v", err)
	}
	if _, err := one.whoami(tok2); !errors.Is(err, audit.ErrReplayed) {
		t.Fatalf("replay onto the first replica: %v", err)
	}
	// Each token is in the log once: the refused uses wrote nothing.
	for _, tk := range []string{tok, tok2} {
		var claims struct{ JTI string }
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tk, ".")[1])
		_ = json.Unmarshal(payload, &claims)
		var n int
		if err := testDB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_entries WHERE request_jti = $1`, claims.JTI).Scan(&n); err != nil || n != 1 {
			t.Fatalf("token %s… in the log %d times (%v), want once", claims.JTI[:8], n, err)
		}
	}
}

// TestReplayStore covers Replay's optional shared store (one insert per
// request), which the broker does not use: it relies on the audit append.
func TestReplayStore(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	shared := &memoryJTIs{seen: map[string]bool{}}
	a, b := &auth.Replay{Store: shared}, &auth.Replay{Store: shared}
	if ok, err := a.Use(ctx, "agency", "jti-0123456789abcdef", exp); !ok || err != nil {
		t.Fatalf("first use: %v %v", ok, err)
	}
	if ok, err := b.Use(ctx, "agency", "jti-0123456789abcdef", exp); ok || err != nil {
		t.Fatalf("use on another replica: %v %v, want refused", ok, err)
	}
	if ok, _ := b.Use(ctx, "other-agency", "jti-0123456789abcdef", exp); !ok {
		t.Fatal("the same jti of another agency was refused")
	}
	// A store that fails records nothing: the retry is not a replay.
	failing := &auth.Replay{Store: failingJTIs{}}
	if _, err := failing.Use(ctx, "agency", "jti-fedcba9876543210", exp); err == nil {
		t.Fatal("a failing store's error was swallowed")
	}
	failing.Store = shared
	if ok, err := failing.Use(ctx, "agency", "jti-fedcba9876543210", exp); !ok || err != nil {
		t.Fatalf("retry after a store failure: %v %v", ok, err)
	}
}

type failingJTIs struct{}

func (failingJTIs) InsertJTI(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("store down")
}

func TestVerifyFollowsRegistry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	use := func(s *client.Signer) error {
		tok, _ := s.Token(liaison, "GET", "/v1/whoami", nil)
		_, err := f.verifier.Verify(ctx, tok, "GET", "/v1/whoami", nil)
		return err
	}
	if err := use(f.policeES); err != nil {
		t.Fatal(err)
	}
	// Retire a key: the cache serves what it read for up to its TTL, then
	// refuses the key.
	if err := testDB.RetireKey(ctx, f.police, "p-es", opEntry("agency.key.retire")); err != nil {
		t.Fatal(err)
	}
	if err := use(f.policeES); err != nil {
		t.Fatalf("within the TTL the cached key still verifies: %v", err)
	}
	f.cacheClock.Advance(cacheTTL + time.Millisecond)
	if err := use(f.policeES); broker.ErrorCode(err) != "unknown_key" {
		t.Fatalf("retired key after the TTL: %v", err)
	}
	if err := use(f.policeEd); err != nil {
		t.Fatalf("the other key still works: %v", err)
	}
	// A new key: an unknown kid makes the cache look again, at most once
	// per MinRefresh (well within the TTL).
	priv, pub, _ := auth.GenerateKey(auth.AlgES256, "p-new")
	keys, _ := auth.ParseJWKS(f.police, pub)
	if err := testDB.AddKeys(ctx, f.police, keys, opEntry("agency.key.add")); err != nil {
		t.Fatal(err)
	}
	s, _ := client.NewSigner(f.police, priv)
	if err := use(s); broker.ErrorCode(err) != "unknown_key" {
		t.Fatalf("new key within MinRefresh of the last read: %v", err)
	}
	f.cacheClock.Advance(cacheMinRefresh + time.Millisecond)
	if err := use(s); err != nil {
		t.Fatalf("new key after MinRefresh: %v", err)
	}
	// Disable the agency: refused once the TTL has passed.
	if err := testDB.SetAgencyStatus(ctx, f.police, broker.StatusDisabled, opEntry("agency.disable")); err != nil {
		t.Fatal(err)
	}
	if err := use(f.policeEd); err != nil {
		t.Fatalf("within the TTL the cached agency is still active: %v", err)
	}
	f.cacheClock.Advance(cacheTTL + time.Millisecond)
	if err := use(f.policeEd); broker.ErrorCode(err) != "agency_disabled" {
		t.Fatalf("disabled agency after the TTL: %v", err)
	}
}
