package portal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/broker"
	"varsel/broker/app"
	"varsel/broker/auth"
	"varsel/broker/client"
	"varsel/broker/keys"
	"varsel/schema/schematest"
)

// officerEnv is a real broker over a fresh database, and a portal in front
// of it whose sessions the test seals itself (the sign-in flow is tested
// with the dev provider elsewhere; a stub serves the discovery document).
type officerEnv struct {
	t      *testing.T
	dbURL  string
	app    *app.App
	base   string
	portal *Portal
}

func newOfficerEnv(t *testing.T) *officerEnv {
	t.Helper()
	ctx := context.Background()
	dbURL, err := schematest.NewDatabase(ctx, "portal_officer", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = schematest.DropDatabase(context.Background(), dbURL) })
	dir := t.TempDir()
	if err := (&keys.Dir{Path: dir, Name: "varsel"}).Open(); err != nil {
		t.Fatal(err)
	}
	a := app.New(app.Config{
		DatabaseURL: dbURL, DatabaseRole: "varsel_app", Listen: "127.0.0.1:0", BrokerID: "varsel",
		Keys: "file:" + dir, TestSubjects: true,
		KeyReloadInterval: time.Hour, CheckpointInterval: time.Hour, ReviewSweepInterval: time.Hour,
		DutyDesk: broker.Contact{Unit: "Varsel duty desk"},
	}, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("broker did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	})
	return &officerEnv{t: t, dbURL: dbURL, app: a, base: "http://" + a.Addr().String()}
}

func (e *officerEnv) agency(id string, kind broker.AgencyKind, offices ...string) *client.Signer {
	t := e.t
	t.Helper()
	ctx := context.Background()
	priv, pub, err := auth.GenerateKey(auth.AlgES256, id+"-1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(pub, &set); err != nil {
		t.Fatal(err)
	}
	if offices == nil {
		offices = []string{}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO agencies (id, kind, name, offices) VALUES ($1, $2, $1, $3)`, id, string(kind), offices); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO agency_keys (agency_id, kid, jwk) VALUES ($1, $2, $3)`, id, id+"-1", string(set.Keys[0])); err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSigner(id, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *officerEnv) call(s *client.Signer, emp client.Employee, method, path string, body, out any) *client.Response {
	e.t.Helper()
	c := &client.Client{BaseURL: e.base, Signer: s, Employee: emp}
	resp, err := c.JSON(context.Background(), method, path, body, out)
	if err != nil {
		e.t.Fatalf("%s %s: %v %+v", method, path, err, resp)
	}
	return resp
}

// startPortal builds the portal for the agencies, with a stub provider.
func (e *officerEnv) startPortal(agencies ...Agency) {
	e.t.Helper()
	e.startPortalWith(nil, agencies...)
}

// startPortalWith is startPortal with the configuration changed by edit
// (another broker, a clock) before the portal is built.
func (e *officerEnv) startPortalWith(edit func(*Config), agencies ...Agency) {
	t := e.t
	t.Helper()
	var issuer string
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": issuer, "authorization_endpoint": issuer + "/auth",
			"token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"}})
	}))
	t.Cleanup(op.Close)
	issuer = op.URL
	cfg := Config{PublicURL: "http://127.0.0.1:8090", BrokerURL: e.base, Agencies: agencies,
		OIDC: OIDC{Issuer: issuer, ClientID: "varsel-portal"}, SessionKey: make([]byte, 32), TestSubjects: true,
		StateFile: filepath.Join(t.TempDir(), "state.json")}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.portal = p
}

// page sends a request to the portal as a signed-in privacy officer.
func (e *officerEnv) page(agency, method, target string, form url.Values) (int, string) {
	e.t.Helper()
	now := e.portal.now() // the portal's clock, which a test may set ahead
	cookie, err := e.portal.sealer.seal(sessionCookie, &Session{Sub: "po-" + agency, Name: "Officer", Agency: agency,
		Role: broker.RolePrivacyOfficer, Created: now, Seen: now})
	if err != nil {
		e.t.Fatal(err)
	}
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.Header.Set("Accept-Language", "en")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	rec := httptest.NewRecorder()
	e.portal.ServeHTTP(rec, req)
	if rec.Code == http.StatusSeeOther {
		loc, _, _ := strings.Cut(rec.Header().Get("Location"), "#")
		return e.page(agency, "GET", loc, nil)
	}
	return rec.Code, rec.Body.String()
}

var (
	verdictForm = regexp.MustCompile(`id="verdict-(\d+)"`)
	reportRow   = regexp.MustCompile(`<tr data-seq="(\d+)">`)
	searchRow   = regexp.MustCompile(`<tr id="entry-(\d+)" data-agency="([^"]*)">`)
)

func TestOfficerDashboard(t *testing.T) {
	e := newOfficerEnv(t)
	police := e.agency("t-pd", broker.KindPolice)
	nav := e.agency("t-nav", broker.KindNAVState, "t-office")
	nav2 := e.agency("t-nav2", broker.KindNAVState, "t-office2")
	e.startPortal(Agency{ID: "t-nav", Name: "NAV test", Signer: nav}, Agency{ID: "t-nav2", Name: "NAV test 2", Signer: nav2})

	person := broker.SyntheticNumber(4242, 40)
	other := broker.SyntheticNumber(4243, 41)
	e.call(police, client.Employee{Sub: "liaison-1", Role: "police-liaison"}, "POST", "/v1/flags", map[string]any{
		"subject": person, "level": "high", "categories": []string{"threats"}, "precautions": []string{"two-staff"},
		"valid_until": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"legal_basis": "politiregl-27-2", "audience": map[string]any{"kinds": []string{"nav-state"}},
		"decision": map[string]any{"decided_by": "Seksjonsleder", "decided_by_role": "controller",
			"decided_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "reference": "T-2026-1"},
		"subject_informed": map[string]any{"informed": true},
		"contact":          map[string]any{"unit": "Oslo PD", "phone": "+47 22 66 90 50"},
	}, nil)
	cw := client.Employee{Sub: "cw-1", Role: "caseworker", Office: "t-office"}
	for _, subj := range []string{person, other} {
		e.call(nav, cw, "POST", "/v1/checks", map[string]any{"subject": subj, "purpose": "meeting"}, nil)
	}
	justification := "Threat reported at the counter, the person is in the waiting room now"
	e.call(nav, cw, "POST", "/v1/checks", map[string]any{"subject": person, "purpose": "meeting",
		"emergency": map[string]any{"justification": justification}}, nil)
	// Another agency's staff check the same person.
	e.call(nav2, client.Employee{Sub: "cw-2", Role: "caseworker", Office: "t-office2"}, "POST", "/v1/checks",
		map[string]any{"subject": person, "purpose": "meeting"}, nil)
	if _, err := e.app.Checkpointer.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The review queue lists the emergency review, and the verdict posts.
	code, body := e.page("t-nav", "GET", "/officer/reviews", nil)
	if code != 200 || !strings.Contains(body, justification) {
		t.Fatalf("reviews: %d\n%s", code, body)
	}
	m := verdictForm.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, `id="count-pending">Pending: <strong>1</strong>`) {
		t.Fatalf("no pending review or count:\n%s", body)
	}
	seq := m[1]
	code, body = e.page("t-nav", "POST", "/officer/reviews/"+seq, url.Values{"verdict": {"justified"}, "note": {"checked with the office"}, "kind": {"emergency"}})
	if code != 200 || !strings.Contains(body, `id="judged-`+seq+`-emergency"`) || !strings.Contains(body, "po-t-nav") {
		t.Fatalf("after the verdict: %d\n%s", code, body)
	}
	officer := client.Employee{Sub: "po-check", Role: broker.RolePrivacyOfficer}
	var found struct {
		Entries []struct {
			Action  string   `json:"action"`
			Reasons []string `json:"reasons"`
		} `json:"entries"`
	}
	e.call(nav, officer, "POST", "/v1/audit/search", map[string]any{"actor": "po-t-nav", "limit": 1000}, &found)
	logged := false
	for _, en := range found.Entries {
		if en.Action == "review.verdict" && strings.Contains(strings.Join(en.Reasons, " "), "verdict:justified") {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("the verdict is not in the log: %+v", found.Entries)
	}

	// The subject report lists exactly the person's disclosures, and never
	// shows the number.
	var rep struct {
		Disclosures []struct {
			Seq int64 `json:"seq"`
		} `json:"disclosures"`
	}
	e.call(nav, officer, "POST", "/v1/audit/subject-report", map[string]any{"subject": person}, &rep)
	code, body = e.page("t-nav", "POST", "/officer/report", url.Values{"subject": {person}})
	rows := reportRow.FindAllStringSubmatch(body, -1)
	if code != 200 || len(rows) != len(rep.Disclosures) || len(rows) == 0 || strings.Contains(body, person) {
		t.Fatalf("report: %d, %d rows, broker %d\n%s", code, len(rows), len(rep.Disclosures), body)
	}
	for i, r := range rows {
		if r[1] != fmt.Sprint(rep.Disclosures[i].Seq) {
			t.Fatalf("report row %d: seq %s, broker %d", i, r[1], rep.Disclosures[i].Seq)
		}
	}

	// The chart tables show the broker's figures for the same period.
	today := time.Now().UTC().Format("2006-01-02")
	from, _ := time.Parse("2006-01-02", today)
	code, body = e.page("t-nav", "GET", "/officer/trends?from="+today+"&to="+today, nil)
	if code != 200 {
		t.Fatalf("trends: %d\n%s", code, body)
	}
	for _, g := range trendGroups {
		var st struct {
			Groups []statGroup `json:"groups"`
		}
		q := url.Values{"group_by": {g}, "from": {from.Format(time.RFC3339)}, "to": {from.AddDate(0, 0, 1).Format(time.RFC3339)}}
		e.call(nav, officer, "GET", "/v1/audit/stats?"+q.Encode(), nil, &st)
		if len(st.Groups) == 0 {
			t.Fatalf("no %s figures", g)
		}
		for _, gr := range st.Groups {
			label := gr.Key
			if label == "" { // a row header is never empty
				label = text("en", "off.group.none."+g)
			}
			row := fmt.Sprintf("<tr data-key=\"%s\"><th scope=\"row\">%s</th><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>",
				gr.Key, label, gr.Checks, gr.Disclosures, gr.Denials, gr.Emergencies, gr.Anomalies)
			if !strings.Contains(body, row) {
				t.Fatalf("trends by %s lack %s\n%s", g, row, body)
			}
		}
	}
	if strings.Contains(body, `<th scope="row"></th>`) || !strings.Contains(body, `<tr data-key=""><th scope="row">No legal basis</th>`) {
		t.Fatalf("the trends have an empty row header, or no row for entries without a legal basis:\n%s", body)
	}
	code, csvBody := e.page("t-nav", "GET", "/officer/trends.csv?group_by=agency&from="+today+"&to="+today, nil)
	if code != 200 || !strings.HasPrefix(csvBody, "agency,checks,disclosures,denials,emergencies,anomalies\n") {
		t.Fatalf("csv: %d %s", code, csvBody)
	}

	// The other agency's officer sees none of t-nav's entries anywhere.
	code, body = e.page("t-nav2", "GET", "/officer/reviews", nil)
	if code != 200 || strings.Contains(body, justification) || strings.Contains(body, "cw-1") || verdictForm.MatchString(body) {
		t.Fatalf("t-nav2 sees t-nav's review: %d\n%s", code, body)
	}
	code, body = e.page("t-nav2", "POST", "/officer/search", url.Values{})
	if code != 200 {
		t.Fatalf("search: %d\n%s", code, body)
	}
	for _, r := range searchRow.FindAllStringSubmatch(body, -1) {
		if r[2] != "t-nav2" {
			t.Fatalf("t-nav2's search shows entry %s of %s", r[1], r[2])
		}
	}
	code, body = e.page("t-nav2", "POST", "/officer/report", url.Values{"subject": {person}})
	if code != 200 || strings.Contains(body, "t-office<") || strings.Contains(body, justification) {
		t.Fatalf("t-nav2's report shows t-nav's disclosures:\n%s", body)
	}
	code, body = e.page("t-nav2", "GET", "/officer/trends?from="+today+"&to="+today, nil)
	if code != 200 || strings.Contains(body, `<tr data-key="t-nav">`) {
		t.Fatalf("t-nav2's trends show t-nav:\n%s", body)
	}
	// Its search by the person does not reach t-nav's checks either.
	code, body = e.page("t-nav2", "POST", "/officer/search", url.Values{"subject": {person}})
	if code != 200 || strings.Contains(body, person) || strings.Contains(body, `data-agency="t-nav"`) {
		t.Fatalf("t-nav2's search by subject:\n%s", body)
	}

	// Integrity: verified, then a rewritten checkpoint turns the banner red.
	code, body = e.page("t-nav", "GET", "/officer/integrity", nil)
	if code != 200 || !strings.Contains(body, `id="integrity-ok"`) || strings.Contains(body, `id="integrity-banner"`) {
		t.Fatalf("integrity before: %d\n%s", code, body)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var count int64
	var note string
	if err := conn.QueryRow(ctx, `SELECT count, note FROM audit_checkpoints ORDER BY count DESC LIMIT 1`).Scan(&count, &note); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(note, "\n", 4)
	lines[2] = base64.StdEncoding.EncodeToString(make([]byte, 32))
	forged := strings.Join(lines, "\n")
	if _, err := conn.Exec(ctx, `ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE audit_checkpoints SET note = $1, hash = $2 WHERE count = $3`, forged, strings.Repeat("0", 64), count); err != nil {
		t.Fatal(err)
	}
	code, body = e.page("t-nav", "GET", "/officer/integrity", nil)
	if code != 200 || !strings.Contains(body, `id="integrity-banner"`) || !strings.Contains(body, "signature of the newest checkpoint fails") {
		t.Fatalf("integrity after the rewrite: %d\n%s", code, body)
	}
	code, body = e.page("t-nav", "GET", "/officer/reviews", nil)
	if !strings.Contains(body, `id="integrity-banner"`) {
		t.Fatalf("the reviews page has no red banner:\n%s", body)
	}
}
