package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker"
	"varsel/broker/auth"
)

// spellingAgency is an agency whose private key the test holds, so it can
// sign tokens with any header and claims bytes it likes.
type spellingAgency struct {
	id, kid string
	key     *ecdsa.PrivateKey
}

func newSpellingAgency(t *testing.T, kind broker.AgencyKind, offices ...string) *spellingAgency {
	t.Helper()
	a := &spellingAgency{id: fmt.Sprintf("spell-%s-%d", kind, time.Now().UnixNano()%1e9), kid: "s-1"}
	priv, pub, err := auth.GenerateKey(auth.AlgES256, a.kid)
	if err != nil {
		t.Fatal(err)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(priv, &jwk); err != nil {
		t.Fatal(err)
	}
	a.key = jwk.Key.(*ecdsa.PrivateKey)
	keys, err := auth.ParseJWKS(a.id, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := testDB.CreateAgency(context.Background(), &broker.Agency{ID: a.id, Kind: kind, Name: a.id, Offices: offices}, keys, opEntry("agency.add")); err != nil {
		t.Fatal(err)
	}
	return a
}

// sign makes a compact ES256 JWS of exactly these header and claims bytes.
func (a *spellingAgency) sign(t *testing.T, header, claims string) string {
	t.Helper()
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

var jtiN atomic.Int64

// claims are valid whoami claims with the members replaced by extra
// (raw JSON text appended verbatim, so duplicates and spellings survive).
func (a *spellingAgency) claims(sub, role, office, extra string) string {
	now := time.Now().Unix()
	c := fmt.Sprintf(`{"iss":%q,"sub":%s,"aud":"varsel","iat":%d,"exp":%d,"jti":"jti-spelling-%016d","htm":"GET","htu":"/v1/whoami","bsh":%q,"role":%q`,
		a.id, sub, now, now+60, jtiN.Add(1), auth.BodyHash(nil), role)
	if office != "" {
		c += fmt.Sprintf(`,"office":%q`, office)
	}
	return c + extra + "}"
}

func (a *spellingAgency) header(extra string) string {
	return fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":%q%s}`, a.kid, auth.TokenType, extra)
}

// TestExactSpelling attacks the verifier with tokens whose header or claims
// are spelled to make it read something other than what it checks.
func TestExactSpelling(t *testing.T) {
	police := newSpellingAgency(t, broker.KindPolice)
	nav := newSpellingAgency(t, broker.KindNAVState, "spell-office")
	v := &auth.Verifier{Audience: "varsel", Keys: &auth.KeyCache{Registry: testDB}, Replay: &auth.Replay{}}
	ctx := context.Background()
	verify := func(tok string) error {
		_, err := v.Verify(ctx, tok, "GET", "/v1/whoami", nil)
		return err
	}
	// The unmodified token works, so each refusal below is the change's.
	if err := verify(police.sign(t, police.header(""), police.claims(`"liaison-1"`, "police-liaison", "", ""))); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	for _, tc := range []struct {
		name, header, claims, code string
		a                          *spellingAgency
	}{
		{"typ overridden by TYP", police.header(`,"TYP":"JWT"`), "", broker.CodeMalformedToken, police},
		{"typ given twice", police.header(`,"typ":"JWT"`), "", broker.CodeMalformedToken, police},
		{"b64 false without crit", police.header(`,"b64":false`), "", broker.CodeMalformedToken, police},
		{"empty crit", police.header(`,"crit":[]`), "", broker.CodeMalformedToken, police},
		{"crit b64", police.header(`,"b64":false,"crit":["b64"]`), "", broker.CodeMalformedToken, police},
		{"jwk injected", police.header(`,"jwk":{"kty":"EC"}`), "", broker.CodeMalformedToken, police},
		{"second role wins", "", police.claims(`"liaison-1"`, "police-liaison", "", `,"role":"privacy-officer"`), broker.CodeBadClaims, police},
		{"ISS as iss", "", strings.Replace(police.claims(`"liaison-1"`, "police-liaison", "", ""), `"iss"`, `"ISS"`, 1), broker.CodeBadClaims, police},
		{"Sub as sub", "", strings.Replace(police.claims(`"liaison-1"`, "police-liaison", "", ""), `"sub"`, `"Sub"`, 1), broker.CodeBadClaims, police},
		{"sub upper case", "", police.claims(`"Liaison-1"`, "police-liaison", "", ""), broker.CodeBadClaims, police},
		{"sub padded", "", police.claims(`" liaison-1"`, "police-liaison", "", ""), broker.CodeBadClaims, police},
		{"sub zero-width", "", police.claims(`"liaison\u200b-1"`, "police-liaison", "", ""), broker.CodeBadClaims, police},
		{"sub look-alike", "", police.claims(`"lіaison-1"`, "police-liaison", "", ""), broker.CodeBadClaims, police}, // Cyrillic і
		{"sub NUL", "", police.claims(`"liaison\u0000"`, "police-liaison", "", ""), broker.CodeBadClaims, police},
		{"jti NUL", "", strings.Replace(police.claims(`"liaison-1"`, "police-liaison", "", ""), `"jti":"jti-`, `"jti":"\u0000jti-`, 1), broker.CodeBadClaims, police},
		{"office escape", "", nav.claims(`"cw-1"`, "caseworker", "spell-office\u001b", ""), broker.CodeBadClaims, nav},
		{"police health worker", "", police.claims(`"hw-1"`, "health-worker", "", ""), broker.CodeBadClaims, police},
		{"NAV police liaison", "", nav.claims(`"x-1"`, "police-liaison", "", ""), broker.CodeBadClaims, nav},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, c := tc.header, tc.claims
			if h == "" {
				h = tc.a.header("")
			}
			if c == "" {
				c = tc.a.claims(`"liaison-1"`, "police-liaison", "", "")
			}
			err := verify(tc.a.sign(t, h, c))
			if broker.ErrorCode(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
}

// countingRegistry counts how often the registry is read.
type countingRegistry struct {
	auth.Registry
	reads atomic.Int64
}

func (r *countingRegistry) Agencies(ctx context.Context) ([]*broker.Agency, error) {
	r.reads.Add(1)
	return r.Registry.Agencies(ctx)
}

// TestUnknownIssuersCostNothing: a flood of invented issuers within one
// MinRefresh makes no registry read and does not push the real agencies
// out.
func TestUnknownIssuersCostNothing(t *testing.T) {
	police := newSpellingAgency(t, broker.KindPolice)
	reg := &countingRegistry{Registry: testDB}
	now := time.Now()
	cache := &auth.KeyCache{Registry: reg, TTL: time.Hour, MinRefresh: time.Hour, Now: func() time.Time { return now }}
	ctx := context.Background()
	if a, k, err := cache.Lookup(ctx, police.id, police.kid); err != nil || a == nil || k == nil {
		t.Fatalf("real agency: %v %v %v", a, k, err)
	}
	for i := range 20000 {
		if _, _, err := cache.Lookup(ctx, fmt.Sprintf("invented-%d", i), "k"); broker.ErrorKind(err) != broker.ENOTFOUND {
			t.Fatalf("invented issuer %d: %v", i, err)
		}
	}
	if a, k, err := cache.Lookup(ctx, police.id, police.kid); err != nil || a == nil || k == nil {
		t.Fatalf("real agency after the flood: %v %v %v", a, k, err)
	}
	if n := reg.reads.Load(); n != 1 {
		t.Fatalf("%d registry reads for one real agency and 20,000 invented issuers, want 1", n)
	}
	// A key added since is found after MinRefresh, in one more read.
	now = now.Add(2 * time.Hour)
	if _, _, err := cache.Lookup(ctx, police.id, "no-such-kid"); err != nil {
		t.Fatal(err)
	}
	if n := reg.reads.Load(); n != 2 {
		t.Fatalf("%d reads after the TTL, want 2", n)
	}
}
