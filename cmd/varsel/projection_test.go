package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/client"
	"varsel/broker/service"
)

// The privacy officers' views, attacked as an outsider would: an officer of
// one agency asks every audit view, with every filter, for what another
// agency's staff did with a check that also touched their flag, and greps
// the raw answers for the other agency's flag ids, legal bases, employee
// ids, justifications, request ids and subject refs.

// Distinctive employee ids and justifications, so that a grep of a body
// finds nothing by accident.
const (
	projLiaison  = "pd-liaison-4410"
	projKari     = "nav-kari-7731"
	projOla      = "kommune-ola-5512"
	projLegeFlag = "lege-anne-9911"
	projSec      = "nav-sec-6620"
	projLege     = "lege-bjorn-2207"
	projBergen   = "cw-bergen-3318"
	projJustHlth = "Patient threatened ward staff with a knife, ZETA-HEALTH-JUST"
	projJustNAV  = "Caller says he is on his way here armed, ZETA-NAV-JUST"
)

// projScene is the log the attacks run against.
type projScene struct {
	w                   *world
	police, health, nav string // flag ids about A: the police's, the health trust's, NAV Grorud's
	warned, warnedC     string // the police warnings' flags, about B and about C
	navCheck            int64  // NAV's check that disclosed both flags
	healthEmergency     int64  // the health worker's emergency check: the police flag through the exception
	munEmergency        int64  // the municipal caseworker's emergency check: the police flag, normally
	bergenInbox, ackSeq int64  // NAV Bergen's inbox read and acknowledgement of the warning
	refA, refB          string // the subjects' refs
}

func newProjScene(t *testing.T) *projScene {
	// Office hours that exclude now, so every employee's first check is an
	// anomaly: another agency's snooping signals must not reach the figures.
	h := time.Now().UTC().Hour()
	hours := fmt.Sprintf("%02d-%02d UTC", (h+2)%22, (h+2)%22+1)
	w := newWorld(t, func(c *Config) { c.OfficeHours = hours })
	sc := &projScene{w: w}
	liaison := w.as(w.police, projLiaison, "police-liaison", "")

	pf, resp := w.issue(liaison, flagBody(personA))
	if resp.Status != 201 {
		t.Fatalf("police flag: %d %s", resp.Status, resp.Body)
	}
	sc.police = pf.ID
	hb := flagBody(personA)
	hb["legal_basis"] = "hpl-23-4"
	hb["audience"] = map[string]any{"kinds": []string{"nav-state"}}
	hb["contact"] = map[string]any{"unit": "OUS, akuttpsykiatrisk avdeling", "phone": "+47 23 02 60 00"}
	hb["subject_informed"] = map[string]any{"informed": true}
	hf, resp := w.issue(w.as(w.health, projLegeFlag, "health-worker", ""), hb)
	if resp.Status != 201 {
		t.Fatalf("health flag: %d %s", resp.Status, resp.Body)
	}
	sc.health = hf.ID
	nb := flagBody(personA)
	nb["legal_basis"] = "navl-16"
	nb["audience"] = map[string]any{"offices": []string{"nav-grorud"}}
	nf, resp := w.issue(w.as(w.navState, projSec, "security-coordinator", "nav-grorud"), nb)
	if resp.Status != 201 {
		t.Fatalf("NAV flag: %d %s", resp.Status, resp.Body)
	}
	sc.nav = nf.ID

	// One NAV check discloses all three flags.
	res, resp := w.check(w.as(w.navState, projKari, "caseworker", "nav-grorud"), map[string]any{"subject": personA, "purpose": "meeting"})
	if resp.Status != 200 || len(res.Flags) != 3 {
		t.Fatalf("NAV check: %d %s", resp.Status, resp.Body)
	}
	sc.navCheck = res.Audit.Seq
	// A health worker's emergency check sees the police and NAV flags'
	// precautions only, through the exception.
	res, resp = w.check(w.as(w.health, projLege, "health-worker", ""), map[string]any{"subject": personA, "purpose": "meeting",
		"emergency": map[string]any{"justification": projJustHlth}})
	if resp.Status != 200 || len(res.Flags) != 2 || res.Flags[0].ID != "" || res.Flags[1].ID != "" {
		t.Fatalf("health emergency check: %d %s", resp.Status, resp.Body)
	}
	sc.healthEmergency = res.Audit.Seq
	// A municipal caseworker at another office, in an emergency, sees the
	// police flag normally and the NAV Grorud flag through the exception.
	res, resp = w.check(w.as(w.navMun, projOla, "caseworker", "nav-arstad"), map[string]any{"subject": personA, "purpose": "home-visit",
		"emergency": map[string]any{"justification": projJustNAV}})
	if resp.Status != 200 || len(res.Flags) != 2 || !slices.ContainsFunc(res.Flags, func(f service.CheckFlag) bool { return f.ID == sc.police }) {
		t.Fatalf("municipal emergency check: %d %s", resp.Status, resp.Body)
	}
	sc.munEmergency = res.Audit.Seq

	// A police warning about B to NAV Bergen, read and acknowledged there.
	wb := warningBody(personB, "nav-bergen")
	warned, resp := call[service.WarningResult](t, liaison, "POST", "/v1/warnings", wb)
	if resp.Status != 201 {
		t.Fatalf("warning: %d %s", resp.Status, resp.Body)
	}
	sc.warned = warned.Flag.ID
	// Another about C: one inbox page then carries warnings about two people.
	warnedC, resp := call[service.WarningResult](t, liaison, "POST", "/v1/warnings", warningBody(personC, "nav-bergen"))
	if resp.Status != 201 {
		t.Fatalf("warning: %d %s", resp.Status, resp.Body)
	}
	sc.warnedC = warnedC.Flag.ID
	bergen := w.as(w.navOther, projBergen, "caseworker", "nav-bergen")
	inbox, resp := call[struct {
		Warnings []service.InboxWarning `json:"warnings"`
		Audit    audit.Receipt          `json:"audit"`
	}](t, bergen, "GET", "/v1/warnings/inbox", nil)
	if resp.Status != 200 || len(inbox.Warnings) != 2 {
		t.Fatalf("inbox: %d %s", resp.Status, resp.Body)
	}
	sc.bergenInbox = inbox.Audit.Seq
	ack, resp := call[service.AckResult](t, bergen, "POST", "/v1/warnings/"+warned.ID+"/ack", nil)
	if resp.Status != 200 {
		t.Fatalf("ack: %d %s", resp.Status, resp.Body)
	}
	sc.ackSeq = ack.Audit.Seq

	sc.refA = w.entry(sc.navCheck).SubjectRef
	sc.refB = w.entry(warned.Audit.Seq).SubjectRef
	if len(sc.refA) != 64 || len(sc.refB) != 64 || w.entry(sc.ackSeq).SubjectRef != sc.refB {
		t.Fatalf("subject refs %q %q", sc.refA, sc.refB)
	}
	return sc
}

// logged is what the log holds of one agency's staff: the strings no other
// agency's officer may see.
type logged struct {
	actors, jtis, justifications []string
}

func (sc *projScene) loggedBy(agency string) logged {
	sc.w.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, sc.w.db)
	if err != nil {
		sc.w.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var l logged
	rows, err := conn.Query(ctx, `SELECT actor, request_jti, justification FROM audit_entries WHERE actor_agency = $1`, agency)
	if err != nil {
		sc.w.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var a, j, just string
		if err := rows.Scan(&a, &j, &just); err != nil {
			sc.w.t.Fatal(err)
		}
		for _, p := range []struct {
			s   string
			dst *[]string
		}{{a, &l.actors}, {j, &l.jtis}, {just, &l.justifications}} {
			if p.s != "" && !slices.Contains(*p.dst, p.s) {
				*p.dst = append(*p.dst, p.s)
			}
		}
	}
	return l
}

// projEntry is an entry as the search shows it.
type projEntry struct {
	Seq           int64    `json:"seq"`
	ActorAgency   string   `json:"actor_agency"`
	Actor         string   `json:"actor"`
	Role          string   `json:"role"`
	Office        string   `json:"office"`
	Action        string   `json:"action"`
	Decision      string   `json:"decision"`
	SubjectRef    string   `json:"subject_ref"`
	FlagIDs       []string `json:"flag_ids"`
	LegalBasis    string   `json:"legal_basis"`
	Emergency     bool     `json:"emergency"`
	Justification string   `json:"justification"`
	Reasons       []string `json:"reasons"`
	RequestJTI    string   `json:"request_jti"`
	Hash          string   `json:"hash"`
	Projected     *bool    `json:"projected"`
}

type projSearch struct {
	Entries []projEntry `json:"entries"`
	Next    int64       `json:"next_after_seq"`
	Audit   struct{ Seq int64 }
}

// officer is one privacy officer's session: every raw body it was answered.
type officer struct {
	t      testing.TB
	agency string
	c      *client.Client
	asked  []string // what each body answered
	bodies []string
}

func (sc *projScene) officer(t testing.TB, s *client.Signer, agency string) *officer {
	return &officer{t: t, agency: agency, c: sc.w.as(s, "po-"+agency, "privacy-officer", "")}
}

func (o *officer) do(method, path string, body any, out any) *client.Response {
	o.t.Helper()
	resp, err := o.c.JSON(context.Background(), method, path, body, out)
	if resp == nil {
		o.t.Fatal(err)
	}
	o.asked = append(o.asked, fmt.Sprintf("%s %s %v", method, path, body))
	o.bodies = append(o.bodies, string(resp.Body))
	return resp
}

func (o *officer) search(q map[string]any) projSearch {
	o.t.Helper()
	var r projSearch
	if resp := o.do("POST", "/v1/audit/search", q, &r); resp.Status != 200 {
		o.t.Fatalf("%s search %v: %d %s", o.agency, q, resp.Status, resp.Body)
	}
	return r
}

// all returns the whole view in one page, and pages through the same
// entries two at a time (each search is itself an entry of the view, so
// paging stops at the first one's receipt).
func (o *officer) all() []projEntry {
	o.t.Helper()
	r := o.search(map[string]any{"limit": 1000})
	whole, upTo := r.Entries, r.Audit.Seq
	var paged []projEntry
	for after := int64(0); ; {
		p := o.search(map[string]any{"after_seq": after, "limit": 2})
		for _, e := range p.Entries {
			if e.Seq < upTo {
				paged = append(paged, e)
			}
		}
		if p.Next == 0 || p.Next >= upTo {
			break
		}
		after = p.Next
	}
	a, _ := json.Marshal(whole)
	b, _ := json.Marshal(paged)
	if string(a) != string(b) {
		o.t.Fatalf("%s: paging shows\n%s\nthe whole view\n%s", o.agency, b, a)
	}
	return whole
}

// attack asks every view with every filter, keeping the bodies.
func (o *officer) attack() {
	t := o.t
	t.Helper()
	o.all()
	others := []string{"oslo-pd", "nav-stat", "oslo-kommune", "ous", "nav-vest", "varsel"}
	for _, ag := range others {
		o.search(map[string]any{"actor_agency": ag})
	}
	for _, q := range []map[string]any{
		{"subject": personA}, {"subject": personB}, {"subject": personC},
		{"emergency_only": true}, {"emergency_only": true, "subject": personA},
		{"from": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "to": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
	} {
		o.search(q)
	}
	// Searching for another agency's employee finds nothing, with or
	// without their agency: exactly as for an employee who does not exist.
	for _, who := range []struct{ actor, agency string }{
		{projKari, "nav-stat"}, {projOla, "oslo-kommune"}, {projLege, "ous"}, {projLegeFlag, "ous"},
		{projBergen, "nav-vest"}, {projLiaison, "oslo-pd"}, {"nobody-0000", "nav-stat"},
	} {
		if who.agency == o.agency {
			continue
		}
		for _, q := range []map[string]any{{"actor": who.actor}, {"actor": who.actor, "actor_agency": who.agency},
			{"actor": who.actor, "actor_agency": o.agency}, {"actor": who.actor, "subject": personA}} {
			if r := o.search(q); len(r.Entries) != 0 {
				t.Fatalf("%s officer's search %v finds another agency's employee: %+v", o.agency, q, r.Entries)
			}
		}
	}
	for _, q := range []string{"status=all", "status=pending", "status=overdue", "status=justified", "status=unjustified",
		"kind=emergency", "kind=anomaly", "status=all&kind=anomaly&limit=1000"} {
		if resp := o.do("GET", "/v1/audit/reviews?"+q, nil, nil); resp.Status != 200 {
			t.Fatalf("%s reviews %s: %d %s", o.agency, q, resp.Status, resp.Body)
		}
	}
	for _, subj := range []string{personA, personB, personC} {
		if resp := o.do("POST", "/v1/audit/subject-report", map[string]any{"subject": subj}, nil); resp.Status != 200 {
			t.Fatalf("%s report: %d %s", o.agency, resp.Status, resp.Body)
		}
	}
	for _, g := range broker.StatGroups {
		if resp := o.do("GET", "/v1/audit/stats?group_by="+g, nil, nil); resp.Status != 200 {
			t.Fatalf("%s stats %s: %d %s", o.agency, g, resp.Status, resp.Body)
		}
	}
	o.do("GET", "/v1/flags/disclosures", nil, nil)
}

// mustNotShow fails when any body holds any of the strings.
func (o *officer) mustNotShow(what string, forbidden ...string) {
	o.t.Helper()
	for _, f := range forbidden {
		if f == "" {
			continue
		}
		for i, b := range o.bodies {
			if strings.Contains(b, f) {
				o.t.Fatalf("%s officer is shown %s %q by %s:\n%s", o.agency, what, f, o.asked[i], b)
			}
		}
	}
}

// foreignOnly fails unless every other agency's entry in the view is
// projected to the allow-list: no employee, subject, justification or
// request id, only the viewer's flags.
func (o *officer) foreignOnly(entries []projEntry, ownFlags ...string) {
	o.t.Helper()
	for _, e := range entries {
		if e.Projected == nil || !*e.Projected {
			o.t.Fatalf("%s officer's entry %d is not marked projected", o.agency, e.Seq)
		}
		if e.ActorAgency == o.agency {
			continue
		}
		if e.Actor != "" || e.SubjectRef != "" || e.Justification != "" || e.RequestJTI != "" || len(e.FlagIDs) == 0 {
			o.t.Fatalf("%s officer sees of %s's entry %d: %+v", o.agency, e.ActorAgency, e.Seq, e)
		}
		for _, id := range e.FlagIDs {
			if !slices.Contains(ownFlags, id) {
				o.t.Fatalf("%s officer sees flag %s in %s's entry %d", o.agency, id, e.ActorAgency, e.Seq)
			}
		}
		for _, r := range e.Reasons {
			if strings.Contains(r, ":") && !slices.Contains(ownFlags, strings.TrimPrefix(r, "emergency_flag:")) {
				o.t.Fatalf("%s officer sees reason %q of %s's entry %d", o.agency, r, e.ActorAgency, e.Seq)
			}
		}
	}
}

func find(entries []projEntry, seq int64) *projEntry {
	for i := range entries {
		if entries[i].Seq == seq {
			return &entries[i]
		}
	}
	return nil
}

// statsMatchView checks that the figures count the view: per legal basis,
// the checks, disclosures, denials and emergencies of the entries the
// officer's search shows before the stats call.
func (o *officer) statsMatchView() {
	t := o.t
	t.Helper()
	var st service.Stats
	o.do("GET", "/v1/audit/stats?group_by=legal_basis", nil, &st)
	want := map[string]broker.StatRow{}
	for _, e := range o.search(map[string]any{"limit": 1000}).Entries {
		if e.Seq >= st.Audit.Seq {
			continue
		}
		keys := strings.Split(e.LegalBasis, ",")
		for _, k := range keys {
			r := want[k]
			r.Key = k
			if e.Action == "check" {
				r.Checks++
			}
			// A flag whose id is withheld was disclosed all the same.
			shown := len(e.FlagIDs) > 0 || slices.Contains(e.Reasons, "emergency_flag:withheld")
			if e.Decision == "allow" && shown && slices.Contains([]string{"check", "warning.inbox", "warning.push"}, e.Action) {
				r.Disclosures++
			}
			if e.Decision == "deny" {
				r.Denials++
			}
			if e.Emergency && e.Decision == "allow" {
				r.Emergencies++
			}
			want[k] = r
		}
	}
	got := map[string]broker.StatRow{}
	for _, g := range st.Groups {
		g.Anomalies = 0
		got[g.Key] = g
	}
	if len(got) != len(want) {
		t.Fatalf("%s figures by basis %+v, the view counts %+v", o.agency, got, want)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || g != w {
			t.Fatalf("%s figures for %q: %+v, the view counts %+v", o.agency, k, g, w)
		}
	}
}

func TestPrivacyOfficersSeeOnlyTheirAgency(t *testing.T) {
	sc := newProjScene(t)
	w := sc.w
	nav, mun, health, vest := sc.loggedBy("nav-stat"), sc.loggedBy("oslo-kommune"), sc.loggedBy("ous"), sc.loggedBy("nav-vest")
	police := sc.loggedBy("oslo-pd")

	// The health trust's officer judges its emergency review first, so that
	// the verdict entry and the verdict in the police's report exist too.
	hpo := sc.officer(t, w.health, "ous")
	const note = "Staff were at risk; precautions only. ZETA-NOTE"
	var judged map[string]any
	resp := hpo.do("POST", fmt.Sprintf("/v1/audit/reviews/%d", sc.healthEmergency),
		map[string]any{"verdict": "justified", "note": note, "kind": "emergency"}, &judged)
	if resp.Status != 200 || judged["status"] != "justified" || judged["projected"] != true {
		t.Fatalf("health verdict: %d %s", resp.Status, resp.Body)
	}
	if v := w.entry(int64(judged["verdict_seq"].(float64))); !slices.Contains(v.FlagIDs, sc.police) {
		// The log keeps what was reviewed; only the views withhold it.
		t.Fatalf("verdict entry %+v", v)
	}
	// Another agency's officer cannot judge it, see it or learn of it.
	ppo := sc.officer(t, w.police, "oslo-pd")
	if r := ppo.do("POST", fmt.Sprintf("/v1/audit/reviews/%d", sc.healthEmergency),
		map[string]any{"verdict": "unjustified", "note": "not yours", "kind": "emergency"}, nil); r.Status != 404 {
		t.Fatalf("police judges a health review: %d %s", r.Status, r.Body)
	}

	t.Run("police", func(t *testing.T) {
		o := ppo
		o.t = t
		o.attack()
		// Nothing of the health trust's flag, basis, staff, justification
		// or requests; nothing of NAV's staff, justification or requests.
		o.mustNotShow("the health or NAV flag", sc.health, sc.nav)
		o.mustNotShow("a health or NAV basis", "hpl-", "navl-")
		for _, l := range []logged{nav, mun, health, vest} {
			o.mustNotShow("another agency's employee", l.actors...)
			o.mustNotShow("another agency's justification", l.justifications...)
			o.mustNotShow("another agency's request id", l.jtis...)
		}
		o.mustNotShow("a justification or the health trust's review", projJustHlth, projJustNAV, "ZETA-", "po-ous")
		all := o.all()
		o.foreignOnly(all, sc.police, sc.warned, sc.warnedC)
		// The police flag and its disclosures are there.
		nc := find(all, sc.navCheck)
		if nc == nil || nc.ActorAgency != "nav-stat" || nc.Office != "nav-grorud" || nc.Role != "caseworker" || nc.Action != "check" ||
			!slices.Equal(nc.FlagIDs, []string{sc.police}) || nc.LegalBasis != "politiregl-27" || nc.Emergency || nc.Hash == "" {
			t.Fatalf("NAV's check as the police see it: %+v", nc)
		}
		he := find(all, sc.healthEmergency)
		if he == nil || he.ActorAgency != "ous" || !he.Emergency || !slices.Equal(he.FlagIDs, []string{sc.police}) ||
			he.LegalBasis != "fvl-13b-7" || !slices.Contains(he.Reasons, "emergency_flag:"+sc.police) {
			t.Fatalf("the health emergency as the police see it: %+v", he)
		}
		me := find(all, sc.munEmergency)
		// The check used the exception for NAV's flag, not the police's.
		if me == nil || !me.Emergency || !slices.Equal(me.FlagIDs, []string{sc.police}) || me.LegalBasis != "politiregl-27" || me.Office != "nav-arstad" ||
			!slices.Equal(me.Reasons, []string{"life_and_health_exception"}) {
			t.Fatalf("the municipal emergency as the police see it: %+v", me)
		}
		if in := find(all, sc.bergenInbox); in == nil || len(in.FlagIDs) != 2 || in.Office != "nav-bergen" || in.LegalBasis != "politiregl-27" {
			t.Fatalf("the inbox read as the police see it: %+v", in)
		}
		// A report on B lists the inbox read with B's warning only.
		var repB struct {
			Disclosures []broker.ReportItem `json:"disclosures"`
		}
		o.do("POST", "/v1/audit/subject-report", map[string]any{"subject": personB}, &repB)
		if len(repB.Disclosures) != 1 || repB.Disclosures[0].Seq != sc.bergenInbox || !slices.Equal(repB.Disclosures[0].FlagIDs, []string{sc.warned}) {
			t.Fatalf("police report on B: %+v", repB.Disclosures)
		}
		if find(all, sc.ackSeq) != nil {
			t.Fatal("the police see NAV Bergen's acknowledgement")
		}
		// Another agency's entries never carry its subject ref: in the
		// views that show only other agencies' entries, the ref is absent.
		for _, q := range []map[string]any{{"actor_agency": "nav-stat"}, {"actor_agency": "ous"}, {"emergency_only": true},
			{"subject": personA, "actor_agency": "oslo-kommune"}} {
			r := o.search(q)
			b, _ := json.Marshal(r.Entries)
			if len(r.Entries) == 0 || strings.Contains(string(b), sc.refA) || strings.Contains(string(b), sc.refB) {
				t.Fatalf("police search %v: %s", q, b)
			}
		}
		var rep struct {
			Disclosures []broker.ReportItem `json:"disclosures"`
		}
		r := o.do("POST", "/v1/audit/subject-report", map[string]any{"subject": personA}, &rep)
		if strings.Contains(string(r.Body), sc.refA) || len(rep.Disclosures) != 3 {
			t.Fatalf("police report on A: %s", r.Body)
		}
		for _, it := range rep.Disclosures {
			if !slices.Equal(it.FlagIDs, []string{sc.police}) || !it.Projected {
				t.Fatalf("police report item %+v", it)
			}
			if it.Seq == sc.healthEmergency && (it.Verdict != "justified" || it.LegalBasis != "fvl-13b-7") {
				t.Fatalf("the health emergency in the police report: %+v", it)
			}
		}
		// The figures: no basis the police never used, and none of the
		// other agencies' snooping signals.
		var st service.Stats
		o.do("GET", "/v1/audit/stats?group_by=legal_basis", nil, &st)
		keys := []string{}
		for _, g := range st.Groups {
			keys = append(keys, g.Key)
			if g.Anomalies != 0 {
				t.Fatalf("police figures count another agency's anomaly: %+v", st.Groups)
			}
		}
		if !slices.Contains(keys, "politiregl-27") || !slices.Contains(keys, "fvl-13b-7") || slices.Contains(keys, "hpl-23-4") {
			t.Fatalf("police figures by basis: %+v", st.Groups)
		}
		o.statsMatchView()
	})

	t.Run("health", func(t *testing.T) {
		o := hpo
		o.t = t
		o.attack()
		// The police flag's id was withheld from the health worker by the
		// exception, so from the health trust's officer too; no police or
		// NAV staff, justification, request or police basis either.
		o.mustNotShow("the police or NAV flag", sc.police, sc.warned, sc.warnedC, sc.nav)
		o.mustNotShow("a police or NAV basis", "politiregl-", "navl-")
		for _, l := range []logged{nav, mun, vest, police} {
			o.mustNotShow("another agency's employee", l.actors...)
			o.mustNotShow("another agency's justification", l.justifications...)
			o.mustNotShow("another agency's request id", l.jtis...)
		}
		o.mustNotShow("NAV's justification", projJustNAV, "ZETA-NAV")
		all := o.all()
		o.foreignOnly(all, sc.health)
		nc := find(all, sc.navCheck)
		if nc == nil || !slices.Equal(nc.FlagIDs, []string{sc.health}) || nc.LegalBasis != "hpl-23-4" || nc.Actor != "" {
			t.Fatalf("NAV's check as the health trust sees it: %+v", nc)
		}
		// Its own emergency check whole, but for the police flag's id.
		he := find(all, sc.healthEmergency)
		if he == nil || he.Actor != projLege || he.Justification != projJustHlth || he.SubjectRef != sc.refA || len(he.FlagIDs) != 0 ||
			he.LegalBasis != "fvl-13b-7" || !slices.Equal(he.Reasons, []string{"life_and_health_exception", "emergency_flag:withheld", "emergency_flag:withheld"}) {
			t.Fatalf("its own emergency check: %+v", he)
		}
		var l struct {
			Reviews []broker.Review `json:"reviews"`
		}
		o.do("GET", "/v1/audit/reviews?kind=emergency", nil, &l)
		if len(l.Reviews) != 1 || l.Reviews[0].Seq != sc.healthEmergency || len(l.Reviews[0].FlagIDs) != 0 ||
			l.Reviews[0].Justification != projJustHlth || !l.Reviews[0].Projected {
			t.Fatalf("its emergency review: %+v", l.Reviews)
		}
		var rep struct {
			Disclosures []broker.ReportItem `json:"disclosures"`
		}
		o.do("POST", "/v1/audit/subject-report", map[string]any{"subject": personA}, &rep)
		// Its own emergency check (an emergency disclosure, no visible
		// flag) and NAV's check of its flag.
		if len(rep.Disclosures) != 2 {
			t.Fatalf("health report on A: %+v", rep.Disclosures)
		}
		o.statsMatchView()
	})

	t.Run("nav", func(t *testing.T) {
		// NAV's caseworker saw both flags with their ids: NAV's officer
		// sees its own check whole.
		o := sc.officer(t, w.navState, "nav-stat")
		o.attack()
		for _, l := range []logged{mun, health, vest, police} {
			o.mustNotShow("another agency's employee", l.actors...)
			o.mustNotShow("another agency's justification", l.justifications...)
			o.mustNotShow("another agency's request id", l.jtis...)
		}
		o.mustNotShow("another agency's justification", projJustHlth, projJustNAV, "ZETA-")
		all := o.all()
		o.foreignOnly(all, sc.nav)
		nc := find(all, sc.navCheck)
		want := []string{sc.police, sc.health, sc.nav}
		slices.Sort(want)
		if nc == nil || nc.Actor != projKari || nc.SubjectRef != sc.refA || !slices.Equal(nc.FlagIDs, want) || nc.LegalBasis != "hpl-23-4,navl-16,politiregl-27" {
			t.Fatalf("NAV's own check: %+v", nc)
		}
		// The two emergency checks that revealed NAV's flag, with it alone.
		for _, seq := range []int64{sc.healthEmergency, sc.munEmergency} {
			e := find(all, seq)
			if e == nil || !slices.Equal(e.FlagIDs, []string{sc.nav}) || e.LegalBasis != "fvl-13b-7" ||
				!slices.Equal(e.Reasons, []string{"life_and_health_exception", "emergency_flag:" + sc.nav}) {
				t.Fatalf("an emergency check as NAV sees it: %+v", e)
			}
		}
		o.statsMatchView()
	})

	t.Run("nav-bergen", func(t *testing.T) {
		// The acknowledgement names the warning's flag and subject, which
		// the office was never told: its officer sees the
		// acknowledgement, not them, and cannot find it by the person.
		o := sc.officer(t, w.navOther, "nav-vest")
		o.attack()
		all := o.all()
		ack := find(all, sc.ackSeq)
		if ack == nil || ack.Actor != projBergen || ack.SubjectRef != "" || len(ack.FlagIDs) != 0 {
			t.Fatalf("its acknowledgement: %+v", ack)
		}
		if in := find(all, sc.bergenInbox); in == nil || len(in.FlagIDs) != 2 {
			t.Fatalf("its inbox read (the flags were shown with their ids): %+v", in)
		}
		for _, q := range []map[string]any{{"subject": personB}, {"subject": personB, "actor": projBergen}} {
			if find(o.search(q).Entries, sc.ackSeq) != nil {
				t.Fatalf("search %v finds the acknowledgement by the warned person", q)
			}
		}
		o.mustNotShow("the police's staff", police.actors...)
	})

	t.Run("operator", func(t *testing.T) {
		// The operator's auditors see every entry whole.
		ops := w.ops // registered by newWorld
		o := sc.officer(t, ops, "ops-audit")
		all := o.search(map[string]any{"limit": 1000}).Entries
		for _, e := range all {
			if e.Projected == nil || *e.Projected {
				t.Fatalf("auditors' entry %d is projected", e.Seq)
			}
		}
		nc := find(all, sc.navCheck)
		he := find(all, sc.healthEmergency)
		if nc == nil || nc.Actor != projKari || nc.SubjectRef != sc.refA || len(nc.FlagIDs) != 3 || nc.LegalBasis != "hpl-23-4,navl-16,politiregl-27" ||
			he == nil || he.Justification != projJustHlth || len(he.FlagIDs) != 2 {
			t.Fatalf("auditors' view: %+v %+v", nc, he)
		}
		var st service.Stats
		o.do("GET", "/v1/audit/stats?group_by=legal_basis", nil, &st)
		b, _ := json.Marshal(st.Groups)
		if !strings.Contains(string(b), "hpl-23-4") || !strings.Contains(string(b), "politiregl-27") {
			t.Fatalf("auditors' figures: %s", b)
		}
		var l struct {
			Reviews []broker.Review `json:"reviews"`
		}
		o.do("GET", "/v1/audit/reviews?kind=emergency", nil, &l)
		for _, r := range l.Reviews {
			if r.Seq == sc.healthEmergency && (len(r.FlagIDs) != 2 || r.Projected) {
				t.Fatalf("auditors' review: %+v", r)
			}
		}
	})
}
