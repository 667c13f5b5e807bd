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

	mu         sync.Mutex
	waiters    map[string]map[chan struct{}]struct{}
	subscribed chan struct{} // closed and replaced at every Subscribe
	listening  chan struct{} // closed once LISTEN first took effect
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
	if n.subscribed != nil {
		close(n.subscribed)
		n.subscribed = nil
	}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		if _, ok := n.waiters[office][ch]; ok {
			delete(n.waiters[office], ch)
		}
		n.mu.Unlock()
	}
}

// Listening is closed once the notifier first listens: a notification sent
// before then wakes no long-poll here (they still re-read on their own).
func (n *Notifier) Listening() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listening == nil {
		n.listening = make(chan struct{})
	}
	return n.listening
}

// WaitSubscribed returns once a long-poll on this replica waits for
// office, or with ctx's error when ctx ends first. Tests use it to act
// once a poll is waiting instead of sleeping.
func (n *Notifier) WaitSubscribed(ctx context.Context, office string) error {
	for {
		n.mu.Lock()
		if len(n.waiters[office]) > 0 {
			n.mu.Unlock()
			return nil
		}
		if n.subscribed == nil {
			n.subscribed = make(chan struct{})
		}
		changed := n.subscribed
		n.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
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
	n.mu.Lock()
	if n.listening == nil {
		n.listening = make(chan struct{})
	}
	select {
	case <-n.listening:
	default:
		close(n.listening)
	}
	n.mu.Unlock()
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		n.wake(note.Payload)
	}
}
