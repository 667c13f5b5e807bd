package service_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"varsel/broker"
	"varsel/broker/service"
)

// TestListReviews: a bad filter is 422 before the policy is asked (so it
// says nothing about the caller's role and is not audited); a good one
// lists the reviews in the caller's view, audited as audit.reviews; a role
// that may not list is 403, audited as audit.review.
func TestListReviews(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// One emergency check by a health worker and one by a NAV caseworker:
	// each becomes a pending emergency review of its own agency.
	if _, err := f.check(as("ous", broker.RoleHealthWorker, "", "lege-rev"), person(), justification); err != nil {
		t.Fatal(err)
	}
	ous := head(t)
	if _, err := f.check(as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-rev"), person(), justification); err != nil {
		t.Fatal(err)
	}
	nav := head(t)

	po := func() *broker.Principal { return as("ous", broker.RolePrivacyOfficer, "", "po-rev") }
	cases := []struct {
		name         string
		who          *broker.Principal
		filter       broker.ReviewFilter
		overdue      time.Duration // Service.ReviewOverdue; 0: the default (7 days)
		code         string        // 422 code; "forbidden" for the policy's 403
		sees, misses []int64
		overdueSeen  bool
	}{
		{name: "all, the default", who: po(), sees: []int64{ous}, misses: []int64{nav}},
		{name: "pending emergency reviews", who: po(), filter: broker.ReviewFilter{Status: broker.ReviewPending, Kind: broker.ReviewEmergency},
			sees: []int64{ous}},
		{name: "justified", who: po(), filter: broker.ReviewFilter{Status: broker.ReviewJustified}, misses: []int64{ous}},
		{name: "unjustified", who: po(), filter: broker.ReviewFilter{Status: broker.ReviewUnjustified}, misses: []int64{ous}},
		{name: "anomalies", who: po(), filter: broker.ReviewFilter{Kind: broker.ReviewAnomaly}, misses: []int64{ous}},
		{name: "after the review's seq", who: po(), filter: broker.ReviewFilter{AfterSeq: ous}, misses: []int64{ous}},
		{name: "from just before it, limit 1", who: po(), filter: broker.ReviewFilter{AfterSeq: ous - 1, Limit: 1}, sees: []int64{ous}},
		{name: "limit 1000", who: po(), filter: broker.ReviewFilter{Limit: service.MaxSearchLimit}, sees: []int64{ous}},
		{name: "overdue, by the default age", who: po(), filter: broker.ReviewFilter{Status: "overdue"}, misses: []int64{ous}},
		{name: "overdue once older than ReviewOverdue", who: po(), filter: broker.ReviewFilter{Status: "overdue"}, overdue: time.Microsecond,
			sees: []int64{ous}, overdueSeen: true},
		{name: "another agency's privacy officer", who: as("nav-stat", broker.RolePrivacyOfficer, "", "po-rev-nav"), sees: []int64{nav}, misses: []int64{ous}},
		{name: "the operator's auditors see every agency", who: as("varsel-tilsyn", broker.RolePrivacyOfficer, "", "tilsyn-rev"),
			sees: []int64{ous, nav}},
		{name: "unknown status", who: po(), filter: broker.ReviewFilter{Status: "open"}, code: broker.CodeInvalidField},
		// "all" is the HTTP query's spelling; the filter says "" (broker/api maps it).
		{name: "status all is not the filter's spelling", who: po(), filter: broker.ReviewFilter{Status: "all"}, code: broker.CodeInvalidField},
		{name: "unknown kind", who: po(), filter: broker.ReviewFilter{Kind: "complaint"}, code: broker.CodeInvalidField},
		{name: "negative after_seq", who: po(), filter: broker.ReviewFilter{AfterSeq: -1}, code: broker.CodeInvalidField},
		{name: "negative limit", who: po(), filter: broker.ReviewFilter{Limit: -1}, code: broker.CodeInvalidField},
		{name: "limit over 1000", who: po(), filter: broker.ReviewFilter{Limit: service.MaxSearchLimit + 1}, code: broker.CodeInvalidField},
		{name: "a bad filter from a role that may not list is still 422", who: as("ous", broker.RoleHealthWorker, "", "lege-rev2"),
			filter: broker.ReviewFilter{Status: "open"}, code: broker.CodeInvalidField},
		{name: "a role that may not list", who: as("ous", broker.RoleHealthWorker, "", "lege-rev2"), code: broker.CodeForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.svc.ReviewOverdue = c.overdue
			before := head(t)
			res, err := f.svc.ListReviews(ctx, c.who, c.filter)
			switch c.code {
			case broker.CodeForbidden:
				wantErr(t, err, broker.EFORBIDDEN, c.code)
				expectAudit(t, before, deny("audit.review", "role_not_permitted"))
				return
			case "":
			default:
				wantErr(t, err, broker.EINVALID, c.code)
				expectAudit(t, before)
				return
			}
			wantErr(t, err, "", "")
			e := expectAudit(t, before, allow("audit.reviews", "status:"+c.filter.Status))[0]
			wantReceipt(t, res.Audit, e)
			limit := c.filter.Limit
			if limit == 0 {
				limit = service.DefaultSearchLimit
			}
			if len(res.Reviews) > limit {
				t.Fatalf("%d reviews, limit %d", len(res.Reviews), limit)
			}
			bySeq := map[int64]*broker.Review{}
			for _, r := range res.Reviews {
				bySeq[r.Seq] = r
				if c.who.AgencyKind != broker.KindBroker && r.ActorAgency != c.who.Agency {
					t.Fatalf("%s sees a review of %s", c.who.Agency, r.ActorAgency)
				}
				if r.Seq <= c.filter.AfterSeq || (c.filter.Kind != "" && r.Kind != c.filter.Kind) ||
					(c.filter.Status != "" && c.filter.Status != "overdue" && r.Status != c.filter.Status) {
					t.Fatalf("review outside the filter: %+v", r)
				}
			}
			for _, seq := range c.sees {
				r := bySeq[seq]
				if r == nil || r.Kind != broker.ReviewEmergency || r.Status != broker.ReviewPending || r.Overdue != c.overdueSeen ||
					r.Justification != strings.TrimSpace(justification) {
					t.Fatalf("review of entry %d: %+v", seq, r)
				}
			}
			for _, seq := range c.misses {
				if bySeq[seq] != nil {
					t.Fatalf("review of entry %d listed", seq)
				}
			}
		})
	}
}

// TestJudge walks one emergency review through refused and allowed verdicts.
func TestJudge(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.check(as("ous", broker.RoleHealthWorker, "", "lege-judge"), person(), justification); err != nil {
		t.Fatal(err)
	}
	seq := head(t)
	if _, err := f.check(as("ous", broker.RoleHealthWorker, "", "lege-judge"), person(), ""); err != nil {
		t.Fatal(err)
	}
	ordinary := head(t) // an ordinary check: no review
	po := func() *broker.Principal { return as("ous", broker.RolePrivacyOfficer, "", "po-judge") }
	s := itoa(seq)
	steps := []struct {
		name       string
		who        *broker.Principal
		seq        string
		req        service.VerdictRequest
		kind, code string
		audit      []audited
	}{
		{name: "seq not a number", who: po(), seq: "abc", req: service.VerdictRequest{Verdict: "justified"}, kind: broker.ENOTFOUND, code: broker.CodeNotFound},
		{name: "seq zero", who: po(), seq: "0", req: service.VerdictRequest{Verdict: "justified"}, kind: broker.ENOTFOUND, code: broker.CodeNotFound},
		{name: "unknown verdict", who: po(), seq: s, req: service.VerdictRequest{Verdict: "maybe"}, kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "unjustified without a note", who: po(), seq: s, req: service.VerdictRequest{Verdict: "unjustified"}, kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "note over 1000 bytes", who: po(), seq: s, req: service.VerdictRequest{Verdict: "justified", Note: strings.Repeat("ø", 501)},
			kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "a role that may not judge", who: as("ous", broker.RoleHealthWorker, "", "lege-judge2"), seq: s, req: service.VerdictRequest{Verdict: "justified"},
			kind: broker.EFORBIDDEN, code: broker.CodeForbidden, audit: []audited{deny("audit.review", "role_not_permitted")}},
		{name: "another agency's privacy officer", who: as("nav-stat", broker.RolePrivacyOfficer, "", "po-judge-nav"), seq: s,
			req: service.VerdictRequest{Verdict: "justified"}, kind: broker.ENOTFOUND, code: broker.CodeNotFound,
			audit: []audited{deny("review.verdict", "review:"+s, "no_visible_review")}},
		{name: "the wrong kind", who: po(), seq: s, req: service.VerdictRequest{Verdict: "justified", Kind: broker.ReviewAnomaly},
			kind: broker.ENOTFOUND, code: broker.CodeNotFound, audit: []audited{deny("review.verdict", "review:"+s, "no_visible_review")}},
		{name: "an entry without a review", who: po(), seq: itoa(ordinary), req: service.VerdictRequest{Verdict: "justified"},
			kind: broker.ENOTFOUND, code: broker.CodeNotFound, audit: []audited{deny("review.verdict", "review:"+itoa(ordinary), "no_visible_review")}},
		{name: "justified", who: po(), seq: s, req: service.VerdictRequest{Verdict: "justified", Note: "the threat was real"},
			audit: []audited{allow("review.verdict", "review:emergency:"+s, "verdict:justified")}},
		{name: "judged twice", who: po(), seq: s, req: service.VerdictRequest{Verdict: "unjustified", Note: "second thoughts"},
			kind: broker.ECONFLICT, code: broker.CodeConflict, audit: []audited{deny("review.verdict", "review:emergency:"+s, "already_judged")}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := head(t)
			r, err := f.svc.Judge(ctx, st.who, st.seq, st.req)
			wantErr(t, err, st.kind, st.code)
			entries := expectAudit(t, before, st.audit...)
			if st.kind != "" {
				return
			}
			if r.Seq != seq || r.Status != broker.ReviewJustified || r.JudgedBy != st.who.Sub || r.JudgedAgency != "ous" ||
				r.VerdictSeq == nil || *r.VerdictSeq != entries[0].Seq {
				t.Fatalf("verdict answered %+v", r)
			}
			if count(t, `SELECT count(*) FROM reviews WHERE seq = $1 AND status = 'justified' AND verdict_seq = $2`, seq, entries[0].Seq) != 1 {
				t.Fatal("the verdict was not stored")
			}
		})
	}
}

// TestAuditStats runs at a time of its own, so that it can count exactly
// the entries it made: [from, to) by ts, within the caller's view.
func TestAuditStats(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	t0 := time.Date(2033, 5, 4, 9, 50, 0, 0, time.UTC)
	now := t0.Add(10 * time.Minute)
	f.clock.Set(t0)
	// At t0, all by ous staff: a flag issued (hpl-23-4), a check that
	// discloses it, a check that finds nothing, a refused check.
	subject := person()
	req := flagReq(subject, "hpl-23-4", kinds("health"), t0)
	req.SubjectInformed = informed(true, "")
	f.issue(t, as("ous", broker.RoleHealthWorker, "", "lege-stat"), req)
	for _, p := range []*broker.Principal{as("ous", broker.RoleHealthWorker, "", "lege-stat2"), as("ous", broker.RoleHealthWorker, "", "lege-stat2")} {
		if _, err := f.check(p, subject, ""); err != nil {
			t.Fatal(err)
		}
		subject = person()
	}
	if _, err := f.check(as("ous", broker.RolePrivacyOfficer, "", "po-stat"), subject, ""); broker.ErrorKind(err) != broker.EFORBIDDEN {
		t.Fatal(err)
	}
	f.clock.Set(now)

	po := func() *broker.Principal { return as("ous", broker.RolePrivacyOfficer, "", "po-stat") }
	ousRow := broker.StatRow{Key: "ous", Checks: 3, Disclosures: 1, Denials: 1}
	cases := []struct {
		name       string
		who        *broker.Principal
		q          broker.StatsFilter
		kind, code string
		from, to   time.Time // the period answered
		groupBy    string
		groups     []broker.StatRow
	}{
		{name: "the default: the last 30 days by agency", who: po(), from: now.Add(-30 * 24 * time.Hour), to: now, groupBy: "agency",
			groups: []broker.StatRow{ousRow}},
		{name: "by action", who: po(), q: broker.StatsFilter{GroupBy: "action"}, from: now.Add(-30 * 24 * time.Hour), to: now, groupBy: "action",
			groups: []broker.StatRow{{Key: "check", Checks: 3, Disclosures: 1, Denials: 1}, {Key: "flag.issue"}}},
		{name: "by day", who: po(), q: broker.StatsFilter{GroupBy: "day"}, from: now.Add(-30 * 24 * time.Hour), to: now, groupBy: "day",
			groups: []broker.StatRow{{Key: "2033-05-04", Checks: 3, Disclosures: 1, Denials: 1}}},
		{name: "by legal basis", who: po(), q: broker.StatsFilter{GroupBy: "legal_basis"}, from: now.Add(-30 * 24 * time.Hour), to: now,
			groupBy: "legal_basis", groups: []broker.StatRow{{Key: "", Checks: 2, Denials: 1}, {Key: "hpl-23-4", Checks: 1, Disclosures: 1}}},
		{name: "a period holding t0", who: po(), q: broker.StatsFilter{From: t0, To: t0.Add(time.Microsecond)}, from: t0, to: t0.Add(time.Microsecond),
			groupBy: "agency", groups: []broker.StatRow{ousRow}},
		{name: "to is exclusive", who: po(), q: broker.StatsFilter{From: t0.Add(-time.Hour), To: t0}, from: t0.Add(-time.Hour), to: t0,
			groupBy: "agency", groups: []broker.StatRow{}},
		{name: "only from: to is now", who: po(), q: broker.StatsFilter{From: t0}, from: t0, to: now, groupBy: "agency", groups: []broker.StatRow{ousRow}},
		{name: "only to: from is 30 days before", who: po(), q: broker.StatsFilter{To: t0.Add(time.Second)}, from: t0.Add(time.Second - 30*24*time.Hour),
			to: t0.Add(time.Second), groupBy: "agency", groups: []broker.StatRow{ousRow}},
		{name: "another agency's view", who: as("nav-stat", broker.RolePrivacyOfficer, "", "po-stat-nav"), from: now.Add(-30 * 24 * time.Hour), to: now,
			groupBy: "agency", groups: []broker.StatRow{}},
		{name: "the operator's auditors see every agency", who: as("varsel-tilsyn", broker.RolePrivacyOfficer, "", "tilsyn-stat"),
			from: now.Add(-30 * 24 * time.Hour), to: now, groupBy: "agency", groups: []broker.StatRow{ousRow}},
		{name: "from after to", who: po(), q: broker.StatsFilter{From: t0, To: t0.Add(-time.Second)}, kind: broker.EINVALID, code: broker.CodeInvalidRange},
		{name: "from equal to to", who: po(), q: broker.StatsFilter{From: t0, To: t0}, kind: broker.EINVALID, code: broker.CodeInvalidRange},
		{name: "from after now, to defaulted", who: po(), q: broker.StatsFilter{From: now.Add(time.Hour)}, kind: broker.EINVALID, code: broker.CodeInvalidRange},
		{name: "unknown group_by", who: po(), q: broker.StatsFilter{GroupBy: "subject"}, kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "the range is checked before group_by", who: po(), q: broker.StatsFilter{From: t0, To: t0, GroupBy: "subject"},
			kind: broker.EINVALID, code: broker.CodeInvalidRange},
		{name: "a bad range from a role that may not ask is still 422", who: as("ous", broker.RoleHealthWorker, "", "lege-stat3"),
			q: broker.StatsFilter{From: t0, To: t0}, kind: broker.EINVALID, code: broker.CodeInvalidRange},
		{name: "a role that may not ask", who: as("ous", broker.RoleHealthWorker, "", "lege-stat3"), kind: broker.EFORBIDDEN, code: broker.CodeForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := head(t)
			res, err := f.svc.AuditStats(ctx, c.who, c.q)
			wantErr(t, err, c.kind, c.code)
			switch c.kind {
			case broker.EFORBIDDEN:
				expectAudit(t, before, deny("audit.stats", "role_not_permitted"))
				return
			case broker.EINVALID:
				expectAudit(t, before)
				return
			}
			wantReceipt(t, res.Audit, expectAudit(t, before, allow("audit.stats"))[0])
			if !res.From.Equal(c.from) || !res.To.Equal(c.to) || res.GroupBy != c.groupBy || jsonOf(t, res.Groups) != jsonOf(t, c.groups) {
				t.Fatalf("stats %s..%s by %s: %s; want %s..%s by %s: %s", res.From, res.To, res.GroupBy, jsonOf(t, res.Groups),
					c.from, c.to, c.groupBy, jsonOf(t, c.groups))
			}
		})
	}
}

// TestAuditSearchAndDisclosureQueries: the queries of the audit search and
// the disclosure feed are checked before the policy, and a good one answers
// within the caller's view.
func TestAuditSearchAndDisclosureQueries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// A police flag disclosed to NAV by an ordinary check and, to a health
	// worker, only through the exception.
	subject := person()
	fl := f.issue(t, as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-q"), flagReq(subject, "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
	since := head(t)
	if _, err := f.check(as("nav-stat", broker.RoleCaseworker, "nav-arstad", "cw-q"), subject, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.check(as("ous", broker.RoleHealthWorker, "", "lege-q"), subject, justification); err != nil {
		t.Fatal(err)
	}

	t0 := f.clock.Now()
	searches := []struct {
		name string
		who  *broker.Principal
		q    service.AuditSearch
		code string // 422 code; "": answered
	}{
		{name: "invalid subject", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{Subject: ptr("123")}, code: broker.CodeInvalidSubject},
		{name: "to before from", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{From: ptr(t0), To: ptr(t0.Add(-time.Second))},
			code: broker.CodeInvalidRange},
		{name: "negative after_seq", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{AfterSeq: -1}, code: broker.CodeInvalidField},
		{name: "limit over 1000", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{Limit: 1001}, code: broker.CodeInvalidField},
		{name: "negative limit", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{Limit: -1}, code: broker.CodeInvalidField},
		{name: "the police see NAV's and the hospital's disclosures of their flag, nothing else of theirs",
			who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{AfterSeq: since}},
		{name: "by subject", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{Subject: ptr(subject)}},
		{name: "limit 1 gives a cursor", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-q"), q: service.AuditSearch{AfterSeq: since, Limit: 1}},
	}
	for _, c := range searches {
		t.Run("search: "+c.name, func(t *testing.T) {
			before := head(t)
			res, err := f.svc.SearchAudit(ctx, c.who, c.q)
			if c.code != "" {
				wantErr(t, err, broker.EINVALID, c.code)
				expectAudit(t, before)
				return
			}
			wantErr(t, err, "", "")
			e := expectAudit(t, before, allow("audit.search"))[0]
			wantReceipt(t, res.Audit, e)
			if c.q.Subject != nil && e.SubjectRef != ref(t, subject) {
				t.Fatalf("search by subject recorded ref %q", e.SubjectRef)
			}
			var others int
			for _, got := range res.Entries {
				if got.ActorAgency != c.who.Agency {
					if !slices.Contains(got.FlagIDs, fl.ID) || got.Action != "check" || got.Decision != "allow" {
						t.Fatalf("%s sees %+v", c.who.Agency, got)
					}
					others++
				}
			}
			switch {
			case c.q.Limit == 1 && (len(res.Entries) != 1 || res.Next != res.Entries[0].Seq):
				t.Fatalf("limit 1: %d entries, next %d", len(res.Entries), res.Next)
			case c.q.Limit == 0 && others != 2:
				t.Fatalf("%d disclosures by other agencies, want 2", others)
			}
		})
	}

	feeds := []struct {
		name, after string
		limit       int
		who         *broker.Principal
		code        string
	}{
		{name: "after not a number", after: "x", who: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-q"), code: broker.CodeInvalidField},
		{name: "negative after", after: "-1", who: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-q"), code: broker.CodeInvalidField},
		{name: "limit over 1000", limit: 1001, who: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-q"), code: broker.CodeInvalidField},
		{name: "negative limit", limit: -1, who: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-q"), code: broker.CodeInvalidField},
		{name: "the issuer is told of both disclosures", after: itoa(since), who: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-q")},
		{name: "the operator's auditors have no feed", who: as("varsel-tilsyn", broker.RolePrivacyOfficer, "", "tilsyn-q"), code: broker.CodeForbidden},
	}
	for _, c := range feeds {
		t.Run("disclosures: "+c.name, func(t *testing.T) {
			before := head(t)
			res, err := f.svc.Disclosures(ctx, c.who, c.after, c.limit)
			switch c.code {
			case broker.CodeForbidden:
				wantErr(t, err, broker.EFORBIDDEN, c.code)
				expectAudit(t, before, deny("disclosures.read", "agency_kind_not_permitted"))
				return
			case "":
			default:
				wantErr(t, err, broker.EINVALID, c.code)
				expectAudit(t, before)
				return
			}
			wantErr(t, err, "", "")
			wantReceipt(t, res.Audit, expectAudit(t, before, allow("disclosures.read"))[0])
			got := ""
			for _, d := range res.Disclosures {
				got += fmt.Sprintf("%s %s %s %v;", d.Agency, d.Action, d.LegalBasis, d.Emergency)
				if d.FlagID != fl.ID {
					t.Fatalf("disclosure of another flag: %+v", d)
				}
			}
			if want := "nav-stat check politiregl-27-2 false;ous check politiregl-27-1 true;"; got != want {
				t.Fatalf("disclosures %q, want %q", got, want)
			}
			if res.Next != itoa(res.Disclosures[len(res.Disclosures)-1].Seq) {
				t.Fatalf("next %q", res.Next)
			}
		})
	}
}
