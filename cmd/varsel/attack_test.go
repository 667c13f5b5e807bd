package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"varsel/broker/app"
	"varsel/broker/auth"
	"varsel/broker/client"
)

// signedAs sends one request whose claims are the usual ones changed by
// mutate: the way an agency's (or an attacker's) own signer could.
func signedAs(t *testing.T, c *client.Client, method, path string, body []byte, mutate func(map[string]any)) *client.Response {
	t.Helper()
	now := time.Now()
	var id [18]byte
	_, _ = rand.Read(id[:])
	claims := map[string]any{
		"iss": c.Signer.Agency, "sub": c.Employee.Sub, "aud": "varsel", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(id[:]), "htm": method, "htu": path, "bsh": auth.BodyHash(body),
		"role": c.Employee.Role,
	}
	if c.Employee.Office != "" {
		claims["office"] = c.Employee.Office
	}
	mutate(claims)
	tok, err := c.Signer.SignClaims(claims)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.DoToken(context.Background(), method, path, body, tok)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestUnstorableTextFailsOnlyItsRequest attacks the audit log's group
// commit with text PostgreSQL cannot store, from every source that reaches
// an entry (body fields, query parameters, path, token claims), while
// other callers check people: every attack is refused on its own, no
// normal request fails, and the log still verifies.
func TestUnstorableTextFailsOnlyItsRequest(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	if _, resp := w.issue(w.liaison(), flagBody(personA)); resp.Status != 201 {
		t.Fatal(resp.Status)
	}
	cw := w.caseworker()
	hw := w.as(w.health, "lege-1", "health-worker", "")
	po := w.as(w.police, "po-1", "privacy-officer", "")
	type attack struct {
		name string
		send func() *client.Response
		want int
	}
	jsonBody := func(s string) []byte { return []byte(s) }
	attacks := []attack{
		{"NUL in purpose", func() *client.Response {
			r, _ := cw.Do(ctx, "POST", "/v1/checks", jsonBody(`{"subject":"`+personA+`","purpose":"meeting\u0000"}`))
			return r
		}, 400},
		{"NUL in subject", func() *client.Response {
			r, _ := cw.Do(ctx, "POST", "/v1/checks", jsonBody(`{"subject":"0141701232\u0000","purpose":"meeting"}`))
			return r
		}, 400},
		{"NUL in justification", func() *client.Response {
			r, _ := hw.Do(ctx, "POST", "/v1/checks", jsonBody(`{"subject":"`+personA+`","purpose":"meeting","emergency":{"justification":"He said he would come back with a knife\u0000"}}`))
			return r
		}, 400},
		{"escape sequence in a flag's contact", func() *client.Response {
			b := flagBody(personB)
			b["contact"] = map[string]any{"unit": "Oslo PD\u001b[2J", "phone": "+47 22 66 90 50"}
			body, _ := json.Marshal(b)
			r, _ := w.liaison().Do(ctx, "POST", "/v1/flags", body)
			return r
		}, 400},
		{"NUL in a query parameter", func() *client.Response {
			r, _ := cw.Do(ctx, "GET", "/v1/warnings/inbox?office=nav-grorud%00", nil)
			return r
		}, 400},
		{"C1 control in a query parameter", func() *client.Response {
			r, _ := po.Do(ctx, "GET", "/v1/audit/reviews?status=%C2%85", nil)
			return r
		}, 400},
		{"NUL in the path", func() *client.Response {
			r, _ := po.Do(ctx, "GET", "/v1/flags/x%00y", nil)
			return r
		}, 400},
		{"NUL in sub", func() *client.Response {
			return signedAs(t, cw, "GET", "/v1/whoami", nil, func(c map[string]any) { c["sub"] = "kari\x00" })
		}, 401},
		{"NUL in jti", func() *client.Response {
			return signedAs(t, cw, "GET", "/v1/whoami", nil, func(c map[string]any) { c["jti"] = "\x00" + c["jti"].(string) })
		}, 401},
		{"NUL in office", func() *client.Response {
			return signedAs(t, cw, "GET", "/v1/whoami", nil, func(c map[string]any) { c["office"] = "nav-grorud\x00" })
		}, 401},
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	normal, failed := 0, []string{}
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least 10 checks each, and on until the attacks are over.
			for i := 0; ; i++ {
				if i >= 10 {
					select {
					case <-stop:
						return
					default:
					}
				}
				var r struct{ Result string }
				resp, err := cw.JSON(ctx, "POST", "/v1/checks", map[string]any{"subject": personA, "purpose": "meeting"}, &r)
				mu.Lock()
				normal++
				if err != nil || resp.Status != 200 || r.Result != "precautions" {
					failed = append(failed, describe(resp, err))
				}
				mu.Unlock()
			}
		}()
	}
	for round := range 3 {
		for _, a := range attacks {
			if r := a.send(); r.Status != a.want {
				t.Errorf("round %d, %s: %d %s, want %d", round, a.name, r.Status, r.Body, a.want)
			}
		}
	}
	close(stop)
	wg.Wait()
	if len(failed) > 0 || normal < 60 {
		t.Fatalf("%d of %d normal checks failed: %v", len(failed), normal, failed)
	}
	// Nothing the attacks sent is in the log, and the chain holds.
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE position(chr(1) IN actor || office || justification || array_to_string(reasons, '')) > 0`); n != 0 {
		t.Fatalf("%d entries hold control characters", n)
	}
	if _, err := w.main.Checkpointer.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	keyResp, err := w.caseworker().Do(ctx, "GET", "/v1/audit/key", nil)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pub")
	if err := os.WriteFile(keyFile, keyResp.Body, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cliOn(t, w.db, "audit", "verify", "--checkpoint-key", keyFile, "--max-unsigned-age", "0"); err != nil || !strings.Contains(out, "ok:") {
		t.Fatalf("verify after the attacks: %v %s", err, out)
	}
}

// TestJustificationMustBeVisible: padding a justification with invisible
// characters does not make it long enough.
func TestJustificationMustBeVisible(t *testing.T) {
	w := newWorld(t, nil)
	hw := w.as(w.health, "lege-2", "health-worker", "")
	for name, j := range map[string]string{
		"zero-width spaces":     "\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b",
		"few letters, joiners":  "kniv\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d\u200d",
		"spaces between":        "k n i v k n i v k n i v",
		"byte-order marks":      "\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeff\ufeffok",
		"bidi overrides padded": "\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202e\u202eok",
	} {
		_, resp := w.check(hw, map[string]any{"subject": personA, "purpose": "meeting", "emergency": map[string]any{"justification": j}})
		if p := resp.Problem(); resp.Status != 422 || p == nil || p.Code != "justification_required" {
			t.Errorf("%s: %d %s", name, resp.Status, resp.Body)
		}
	}
	if _, resp := w.check(hw, map[string]any{"subject": personA, "purpose": "meeting",
		"emergency": map[string]any{"justification": "Threatened staff with a knife today"}}); resp.Status != 200 {
		t.Fatalf("a real justification: %d %s", resp.Status, resp.Body)
	}
}

// TestNobodyJudgesTheirOwnEmergency: the employee who used the exception
// cannot judge its review, even as their agency's privacy officer.
func TestNobodyJudgesTheirOwnEmergency(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.OfficeHours = "" })
	if _, resp := w.issue(w.liaison(), flagBody(personA)); resp.Status != 201 {
		t.Fatal(resp.Status)
	}
	res, resp := w.check(w.as(w.health, "lege-3", "health-worker", ""), map[string]any{"subject": personA, "purpose": "meeting",
		"emergency": map[string]any{"justification": "Threatened to stab the nurse at the next appointment"}})
	if resp.Status != 200 {
		t.Fatal(resp.Status)
	}
	path := "/v1/audit/reviews/" + strconv.FormatInt(res.Audit.Seq, 10)
	verdict := map[string]any{"verdict": "justified", "note": "fine"}
	self := w.as(w.health, "lege-3", "privacy-officer", "")
	_, r := call[map[string]any](t, self, "POST", path, verdict)
	if p := r.Problem(); r.Status != 403 || p == nil || p.Code != "forbidden" {
		t.Fatalf("own review: %d %s", r.Status, r.Body)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'review.verdict' AND decision = 'deny' AND 'own_decision' = ANY(reasons)`); n != 1 {
		t.Fatalf("refusal audited %d times", n)
	}
	other := w.as(w.health, "po-ous", "privacy-officer", "")
	if _, r := call[map[string]any](t, other, "POST", path, verdict); r.Status != 200 {
		t.Fatalf("another officer: %d %s", r.Status, r.Body)
	}
}

// TestWebhookWithdrawnAndRefusedPush: a coordinator can withdraw the
// office's webhook, and a push that could not be sent at all is recorded
// as a failure, not as a disclosure.
func TestWebhookWithdrawnAndRefusedPush(t *testing.T) {
	var a *app.App
	w := newWorld(t, func(c *Config) { c.WebhookAllowHTTP = true; c.WebhookInterval = time.Hour })
	a = w.main
	ctx := context.Background()
	sec := w.as(w.navState, "sec-grorud", "security-coordinator", "nav-grorud")
	// An address nobody listens on: the push is refused at dial time.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/hook"
	ln.Close()
	if r, err := sec.JSON(ctx, "PUT", "/v1/offices/nav-grorud/webhook", map[string]any{"url": closed}, nil); err != nil {
		t.Fatalf("set webhook: %v %s", err, r.Body)
	}
	if _, resp := w.warn(warningBody(personC, "nav-grorud")); resp.Status != 201 {
		t.Fatal(resp.Status)
	}
	if n, err := a.Pusher.PushDue(ctx); err != nil || n != 1 {
		t.Fatalf("push: %d %v", n, err)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'warning.push'`); n != 0 {
		t.Fatalf("a push refused at dial time was recorded as %d disclosures", n)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'warning.push.failed' AND decision = 'deny'`); n != 1 {
		t.Fatalf("failure recorded %d times", n)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'warning.push.attempt'`); n != 1 {
		t.Fatalf("attempt recorded %d times", n)
	}
	// Withdrawn: 200, gone, audited.
	if r, err := sec.JSON(ctx, "PUT", "/v1/offices/nav-grorud/webhook", map[string]any{"url": ""}, nil); err != nil || r.Status != 200 {
		t.Fatalf("withdraw webhook: %v %+v", err, r)
	}
	if n := w.count(`SELECT count(*) FROM office_webhooks WHERE office = 'nav-grorud'`); n != 0 {
		t.Fatal("webhook still registered")
	}
}

func describe(r *client.Response, err error) string {
	if r == nil {
		return fmt.Sprint(err)
	}
	return fmt.Sprintf("%d %s", r.Status, r.Body)
}
