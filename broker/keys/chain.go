package keys

import (
	"context"

	"varsel/audit"
	"varsel/broker"
)

// ChainStore keeps the subject key chain.
type ChainStore interface {
	// SubjectKeyChain returns the chain's links in order.
	SubjectKeyChain(ctx context.Context) ([]broker.SubjectKeyLink, error)
	// StartSubjectKeyChain records the first link when the chain is empty.
	StartSubjectKeyChain(ctx context.Context, version string) error
}

// RotationStore is what a rotation changes.
type RotationStore interface {
	ChainStore
	// AddPendingSubjectKey appends a pending link and returns its
	// position. Errors: ECONFLICT when one is pending already.
	AddPendingSubjectKey(ctx context.Context, version string) (int, error)
	// RekeySubjects re-keys every flag's ref with key, activates the link
	// at position and appends e, in one transaction. Errors: ECONFLICT when
	// the link is not pending.
	RekeySubjects(ctx context.Context, position int, key []byte, e *audit.Entry) (int64, error)
}
