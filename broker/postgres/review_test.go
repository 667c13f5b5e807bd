package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
	"varsel/broker/postgres"
)

// logEnd is the seq of the log's last entry (0 when empty).
func logEnd(t *testing.T, db *postgres.DB) int64 {
	t.Helper()
	var seq int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT coalesce(max(seq), 0) FROM audit_entries`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// reviewed lists what query (one text column) returns about the reviews.
func reviewed(t *testing.T, db *postgres.DB, query string) string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(got)
}

// sweepCheck is a check by actor of agency, of subject, at ts.
func sweepCheck(agency, actor, subject string, ts time.Time) *audit.Entry {
	return &audit.Entry{TS: audit.FormatTime(ts), ActorAgency: agency, Actor: actor, Role: "caseworker",
		Office: agency + "-1", Action: "check", Decision: audit.Allow, PolicyVersion: "test",
		SubjectRef: subject, Reasons: []string{}}
}

// manyAndRepeat appends a backlog of 47 checks by agency's employees,
// interleaved: cw-many checks 35 people once each (more than 30), cw-repeat
// one person 12 times (more than 10). It returns the log's end before
// them and the last one's seq.
func manyAndRepeat(t *testing.T, db *postgres.DB, agency string) (after, last int64) {
	t.Helper()
	after = logEnd(t, db)
	var entries []*audit.Entry
	for i := range 35 {
		entries = append(entries, sweepCheck(agency, "cw-many", fmt.Sprintf("%064x", 1000+i), time.Now()))
		if i < 12 {
			entries = append(entries, sweepCheck(agency, "cw-repeat", fmt.Sprintf("%064x", 7), time.Now()))
		}
	}
	if _, err := (&auditpg.Store{Pool: db.Pool}).AppendBatch(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	return after, entries[len(entries)-1].Seq
}

// TestDetectAnomaliesInChunks: a backlog longer than one sweep chunk is
// swept in several transactions, to its end, and each signal is raised
// once however many chunks see it; a sweep that finds another replica
// sweeping moves nothing.
func TestDetectAnomaliesInChunks(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	defer postgres.SetSweepChunk(7)()
	after, last := manyAndRepeat(t, db, "nav-sweep") // 7 chunks

	rules := broker.AnomalyRules{Window: time.Hour, MaxSubjects: 30, MaxRepeats: 10}
	// Another replica sweeping (holding the sweep lock): nothing moves.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.SweepLock); err != nil {
		t.Fatal(err)
	}
	upTo, raised, err := db.DetectAnomalies(ctx, after, rules)
	if err != nil || upTo != after || raised != 0 {
		t.Fatalf("with the sweep lock held elsewhere: up to %d, raised %d, %v; want %d, 0, nil", upTo, raised, err, after)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	upTo, raised, err = db.DetectAnomalies(ctx, after, rules)
	if err != nil {
		t.Fatal(err)
	}
	if upTo != last {
		t.Fatalf("swept up to %d; want the log's end %d (47 entries in chunks of 7)", upTo, last)
	}
	if raised != 2 {
		t.Fatalf("raised %d reviews; want 2 (many subjects, repeated subject)", raised)
	}
	got := reviewed(t, db, `SELECT actor || ':' || reason FROM reviews WHERE actor_agency = 'nav-sweep' ORDER BY actor`)
	if got != "[cw-many:many_subjects cw-repeat:repeated_subject]" {
		t.Fatalf("reviews %v; want one many_subjects for cw-many and one repeated_subject for cw-repeat", got)
	}

	// Swept again from the start: the same signals, nothing new.
	if _, raised, err = db.DetectAnomalies(ctx, after, rules); err != nil || raised != 0 {
		t.Fatalf("second sweep raised %d, %v; want 0, nil", raised, err)
	}
}

// TestDetectAnomaliesLockTakenBetweenChunks: when another replica takes
// the sweep lock between two chunks, the sweep stops where its last chunk
// ended, and the next sweep from there goes on to the end, with the
// same reviews as one sweep that was never interrupted.
func TestDetectAnomaliesLockTakenBetweenChunks(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	defer postgres.SetSweepChunk(7)()
	after, last := manyAndRepeat(t, db, "nav-lock") // 7 chunks

	// After the second chunk, another replica takes the lock and keeps it
	// until this sweep has returned.
	var other pgx.Tx
	chunks := 0
	restore := postgres.SetBetweenChunks(func(int64) {
		if chunks++; chunks == 2 {
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.SweepLock); err != nil {
				t.Error(err)
			}
			other = tx
		}
	})
	rules := broker.AnomalyRules{Window: time.Hour, MaxSubjects: 30, MaxRepeats: 10}
	upTo, _, err := db.DetectAnomalies(ctx, after, rules)
	restore()
	if other == nil {
		t.Fatal("the other replica never took the lock")
	}
	if err := other.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err != nil || upTo != after+14 {
		t.Fatalf("with the lock taken after two chunks: up to %d, %v; want %d (two chunks of 7), nil", upTo, err, after+14)
	}

	upTo, _, err = db.DetectAnomalies(ctx, upTo, rules)
	if err != nil || upTo != last {
		t.Fatalf("the next sweep got to %d, %v; want the log's end %d", upTo, err, last)
	}
	got := reviewed(t, db, `SELECT actor || ':' || reason FROM reviews WHERE actor_agency = 'nav-lock' ORDER BY actor`)
	if got != "[cw-many:many_subjects cw-repeat:repeated_subject]" {
		t.Fatalf("reviews %v; want one many_subjects for cw-many and one repeated_subject for cw-repeat", got)
	}
}

// TestDetectAnomaliesChunkBoundaries: entries on either side of a chunk
// boundary, and the last one, are each swept once: three checks at night
// (at seqs 7, 8 and 14 of 14, in chunks of 7) give three off-hours
// reviews, the daytime checks none.
func TestDetectAnomaliesChunkBoundaries(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	defer postgres.SetSweepChunk(7)()
	store := &auditpg.Store{Pool: db.Pool}
	after := logEnd(t, db)
	oslo, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Fatal(err)
	}
	day, night := time.Date(2026, 12, 1, 12, 0, 0, 0, oslo), time.Date(2026, 12, 1, 3, 0, 0, 0, oslo)
	var entries []*audit.Entry
	for i := range 14 {
		actor, ts := fmt.Sprintf("cw-day-%d", i), day
		if i == 6 || i == 7 || i == 13 {
			actor, ts = fmt.Sprintf("cw-night-%d", i), night
		}
		entries = append(entries, sweepCheck("nav-boundary", actor, fmt.Sprintf("%064x", 5000+i), ts))
	}
	if _, err := store.AppendBatch(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if entries[0].Seq != after+1 {
		t.Fatalf("first entry at %d, want %d (another test appending?)", entries[0].Seq, after+1)
	}
	rules := broker.AnomalyRules{Window: time.Hour, MaxSubjects: 30, MaxRepeats: 10,
		Hours: broker.OfficeHours{Enabled: true, Start: 7, End: 18, TimeZone: "Europe/Oslo"}}
	upTo, _, err := db.DetectAnomalies(ctx, after, rules)
	if err != nil || upTo != entries[13].Seq {
		t.Fatalf("swept up to %d (%v); want %d", upTo, err, entries[13].Seq)
	}
	got := reviewed(t, db, `SELECT actor FROM reviews WHERE actor_agency = 'nav-boundary' AND reason = 'off_hours' ORDER BY seq`)
	if got != "[cw-night-6 cw-night-7 cw-night-13]" {
		t.Fatalf("off-hours reviews for %v; want the three night checks", got)
	}
}
