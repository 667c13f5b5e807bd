package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	"varsel/audit/witness"
)

// WitnessConfig is one witness the broker sends its checkpoints to: its
// C2SP tlog-witness submission prefix and its cosignature/v1 vkey.
type WitnessConfig struct {
	URL  string
	VKey string
}

// CosignStore is what the witnessing loop reads and writes: the newest
// checkpoint, the tree's tiles (for consistency proofs), and cosignatures.
type CosignStore interface {
	audit.TileSource
	CheckpointsBefore(ctx context.Context, before int64, limit int) ([]audit.Checkpoint, error)
	AddCosignature(ctx context.Context, count int64, witness, line string) error
	LastCosigned(ctx context.Context, witness string) (int64, error)
}

// Witnesses sends each new checkpoint to the configured witnesses and
// stores the cosignatures they return, so that GET /v1/audit/checkpoint
// serves them. It runs beside the request path and never holds it up:
// each witness has its own goroutine, woken by a new checkpoint (Notify)
// and, after a failure, by a retry with backoff. A witness's size is
// learned from the cosignatures stored, and corrected by its 409 answer.
type Witnesses struct {
	Store    CosignStore
	Verifier note.Verifier // the broker's own key: only checkpoints it signed are sent
	Origin   string
	Client   *witness.Client
	Logger   *slog.Logger
	// FirstRetry is the wait after a failure (default 2 s); it doubles
	// up to MaxRetry (default 2 min).
	FirstRetry, MaxRetry time.Duration

	peers []*peer
	subs  *prometheus.CounterVec
}

// peer is one witness and what the broker knows of it.
type peer struct {
	url      string
	name     string
	verifier note.Verifier
	wake     chan struct{}
	push     sync.Mutex // one submission at a time

	mu           sync.Mutex
	known        int64     // the witness's size as last learned; -1: not yet read
	cosigned     int64     // the newest count it cosigned
	newest       int64     // the newest checkpoint count seen
	pendingSince time.Time // when a checkpoint it has not cosigned was first seen
	failures     int
}

// NewWitnesses makes the loop for the witnesses in cfgs, registering its
// metrics with reg: varsel_audit_witness_lag_entries and _seconds per
// witness, and varsel_audit_witness_submissions_total by outcome.
func NewWitnesses(w *Witnesses, cfgs []WitnessConfig, reg prometheus.Registerer) (*Witnesses, error) {
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Client == nil {
		w.Client = &witness.Client{}
	}
	subs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "varsel_audit_witness_submissions_total",
		Help: "Checkpoints sent to a witness, by outcome: cosigned, conflict (409: it told its size), refused (it will not cosign: 4xx), unreachable (network or 5xx), bad_cosignature.",
	}, []string{"witness", "outcome"})
	seen := map[string]bool{}
	for _, c := range cfgs {
		v, err := witness.NewVerifier(c.VKey)
		if err != nil {
			return nil, err
		}
		if seen[v.Name()] {
			return nil, fmt.Errorf("witness %q is configured twice", v.Name())
		}
		seen[v.Name()] = true
		p := &peer{url: c.URL, name: v.Name(), verifier: v, wake: make(chan struct{}, 1), known: -1}
		w.peers = append(w.peers, p)
		for _, o := range []string{"cosigned", "conflict", "refused", "unreachable", "bad_cosignature"} {
			subs.WithLabelValues(p.name, o)
		}
		if reg == nil {
			continue
		}
		labels := prometheus.Labels{"witness": p.name}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "varsel_audit_witness_lag_entries", ConstLabels: labels,
			Help: "Entries between the newest checkpoint and the newest one this witness cosigned.",
		}, func() float64 { n, _ := p.lag(); return float64(n) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "varsel_audit_witness_lag_seconds", ConstLabels: labels,
			Help: "Seconds since a checkpoint this witness has not cosigned was signed (0 when it cosigned the newest).",
		}, func() float64 { _, d := p.lag(); return d.Seconds() }))
	}
	if reg != nil && len(cfgs) > 0 {
		reg.MustRegister(subs)
	}
	w.subs = subs
	return w, nil
}

// lag is how far the witness is behind the newest checkpoint.
func (p *peer) lag() (int64, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.newest <= p.cosigned {
		return 0, 0
	}
	return p.newest - p.cosigned, time.Since(p.pendingSince)
}

// saw records that the checkpoint at count was signed at t.
func (p *peer) saw(count int64, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if count > p.newest {
		p.newest = count
		if p.pendingSince.IsZero() && count > p.cosigned {
			p.pendingSince = t
		}
	}
}

// Notify is told of each checkpoint signed (Checkpointer.OnSigned); it
// wakes every witness's goroutine and returns at once.
func (w *Witnesses) Notify(cp audit.Checkpoint) {
	for _, p := range w.peers {
		p.saw(cp.Count, time.Now())
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Run submits to every witness until ctx ends, starting with the newest
// checkpoint stored.
func (w *Witnesses) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range w.peers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, p) }()
	}
	wg.Wait()
}

func (w *Witnesses) run(ctx context.Context, p *peer) {
	first, most := w.FirstRetry, w.MaxRetry
	if first <= 0 {
		first = 2 * time.Second
	}
	if most <= 0 {
		most = 2 * time.Minute
	}
	var retry <-chan time.Time
	for {
		if err := w.pushOne(ctx, p); err != nil && ctx.Err() == nil {
			p.mu.Lock()
			p.failures++
			n := p.failures
			p.mu.Unlock()
			wait := min(first*time.Duration(1<<min(n-1, 16)), most)
			retry = time.After(wait)
			w.Logger.Warn("witness did not cosign; retrying", "subsystem", "audit", "witness", p.name, "err", err, "retry_in", wait)
		} else {
			retry = nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				if retry == nil {
					break wait
				}
				// Backing off: the retry sends the newest checkpoint then.
			case <-retry:
				break wait
			}
		}
	}
}

// Push submits the newest checkpoint to every witness now, one after the
// other, and returns what failed (for tests and operators; the loop does
// the same on its own).
func (w *Witnesses) Push(ctx context.Context) error {
	var errs []error
	for _, p := range w.peers {
		if err := w.pushOne(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("witness %s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// Names lists the witnesses' key names.
func (w *Witnesses) Names() []string {
	out := make([]string, len(w.peers))
	for i, p := range w.peers {
		out[i] = p.name
	}
	return out
}

// pushOne sends the newest checkpoint to p unless p cosigned it already.
func (w *Witnesses) pushOne(ctx context.Context, p *peer) error {
	p.push.Lock()
	defer p.push.Unlock()
	cps, err := w.Store.CheckpointsBefore(ctx, math.MaxInt64, 1)
	if err != nil || len(cps) == 0 {
		return err
	}
	cp := cps[0]
	if h, err := audit.OpenCheckpoint(cp.Note, w.Verifier); err != nil || h.Origin != w.Origin || h.Size != cp.Count {
		return fmt.Errorf("the newest stored checkpoint (%d) is not signed by this broker's key; not sent", cp.Count)
	}
	p.saw(cp.Count, cp.CreatedAt)
	p.mu.Lock()
	known, cosigned := p.known, p.cosigned
	p.mu.Unlock()
	if known < 0 {
		if known, err = w.Store.LastCosigned(ctx, p.name); err != nil {
			return err
		}
		p.mu.Lock()
		p.known, p.cosigned = known, max(p.cosigned, known)
		cosigned = p.cosigned
		p.mu.Unlock()
	}
	if cosigned >= cp.Count {
		return nil
	}
	for attempt := 0; ; attempt++ {
		if known > cp.Count {
			// Another replica sent a newer checkpoint than this one has
			// read yet; the next one it reads goes.
			if c, err := w.Store.LastCosigned(ctx, p.name); err == nil {
				p.mu.Lock()
				p.cosigned = max(p.cosigned, c)
				p.mu.Unlock()
			}
			return nil
		}
		var proof [][]byte
		if known > 0 && known < cp.Count {
			if proof, err = (audit.Proofs{Tiles: w.Store}).Consistency(ctx, uint64(known), uint64(cp.Count)); err != nil {
				return fmt.Errorf("consistency proof %d to %d: %w", known, cp.Count, err)
			}
		}
		lines, err := w.Client.Submit(ctx, p.url, uint64(known), proof, []byte(cp.Note))
		var conflict *witness.ConflictError
		var refused *witness.RefusedError
		switch {
		case errors.As(err, &conflict):
			w.count(p, "conflict")
			known = int64(conflict.Size)
			p.mu.Lock()
			p.known = known
			p.mu.Unlock()
			if attempt < 2 {
				continue
			}
			return err
		case errors.As(err, &refused) && refused.Status < 500:
			w.count(p, "refused")
			w.Logger.Error("a witness refused to cosign the audit checkpoint: the log may not extend what it cosigned before (run varsel audit verify)",
				"subsystem", "audit", "witness", p.name, "count", cp.Count, "old", known, "status", refused.Status, "reason", refused.Message)
			return err
		case err != nil:
			w.count(p, "unreachable")
			return err
		}
		line, err := witness.Cosignature([]byte(cp.Note), lines, p.verifier)
		if err != nil {
			w.count(p, "bad_cosignature")
			return err
		}
		if err := w.Store.AddCosignature(ctx, cp.Count, p.name, line); err != nil {
			return err
		}
		w.count(p, "cosigned")
		p.mu.Lock()
		p.known, p.cosigned, p.failures = cp.Count, max(p.cosigned, cp.Count), 0
		if p.newest <= p.cosigned {
			p.pendingSince = time.Time{}
		} else {
			p.pendingSince = time.Now()
		}
		p.mu.Unlock()
		return nil
	}
}

func (w *Witnesses) count(p *peer, outcome string) {
	if w.subs != nil {
		w.subs.WithLabelValues(p.name, outcome).Inc()
	}
}
