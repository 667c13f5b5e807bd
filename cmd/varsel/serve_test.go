package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"varsel/broker/client"
	"varsel/schema/schematest"
)

func readyStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyzFollowsDatabase stops and restarts a PostgreSQL cluster of its
// own (not the shared test server) under a running broker.
func TestReadyzFollowsDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	url, pg, wipe, err := schematest.OwnCluster(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wipe)

	_, base := startMain(t, url, func(c *Config) { c.Migrate = true })
	if code, body := readyStatus(t, base); code != 200 {
		t.Fatalf("ready with database up: %d %s", code, body)
	}
	if out, err := exec.Command(pg, "stop", dir).CombinedOutput(); err != nil {
		t.Fatalf("stop cluster: %v %s", err, out)
	}
	code, body := readyStatus(t, base)
	if code != 503 || !strings.Contains(body, `"database":"unavailable"`) {
		t.Fatalf("with database stopped: %d %s", code, body)
	}
	// Liveness does not follow the database: the process is fine, and
	// restarting it would not bring Postgres back.
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz with database stopped: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	if out, err := exec.Command(pg, "start", dir).CombinedOutput(); err != nil {
		t.Fatalf("restart cluster: %v %s", err, out)
	}
	// Postgres comes back in its own time, outside this process: poll
	// readiness with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body = readyStatus(t, base)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready again after restart: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReplayAcrossProcesses uses one token on an in-process broker and then
// on a second broker process on the same database.
func TestReplayAcrossProcesses(t *testing.T) {
	id := uniq("nav")
	signer := demoAgency(t, id, "nav-state", "nav-one")
	_, base := startMain(t, testURL, nil)
	proc := startProcess(t, testURL)

	emp := client.Employee{Sub: "cw-1", Role: "caseworker", Office: "nav-one"}
	c1 := &client.Client{BaseURL: base, Signer: signer, Employee: emp}
	c2 := &client.Client{BaseURL: proc.url, Signer: signer, Employee: emp}
	ctx := context.Background()

	tok, _ := signer.Token(emp, "GET", "/v1/whoami", nil)
	r, err := c1.DoToken(ctx, "GET", "/v1/whoami", nil, tok)
	if err != nil || r.Status != 200 {
		t.Fatalf("first use: %v %+v", err, r)
	}
	var p struct{ Agency, Office string }
	_ = json.Unmarshal(r.Body, &p)
	if p.Agency != id || p.Office != "nav-one" {
		t.Fatalf("whoami %s", r.Body)
	}
	for name, c := range map[string]*client.Client{"same process": c1, "second process": c2} {
		r, err := c.DoToken(ctx, "GET", "/v1/whoami", nil, tok)
		if err != nil {
			t.Fatal(err)
		}
		if pr := r.Problem(); r.Status != 401 || pr == nil || pr.Code != "replayed" {
			t.Fatalf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// A token first used on the second process is refused by the first.
	tok2, _ := signer.Token(emp, "GET", "/v1/whoami", nil)
	if r, _ := c2.DoToken(ctx, "GET", "/v1/whoami", nil, tok2); r.Status != 200 {
		t.Fatalf("fresh token on second process: %d %s", r.Status, r.Body)
	}
	if r, _ := c1.DoToken(ctx, "GET", "/v1/whoami", nil, tok2); r.Problem() == nil || r.Problem().Code != "replayed" {
		t.Fatalf("replay onto first process: %d %s", r.Status, r.Body)
	}
	// The refusal is logged as one warn line with agency, kid and code,
	// never the token.
	logs := proc.logs.waitForRecord(t, map[string]string{"level": "WARN", "msg": "request refused",
		"code": "replayed", "agency": id, "kid": id + "-1"})
	if strings.Contains(logs, tok) || strings.Contains(logs, strings.Split(tok, ".")[2]) {
		t.Fatal("a token was logged")
	}
}

func TestCallCommand(t *testing.T) {
	id := uniq("pd")
	dir := t.TempDir()
	key := filepath.Join(dir, "k.jwk")
	mustCLI(t, "keygen", "--alg", "EdDSA", "--kid", "c1", "--out", key, "--jwks-out", filepath.Join(dir, "k.jwks"))
	mustCLI(t, "agency", "add", "--id", id, "--kind", "police", "--name", "PD", "--jwks", filepath.Join(dir, "k.jwks"))
	_, base := startMain(t, testURL, nil)

	out, err := cli(t, "call", "GET", "/v1/whoami", "--url", base, "--key", key, "--agency", id, "--sub", "ola", "--role", "police-liaison")
	if err != nil || !strings.Contains(out, `"agency":"`+id+`"`) || !strings.Contains(out, `"sub":"ola"`) {
		t.Fatalf("call whoami: %v %s", err, out)
	}
	out, err = cli(t, "call", "GET", "/v1/whoami", "--url", base, "--key", key, "--agency", id, "--sub", "ola", "--role", "caseworker")
	if err == nil || !strings.Contains(out, "bad_claims") {
		t.Fatalf("caseworker without office: %v %s", err, out)
	}
}
