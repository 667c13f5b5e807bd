package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"varsel/broker/portal/oidctest"
)

// stepTimeout bounds every browser step (a page load, a wait on the DOM).
const stepTimeout = 20 * time.Second

// browser is one headless Chromium; each member of staff gets a browser
// context of their own in it (separate cookies).
type browser struct {
	t        *testing.T
	e        *env
	ctx      context.Context
	axe      string
	audited  map[string]bool
	shotsDir string
}

func startBrowser(t *testing.T, e *env, exe, axe string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		bcancel()
		acancel()
	})
	// The first run starts the browser, which lives as long as the context
	// of that run: no timeout here.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	dir := t.TempDir()
	if os.Getenv("VARSEL_SCREENSHOTS") != "" {
		dir = filepath.Join(oidctest.RepoRoot(), "docs", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &browser{t: t, e: e, ctx: bctx, axe: axe, audited: map[string]bool{}, shotsDir: dir}
}

// staff is one person's browser context.
type staff struct {
	t    *testing.T // the test or subtest now using it
	b    *browser
	name string
	ctx  context.Context
}

func (b *browser) newStaff(t *testing.T, name string) *staff {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	s := &staff{t: t, b: b, name: name, ctx: ctx}
	// The first run opens the tab, which lives as long as its context.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	return s
}

// in makes the person's steps report to t (a subtest).
func (s *staff) in(t *testing.T) *staff {
	s.t = t
	return s
}

// run runs actions within stepTimeout, failing the test on error.
func (s *staff) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	get(s, what, chromedp.Steps(steps...))
}

// get runs one action within stepTimeout and returns its value, failing
// the test on error.
func get[T any](s *staff, what string, a chromedp.Action[T]) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		lctx, lcancel := context.WithTimeout(s.ctx, 2*time.Second)
		defer lcancel()
		url, _ := chromedp.Run(lctx, chromedp.Location())
		s.t.Fatalf("%s: %s: %v (at %s)", s.name, what, err, url)
	}
	return v
}

// eval evaluates a script on the page.
func eval[T any](s *staff, js string) T {
	s.t.Helper()
	return get(s, "evaluate "+js, chromedp.Evaluate[T](js))
}

func (s *staff) text(sel string) string {
	s.t.Helper()
	return strings.TrimSpace(get(s, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

func (s *staff) location() string { return get(s, "location", chromedp.Location()) }

// status is the HTTP status of the page now shown.
func (s *staff) status() int {
	return eval[int](s, `performance.getEntriesByType("navigation")[0].responseStatus`)
}

// page checks the page now shown with axe-core (once per distinct page)
// and, for the main pages, takes a screenshot.
func (s *staff) page(name string, shot bool) {
	s.t.Helper()
	b := s.b
	if shot {
		png := get(s, "screenshot "+name, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(b.shotsDir, "portal-"+name+".png"), png, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	if b.audited[name] {
		return
	}
	b.audited[name] = true
	get(s, "load axe-core", chromedp.Evaluate[*runtime.RemoteObject](b.axe))
	out := get(s, "axe on "+name, chromedp.Evaluate[string](`axe.run(document).then(r => JSON.stringify({
			version: axe.version, passes: r.passes.length, incomplete: r.incomplete.length,
			violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))}))`,
		chromedp.EvalAwaitPromise))
	var res struct {
		Version            string
		Passes, Incomplete int
		Violations         []struct {
			ID, Impact, Help string
			Nodes            []string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		s.t.Fatalf("axe on %s: %v: %s", name, err, out)
	}
	if res.Passes == 0 {
		s.t.Errorf("axe on %s: no rule passed: did axe-core run? %s", name, out)
	}
	s.t.Logf("axe-core %s on %s: %d rules passed, %d violations, %d to review by hand",
		res.Version, name, res.Passes, len(res.Violations), res.Incomplete)
	for _, v := range res.Violations {
		msg := fmt.Sprintf("axe on %s (%s): %s [%s] %s at %s", name, s.location(), v.Impact, v.ID, v.Help, strings.Join(v.Nodes, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			s.t.Error(msg)
		} else {
			s.t.Log(msg)
		}
	}
}

// signIn signs in with the provider's login form (clicks allowed) and
// waits for the portal's page.
func (s *staff) signIn(username string) {
	s.t.Helper()
	s.run("sign in as "+username,
		chromedp.Navigate(s.b.e.portalURL+"/auth/login"),
		chromedp.WaitVisible(chromedp.ID("#username")),
		chromedp.SendKeys(chromedp.ID("#username"), username),
		chromedp.SendKeys(chromedp.ID("#password"), oidctest.DemoPassword),
		chromedp.Submit(chromedp.ID("#password")),
		chromedp.WaitVisible(chromedp.CSS("main#main")),
	)
	if u := s.location(); !strings.HasPrefix(u, s.b.e.portalURL) {
		s.t.Fatalf("%s: after sign-in at %s, not the portal", username, u)
	}
}

// tabTo presses Tab until the element matching sel has the focus, as a
// keyboard user would; it fails when Tab never reaches it.
func (s *staff) tabTo(sel string) {
	s.t.Helper()
	js := fmt.Sprintf(`!!document.activeElement && document.activeElement.matches(%q)`, sel)
	for range 80 {
		if eval[bool](s, js) {
			return
		}
		s.run("press Tab", chromedp.KeyEvent(kb.Tab))
	}
	s.t.Fatalf("%s: Tab never reaches %s on %s", s.name, sel, s.location())
}

// keys types text (or a kb key) into whatever has the focus.
func (s *staff) keys(what string) { s.t.Helper(); s.run("type", chromedp.KeyEvent(what)) }

func (s *staff) waitVisible(sel string) {
	s.t.Helper()
	s.run("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
}
