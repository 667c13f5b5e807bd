package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// AuditSearch is the body of POST /v1/audit/search.
type AuditSearch struct {
	Subject       *string    `json:"subject,omitempty"`
	ActorAgency   string     `json:"actor_agency,omitempty"`
	Actor         string     `json:"actor,omitempty"`
	From          *time.Time `json:"from,omitempty"`
	To            *time.Time `json:"to,omitempty"`
	EmergencyOnly bool       `json:"emergency_only,omitempty"`
	AfterSeq      int64      `json:"after_seq,omitempty"`
	Limit         int        `json:"limit,omitempty"`
}

// Search limits.
const (
	DefaultSearchLimit = 100
	MaxSearchLimit     = 1000
)

// AuditSearchResult is the answer: the entries, and where the search itself
// was recorded.
type AuditSearchResult struct {
	Entries []EntryView   `json:"entries"`
	Next    int64         `json:"next_after_seq,omitempty"`
	Audit   audit.Receipt `json:"audit"`
}

// SearchAudit lets a privacy officer search the log: entries whose actor is
// in the officer's agency or that disclosed a flag it issued, each as the
// officer's agency may see it (projection.go); the broker operator's
// auditors see all, whole. The search is itself audited.
func (s *Service) SearchAudit(ctx context.Context, p *broker.Principal, req AuditSearch) (*AuditSearchResult, error) {
	ref := ""
	q := audit.Query{ActorAgency: req.ActorAgency, Actor: req.Actor, EmergencyOnly: req.EmergencyOnly, AfterSeq: req.AfterSeq, Limit: req.Limit}
	if req.Subject != nil {
		subj, err := broker.ParseSubject(*req.Subject, s.TestSubjects)
		if err != nil {
			return nil, err
		}
		h, err := s.Subjects.Current()
		if err != nil {
			return nil, err
		}
		q.SubjectRefs, ref = h.Refs(subj), h.Ref(subj)
	}
	if req.From != nil {
		q.From = *req.From
	}
	if req.To != nil {
		q.To = *req.To
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidRange, "to must be after from")
	}
	if q.AfterSeq < 0 {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "after_seq must not be negative")
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultSearchLimit
	case q.Limit < 0 || q.Limit > MaxSearchLimit:
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be 1 to %d", MaxSearchLimit)
	}

	if _, err := s.authorize(ctx, p, policies.ActionAuditSearch, nil, func(e *audit.Entry) { e.SubjectRef = ref }); err != nil {
		return nil, err
	}
	q.Scope = scope(p)
	// Another agency's employee ids are not in an officer's view, so they
	// cannot be searched for either: actor means one of the caller's own.
	actorElsewhere := q.Scope != "" && q.Actor != "" && q.ActorAgency != "" && q.ActorAgency != q.Scope
	if q.Scope != "" && q.Actor != "" {
		q.ActorAgency = q.Scope
	}
	var entries []audit.Entry
	if !actorElsewhere {
		var err error
		if entries, err = s.AuditReader.Search(ctx, q); err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
		}
	}
	pr, err := s.newProjection(ctx, p, flagIDsOf(entries, func(e *audit.Entry) []string { return e.FlagIDs }))
	if err != nil {
		return nil, err
	}
	views := make([]EntryView, 0, len(entries))
	for i := range entries {
		v := pr.project(&entries[i])
		// The subject matched the entry's subject_ref; when the view
		// withholds it, the match must show in the view (one of the
		// viewer's flags about the person) or the entry is left out, so the
		// filter cannot tell what the view does not.
		if len(q.SubjectRefs) > 0 && v.SubjectRef == "" && !pr.about(v.FlagIDs, q.SubjectRefs) {
			continue
		}
		views = append(views, v)
	}
	e := s.entry(p, policies.ActionAuditSearch, audit.Allow)
	e.SubjectRef = ref
	receipt, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	res := &AuditSearchResult{Entries: views, Audit: receipt}
	if len(entries) == q.Limit { // a full page was read, though the view may show fewer
		res.Next = entries[len(entries)-1].Seq
	}
	return res, nil
}

// EntryBundle returns entry bundle index of the log's tree, width entries
// wide (C2SP tlog-tiles: each entry as a uint16 length and its export
// line). Every agency's entries are in a bundle, so only the broker
// operator's auditors may read them (an agency's officer searches its own
// scope); each read is audited before the bundle is returned.
func (s *Service) EntryBundle(ctx context.Context, p *broker.Principal, index uint64, width int) ([]byte, error) {
	if _, err := s.authorize(ctx, p, policies.ActionAuditEntries, nil, nil); err != nil {
		return nil, err
	}
	b, err := s.AuditReader.EntryBundle(ctx, index, width)
	if errors.Is(err, audit.ErrNoTile) {
		return nil, broker.Errorf(broker.ENOTFOUND, "the log has no entry bundle %d of %d entries", index, width)
	}
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
	}
	// The entry names what was read: entries first..last.
	e := s.entry(p, policies.ActionAuditEntries, audit.Allow)
	first := index*256 + 1
	e.Reasons = []string{fmt.Sprintf("entries:%d-%d", first, first+uint64(width)-1)}
	if _, err := s.append(ctx, e); err != nil {
		return nil, err
	}
	return b, nil
}
