package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/client"
)

var (
	problemItem = regexp.MustCompile(`<li data-problem="([^"]+)">`)
	cpCount     = regexp.MustCompile(`<dd id="cp-count">(\d+)</dd>`)
	cpPrevious  = regexp.MustCompile(`<dd id="cp-previous">(\d+)</dd>`)
)

// integrityVerdict reads the integrity page: whether it says verified, the
// banner's problems, and the count and previous count it shows.
type integrityVerdict struct {
	OK              bool
	Banner          bool
	Problems        []string
	Count, Previous string
}

func (e *officerEnv) integrity(agency string) integrityVerdict {
	e.t.Helper()
	code, body := e.page(agency, "GET", "/officer/integrity", nil)
	if code != http.StatusOK {
		e.t.Fatalf("integrity page: %d\n%s", code, body)
	}
	v := integrityVerdict{
		OK:     regexp.MustCompile(`id="integrity-ok"`).MatchString(body),
		Banner: regexp.MustCompile(`id="integrity-banner"`).MatchString(body),
	}
	for _, m := range problemItem.FindAllStringSubmatch(body, -1) {
		v.Problems = append(v.Problems, m[1])
	}
	if m := cpCount.FindStringSubmatch(body); m != nil {
		v.Count = m[1]
	}
	if m := cpPrevious.FindStringSubmatch(body); m != nil {
		v.Previous = m[1]
	}
	if v.OK == v.Banner {
		e.t.Fatalf("the integrity page is both or neither verified and red (%+v)\n%s", v, body)
	}
	return v
}

// wantRed fails unless the verdict is red for exactly the problem key.
func wantRed(t *testing.T, when string, v integrityVerdict, key string) {
	t.Helper()
	if v.OK || !v.Banner || len(v.Problems) != 1 || v.Problems[0] != key {
		t.Fatalf("%s: verdict %+v, want a red banner for %s alone", when, v, key)
	}
}

func wantGreen(t *testing.T, when string, v integrityVerdict) {
	t.Helper()
	if !v.OK || v.Banner || len(v.Problems) != 0 {
		t.Fatalf("%s: verdict %+v, want verified", when, v)
	}
}

// superuser runs statements on the test database as its owner, with the
// append-only trigger of the checkpoints off: what an intruder with the
// database could do.
func (e *officerEnv) superuser(stmt string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range []string{`ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only`, stmt,
		`ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only`} {
		a := args
		if s != stmt {
			a = nil
		}
		if _, err := conn.Exec(ctx, s, a...); err != nil {
			e.t.Fatalf("%s: %v", s, err)
		}
	}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("count %q: %v", s, err)
	}
	return n
}

func (e *officerEnv) checkpoint() {
	e.t.Helper()
	made, err := e.app.Checkpointer.Checkpoint(context.Background())
	if err != nil || !made {
		e.t.Fatalf("checkpoint: made %v, %v", made, err)
	}
}

// TestIntegrityLogShrinks: the portal saw a checkpoint; the newest
// checkpoint row is then deleted in the database, so the broker serves an
// older one, validly signed but shorter: the banner turns red.
func TestIntegrityLogShrinks(t *testing.T) {
	e := newOfficerEnv(t)
	nav := e.agency("t-nav", broker.KindNAVState, "t-office")
	e.startPortal(Agency{ID: "t-nav", Name: "NAV test", Signer: nav})
	cw := client.Employee{Sub: "cw-1", Role: "caseworker", Office: "t-office"}
	check := func(n int) {
		e.call(nav, cw, "POST", "/v1/checks", map[string]any{"subject": broker.SyntheticNumber(n, 40), "purpose": "meeting"}, nil)
	}

	check(1)
	e.checkpoint()
	first := e.integrity("t-nav")
	wantGreen(t, "after the first checkpoint", first)
	check(2)
	e.checkpoint()
	second := e.integrity("t-nav")
	wantGreen(t, "after the second checkpoint", second)
	if n1, n2 := atoi(t, first.Count), atoi(t, second.Count); n2 <= n1 || second.Previous != first.Count {
		t.Fatalf("the second checkpoint (%s, previous %s) does not follow the first (%s)", second.Count, second.Previous, first.Count)
	}

	e.superuser(`DELETE FROM audit_checkpoints WHERE count = $1`, second.Count)
	v := e.integrity("t-nav")
	wantRed(t, "after the newest checkpoint was deleted", v, "off.int.shrunk")
	if v.Count != first.Count || v.Previous != second.Count {
		t.Errorf("the page shows count %s and previous %s, want %s and %s", v.Count, v.Previous, first.Count, second.Count)
	}
	// The banner is on the other pages too, and stays: the shorter log is
	// not taken as the new last seen one.
	if _, body := e.page("t-nav", "GET", "/officer/reviews", nil); !problemItem.MatchString(body) {
		t.Errorf("the reviews page has no red banner:\n%s", body)
	}
	wantRed(t, "seen again", e.integrity("t-nav"), "off.int.shrunk")
}

// TestIntegrityStale: entries no checkpoint covers, older than the signing
// interval allows (the portal's clock set ahead), turn the banner red.
func TestIntegrityStale(t *testing.T) {
	e := newOfficerEnv(t)
	nav := e.agency("t-nav", broker.KindNAVState, "t-office")
	var ahead atomic.Int64 // how far the portal's clock is ahead, in ns
	e.startPortalWith(func(c *Config) {
		c.CheckpointMaxAge = time.Minute
		c.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	}, Agency{ID: "t-nav", Name: "NAV test", Signer: nav})
	cw := client.Employee{Sub: "cw-1", Role: "caseworker", Office: "t-office"}
	check := func(n int) {
		e.call(nav, cw, "POST", "/v1/checks", map[string]any{"subject": broker.SyntheticNumber(n, 40), "purpose": "meeting"}, nil)
	}

	check(1)
	e.checkpoint()
	check(2) // not covered by the checkpoint
	wantGreen(t, "an entry seconds old is unsigned", e.integrity("t-nav"))

	ahead.Store(int64(2 * time.Minute))
	wantRed(t, "the unsigned entry is two minutes old", e.integrity("t-nav"), "off.int.stale")
	if _, body := e.page("t-nav", "GET", "/officer/trends", nil); !regexp.MustCompile(`data-problem="off.int.stale"`).MatchString(body) {
		t.Errorf("the trends page has no stale banner:\n%s", body)
	}

	// A new checkpoint covers it: the entries after it are the portal's
	// own requests, younger than a minute by the portal's clock again.
	ahead.Store(0)
	e.checkpoint()
	wantGreen(t, "after a new checkpoint", e.integrity("t-nav"))
}

// fakeBroker serves the audit endpoints the integrity check reads, with
// checkpoints the test signs: a fork (another hash at the same count) is
// what a running broker refuses to sign, so it cannot be caused there.
type fakeBroker struct {
	mu     sync.Mutex
	key    string // the verifier key served
	note   string // the checkpoint served
	signer note.Signer
}

func (f *fakeBroker) newKey(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "varsel")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.key, f.signer = vkey, s
	f.mu.Unlock()
}

func (f *fakeBroker) serve(t *testing.T, count int64, root string) {
	t.Helper()
	sum := sha256.Sum256([]byte(root))
	f.mu.Lock()
	defer f.mu.Unlock()
	cp, err := audit.SignCheckpoint("varsel/audit", audit.TreeHead{Size: count, Chain: hex.EncodeToString(sum[:]), Root: sum[:]}, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	f.note = cp.Note
}

func (f *fakeBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	key, cp := f.key, f.note
	f.mu.Unlock()
	switch r.URL.Path {
	case "/v1/audit/key":
		fmt.Fprintln(w, key)
	case "/v1/audit/checkpoint":
		fmt.Fprint(w, cp)
	case "/v1/audit/reviews":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"reviews":[]}`)
	case "/v1/audit/search": // nothing unsigned
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"entries":[],"next_after_seq":0}`)
	default:
		http.NotFound(w, r)
	}
}

// TestIntegrityForkAndKey: validly signed checkpoints that do not extend
// the one the portal saw last: the same count with another root (a fork),
// a smaller count, and another key. None replaces the last one seen.
func TestIntegrityForkAndKey(t *testing.T) {
	fb := &fakeBroker{}
	fb.newKey(t)
	fb.serve(t, 10, "a")
	srv := httptest.NewServer(fb)
	t.Cleanup(srv.Close)
	priv, _, err := auth.GenerateKey(auth.AlgES256, "t-nav-1")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := client.NewSigner("t-nav", priv)
	if err != nil {
		t.Fatal(err)
	}
	e := &officerEnv{t: t}
	e.startPortalWith(func(c *Config) { c.BrokerURL = srv.URL }, Agency{ID: "t-nav", Name: "NAV test", Signer: signer})

	v := e.integrity("t-nav")
	wantGreen(t, "the first checkpoint", v)
	if v.Count != "10" {
		t.Fatalf("count %s, want 10", v.Count)
	}
	fb.serve(t, 10, "b")
	wantRed(t, "a fork at the same count", e.integrity("t-nav"), "off.int.rewritten")
	wantRed(t, "the fork seen again", e.integrity("t-nav"), "off.int.rewritten")
	fb.serve(t, 9, "a9")
	wantRed(t, "a shorter log", e.integrity("t-nav"), "off.int.shrunk")
	// The one seen before is still the reference.
	fb.serve(t, 10, "a")
	wantGreen(t, "the first checkpoint again", e.integrity("t-nav"))
	fb.serve(t, 12, "a12")
	if v := e.integrity("t-nav"); !v.OK || v.Count != "12" || v.Previous != "10" {
		t.Fatalf("a longer log: %+v", v)
	}
	fb.newKey(t)
	fb.serve(t, 13, "a13")
	wantRed(t, "another key", e.integrity("t-nav"), "off.int.keychanged")
}
