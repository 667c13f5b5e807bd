package keys

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"varsel/broker"
)

// Follower keeps a replica's subject key chain in step with the chain
// recorded in the database, so that every replica learns of a pending key
// (and looks refs up under it too) before the rotation re-keys the flags.
//
// It starts from the chain it loaded itself (NewFollower), never from a
// state it has only seen: a rotation that begins between the load and the
// first reload is a change like any other. When it cannot read the chain
// or load a key, it says so in the log, in the varsel_subject_keys_*
// metrics, in readiness (Ping) and, once the chain it holds may be out of
// date (MaxAge since the last good read, or a change it could not load), by
// marking the keys stale: checks then answer 503 instead of "clear".
type Follower struct {
	store  ChainStore
	source Source
	keys   *broker.SubjectKeys
	log    *slog.Logger
	now    func() time.Time

	// Interval between reloads (default 2 s); MaxAge is how long the chain
	// may go unread before this replica stops trusting it (default 3 ×
	// Interval). A rotation must wait longer than Interval + MaxAge.
	Interval time.Duration
	MaxAge   time.Duration
	Retry    time.Duration // after a failed read (default 250 ms)

	mu       sync.Mutex
	loaded   []broker.SubjectKeyLink // the chain keys holds
	lastRead time.Time               // last good read of the chain
	lastErr  error

	reloads *prometheus.CounterVec
	age     prometheus.GaugeFunc
}

// FollowerConfig tunes a Follower; zero values take the defaults.
type FollowerConfig struct {
	Interval   time.Duration
	MaxAge     time.Duration
	Logger     *slog.Logger
	Now        func() time.Time      // nil: time.Now
	Registerer prometheus.Registerer // nil: no metrics
}

// DefaultReloadInterval is how often a replica reads the chain.
const DefaultReloadInterval = 2 * time.Second

// NewFollower loads the chain (recording the first link on a new
// database), installs its hasher in a new SubjectKeys and returns the
// follower of that chain.
func NewFollower(ctx context.Context, store ChainStore, src Source, cfg FollowerConfig) (*Follower, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReloadInterval
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 3 * cfg.Interval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Follower{store: store, source: src, keys: &broker.SubjectKeys{}, log: cfg.Logger.With("subsystem", "keys"),
		now: cfg.Now, Interval: cfg.Interval, MaxAge: cfg.MaxAge}
	chain, err := startChain(ctx, store, src)
	if err != nil {
		return nil, err
	}
	h, err := buildHasher(ctx, chain, src)
	if err != nil {
		return nil, fmt.Errorf("subject key: %w", err)
	}
	f.keys.Set(h)
	f.loaded, f.lastRead = chain, f.now()
	f.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "varsel_subject_key_reloads_total",
		Help: "Reads of the subject key chain by outcome (unchanged, loaded, failed).",
	}, []string{"result"})
	f.age = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "varsel_subject_key_chain_age_seconds",
		Help: "Seconds since this replica last read the subject key chain successfully.",
	}, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.now().Sub(f.lastRead).Seconds()
	})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(f.reloads, f.age)
	}
	return f, nil
}

// Keys is the chain in use, kept current by the follower.
func (f *Follower) Keys() *broker.SubjectKeys { return f.keys }

// Reload reads the chain and, when it differs from the one in use, loads
// it. Errors are returned, logged and kept for Ping.
func (f *Follower) Reload(ctx context.Context) error {
	err := f.reload(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastErr = err
	if err == nil {
		f.keys.SetStale(nil)
		return nil
	}
	f.reloads.WithLabelValues("failed").Inc()
	if f.now().Sub(f.lastRead) > f.MaxAge {
		f.keys.SetStale(err)
	}
	f.log.Error("reload subject key chain", "err", err)
	return err
}

func (f *Follower) reload(ctx context.Context) error {
	chain, err := f.store.SubjectKeyChain(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.lastRead = f.now()
	same := slices.Equal(chain, f.loaded)
	f.mu.Unlock()
	if same {
		f.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	h, err := buildHasher(ctx, chain, f.source)
	if err != nil {
		// The chain moved on and this replica cannot follow: its refs may
		// no longer match the flags. Refuse checks rather than answer clear.
		err = fmt.Errorf("load changed subject key chain: %w", err)
		f.keys.SetStale(err)
		return err
	}
	f.keys.Set(h)
	f.mu.Lock()
	f.loaded = chain
	f.mu.Unlock()
	f.reloads.WithLabelValues("loaded").Inc()
	f.log.Info("subject key chain changed", "links", len(chain), "version", h.Version, "pending", h.PendingVersion)
	return nil
}

// Run reloads every Interval until ctx ends. After a failed read it tries
// again every Retry (default 250 ms, at most Interval), so that a replica
// whose keys went stale while the database was away (a failover) serves
// checks again within a fraction of a second of the database's return,
// not an Interval later. Staleness counts time since the last good read,
// so trying more often never makes the keys look fresher than they are.
func (f *Follower) Run(ctx context.Context) {
	retry := f.Retry
	if retry <= 0 {
		retry = 250 * time.Millisecond
	}
	retry = min(retry, f.Interval)
	t := time.NewTimer(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// One read may not hang past the next: a connection to a server
		// that went away can take its whole connect timeout.
		rctx, cancel := context.WithTimeout(ctx, f.Interval)
		err := f.Reload(rctx)
		cancel()
		if err != nil {
			t.Reset(retry)
		} else {
			t.Reset(f.Interval)
		}
	}
}

// Ping is the follower's readiness: an error when the keys are stale, or
// a "degraded" one when the last reload failed but the chain is still
// recent enough to trust.
func (f *Follower) Ping(context.Context) error {
	if err := f.keys.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastErr != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeDegraded,
			Message: "the subject key chain could not be read; using the one read before", Err: f.lastErr}
	}
	return nil
}

// startChain reads the chain, recording the source's latest version as its
// first link on a new database.
func startChain(ctx context.Context, store ChainStore, src Source) ([]broker.SubjectKeyLink, error) {
	chain, err := store.SubjectKeyChain(ctx)
	if err != nil || len(chain) > 0 {
		return chain, err
	}
	_, version, err := src.SubjectKey(ctx, "")
	if err != nil {
		return nil, err
	}
	if err := store.StartSubjectKeyChain(ctx, version); err != nil {
		return nil, fmt.Errorf("record subject key chain: %w", err)
	}
	return store.SubjectKeyChain(ctx)
}

// buildHasher makes the hasher of chain, reading each version from src.
func buildHasher(ctx context.Context, chain []broker.SubjectKeyLink, src Source) (*broker.SubjectHasher, error) {
	var h *broker.SubjectHasher
	for _, link := range chain {
		key, _, err := src.SubjectKey(ctx, link.Version)
		if err != nil {
			return nil, fmt.Errorf("subject key version %s: %w", link.Version, err)
		}
		switch {
		case link.State == broker.LinkPending:
			if h == nil {
				return nil, fmt.Errorf("subject key chain starts with a pending link")
			}
			h = h.WithPending(key, link.Version)
		case h == nil:
			if h, err = broker.NewSubjectHasher(key, link.Version); err != nil {
				return nil, err
			}
		default:
			h = h.Extend(key, link.Version)
		}
		if link.State != broker.LinkPending {
			h.Position = link.Position
		}
	}
	if h == nil {
		return nil, fmt.Errorf("subject key chain is empty")
	}
	return h, nil
}
