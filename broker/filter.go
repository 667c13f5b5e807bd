package broker

import "time"

// Query and work shapes that the HTTP layer parses, the service checks and
// completes, and the stores read. Nothing below the API sees url.Values.

// ReviewFilter selects reviews.
type ReviewFilter struct {
	Status   string // pending, justified, unjustified, overdue, or "" for all
	Kind     string // ReviewEmergency, ReviewAnomaly or ""
	AfterSeq int64
	Limit    int

	// Set by the service, never by the caller.
	Scope      string        // actor agency; "" for all (the operator's auditors)
	OverdueAge time.Duration // a pending review older than this is overdue
}

// Validate checks the caller's part of the filter. Errors: EINVALID.
func (f *ReviewFilter) Validate(maxLimit int) error {
	switch f.Status {
	case "", ReviewPending, ReviewJustified, ReviewUnjustified, "overdue":
	default:
		return CodeErrorf(EINVALID, CodeInvalidField, "status must be pending, justified, unjustified, overdue or all")
	}
	if f.Kind != "" && f.Kind != ReviewEmergency && f.Kind != ReviewAnomaly {
		return CodeErrorf(EINVALID, CodeInvalidField, "kind must be emergency or anomaly")
	}
	if f.AfterSeq < 0 {
		return CodeErrorf(EINVALID, CodeInvalidField, "after_seq must be a seq")
	}
	if f.Limit < 1 || f.Limit > maxLimit {
		return CodeErrorf(EINVALID, CodeInvalidField, "limit must be 1 to %d", maxLimit)
	}
	return nil
}

// StatGroups are the ways audit figures can be grouped.
var StatGroups = []string{"agency", "action", "day", "legal_basis"}

// StatsFilter selects the audit figures of [From, To), grouped.
type StatsFilter struct {
	From, To time.Time // zero: the service's default period
	GroupBy  string    // one of StatGroups; "" for agency
}

// AnomalyRules are the snooping signals.
type AnomalyRules struct {
	Window      time.Duration // default 1 h
	MaxSubjects int           // distinct people one employee may check per window; default 30
	// MaxRepeats is how often one employee may check the same person per
	// window (default 10): probing one person again and again, for instance
	// to learn from the answer's timing, is a signal too.
	MaxRepeats int
	Hours      OfficeHours
}

// Kinds of webhook push.
const (
	PushWarningDelivered    = "warning-delivered"    // a warning reached an office's inbox
	PushExceptionDisclosure = "exception-disclosure" // the life-and-health exception reached an issuer's flag
)

// DuePush is a webhook push to attempt: a warning's delivery to an office's
// webhook, or the notice to an issuing office that the life-and-health
// exception reached one of its flags (FlagID, at the check entry CheckSeq,
// under LegalBasis).
type DuePush struct {
	ID         int64
	Kind       string
	WarningID  string
	FlagID     string
	CheckSeq   int64
	LegalBasis string
	Office     string
	URL        string
	Attempts   int
}

// ExceptionNotice is one issuer to tell, by webhook, of an exception
// disclosure: the flag, its issuing office and the route it was reached by.
type ExceptionNotice struct {
	FlagID     string
	Office     string
	LegalBasis string
}
