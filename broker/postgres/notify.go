package postgres

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Notifier listens for inbox notifications (NOTIFY varsel_inbox, office)
// on one dedicated connection and wakes the long-polls waiting for that
// office on this replica. When the connection drops it reconnects; waiters
// also re-read on their own every few seconds, so nothing is missed.
type Notifier struct {
	URL    string
	Logger *slog.Logger

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
}

// Subscribe returns a channel closed at the next notification for office,
// and a function to unsubscribe.
func (n *Notifier) Subscribe(office string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	n.mu.Lock()
	if n.waiters == nil {
		n.waiters = map[string]map[chan struct{}]struct{}{}
	}
	if n.waiters[office] == nil {
		n.waiters[office] = map[chan struct{}]struct{}{}
	}
	n.waiters[office][ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		if _, ok := n.waiters[office][ch]; ok {
			delete(n.waiters[office], ch)
		}
		n.mu.Unlock()
	}
}

func (n *Notifier) wake(office string) {
	n.mu.Lock()
	for ch := range n.waiters[office] {
		close(ch)
	}
	delete(n.waiters, office)
	n.mu.Unlock()
}

// Run listens until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	log := n.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		err := n.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn("inbox notifications interrupted; reconnecting", "subsystem", "inbox", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (n *Notifier) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, n.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+InboxChannel); err != nil {
		return err
	}
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		n.wake(note.Payload)
	}
}
