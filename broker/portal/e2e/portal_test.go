package e2e_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"varsel/broker"
	"varsel/broker/portal/oidctest"
)

// TestPortalInBrowser is the portal's acceptance test: the flows of the
// issue, in one headless Chromium, each person in a browser context of
// their own, against the real broker, Postgres and the dev provider.
func TestPortalInBrowser(t *testing.T) {
	exe, axe := browserPath(t), axeSource(t) // first: without them, fail (or skip with -short) at once
	e := startEnv(t)
	b := startBrowser(t, e, exe, axe)

	flagged := broker.SyntheticNumber(1, 40)   // the person the police warn about
	unflagged := broker.SyntheticNumber(2, 40) // a person nobody flagged
	ids := []string{flagged, unflagged}

	// A user whose groups map to no role gets the 403 page at sign-in.
	t.Run("no role", func(t *testing.T) {
		s := b.newStaff(t, "uten.tilgang")
		s.run("open the portal", chromedp.Navigate(e.portalURL+"/"), chromedp.WaitVisible(chromedp.CSS("main a.button")))
		s.page("welcome", true)
		s.run("go to sign-in", chromedp.Click(chromedp.CSS("main a.button")), chromedp.WaitVisible(chromedp.ID("#username")))
		s.page("provider-login", true)
		s.run("sign in",
			chromedp.SendKeys(chromedp.ID("#username"), "uten.tilgang"),
			chromedp.SendKeys(chromedp.ID("#password"), oidctest.DemoPassword),
			chromedp.Submit(chromedp.ID("#password")),
			chromedp.WaitVisible(chromedp.CSS("main .problem[role=alert]")))
		if st := s.status(); st != http.StatusForbidden {
			t.Errorf("status %d, want 403", st)
		}
		if got := s.text("main .problem"); !strings.Contains(got, "no access") {
			t.Errorf("403 page says %q", got)
		}
		s.page("error-403", true)
		// No session: a page for staff sends back to sign-in.
		s.run("open /check", chromedp.Navigate(e.portalURL+"/check"), chromedp.WaitVisible(chromedp.CSS("main#main, #username")))
		if u := s.location(); strings.HasPrefix(u, e.portalURL+"/check") {
			t.Errorf("a user without a role reached %s", u)
		}
	})

	// The coordinator at nav-grorud has the inbox open before the warning.
	coord := b.newStaff(t, "sikkerhet.grorud")
	coord.signIn("sikkerhet.grorud")
	coord.waitVisible("#inbox-list")
	if u := coord.location(); u != e.portalURL+"/inbox" {
		t.Fatalf("the coordinator landed on %s, want /inbox", u)
	}
	if n := coord.count("#inbox-list li.warning"); n != 0 {
		t.Fatalf("the inbox has %d warnings before any was sent", n)
	}
	coord.page("inbox-empty", false)

	police := b.newStaff(t, "ola.politi")
	t.Run("police liaison warns two offices", func(t *testing.T) {
		police.in(t)
		police.signIn("ola.politi")
		police.waitVisible("form[action='/warnings/new']")
		police.page("warning-form", true)
		var cats, pres []string
		cats = eval[[]string](police, `[...document.querySelectorAll("input[name=categories]")].map(i => i.id)`)
		pres = eval[[]string](police, `[...document.querySelectorAll("input[name=precautions]")].map(i => i.id)`)
		if len(cats) == 0 || len(pres) < 2 {
			t.Fatalf("the warning form offers categories %v, precautions %v", cats, pres)
		}
		police.run("fill in the warning",
			chromedp.SendKeys(chromedp.ID("#subject"), flagged),
			chromedp.Click(chromedp.ID("#"+cats[0])),
			chromedp.Click(chromedp.ID("#"+pres[0])),
			chromedp.Click(chromedp.ID("#"+pres[1])),
			chromedp.SendKeys(chromedp.ID("#targets"), "nav-grorud, nav-arstad"),
			chromedp.SendKeys(chromedp.ID("#contact_unit"), "Oslo politidistrikt, etterretning"),
			chromedp.SendKeys(chromedp.ID("#contact_phone"), "+47 22 66 90 50"),
			chromedp.Click(chromedp.ID("#informed-yes")),
			// The police's bases need the controller's recorded decision.
			chromedp.SetValue(chromedp.ID("#decided_by"), "Stasjonssjef Hansen"),
			chromedp.SetValue(chromedp.ID("#decided_by_role"), "controller"),
			chromedp.SetValue(chromedp.ID("#decided_at"), time.Now().Format("2006-01-02")),
			chromedp.SetValue(chromedp.ID("#decision_ref"), "OPD-2026-1234"),
			chromedp.Submit(chromedp.ID("#subject")),
			chromedp.WaitVisible(chromedp.CSS("main p[role=status], main .problem, main .error")))
		if police.count("main .problem, main .error") > 0 {
			var html string
			html = eval[string](police, `document.querySelector("main").innerText`)
			t.Fatalf("the warning was refused:\n%s", html)
		}
		police.page("done", true)
		if n := e.count(t, `SELECT count(*) FROM warning_deliveries`); n != 2 {
			t.Errorf("%d deliveries, want 2 (nav-grorud and nav-arstad)", n)
		}
		police.run("open the flags", chromedp.Navigate(e.portalURL+"/flags"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if n := police.count("main table tbody tr"); n < 1 {
			t.Errorf("the police liaison's flag list has %d rows", n)
		}
		police.page("flags", true)
		police.run("open the flag form", chromedp.Navigate(e.portalURL+"/flags/new"), chromedp.WaitVisible(chromedp.CSS("form[action='/flags/new']")))
		police.page("flag-form", true)
	})

	t.Run("coordinator sees it live and acknowledges", func(t *testing.T) {
		coord.in(t)
		// No reload: the page's script brings the warning in.
		coord.waitVisible("#inbox-list li.warning.unread")
		if got := coord.text("#unread"); got != "1" {
			t.Errorf("unread badge %q, want 1", got)
		}
		coord.page("inbox", true)
		// By keyboard: Tab to the new warning's button, Enter.
		coord.tabTo("#inbox-list li.warning.unread form button")
		coord.keys(kb.Enter)
		coord.waitVisible("#inbox-list li.warning p.ok")
		if n := coord.count("#inbox-list li.warning.unread"); n != 0 {
			t.Errorf("%d unread after the acknowledgement", n)
		}
		if n := e.count(t, `SELECT count(*) FROM warning_deliveries WHERE office = 'nav-grorud' AND acked_at IS NOT NULL`); n != 1 {
			t.Errorf("%d acknowledged deliveries at nav-grorud, want 1", n)
		}
	})

	// The caseworker's check, by keyboard alone: sign-in, the check, the
	// answer, and signing out.
	t.Run("caseworker checks by keyboard and signs out", func(t *testing.T) {
		s := b.newStaff(t, "kari.grorud")
		s.run("open the portal", chromedp.Navigate(e.portalURL+"/"), chromedp.WaitVisible(chromedp.CSS("main a.button")))
		s.tabTo("main a.button")
		s.keys(kb.Enter)
		s.waitVisible("#username")
		s.tabTo("#username")
		s.keys("kari.grorud")
		s.tabTo("#password")
		s.keys(oidctest.DemoPassword)
		s.keys(kb.Enter)
		s.waitVisible("form[action='/check']")
		s.page("check", true)
		s.tabTo("#subject")
		s.keys(flagged)
		s.tabTo("#purpose")
		s.keys(kb.ArrowDown) // home visit
		s.tabTo("form[action='/check'] button[type=submit]")
		s.keys(kb.Enter)
		s.waitVisible("section.answer")
		if s.count("section.answer.warn") != 1 {
			t.Fatalf("the caseworker at nav-grorud sees %q, not the precautions", s.text("section.answer"))
		}
		if n := s.count("section.answer .precautions li"); n != 2 {
			t.Errorf("%d precautions shown, want 2", n)
		}
		if got := s.text("section.answer"); !strings.Contains(got, "Oslo politidistrikt, etterretning") {
			t.Errorf("no contact in the answer: %q", got)
		}
		s.page("result-precautions", true)
		s.noNumber(ids)

		// Back to the form, then to the emergency exception, by keyboard.
		s.tabTo("main a.button[href='/check']")
		s.keys(kb.Enter)
		s.waitVisible("form[action='/check']")
		s.tabTo("main a[href='/check/emergency']")
		s.keys(kb.Enter)
		s.waitVisible("form[action='/check/emergency']")
		s.page("emergency", true)

		// Sign out by keyboard, at the portal and at the provider.
		s.tabTo("form[action='/auth/logout'] button")
		s.keys(kb.Enter)
		s.waitVisible("button[name=logout]")
		s.page("provider-logout", false)
		s.tabTo("button[name=logout]")
		s.keys(kb.Enter)
		s.waitVisible("main a.button[href='/auth/login']")
		if u := s.location(); u != e.portalURL+"/" {
			t.Errorf("after signing out at %s, want the portal's welcome", u)
		}
		// The portal's session is gone, and so is the provider's: the
		// check sends to sign-in, and the provider asks for the password.
		s.run("open /check", chromedp.Navigate(e.portalURL+"/check"), chromedp.WaitVisible(chromedp.CSS("#username, form[action='/check']")))
		if u := s.location(); strings.HasPrefix(u, e.portalURL) || s.count("#password") != 1 {
			t.Errorf("after signing out, /check led to %s", u)
		}
	})

	t.Run("health worker sees the page of an unflagged person", func(t *testing.T) {
		s := b.newStaff(t, "lege.ous")
		s.signIn("lege.ous")
		s.waitVisible("form[action='/check']")
		answer := func(subject string) string {
			s.run("check",
				chromedp.Navigate(e.portalURL+"/check"),
				chromedp.WaitVisible(chromedp.ID("#subject")),
				chromedp.SendKeys(chromedp.ID("#subject"), subject),
				chromedp.Submit(chromedp.ID("#subject")),
				chromedp.WaitVisible(chromedp.CSS("section.answer")))
			var main string
			main = eval[string](s, `document.querySelector("main").innerHTML`)
			return receipt.ReplaceAllString(main, "$1 RECEIPT$2")
		}
		got, want := answer(flagged), answer(unflagged)
		if got != want {
			t.Errorf("the flagged person's page differs from an unflagged one's:\n%s\n---\n%s", got, want)
		}
		if s.count("section.answer.clear") != 1 {
			t.Errorf("the health worker is not shown the clear answer")
		}
		s.page("result-clear", true)
		s.noNumber(ids)
	})

	t.Run("privacy officer reviews an emergency and reads the dashboard", func(t *testing.T) {
		// The health worker uses the exception; the health trust's
		// officer finds it in the queue and judges it.
		hw := b.newStaff(t, "lege.ous")
		hw.signIn("lege.ous")
		hw.run("emergency check",
			chromedp.Navigate(e.portalURL+"/check/emergency"),
			chromedp.WaitVisible(chromedp.ID("#subject")),
			chromedp.SendKeys(chromedp.ID("#subject"), flagged),
			chromedp.SendKeys(chromedp.ID("#justification"), "The patient threatened the nurse with a knife today"),
			chromedp.Click(chromedp.ID("#confirm")),
			chromedp.Submit(chromedp.ID("#subject")),
			chromedp.WaitVisible(chromedp.CSS("section.answer")))
		if hw.count("section.answer.warn") != 1 {
			t.Fatalf("the exception showed %q", hw.text("section.answer"))
		}
		// A checkpoint covers the log, so the dashboard (and its
		// screenshots) shows a verified log, not the red banner.
		e.checkpoint(t)
		po := b.newStaff(t, "personvern.ous")
		po.signIn("personvern.ous")
		po.run("open the queue", chromedp.Navigate(e.portalURL+"/officer/reviews"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if po.count("form.verdict") < 1 {
			t.Fatalf("no review in the health officer's queue: %q", po.text("main"))
		}
		po.page("officer-reviews", true)
		po.run("judge it",
			chromedp.Click(chromedp.CSS("form.verdict input[value=justified]")),
			chromedp.SendKeys(chromedp.CSS("form.verdict textarea"), "Necessary: staff were at risk."),
			chromedp.Submit(chromedp.CSS("form.verdict textarea")),
			// The judged review leaves the pending list once the verdict
			// is in: wait for that, not for a heading the old page has too.
			chromedp.WaitNotPresent(chromedp.CSS("form.verdict")))
		if n := e.count(t, `SELECT count(*) FROM audit_entries WHERE action = 'review.verdict' AND decision = 'allow' AND actor_agency = 'ous'`); n != 1 {
			t.Errorf("%d verdicts in the log, want 1", n)
		}
		po.run("a person's disclosures",
			chromedp.Navigate(e.portalURL+"/officer/report"),
			chromedp.WaitVisible(chromedp.ID("#subject")))
		po.page("officer-report-form", false)
		po.run("ask for the report",
			chromedp.SendKeys(chromedp.ID("#subject"), flagged),
			chromedp.Submit(chromedp.ID("#subject")),
			chromedp.WaitVisible(chromedp.CSS("main table, main .problem")))
		po.page("officer-report", true)
		po.noNumber(ids)
		e.checkpoint(t)
		for _, path := range []string{"/officer/trends", "/officer/search", "/officer/integrity"} {
			po.run("open "+path, chromedp.Navigate(e.portalURL+path), chromedp.WaitVisible(chromedp.CSS("main h1")))
			if n := po.count("#integrity-banner"); n != 0 {
				t.Errorf("%s shows the red integrity banner after a checkpoint: %q", path, po.text("#integrity-banner"))
			}
			po.page("officer-"+strings.TrimPrefix(path, "/officer/"), true)
		}
		if po.count("#integrity-ok") != 1 {
			t.Errorf("the integrity page does not say the log is verified: %q", po.text("main"))
		}

		// The police's officer sees the health worker's emergency as a
		// disclosure of the police flag, and nothing of the health trust's
		// own: no employee id, no justification.
		pp := b.newStaff(t, "personvern.politi")
		pp.signIn("personvern.politi")
		pp.run("search emergencies",
			chromedp.Navigate(e.portalURL+"/officer/search"),
			chromedp.WaitVisible(chromedp.ID("#emergency_only")),
			chromedp.Click(chromedp.ID("#emergency_only")),
			chromedp.Submit(chromedp.ID("#emergency_only")),
			chromedp.WaitVisible(chromedp.CSS("main table, main .problem, main p.empty")))
		if n := pp.count(`tr[data-agency="ous"]`); n < 1 {
			t.Fatalf("the police officer does not see the health emergency that disclosed the police flag: %q", pp.text("main"))
		}
		if got := pp.text("main"); strings.Contains(got, "lege.ous") || strings.Contains(got, "knife") {
			t.Errorf("the police officer sees the health trust's employee or justification: %q", got)
		}
		pp.page("officer-search-police", false)
	})

	t.Run("a form from another origin is refused", func(t *testing.T) {
		police.in(t)
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if r.URL.Path != "/post" {
				fmt.Fprint(w, `<!doctype html><html lang="en"><title>elsewhere</title><main id="main">elsewhere</main></html>`)
				return
			}
			fmt.Fprintf(w, `<!doctype html><html lang="en"><title>elsewhere</title><body>
<form method="post" action="%s/warnings/new">
<input name="subject" value="%s"><input name="level" value="high"><input name="precautions" value="two-staff">
<input name="targets" value="nav-grorud"><input name="informed" value="yes"><input name="valid_until" value="2099-01-01">
</form><script>document.forms[0].submit()</script></body></html>`, e.portalURL, unflagged)
		}))
		defer evil.Close()
		warnings := e.count(t, `SELECT count(*) FROM warnings`)
		entries := e.count(t, `SELECT count(*) FROM audit_entries WHERE actor_agency = 'oslo-pd'`)
		police.run("visit the other site", chromedp.Navigate(evil.URL+"/post"),
			chromedp.WaitVisible(chromedp.CSS("main .problem[role=alert]")))
		if u := police.location(); u != e.portalURL+"/warnings/new" {
			t.Errorf("the form landed on %s", u)
		}
		if st := police.status(); st != http.StatusForbidden {
			t.Errorf("status %d, want 403", st)
		}
		if got := police.text("main .problem"); !strings.Contains(got, "was refused") {
			t.Errorf("the refusal says %q", got)
		}
		police.page("error-crossorigin", false)
		if n := e.count(t, `SELECT count(*) FROM warnings`); n != warnings {
			t.Errorf("%d warnings after the cross-origin post, was %d", n, warnings)
		}
		if n := e.count(t, `SELECT count(*) FROM audit_entries WHERE actor_agency = 'oslo-pd'`); n != entries {
			t.Errorf("%d audit entries of oslo-pd after the cross-origin post, was %d", n, entries)
		}
		if !strings.Contains(e.portalLog.String(), "cross-origin request refused") {
			t.Error("the portal did not log the refused cross-origin request")
		}
		// Nor does the language switch lead there, however the path is written.
		host := strings.TrimPrefix(evil.URL, "http://")
		police.run("switch language", chromedp.Navigate(e.portalURL+"/lang/nb?back=/%5C"+host+"/"),
			chromedp.WaitVisible(chromedp.CSS("main#main")))
		if u := police.location(); !strings.HasPrefix(u, e.portalURL+"/") {
			t.Errorf("the language switch led to %s", u)
		}
	})

	// Every page of the run was checked with axe-core (above); what the
	// issue lists must be among them.
	for _, p := range []string{"welcome", "provider-login", "check", "result-clear", "result-precautions", "emergency",
		"flag-form", "warning-form", "done", "inbox", "flags", "error-403"} {
		if !b.audited[p] && !t.Failed() {
			t.Errorf("page %s was not checked with axe-core", p)
		}
	}

	t.Run("logs hold no secrets", func(t *testing.T) {
		checkLogs(t, e, ids)
	})
}

// receipt is the check's receipt id, which differs between two checks.
var receipt = regexp.MustCompile(`(<p class="receipt">[^<:]*:)[^<]*(</p>)`)

// count is the number of elements matching sel.
func (s *staff) count(sel string) int {
	s.t.Helper()
	return eval[int](s, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

// noNumber checks that no national id is on the page after the answer,
// nor in its URL or the tab's history entries.
func (s *staff) noNumber(ids []string) {
	s.t.Helper()
	var html, url string
	html = eval[string](s, `document.documentElement.outerHTML`)
	url = s.location()
	for _, id := range ids {
		if strings.Contains(html, id) || strings.Contains(url, id) {
			s.t.Errorf("%s: a national id is on the page or in its URL (%s)", s.name, url)
		}
	}
}
