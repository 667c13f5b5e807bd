package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"varsel/broker"
)

// FlagLookups gathers the flag lookups of concurrent checks into one query,
// as the audit writer gathers appends into one transaction: every check
// needs a round trip for its subject's flags, and most find none, so one
// query for many subjects saves most of the per-query cost (a network
// write, a read and the driver's work, on both sides) on the hot path.
//
// One collector gathers the lookups that arrive within lookupLinger of the first
// into a batch and hands it to the next free worker, which runs its query.
// Without the wait, a batch held only the lookups that arrived while every
// worker was busy: about two at 2,000 checks a second. The wait is spent
// inside the time a "clear" answer is held to anyway (service.ClearFloor).
type FlagLookups struct {
	DB *DB

	reqs    chan *lookup
	batches chan []*lookup
	mu      sync.RWMutex // held for reading while enqueueing; for writing by Close
	closed  bool
	workers sync.WaitGroup
}

type lookup struct {
	ctx  context.Context
	refs []string
	at   time.Time
	out  chan lookupResult
}

type lookupResult struct {
	flags []*broker.Flag
	err   error
}

// maxLookupBatch bounds the lookups of one query.
const maxLookupBatch = 256

// lookupLinger is how long a batch waits for more lookups after its first.
const lookupLinger = time.Millisecond

// NewFlagLookups starts the collector and workers that each run one batched
// query at a time.
func NewFlagLookups(db *DB, workers int) *FlagLookups {
	workers = max(workers, 1)
	l := &FlagLookups{DB: db, reqs: make(chan *lookup, 4096), batches: make(chan []*lookup)}
	l.workers.Add(1 + workers)
	go func() { defer l.workers.Done(); l.collect() }()
	for range workers {
		go func() {
			defer l.workers.Done()
			for b := range l.batches {
				l.run(b)
			}
		}()
	}
	return l
}

// Close answers the lookups already queued, then stops the workers; later
// lookups fail with EUNAVAILABLE.
func (l *FlagLookups) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.reqs)
	}
	l.mu.Unlock()
	l.workers.Wait()
}

// ActiveFlags returns the flags stored under any of refs that are active
// and valid at t, through the next batched query.
func (l *FlagLookups) ActiveFlags(ctx context.Context, refs []string, t time.Time) ([]*broker.Flag, error) {
	q := &lookup{ctx: ctx, refs: refs, at: t, out: make(chan lookupResult, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, broker.Errorf(broker.EUNAVAILABLE, "the broker is shutting down")
	}
	select {
	case l.reqs <- q:
	case <-ctx.Done():
		l.mu.RUnlock()
		return nil, ctx.Err()
	}
	l.mu.RUnlock()
	select {
	case r := <-q.out:
		return r.flags, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// collect gathers batches until reqs is closed and drained, then closes
// batches.
func (l *FlagLookups) collect() {
	defer close(l.batches)
	timer := time.NewTimer(lookupLinger)
	timer.Stop()
	for first := range l.reqs {
		batch := append(make([]*lookup, 0, 16), first)
		timer.Reset(lookupLinger)
	fill:
		for len(batch) < maxLookupBatch {
			select {
			case q, ok := <-l.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, q)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		l.batches <- batch
	}
}

func (l *FlagLookups) run(batch []*lookup) {
	var refs []string
	at := batch[0].at
	for _, q := range batch {
		refs = append(refs, q.refs...)
		if q.at.Before(at) {
			at = q.at // the earliest time: a flag valid then is valid for all of them, checked again below
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := l.DB.Pool.Query(ctx, `SELECT `+flagColumns+` FROM flags
		WHERE subject_ref = ANY($1) AND status = 'active' AND valid_until > $2
		ORDER BY id`, refs, at)
	byRef := map[string][]*broker.Flag{}
	if err == nil {
		for rows.Next() {
			f, serr := scanFlag(rows)
			if serr != nil {
				err = serr
				break
			}
			byRef[f.SubjectRef] = append(byRef[f.SubjectRef], f)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		err = fmt.Errorf("select active flags (batch of %d): %w", len(batch), err)
	}
	for _, q := range batch {
		if err != nil {
			q.out <- lookupResult{err: err}
			continue
		}
		var out []*broker.Flag
		for _, ref := range q.refs {
			for _, f := range byRef[ref] {
				// Each check's own time decides validity.
				if !f.ValidFrom.After(q.at) && f.ValidUntil.After(q.at) {
					out = append(out, f)
				}
			}
		}
		q.out <- lookupResult{flags: out}
	}
}
