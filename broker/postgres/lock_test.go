package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockKeySerialises(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	unlock, err := db.LockKey(ctx, "emergency/a/b")
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		u, err := db.LockKey(ctx, "emergency/a/b")
		if err == nil {
			got.Store(true)
			u()
		}
		close(done)
	}()
	// Wait until Postgres shows the second session blocked on the lock.
	// That state is Postgres's, outside this process, so it is polled
	// (with a deadline) rather than awaited.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'
			  AND query LIKE '%pg_advisory_lock(%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case <-done:
			t.Fatalf("the second LockKey returned (got the lock: %v) while the first held it", got.Load())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions waiting on the lock after 10 s, want 1", waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got.Load() {
		t.Fatal("a second holder got the lock")
	}
	unlock()
	<-done
	if !got.Load() {
		t.Fatal("the lock was not handed over")
	}
}
