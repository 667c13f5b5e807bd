package keys_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"varsel/broker"
	"varsel/broker/keys"
)

// flakyChain is a chain store that can be made to fail, as a database does
// during a failover.
type flakyChain struct {
	mu    sync.Mutex
	chain []broker.SubjectKeyLink
	down  bool
}

func (c *flakyChain) SubjectKeyChain(context.Context) ([]broker.SubjectKeyLink, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, errors.New("connection refused")
	}
	return append([]broker.SubjectKeyLink(nil), c.chain...), nil
}

func (c *flakyChain) StartSubjectKeyChain(_ context.Context, version string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chain = []broker.SubjectKeyLink{{Position: 1, Version: version, State: broker.LinkActive}}
	return nil
}

func (c *flakyChain) setDown(d bool) { c.mu.Lock(); c.down = d; c.mu.Unlock() }

// waitKeys polls until the keys' staleness is as wanted, or fails after
// within.
func waitKeys(t *testing.T, k *broker.SubjectKeys, stale bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for (k.Err() != nil) != stale {
		if time.Since(start) > within {
			t.Fatalf("keys stale=%v not reached within %v (err %v)", stale, within, k.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestFollowerRetriesSoonAfterAFailure: keys that went stale while the
// database was away are fresh again soon after it is back, well within
// one reload interval.
func TestFollowerRetriesSoonAfterAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &keys.Dir{Path: t.TempDir(), Name: "varsel"}
	if err := src.Open(); err != nil {
		t.Fatal(err)
	}
	store := &flakyChain{}
	f, err := keys.NewFollower(ctx, store, src, keys.FollowerConfig{Interval: 2 * time.Second, MaxAge: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Retry = 20 * time.Millisecond
	store.setDown(true)
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	waitKeys(t, f.Keys(), true, 10*time.Second) // the first reload, after one interval, fails
	store.setDown(false)
	if took := waitKeys(t, f.Keys(), false, 10*time.Second); took > time.Second {
		t.Fatalf("keys fresh again %v after the database came back; want well under the 2 s interval", took)
	}
	cancel()
	<-done
}
