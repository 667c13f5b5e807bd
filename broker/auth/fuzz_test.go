package auth_test

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/client"
)

// staticKeys serves one agency's keys from memory: the fuzzer exercises
// parsing and verification, not the database.
type staticKeys struct {
	agency *broker.Agency
	keys   map[string]*jose.JSONWebKey
}

func (s *staticKeys) Lookup(_ context.Context, id, kid string) (*broker.Agency, *jose.JSONWebKey, error) {
	if id != s.agency.ID {
		return nil, nil, broker.Errorf(broker.ENOTFOUND, "no agency")
	}
	return s.agency, s.keys[kid], nil
}

// memoryJTIs is a shared replay store in memory, for Replay's Store option.
type memoryJTIs struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (m *memoryJTIs) InsertJTI(_ context.Context, agency, jti string, _ time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[agency+"\x00"+jti] {
		return false, nil
	}
	m.seen[agency+"\x00"+jti] = true
	return true, nil
}

// FuzzVerify feeds the verifier arbitrary tokens and bodies. It must never
// panic, and whatever it accepts must carry a valid ES256 or EdDSA signature
// by the registered key over exactly the claims it returned.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_900_000_000, 0)
	var signers []*client.Signer
	keys := map[string]*jose.JSONWebKey{}
	for _, k := range []struct{ alg, kid string }{{auth.AlgES256, "es"}, {auth.AlgEdDSA, "ed"}} {
		priv, pub, err := auth.GenerateKey(k.alg, k.kid)
		if err != nil {
			f.Fatal(err)
		}
		ks, _ := auth.ParseJWKS("fuzz-agency", pub)
		jwk, _ := auth.ParsePublicJWK(ks[0].JWK)
		keys[k.kid] = jwk
		s, _ := client.NewSigner("fuzz-agency", priv)
		s.Now = func() time.Time { return now }
		signers = append(signers, s)
	}
	store := &staticKeys{agency: &broker.Agency{ID: "fuzz-agency", Kind: broker.KindNAVState, Offices: []string{"nav-x"}, Status: "active"}, keys: keys}
	v := &auth.Verifier{Audience: "varsel", Keys: store, Replay: &auth.Replay{}, Now: func() time.Time { return now }}

	emp := client.Employee{Sub: "s", Role: "caseworker", Office: "nav-x"}
	for _, s := range signers {
		tok, _ := s.Token(emp, "POST", "/v1/checks", []byte(`{}`))
		f.Add(tok, []byte(`{}`))
		parts := strings.Split(tok, ".")
		f.Add(parts[0]+"."+parts[1]+".", []byte(`{}`))                                                       // stripped signature
		f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))+"."+parts[1]+".", []byte(`{}`)) // alg none
		f.Add(parts[0]+"."+parts[1]+"."+parts[2][:len(parts[2])-2]+"AA", []byte(`{}`))                       // altered signature
	}
	f.Add("", []byte(nil))
	f.Add("a.b.c", []byte("x"))

	f.Fuzz(func(t *testing.T, token string, body []byte) {
		p, err := v.Verify(context.Background(), token, "POST", "/v1/checks", body)
		if err != nil {
			if broker.ErrorKind(err) != broker.EUNAUTHORIZED {
				t.Fatalf("refusal of kind %q, want unauthorized: %v", broker.ErrorKind(err), err)
			}
			return
		}
		jws, perr := jose.ParseSigned(token, auth.AllowedAlgs)
		if perr != nil || len(jws.Signatures) != 1 {
			t.Fatalf("accepted a token that is not a single-signature JWS: %v", perr)
		}
		if _, verr := jws.Verify(keys[p.KID]); verr != nil {
			t.Fatalf("accepted a token whose signature does not verify: %v", verr)
		}
		if p.Agency != "fuzz-agency" || p.Office != "nav-x" {
			t.Fatalf("accepted principal %+v", p)
		}
	})
}
