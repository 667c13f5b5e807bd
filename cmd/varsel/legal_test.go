package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker"
	"varsel/broker/client"
	"varsel/broker/keys"
	"varsel/broker/service"
	"varsel/policies"
)

// End-to-end tests of the legal bases (docs/legal-bases.md): a real
// broker on Postgres, the real policy engine, signed requests and signed
// webhook pushes.

// problemOf returns a refusal's status and code, failing on anything else.
func problemOf(t *testing.T, resp *client.Response) (int, string) {
	t.Helper()
	p := resp.Problem()
	if p == nil {
		t.Fatalf("no problem: %d %s", resp.Status, resp.Body)
	}
	return resp.Status, p.Code
}

// TestPoliceFlagsUnderPoliceBases: a police flag reaches NAV under a
// politiregisterloven basis, never under fvl-13b-7, neither as a flag nor
// through the exception nor in the police's disclosure feed.
func TestPoliceFlagsUnderPoliceBases(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	for _, basis := range []string{"politiregl-27-2", "politiregl-30"} {
		b := flagBody(personA)
		b["legal_basis"] = basis
		flag, resp := w.issue(w.liaison(), b)
		if resp.Status != 201 || flag.LegalBasis != basis || flag.Decision == nil || flag.SubjectInformed == nil {
			t.Fatalf("police flag under %s: %d %s", basis, resp.Status, resp.Body)
		}
	}
	res, resp := w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"})
	if resp.Status != 200 || len(res.Flags) != 2 {
		t.Fatalf("NAV check: %d %s", resp.Status, resp.Body)
	}
	got := []string{res.Flags[0].LegalBasis, res.Flags[1].LegalBasis}
	slices.Sort(got)
	if !slices.Equal(got, []string{"politiregl-27-2", "politiregl-30"}) || w.entry(res.Audit.Seq).LegalBasis != "politiregl-27-2,politiregl-30" {
		t.Fatalf("NAV sees bases %v, entry %q", got, w.entry(res.Audit.Seq).LegalBasis)
	}

	// The police may not issue under fvl-13b-7: NAV's, and only through the exception.
	n := w.count(`SELECT count(*) FROM flags`)
	b := flagBody(personB)
	b["legal_basis"] = "fvl-13b-7"
	_, resp = w.issue(w.liaison(), b)
	if status, code := problemOf(t, resp); status != 403 || code != "forbidden" {
		t.Fatalf("police flag under fvl-13b-7: %d %s", status, code)
	}
	if w.count(`SELECT count(*) FROM flags`) != n ||
		w.count(`SELECT count(*) FROM audit_entries WHERE action = 'flag.issue' AND decision = 'deny' AND legal_basis = 'fvl-13b-7'
			AND 'basis_emergency_only' = ANY(reasons)`) != 1 {
		t.Fatal("the refusal changed something or was not audited")
	}

	// In an emergency the health worker's aggregate reaches the police
	// flags under the police's own route.
	hw := w.as(w.health, "lege-1", "health-worker", "")
	em, resp := w.check(hw, map[string]any{"subject": personA, "purpose": "meeting",
		"emergency": map[string]any{"justification": "Patient says he will come to the ward with a knife tonight"}})
	if resp.Status != 200 || em.Exception == nil || w.entry(em.Audit.Seq).LegalBasis != "politiregl-27-1" {
		t.Fatalf("emergency: %d %s entry %q", resp.Status, resp.Body, w.entry(em.Audit.Seq).LegalBasis)
	}
	var feed service.DisclosureFeed
	if _, err := w.liaison().JSON(ctx, "GET", "/v1/flags/disclosures", nil, &feed); err != nil {
		t.Fatal(err)
	}
	if len(feed.Disclosures) != 4 {
		t.Fatalf("feed %+v", feed.Disclosures)
	}
	for _, d := range feed.Disclosures {
		if d.LegalBasis == "fvl-13b-7" || !strings.HasPrefix(d.LegalBasis, "politiregl-") {
			t.Fatalf("the police are told of a disclosure under %q: %+v", d.LegalBasis, d)
		}
	}
}

// TestRetiredBasesRefused: a NAV flag under the repealed NAV-loven § 7
// wording is 422 retired_legal_basis, unaudited and stored nowhere; a basis
// without commencement is refused too; the catalogue still resolves them.
func TestRetiredBasesRefused(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	sec := w.as(w.navState, "sec-1", "security-coordinator", "nav-grorud")
	flags, entries := w.count(`SELECT count(*) FROM flags`), w.count(`SELECT count(*) FROM audit_entries`)
	for basis, want := range map[string]string{"navl-7": "retired_legal_basis", "sotjl-44": "retired_legal_basis",
		"politiregl-27": "retired_legal_basis", "fvl2025-34-1-m": "legal_basis_not_in_force"} {
		b := flagBody(personA)
		b["legal_basis"] = basis
		b["audience"] = map[string]any{"kinds": []string{"police"}}
		issuer := sec
		if basis == "politiregl-27" {
			issuer = w.liaison()
		}
		_, resp := w.issue(issuer, b)
		if status, code := problemOf(t, resp); status != 422 || code != want {
			t.Fatalf("%s: %d %s, want 422 %s", basis, status, code, want)
		}
		if strings.Contains(string(resp.Body), personA) {
			t.Fatal("the error echoes the national id")
		}
	}
	if w.count(`SELECT count(*) FROM flags`) != flags || w.count(`SELECT count(*) FROM audit_entries`) != entries {
		t.Fatal("a refused basis changed something")
	}

	// GET /v1/legal-bases lists what is in force now; ?at= what was then.
	type entry struct {
		Code         string            `json:"code"`
		InForceFrom  *string           `json:"in_force_from"`
		InForceUntil *string           `json:"in_force_until"`
		Wording      string            `json:"wording"`
		Source       string            `json:"source"`
		Verified     map[string]string `json:"verified"`
		Obligations  map[string]any    `json:"obligations"`
	}
	list := func(query string) map[string]entry {
		var l struct {
			LegalBases []entry `json:"legal_bases"`
		}
		if resp, err := w.caseworker().JSON(ctx, "GET", "/v1/legal-bases"+query, nil, &l); err != nil {
			t.Fatalf("legal bases%s: %v %s", query, err, resp.Body)
		}
		out := map[string]entry{}
		for _, e := range l.LegalBases {
			if e.InForceFrom == nil || e.Wording == "" || e.Source == "" || e.Verified["not_checked"] == "" || e.Obligations == nil {
				t.Fatalf("%s lacks its evidence: %+v", e.Code, e)
			}
			out[e.Code] = e
		}
		return out
	}
	now := list("")
	for _, c := range []string{"navl-7", "sotjl-44", "politiregl-27", "fvl2025-34-1-m"} {
		if _, ok := now[c]; ok {
			t.Errorf("%s listed as in force now", c)
		}
	}
	if _, ok := now["politiregl-27-2"]; !ok {
		t.Error("politiregl-27-2 not listed as in force now")
	}
	then := list("?at=2020-06-01T12:00:00Z")
	if e, ok := then["navl-7"]; !ok || *e.InForceUntil != "2021-06-30" {
		t.Errorf("navl-7 in 2020: %+v %v (%v)", e, ok, slices.Collect(maps.Keys(then)))
	}
	if _, ok := then["fvl-13b-7"]; ok {
		t.Error("fvl-13b-7 listed as in force in 2020")
	}
	if resp, _ := w.caseworker().Do(ctx, "GET", "/v1/legal-bases?at=yesterday", nil); resp.Status != 422 {
		t.Fatalf("bad at: %d", resp.Status)
	}
	// A retired basis still resolves by its code, for old entries.
	var old policies.LegalBasis
	if _, err := w.caseworker().JSON(ctx, "GET", "/v1/legal-bases/navl-7", nil, &old); err != nil || old.Retired == nil || old.Wording == "" {
		t.Fatalf("navl-7 does not resolve: %v %+v", err, old)
	}
	if resp, _ := w.caseworker().Do(ctx, "GET", "/v1/legal-bases/gdpr-6", nil); resp.Status != 404 {
		t.Fatalf("unknown basis: %d", resp.Status)
	}
}

// TestHealthSourceCannotBeTold: a health flag shown to NAV and a police
// flag whose issuer chose the duty desk differ in no field a NAV reader
// could use to tell the source, and neither names a health provision.
func TestHealthSourceCannotBeTold(t *testing.T) {
	w := newWorld(t, nil)
	until := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)

	h := flagBody(personA)
	h["legal_basis"], h["valid_until"] = "hpl-23-4", until
	h["audience"] = map[string]any{"kinds": []string{"nav-state"}}
	h["contact"] = map[string]any{"unit": "OUS, akuttpsykiatrisk avdeling", "phone": "+47 23 02 60 00"}
	delete(h, "decision")
	if _, resp := w.issue(w.as(w.health, "lege-1", "health-worker", ""), h); resp.Status != 201 {
		t.Fatalf("health flag: %d %s", resp.Status, resp.Body)
	}
	p := flagBody(personB)
	p["valid_until"], p["represented_by"] = until, "duty-desk"
	p["audience"] = map[string]any{"kinds": []string{"nav-state"}}
	if _, resp := w.issue(w.liaison(), p); resp.Status != 201 {
		t.Fatalf("police flag through the desk: %d %s", resp.Status, resp.Body)
	}

	raw := func(subject string) map[string]any {
		t.Helper()
		resp, err := w.caseworker().Do(context.Background(), "POST", "/v1/checks", []byte(`{"subject":"`+subject+`","purpose":"meeting"}`))
		if err != nil || resp.Status != 200 {
			t.Fatalf("check: %v %d", err, resp.Status)
		}
		var m map[string]any
		if err := json.Unmarshal(resp.Body, &m); err != nil {
			t.Fatal(err)
		}
		for _, source := range []string{"ous", "psyk", "hpl", "helse", "oslo-pd", "OPD", "politi"} {
			if strings.Contains(strings.ToLower(string(resp.Body)), strings.ToLower(source)) {
				t.Fatalf("the answer names its source (%q): %s", source, resp.Body)
			}
		}
		delete(m, "check_id")
		delete(m, "audit")
		for _, f := range m["flags"].([]any) {
			delete(f.(map[string]any), "id") // a random UUID either way
		}
		return m
	}
	fromHealth, fromPolice := raw(personA), raw(personB)
	a, _ := json.Marshal(fromHealth)
	b, _ := json.Marshal(fromPolice)
	if string(a) != string(b) {
		t.Fatalf("a NAV reader can tell the sources apart:\n health %s\n police %s", a, b)
	}
	f := fromHealth["flags"].([]any)[0].(map[string]any)
	if f["legal_basis"] != policies.DutyDeskBasis || f["issuer"] != "varsel" {
		t.Fatalf("shown %+v", f)
	}
}

// TestEmergencyAggregateAndIssuerNotice: an emergency check over two
// hidden flags of two issuers answers one aggregate (highest level, union of
// precautions, the duty desk), and both issuers are told at once: in their
// disclosure feeds, and by a signed exception-disclosure push to the
// issuing office's webhook.
func TestEmergencyAggregateAndIssuerNotice(t *testing.T) {
	w := newWorld(t, func(c *Config) {
		c.WebhookAllowHTTP = true
		c.WebhookInterval = time.Hour // pushes go out when the test triggers them
	})
	ctx := context.Background()
	var mu sync.Mutex
	pushes := map[string][]string{}
	hook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		pushes[r.URL.Path] = append(pushes[r.URL.Path], string(b))
		mu.Unlock()
		rw.WriteHeader(204)
	}))
	defer hook.Close()

	liaison := w.as(w.police, "liaison-1", "police-liaison", "oslo-pd-sentrum")
	sec := w.as(w.navState, "sec-1", "security-coordinator", "nav-grorud")
	for c, office := range map[*client.Client]string{liaison: "oslo-pd-sentrum", sec: "nav-grorud"} {
		if r, err := c.JSON(ctx, "PUT", "/v1/offices/"+office+"/webhook", map[string]any{"url": hook.URL + "/" + office}, nil); err != nil {
			t.Fatalf("webhook for %s: %v %s", office, err, r.Body)
		}
	}
	// Two flags the health worker may not see: the police's for NAV, and
	// NAV's report to the police.
	pb := flagBody(personA)
	pb["level"], pb["precautions"] = "caution", []string{"two-staff", "consult-issuer-first"}
	police, resp := w.issue(liaison, pb)
	if resp.Status != 201 {
		t.Fatalf("police flag: %d %s", resp.Status, resp.Body)
	}
	nb := flagBody(personA)
	nb["legal_basis"], nb["audience"] = "fvl-13b-6-navl", map[string]any{"kinds": []string{"police"}}
	nb["precautions"] = []string{"police-present", "no-home-visits"}
	nav, resp := w.issue(sec, nb)
	if resp.Status != 201 {
		t.Fatalf("NAV flag: %d %s", resp.Status, resp.Body)
	}
	hw := w.as(w.health, "lege-1", "health-worker", "")
	if res, _ := w.check(hw, map[string]any{"subject": personA, "purpose": "home-visit"}); res.Result != "clear" {
		t.Fatalf("the flags are not hidden from health: %+v", res)
	}

	just := "Patient phoned the ward saying he will bring a knife to tonight's visit"
	res, resp := w.check(hw, map[string]any{"subject": personA, "purpose": "home-visit", "emergency": map[string]any{"justification": just}})
	if resp.Status != 200 || res.Result != "precautions" || !res.Emergency || len(res.Flags) != 0 || res.Exception == nil {
		t.Fatalf("emergency: %d %s", resp.Status, resp.Body)
	}
	x := res.Exception
	if x.Level != "high" || !slices.Equal(x.Precautions, []string{"two-staff", "no-home-visits", "police-present", "consult-issuer-first"}) ||
		x.Contact.Unit != "Varsel duty desk" || x.Contact.Phone != "+47 11 22 33 44" {
		t.Fatalf("aggregate %+v", x)
	}
	for _, leak := range []string{police.ID, nav.ID, "oslo-pd", "nav-stat", "politiregl", "fvl-13b", `"count"`} {
		if strings.Contains(string(resp.Body), leak) {
			t.Fatalf("the aggregate shows %q: %s", leak, resp.Body)
		}
	}
	e := w.entry(res.Audit.Seq)
	if e.LegalBasis != "fvl-13b-7,politiregl-27-1" || len(e.FlagIDs) != 2 || !e.Emergency {
		t.Fatalf("entry %+v", e)
	}
	if n := w.count(`SELECT count(*) FROM reviews WHERE kind = 'emergency'`); n > 1 {
		t.Fatalf("%d emergency reviews", n)
	}

	// The feeds say so at once: they are the audit log, committed before the answer.
	for c, want := range map[*client.Client]struct{ id, basis string }{liaison: {police.ID, "politiregl-27-1"}, sec: {nav.ID, "fvl-13b-7"}} {
		var feed service.DisclosureFeed
		if _, err := c.JSON(ctx, "GET", "/v1/flags/disclosures", nil, &feed); err != nil {
			t.Fatal(err)
		}
		if len(feed.Disclosures) != 1 {
			t.Fatalf("feed %+v", feed.Disclosures)
		}
		d := feed.Disclosures[0]
		if d.FlagID != want.id || d.LegalBasis != want.basis || !d.ByException || !d.Emergency || d.Agency != "ous" || d.Seq != res.Audit.Seq {
			t.Fatalf("feed item %+v, want %s under %s", d, want.id, want.basis)
		}
	}

	// And by signed push, to each issuing office.
	if n, err := w.main.Pusher.PushDue(ctx); err != nil || n != 2 {
		t.Fatalf("PushDue: %d %v", n, err)
	}
	keyResp, _ := w.caseworker().Do(ctx, "GET", "/v1/audit/key", nil)
	pub, _, err := keys.PublicKey(string(keyResp.Body))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for office, want := range map[string]struct{ id, basis string }{"oslo-pd-sentrum": {police.ID, "politiregl-27-1"}, "nav-grorud": {nav.ID, "fvl-13b-7"}} {
		bodies := pushes["/"+office]
		if len(bodies) != 1 {
			t.Fatalf("%s got %d pushes", office, len(bodies))
		}
		jws, err := jose.ParseSigned(bodies[0], []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		if jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType] != service.WebhookType {
			t.Fatalf("typ %v", jws.Signatures[0].Protected.ExtraHeaders)
		}
		payload, err := jws.Verify(pub)
		if err != nil {
			t.Fatalf("the push does not verify: %v", err)
		}
		var body service.ExceptionPushBody
		if err := json.Unmarshal(payload, &body); err != nil || body.Kind != broker.PushExceptionDisclosure ||
			body.FlagID != want.id || body.LegalBasis != want.basis || body.Office != office || body.CheckSeq != res.Audit.Seq {
			t.Fatalf("push to %s: %s", office, payload)
		}
		if strings.Contains(string(payload), personA) {
			t.Fatal("the push carries the national id")
		}
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'exception.notice.attempt'`); n != 2 ||
		w.count(`SELECT count(*) FROM audit_entries WHERE action = 'exception.notice'`) != 2 {
		t.Fatalf("%d notice attempts audited, want 2 and 2 outcomes", n)
	}
}

// TestExclusionIsADecision: an exclusion without its decision record is
// refused; with it, it reaches only its own office, and not even the
// exception reaches it elsewhere.
func TestExclusionIsADecision(t *testing.T) {
	w := newWorld(t, nil)
	sec := w.as(w.navState, "sec-1", "security-coordinator", "nav-grorud")
	excl := flagBody(personA)
	delete(excl, "decision")
	excl["level"], excl["legal_basis"] = "exclusion", "navl-16"
	excl["audience"] = map[string]any{"offices": []string{"nav-grorud"}}
	excl["valid_until"] = time.Now().Add(80 * 24 * time.Hour).UTC().Format(time.RFC3339)
	flags, entries := w.count(`SELECT count(*) FROM flags`), w.count(`SELECT count(*) FROM audit_entries`)
	refused := []func(){
		func() {},
		func() {
			excl["decision"] = map[string]any{"decided_by": "Kontorleder", "decided_by_role": "controller"}
		},
		func() {
			d := exclusionDecision()
			delete(d, "notice_given_at")
			delete(d, "could_respond")
			excl["decision"] = d
		},
		func() {
			d := exclusionDecision()
			d["milder_measures_considered"] = false
			excl["decision"] = d
		},
		func() {
			excl["decision"] = exclusionDecision()
			excl["audience"] = map[string]any{"offices": []string{"nav-grorud"}, "kinds": []string{"police"}}
		},
	}
	for i, mod := range refused {
		mod()
		_, resp := w.issue(sec, excl)
		if status, code := problemOf(t, resp); status != 422 || code != "invalid_field" {
			t.Fatalf("case %d: %d %s", i, status, code)
		}
	}
	if w.count(`SELECT count(*) FROM flags`) != flags || w.count(`SELECT count(*) FROM audit_entries`) != entries {
		t.Fatal("a refused exclusion changed something")
	}

	// Notice could not be given: the reason stands in for it.
	d := exclusionDecision()
	delete(d, "notice_given_at")
	delete(d, "could_respond")
	d["no_notice_reason"] = "He threatened the receptionist and left; no address known"
	excl["decision"], excl["audience"] = d, map[string]any{"offices": []string{"nav-grorud"}}
	fl, resp := w.issue(sec, excl)
	if resp.Status != 201 || fl.Decision == nil || fl.Decision.DecidedByRole != "office-head" || fl.IssuedBy != "sec-1" {
		t.Fatalf("exclusion: %d %s", resp.Status, resp.Body)
	}
	// The record is stored with the flag, and read back as given.
	var stored service.FlagResult
	if _, err := sec.JSON(context.Background(), "GET", "/v1/flags/"+fl.ID, nil, &stored); err != nil || stored.Decision == nil ||
		stored.Decision.Reference != "NAV 26/7710" || stored.Decision.NoNoticeReason == "" || stored.Decision.MilderMeasuresConsidered == nil ||
		!*stored.Decision.MilderMeasuresConsidered || stored.RepresentedBy != "issuer" {
		t.Fatalf("stored exclusion: %v %+v", err, stored.Decision)
	}
	seen := func(c *client.Client, emergency bool) (int, bool) {
		body := map[string]any{"subject": personA, "purpose": "meeting"}
		if emergency {
			body["emergency"] = map[string]any{"justification": "He said he would come back with a knife today"}
		}
		res, resp := w.check(c, body)
		if resp.Status != 200 {
			t.Fatalf("check: %d %s", resp.Status, resp.Body)
		}
		return len(res.Flags), res.Exception != nil
	}
	for _, c := range []*client.Client{w.caseworker(), w.as(w.navMun, "ola", "reception", "nav-grorud")} {
		if n, _ := seen(c, false); n != 1 {
			t.Fatalf("%s at the office does not see the exclusion", c.Employee.Sub)
		}
	}
	for _, c := range []*client.Client{w.as(w.navState, "kari-a", "caseworker", "nav-arstad"), w.liaison(),
		w.as(w.health, "lege-1", "health-worker", ""), w.as(w.navOther, "per", "caseworker", "nav-bergen")} {
		for _, emergency := range []bool{false, true} {
			if n, agg := seen(c, emergency); n != 0 || agg {
				t.Fatalf("%s (emergency %v) reaches the exclusion of another office", c.Employee.Sub, emergency)
			}
		}
	}
}
