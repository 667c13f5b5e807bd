package auth

import (
	"context"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"varsel/broker"
)

// Registry is the part of broker.AgencyRegistry the key cache reads.
type Registry interface {
	Agency(ctx context.Context, id string) (*broker.Agency, error)
	Keys(ctx context.Context, agencyID string) ([]broker.AgencyKey, error)
}

// KeyCache keeps each agency's record and active keys in memory for at most
// TTL, so that a key added or retired (or an agency disabled) in the
// database takes effect on every replica within TTL. An unknown kid makes it
// look again at once, at most once per MinRefresh, so a freshly rotated key
// works without waiting.
type KeyCache struct {
	Registry   Registry
	TTL        time.Duration    // default 4 s
	MinRefresh time.Duration    // default 1 s
	Now        func() time.Time // nil: time.Now; tests move it instead of sleeping past TTL

	mu      sync.RWMutex
	entries map[string]*cacheEntry
	group   singleflight.Group
}

type cacheEntry struct {
	agency  *broker.Agency // nil: no such agency
	keys    map[string]*jose.JSONWebKey
	fetched time.Time
}

var _ Keys = (*KeyCache)(nil)

// Lookup returns the agency and its active key kid (nil when it has none).
func (c *KeyCache) Lookup(ctx context.Context, agencyID, kid string) (*broker.Agency, *jose.JSONWebKey, error) {
	ttl, minRefresh := c.TTL, c.MinRefresh
	if ttl == 0 {
		ttl = 4 * time.Second
	}
	if minRefresh == 0 {
		minRefresh = time.Second
	}
	c.mu.RLock()
	e := c.entries[agencyID]
	c.mu.RUnlock()
	now := c.now()
	stale := e == nil || now.Sub(e.fetched) > ttl
	if !stale && e.agency != nil && e.keys[kid] == nil && now.Sub(e.fetched) > minRefresh {
		stale = true // perhaps a key added since
	}
	if stale {
		var err error
		if e, err = c.refresh(ctx, agencyID); err != nil {
			return nil, nil, err
		}
	}
	if e.agency == nil {
		return nil, nil, broker.Errorf(broker.ENOTFOUND, "no agency %q", agencyID)
	}
	return e.agency, e.keys[kid], nil
}

func (c *KeyCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *KeyCache) refresh(ctx context.Context, agencyID string) (*cacheEntry, error) {
	v, err, _ := c.group.Do(agencyID, func() (any, error) {
		// Shared by every request waiting on this agency: not bound to the
		// first one's lifetime.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		e := &cacheEntry{fetched: c.now(), keys: map[string]*jose.JSONWebKey{}}
		a, err := c.Registry.Agency(ctx, agencyID)
		switch {
		case broker.ErrorKind(err) == broker.ENOTFOUND:
			// Remember absence too, so unknown issuers cannot force a query per request.
		case err != nil:
			return nil, err
		default:
			e.agency = a
			keys, err := c.Registry.Keys(ctx, agencyID)
			if err != nil {
				return nil, err
			}
			for _, k := range keys {
				if k.Status != broker.StatusActive {
					continue
				}
				jwk, err := ParsePublicJWK(k.JWK)
				if err != nil {
					continue // a key that cannot be parsed verifies nothing
				}
				e.keys[k.KID] = jwk
			}
		}
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[string]*cacheEntry{}
		}
		if len(c.entries) > 10000 {
			clear(c.entries) // bound memory against floods of invented issuers
		}
		c.entries[agencyID] = e
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*cacheEntry), nil
}
