package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker/app"
	"varsel/broker/client"
	"varsel/broker/service"
)

// Synthetic national ids (month + 40), valid with --test-subjects.
const (
	personA = "01417012326"
	personB = "01417012083"
	personC = "02417012012"
	personD = "03417012051"
	personE = "04417012090"
)

// world is a broker with the demo's shape: a NAV office shared by state and
// municipal staff, a police district, a health trust, another NAV office.
type world struct {
	t                                          testing.TB
	db                                         string
	base                                       string
	main                                       *app.App
	clock                                      *testClock // the broker's decision clock
	police, navState, navMun, health, navOther *client.Signer
	ops                                        *client.Signer // the broker operator's auditors
}

func newWorld(t testing.TB, mod func(*Config)) *world {
	t.Helper()
	db := freshDB(t)
	w := &world{t: t, db: db, clock: &testClock{}}
	w.police = registerOn(t, db, "oslo-pd", "police", "oslo-pd-sentrum")
	w.navState = registerOn(t, db, "nav-stat", "nav-state", "nav-grorud", "nav-arstad")
	w.navMun = registerOn(t, db, "oslo-kommune", "nav-municipal", "nav-grorud", "nav-arstad")
	w.health = registerOn(t, db, "ous", "health", "ous-psyk")
	w.navOther = registerOn(t, db, "nav-vest", "nav-state", "nav-bergen")
	w.ops = registerOn(t, db, "ops-audit", "broker")
	w.main, w.base = startMainClock(t, db, w.clock.Now, func(c *Config) {
		c.DutyDeskPhone = "+47 11 22 33 44"
		if mod != nil {
			mod(c)
		}
	})
	return w
}

func (w *world) as(s *client.Signer, sub, role, office string) *client.Client {
	return &client.Client{BaseURL: w.base, Signer: s, Employee: client.Employee{Sub: sub, Role: role, Office: office}}
}

func (w *world) liaison() *client.Client { return w.as(w.police, "liaison-1", "police-liaison", "") }
func (w *world) caseworker() *client.Client {
	return w.as(w.navState, "kari", "caseworker", "nav-grorud")
}

// flagBody is a valid flag for the police to issue to NAV.
func flagBody(subject string) map[string]any {
	return map[string]any{
		"subject":     subject,
		"level":       "high",
		"categories":  []string{"threats", "weapons"},
		"precautions": []string{"two-staff", "police-present"},
		"valid_until": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"legal_basis": "politiregl-27-2",
		"audience":    map[string]any{"kinds": []string{"nav-state", "nav-municipal"}},
		"contact":     map[string]any{"unit": "Oslo PD, operasjonssentralen", "phone": "+47 22 66 90 50"},
		// politiregisterloven § 27 tredje and femte ledd: the person told
		// where possible, the controller's decision recorded.
		"subject_informed": map[string]any{"informed": true},
		"decision": map[string]any{"decided_by": "Seksjonsleder etterretning", "decided_by_role": "controller-delegate",
			"decided_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "reference": "OPD 26/48213"},
	}
}

// exclusionDecision is the office head's complete exclusion decision, as a
// security coordinator records it.
func exclusionDecision() map[string]any {
	return map[string]any{"decided_by": "Kontorleder NAV Grorud", "decided_by_role": "office-head",
		"decided_at":      time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
		"reference":       "NAV 26/7710",
		"notice_given_at": time.Now().Add(-72 * time.Hour).UTC().Format(time.RFC3339), "could_respond": true,
		"milder_measures_considered": true}
}

// call sends one request and decodes a 2xx answer into a T; a failure to
// reach the broker fails the test, any answer is returned for inspection.
func call[T any](t testing.TB, c *client.Client, method, path string, body any) (T, *client.Response) {
	t.Helper()
	var r T
	resp, err := c.JSON(context.Background(), method, path, body, &r)
	if err != nil && resp == nil {
		t.Fatal(err)
	}
	return r, resp
}

func (w *world) issue(c *client.Client, body map[string]any) (service.FlagResult, *client.Response) {
	return call[service.FlagResult](w.t, c, "POST", "/v1/flags", body)
}

func (w *world) check(c *client.Client, body map[string]any) (service.CheckResult, *client.Response) {
	return call[service.CheckResult](w.t, c, "POST", "/v1/checks", body)
}

// entry reads one audit entry straight from the database.
func (w *world) entry(seq int64) audit.Entry {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.db)
	if err != nil {
		w.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var e audit.Entry
	err = conn.QueryRow(ctx, `SELECT seq, actor_agency, actor, action, decision, subject_ref, flag_ids, legal_basis,
		emergency, justification, policy_version FROM audit_entries WHERE seq = $1`, seq).
		Scan(&e.Seq, &e.ActorAgency, &e.Actor, &e.Action, &e.Decision, &e.SubjectRef, &e.FlagIDs, &e.LegalBasis,
			&e.Emergency, &e.Justification, &e.PolicyVersion)
	if err != nil {
		w.t.Fatalf("audit entry %d: %v", seq, err)
	}
	return e
}

func (w *world) count(query string) int {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.db)
	if err != nil {
		w.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// assertOneEntry checks that the request wrote exactly one entry (the one
// at its receipt, the newest) naming the basis and the policy version.
func (w *world) assertOneEntry(before int, receipt audit.Receipt, action, basis string) audit.Entry {
	w.t.Helper()
	after := w.count(`SELECT count(*) FROM audit_entries`)
	if after != before+1 {
		w.t.Fatalf("%s wrote %d audit entries, want 1", action, after-before)
	}
	e := w.entry(receipt.Seq)
	if e.Action != action || e.LegalBasis != basis || e.PolicyVersion != w.main.Policies.Version() || len(e.PolicyVersion) != 64 {
		w.t.Fatalf("entry %d: action %q basis %q policy %q; want %q %q %q", e.Seq, e.Action, e.LegalBasis, e.PolicyVersion, action, basis, w.main.Policies.Version())
	}
	return e
}

func TestUserStories(t *testing.T) {
	w := newWorld(t, nil)
	entries := func() int { return w.count(`SELECT count(*) FROM audit_entries`) }

	// A police liaison issues a high flag for state and municipal NAV.
	n := entries()
	flag, resp := w.issue(w.liaison(), flagBody(personA))
	if resp.Status != 201 || flag.Status != "active" || flag.Issuer != "oslo-pd" || flag.ID == "" {
		t.Fatalf("issue: %d %s", resp.Status, resp.Body)
	}
	if strings.Contains(string(resp.Body), personA) || strings.Contains(string(resp.Body), `"subject":`) {
		t.Fatalf("the flag answer echoes the subject: %s", resp.Body)
	}
	e := w.assertOneEntry(n, flag.Audit, "flag.issue", "politiregl-27-2")
	if len(e.FlagIDs) != 1 || e.FlagIDs[0] != flag.ID || len(e.SubjectRef) != 64 {
		t.Fatalf("issue entry %+v", e)
	}

	// A NAV caseworker at an office sees its precautions.
	for _, c := range []*client.Client{w.caseworker(), w.as(w.navMun, "ola", "caseworker", "nav-grorud")} {
		n = entries()
		res, resp := w.check(c, map[string]any{"subject": personA, "purpose": "meeting"})
		if resp.Status != 200 || res.Result != "precautions" || len(res.Flags) != 1 {
			t.Fatalf("caseworker check: %d %s", resp.Status, resp.Body)
		}
		f := res.Flags[0]
		if f.ID != flag.ID || f.Level != "high" || strings.Join(f.Precautions, ",") != "two-staff,police-present" ||
			f.Issuer != "oslo-pd" || f.Contact == nil || f.Contact.Phone != "+47 22 66 90 50" || f.LegalBasis != "politiregl-27-2" {
			t.Fatalf("disclosed flag %+v", f)
		}
		e := w.assertOneEntry(n, res.Audit, "check", "politiregl-27-2")
		if e.Decision != "allow" || len(e.FlagIDs) != 1 || e.FlagIDs[0] != flag.ID || e.Emergency {
			t.Fatalf("check entry %+v", e)
		}
	}

	// A health worker without a basis sees nothing, exactly as for an unflagged person.
	hw := w.as(w.health, "lege-1", "health-worker", "")
	n = entries()
	flagged, resp1 := w.check(hw, map[string]any{"subject": personA, "purpose": "home-visit"})
	w.assertOneEntry(n, flagged.Audit, "check", "")
	unflagged, resp2 := w.check(hw, map[string]any{"subject": personB, "purpose": "home-visit"})
	if resp1.Status != 200 || resp2.Status != 200 {
		t.Fatalf("health checks: %d %d", resp1.Status, resp2.Status)
	}
	strip := func(r service.CheckResult) string {
		r.CheckID, r.Audit = "", audit.Receipt{}
		b, _ := json.Marshal(r)
		return string(b)
	}
	if strip(flagged) != strip(unflagged) || flagged.Result != "clear" || len(flagged.Flags) != 0 {
		t.Fatalf("not indistinguishable:\n flagged   %s\n unflagged %s", strip(flagged), strip(unflagged))
	}
	if e := w.entry(flagged.Audit.Seq); len(e.FlagIDs) != 0 {
		t.Fatalf("a clear answer recorded disclosed flags: %+v", e)
	}

	// A health-issued flag reaches NAV without naming its issuer.
	hflag := flagBody(personC)
	hflag["legal_basis"] = "hpl-23-4"
	hflag["audience"] = map[string]any{"kinds": []string{"nav-state"}}
	hflag["contact"] = map[string]any{"unit": "OUS, akuttpsykiatrisk avdeling", "phone": "+47 23 02 60 00"}
	hflag["subject_informed"] = map[string]any{"informed": true}
	issued, resp := w.issue(w.as(w.health, "lege-1", "health-worker", ""), hflag)
	if resp.Status != 201 {
		t.Fatalf("health issue: %d %s", resp.Status, resp.Body)
	}
	res, resp := w.check(w.caseworker(), map[string]any{"subject": personC, "purpose": "meeting"})
	if resp.Status != 200 || len(res.Flags) != 1 {
		t.Fatalf("NAV check of health flag: %d %s", resp.Status, resp.Body)
	}
	if f := res.Flags[0]; f.Issuer != "varsel" || f.Contact == nil || f.Contact.Unit != "Varsel duty desk" || f.Contact.Phone != "+47 11 22 33 44" {
		t.Fatalf("health flag shows %+v", f)
	}
	if strings.Contains(string(resp.Body), "ous") || strings.Contains(string(resp.Body), "psykiatri") {
		t.Fatalf("health source leaks: %s", resp.Body)
	}
	if w.entry(res.Audit.Seq).LegalBasis != "hpl-23-4" {
		t.Fatal("health disclosure basis not recorded")
	}
	_ = issued

	// An emergency check sees an out-of-audience flag's precautions, and nothing else.
	n = entries()
	just := "Patient says he will come to the ward with a knife tonight"
	res, resp = w.check(hw, map[string]any{"subject": personA, "purpose": "meeting", "emergency": map[string]any{"justification": just}})
	if resp.Status != 200 || !res.Emergency || res.Result != "precautions" || len(res.Flags) != 0 || res.Exception == nil {
		t.Fatalf("emergency check: %d %s", resp.Status, resp.Body)
	}
	if x := res.Exception; x.Level != "high" || len(x.Precautions) != 2 || x.Contact.Unit != "Varsel duty desk" {
		t.Fatalf("emergency aggregate shows more or less than level, precautions and the duty desk: %+v", x)
	}
	e = w.assertOneEntry(n, res.Audit, "check", "politiregl-27-1")
	if !e.Emergency || e.Justification != just || len(e.FlagIDs) != 1 || e.FlagIDs[0] != flag.ID {
		t.Fatalf("emergency entry %+v", e)
	}

	// Revoked and expired flags are never disclosed.
	var revoked service.FlagResult
	if _, err := w.liaison().JSON(context.Background(), "POST", "/v1/flags/"+flag.ID+"/revoke", map[string]any{"reason": "person moved abroad"}, &revoked); err != nil {
		t.Fatal(err)
	}
	if revoked.Status != "revoked" {
		t.Fatalf("revoke: %+v", revoked)
	}
	res, _ = w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"})
	if res.Result != "clear" {
		t.Fatalf("revoked flag disclosed: %+v", res)
	}
	res, _ = w.check(hw, map[string]any{"subject": personA, "purpose": "meeting", "emergency": map[string]any{"justification": just}})
	if res.Result != "clear" {
		t.Fatalf("revoked flag disclosed in an emergency: %+v", res)
	}
	// A flag valid for an hour expires when the broker's clock passes it.
	short := flagBody(personD)
	until := w.clock.Now().Add(time.Hour)
	short["valid_until"] = until.UTC().Format(time.RFC3339Nano)
	if _, resp := w.issue(w.liaison(), short); resp.Status != 201 {
		t.Fatalf("short flag: %d %s", resp.Status, resp.Body)
	}
	w.clock.Advance(until.Sub(w.clock.Now()) - time.Minute)
	if res, _ := w.check(w.caseworker(), map[string]any{"subject": personD, "purpose": "meeting"}); res.Result != "precautions" {
		t.Fatalf("short flag a minute before expiry: %+v", res)
	}
	w.clock.Advance(2 * time.Minute)
	if res, _ := w.check(w.caseworker(), map[string]any{"subject": personD, "purpose": "meeting"}); res.Result != "clear" {
		t.Fatalf("expired flag disclosed: %+v", res)
	}
}

func TestFlagAccess(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	flag, resp := w.issue(w.liaison(), flagBody(personA))
	if resp.Status != 201 {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	var got service.FlagResult
	if _, err := w.liaison().JSON(ctx, "GET", "/v1/flags/"+flag.ID, nil, &got); err != nil || got.ID != flag.ID || got.Level != "high" {
		t.Fatalf("issuer read: %v %+v", err, got)
	}
	// The issuing agency's privacy officer may read it too.
	if r, _ := w.as(w.police, "po", "privacy-officer", "").Do(ctx, "GET", "/v1/flags/"+flag.ID, nil); r.Status != 200 {
		t.Fatalf("privacy officer read: %d", r.Status)
	}
	// Another agency cannot read, revoke or learn that the flag exists.
	for _, c := range []*client.Client{w.caseworker(), w.as(w.navState, "admin", "agency-admin", "")} {
		r1, _ := c.Do(ctx, "GET", "/v1/flags/"+flag.ID, nil)
		r2, _ := c.Do(ctx, "GET", "/v1/flags/00000000-0000-4000-8000-000000000000", nil)
		if r1.Status != 404 || r2.Status != 404 || r1.Problem().Detail != r2.Problem().Detail {
			t.Fatalf("other agency read: %d %s / %d %s", r1.Status, r1.Body, r2.Status, r2.Body)
		}
		r3, _ := c.JSON(ctx, "POST", "/v1/flags/"+flag.ID+"/revoke", map[string]any{"reason": "not mine"}, nil)
		if r3.Status != 404 {
			t.Fatalf("other agency revoke: %d", r3.Status)
		}
	}
	if w.count(`SELECT count(*) FROM flags WHERE status = 'active'`) != 1 {
		t.Fatal("a foreign revoke changed the flag")
	}
	// The denials are in the log.
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE decision = 'deny' AND action IN ('flag.read', 'flag.revoke')`); n != 6 {
		t.Fatalf("%d denied reads and revokes audited, want 6", n)
	}
	// A police exclusion is refused: an exclusion is a NAV office head's decision.
	excl := flagBody(personB)
	excl["level"] = "exclusion"
	excl["valid_until"] = time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	_, resp = w.issue(w.liaison(), excl)
	if p := resp.Problem(); resp.Status != 422 || p.Code != "invalid_field" {
		t.Fatalf("police exclusion: %d %s", resp.Status, resp.Body)
	}
	// A NAV security coordinator may record the office head's decision.
	excl["legal_basis"] = "navl-16"
	excl["audience"] = map[string]any{"offices": []string{"nav-grorud"}}
	excl["decision"] = exclusionDecision()
	if _, resp := w.issue(w.as(w.navState, "sec-1", "security-coordinator", "nav-grorud"), excl); resp.Status != 201 {
		t.Fatalf("coordinator exclusion: %d %s", resp.Status, resp.Body)
	}
	// The police's privacy officer sees NAV's check that disclosed the
	// police flag, but not NAV's other entries.
	if _, resp := w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"}); resp.Status != 200 {
		t.Fatal(resp.Status)
	}
	if _, resp := w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting"}); resp.Status != 200 {
		t.Fatal(resp.Status)
	}
	var found struct{ Entries []audit.Entry }
	if _, err := w.as(w.police, "po", "privacy-officer", "").JSON(ctx, "POST", "/v1/audit/search", map[string]any{"actor_agency": "nav-stat"}, &found); err != nil {
		t.Fatal(err)
	}
	checks := 0
	for _, e := range found.Entries {
		if len(e.FlagIDs) != 1 || e.FlagIDs[0] != flag.ID {
			t.Fatalf("police officer sees a NAV entry that does not touch its flag: %+v", e)
		}
		if e.Action == "check" {
			checks++
		}
	}
	// Only the check that disclosed the flag: NAV's refused reads and
	// revokes of it are NAV's own business (docs/api.md §7).
	if checks != 1 || len(found.Entries) != 1 {
		t.Fatalf("police officer's view of NAV entries: %d checks, %d entries", checks, len(found.Entries))
	}
	// Searching by subject finds the person's entries without echoing the number.
	resp, err := w.as(w.police, "po", "privacy-officer", "").Do(ctx, "POST", "/v1/audit/search", []byte(`{"subject":"`+personA+`"}`))
	if err != nil || resp.Status != 200 || strings.Contains(string(resp.Body), personA) {
		t.Fatalf("subject search: %v %d", err, resp.Status)
	}
	// The legal bases are served.
	var lb struct {
		LegalBases []struct {
			Code string   `json:"code"`
			From []string `json:"from"`
		} `json:"legal_bases"`
	}
	if _, err := w.caseworker().JSON(ctx, "GET", "/v1/legal-bases", nil, &lb); err != nil || len(lb.LegalBases) < 8 {
		t.Fatalf("legal bases: %v %+v", err, lb)
	}
}

func TestFlagBadInput(t *testing.T) {
	w := newWorld(t, nil)
	type tc struct {
		name   string
		mod    func(map[string]any)
		status int
		code   string
	}
	cases := []tc{
		{"bad checksum", func(b map[string]any) { b["subject"] = "01417012327" }, 422, "invalid_subject"},
		{"synthetic number needs test mode", nil, 0, ""},
		{"not digits", func(b map[string]any) { b["subject"] = "0141701232x" }, 422, "invalid_subject"},
		{"unknown legal basis", func(b map[string]any) { b["legal_basis"] = "gdpr-6" }, 422, "unknown_legal_basis"},
		{"validity over a year", func(b map[string]any) {
			b["valid_until"] = time.Now().Add(366 * 24 * time.Hour).UTC().Format(time.RFC3339)
		}, 422, "invalid_validity"},
		{"no validity", func(b map[string]any) { delete(b, "valid_until") }, 422, "invalid_validity"},
		{"validity in the past", func(b map[string]any) { b["valid_until"] = "2020-01-01T00:00:00Z" }, 422, "invalid_validity"},
		{"empty precautions", func(b map[string]any) { b["precautions"] = []string{} }, 422, "invalid_field"},
		{"unknown precaution", func(b map[string]any) { b["precautions"] = []string{"bring-a-dog"} }, 422, "invalid_field"},
		{"no categories", func(b map[string]any) { delete(b, "categories") }, 422, "invalid_field"},
		{"unknown level", func(b map[string]any) { b["level"] = "extreme" }, 422, "invalid_field"},
		{"empty audience", func(b map[string]any) { b["audience"] = map[string]any{} }, 422, "invalid_field"},
		{"unknown office", func(b map[string]any) { b["audience"] = map[string]any{"offices": []string{"nav-nowhere"}} }, 422, "unknown_office"},
		{"no contact", func(b map[string]any) { delete(b, "contact") }, 422, "invalid_field"},
		{"narrative in contact", func(b map[string]any) {
			b["contact"] = map[string]any{"unit": "Oslo PD\nHe was diagnosed with…", "phone": "+47 22 66 90 50"}
		}, 422, "invalid_field"},
		{"unknown field", func(b map[string]any) { b["diagnosis"] = "F20" }, 400, "malformed"},
		{"free-text note", func(b map[string]any) { b["notes"] = "Known to carry a knife since the divorce" }, 400, "malformed"},
		{"wrong type", func(b map[string]any) { b["categories"] = "threats" }, 400, "malformed"},
	}
	ctx := context.Background()
	for _, c := range cases {
		if c.mod == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			flags, entries := w.count(`SELECT count(*) FROM flags`), w.count(`SELECT count(*) FROM audit_entries`)
			b := flagBody(personA)
			c.mod(b)
			_, resp := w.issue(w.liaison(), b)
			p := resp.Problem()
			if resp.Status != c.status || p == nil || p.Code != c.code {
				t.Fatalf("got %d %s, want %d %s", resp.Status, resp.Body, c.status, c.code)
			}
			if strings.Contains(string(resp.Body), personA) {
				t.Fatal("the error echoes the national id")
			}
			if w.count(`SELECT count(*) FROM flags`) != flags || w.count(`SELECT count(*) FROM audit_entries`) != entries {
				t.Fatal("bad input changed something")
			}
		})
	}
	// A health agency must say whether the person was told.
	h := flagBody(personA)
	h["legal_basis"] = "hpl-23-4"
	delete(h, "subject_informed")
	_, resp := w.issue(w.as(w.health, "lege-1", "health-worker", ""), h)
	if resp.Status != 422 || !strings.Contains(resp.Problem().Detail, "subject_informed") {
		t.Fatalf("health without subject_informed: %d %s", resp.Status, resp.Body)
	}
	// Checks: bad purpose, short justification.
	for body, code := range map[string]string{
		`{"subject":"` + personA + `","purpose":"lunch"}`:                                          "invalid_field",
		`{"subject":"` + personA + `","purpose":"meeting","emergency":{"justification":"urgent"}}`: "justification_required",
		`{"subject":"12345678901","purpose":"meeting"}`:                                            "invalid_subject",
	} {
		resp, _ := w.caseworker().Do(ctx, "POST", "/v1/checks", []byte(body))
		if resp.Status != 422 || resp.Problem().Code != code {
			t.Errorf("%s: %d %s", body, resp.Status, resp.Body)
		}
	}
}

func TestSyntheticSubjectsNeedTestMode(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.TestSubjects = false })
	_, resp := w.issue(w.liaison(), flagBody(personA))
	if resp.Status != 422 || resp.Problem().Code != "invalid_subject" {
		t.Fatalf("synthetic subject in production mode: %d %s", resp.Status, resp.Body)
	}
}

func TestEmergencyRateLimit(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.EmergencyLimit = 2 })
	hw := w.as(w.health, "lege-2", "health-worker", "")
	body := map[string]any{"subject": personE, "purpose": "meeting", "emergency": map[string]any{"justification": "Threatened staff on the phone ten minutes ago"}}
	for i := 0; i < 2; i++ {
		if _, resp := w.check(hw, body); resp.Status != 200 {
			t.Fatalf("emergency %d: %d %s", i, resp.Status, resp.Body)
		}
	}
	_, resp := w.check(hw, body)
	if resp.Status != 429 || resp.Problem().Code != "rate_limited" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third emergency: %d %s", resp.Status, resp.Body)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE emergency AND decision = 'deny'`); n != 1 {
		t.Fatalf("%d refused emergencies audited, want 1", n)
	}
	// Every emergency check, refused ones too, goes to review.
	var l struct{ Reviews []struct{ Seq int64 } }
	if _, err := w.as(w.health, "po", "privacy-officer", "").JSON(context.Background(), "GET", "/v1/audit/reviews?kind=emergency", nil, &l); err != nil || len(l.Reviews) != 3 {
		t.Fatalf("emergency reviews: %v %d, want 3", err, len(l.Reviews))
	}
	// Another employee is not limited, and ordinary checks go on.
	if _, resp := w.check(w.as(w.health, "lege-3", "health-worker", ""), body); resp.Status != 200 {
		t.Fatalf("other employee: %d", resp.Status)
	}
	if _, resp := w.check(hw, map[string]any{"subject": personE, "purpose": "meeting"}); resp.Status != 200 {
		t.Fatalf("ordinary check: %d", resp.Status)
	}
	// Parallel emergency checks by one employee cannot slip past the limit.
	racer := w.as(w.health, "lege-4", "health-worker", "")
	statuses := make(chan int, 6)
	for i := 0; i < 6; i++ {
		go func() {
			_, resp := w.check(racer, body)
			statuses <- resp.Status
		}()
	}
	okCount := 0
	for i := 0; i < 6; i++ {
		if <-statuses == 200 {
			okCount++
		}
	}
	if okCount != 2 {
		t.Fatalf("%d of 6 parallel emergency checks allowed, want 2", okCount)
	}
	// The four refusals within the hour make one review, not four.
	l.Reviews = nil
	w.as(w.health, "po", "privacy-officer", "").JSON(context.Background(), "GET", "/v1/audit/reviews?kind=emergency", nil, &l)
	if n := w.count(`SELECT count(*) FROM reviews WHERE actor = 'lege-4' AND kind = 'emergency'`); n != 3 {
		var dump string
		w.countInto(&dump, `SELECT string_agg(seq || ' ' || reason || ' ' || ts::text, '; ') FROM reviews WHERE actor = 'lege-4'`)
		t.Fatalf("%d reviews for lege-4, want 3 (two allowed, one for the refusals): %s", n, dump)
	}
	_ = fmt.Sprint()
}

// countInto reads one text value.
func (w *world) countInto(dst *string, query string) {
	w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.db)
	if err != nil {
		w.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, query).Scan(dst); err != nil {
		w.t.Fatal(err)
	}
}
