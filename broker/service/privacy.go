package service

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// ReviewStore keeps reviews and answers privacy officers' questions.
type ReviewStore interface {
	SyncEmergencyReviews(ctx context.Context) (int64, error)
	// DetectAnomalies raises the reviews for the entries after seq after
	// and returns the seq it got to, on an error too.
	DetectAnomalies(ctx context.Context, after int64, rules broker.AnomalyRules) (upTo, raised int64, err error)
	SeqBefore(ctx context.Context, t time.Time) (int64, error)
	Reviews(ctx context.Context, q broker.ReviewFilter) ([]*broker.Review, error)
	ReviewsAt(ctx context.Context, seq int64, overdueAge time.Duration) ([]*broker.Review, error)
	Judge(ctx context.Context, seq int64, kind, verdict, note, by, agency string, e *audit.Entry) error
	SubjectReport(ctx context.Context, scope string, subjectRefs []string) ([]broker.ReportItem, error)
	Stats(ctx context.Context, scope string, from, to time.Time, groupBy string) ([]broker.StatRow, error)
}

// Sweeper turns the log into reviews: a pending review for every emergency
// disclosure, and anomaly reviews for snooping signals. It runs in the
// background and before every review list, so the list is always current.
type Sweeper struct {
	Store    ReviewStore
	Rules    broker.AnomalyRules
	Interval time.Duration // default 30 s
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now

	mu        sync.Mutex
	watermark int64
	started   bool
}

// Sweep brings the reviews up to date with the log.
func (sw *Sweeper) Sweep(ctx context.Context) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if _, err := sw.Store.SyncEmergencyReviews(ctx); err != nil {
		return err
	}
	if !sw.started {
		window := sw.Rules.Window
		if window <= 0 {
			window = time.Hour
		}
		// Entries older than the window cannot make a new signal.
		now := time.Now
		if sw.Now != nil {
			now = sw.Now
		}
		seq, err := sw.Store.SeqBefore(ctx, now().Add(-window-time.Minute))
		if err != nil {
			return err
		}
		sw.watermark, sw.started = seq, true
	}
	// On an error upTo is where the sweep got to (it commits in chunks).
	upTo, _, err := sw.Store.DetectAnomalies(ctx, sw.watermark, sw.Rules)
	if upTo > sw.watermark {
		sw.watermark = upTo
	}
	return err
}

// Run sweeps every Interval until ctx ends.
func (sw *Sweeper) Run(ctx context.Context) {
	interval := sw.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := sw.Sweep(ctx); err != nil && ctx.Err() == nil && sw.Logger != nil {
			sw.Logger.Warn("review sweep", "subsystem", "reviews", "err", err)
		}
	}
}

// scope is the agency whose view p has of the log: "" for the broker
// operator's auditors, who see all.
func scope(p *broker.Principal) string {
	if p.AgencyKind == broker.KindBroker {
		return ""
	}
	return p.Agency
}

// ReviewList is a page of reviews.
type ReviewList struct {
	Reviews []*broker.Review `json:"reviews"`
	Audit   audit.Receipt    `json:"audit"`
}

// ListReviews lists the reviews of the caller's agency's decisions (all,
// for the operator's auditors), each reviewed entry as the caller may see it
// (projection.go). A review pending longer than ReviewOverdue is marked
// overdue.
func (s *Service) ListReviews(ctx context.Context, p *broker.Principal, rq broker.ReviewFilter) (*ReviewList, error) {
	if rq.Limit == 0 {
		rq.Limit = DefaultSearchLimit
	}
	if err := rq.Validate(MaxSearchLimit); err != nil {
		return nil, err
	}
	rq.OverdueAge = s.overdueAge()
	if _, err := s.authorize(ctx, p, policies.ActionAuditReview, nil, nil); err != nil {
		return nil, err
	}
	if s.Sweeper != nil {
		if err := s.Sweeper.Sweep(ctx); err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "reviews cannot be brought up to date", Err: err}
		}
	}
	rq.Scope = scope(p)
	reviews, err := s.Reviews.Reviews(ctx, rq)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "reviews cannot be read", Err: err}
	}
	pr, err := s.newProjection(ctx, p, flagIDsOf(reviews, func(r **broker.Review) []string { return (*r).FlagIDs }))
	if err != nil {
		return nil, err
	}
	for i, r := range reviews {
		reviews[i] = pr.projectReview(r)
	}
	e := s.entry(p, "audit.reviews", audit.Allow)
	e.Reasons = []string{"status:" + rq.Status}
	r, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	return &ReviewList{Reviews: reviews, Audit: r}, nil
}

func (s *Service) overdueAge() time.Duration {
	if s.ReviewOverdue > 0 {
		return s.ReviewOverdue
	}
	return 7 * 24 * time.Hour
}

// VerdictRequest is the body of POST /v1/audit/reviews/{seq}.
type VerdictRequest struct {
	Verdict string `json:"verdict"`
	Note    string `json:"note"`
	Kind    string `json:"kind,omitempty"` // needed only when an entry has two reviews
}

// Judge records a privacy officer's verdict on a review of a decision by
// their agency's staff (any, for the operator's auditors). The verdict is
// itself an audit entry, committed with it.
func (s *Service) Judge(ctx context.Context, p *broker.Principal, seqText string, req VerdictRequest) (*broker.Review, error) {
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if err != nil || seq < 1 {
		return nil, broker.Errorf(broker.ENOTFOUND, "no such review")
	}
	if req.Verdict != broker.ReviewJustified && req.Verdict != broker.ReviewUnjustified {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "verdict must be justified or unjustified")
	}
	if len(req.Note) > 1000 {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "note must be at most 1000 characters")
	}
	if req.Verdict == broker.ReviewUnjustified && req.Note == "" {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "an unjustified verdict needs a note")
	}
	if _, err := s.authorize(ctx, p, policies.ActionAuditReview, nil, nil); err != nil {
		return nil, err
	}
	if s.Sweeper != nil {
		if err := s.Sweeper.Sweep(ctx); err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "reviews cannot be brought up to date", Err: err}
		}
	}
	all, err := s.Reviews.ReviewsAt(ctx, seq, s.overdueAge())
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "reviews cannot be read", Err: err}
	}
	var candidates []*broker.Review
	for _, r := range all {
		if (scope(p) == "" || r.ActorAgency == p.Agency) && (req.Kind == "" || r.Kind == req.Kind) {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		e := s.entry(p, "review.verdict", audit.Deny)
		e.Reasons = []string{fmt.Sprintf("review:%d", seq), "no_visible_review"}
		if _, err := s.append(ctx, e); err != nil {
			return nil, err
		}
		return nil, broker.Errorf(broker.ENOTFOUND, "no such review")
	}
	if len(candidates) > 1 {
		e := s.entry(p, "review.verdict", audit.Deny)
		e.Reasons = []string{fmt.Sprintf("review:%d", seq), "kind_required"}
		if _, err := s.append(ctx, e); err != nil {
			return nil, err
		}
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "entry %d has an emergency and an anomaly review: say which with kind", seq)
	}
	r := candidates[0]
	if r.ActorAgency == p.Agency && r.Actor == p.Sub {
		// Nobody judges their own decision: the review exists because
		// somebody else must look at it.
		e := s.entry(p, "review.verdict", audit.Deny)
		e.Reasons = []string{fmt.Sprintf("review:%s:%d", r.Kind, seq), "own_decision"}
		if _, err := s.append(ctx, e); err != nil {
			return nil, err
		}
		return nil, broker.CodeErrorf(broker.EFORBIDDEN, broker.CodeForbidden, "a review of your own decision must be judged by another privacy officer")
	}
	// The verdict entry names the reviewed entry's flags as the log has
	// them; the answer shows them as the officer may see them (prepared
	// before the verdict commits, so a failure cannot hide a verdict).
	pr, err := s.newProjection(ctx, p, slices.Clone(r.FlagIDs))
	if err != nil {
		return nil, err
	}
	e := s.entry(p, "review.verdict", audit.Allow)
	e.FlagIDs, e.LegalBasis = r.FlagIDs, r.LegalBasis
	e.Reasons = []string{fmt.Sprintf("review:%s:%d", r.Kind, seq), "verdict:" + req.Verdict}
	if err := s.Reviews.Judge(ctx, seq, r.Kind, req.Verdict, req.Note, p.Sub, p.Agency, e); err != nil {
		if broker.ErrorKind(err) == broker.ECONFLICT {
			// Judged already: the refused second verdict is recorded too.
			d := s.entry(p, "review.verdict", audit.Deny)
			d.FlagIDs, d.LegalBasis = r.FlagIDs, r.LegalBasis
			d.Reasons = []string{fmt.Sprintf("review:%s:%d", r.Kind, seq), "already_judged"}
			if _, aerr := s.append(ctx, d); aerr != nil {
				return nil, aerr
			}
		}
		return nil, err
	}
	now := s.now().UTC()
	r.Status, r.Note, r.JudgedBy, r.JudgedAgency, r.JudgedAt, r.VerdictSeq, r.Overdue = req.Verdict, req.Note, p.Sub, p.Agency, &now, &e.Seq, false
	return pr.projectReview(r), nil
}

// SubjectReportRequest is the body of POST /v1/audit/subject-report.
type SubjectReportRequest struct {
	Subject string `json:"subject"`
}

// SubjectReport lists every disclosure about one person within the
// officer's view, each as the officer may see it (projection.go), to answer
// the person's access request. The number is never echoed; the call is
// audited.
type SubjectReport struct {
	Disclosures []broker.ReportItem `json:"disclosures"`
	Audit       audit.Receipt       `json:"audit"`
}

// Report builds a person's disclosure report.
func (s *Service) Report(ctx context.Context, p *broker.Principal, req SubjectReportRequest) (*SubjectReport, error) {
	subj, err := broker.ParseSubject(req.Subject, s.TestSubjects)
	if err != nil {
		return nil, err
	}
	keys, err := s.Subjects.Current()
	if err != nil {
		return nil, err
	}
	ref, refs := keys.RefAndRefs(subj)
	if _, err := s.authorize(ctx, p, policies.ActionAuditReport, nil, func(e *audit.Entry) { e.SubjectRef = ref }); err != nil {
		return nil, err
	}
	if s.Sweeper != nil {
		if err := s.Sweeper.Sweep(ctx); err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "reviews cannot be brought up to date", Err: err}
		}
	}
	raw, err := s.Reviews.SubjectReport(ctx, scope(p), refs)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
	}
	pr, err := s.newProjection(ctx, p, flagIDsOf(raw, func(it *broker.ReportItem) []string { return it.FlagIDs }))
	if err != nil {
		return nil, err
	}
	items := make([]broker.ReportItem, 0, len(raw))
	for i := range raw {
		if it, ok := pr.reportItem(&raw[i], refs); ok {
			items = append(items, it)
		}
	}
	e := s.entry(p, policies.ActionAuditReport, audit.Allow)
	e.SubjectRef = ref
	r, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	return &SubjectReport{Disclosures: items, Audit: r}, nil
}

// Stats are audit figures for a period.
type Stats struct {
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	GroupBy string           `json:"group_by"`
	Groups  []broker.StatRow `json:"groups"`
	Audit   audit.Receipt    `json:"audit"`
}

// AuditStats counts checks, disclosures, denials, emergency uses and
// anomalies in [from, to) (default: the last 30 days) within the caller's
// view, as projected: another agency's entry counts under the bases of the
// caller's flags it disclosed, and only the caller's own staff's anomalies
// count (postgres.Stats).
func (s *Service) AuditStats(ctx context.Context, p *broker.Principal, q broker.StatsFilter) (*Stats, error) {
	to, from := q.To, q.From
	if to.IsZero() {
		to = s.now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-30 * 24 * time.Hour)
	}
	if !to.After(from) {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidRange, "to must be after from")
	}
	groupBy := q.GroupBy
	if groupBy == "" {
		groupBy = "agency"
	}
	if !slices.Contains(broker.StatGroups, groupBy) {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "group_by must be agency, legal_basis, action or day")
	}
	if _, err := s.authorize(ctx, p, policies.ActionAuditStats, nil, nil); err != nil {
		return nil, err
	}
	if s.Sweeper != nil {
		if err := s.Sweeper.Sweep(ctx); err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "reviews cannot be brought up to date", Err: err}
		}
	}
	rows, err := s.Reviews.Stats(ctx, scope(p), from, to, groupBy)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
	}
	r, err := s.append(ctx, s.entry(p, policies.ActionAuditStats, audit.Allow))
	if err != nil {
		return nil, err
	}
	return &Stats{From: from, To: to, GroupBy: groupBy, Groups: rows, Audit: r}, nil
}
