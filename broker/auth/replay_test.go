package auth

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestReplayLocalSet(t *testing.T) {
	ctx := context.Background()
	r := &Replay{}
	exp := time.Now().Add(5 * time.Minute)
	use := func(agency, jti string, exp time.Time) bool {
		t.Helper()
		ok, err := r.Use(ctx, agency, jti, exp)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !use("nav-1", "jti-aaaaaaaaaaaaaaaa", exp) {
		t.Fatal("first use refused")
	}
	if use("nav-1", "jti-aaaaaaaaaaaaaaaa", exp) {
		t.Fatal("second use allowed")
	}
	// The same id with another expiry is the same token id.
	if use("nav-1", "jti-aaaaaaaaaaaaaaaa", exp.Add(time.Minute)) {
		t.Fatal("reuse with another expiry allowed")
	}
	// Ids are per agency, and the separator keeps (a, bc) from (ab, c).
	if !use("police-1", "jti-aaaaaaaaaaaaaaaa", exp) || !use("nav-1j", "ti-aaaaaaaaaaaaaaaa", exp) {
		t.Fatal("another agency's id refused")
	}

	// Ids of expired tokens are dropped with their bucket, whole.
	past := time.Now().Add(-time.Minute)
	for i := range 1000 {
		use("nav-1", fmt.Sprintf("old-%016d", i), past)
	}
	use("nav-1", "jti-bbbbbbbbbbbbbbbb", exp) // sweeps
	r.mu.Lock()
	n, buckets := 0, len(r.buckets)
	for _, ids := range r.buckets {
		n += len(ids)
	}
	r.mu.Unlock()
	if n != 4 || buckets > 2 {
		t.Fatalf("%d ids in %d buckets after the sweep, want the 4 live ones", n, buckets)
	}
	if use("nav-1", "jti-bbbbbbbbbbbbbbbb", exp) {
		t.Fatal("live id forgotten by the sweep")
	}
}

// BenchmarkReplayUse records fresh ids, as a replica does at its request
// rate, and reports the heap each id held once a million are recorded.
func BenchmarkReplayUse(b *testing.B) {
	ctx := context.Background()
	r := &Replay{}
	exp := time.Now().Add(5 * time.Minute)
	jtis := make([]string, 1_000_000)
	for i := range jtis {
		jtis[i] = fmt.Sprintf("bench-%022d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, j := range jtis {
		if ok, _ := r.Use(ctx, "nav-state-1", j, exp); !ok {
			b.Fatal("fresh id refused")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if ok, _ := r.Use(ctx, "nav-state-1", jtis[i%len(jtis)], exp); ok {
			b.Fatal("repeat allowed")
		}
		i++
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(jtis)), "heap-B/id")
}
