package postgres_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

// TestStoreRejectsUnstorable: PostgreSQL refuses a NUL in text; the store
// says the entry was rejected (not that the log is unavailable).
func TestStoreRejectsUnstorable(t *testing.T) {
	url, _ := freshDB(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	for name, bad := range map[string]func(*audit.Entry){
		"NUL in actor":   func(e *audit.Entry) { e.Actor = "a\x00b" },
		"NUL in reasons": func(e *audit.Entry) { e.Reasons = []string{"x\x00"} },
		"unparsable ts":  func(e *audit.Entry) { e.TS = "yesterday" },
	} {
		e := entry("store", 1)
		bad(e)
		if _, err := store.AppendBatch(context.Background(), []*audit.Entry{entry("store", 0), e}); !errors.Is(err, audit.ErrRejected) {
			t.Errorf("%s: %v, want ErrRejected", name, err)
		}
	}
}

// gatedStore is the real store whose first batch waits for a release, so
// that the test can line up the next batch.
type gatedStore struct {
	*auditpg.Store
	first   chan int      // the first batch's size, once it arrives
	release chan struct{} // closed to let it go on
	once    sync.Once
}

func (g *gatedStore) AppendBatch(ctx context.Context, entries []*audit.Entry) ([]int, error) {
	g.once.Do(func() {
		g.first <- len(entries)
		<-g.release
	})
	return g.Store.AppendBatch(ctx, entries)
}

// TestWriterIsolatesRejectedEntry: one entry the log cannot store, queued
// among many good ones in the same batch, fails alone.
func TestWriterIsolatesRejectedEntry(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	g := &gatedStore{Store: &auditpg.Store{Pool: runtimePool(t, url)}, first: make(chan int, 1), release: make(chan struct{})}
	w := audit.NewWriter(g, audit.WriterConfig{})
	defer w.Close()

	const good = 40
	errs := make([]error, good+2)
	var wg sync.WaitGroup
	appendOne := func(i int) {
		defer wg.Done()
		e := entry("load", i)
		if i == good {
			e.TS = "not a time" // passes Storable, refused by the store
		}
		_, errs[i] = w.Append(ctx, e)
	}
	// A first entry takes the writer into the gate; everything else queues
	// behind it and goes in the next batch together.
	wg.Add(1)
	go appendOne(good + 1)
	if n := <-g.first; n != 1 {
		t.Fatalf("first batch of %d", n)
	}
	for i := range good + 1 {
		wg.Add(1)
		go appendOne(i)
	}
	for w.Queued() < good+1 {
		runtime.Gosched() // in-process goroutines enqueueing; no timer involved
	}
	close(g.release)
	wg.Wait()
	for i, err := range errs {
		if i != good && err != nil {
			t.Fatalf("good entry %d failed: %v", i, err)
		}
	}
	if !errors.Is(errs[good], audit.ErrRejected) || errors.Is(errs[good], audit.ErrUnavailable) {
		t.Fatalf("bad entry: %v, want ErrRejected only", errs[good])
	}
	var n int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil || n != good+1 {
		t.Fatalf("%d entries stored (%v), want %d", n, err, good+1)
	}
	rep, err := audit.Verify(ctx, g.Store, nil, "")
	if err != nil || !rep.OK() {
		t.Fatalf("chain after isolation: %+v %v", rep, err)
	}
}

// TestWriterRefusesNULBeforeQueueing: an entry with a NUL never reaches a
// batch.
func TestWriterRefusesNULBeforeQueueing(t *testing.T) {
	url, _ := freshDB(t)
	w := audit.NewWriter(&auditpg.Store{Pool: runtimePool(t, url)}, audit.WriterConfig{})
	defer w.Close()
	for _, bad := range []func(*audit.Entry){
		func(e *audit.Entry) { e.Actor = "x\x00" },
		func(e *audit.Entry) { e.RequestJTI = "j\x1b[0m" },
		func(e *audit.Entry) { e.Justification = "ok\u0085" },
		func(e *audit.Entry) { e.FlagIDs = []string{"f\x7f"} },
	} {
		e := entry("nul", 0)
		bad(e)
		if _, err := w.Append(context.Background(), e); !errors.Is(err, audit.ErrRejected) {
			t.Fatalf("%+v: %v", e, err)
		}
	}
	e := entry("ok", 0)
	e.Justification = "line one\nline two\tend"
	if _, err := w.Append(context.Background(), e); err != nil {
		t.Fatalf("justification with a line break: %v", err)
	}
}
