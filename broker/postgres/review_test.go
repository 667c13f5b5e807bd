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
