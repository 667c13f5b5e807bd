package auth

import (
	"context"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"varsel/broker"
)

// Registry is what the key cache reads of the agency registry: all of it,
// in two queries.
type Registry interface {
	Agencies(ctx context.Context) ([]*broker.Agency, error)
	ActiveKeys(ctx context.Context) ([]broker.AgencyKey, error)
}

// KeyCache keeps the whole registry (every agency and its active keys) in
// memory as one snapshot, refreshed at most every TTL, so that a key added
// or retired (or an agency disabled) takes effect on every replica within
// TTL. An unknown issuer or kid makes it look again, at most once per
// MinRefresh for the whole registry, so a freshly registered agency or
// rotated key works within a second, while a flood of invented issuers
// costs at most one query per MinRefresh and cannot evict a real agency. When the registry cannot be read, the last
// snapshot is used for at most MaxStale, then requests are refused.
type KeyCache struct {
	Registry   Registry
	TTL        time.Duration    // default 4 s
	MinRefresh time.Duration    // default 1 s
	MaxStale   time.Duration    // default 1 min
	Now        func() time.Time // nil: time.Now

	mu    sync.RWMutex
	snap  *snapshot
	tried time.Time // last refresh attempt
	group singleflight.Group
}

type snapshot struct {
	agencies map[string]*broker.Agency
	keys     map[string]map[string]*jose.JSONWebKey // agency → kid → key
	fetched  time.Time
}

var _ Keys = (*KeyCache)(nil)

func (c *KeyCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Lookup returns the agency and its active key kid (nil when it has none).
// Errors: ENOTFOUND for an agency not registered; others when the registry
// cannot be read and the snapshot is too old.
func (c *KeyCache) Lookup(ctx context.Context, agencyID, kid string) (*broker.Agency, *jose.JSONWebKey, error) {
	ttl, minRefresh := orDefault(c.TTL, 4*time.Second), orDefault(c.MinRefresh, time.Second)
	now := c.now()
	c.mu.RLock()
	s, tried := c.snap, c.tried
	c.mu.RUnlock()
	refresh := s == nil || now.Sub(s.fetched) > ttl
	if !refresh && s.keys[agencyID][kid] == nil && now.Sub(tried) > minRefresh {
		// Perhaps an agency or a key added since: look again, at most once
		// per MinRefresh for all callers together, so a flood of invented
		// issuers or kids costs one query a second, not one each.
		refresh = true
	}
	if refresh {
		fresh, err := c.refresh(ctx)
		switch {
		case err == nil:
			s = fresh
		case s == nil || now.Sub(s.fetched) > orDefault(c.MaxStale, time.Minute):
			return nil, nil, err
		}
	}
	a := s.agencies[agencyID]
	if a == nil {
		return nil, nil, broker.Errorf(broker.ENOTFOUND, "no agency %q", agencyID)
	}
	return a, s.keys[agencyID][kid], nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (c *KeyCache) refresh(ctx context.Context) (*snapshot, error) {
	v, err, _ := c.group.Do("registry", func() (any, error) {
		c.mu.Lock()
		c.tried = c.now()
		c.mu.Unlock()
		// Shared by every request waiting: not bound to the first one's lifetime.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s := &snapshot{fetched: c.now(), agencies: map[string]*broker.Agency{}, keys: map[string]map[string]*jose.JSONWebKey{}}
		agencies, err := c.Registry.Agencies(ctx)
		if err != nil {
			return nil, err
		}
		for _, a := range agencies {
			s.agencies[a.ID] = a
			s.keys[a.ID] = map[string]*jose.JSONWebKey{}
		}
		keys, err := c.Registry.ActiveKeys(ctx)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			jwk, err := ParsePublicJWK(k.JWK)
			if err != nil || s.keys[k.AgencyID] == nil {
				continue // a key that cannot be parsed verifies nothing
			}
			s.keys[k.AgencyID][k.KID] = jwk
		}
		c.mu.Lock()
		c.snap = s
		c.mu.Unlock()
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*snapshot), nil
}
