package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"varsel/broker"
	"varsel/broker/client"
)

// TestOfficerDashboardInBrowser: the privacy officer's pages in the
// browser against the real broker. The trends charts (tables and SVG) show
// the numbers of GET /v1/audit/stats; an officer of one NAV agency sees
// nothing of the other's entries on any page; and the integrity banner,
// not red with a valid checkpoint, turns red once a checkpoint row is
// rewritten in the database.
func TestOfficerDashboardInBrowser(t *testing.T) {
	exe, axe := browserPath(t), axeSource(t)
	e := startEnv(t)
	b := startBrowser(t, e, exe, axe)

	person := broker.SyntheticNumber(11, 40) // flagged by the police for nav-stat
	other := broker.SyntheticNumber(12, 40)  // nobody flagged
	ids := []string{person, other}

	// The police flag the person for NAV's state part only.
	var flag struct {
		ID string `json:"id"`
	}
	e.call(t, "oslo-pd", client.Employee{Sub: "liaison-7", Role: broker.RolePoliceLiaison}, "POST", "/v1/flags", map[string]any{
		"subject": person, "level": "high", "categories": []string{"threats"}, "precautions": []string{"two-staff"},
		"valid_until": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"legal_basis": "politiregl-27-2", "audience": map[string]any{"kinds": []string{"nav-state"}},
		"decision": map[string]any{"decided_by": "Seksjonsleder", "decided_by_role": "controller",
			"decided_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "reference": "E2E-2026-7"},
		"subject_informed": map[string]any{"informed": true},
		"contact":          map[string]any{"unit": "Oslo PD", "phone": "+47 22 66 90 50"},
	}, &flag)
	if flag.ID == "" {
		t.Fatal("the flag has no id")
	}
	// Agency X, nav-stat: its caseworker checks both people, and uses the
	// exception for the flagged one.
	xWorker := client.Employee{Sub: "xworker-nav-stat", Role: broker.RoleCaseworker, Office: "nav-grorud"}
	xJustification := "Agency X justification: the person threatened staff at the counter"
	for _, subj := range ids {
		e.call(t, "nav-stat", xWorker, "POST", "/v1/checks", map[string]any{"subject": subj, "purpose": "meeting"}, nil)
	}
	e.call(t, "nav-stat", xWorker, "POST", "/v1/checks", map[string]any{"subject": person, "purpose": "meeting",
		"emergency": map[string]any{"justification": xJustification}}, nil)
	// Agency Y, oslo-kommune (the same offices, the municipal part): its
	// caseworker checks the flagged person too, and sees nothing.
	yWorker := client.Employee{Sub: "yworker-kommune", Role: broker.RoleCaseworker, Office: "nav-grorud"}
	e.call(t, "oslo-kommune", yWorker, "POST", "/v1/checks", map[string]any{"subject": person, "purpose": "meeting"}, nil)

	// X's entries, as X's officer finds them through the API.
	xOfficer := client.Employee{Sub: "e2e-officer", Role: broker.RolePrivacyOfficer}
	var found struct {
		Entries []struct {
			Seq int64 `json:"seq"`
		} `json:"entries"`
	}
	e.call(t, "nav-stat", xOfficer, "POST", "/v1/audit/search", map[string]any{"actor_agency": "nav-stat", "limit": 1000}, &found)
	xSeqs := map[int64]bool{}
	for _, en := range found.Entries {
		xSeqs[en.Seq] = true
	}
	if len(xSeqs) < 3 {
		t.Fatalf("nav-stat has %d entries, want its three checks at least", len(xSeqs))
	}
	e.checkpoint(t)

	po := b.newStaff(t, "personvern.nav") // X's officer
	today := time.Now().UTC().Format("2006-01-02")

	t.Run("trends show the broker's numbers", func(t *testing.T) {
		po.in(t)
		po.signIn("personvern.nav")
		po.run("open the trends", chromedp.Navigate(e.portalURL+"/officer/trends?"+url.Values{"from": {today}, "to": {today}}.Encode()),
			chromedp.WaitVisible(chromedp.ID("#chart-agency-table")))
		po.page("officer-trends-x", false)
		shown := readCharts(t, po)
		from, _ := time.Parse("2006-01-02", today)
		q := func(g string) string {
			return url.Values{"group_by": {g}, "from": {from.Format(time.RFC3339)}, "to": {from.AddDate(0, 0, 1).Format(time.RFC3339)}}.Encode()
		}
		for _, g := range []string{"day", "legal_basis", "agency"} {
			var st struct {
				Groups []struct {
					Key                                                  string
					Checks, Disclosures, Denials, Emergencies, Anomalies int
				} `json:"groups"`
			}
			e.call(t, "nav-stat", xOfficer, "GET", "/v1/audit/stats?"+q(g), nil, &st)
			c := shown[g]
			if len(c.Rows) != len(st.Groups) || len(st.Groups) == 0 {
				t.Fatalf("by %s: the table has %d rows, the broker %d groups", g, len(c.Rows), len(st.Groups))
			}
			if len(c.Bars) != 5*len(st.Groups) {
				t.Fatalf("by %s: the chart has %d bars for %d groups", g, len(c.Bars), len(st.Groups))
			}
			top := 1
			for _, gr := range st.Groups {
				top = max(top, gr.Checks, gr.Disclosures, gr.Denials, gr.Emergencies, gr.Anomalies)
			}
			if len(c.Ticks) == 0 || slices.Max(c.Ticks) != top {
				t.Errorf("by %s: the axis goes to %v, the largest number is %d", g, c.Ticks, top)
			}
			for i, gr := range st.Groups {
				want := []int{gr.Checks, gr.Disclosures, gr.Denials, gr.Emergencies, gr.Anomalies}
				row := c.Rows[i]
				if row.Key != gr.Key || !slices.Equal(row.Values, want) {
					t.Errorf("by %s, row %d: the table shows %q %v, the broker %q %v", g, i, row.Key, row.Values, gr.Key, want)
				}
				for j, v := range want {
					bar := c.Bars[5*i+j]
					k := strings.LastIndex(bar.Title, ": ")
					n, err := strconv.Atoi(bar.Title[k+2:])
					if k < 0 || err != nil || n != v {
						t.Errorf("by %s, %q: the bar's title %q, the broker %d", g, gr.Key, bar.Title, v)
					}
					if h := v * 160 / top; bar.H != h {
						t.Errorf("by %s, %q: the bar is %d high, want %d for %d of %d", g, gr.Key, bar.H, h, v, top)
					}
				}
			}
			if g == "agency" && !slices.ContainsFunc(c.Rows, func(r chartRow) bool { return r.Key == "nav-stat" && r.Values[0] >= 3 }) {
				t.Errorf("the agency chart lacks nav-stat's three checks: %+v", c.Rows)
			}
		}
	})

	// What of X must not show to Y's officer: X's employee, justification,
	// agency and the flag only X could see, and any of X's entries by seq.
	// X's own officer sees them (so the check can fail).
	forbidden := []string{xWorker.Sub, xJustification, "nav-stat", "NAV (statlig del)", flag.ID}
	t.Run("X's officer sees X's entries", func(t *testing.T) {
		po.in(t)
		po.run("search", chromedp.Navigate(e.portalURL+"/officer/search"), chromedp.WaitVisible(chromedp.ID("#actor_agency")),
			chromedp.SendKeys(chromedp.ID("#actor_agency"), "nav-stat"), chromedp.Submit(chromedp.ID("#actor_agency")),
			chromedp.WaitVisible(chromedp.ID("#results-h")))
		html := eval[string](po, `document.querySelector("main").outerHTML`)
		if !strings.Contains(html, xWorker.Sub) || len(onPageSeqs(po)) == 0 {
			t.Fatalf("X's officer does not find X's entries: %q", po.text("main"))
		}
		po.run("reviews", chromedp.Navigate(e.portalURL+"/officer/reviews"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if html := eval[string](po, `document.querySelector("main").outerHTML`); !strings.Contains(html, xJustification) {
			t.Errorf("X's officer does not see X's emergency review: %q", po.text("main"))
		}
	})

	t.Run("Y's officer sees nothing of X on any page", func(t *testing.T) {
		py := b.newStaff(t, "personvern.kommune")
		py.signIn("personvern.kommune")
		visit := func(name string, steps ...chromedp.Action[chromedp.Void]) {
			t.Helper()
			py.run(name, steps...)
			py.page("officer-y-"+name, false)
			// The search form holds what the officer typed (agency X's id,
			// when searching for it); the rest of the page must not.
			html := eval[string](py, `(() => { const m = document.querySelector("main").cloneNode(true);
				m.querySelectorAll("#search-form").forEach(f => f.remove()); return m.outerHTML })()`)
			for _, f := range forbidden {
				if strings.Contains(html, f) {
					t.Errorf("Y's officer's %s page shows %q of agency X", name, f)
				}
			}
			for _, seq := range onPageSeqs(py) {
				if xSeqs[seq] {
					t.Errorf("Y's officer's %s page shows X's entry %d", name, seq)
				}
			}
			py.noNumber(ids)
		}
		visit("reviews", chromedp.Navigate(e.portalURL+"/officer/reviews"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		visit("report", chromedp.Navigate(e.portalURL+"/officer/report"), chromedp.WaitVisible(chromedp.ID("#subject")),
			chromedp.SendKeys(chromedp.ID("#subject"), person), chromedp.Submit(chromedp.ID("#subject")),
			chromedp.WaitVisible(chromedp.ID("#report")))
		visit("trends", chromedp.Navigate(e.portalURL+"/officer/trends?"+url.Values{"from": {today}, "to": {today}}.Encode()),
			chromedp.WaitVisible(chromedp.ID("#chart-agency-table")))
		if keys := eval[[]string](py, `[...document.querySelectorAll("#chart-agency-table tr[data-key]")].map(r => r.dataset.key)`); !slices.Equal(keys, []string{"oslo-kommune"}) {
			t.Errorf("Y's trends by agency show %v, want oslo-kommune alone", keys)
		}
		visit("search", chromedp.Navigate(e.portalURL+"/officer/search"), chromedp.WaitVisible(chromedp.ID("#search-form")),
			chromedp.Submit(chromedp.ID("#actor")), chromedp.WaitVisible(chromedp.ID("#results-h")))
		if n := py.count(`tr[data-agency="oslo-kommune"]`); n < 1 {
			t.Errorf("Y's officer's search finds none of Y's own entries: %q", py.text("main"))
		}
		if n := py.count(`tr[id^=entry-]:not([data-agency="oslo-kommune"])`); n != 0 {
			t.Errorf("Y's officer's search shows %d entries of other agencies", n)
		}
		visit("search-x", chromedp.Navigate(e.portalURL+"/officer/search"), chromedp.WaitVisible(chromedp.ID("#actor_agency")),
			chromedp.SendKeys(chromedp.ID("#actor_agency"), "nav-stat"), chromedp.Submit(chromedp.ID("#actor_agency")),
			chromedp.WaitVisible(chromedp.ID("#results-h")))
		if n := py.count(`tr[id^=entry-]`); n != 0 {
			t.Errorf("Y's officer's search for agency X's entries shows %d", n)
		}
		visit("search-person", chromedp.Navigate(e.portalURL+"/officer/search"), chromedp.WaitVisible(chromedp.ID("#subject")),
			chromedp.SendKeys(chromedp.ID("#subject"), person), chromedp.Submit(chromedp.ID("#subject")),
			chromedp.WaitVisible(chromedp.ID("#results-h")))
		visit("integrity", chromedp.Navigate(e.portalURL+"/officer/integrity"), chromedp.WaitVisible(chromedp.ID("#integrity")))
	})

	t.Run("a rewritten checkpoint turns the banner red", func(t *testing.T) {
		po.in(t)
		n := e.checkpoint(t)
		po.run("open integrity", chromedp.Navigate(e.portalURL+"/officer/integrity"), chromedp.WaitVisible(chromedp.ID("#integrity")))
		if po.count("#integrity-ok") != 1 || po.count("#integrity-banner") != 0 {
			t.Fatalf("with a valid checkpoint the integrity page says %q", po.text("main"))
		}
		if got := po.text("#cp-count"); got != strconv.Itoa(n) {
			t.Errorf("the page shows checkpoint count %s, the newest is %d", got, n)
		}
		po.page("officer-integrity-x", false)

		rewriteCheckpoint(t, e.dbURL, n)
		po.run("reload integrity", chromedp.Navigate(e.portalURL+"/officer/integrity"), chromedp.WaitVisible(chromedp.ID("#integrity-banner")))
		if po.count(`#integrity-banner li[data-problem="off.int.signature"]`) != 1 || po.count("#integrity-ok") != 0 {
			t.Errorf("after the rewrite the banner says %q", po.text("#integrity-banner"))
		}
		po.page("officer-integrity-red", false)
		po.run("open reviews", chromedp.Navigate(e.portalURL+"/officer/reviews"), chromedp.WaitVisible(chromedp.ID("#integrity-banner")))
	})

	t.Run("logs hold no secrets", func(t *testing.T) {
		checkLogs(t, e, ids)
	})
}

type chartRow struct {
	Key    string
	Values []int
}

type shownChart struct {
	Rows []chartRow
	Bars []struct {
		Title string
		H     int
	}
	Ticks []int
}

// readCharts reads the trends page's charts as the browser shows them:
// each table's rows, each SVG's bars (title and height) and axis ticks.
func readCharts(t *testing.T, s *staff) map[string]shownChart {
	t.Helper()
	out := eval[string](s, `JSON.stringify(Object.fromEntries(["day", "legal_basis", "agency"].map(g => [g, {
		Rows: [...document.querySelectorAll("#chart-" + g + "-table tbody tr[data-key]")].map(tr => ({
			Key: tr.dataset.key, Values: [...tr.querySelectorAll("td")].map(td => parseInt(td.textContent, 10))})),
		Bars: [...document.querySelectorAll("#chart-" + g + " svg rect")].map(r => ({
			Title: r.querySelector("title").textContent, H: parseInt(r.getAttribute("height"), 10)})),
		Ticks: [...document.querySelectorAll("#chart-" + g + " svg text.tick")].map(x => parseInt(x.textContent, 10))}])))`)
	var charts map[string]shownChart
	if err := json.Unmarshal([]byte(out), &charts); err != nil {
		t.Fatalf("the charts: %v: %s", err, out)
	}
	return charts
}

// onPageSeqs are the audit seqs of the entries, reviews and disclosures on
// the page.
func onPageSeqs(s *staff) []int64 {
	s.t.Helper()
	var seqs []int64
	for _, v := range eval[[]string](s, `[...document.querySelectorAll(
		"main article.review, main tr[id^=judged-], main tr[id^=entry-], main tr[data-seq]")].map(e => e.dataset.seq || e.id.split("-")[1])`) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.t.Fatalf("an entry's seq %q", v)
		}
		seqs = append(seqs, n)
	}
	return seqs
}

// rewriteCheckpoint replaces the hash in the checkpoint of count, as the
// database's superuser can: the note's signature no longer covers it.
func rewriteCheckpoint(t *testing.T, dbURL string, count int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var note string
	if err := conn.QueryRow(ctx, `SELECT note FROM audit_checkpoints WHERE count = $1`, count).Scan(&note); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(note, "\n", 4)
	lines[2] = base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, q := range []string{
		`ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only`,
		fmt.Sprintf(`UPDATE audit_checkpoints SET note = $1, hash = $2 WHERE count = %d`, count),
		`ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only`,
	} {
		var args []any
		if strings.HasPrefix(q, "UPDATE") {
			args = []any{strings.Join(lines, "\n"), strings.Repeat("0", 64)}
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
