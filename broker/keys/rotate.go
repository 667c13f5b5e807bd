package keys

import (
	"context"
	"fmt"
	"time"

	"varsel/audit"
	"varsel/broker"
)

// MinRotationGrace is the shortest wait between recording a pending key
// and re-keying the flags that is safe with replicas on the default
// follower settings: each reads the chain every DefaultReloadInterval, and
// one that cannot read it stops answering checks after 3 × that. A
// shorter grace could let a replica answer "clear" for a flagged person
// in the moments after the re-keying.
const MinRotationGrace = 4 * DefaultReloadInterval

// Rotation re-keys every stored subject ref with the newest version of
// the subject key, in two phases: the version is recorded as a pending
// link (replicas then look refs up under it as well), and after Grace the
// flags are re-keyed and the link activated in one audited transaction.
type Rotation struct {
	Store  RotationStore
	Source Source
	Grace  time.Duration
	// Pending, when set, is told the version once it is pending (before
	// the grace period starts).
	Pending func(version string)
}

// RotationResult says what a rotation did.
type RotationResult struct {
	Version string
	Flags   int64         // flags re-keyed
	Audit   audit.Receipt // the rotation's audit entry
}

// Run rotates, resuming a rotation that was interrupted after its pending
// link was recorded. e is the audit entry to append (actor, time, policy
// version); Run adds the version and the count to its reasons. Errors:
// ECONFLICT when the newest version is already in use or another rotation
// is in progress.
func (r *Rotation) Run(ctx context.Context, e *audit.Entry) (RotationResult, error) {
	chain, err := r.Store.SubjectKeyChain(ctx)
	if err != nil {
		return RotationResult{}, err
	}
	if len(chain) == 0 {
		return RotationResult{}, broker.Errorf(broker.ECONFLICT, "no subject key chain yet: start the broker once first")
	}
	key, version, err := r.Source.SubjectKey(ctx, "")
	if err != nil {
		return RotationResult{}, err
	}
	last := chain[len(chain)-1]
	var position int
	switch {
	case last.State == broker.LinkPending && last.Version == version:
		position = last.Position // resume an interrupted rotation
	case last.Version == version:
		return RotationResult{}, broker.Errorf(broker.ECONFLICT, "version %s is already in use: write a new version of the subject key first", version)
	default:
		if position, err = r.Store.AddPendingSubjectKey(ctx, version); err != nil {
			return RotationResult{}, err
		}
	}
	if r.Pending != nil {
		r.Pending(version)
	}
	if r.Grace > 0 {
		t := time.NewTimer(r.Grace)
		select {
		case <-ctx.Done():
			t.Stop()
			return RotationResult{}, ctx.Err()
		case <-t.C:
		}
	}
	e.Action, e.Decision = ActionRotateSubject, audit.Allow
	e.Reasons = append(e.Reasons, "subject_key_version:"+version)
	n, err := r.Store.RekeySubjects(ctx, position, key, e)
	if err != nil {
		return RotationResult{}, fmt.Errorf("re-key subjects to version %s: %w", version, err)
	}
	return RotationResult{Version: version, Flags: n, Audit: e.Receipt()}, nil
}

// ActionRotateSubject is the audit action of a rotation.
const ActionRotateSubject = "keys.rotate-subject"
