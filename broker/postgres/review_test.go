package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
	"varsel/broker/postgres"
)

// TestDetectAnomaliesInChunks: a backlog longer than one sweep chunk is
// swept in several transactions, to its end, and each signal is raised
// once however many chunks see it; a sweep that finds another replica
// sweeping moves nothing.
func TestDetectAnomaliesInChunks(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	defer postgres.SetSweepChunk(7)()
	store := &auditpg.Store{Pool: db.Pool}

	var after int64
	if err := db.Pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_entries`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	check := func(actor, subject string) *audit.Entry {
		return &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "nav-sweep", Actor: actor, Role: "caseworker",
			Office: "nav-sweep-1", Action: "check", Decision: audit.Allow, PolicyVersion: "test",
			SubjectRef: subject, Reasons: []string{}}
	}
	// cw-repeat checks one person 12 times (more than 10), cw-many 35
	// people once each (more than 30), interleaved: 47 entries, 7 chunks.
	var entries []*audit.Entry
	for i := range 35 {
		entries = append(entries, check("cw-many", fmt.Sprintf("%064x", 1000+i)))
		if i < 12 {
			entries = append(entries, check("cw-repeat", fmt.Sprintf("%064x", 7)))
		}
	}
	if _, err := store.AppendBatch(ctx, entries); err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1].Seq

	rules := broker.AnomalyRules{Window: time.Hour, MaxSubjects: 30, MaxRepeats: 10}
	// Another replica sweeping (holding the sweep lock): nothing moves.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(0x7661_7273_0002)); err != nil {
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
	rows, err := db.Pool.Query(ctx, `SELECT actor, reason FROM reviews WHERE actor_agency = 'nav-sweep' ORDER BY actor`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var actor, reason string
		if err := rows.Scan(&actor, &reason); err != nil {
			t.Fatal(err)
		}
		got = append(got, actor+":"+reason)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[cw-many:many_subjects cw-repeat:repeated_subject]" {
		t.Fatalf("reviews %v; want one many_subjects for cw-many and one repeated_subject for cw-repeat", got)
	}

	// Swept again from the start: the same signals, nothing new.
	if _, raised, err = db.DetectAnomalies(ctx, after, rules); err != nil || raised != 0 {
		t.Fatalf("second sweep raised %d, %v; want 0, nil", raised, err)
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
	var after int64
	if err := db.Pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_entries`).Scan(&after); err != nil {
		t.Fatal(err)
	}
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
		entries = append(entries, &audit.Entry{TS: audit.FormatTime(ts), ActorAgency: "nav-boundary", Actor: actor,
			Role: "caseworker", Office: "nav-boundary-1", Action: "check", Decision: audit.Allow, PolicyVersion: "test",
			SubjectRef: fmt.Sprintf("%064x", 5000+i), Reasons: []string{}})
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
	var got []string
	rows, err := db.Pool.Query(ctx, `SELECT actor FROM reviews WHERE actor_agency = 'nav-boundary' AND reason = 'off_hours' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[cw-night-6 cw-night-7 cw-night-13]" {
		t.Fatalf("off-hours reviews for %v; want the three night checks", got)
	}
}
