package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/broker"
	"varsel/broker/client"
	"varsel/broker/service"
)

// synthetic returns the i-th synthetic national id (month + 40).
func synthetic(i int) string { return broker.SyntheticNumber(i, 40) }

func TestSyntheticNumbersAreValid(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		n := synthetic(i)
		if _, err := broker.ParseSubject(n, true); err != nil || seen[n] {
			t.Fatalf("synthetic(%d) = %s: %v (dup %v)", i, n, err, seen[n])
		}
		seen[n] = true
	}
}

type reviewList struct {
	Reviews []broker.Review `json:"reviews"`
}

func TestEmergencyReviewAndScope(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.OfficeHours = "" })
	ctx := context.Background()
	flag, _ := w.issue(w.liaison(), flagBody(personA))
	hw := w.as(w.health, "lege-1", "health-worker", "")
	res, resp := w.check(hw, map[string]any{"subject": personA, "purpose": "meeting",
		"emergency": map[string]any{"justification": "Threatened to stab the nurse at the next appointment"}})
	if resp.Status != 200 || res.Exception == nil {
		t.Fatalf("emergency: %d %s", resp.Status, resp.Body)
	}
	// A NAV caseworker's emergency check too, for NAV's officer.
	navRes, _ := w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting",
		"emergency": map[string]any{"justification": "Caller said he is on his way with a weapon"}})

	healthPO := w.as(w.health, "po-ous", "privacy-officer", "")
	navPO := w.as(w.navState, "po-nav", "privacy-officer", "")
	var pending reviewList
	if _, err := healthPO.JSON(ctx, "GET", "/v1/audit/reviews?status=pending", nil, &pending); err != nil {
		t.Fatal(err)
	}
	if len(pending.Reviews) != 1 || pending.Reviews[0].Seq != res.Audit.Seq || pending.Reviews[0].Kind != "emergency" ||
		pending.Reviews[0].Status != "pending" || pending.Reviews[0].Overdue || !strings.Contains(pending.Reviews[0].Justification, "stab") {
		t.Fatalf("health officer's pending reviews: %+v", pending.Reviews)
	}
	// NAV's officer sees only NAV's review, and cannot judge the health one.
	var navPending reviewList
	navPO.JSON(ctx, "GET", "/v1/audit/reviews", nil, &navPending)
	if len(navPending.Reviews) != 1 || navPending.Reviews[0].Seq != navRes.Audit.Seq {
		t.Fatalf("NAV officer's reviews: %+v", navPending.Reviews)
	}
	seq := fmt.Sprint(res.Audit.Seq)
	if r, _ := navPO.JSON(ctx, "POST", "/v1/audit/reviews/"+seq, map[string]any{"verdict": "justified", "note": "ok"}, nil); r.Status != 404 {
		t.Fatalf("NAV officer judges a health review: %d %s", r.Status, r.Body)
	}
	// A caseworker may not list or judge.
	if r, _ := w.caseworker().Do(ctx, "GET", "/v1/audit/reviews", nil); r.Status != 403 {
		t.Fatalf("caseworker lists reviews: %d", r.Status)
	}
	// Bad verdicts.
	if r, _ := healthPO.JSON(ctx, "POST", "/v1/audit/reviews/"+seq, map[string]any{"verdict": "maybe"}, nil); r.Status != 422 {
		t.Fatalf("bad verdict: %d", r.Status)
	}
	if r, _ := healthPO.JSON(ctx, "POST", "/v1/audit/reviews/"+seq, map[string]any{"verdict": "unjustified"}, nil); r.Status != 422 {
		t.Fatalf("unjustified without note: %d", r.Status)
	}
	// The health officer judges it; the verdict is in the log.
	var judged broker.Review
	if _, err := healthPO.JSON(ctx, "POST", "/v1/audit/reviews/"+seq, map[string]any{"verdict": "justified", "note": "Ward staff were at risk; only precautions seen."}, &judged); err != nil {
		t.Fatal(err)
	}
	if judged.Status != "justified" || judged.VerdictSeq == nil || judged.JudgedBy != "po-ous" {
		t.Fatalf("judged %+v", judged)
	}
	v := w.entry(*judged.VerdictSeq)
	if v.Action != "review.verdict" || v.ActorAgency != "ous" || len(v.FlagIDs) != 1 || v.FlagIDs[0] != flag.ID {
		t.Fatalf("verdict entry %+v", v)
	}
	if r, _ := healthPO.JSON(ctx, "POST", "/v1/audit/reviews/"+seq, map[string]any{"verdict": "unjustified", "note": "changed my mind"}, nil); r.Status != 409 {
		t.Fatalf("second verdict: %d", r.Status)
	}
	// Both refused verdicts (NAV's officer, the second one) are in the log.
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'review.verdict' AND decision = 'deny'`); n != 2 {
		t.Fatalf("%d refused verdicts audited, want 2", n)
	}
	pending = reviewList{}
	healthPO.JSON(ctx, "GET", "/v1/audit/reviews?status=pending", nil, &pending)
	if len(pending.Reviews) != 0 {
		t.Fatalf("still pending: %+v", pending.Reviews)
	}
	// The operator's auditors see both.
	ops := w.ops
	var all reviewList
	if _, err := w.as(ops, "auditor", "privacy-officer", "").JSON(ctx, "GET", "/v1/audit/reviews?status=all", nil, &all); err != nil || len(all.Reviews) != 2 {
		t.Fatalf("auditors: %v %+v", err, all.Reviews)
	}
}

func TestOverdueReviews(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.OfficeHours = ""; c.ReviewOverdue = time.Hour })
	ctx := context.Background()
	w.issue(w.liaison(), flagBody(personA))
	w.check(w.as(w.health, "lege-1", "health-worker", ""), map[string]any{"subject": personA, "purpose": "meeting",
		"emergency": map[string]any{"justification": "Threatened to stab the nurse at the next appointment"}})
	po := w.as(w.health, "po-ous", "privacy-officer", "")
	var l reviewList
	po.JSON(ctx, "GET", "/v1/audit/reviews?status=overdue", nil, &l)
	if len(l.Reviews) != 0 {
		t.Fatalf("overdue at once: %+v", l.Reviews)
	}
	// A review's age is Postgres's (created_at against now() in the
	// query), which the broker's clock does not move: age the row instead
	// of waiting. Just under the limit it is not overdue; just over, it is.
	age := func(d time.Duration) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, w.db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tag, err := conn.Exec(ctx, `UPDATE reviews SET created_at = now() - make_interval(secs => $1) WHERE actor = 'lege-1'`, d.Seconds())
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("age the review: %v (%d rows)", err, tag.RowsAffected())
		}
	}
	age(time.Hour - time.Minute)
	l = reviewList{}
	po.JSON(ctx, "GET", "/v1/audit/reviews?status=overdue", nil, &l)
	if len(l.Reviews) != 0 {
		t.Fatalf("overdue a minute before the limit: %+v", l.Reviews)
	}
	age(time.Hour + time.Minute)
	l = reviewList{}
	po.JSON(ctx, "GET", "/v1/audit/reviews?status=overdue", nil, &l)
	if len(l.Reviews) != 1 || !l.Reviews[0].Overdue {
		t.Fatalf("overdue: %+v", l.Reviews)
	}
}

func TestSubjectReportAndStats(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.OfficeHours = "" })
	ctx := context.Background()
	flagA, _ := w.issue(w.liaison(), flagBody(personA))
	flagB, _ := w.issue(w.liaison(), flagBody(personB))
	var disclosedA []int64
	for _, c := range []*client.Client{w.caseworker(), w.as(w.navMun, "ola", "caseworker", "nav-arstad")} {
		r, _ := w.check(c, map[string]any{"subject": personA, "purpose": "meeting"})
		disclosedA = append(disclosedA, r.Audit.Seq)
	}
	w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting"})                              // about B
	w.check(w.as(w.health, "lege", "health-worker", ""), map[string]any{"subject": personA, "purpose": "meeting"}) // clear: no disclosure
	warned, _ := w.warn(warningBody(personA, "nav-bergen"))
	inbox, _ := w.inbox(w.as(w.navOther, "cw-b", "caseworker", "nav-bergen"), "")
	if len(inbox.Warnings) != 1 {
		t.Fatalf("inbox %+v", inbox)
	}
	_ = warned

	var rep service.SubjectReport
	resp, err := w.as(w.police, "po-pd", "privacy-officer", "").JSON(ctx, "POST", "/v1/audit/subject-report", map[string]any{"subject": personA}, &rep)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(resp.Body), personA) {
		t.Fatal("the report echoes the number")
	}
	got := map[int64]bool{}
	for _, it := range rep.Disclosures {
		got[it.Seq] = true
		for _, id := range it.FlagIDs {
			if id == flagB.ID {
				t.Fatalf("report about A lists a disclosure of B's flag: %+v", it)
			}
		}
	}
	// Two checks disclosing A's flag, and the inbox read of the warning about A.
	if len(rep.Disclosures) != 3 || !got[disclosedA[0]] || !got[disclosedA[1]] {
		t.Fatalf("report: %+v", rep.Disclosures)
	}
	_ = flagA
	// The report is audited with the subject ref, never the number.
	e := w.entry(rep.Audit.Seq)
	if e.Action != "audit.report" || len(e.SubjectRef) != 64 {
		t.Fatalf("report entry %+v", e)
	}

	// Stats match the entries counted directly.
	ops := w.ops
	for _, group := range []string{"agency", "action", "legal_basis", "day"} {
		var st service.Stats
		if _, err := w.as(ops, "auditor", "privacy-officer", "").JSON(ctx, "GET", "/v1/audit/stats?group_by="+group, nil, &st); err != nil {
			t.Fatal(err)
		}
		var checks, denials, disclosures int64
		for _, g := range st.Groups {
			checks += g.Checks
			denials += g.Denials
			disclosures += g.Disclosures
		}
		// The stats call itself is audited after it counts.
		wantChecks := int64(w.count(fmt.Sprintf(`SELECT count(*) FROM audit_entries WHERE action = 'check' AND seq < %d`, st.Audit.Seq)))
		wantDenials := int64(w.count(fmt.Sprintf(`SELECT count(*) FROM audit_entries WHERE decision = 'deny' AND seq < %d`, st.Audit.Seq)))
		wantDisc := int64(w.count(fmt.Sprintf(`SELECT count(*) FROM audit_entries WHERE decision = 'allow' AND cardinality(flag_ids) > 0
			AND action IN ('check', 'warning.inbox', 'warning.push') AND seq < %d`, st.Audit.Seq)))
		if group != "legal_basis" && (checks != wantChecks || denials != wantDenials || disclosures != wantDisc) {
			t.Fatalf("group %s: checks %d/%d denials %d/%d disclosures %d/%d", group, checks, wantChecks, denials, wantDenials, disclosures, wantDisc)
		}
		if group == "agency" && len(st.Groups) < 3 {
			t.Fatalf("agency groups %+v", st.Groups)
		}
	}
	// NAV's officer sees NAV's figures only.
	var navStats service.Stats
	w.as(w.navState, "po", "privacy-officer", "").JSON(ctx, "GET", "/v1/audit/stats?group_by=agency", nil, &navStats)
	for _, g := range navStats.Groups {
		if g.Key != "nav-stat" {
			t.Fatalf("NAV officer sees %s", g.Key)
		}
	}
	if r, _ := w.as(ops, "auditor", "privacy-officer", "").Do(ctx, "GET", "/v1/audit/stats?group_by=colour", nil); r.Status != 422 {
		t.Fatalf("bad group_by: %d", r.Status)
	}
}

func TestAnomalyManySubjects(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.OfficeHours = ""; c.AnomalySubjects = 30 })
	ctx := context.Background()
	snoop := w.as(w.navState, "snoop", "caseworker", "nav-grorud")
	for i := 0; i < 31; i++ {
		if _, resp := w.check(snoop, map[string]any{"subject": synthetic(i), "purpose": "case-processing"}); resp.Status != 200 {
			t.Fatalf("check %d: %d %s", i, resp.Status, resp.Body)
		}
	}
	// 30 by a colleague: no signal.
	for i := 0; i < 30; i++ {
		w.check(w.caseworker(), map[string]any{"subject": synthetic(i), "purpose": "meeting"})
	}
	po := w.as(w.navState, "po", "privacy-officer", "")
	var l reviewList
	if _, err := po.JSON(ctx, "GET", "/v1/audit/reviews?kind=anomaly", nil, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Reviews) != 1 || l.Reviews[0].Actor != "snoop" || l.Reviews[0].Reason != "many_subjects" || l.Reviews[0].Status != "pending" {
		t.Fatalf("anomaly reviews: %+v", l.Reviews)
	}
	// More checks in the same hour do not raise another.
	w.check(snoop, map[string]any{"subject": synthetic(40), "purpose": "meeting"})
	l = reviewList{}
	po.JSON(ctx, "GET", "/v1/audit/reviews?kind=anomaly", nil, &l)
	if len(l.Reviews) != 1 {
		t.Fatalf("second anomaly raised: %+v", l.Reviews)
	}
	var st service.Stats
	po.JSON(ctx, "GET", "/v1/audit/stats?group_by=agency", nil, &st)
	if len(st.Groups) != 1 || st.Groups[0].Anomalies != 1 {
		t.Fatalf("stats anomalies: %+v", st.Groups)
	}
}

func TestAnomalyOffHours(t *testing.T) {
	// Office hours that exclude now: every check is outside them.
	h := time.Now().UTC().Hour()
	hours := fmt.Sprintf("%02d-%02d UTC", (h+2)%22, (h+2)%22+1)
	w := newWorld(t, func(c *Config) { c.OfficeHours = hours })
	for i := 0; i < 3; i++ {
		w.check(w.caseworker(), map[string]any{"subject": synthetic(i), "purpose": "meeting"})
	}
	var l reviewList
	w.as(w.navState, "po", "privacy-officer", "").JSON(context.Background(), "GET", "/v1/audit/reviews?kind=anomaly", nil, &l)
	if len(l.Reviews) != 1 || l.Reviews[0].Reason != "off_hours" || l.Reviews[0].Actor != "kari" {
		t.Fatalf("off-hours reviews (hours %s): %+v", hours, l.Reviews)
	}
}

func TestExportVerifiesOffline(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.OfficeHours = "" })
	ctx := context.Background()
	from := time.Now().Add(-time.Minute)
	w.issue(w.liaison(), flagBody(personA))
	for i := 0; i < 20; i++ {
		w.check(w.caseworker(), map[string]any{"subject": synthetic(i), "purpose": "meeting"})
		if i == 9 {
			checkpointNow(t, w.main) // a checkpoint in the middle
		}
	}
	checkpointNow(t, w.main)
	keyResp, _ := w.caseworker().Do(ctx, "GET", "/v1/audit/key", nil)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pub")
	os.WriteFile(keyFile, keyResp.Body, 0o644)
	exp := filepath.Join(dir, "export.jsonl")
	if _, err := cliOn(t, w.db, "audit", "export", "--from", from.UTC().Format(time.RFC3339), "--to", time.Now().Add(time.Minute).UTC().Format(time.RFC3339), "--out", exp); err != nil {
		t.Fatal(err)
	}
	// Offline: no database in the environment.
	verify := func(file string) (string, error) {
		var out strings.Builder
		err := run(ctx, []string{"audit", "verify", "--file", file, "--checkpoint-key", keyFile}, &out, &out, func(string) string { return "" })
		return out.String(), err
	}
	out, err := verify(exp)
	if err != nil || !strings.Contains(out, "ok:") || strings.Contains(out, "NOT") {
		t.Fatalf("verify export: %v %s", err, out)
	}
	data, _ := os.ReadFile(exp)
	lines := strings.Split(string(data), "\n")
	// Change one byte inside the first entry at NAV Grorud: its office.
	target, seq := -1, ""
	for i, l := range lines {
		if m := regexp.MustCompile(`"office":"nav-grorud".*"seq":([0-9]+),`).FindStringSubmatch(l); m != nil {
			target, seq = i, m[1]
			break
		}
	}
	if target < 0 {
		t.Fatalf("no entry at nav-grorud in export:\n%s", data)
	}
	lines[target] = strings.Replace(lines[target], `"office":"nav-grorud"`, `"office":"nav-grorue"`, 1)
	bad := filepath.Join(dir, "tampered.jsonl")
	os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600)
	if _, err := verify(bad); err == nil || !strings.Contains(err.Error(), "seq "+seq) {
		t.Fatalf("tampered export (entry %s): %v", seq, err)
	}
	// A checkpoint signed by another key fails too.
	other := filepath.Join(dir, "other.pub")
	os.WriteFile(other, []byte("varsel+12345678+AZfBlcGOTKi6dUlKBz8pmYr3Zl9uvXO8yr62LXa/8ZiV\n"), 0o644)
	var out2 strings.Builder
	if err := run(ctx, []string{"audit", "verify", "--file", exp, "--checkpoint-key", other}, &out2, &out2, func(string) string { return "" }); err == nil {
		t.Fatal("export verified with a foreign key")
	}
}
