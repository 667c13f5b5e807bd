package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker/app"
	"varsel/broker/client"
	"varsel/schema/schematest"
)

type whoami struct {
	Agency string        `json:"agency"`
	Audit  audit.Receipt `json:"audit"`
}

// freshDB is a migrated database of the test's own on the shared server.
func freshDB(t testing.TB) string {
	t.Helper()
	url, err := schematest.NewDatabase(context.Background(), "cmd_audit", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = schematest.DropDatabase(context.Background(), url) })
	return url
}

// cliOn runs the command line against a given database.
func cliOn(t testing.TB, dbURL string, args ...string) (string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := run(context.Background(), args, &out, &errOut, func(k string) string {
		if k == "VARSEL_DATABASE_URL" {
			return dbURL
		}
		return ""
	})
	return out.String(), err
}

func registerOn(t testing.TB, dbURL, id, kind string, offices ...string) *client.Signer {
	t.Helper()
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.jwk"), filepath.Join(dir, "k.jwks")
	if _, err := cliOn(t, dbURL, "keygen", "--alg", "EdDSA", "--kid", id+"-1", "--out", priv, "--jwks-out", pub); err != nil {
		t.Fatal(err)
	}
	args := []string{"agency", "add", "--id", id, "--kind", kind, "--name", id, "--jwks", pub}
	for _, o := range offices {
		args = append(args, "--office", o)
	}
	if _, err := cliOn(t, dbURL, args...); err != nil {
		t.Fatal(err)
	}
	s, err := client.LoadSigner(id, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkpointNow signs a checkpoint of m's log as it stands, as the
// checkpointer's next tick would, instead of waiting for that tick.
func checkpointNow(t testing.TB, m *app.App) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Checkpointer.Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	head, err := m.AuditStore.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := m.AuditStore.LatestCheckpoint(ctx); err != nil || cp == nil || cp.Count != head.Seq {
		t.Fatalf("latest checkpoint %+v (%v) does not cover the head %d", cp, err, head.Seq)
	}
}

func TestWhoamiIsAuditedAndVerifies(t *testing.T) {
	db := freshDB(t)
	signer := registerOn(t, db, "nav-audit", "nav-state", "nav-x")
	m, base := startMain(t, db, nil)
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	// Entry 1 is the agency's registration; the five calls are 2 to 6.
	for i := 2; i <= 6; i++ {
		var w whoami
		if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, &w); err != nil {
			t.Fatal(err)
		}
		if w.Audit.Seq != int64(i) || len(w.Audit.Hash) != 64 {
			t.Fatalf("whoami %d: receipt %+v", i, w.Audit)
		}
	}
	checkpointNow(t, m)
	key, err := c.Do(ctx, "GET", "/v1/audit/key", nil)
	if err != nil || key.Status != 200 || !strings.HasPrefix(string(key.Body), "varsel+") {
		t.Fatalf("key: %v %d %s", err, key.Status, key.Body)
	}
	cp, err := c.Do(ctx, "GET", "/v1/audit/checkpoint", nil)
	if err != nil || cp.Status != 200 || !strings.HasPrefix(string(cp.Body), "varsel/audit\n6\n") {
		t.Fatalf("checkpoint: %v %d %q", err, cp.Status, cp.Body)
	}
	keyFile := filepath.Join(t.TempDir(), "checkpoint.pub")
	os.WriteFile(keyFile, key.Body, 0o644)
	out, err := cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--origin", "varsel/audit")
	if err != nil || !strings.Contains(out, "ok: 6 entries") || strings.Contains(out, "NOT checked") {
		t.Fatalf("verify: %v %s", err, out)
	}

	// A superuser edits entry 3 with the triggers off: verify names seq 3.
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER;
		UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 3;
		ALTER TABLE audit_entries ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	_, err = cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile)
	if err == nil || !strings.Contains(err.Error(), "FAILED at seq 3") {
		t.Fatalf("verify after tampering: %v", err)
	}
	// The binary exits 1 with one line on stderr.
	cmd := exec.Command(binaryPath, "audit", "verify", "--checkpoint-key", keyFile)
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+db)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 || !strings.Contains(stderr.String(), "seq 3") {
		t.Fatalf("binary: %v, stderr %q", err, stderr.String())
	}
}

func TestAuditSearchScope(t *testing.T) {
	db := freshDB(t)
	navA := registerOn(t, db, "nav-a", "nav-state", "off-a")
	navB := registerOn(t, db, "nav-b", "nav-municipal", "off-b")
	ops := registerOn(t, db, "ops-auditors", "broker")
	_, base := startMain(t, db, nil)
	ctx := context.Background()
	as := func(s *client.Signer, e client.Employee) *client.Client {
		return &client.Client{BaseURL: base, Signer: s, Employee: e}
	}
	cwA := as(navA, client.Employee{Sub: "cw-a", Role: "caseworker", Office: "off-a"})
	cwB := as(navB, client.Employee{Sub: "cw-b", Role: "caseworker", Office: "off-b"})
	for _, c := range []*client.Client{cwA, cwA, cwB} {
		if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		Entries []audit.Entry `json:"entries"`
		Audit   audit.Receipt `json:"audit"`
	}
	search := func(c *client.Client, q map[string]any) (result, *client.Response) {
		var r result
		resp, _ := c.JSON(ctx, "POST", "/v1/audit/search", q, &r)
		return r, resp
	}
	poA := as(navA, client.Employee{Sub: "po-a", Role: "privacy-officer"})
	r, resp := search(poA, map[string]any{})
	if resp.Status != 200 {
		t.Fatalf("privacy officer A: %d %s", resp.Status, resp.Body)
	}
	for _, e := range r.Entries {
		if e.ActorAgency != "nav-a" {
			t.Fatalf("officer of nav-a sees an entry of %s", e.ActorAgency)
		}
	}
	// Entries 1 to 3 are the registrations (by the operator, for the broker).
	if len(r.Entries) != 2 || r.Audit.Seq != 7 {
		t.Fatalf("officer A: %d entries, search audited at %d", len(r.Entries), r.Audit.Seq)
	}
	// The operator's auditors see everything, including the search above.
	r, resp = search(as(ops, client.Employee{Sub: "auditor", Role: "privacy-officer"}), map[string]any{"limit": 10})
	if resp.Status != 200 || len(r.Entries) != 7 || r.Entries[6].Action != "audit.search" || r.Entries[6].Actor != "po-a" {
		t.Fatalf("auditors: %d %s", resp.Status, resp.Body)
	}
	// Filters and paging.
	r, _ = search(as(ops, client.Employee{Sub: "auditor", Role: "privacy-officer"}), map[string]any{"actor_agency": "nav-b"})
	if len(r.Entries) != 1 || r.Entries[0].Actor != "cw-b" {
		t.Fatalf("actor_agency filter: %+v", r.Entries)
	}
	r, _ = search(as(ops, client.Employee{Sub: "auditor", Role: "privacy-officer"}), map[string]any{"after_seq": 2, "limit": 1})
	if len(r.Entries) != 1 || r.Entries[0].Seq != 3 {
		t.Fatalf("paging: %+v", r.Entries)
	}
	// A caseworker may not search; the denial is itself audited.
	_, resp = search(cwA, map[string]any{})
	if p := resp.Problem(); resp.Status != 403 || p == nil || p.Code != "forbidden" {
		t.Fatalf("caseworker search: %d %s", resp.Status, resp.Body)
	}
	r, _ = search(as(ops, client.Employee{Sub: "auditor", Role: "privacy-officer"}), map[string]any{"actor": "cw-a"})
	last := r.Entries[len(r.Entries)-1]
	if last.Action != "audit.search" || last.Decision != "deny" {
		t.Fatalf("denied search not audited: %+v", last)
	}
	// Bad input: 400 for an unknown field, 422 for a bad subject; neither is audited.
	_, resp = search(poA, map[string]any{"nonsense": 1})
	if resp.Status != 400 {
		t.Fatalf("unknown field: %d", resp.Status)
	}
	_, resp = search(poA, map[string]any{"subject": "12345678901"})
	if p := resp.Problem(); resp.Status != 422 || p.Code != "invalid_subject" || strings.Contains(string(resp.Body), "12345678901") {
		t.Fatalf("bad subject: %d %s", resp.Status, resp.Body)
	}
}

// loadRun is a load of whoami requests from n goroutines: the receipts of
// every 200 answer, the count of other answers by status (0: no answer),
// and a signal at each answer, so a test waits for what it needs.
type loadRun struct {
	mu       sync.Mutex
	receipts []audit.Receipt
	failures map[int]int
	changed  chan struct{} // closed and replaced at every answer
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// startLoad sends whoami requests from n goroutines until finish (or the
// test's end).
func startLoad(t *testing.T, base string, signer *client.Signer, n int) *loadRun {
	l := &loadRun{failures: map[int]int{}, changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { l.finish() })
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: fmt.Sprintf("u%d", g), Role: "caseworker", Office: "nav-x"}}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := c.Do(ctx, "GET", "/v1/whoami", nil)
				cancel()
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures[0]++
				case resp.Status == 200:
					var w whoami
					if json.Unmarshal(resp.Body, &w) == nil {
						l.receipts = append(l.receipts, w.Audit)
					}
				default:
					l.failures[resp.Status]++
				}
				close(l.changed)
				l.changed = make(chan struct{})
				l.mu.Unlock()
				if err != nil {
					// Pace retries against a broker that is gone; stop ends the pause.
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}(g)
	}
	go func() { wg.Wait(); close(l.done) }()
	return l
}

// waitUntil returns once cond holds of the answers so far, or fails the
// test after timeout.
func (l *loadRun) waitUntil(t *testing.T, what string, timeout time.Duration, cond func(receipts int, failures map[int]int) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		ok, changed := cond(len(l.receipts), l.failures), l.changed
		n, f := len(l.receipts), fmt.Sprint(l.failures)
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %s within %v: %d receipts, failures %s", what, timeout, n, f)
		}
	}
}

// finish stops the load, waits for every request to end, and returns the
// answers.
func (l *loadRun) finish() ([]audit.Receipt, map[int]int) {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.receipts, l.failures
}

// assertReceiptsInLog checks that every receipt names the entry the log
// has at its seq, and that the chain verifies.
func assertReceiptsInLog(t *testing.T, dbURL string, receipts []audit.Receipt) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	logged := map[int64]string{}
	rows, err := conn.Query(ctx, `SELECT seq, hash FROM audit_entries`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq int64
		var h string
		_ = rows.Scan(&seq, &h)
		logged[seq] = h
	}
	rows.Close()
	for _, r := range receipts {
		if logged[r.Seq] != r.Hash {
			t.Fatalf("a 200 answer claimed entry %d (%s) but the log has %q", r.Seq, r.Hash, logged[r.Seq])
		}
	}
	if out, err := cliOn(t, dbURL, "audit", "verify"); err != nil || !strings.Contains(out, "ok:") {
		t.Fatalf("verify: %v %s", err, out)
	}
}

func TestDatabaseStopMidLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	url, pg, wipe, err := schematest.OwnCluster(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wipe)
	if _, err := cliOn(t, url, "migrate"); err != nil {
		t.Fatal(err)
	}
	signer := registerOn(t, url, "nav-load", "nav-state", "nav-x")
	_, base := startMain(t, url, nil)

	l := startLoad(t, base, signer, 16)
	l.waitUntil(t, "answers before the stop", 30*time.Second, func(n int, _ map[int]int) bool { return n >= 20 })
	if out, err := exec.Command(pg, "stop", dir).CombinedOutput(); err != nil {
		t.Fatalf("stop: %v %s", err, out)
	}
	l.waitUntil(t, "503s after the stop", 30*time.Second, func(_ int, f map[int]int) bool { return f[503] >= 20 })
	receipts, failures := l.finish()
	if len(receipts) == 0 || failures[503] == 0 {
		t.Fatalf("want answers before the stop and 503s after: %d receipts, failures %v", len(receipts), failures)
	}
	for status := range failures {
		if status != 503 && status != 0 {
			t.Fatalf("an answer other than 200 or 503: %v", failures)
		}
	}
	if out, err := exec.Command(pg, "start", dir).CombinedOutput(); err != nil {
		t.Fatalf("restart: %v %s", err, out)
	}
	assertReceiptsInLog(t, url, receipts)
	t.Logf("%d answered 200 before the stop, failures %v", len(receipts), failures)
}

func TestKillBrokerUnderLoad(t *testing.T) {
	db := freshDB(t)
	signer := registerOn(t, db, "nav-kill", "nav-state", "nav-x")
	proc := startProcess(t, db)
	l := startLoad(t, proc.url, signer, 32)
	l.waitUntil(t, "50 answers before the kill", 30*time.Second, func(n int, _ map[int]int) bool { return n >= 50 })
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.cmd.Wait() // the process is gone: requests in flight fail at once
	receipts, _ := l.finish()
	assertReceiptsInLog(t, db, receipts)
	t.Logf("%d answered 200 before kill -9; all in the log", len(receipts))
}

// TestTrustedCheckpointCatchesTruncation: a superuser deletes the last
// entries and every checkpoint that covered them. The database alone then
// looks consistent; a checkpoint an auditor saved earlier does not.
func TestTrustedCheckpointCatchesTruncation(t *testing.T) {
	db := freshDB(t)
	signer := registerOn(t, db, "nav-trunc", "nav-state", "nav-x")
	m, base := startMain(t, db, nil)
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	checkpointNow(t, m)
	dir := t.TempDir()
	key, _ := c.Do(ctx, "GET", "/v1/audit/key", nil)
	cp, _ := c.Do(ctx, "GET", "/v1/audit/checkpoint", nil)
	keyFile, cpFile := filepath.Join(dir, "key.pub"), filepath.Join(dir, "saved.note")
	os.WriteFile(keyFile, key.Body, 0o644)
	os.WriteFile(cpFile, cp.Body, 0o644)
	if !strings.HasPrefix(string(cp.Body), "varsel/audit\n7\n") { // the registration and six calls
		t.Fatalf("checkpoint %q", cp.Body)
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;
		DELETE FROM audit_entries WHERE seq > 4; DELETE FROM audit_checkpoints WHERE count > 4;
		ALTER TABLE audit_entries ENABLE TRIGGER USER; ALTER TABLE audit_checkpoints ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	if _, err := cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--trusted-checkpoint", cpFile); err == nil || !strings.Contains(err.Error(), "seq 5") {
		t.Fatalf("truncation with a trusted checkpoint: %v", err)
	}
}
