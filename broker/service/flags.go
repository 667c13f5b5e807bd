package service

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// newID returns a random UUID (version 4) for a flag or warning.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// FlagResult is a flag as its issuer sees it, and where the decision was audited.
type FlagResult struct {
	*broker.Flag
	Audit audit.Receipt `json:"audit"`
}

// prepareFlag validates a flag request and builds the flag and the policy
// resource for action (flag.issue or warning.issue). extraOffices are added
// to the audience (a warning's targets). Nothing is written.
func (s *Service) prepareFlag(ctx context.Context, p *broker.Principal, req *broker.FlagRequest, extraOffices []string) (*broker.Flag, *policies.IssueResource, error) {
	now := s.now()
	subj, err := broker.ParseSubject(req.Subject, s.TestSubjects)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range extraOffices {
		if !slices.Contains(req.Audience.Offices, o) {
			req.Audience.Offices = append(req.Audience.Offices, o)
		}
	}
	from, until, err := req.Validate(p.Office, now)
	if err != nil {
		return nil, nil, err
	}
	validityDays := int(math.Ceil(until.Sub(from).Hours() / 24))
	if err := s.checkBasis(p, req, now, validityDays); err != nil {
		return nil, nil, err
	}
	officeKinds, err := s.Flags.OfficeKinds(ctx, req.Audience.Offices)
	if err != nil {
		return nil, nil, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "offices cannot be looked up", Err: err}
	}
	var kinds []string
	for _, o := range req.Audience.Offices {
		ks, ok := officeKinds[o]
		if !ok {
			return nil, nil, broker.CodeErrorf(broker.EINVALID, broker.CodeUnknownOffice, "office %q is not registered", o)
		}
		for _, k := range ks {
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
	}
	keys, err := s.Subjects.Current()
	if err != nil {
		return nil, nil, err
	}
	represented := req.RepresentedBy
	if represented == "" {
		represented = broker.RepresentedByIssuer
	}
	decision := req.Decision
	if decision != nil {
		d := *decision
		d.DecidedAt = utcTime(d.DecidedAt)
		d.NoticeGivenAt = utcTime(d.NoticeGivenAt)
		decision = &d
	}
	f := &broker.Flag{
		ID: newID(), SubjectRef: keys.Ref(subj), Issuer: p.Agency, IssuerKind: p.AgencyKind,
		IssuerOffice: p.Office, IssuedBy: p.Sub, Level: req.Level, Categories: req.Categories,
		Precautions: req.Precautions, ValidFrom: from, ValidUntil: until, LegalBasis: req.LegalBasis,
		Audience: broker.Audience{Kinds: nonNil(req.Audience.Kinds), Offices: nonNil(req.Audience.Offices)},
		Contact:  req.Contact, SubjectInformed: req.SubjectInformed, Decision: decision, RepresentedBy: represented,
	}
	res := &policies.IssueResource{
		Level: f.Level, LegalBasis: f.LegalBasis,
		Audience:           policies.IssueAudience{Kinds: f.Audience.Kinds, Offices: f.Audience.Offices, OfficeKinds: kinds},
		ValidityDays:       validityDays,
		SubjectNoticeGiven: req.SubjectInformed != nil,
	}
	if d := req.Decision; d != nil {
		res.Decision = policies.IssueDecision{Given: true, DecidedByRole: d.DecidedByRole, Notice: d.NoticeState(),
			MilderMeasuresConsidered: d.MilderMeasuresConsidered != nil && *d.MilderMeasuresConsidered}
	}
	return f, res, nil
}

func utcTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}

// checkBasis refuses, before the policy and unaudited (422, nothing was
// decided), a basis the catalogue does not know, one not in force today, and
// a flag that lacks a record its basis or its issuer's kind demands or
// outlasts its basis. The policy checks the same again, and decides.
func (s *Service) checkBasis(p *broker.Principal, req *broker.FlagRequest, now time.Time, validityDays int) error {
	b, ok := s.Policies.LegalBasis(req.LegalBasis)
	if !ok {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeUnknownLegalBasis,
			"legal_basis %q is not a known basis (see GET /v1/legal-bases)", truncate(req.LegalBasis))
	}
	day := policies.Day(now)
	if b.EndedBy(day) {
		replaced := ""
		if b.Retired != nil {
			replaced = "; use " + strings.Join(b.Retired.ReplacedBy, " or ")
		}
		return broker.CodeErrorf(broker.EINVALID, broker.CodeRetiredLegalBasis,
			"legal_basis %q is retired since %s and refused for new flags%s (see GET /v1/legal-bases/%s)", b.Code, *b.InForceUntil, replaced, b.Code)
	}
	if !b.InForceOn(day) {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeLegalBasisNotInForce,
			"legal_basis %q is not in force (it has no commencement date yet, or a later one)", b.Code)
	}
	if b.EmergencyOnly {
		return nil // only through the exception: the policy refuses it (basis_emergency_only), audited
	}
	if validityDays > *b.MaxValidityDays {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidValidity,
			"a flag under %s may be valid for at most %d days", b.Code, *b.MaxValidityDays)
	}
	if n := s.Policies.SubjectNoticeFor(b, string(p.AgencyKind)); n.Level != policies.NoticeNone && req.SubjectInformed == nil {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField,
			"subject_informed is required under %s: whether the person was told, or why not (%s)", b.Code, n.Provision)
	}
	if o := b.Obligations.DecisionRecord; o.Required {
		if req.Decision == nil {
			return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField,
				"decision is required under %s: who decided, when and the reference (%s)", b.Code, o.Provision)
		}
		if len(o.DecidedByRoles) > 0 && !slices.Contains(o.DecidedByRoles, req.Decision.DecidedByRole) {
			return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField,
				"decision.decided_by_role must be %s under %s", strings.Join(o.DecidedByRoles, " or "), b.Code)
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// IssueFlag validates, asks the policy, and stores a flag with its audit
// entry. Errors: EINVALID (422 codes of docs/api.md), EFORBIDDEN, audit errors.
func (s *Service) IssueFlag(ctx context.Context, p *broker.Principal, req broker.FlagRequest) (*FlagResult, error) {
	f, res, err := s.prepareFlag(ctx, p, &req, nil)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorize(ctx, p, policies.ActionFlagIssue, res, func(e *audit.Entry) {
		e.SubjectRef, e.LegalBasis = f.SubjectRef, f.LegalBasis
	}); err != nil {
		return nil, err
	}
	e := s.entry(p, policies.ActionFlagIssue, audit.Allow)
	e.SubjectRef, e.FlagIDs, e.LegalBasis = f.SubjectRef, []string{f.ID}, f.LegalBasis
	if err := s.Flags.CreateFlag(ctx, f, e); err != nil {
		return nil, err
	}
	return &FlagResult{Flag: f, Audit: e.Receipt()}, nil
}

// noSuchFlagReason is the reason of a refused read or revocation of a flag
// that does not exist; an officer's view shows the refusal of another
// agency's flag with it too (projectOwn).
const noSuchFlagReason = "no_such_flag"

// flagFor loads a flag for an action by its issuing agency. A flag that does
// not exist and one the caller may not act on look the same: 404, audited.
func (s *Service) flagFor(ctx context.Context, p *broker.Principal, id, action string) (*broker.Flag, error) {
	f, err := s.Flags.Flag(ctx, id)
	if err != nil && broker.ErrorKind(err) != broker.ENOTFOUND {
		return nil, err
	}
	issuer := ""
	if f != nil {
		issuer = f.Issuer
	}
	d, err := s.Policies.Authorize(ctx, policies.AuthzInput{Action: action, Principal: policyPrincipal(p),
		Resource: &policies.FlagResource{IssuerAgency: issuer}, Time: s.now()})
	if err != nil {
		return nil, &broker.Error{Kind: broker.EINTERNAL, Message: "policy evaluation failed", Err: err}
	}
	if f == nil || !d.Allow {
		e := s.entry(p, action, audit.Deny)
		e.Reasons = d.Reasons
		if f == nil {
			e.Reasons = []string{noSuchFlagReason}
		} else {
			e.FlagIDs = []string{f.ID}
		}
		if _, err := s.append(ctx, e); err != nil {
			return nil, err
		}
		return nil, broker.Errorf(broker.ENOTFOUND, "no such flag")
	}
	return f, nil
}

// Flag returns a flag to its issuing agency, audited.
func (s *Service) Flag(ctx context.Context, p *broker.Principal, id string) (*FlagResult, error) {
	f, err := s.flagFor(ctx, p, id, policies.ActionFlagRead)
	if err != nil {
		return nil, err
	}
	e := s.entry(p, policies.ActionFlagRead, audit.Allow)
	e.SubjectRef, e.FlagIDs, e.LegalBasis = f.SubjectRef, []string{f.ID}, f.LegalBasis
	r, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	f.Status = f.StatusAt(s.now())
	return &FlagResult{Flag: f, Audit: r}, nil
}

// RevokeRequest is the body of POST /v1/flags/{id}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason"`
}

// RevokeFlag revokes a flag for its issuing agency. Revoking a revoked flag
// changes nothing and answers as the first time did.
func (s *Service) RevokeFlag(ctx context.Context, p *broker.Principal, id string, req RevokeRequest) (*FlagResult, error) {
	if err := broker.CheckText("reason", req.Reason, 500); err != nil {
		return nil, err
	}
	f, err := s.flagFor(ctx, p, id, policies.ActionFlagRevoke)
	if err != nil {
		return nil, err
	}
	e := s.entry(p, policies.ActionFlagRevoke, audit.Allow)
	e.SubjectRef, e.FlagIDs, e.LegalBasis = f.SubjectRef, []string{f.ID}, f.LegalBasis
	if f.Status == broker.FlagRevoked {
		e.Reasons = []string{"already_revoked"}
	}
	if _, err := s.Flags.RevokeFlag(ctx, id, p.Sub, req.Reason, e); err != nil {
		return nil, err
	}
	if f, err = s.Flags.Flag(ctx, id); err != nil {
		return nil, err
	}
	f.Status = f.StatusAt(s.now())
	return &FlagResult{Flag: f, Audit: e.Receipt()}, nil
}

// LegalBases lists the legal bases in force at at, or now when at is nil
// (GET /v1/legal-bases); not audited, it says nothing about anyone.
func (s *Service) LegalBases(at *time.Time) []policies.LegalBasis {
	t := s.now()
	if at != nil {
		t = *at
	}
	return s.Policies.LegalBasesAt(t)
}

// LegalBasis returns one basis by code, in force or not, so that an old
// audit entry or flag naming a retired basis still resolves. Errors: ENOTFOUND.
func (s *Service) LegalBasis(code string) (policies.LegalBasis, error) {
	b, ok := s.Policies.LegalBasis(code)
	if !ok {
		return b, broker.Errorf(broker.ENOTFOUND, "no such legal basis")
	}
	return b, nil
}
