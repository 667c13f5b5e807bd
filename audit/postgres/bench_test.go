package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

var benchN atomic.Int64

func benchEntry() *audit.Entry {
	n := benchN.Add(1)
	return &audit.Entry{
		TS: audit.FormatTime(time.Now()), ActorAgency: "nav-bench", Actor: "caseworker-1", Role: "caseworker",
		Office: "nav-grorud", Action: "check", Decision: audit.Allow, LegalBasis: "navl-7",
		SubjectRef:    "5f1c0c6fd2f0c1d2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6",
		PolicyVersion: "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c",
		RequestJTI:    fmt.Sprintf("bench-jti-%d-%d", time.Now().UnixNano(), n),
	}
}

// BenchmarkAppend compares group commit (the Writer) with one transaction
// per entry (AppendBatch of one), for 1 and 64 concurrent callers, on the
// real database with synchronous_commit on.
func BenchmarkAppend(b *testing.B) {
	url, _ := freshDB(b)
	pool := runtimePool(b, url)
	store := &auditpg.Store{Pool: pool}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()
	modes := map[string]func(context.Context) error{
		"group-commit": func(ctx context.Context) error { _, err := w.Append(ctx, benchEntry()); return err },
		"tx-per-entry": func(ctx context.Context) error {
			_, err := store.AppendBatch(ctx, []*audit.Entry{benchEntry()})
			return err
		},
	}
	for _, mode := range []string{"group-commit", "tx-per-entry"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", mode, callers), func(b *testing.B) {
				appendOne := modes[mode]
				ctx := context.Background()
				start := time.Now()
				if callers == 1 {
					for i := 0; i < b.N; i++ {
						if err := appendOne(ctx); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism((callers + 1) / 2) // GOMAXPROCS is 2 here: 64 goroutines
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := appendOne(ctx); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
			})
		}
	}
}

// BenchmarkVerify measures `varsel audit verify`'s core over 200,000
// entries read from the database.
func BenchmarkVerify(b *testing.B) {
	url, _ := freshDB(b)
	store := &auditpg.Store{Pool: runtimePool(b, url)}
	const n = 200_000
	ctx := context.Background()
	// Seeded through AppendBatch, the log's own write path, in large batches.
	for done := 0; done < n; {
		batch := make([]*audit.Entry, min(10_000, n-done))
		for i := range batch {
			e := benchEntry()
			e.FlagIDs = []string{fmt.Sprintf("flag-%d", (done+i+1)%1000)}
			e.Reasons = []string{"audience_and_basis"}
			batch[i] = e
		}
		if _, err := store.AppendBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		done += len(batch)
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	for i := 0; i < b.N; i++ {
		rep, err := audit.Verify(ctx, store, nil, "")
		if err != nil || !rep.OK() || rep.Entries != n {
			b.Fatalf("%+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "entries/s")
	// The CPU this process spent per entry (PostgreSQL's not included):
	// steadier than the rate on a shared machine.
	b.ReportMetric((processCPU()-cpu0).Seconds()*1e6/float64(n*b.N), "cpu-µs/entry")
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
