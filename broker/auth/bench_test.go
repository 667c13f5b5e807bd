package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/client"
)

// BenchmarkVerify measures one request verification: header checks, key
// lookup in a warm cache, signature, claims and the local replay map, with
// the replay guard as the broker runs it (no shared store: across replicas
// the audit append refuses a replay), so the figure is the CPU cost alone.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{auth.AlgES256, auth.AlgEdDSA} {
		b.Run(alg, func(b *testing.B) {
			priv, pub, _ := auth.GenerateKey(alg, "k")
			ks, _ := auth.ParseJWKS("bench-agency", pub)
			jwk, _ := auth.ParsePublicJWK(ks[0].JWK)
			keys := &staticKeys{
				agency: &broker.Agency{ID: "bench-agency", Kind: broker.KindNAVState, Offices: []string{"nav-x"}, Status: "active"},
				keys:   map[string]*jose.JSONWebKey{"k": jwk},
			}
			v := &auth.Verifier{Audience: "varsel", Keys: keys, Replay: &auth.Replay{}}
			s, _ := client.NewSigner("bench-agency", priv)
			body := []byte(`{"subject":"01417012326","purpose":"meeting"}`)
			emp := client.Employee{Sub: "caseworker-1", Role: "caseworker", Office: "nav-x"}
			tokens := make([]string, b.N)
			for i := range tokens {
				tokens[i], _ = s.Token(emp, "POST", "/v1/checks", body)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(ctx, tokens[i], "POST", "/v1/checks", body); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "verifies/s")
		})
	}
}
