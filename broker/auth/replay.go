package auth

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// JTIStore records token ids where every replica sees them.
type JTIStore interface {
	// InsertJTI stores (agency, jti) until expires; false when it was there.
	InsertJTI(ctx context.Context, agencyID, jti string, expires time.Time) (bool, error)
}

// Replay is the ReplayGuard: a local set answers repeats seen by this
// replica without a round trip. Repeats across replicas are caught by a
// shared store: either Store here (one insert per request), or, as the
// broker runs it, none here and the audit append that every request makes,
// which records the token id in the same group-committed transaction
// (audit/postgres) and refuses a second use there.
//
// The local set holds a 128-bit keyed hash of each (agency, jti), in
// buckets by expiry time: it holds no pointers, so the garbage collector
// does not scan it (at 3,000 requests a second it holds about a million
// ids), and forgetting expired ids drops whole buckets instead of walking
// every id under the lock. Two different ids share a hash with probability
// about 2^-128 per pair, which is far below any other failure.
type Replay struct {
	Store JTIStore // nil: local set only

	mu      sync.Mutex
	seeds   [2]maphash.Seed
	buckets map[int64]map[replayID]struct{} // expiry bucket → ids
}

type replayID [2]uint64

// replayBucket is the span of expiry times that share a bucket: an id is
// forgotten at most this long after its token expired (when it is refused
// as expired anyway).
const replayBucket = 16 * time.Second

var _ ReplayGuard = (*Replay)(nil)

// Use records the token id; false means it was used before.
func (r *Replay) Use(ctx context.Context, agencyID, jti string, exp time.Time) (bool, error) {
	now := time.Now()
	r.mu.Lock()
	if r.buckets == nil {
		r.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
		r.buckets = map[int64]map[replayID]struct{}{}
	}
	id := r.id(agencyID, jti)
	cur := now.UnixNano() / int64(replayBucket)
	for b, ids := range r.buckets {
		if b < cur { // every id in it has expired
			delete(r.buckets, b)
			continue
		}
		if _, ok := ids[id]; ok {
			r.mu.Unlock()
			return false, nil
		}
	}
	bucket := exp.UnixNano() / int64(replayBucket)
	ids := r.buckets[bucket]
	if ids == nil {
		ids = map[replayID]struct{}{}
		r.buckets[bucket] = ids
	}
	ids[id] = struct{}{}
	r.mu.Unlock()
	if r.Store == nil {
		return true, nil
	}

	fresh, err := r.Store.InsertJTI(ctx, agencyID, jti, exp)
	if err != nil {
		r.mu.Lock()
		delete(ids, id) // not recorded: let a retry through
		r.mu.Unlock()
		return false, err
	}
	return fresh, nil
}

// id is the keyed hash of (agency, jti); the agency id cannot hold a NUL.
func (r *Replay) id(agencyID, jti string) replayID {
	var out replayID
	for i, seed := range r.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(agencyID)
		h.WriteByte(0)
		h.WriteString(jti)
		out[i] = h.Sum64()
	}
	return out
}
