package auth

import (
	"context"
	"sync"
	"time"
)

// JTIStore records token ids where every replica sees them.
type JTIStore interface {
	// InsertJTI stores (agency, jti) until expires; false when it was there.
	InsertJTI(ctx context.Context, agencyID, jti string, expires time.Time) (bool, error)
}

// Replay is the ReplayGuard: a local map answers repeats seen by this
// replica without a round trip. Repeats across replicas are caught by a
// shared store: either Store here (one insert per request), or, as the
// broker runs it, none here and the audit append that every request makes,
// which records the token id in the same group-committed transaction
// (audit/postgres) and refuses a second use there.
type Replay struct {
	Store JTIStore // nil: local map only

	mu    sync.Mutex
	local map[replayKey]time.Time
	sweep time.Time
}

type replayKey struct{ agency, jti string }

var _ ReplayGuard = (*Replay)(nil)

// Use records the token id; false means it was used before.
func (r *Replay) Use(ctx context.Context, agencyID, jti string, exp time.Time) (bool, error) {
	k := replayKey{agencyID, jti}
	now := time.Now()
	r.mu.Lock()
	if r.local == nil {
		r.local = map[replayKey]time.Time{}
	}
	if until, ok := r.local[k]; ok && now.Before(until) {
		r.mu.Unlock()
		return false, nil
	}
	r.local[k] = exp
	if now.Sub(r.sweep) > 10*time.Second {
		for key, until := range r.local {
			if now.After(until) {
				delete(r.local, key)
			}
		}
		r.sweep = now
	}
	r.mu.Unlock()
	if r.Store == nil {
		return true, nil
	}

	fresh, err := r.Store.InsertJTI(ctx, agencyID, jti, exp)
	if err != nil {
		r.mu.Lock()
		delete(r.local, k) // not recorded: let a retry through
		r.mu.Unlock()
		return false, err
	}
	return fresh, nil
}
