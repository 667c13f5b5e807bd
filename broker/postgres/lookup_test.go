package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"varsel/broker"
	"varsel/broker/postgres"
)

// TestFlagLookups runs many concurrent lookups through the batching
// collector: each gets exactly its own subjects' active flags valid at its
// own time, none of another lookup's, whatever batch it shared.
func TestFlagLookups(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	if err := db.CreateAgency(ctx, &broker.Agency{ID: "police-lookups", Kind: broker.KindPolice, Name: "Lookups"}, newKeys(t, "police-lookups", "k1"), opEntry("agency.add")); err != nil {
		t.Fatal(err)
	}
	const people = 40
	flagOf := map[string]string{} // subject ref → its flag id
	for i := range people {
		ref := fmt.Sprintf("%064x", 0xf1a90000+i)
		f := &broker.Flag{ID: fmt.Sprintf("00000000-0000-4000-8000-%012x", 0xf1a90000+i), SubjectRef: ref, Issuer: "police-lookups",
			IssuerKind: broker.KindPolice, IssuedBy: "officer", Level: "high", Categories: []string{"threats"}, Precautions: []string{"two-staff"},
			ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(time.Duration(1+i%2) * time.Hour), LegalBasis: "politiregl-27-2",
			Audience: broker.Audience{Kinds: []string{"nav-state"}}, Contact: broker.Contact{Unit: "unit", Phone: "+47 22 00 00 00"}}
		if err := db.CreateFlag(ctx, f, opEntry("flag.issue")); err != nil {
			t.Fatal(err)
		}
		flagOf[ref] = f.ID
	}
	l := postgres.NewFlagLookups(db, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for n := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := (n / 2) % people
			ref := fmt.Sprintf("%064x", 0xf1a90000+i)
			unflagged := fmt.Sprintf("%064x", 0xdead0000+n)
			// Half of the lookups are made 90 minutes on: only the flags
			// valid for two hours are still valid then.
			at := now
			if n%2 == 1 {
				at = now.Add(90 * time.Minute)
			}
			got, err := l.ActiveFlags(ctx, []string{unflagged, ref}, at)
			if err != nil {
				errs <- err
				return
			}
			want := 1
			if n%2 == 1 && i%2 == 0 {
				want = 0 // valid for one hour only
			}
			if len(got) != want || (want == 1 && got[0].ID != flagOf[ref]) {
				errs <- fmt.Errorf("lookup %d of %s at %s: %d flags %v, want %d", n, ref[56:], at.Sub(now), len(got), got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l.Close()
	if _, err := l.ActiveFlags(ctx, []string{"x"}, now); err == nil {
		t.Fatal("a lookup after Close succeeded")
	}
}
