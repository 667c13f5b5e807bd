// Package service carries out Varsel's operations (docs/api.md §4–§7): it asks
// the policy engine, reads and writes state, and appends the audit entry of
// every decision, allowed or denied, before a result is returned. It knows
// nothing of HTTP: broker/api decodes requests and encodes its results.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// AuditLog appends entries; the audit.Writer implements it.
// Errors: audit.ErrReplayed, audit.ErrUnavailable (Service maps them).
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (audit.Receipt, error)
}

// AuditReader reads the log.
type AuditReader interface {
	Search(ctx context.Context, q audit.Query) ([]audit.Entry, error)
	// EntryBundle is C2SP tlog-tiles entry bundle index, width entries
	// wide. Errors: audit.ErrNoTile beyond the tree.
	EntryBundle(ctx context.Context, index uint64, width int) ([]byte, error)
}

// EmergencyCounter counts an employee's allowed emergency decisions.
type EmergencyCounter interface {
	EmergencyUses(ctx context.Context, agency, actor string, since time.Time) (int, error)
}

// WarningStore keeps warnings, their deliveries and webhook pushes.
type WarningStore interface {
	// CreateWarning stores the flag, the warning and its deliveries with
	// the audit entry in one transaction.
	CreateWarning(ctx context.Context, f *broker.Flag, w *broker.Warning, offices []string, e *audit.Entry) error
	// Inbox lists deliveries to office after a position, oldest first.
	Inbox(ctx context.Context, office string, after int64, limit int) ([]broker.InboxItem, error)
	// MarkRead records the first read of deliveries.
	MarkRead(ctx context.Context, office string, positions []int64) error
	// AckWarning records an office's acknowledgement with its audit entry;
	// false when it was already acknowledged. Errors: ENOTFOUND.
	AckWarning(ctx context.Context, id, office, by string, e *audit.Entry) (bool, error)
	// WarningFlag returns a warning's flag. Errors: ENOTFOUND.
	WarningFlag(ctx context.Context, id string) (*broker.Flag, error)
	// Warning returns a warning and its deliveries. Errors: ENOTFOUND.
	Warning(ctx context.Context, id string) (*broker.Warning, error)
	// QueueExceptionNotices queues an exception-disclosure push to each
	// notice's office that has a webhook.
	QueueExceptionNotices(ctx context.Context, seq int64, notices []broker.ExceptionNotice) error
	// SetWebhook registers or (url "") removes an office's webhook.
	SetWebhook(ctx context.Context, office, url, by string, e *audit.Entry) error
	// Disclosures lists the disclosures of issuer's flags after a seq.
	Disclosures(ctx context.Context, issuer string, after int64, limit int) ([]broker.Disclosure, error)
}

// InboxWaiter wakes long-polls when an office gets a delivery.
type InboxWaiter interface {
	Subscribe(office string) (<-chan struct{}, func())
}

// FlagStore keeps flags. Changes commit together with their audit entry.
type FlagStore interface {
	// CreateFlag stores f with its audit entry in one transaction.
	// Errors: broker.ErrReplayed, EUNAVAILABLE.
	CreateFlag(ctx context.Context, f *broker.Flag, e *audit.Entry) error
	// RevokeFlag revokes an active flag with its audit entry; false when it
	// was not active.
	RevokeFlag(ctx context.Context, id, by, reason string, e *audit.Entry) (bool, error)
	// Flag returns one flag. Errors: ENOTFOUND.
	Flag(ctx context.Context, id string) (*broker.Flag, error)
	// ActiveFlags returns a subject's flags that are active and valid at t.
	ActiveFlags(ctx context.Context, subjectRefs []string, t time.Time) ([]*broker.Flag, error)
	// OfficeKinds maps each known office to the kinds of agencies it belongs to.
	OfficeKinds(ctx context.Context, offices []string) (map[string][]string, error)
}

var _ AuditLog = (*audit.Writer)(nil)

// Service is the broker's behaviour. Its fields are its dependencies.
type Service struct {
	Policies    *policies.Engine
	Audit       AuditLog
	AuditReader AuditReader
	Flags       FlagStore
	Warnings    WarningStore
	Reviews     ReviewStore
	Emergencies EmergencyCounter
	Sweeper     *Sweeper
	// ReviewOverdue is when a pending review is listed as overdue (default 7 days).
	ReviewOverdue time.Duration
	InboxWaiter   InboxWaiter // wakes long-polls; nil: they re-read every PollInterval
	// AllowHTTPWebhooks permits http:// webhook URLs (tests, development).
	AllowHTTPWebhooks bool
	Subjects          *broker.SubjectKeys
	TestSubjects      bool // accept synthetic national ids
	// ClearFloor is the least time a check answered "clear" takes. A check
	// of a person whose flags the caller may not see does more work than
	// one of a person without flags (it reads rows and evaluates the
	// policy); answering both no sooner than the floor makes them take the
	// same time to a caller, as long as the work fits under it.
	ClearFloor time.Duration
	// DutyDesk stands in for the issuer and contact of a flag shown through
	// the duty desk (a health-sourced flag read outside the health sector,
	// or one whose issuer chose the desk) and is the contact of every
	// exception aggregate; BrokerID is the broker's own id, the duty desk's
	// issuer id and the actor of its own entries.
	DutyDesk broker.Contact
	BrokerID string
	// EmergencyLimit is how many emergency checks one employee may make
	// per EmergencyWindow (default 5 an hour).
	EmergencyLimit  int
	EmergencyWindow time.Duration
	Logger          *slog.Logger

	// Locks, when set, serialises an employee's emergency checks on every
	// replica (postgres.DB.LockKey); without it, only on this one.
	Locks interface {
		LockKey(ctx context.Context, key string) (unlock func(), err error)
	}
	localLocks keyedMutex
	lockSlots  chan struct{}
	slotsOnce  sync.Once
	Now        func() time.Time // nil: time.Now
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// entry starts an audit entry for an action by p.
func (s *Service) entry(p *broker.Principal, action, decision string) *audit.Entry {
	return &audit.Entry{
		TS:            audit.FormatTime(s.now()),
		ActorAgency:   p.Agency,
		Actor:         p.Sub,
		Role:          p.Role,
		Office:        p.Office,
		Action:        action,
		Decision:      decision,
		PolicyVersion: s.Policies.Version(),
		RequestJTI:    p.JTI,
	}
}

func policyPrincipal(p *broker.Principal) policies.Principal {
	return policies.Principal{Agency: p.Agency, AgencyKind: string(p.AgencyKind), Role: p.Role, Office: p.Office, Sub: p.Sub}
}

// authorize asks the policy whether p may do action on resource. A denial
// is audited and returned as EFORBIDDEN; the caller audits an allow itself,
// with what it did.
func (s *Service) authorize(ctx context.Context, p *broker.Principal, action string, resource any, deny func(*audit.Entry)) (policies.Decision, error) {
	d, err := s.Policies.Authorize(ctx, policies.AuthzInput{Action: action, Principal: policyPrincipal(p), Resource: resource, Time: s.now()})
	if err != nil {
		return d, &broker.Error{Kind: broker.EINTERNAL, Message: "policy evaluation failed", Err: err}
	}
	if d.Allow {
		return d, nil
	}
	e := s.entry(p, action, audit.Deny)
	e.Reasons = d.Reasons
	if deny != nil {
		deny(e)
	}
	if _, err := s.append(ctx, e); err != nil {
		return d, err
	}
	return d, broker.CodeErrorf(broker.EFORBIDDEN, broker.CodeForbidden, "the policy does not allow %s for this role", action)
}

// append commits e through the audit log, with the log's errors turned
// into the broker's: broker.ErrReplayed, broker.ErrAuditUnavailable.
func (s *Service) append(ctx context.Context, e *audit.Entry) (audit.Receipt, error) {
	r, err := s.Audit.Append(ctx, e)
	return r, auditError(err)
}

// auditError maps the audit package's sentinels to domain errors.
func auditError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, audit.ErrReplayed):
		return broker.ErrReplayed
	case errors.Is(err, audit.ErrRejected):
		return &broker.Error{Kind: broker.EMALFORMED, Message: "a value in the request cannot be recorded: nothing was disclosed or changed", Err: err}
	case errors.Is(err, audit.ErrUnavailable):
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable,
			Message: broker.ErrAuditUnavailable.Message, Err: err}
	}
	return err
}

// Whoami records that p asked who it is, and returns the receipt.
func (s *Service) Whoami(ctx context.Context, p *broker.Principal) (audit.Receipt, error) {
	return s.append(ctx, s.entry(p, "whoami", audit.Allow))
}

// keyedMutex is a set of mutexes by key, made on first use.
type keyedMutex struct{ m sync.Map }

func (k *keyedMutex) lock(key string) func() {
	v, _ := k.m.LoadOrStore(key, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// maxLockHolders bounds the database connections that lock holders and
// waiters may keep on this replica, far below the pool, so that the audit
// writer and the flag lookups always find a connection.
const maxLockHolders = 4

// lockWait bounds how long a request waits for an employee's lock.
const lockWait = 10 * time.Second

// lockEmployee takes the lock for key across replicas when Locks is set
// (else on this replica only). At most maxLockHolders requests hold or wait
// for such a lock here at once, each for at most lockWait.
func (s *Service) lockEmployee(ctx context.Context, key string) (func(), error) {
	if s.Locks == nil {
		return s.localLocks.lock(key), nil
	}
	s.slotsOnce.Do(func() { s.lockSlots = make(chan struct{}, maxLockHolders) })
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	select {
	case s.lockSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a lock slot: %w", ctx.Err())
	}
	unlock, err := s.Locks.LockKey(ctx, key)
	if err != nil {
		<-s.lockSlots
		return nil, err
	}
	return func() { unlock(); <-s.lockSlots }, nil
}
