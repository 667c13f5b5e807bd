package keys

import (
	"context"
	"fmt"

	"varsel/broker"
)

// ChainStore keeps the subject key chain.
type ChainStore interface {
	SubjectKeyChain(ctx context.Context) ([]broker.SubjectKeyLink, error)
	StartSubjectKeyChain(ctx context.Context, version string) error
}

// LoadSubjectKeys builds the hasher for the chain recorded in the database,
// reading each version from the source; on the first start it records the
// source's latest version as the chain's first link.
func LoadSubjectKeys(ctx context.Context, store ChainStore, src Source) (*broker.SubjectHasher, error) {
	chain, err := store.SubjectKeyChain(ctx)
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		_, version, err := src.SubjectKey(ctx, "")
		if err != nil {
			return nil, err
		}
		if err := store.StartSubjectKeyChain(ctx, version); err != nil {
			return nil, fmt.Errorf("record subject key chain: %w", err)
		}
		if chain, err = store.SubjectKeyChain(ctx); err != nil {
			return nil, err
		}
	}
	var h *broker.SubjectHasher
	for _, link := range chain {
		key, _, err := src.SubjectKey(ctx, link.Version)
		if err != nil {
			return nil, fmt.Errorf("subject key version %s: %w", link.Version, err)
		}
		switch {
		case link.State == "pending":
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
	}
	return h, nil
}
