package bench

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"varsel/broker/auth"
	"varsel/broker/client"
)

// TestStackServer: with --verify the reference answers only a request
// whose token is signed by a key it was given; without, every request.
func TestStackServer(t *testing.T) {
	for _, alg := range []string{auth.AlgES256, auth.AlgEdDSA} {
		priv, pub, err := auth.GenerateKey(alg, "nav-1-1")
		if err != nil {
			t.Fatal(err)
		}
		ks, err := auth.ParseJWKS("nav-1", pub)
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := json.Marshal([]stackKey{{KID: ks[0].KID, Alg: ks[0].Alg, JWK: ks[0].JWK}})
		signer, err := client.NewSigner("nav-1", priv)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"subject":"x","purpose":"meeting"}`)
		tok, err := signer.Token(client.Employee{Sub: "cw-1", Role: "caseworker", Office: "0301"}, "POST", "/v1/checks", body)
		if err != nil {
			t.Fatal(err)
		}
		// The last signature character changed: the same length, another signature.
		last := tok[len(tok)-1]
		other := byte('A')
		if last == 'A' {
			other = 'Q'
		}
		forged := tok[:len(tok)-1] + string(other)
		otherPriv, _, _ := auth.GenerateKey(alg, "nav-1-1") // same kid, a key the server was not given
		otherSigner, _ := client.NewSigner("nav-1", otherPriv)
		foreign, _ := otherSigner.Token(client.Employee{Sub: "cw-1", Role: "caseworker", Office: "0301"}, "POST", "/v1/checks", body)

		for _, verify := range []bool{false, true} {
			h, err := StackServer(keys, verify)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name, token string
				want        int
			}{{"signed", tok, 200}, {"forged", forged, 401}, {"other key", foreign, 401}, {"no token", "", 401}, {"not a JWS", "abc", 401}} {
				want := c.want
				if !verify {
					want = 200
				}
				req := httptest.NewRequest("POST", "/v1/checks", bytes.NewReader(body))
				if c.token != "" {
					req.Header.Set("Authorization", "Bearer "+c.token)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != want {
					t.Errorf("%s verify=%v %s: status %d, want %d", alg, verify, c.name, rec.Code, want)
				}
				if want == http.StatusOK && (!bytes.Equal(rec.Body.Bytes(), stackAnswer) || !strings.Contains(rec.Header().Get("Content-Type"), "application/json")) {
					t.Errorf("%s verify=%v %s: answer %q", alg, verify, c.name, rec.Body)
				}
			}
		}
	}
}
