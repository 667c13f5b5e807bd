package service

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// WarningRequest is the body of POST /v1/warnings: a flag and its targets.
type WarningRequest struct {
	broker.FlagRequest
	Targets Targets `json:"targets"`
}

// Targets are the offices a warning is delivered to.
type Targets struct {
	Offices []string `json:"offices"`
}

// MaxTargets bounds one warning's offices.
const MaxTargets = 50

// WarningResult is a warning as its issuer sees it.
type WarningResult struct {
	*broker.Warning
	Flag  *broker.Flag  `json:"flag,omitempty"`
	Audit audit.Receipt `json:"audit"`
}

// IssueWarning lets a police liaison warn named offices: a flag whose
// audience includes the targets, delivered to each target's inbox (and
// webhook), with one audit entry, all in one transaction.
func (s *Service) IssueWarning(ctx context.Context, p *broker.Principal, req WarningRequest) (*WarningResult, error) {
	offices := req.Targets.Offices
	if len(offices) == 0 || len(offices) > MaxTargets {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "targets.offices needs 1 to %d offices", MaxTargets)
	}
	seen := map[string]bool{}
	for _, o := range offices {
		if !broker.ValidID(o) {
			return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "targets.offices: %q is not an office id", truncate(o))
		}
		if seen[o] {
			return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "targets.offices: %q given twice", o)
		}
		seen[o] = true
	}
	f, res, err := s.prepareFlag(ctx, p, &req.FlagRequest, offices)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorize(ctx, p, policies.ActionWarningIssue, res, func(e *audit.Entry) {
		e.SubjectRef, e.LegalBasis = f.SubjectRef, f.LegalBasis
	}); err != nil {
		return nil, err
	}
	w := &broker.Warning{ID: newID(), FlagID: f.ID, Issuer: p.Agency, IssuedBy: p.Sub}
	e := s.entry(p, policies.ActionWarningIssue, audit.Allow)
	e.SubjectRef, e.FlagIDs, e.LegalBasis = f.SubjectRef, []string{f.ID}, f.LegalBasis
	e.Reasons = []string{"targets:" + strings.Join(offices, ",")}
	if err := s.Warnings.CreateWarning(ctx, f, w, offices, e); err != nil {
		return nil, err
	}
	return &WarningResult{Warning: w, Flag: f, Audit: e.Receipt()}, nil
}

// Warning shows the issuing agency a warning's state at every target
// office: delivered, read, acknowledged, and its webhook pushes.
func (s *Service) Warning(ctx context.Context, p *broker.Principal, id string) (*WarningResult, error) {
	f, err := s.Warnings.WarningFlag(ctx, id)
	if err != nil && broker.ErrorKind(err) != broker.ENOTFOUND {
		return nil, err
	}
	flagID := ""
	if f != nil {
		flagID = f.ID
	}
	// Visible exactly when its flag is: to the issuing agency.
	if _, err := s.flagFor(ctx, p, flagID, policies.ActionFlagRead); err != nil {
		if broker.ErrorKind(err) == broker.ENOTFOUND {
			return nil, broker.Errorf(broker.ENOTFOUND, "no such warning")
		}
		return nil, err
	}
	w, err := s.Warnings.Warning(ctx, id)
	if err != nil {
		return nil, err
	}
	e := s.entry(p, "warning.read", audit.Allow)
	e.SubjectRef, e.FlagIDs, e.LegalBasis = f.SubjectRef, []string{f.ID}, f.LegalBasis
	r, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	f.Status = f.StatusAt(s.now())
	return &WarningResult{Warning: w, Flag: f, Audit: r}, nil
}

// InboxQuery selects an office's inbox page.
type InboxQuery struct {
	Office string        // "" means the caller's office
	After  string        // cursor: "" for the beginning
	Limit  int           // default 50, at most 200
	Wait   time.Duration // long-poll: at most 30 s
}

// Inbox limits.
const (
	DefaultInboxLimit = 50
	MaxInboxLimit     = 200
	MaxInboxWait      = 30 * time.Second
	// PollInterval is how often a long-poll re-reads without a notification.
	PollInterval = 2 * time.Second
)

// InboxWarning is one warning in an office's inbox: the flag as the
// disclosure policy lets this reader see it, and the delivery's state.
type InboxWarning struct {
	ID          string     `json:"id"`
	Cursor      string     `json:"cursor"`
	Office      string     `json:"office"`
	DeliveredAt time.Time  `json:"delivered_at"`
	ReadAt      *time.Time `json:"read_at"`
	AckedAt     *time.Time `json:"acked_at"`
	Flag        CheckFlag  `json:"flag"`
}

// InboxResult is one page of an inbox.
type InboxResult struct {
	Warnings []InboxWarning `json:"warnings"`
	Next     string         `json:"next"`
	Audit    audit.Receipt  `json:"audit"`
}

// Inbox returns an office's warnings after a cursor, oldest first. With a
// wait it long-polls: it answers as soon as a warning arrives (woken by a
// notification from whichever replica stored it) or when the wait ends.
// Every read is audited, and the flags shown are decided by the policy.
func (s *Service) Inbox(ctx context.Context, p *broker.Principal, q InboxQuery) (*InboxResult, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultInboxLimit
	}
	q.Limit = min(q.Limit, MaxInboxLimit)
	office := q.Office
	if office == "" {
		office = p.Office
	}
	if _, err := s.authorize(ctx, p, policies.ActionWarningInbox, &policies.OfficeResource{Office: office}, func(e *audit.Entry) {
		e.Reasons = append(e.Reasons, "office:"+truncate(office))
	}); err != nil {
		return nil, err
	}
	after := int64(0)
	if q.After != "" {
		after, _ = strconv.ParseInt(q.After, 10, 64)
	}
	deadline := time.Now().Add(q.Wait)
	var items []broker.InboxItem
	for {
		var wake <-chan struct{}
		cancel := func() {}
		if s.InboxWaiter != nil && q.Wait > 0 {
			wake, cancel = s.InboxWaiter.Subscribe(office) // before reading, so no delivery slips between
		}
		var err error
		items, err = s.Warnings.Inbox(ctx, office, after, q.Limit)
		if err != nil {
			cancel()
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "the inbox cannot be read", Err: err}
		}
		left := time.Until(deadline)
		if len(items) > 0 || left <= 0 {
			cancel()
			break
		}
		t := time.NewTimer(min(left, PollInterval))
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			cancel()
			return nil, ctx.Err()
		}
		t.Stop()
		cancel()
	}

	res := &InboxResult{Warnings: []InboxWarning{}, Next: strconv.FormatInt(after, 10)}
	e := s.entry(p, policies.ActionWarningInbox, audit.Allow)
	e.Office = office
	if len(items) > 0 {
		shown, bases, err := s.discloseInbox(ctx, p, items)
		if err != nil {
			return nil, err
		}
		res.Warnings = shown
		res.Next = strconv.FormatInt(items[len(items)-1].Pos, 10)
		for _, w := range shown {
			e.FlagIDs = append(e.FlagIDs, w.Flag.ID)
		}
		e.LegalBasis = bases
	}
	r, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	res.Audit = r
	positions := make([]int64, 0, len(items))
	for _, it := range items {
		positions = append(positions, it.Pos)
	}
	if err := s.Warnings.MarkRead(ctx, office, positions); err != nil && s.Logger != nil {
		s.Logger.Warn("mark inbox read", "subsystem", "inbox", "err", err)
	}
	return res, nil
}

// discloseInbox asks the disclosure policy, once for the page, which of the
// warnings' flags this reader may see, and projects them.
func (s *Service) discloseInbox(ctx context.Context, p *broker.Principal, items []broker.InboxItem) ([]InboxWarning, string, error) {
	in := policies.DisclosureInput{Principal: policyPrincipal(p), Purpose: "case-processing", Time: s.now()}
	for _, it := range items {
		f := it.Flag
		if f.StatusAt(s.now()) != broker.FlagActive {
			continue // revoked or expired: the delivery stays, the flag is not shown
		}
		in.Flags = append(in.Flags, flagMeta(f))
	}
	d, err := s.Policies.Disclose(ctx, in)
	if err != nil {
		return nil, "", &broker.Error{Kind: broker.EINTERNAL, Message: "policy evaluation failed", Err: err}
	}
	allowed := map[string]policies.Disclosed{}
	var bases []string
	for _, dis := range d.Flags {
		allowed[dis.ID] = dis
		if !slices.Contains(bases, dis.LegalBasis) {
			bases = append(bases, dis.LegalBasis)
		}
	}
	slices.Sort(bases)
	out := make([]InboxWarning, 0, len(items))
	for _, it := range items {
		dis, ok := allowed[it.Flag.ID]
		if !ok {
			continue
		}
		out = append(out, InboxWarning{ID: it.WarningID, Cursor: strconv.FormatInt(it.Pos, 10), Office: it.Office,
			DeliveredAt: it.DeliveredAt.UTC(), ReadAt: it.ReadAt, AckedAt: it.AckedAt, Flag: s.project(it.Flag, dis)})
	}
	return out, strings.Join(bases, ","), nil
}

// AckResult answers an acknowledgement.
type AckResult struct {
	ID      string        `json:"id"`
	Office  string        `json:"office"`
	Acked   bool          `json:"acknowledged"`
	AckedAt *time.Time    `json:"acked_at,omitempty"`
	Audit   audit.Receipt `json:"audit"`
}

// Ack records that the caller's office acknowledged a warning. A second
// acknowledgement answers the same and changes nothing.
func (s *Service) Ack(ctx context.Context, p *broker.Principal, id string) (*AckResult, error) {
	if _, err := s.authorize(ctx, p, policies.ActionWarningAck, &policies.OfficeResource{Office: p.Office}, nil); err != nil {
		return nil, err
	}
	f, err := s.Warnings.WarningFlag(ctx, id)
	if err != nil && broker.ErrorKind(err) != broker.ENOTFOUND {
		return nil, err
	}
	e := s.entry(p, policies.ActionWarningAck, audit.Allow)
	if f != nil {
		e.FlagIDs, e.SubjectRef = []string{f.ID}, f.SubjectRef
	}
	if f == nil {
		e.Decision, e.Reasons = audit.Deny, []string{"no_such_warning"}
		if _, err := s.append(ctx, e); err != nil {
			return nil, err
		}
		return nil, broker.Errorf(broker.ENOTFOUND, "no such warning for this office")
	}
	if _, err := s.Warnings.AckWarning(ctx, id, p.Office, p.Sub, e); err != nil {
		if broker.ErrorKind(err) == broker.ENOTFOUND {
			e.Decision, e.Reasons = audit.Deny, []string{"not_a_target_office"}
			if _, aerr := s.append(ctx, e); aerr != nil {
				return nil, aerr
			}
		}
		return nil, err
	}
	res := &AckResult{ID: id, Office: p.Office, Acked: true, Audit: e.Receipt()}
	w, err := s.Warnings.Warning(ctx, id)
	if err != nil {
		// The acknowledgement and its entry are committed: the answer is
		// theirs, without the time when it cannot be read back (the
		// database went away in between, as in a failover).
		return res, nil
	}
	for _, d := range w.Deliveries {
		if d.Office == p.Office {
			res.AckedAt = d.AckedAt
		}
	}
	return res, nil
}

// WebhookRequest is the body of PUT /v1/offices/{office}/webhook.
type WebhookRequest struct {
	URL string `json:"url"`
}

// SetWebhook lets an office's security coordinator register where its
// deliveries are pushed ("" removes it).
func (s *Service) SetWebhook(ctx context.Context, p *broker.Principal, office string, req WebhookRequest) (audit.Receipt, error) {
	if req.URL != "" {
		u, err := broker.ParseWebhookURL(req.URL, s.AllowHTTPWebhooks)
		if err != nil {
			return audit.Receipt{}, err
		}
		if u.IP != nil && !s.AllowHTTPWebhooks && !PublicAddr(*u.IP) {
			return audit.Receipt{}, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "url must name a public address")
		}
	}
	if _, err := s.authorize(ctx, p, policies.ActionWebhookSet, &policies.OfficeResource{Office: office}, nil); err != nil {
		return audit.Receipt{}, err
	}
	e := s.entry(p, policies.ActionWebhookSet, audit.Allow)
	e.Office = office
	if err := s.Warnings.SetWebhook(ctx, office, req.URL, p.Sub, e); err != nil {
		return audit.Receipt{}, err
	}
	return e.Receipt(), nil
}

// DisclosureFeed is one page of an issuer's disclosure notices.
type DisclosureFeed struct {
	Disclosures []broker.Disclosure `json:"disclosures"`
	Next        string              `json:"next"`
	Audit       audit.Receipt       `json:"audit"`
}

// Disclosures tells an issuing agency which office saw which of its flags,
// when, and under which basis, from the audit log itself.
func (s *Service) Disclosures(ctx context.Context, p *broker.Principal, after string, limit int) (*DisclosureFeed, error) {
	from := int64(0)
	if after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "after is not a cursor from this feed")
		}
		from = n
	}
	if limit == 0 {
		limit = DefaultSearchLimit
	}
	if limit < 1 || limit > MaxSearchLimit {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be 1 to %d", MaxSearchLimit)
	}
	if _, err := s.authorize(ctx, p, policies.ActionDisclosuresRead, nil, nil); err != nil {
		return nil, err
	}
	items, err := s.Warnings.Disclosures(ctx, p.Agency, from, limit)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
	}
	r, err := s.append(ctx, s.entry(p, policies.ActionDisclosuresRead, audit.Allow))
	if err != nil {
		return nil, err
	}
	feed := &DisclosureFeed{Disclosures: items, Next: strconv.FormatInt(from, 10), Audit: r}
	if len(items) > 0 {
		feed.Next = strconv.FormatInt(items[len(items)-1].Seq, 10)
	}
	return feed, nil
}
