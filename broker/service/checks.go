package service

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// Check purposes (docs/api.md §5).
var Purposes = []string{"meeting", "home-visit", "phone-call", "case-processing"}

// Justification limits for the life-and-health exception.
const (
	MinJustification = 20
	MaxJustification = 1000
)

// CheckRequest is the body of POST /v1/checks.
type CheckRequest struct {
	Subject   string     `json:"subject"`
	Purpose   string     `json:"purpose"`
	MeetingAt *time.Time `json:"meeting_at,omitempty"`
	Emergency *Emergency `json:"emergency,omitempty"`
}

// Emergency invokes the life-and-health exception.
type Emergency struct {
	Justification string `json:"justification"`
}

// CheckFlag is one disclosed flag: only the fields the policy allows.
type CheckFlag struct {
	ID          string          `json:"id,omitempty"`
	Level       string          `json:"level,omitempty"`
	Categories  []string        `json:"categories,omitempty"`
	Precautions []string        `json:"precautions,omitempty"`
	ValidUntil  *time.Time      `json:"valid_until,omitempty"`
	Issuer      string          `json:"issuer,omitempty"`
	Contact     *broker.Contact `json:"contact,omitempty"`
	LegalBasis  string          `json:"legal_basis,omitempty"`
}

// CheckResult is the answer to a check.
type CheckResult struct {
	CheckID   string      `json:"check_id"`
	Result    string      `json:"result"` // clear | precautions
	Flags     []CheckFlag `json:"flags"`
	Exception *Exception  `json:"exception,omitempty"`
	Emergency bool        `json:"emergency"`
	// PolicyVersion is the policy the decision was made under.
	PolicyVersion string        `json:"policy_version"`
	Audit         audit.Receipt `json:"audit"`
}

// Exception is the one aggregate the life-and-health exception answers for
// the flags the reader could not otherwise see: the highest level and the
// union of their precautions, the duty desk as contact. No ids, no count,
// no issuer, no basis, no validity: necessity limits what and how much.
type Exception struct {
	Level       string         `json:"level"`
	Precautions []string       `json:"precautions"`
	Contact     broker.Contact `json:"contact"`
}

// Check results.
const (
	ResultClear       = "clear"
	ResultPrecautions = "precautions"
)

// Check answers "should I take precautions before meeting this person?":
// the subject's active flags, one policy evaluation for all of them, the
// fields it allows, one audit entry, then the answer. A subject without
// flags and one whose flags the caller may not see get the same answer.
func (s *Service) Check(ctx context.Context, p *broker.Principal, req CheckRequest) (*CheckResult, error) {
	start, ok := broker.StartFromContext(ctx)
	if !ok {
		start = time.Now()
	}
	subj, err := broker.ParseSubject(req.Subject, s.TestSubjects)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(Purposes, req.Purpose) {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "purpose must be one of %s", strings.Join(Purposes, ", "))
	}
	emergency := req.Emergency != nil
	justification := ""
	if emergency {
		justification = strings.TrimSpace(req.Emergency.Justification)
		// Count what a reader of the review sees: spaces, zero-width and
		// other invisible characters do not make a justification.
		if broker.VisibleLen(justification) < MinJustification || utf8.RuneCountInString(justification) > MaxJustification ||
			!broker.CleanText(justification, true) {
			return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeJustificationRequired,
				"an emergency check needs a written justification of %d to %d characters (at least %d visible)",
				MinJustification, MaxJustification, MinJustification)
		}
	}
	keys, err := s.Subjects.Current()
	if err != nil {
		return nil, err
	}
	ref, refs := keys.RefAndRefs(subj)
	now := s.now()

	if emergency {
		// An employee already over the limit is refused before taking one
		// of the few lock slots that everybody's emergency checks share.
		if err := s.emergencyAllowed(ctx, p, ref, justification, now); err != nil {
			return nil, err
		}
		// Count again and append under one lock per employee, held across
		// replicas, so parallel emergency checks cannot all slip under the limit.
		unlock, err := s.lockEmployee(ctx, "emergency/"+p.Agency+"/"+p.Sub)
		if err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "the emergency limit cannot be checked", Err: err}
		}
		defer unlock()
		if err := s.emergencyAllowed(ctx, p, ref, justification, now); err != nil {
			return nil, err
		}
	}

	flags, err := s.Flags.ActiveFlags(ctx, refs, now)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "flags cannot be read", Err: err}
	}
	in := policies.DisclosureInput{Principal: policyPrincipal(p), Purpose: req.Purpose, Emergency: emergency,
		Flags: make([]policies.FlagMeta, len(flags)), Time: now}
	byID := make(map[string]*broker.Flag, len(flags))
	for i, f := range flags {
		byID[f.ID] = f
		in.Flags[i] = flagMeta(f)
	}
	d, err := s.Policies.Disclose(ctx, in)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EINTERNAL, Message: "policy evaluation failed", Err: err}
	}

	e := s.entry(p, "check", audit.Allow)
	e.SubjectRef, e.Emergency, e.Justification, e.Reasons = ref, emergency, justification, d.Reasons
	if !d.Allow {
		e.Decision = audit.Deny
		if _, err := s.append(ctx, e); err != nil {
			return nil, err
		}
		return nil, broker.CodeErrorf(broker.EFORBIDDEN, broker.CodeForbidden, "this role may not run checks")
	}

	res := &CheckResult{Result: ResultClear, Flags: []CheckFlag{}, Emergency: emergency, PolicyVersion: s.Policies.Version()}
	var bases []string
	addBasis := func(b string) {
		if !slices.Contains(bases, b) {
			bases = append(bases, b)
		}
	}
	var notices []broker.ExceptionNotice
	for _, dis := range d.Flags {
		f := byID[dis.ID]
		if f == nil {
			continue // the policy named a flag it was not given: disclose nothing of it
		}
		res.Flags = append(res.Flags, s.project(f, dis))
		e.FlagIDs = append(e.FlagIDs, f.ID)
		addBasis(dis.LegalBasis)
		notices = s.noticeIfOwed(notices, f, dis.LegalBasis)
	}
	var reached []*broker.Flag
	for _, x := range d.Exception {
		f := byID[x.ID]
		if f == nil {
			continue
		}
		reached = append(reached, f)
		e.FlagIDs = append(e.FlagIDs, f.ID)
		// Which flags only the exception reached, and by which route, for
		// the issuers' disclosure feeds: the entry's legal_basis lists
		// bases, not pairs.
		e.Reasons = append(e.Reasons, "emergency_flag:"+f.ID, "emergency_basis:"+f.ID+":"+x.LegalBasis)
		addBasis(x.LegalBasis)
		notices = s.noticeIfOwed(notices, f, x.LegalBasis)
	}
	if len(reached) > 0 {
		res.Exception = s.aggregate(reached)
	}
	slices.Sort(bases)
	e.LegalBasis = strings.Join(bases, ",")
	if len(res.Flags) > 0 || res.Exception != nil {
		res.Result = ResultPrecautions
	}
	receipt, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	res.Audit = receipt
	res.CheckID = "chk-" + strconv.FormatInt(receipt.Seq, 10)
	// The issuers are told at once: the disclosure feed is the log itself,
	// so the entry just committed is in it already; an office with a
	// webhook also gets a signed exception-disclosure push.
	if len(notices) > 0 {
		if err := s.Warnings.QueueExceptionNotices(context.WithoutCancel(ctx), receipt.Seq, notices); err != nil && s.Logger != nil {
			s.Logger.Error("queue exception-disclosure pushes", "subsystem", "webhook", "seq", receipt.Seq, "err", err)
		}
	}
	if res.Result == ResultClear {
		waitUntil(ctx, start.Add(s.ClearFloor))
	}
	return res, nil
}

// waitUntil returns at t (by the monotonic clock), or when ctx ends.
func waitUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// flagMeta is what the disclosure policy is told of a flag: never its
// precautions, categories or contact.
func flagMeta(f *broker.Flag) policies.FlagMeta {
	return policies.FlagMeta{ID: f.ID, Level: f.Level, IssuerAgency: f.Issuer, IssuerKind: string(f.IssuerKind),
		IssuerOffice: f.IssuerOffice, LegalBasis: f.LegalBasis, DutyDesk: f.ViaDutyDesk(),
		Audience: policies.Audience{Kinds: f.Audience.Kinds, Offices: f.Audience.Offices}}
}

// noticeIfOwed adds the issuer's exception-disclosure notice when the basis
// f was disclosed under obliges the broker to tell the issuer at once and the
// flag was issued from an office (which may have a webhook).
func (s *Service) noticeIfOwed(notices []broker.ExceptionNotice, f *broker.Flag, basis string) []broker.ExceptionNotice {
	b, ok := s.Policies.LegalBasis(basis)
	if !ok || !b.Obligations.IssuerToldAtDisclosure.Required || f.IssuerOffice == "" {
		return notices
	}
	return append(notices, broker.ExceptionNotice{FlagID: f.ID, Office: f.IssuerOffice, LegalBasis: basis})
}

// levelRank orders the levels the exception can reach.
var levelRank = map[string]int{broker.LevelCaution: 1, broker.LevelHigh: 2, broker.LevelExclusion: 3}

// aggregate is the exception's one answer for the flags it reached: the
// highest level and the union of precautions (in the vocabulary's order, so
// that it says nothing of which flag gave which), with the duty desk as
// contact, so that consult-issuer-first has someone to consult.
func (s *Service) aggregate(flags []*broker.Flag) *Exception {
	x := &Exception{Precautions: []string{}, Contact: s.DutyDesk}
	have := map[string]bool{}
	for _, f := range flags {
		if levelRank[f.Level] > levelRank[x.Level] {
			x.Level = f.Level
		}
		for _, p := range f.Precautions {
			have[p] = true
		}
	}
	for _, p := range broker.Precautions {
		if have[p] {
			x.Precautions = append(x.Precautions, p)
		}
	}
	return x
}

// project copies the fields the policy allows, shows the basis the policy
// shows, and puts the duty desk in place of issuer and contact where the
// policy says so.
func (s *Service) project(f *broker.Flag, d policies.Disclosed) CheckFlag {
	var out CheckFlag
	for _, field := range d.Fields {
		switch field {
		case "id":
			out.ID = f.ID
		case "level":
			out.Level = f.Level
		case "categories":
			out.Categories = f.Categories
		case "precautions":
			out.Precautions = f.Precautions
		case "valid_until":
			vu := f.ValidUntil
			out.ValidUntil = &vu
		case "issuer":
			out.Issuer = f.Issuer
		case "contact":
			c := f.Contact
			out.Contact = &c
		case "legal_basis":
			out.LegalBasis = d.ShownBasis
		}
	}
	if d.DutyDesk {
		if out.Issuer != "" {
			out.Issuer = s.BrokerID
		}
		if out.Contact != nil {
			c := s.DutyDesk
			out.Contact = &c
		}
	}
	return out
}

// emergencyAllowed enforces the per-employee limit on the life-and-health
// exception. A refusal is audited and answered 429 with Retry-After.
func (s *Service) emergencyAllowed(ctx context.Context, p *broker.Principal, ref, justification string, now time.Time) error {
	limit, window := s.EmergencyLimit, s.EmergencyWindow
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = time.Hour
	}
	n, err := s.Emergencies.EmergencyUses(ctx, p.Agency, p.Sub, now.Add(-window))
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
	}
	if n < limit {
		return nil
	}
	e := s.entry(p, "check", audit.Deny)
	e.SubjectRef, e.Emergency, e.Justification, e.Reasons = ref, true, justification, []string{"emergency_rate_limited"}
	if _, err := s.append(ctx, e); err != nil {
		return err
	}
	return &RateLimited{Seconds: int(window.Seconds() / float64(limit)), Err: broker.CodeErrorf(broker.ERATELIMITED, broker.CodeRateLimited,
		"at most %d emergency checks per %s for one employee", limit, window)}
}

// RateLimited is a 429 with the seconds to wait.
type RateLimited struct {
	Seconds int
	Err     error
}

func (r *RateLimited) Error() string { return r.Err.Error() }
func (r *RateLimited) Unwrap() error { return r.Err }

// RetryAfterSeconds tells the HTTP layer what to put in Retry-After.
func (r *RateLimited) RetryAfterSeconds() int { return r.Seconds }
