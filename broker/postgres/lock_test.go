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
	time.Sleep(200 * time.Millisecond)
	if got.Load() {
		t.Fatal("a second holder got the lock")
	}
	unlock()
	<-done
	if !got.Load() {
		t.Fatal("the lock was not handed over")
	}
}
