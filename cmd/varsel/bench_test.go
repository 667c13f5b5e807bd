package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"varsel/broker/client"
)

// BenchmarkCheckHandler measures POST /v1/checks end to end on the
// in-process broker: signing (in the client), HTTP over loopback, the
// verifier, the batched flag lookup, one policy evaluation and the
// group-committed audit append on the real database, from 64 concurrent
// callers. One flagged and one unflagged person alternate.
func BenchmarkCheckHandler(b *testing.B) {
	w := newWorld(b, func(c *Config) { c.OfficeHours = "" })
	if _, resp := w.issue(w.liaison(), flagBody(personA)); resp.Status != 201 {
		b.Fatal(resp.Status)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	bodies := [][]byte{
		[]byte(`{"subject":"` + personA + `","purpose":"meeting"}`),
		[]byte(`{"subject":"` + personB + `","purpose":"meeting"}`),
	}
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := &client.Client{BaseURL: w.base, HTTP: hc, Signer: w.navState,
			Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-grorud"}}
		i := 0
		for pb.Next() {
			resp, err := c.Do(context.Background(), "POST", "/v1/checks", bodies[i%2])
			if err != nil || resp.Status != 200 {
				b.Error(fmt.Sprint(err, resp))
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
}
