package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"varsel/broker"
	"varsel/broker/client"
	"varsel/broker/keys"
	"varsel/broker/service"
)

func warningBody(subject string, offices ...string) map[string]any {
	b := flagBody(subject)
	b["audience"] = map[string]any{"kinds": []string{}}
	b["targets"] = map[string]any{"offices": offices}
	return b
}

type inboxPage struct {
	Warnings []service.InboxWarning `json:"warnings"`
	Next     string                 `json:"next"`
}

func (w *world) inbox(c *client.Client, query string) (inboxPage, *client.Response) {
	return call[inboxPage](w.t, c, "GET", "/v1/warnings/inbox"+query, nil)
}

func (w *world) warn(body map[string]any) (service.WarningResult, *client.Response) {
	return call[service.WarningResult](w.t, w.liaison(), "POST", "/v1/warnings", body)
}

func TestWarningsReachTheirOffices(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	grorud := w.caseworker()
	arstad := w.as(w.navMun, "sec-arstad", "security-coordinator", "nav-arstad")
	bergen := w.as(w.navOther, "cw-bergen", "caseworker", "nav-bergen")

	res, resp := w.warn(warningBody(personA, "nav-grorud", "nav-arstad"))
	if resp.Status != 201 || res.ID == "" || res.FlagID == "" || len(res.Deliveries) != 2 {
		t.Fatalf("warn: %d %s", resp.Status, resp.Body)
	}
	for name, c := range map[string]*client.Client{"grorud": grorud, "arstad": arstad} {
		p, resp := w.inbox(c, "")
		if resp.Status != 200 || len(p.Warnings) != 1 || p.Warnings[0].ID != res.ID || p.Warnings[0].Flag.Level != "high" ||
			len(p.Warnings[0].Flag.Precautions) != 2 || p.Warnings[0].Flag.Issuer != "oslo-pd" {
			t.Fatalf("%s inbox: %d %s", name, resp.Status, resp.Body)
		}
		// Reading again after the cursor gives nothing new.
		if p2, _ := w.inbox(c, "?after="+p.Next); len(p2.Warnings) != 0 || p2.Next != p.Next {
			t.Fatalf("%s after cursor: %+v", name, p2)
		}
	}
	if p, resp := w.inbox(bergen, ""); resp.Status != 200 || len(p.Warnings) != 0 {
		t.Fatalf("another office's inbox has the warning: %s", resp.Body)
	}
	// A caseworker of another office may not read the target's inbox.
	if _, resp := w.inbox(bergen, "?office=nav-grorud"); resp.Status != 403 || resp.Problem().Code != "forbidden" {
		t.Fatalf("foreign inbox: %d %s", resp.Status, resp.Body)
	}
	// Reception staff may not read an inbox at all.
	if _, resp := w.inbox(w.as(w.navState, "rec", "reception", "nav-grorud"), ""); resp.Status != 403 {
		t.Fatalf("reception inbox: %d", resp.Status)
	}
	// The target offices' caseworkers see the flag in checks too.
	if r, _ := w.check(grorud, map[string]any{"subject": personA, "purpose": "meeting"}); r.Result != "precautions" {
		t.Fatalf("check at target office: %+v", r)
	}

	// Acknowledgement: once per office; the police liaison sees it.
	var ack service.AckResult
	if _, err := grorud.JSON(ctx, "POST", "/v1/warnings/"+res.ID+"/ack", nil, &ack); err != nil || !ack.Acked || ack.AckedAt == nil {
		t.Fatalf("ack: %v %+v", err, ack)
	}
	var again service.AckResult
	if _, err := w.as(w.navMun, "ola", "caseworker", "nav-grorud").JSON(ctx, "POST", "/v1/warnings/"+res.ID+"/ack", map[string]any{}, &again); err != nil || !again.AckedAt.Equal(*ack.AckedAt) {
		t.Fatalf("second ack changed the time: %v %+v", err, again)
	}
	if r, _ := bergen.JSON(ctx, "POST", "/v1/warnings/"+res.ID+"/ack", nil, nil); r.Status != 404 {
		t.Fatalf("ack by a non-target office: %d", r.Status)
	}
	var status service.WarningResult
	sr, err := w.liaison().JSON(ctx, "GET", "/v1/warnings/"+res.ID, nil, &status)
	if err != nil {
		t.Fatal(err)
	}
	// The police learn which office acknowledged and when, not which of
	// its employees: the NAV office's own log names them.
	if bytes.Contains(sr.Body, []byte("kari")) || bytes.Contains(sr.Body, []byte("acked_by")) {
		t.Fatalf("the status names the employee who acknowledged: %s", sr.Body)
	}
	got := map[string]broker.Delivery{}
	for _, d := range status.Deliveries {
		got[d.Office] = d
	}
	if g := got["nav-grorud"]; g.ReadAt == nil || g.AckedAt == nil || !g.AckedAt.Equal(*ack.AckedAt) {
		t.Fatalf("grorud status %+v", g)
	}
	if a := got["nav-arstad"]; a.ReadAt == nil || a.AckedAt != nil {
		t.Fatalf("arstad status %+v", a)
	}
	// Only the issuing agency sees the status.
	if r, _ := grorud.Do(ctx, "GET", "/v1/warnings/"+res.ID, nil); r.Status != 404 {
		t.Fatalf("status for another agency: %d", r.Status)
	}
	// Reads and acks are audited.
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'warning.ack'`); n != 3 {
		t.Fatalf("%d ack entries, want 3 (two by the target office, one refused)", n)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'warning.inbox' AND decision = 'allow'`); n < 5 {
		t.Fatalf("%d inbox reads audited", n)
	}
}

func TestWarningBadTargets(t *testing.T) {
	w := newWorld(t, nil)
	flags, warnings := w.count(`SELECT count(*) FROM flags`), w.count(`SELECT count(*) FROM warnings`)
	for name, body := range map[string]map[string]any{
		"unknown office": warningBody(personA, "nav-grorud", "nav-atlantis"),
		"no targets":     warningBody(personA),
		"bad office id":  warningBody(personA, "NAV GRORUD"),
	} {
		_, resp := w.warn(body)
		if resp.Status != 422 {
			t.Fatalf("%s: %d %s", name, resp.Status, resp.Body)
		}
		if name == "unknown office" && resp.Problem().Code != "unknown_office" {
			t.Fatalf("unknown office code: %s", resp.Body)
		}
	}
	// Only police liaisons warn.
	var r service.WarningResult
	resp, _ := w.caseworker().JSON(context.Background(), "POST", "/v1/warnings", warningBody(personA, "nav-grorud"), &r)
	if resp.Status != 403 {
		t.Fatalf("caseworker warning: %d", resp.Status)
	}
	if w.count(`SELECT count(*) FROM flags`) != flags || w.count(`SELECT count(*) FROM warnings`) != warnings ||
		w.count(`SELECT count(*) FROM warning_deliveries`) != 0 {
		t.Fatal("a refused warning stored something")
	}
}

// TestLongPollAcrossReplicas: an office long-polls one broker; the warning
// is issued through a second broker process; the notification wakes the
// poll, which answers before it would have re-read on its own.
func TestLongPollAcrossReplicas(t *testing.T) {
	w := newWorld(t, nil)
	proc := startProcess(t, w.db)
	grorud := w.caseworker()
	// The notification reaches this replica only once its notifier listens.
	select {
	case <-w.main.Notifier.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("the notifier does not listen after 10 s")
	}
	type result struct {
		page inboxPage
		at   time.Time
		err  error
	}
	done := make(chan result, 1)
	started := time.Now()
	go func() {
		var p inboxPage
		_, err := grorud.JSON(context.Background(), "GET", "/v1/warnings/inbox?wait=20s", nil, &p)
		done <- result{p, time.Now(), err}
	}()
	// Issue the warning once the poll waits (it subscribes before it reads).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.main.Notifier.WaitSubscribed(ctx, "nav-grorud"); err != nil {
		t.Fatalf("no long-poll waiting for nav-grorud: %v", err)
	}
	remote := &client.Client{BaseURL: proc.url, Signer: w.police, Employee: client.Employee{Sub: "liaison-2", Role: "police-liaison"}}
	var res service.WarningResult
	if _, err := remote.JSON(context.Background(), "POST", "/v1/warnings", warningBody(personB, "nav-grorud"), &res); err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	select {
	case r := <-done:
		if r.err != nil || len(r.page.Warnings) != 1 || r.page.Warnings[0].ID != res.ID {
			t.Fatalf("long-poll: %v %+v", r.err, r.page)
		}
		// Unwoken, the poll would answer at its first re-read, no sooner
		// than PollInterval after it started.
		if !r.at.Before(started.Add(service.PollInterval)) {
			t.Fatalf("long-poll answered %v after it started (%v after the warning): not woken by the notification",
				r.at.Sub(started), r.at.Sub(issued))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll did not answer within 10 s of the warning")
	}
	// An empty long-poll waits and answers with the same cursor.
	start := time.Now()
	p, _ := w.inbox(w.as(w.navOther, "cw", "caseworker", "nav-bergen"), "?wait=1s")
	if len(p.Warnings) != 0 || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("empty long-poll: %+v after %v", p, time.Since(start))
	}
}

func TestWebhookPushes(t *testing.T) {
	// The pusher's own loop looks once at start and then not for an hour:
	// the test pushes with PushDue, as each tick does.
	w := newWorld(t, func(c *Config) {
		c.WebhookAllowHTTP = true
		c.WebhookFirstRetry = time.Minute
		c.WebhookInterval = time.Hour
	})
	ctx := context.Background()
	var mu sync.Mutex
	var bodies []string
	good := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if r.Header.Get("Content-Type") != "application/jose" {
			rw.WriteHeader(400)
			return
		}
		rw.WriteHeader(204)
	}))
	defer good.Close()
	var failures atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if failures.Add(1) <= 2 {
			rw.WriteHeader(500)
			return
		}
		rw.WriteHeader(200)
	}))
	defer flaky.Close()

	sec := w.as(w.navState, "sec-grorud", "security-coordinator", "nav-grorud")
	if r, err := sec.JSON(ctx, "PUT", "/v1/offices/nav-grorud/webhook", map[string]any{"url": good.URL + "/hook"}, nil); err != nil {
		t.Fatalf("set webhook: %v %s", err, r.Body)
	}
	secA := w.as(w.navState, "sec-arstad", "security-coordinator", "nav-arstad")
	if _, err := secA.JSON(ctx, "PUT", "/v1/offices/nav-arstad/webhook", map[string]any{"url": flaky.URL}, nil); err != nil {
		t.Fatal(err)
	}
	// A caseworker may not, nor a coordinator for another office, nor a bad URL.
	if r, _ := w.caseworker().JSON(ctx, "PUT", "/v1/offices/nav-grorud/webhook", map[string]any{"url": good.URL}, nil); r.Status != 403 {
		t.Fatalf("caseworker sets webhook: %d", r.Status)
	}
	if r, _ := sec.JSON(ctx, "PUT", "/v1/offices/nav-arstad/webhook", map[string]any{"url": good.URL}, nil); r.Status != 403 {
		t.Fatalf("coordinator sets another office's webhook: %d", r.Status)
	}
	if r, _ := sec.JSON(ctx, "PUT", "/v1/offices/nav-grorud/webhook", map[string]any{"url": "ftp://x"}, nil); r.Status != 422 {
		t.Fatalf("bad webhook url: %d", r.Status)
	}

	res, resp := w.warn(warningBody(personC, "nav-grorud", "nav-arstad"))
	if resp.Status != 201 {
		t.Fatalf("warn: %d %s", resp.Status, resp.Body)
	}
	pushDue := func(want int) {
		t.Helper()
		if n, err := w.main.Pusher.PushDue(ctx); err != nil || n != want {
			t.Fatalf("PushDue: %d pushes (%v), want %d", n, err, want)
		}
	}
	// A push's retry is due at now + backoff (a minute, then two), in
	// Postgres's time: bring it forward instead of waiting.
	retryNow := func() {
		t.Helper()
		conn, err := pgx.Connect(ctx, w.db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tag, err := conn.Exec(ctx, `UPDATE webhook_pushes SET next_attempt_at = now()
			WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at > now() + interval '50 seconds'`)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("bring the retry forward: %v (%d rows, want the flaky one)", err, tag.RowsAffected())
		}
	}
	pushDue(2) // good delivers; flaky answers 500
	// The inbox works while the flaky webhook fails.
	if p, _ := w.inbox(secA, ""); len(p.Warnings) != 1 {
		t.Fatalf("inbox while webhook fails: %+v", p)
	}
	pushDue(0) // the retry waits its backoff
	retryNow()
	pushDue(1) // 500 again
	pushDue(0)
	retryNow()
	pushDue(1) // 200
	pushDue(0) // nothing left
	var status service.WarningResult
	if _, err := w.liaison().JSON(ctx, "GET", "/v1/warnings/"+res.ID, nil, &status); err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, d := range status.Deliveries {
		if d.Webhook != nil && d.Webhook.DeliveredAt != nil {
			delivered++
		}
	}
	if delivered != 2 {
		t.Fatalf("webhooks not delivered: %+v", status.Deliveries)
	}
	for _, d := range status.Deliveries {
		if d.Office == "nav-arstad" && (d.Webhook.Attempts != 3 || *d.Webhook.LastStatus != 200) {
			t.Fatalf("flaky webhook: %+v", d.Webhook)
		}
		if d.Office == "nav-grorud" && d.Webhook.Attempts != 1 {
			t.Fatalf("good webhook: %+v", d.Webhook)
		}
	}

	// The body verifies with the broker's published key: the note verifier
	// key of GET /v1/audit/key, and the JWKS at /jwks.json.
	keyResp, _ := w.caseworker().Do(ctx, "GET", "/v1/audit/key", nil)
	pub, kid, err := keys.PublicKey(string(keyResp.Body))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	body := bodies[0]
	mu.Unlock()
	jws, err := jose.ParseSigned(body, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("webhook body is not a JWS: %v", err)
	}
	if jws.Signatures[0].Header.KeyID != kid {
		t.Fatalf("kid %q, want %q", jws.Signatures[0].Header.KeyID, kid)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatalf("signature does not verify with the published key: %v", err)
	}
	var pb service.PushBody
	if err := json.Unmarshal(payload, &pb); err != nil || pb.WarningID != res.ID || pb.Office != "nav-grorud" || pb.Level != "high" {
		t.Fatalf("payload %s", payload)
	}
	if strings.Contains(string(payload), personC) {
		t.Fatal("the push carries the national id")
	}
	hr, err := http.Get(w.base + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	_ = json.NewDecoder(hr.Body).Decode(&set)
	hr.Body.Close()
	if len(set.Keys) != 1 || !set.Keys[0].Key.(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("jwks %+v", set)
	}
	// A tampered body (another office, the same signature) does not verify.
	parts := strings.Split(body, ".")
	altered := strings.Replace(string(payload), `"office":"nav-grorud"`, `"office":"nav-arstad"`, 1)
	if altered == string(payload) {
		t.Fatalf("no office to alter in %s", payload)
	}
	tampered, err := jose.ParseSigned(parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(altered))+"."+parts[2], []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("parse the tampered body: %v", err)
	}
	if _, err := tampered.Verify(pub); err == nil {
		t.Fatal("a tampered body verifies")
	}
	// Every attempt was audited before it was sent.
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'warning.push'`); n != 4 {
		t.Fatalf("%d push attempts audited, want 4", n)
	}
}

func TestDisclosureFeed(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	flag, _ := w.issue(w.liaison(), flagBody(personA))
	other, _ := w.issue(w.liaison(), flagBody(personB))
	var seqs []int64
	for _, c := range []*client.Client{w.caseworker(), w.as(w.navMun, "ola", "caseworker", "nav-arstad"), w.caseworker()} {
		r, _ := w.check(c, map[string]any{"subject": personA, "purpose": "meeting"})
		if r.Result != "precautions" {
			t.Fatalf("check %+v", r)
		}
		seqs = append(seqs, r.Audit.Seq)
	}
	// Not disclosures: a clear check by health, the police's own read.
	w.check(w.as(w.health, "lege", "health-worker", ""), map[string]any{"subject": personA, "purpose": "meeting"})
	w.liaison().JSON(ctx, "GET", "/v1/flags/"+flag.ID, nil, nil)
	emergency, _ := w.check(w.as(w.health, "lege", "health-worker", ""), map[string]any{"subject": personB, "purpose": "meeting",
		"emergency": map[string]any{"justification": "He phoned the ward threatening the staff"}})

	var feed service.DisclosureFeed
	if _, err := w.as(w.police, "liaison-1", "police-liaison", "").JSON(ctx, "GET", "/v1/flags/disclosures?limit=2", nil, &feed); err != nil {
		t.Fatal(err)
	}
	all := feed.Disclosures
	for feed.Next != "" && len(feed.Disclosures) > 0 {
		next := feed.Next
		feed = service.DisclosureFeed{}
		if _, err := w.liaison().JSON(ctx, "GET", "/v1/flags/disclosures?limit=2&after="+next, nil, &feed); err != nil {
			t.Fatal(err)
		}
		all = append(all, feed.Disclosures...)
	}
	count := map[int64]int{}
	for _, d := range all {
		count[d.Seq]++
		if d.Agency == "oslo-pd" {
			t.Fatalf("the issuer's own use listed: %+v", d)
		}
	}
	for _, s := range seqs {
		if count[s] != 1 {
			t.Fatalf("check at seq %d listed %d times", s, count[s])
		}
	}
	if count[emergency.Audit.Seq] != 1 || len(all) != 4 {
		t.Fatalf("feed %+v", all)
	}
	for _, d := range all {
		switch d.Seq {
		case emergency.Audit.Seq:
			if !d.Emergency || d.LegalBasis != "politiregl-27-1" || !d.ByException || d.FlagID != other.ID || d.Agency != "ous" {
				t.Fatalf("emergency item %+v", d)
			}
		default:
			if d.Emergency || d.LegalBasis != "politiregl-27-2" || d.FlagID != flag.ID || d.Office == "" {
				t.Fatalf("item %+v", d)
			}
		}
	}
	// NAV's feed does not show the police's flags.
	var navFeed service.DisclosureFeed
	if _, err := w.as(w.navState, "sec", "security-coordinator", "nav-grorud").JSON(ctx, "GET", "/v1/flags/disclosures", nil, &navFeed); err != nil || len(navFeed.Disclosures) != 0 {
		t.Fatalf("nav feed: %v %+v", err, navFeed)
	}
}

func TestWarnAndInboxCommands(t *testing.T) {
	w := newWorld(t, nil)
	dir := t.TempDir()
	// The world's keys are in memory; register CLI-usable ones for two agencies.
	keyFile := func(agency string) string {
		priv, pub := filepath.Join(dir, agency+".jwk"), filepath.Join(dir, agency+".jwks")
		if _, err := cliOn(t, w.db, "keygen", "--alg", "ES256", "--kid", agency+"-cli", "--out", priv, "--jwks-out", pub); err != nil {
			t.Fatal(err)
		}
		if _, err := cliOn(t, w.db, "agency", "key", "add", "--id", agency, "--jwks", pub); err != nil {
			t.Fatal(err)
		}
		return priv
	}
	pd, nav := keyFile("oslo-pd"), keyFile("nav-stat")
	body, _ := json.Marshal(warningBody(personD, "nav-grorud"))
	bodyFile := filepath.Join(dir, "warning.json")
	os.WriteFile(bodyFile, body, 0o600)
	out, err := cliOn(t, w.db, "warn", "--url", w.base, "--body", bodyFile, "--key", pd, "--agency", "oslo-pd", "--sub", "liaison-9")
	if err != nil || !strings.Contains(out, `"flag_id"`) {
		t.Fatalf("warn: %v %s", err, out)
	}
	out, err = cliOn(t, w.db, "inbox", "--url", w.base, "--key", nav, "--agency", "nav-stat", "--sub", "sec-1", "--office", "nav-grorud", "--ack")
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, `"precautions"`) {
		t.Fatalf("inbox: %v %q", err, out)
	}
	if n := w.count(`SELECT count(*) FROM warning_deliveries WHERE acked_at IS NOT NULL`); n != 1 {
		t.Fatalf("inbox --ack acknowledged %d", n)
	}
}

func TestWebhookClientRefusesInwardAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
	}))
	defer srv.Close()
	// Production client: loopback is refused at dial time.
	if _, err := service.WebhookClient(false).Post(srv.URL, "application/jose", strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("loopback webhook: %v", err)
	}
	// Even where private addresses are allowed, redirects are not followed.
	resp, err := service.WebhookClient(true).Post(srv.URL, "application/jose", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect followed: %d", resp.StatusCode)
	}
	// Registering an inward address is refused without the development switch.
	w := newWorld(t, nil)
	sec := w.as(w.navState, "sec", "security-coordinator", "nav-grorud")
	for _, u := range []string{"https://127.0.0.1/hook", "https://10.0.0.5/hook", "https://[::1]/hook", "http://example.org/hook"} {
		if r, _ := sec.JSON(context.Background(), "PUT", "/v1/offices/nav-grorud/webhook", map[string]any{"url": u}, nil); r.Status != 422 {
			t.Errorf("%s: %d", u, r.Status)
		}
	}
}
