package postgres_test

import (
	"context"
	"testing"
	"time"

	"varsel/broker/postgres"
)

func TestNotifierWakesSubscribers(t *testing.T) {
	db := openDB(t)
	n := &postgres.Notifier{URL: testURL}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { n.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	select {
	case <-n.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("the notifier does not listen after 10 s")
	}

	// WaitSubscribed returns once someone waits for the office.
	subscribed := make(chan error, 1)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	go func() { subscribed <- n.WaitSubscribed(wctx, "office-a") }()
	other, unsubscribeOther := n.Subscribe("office-b")
	defer unsubscribeOther()
	wake, unsubscribe := n.Subscribe("office-a")
	defer unsubscribe()
	if err := <-subscribed; err != nil {
		t.Fatalf("WaitSubscribed: %v", err)
	}

	// A notification for office-a wakes its waiter and not office-b's.
	if _, err := db.Pool.Exec(ctx, `SELECT pg_notify($1, 'office-a')`, postgres.InboxChannel); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("the notification did not wake office-a's waiter")
	}
	select {
	case <-other:
		t.Fatal("office-b's waiter was woken by office-a's notification")
	default:
	}

	// With no one waiting, WaitSubscribed waits until ctx ends.
	short, scancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer scancel()
	if err := n.WaitSubscribed(short, "office-c"); err == nil {
		t.Fatal("WaitSubscribed returned with no one waiting")
	}
}
