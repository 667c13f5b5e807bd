package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

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
	if cp, err := m.AuditStore.LatestCheckpoint(ctx); err != nil || cp == nil || cp.Count != head.Size {
		t.Fatalf("latest checkpoint %+v (%v) does not cover the head %d", cp, err, head.Size)
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
	// The chain only (the broker's key is not at hand here): exit 2.
	if out, err := cliOn(t, dbURL, "audit", "verify", "--no-signatures"); exitCode(err) != 2 || !strings.Contains(out, "chain ok:") {
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

// exitCode is the code the binary would exit with for err (0 for nil).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	return exitCodeOf(err)
}

// TestAuditVerifyNeedsTheKey: without the key, verify does not print ok.
// It refuses to run, or, with --no-signatures, checks the chain and exits 2.
func TestAuditVerifyNeedsTheKey(t *testing.T) {
	db := freshDB(t)
	registerOn(t, db, "nav-nokey", "nav-state", "nav-x") // entry 1
	_, err := cliOn(t, db, "audit", "verify")
	if err == nil || !strings.Contains(err.Error(), "--checkpoint-key KEYFILE is required") || oneLine(err.Error()) != err.Error() || exitCode(err) != 1 {
		t.Fatalf("no key: %v", err)
	}
	out, err := cliOn(t, db, "audit", "verify", "--no-signatures")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "signatures were not checked") || !strings.Contains(out, "chain ok: 1 entries") {
		t.Fatalf("--no-signatures: %v %q", err, out)
	}
	if _, err := cliOn(t, db, "audit", "verify", "--no-signatures", "--checkpoint-key", "k.pub"); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("both: %v", err)
	}
	// A broken chain is still exit 1 with --no-signatures.
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `ALTER TABLE audit_entries DISABLE TRIGGER USER;
		UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 1;
		ALTER TABLE audit_entries ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	if _, err := cliOn(t, db, "audit", "verify", "--no-signatures"); exitCode(err) != 1 || !strings.Contains(err.Error(), "FAILED at seq 1") {
		t.Fatalf("--no-signatures, broken chain: %v", err)
	}
	// The binary: no key is exit 1; the chain alone is exit 2, one line each.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"audit", "verify"}, 1, "--checkpoint-key KEYFILE is required"},
		{[]string{"audit", "verify", "--no-signatures", "--file", writeTestExport(t, "varsel/audit").path}, 2, "signatures were not checked"},
	} {
		cmd := exec.Command(binaryPath, tc.args...)
		cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+db)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tc.code || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Fatalf("%v: %v, stderr %q", tc.args, err, stderr.String())
		}
	}
}

// testExport is an export file made without a broker: a chain of 12
// entries, checkpoints at 4, 8 and 12 for origin, the file holding 5..12.
type testExport struct {
	path, keyFile string
	lines         []string
}

func writeTestExport(t *testing.T, origin string) testExport {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "varsel")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	var es []*audit.Entry
	for i := range 12 {
		es = append(es, &audit.Entry{TS: audit.FormatTime(time.Date(2026, 3, 1, 9, i, 0, 0, time.UTC)), ActorAgency: "nav-a",
			Actor: "kari", Role: "caseworker", Office: "nav-grorud", Action: "check", Decision: audit.Allow, RequestJTI: fmt.Sprint("j", i)})
	}
	audit.Link(audit.Receipt{}, es)
	var cps []audit.Checkpoint
	for _, n := range []int64{4, 8, 12} {
		th, err := audit.HeadOf(es[:n])
		if err != nil {
			t.Fatal(err)
		}
		cp, err := audit.SignCheckpoint(origin, th, signer)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	var buf strings.Builder
	x, err := audit.NewExportWriter(&buf, audit.ExportHeader{Origin: origin, FirstSeq: 5, LastSeq: 12, Entries: 8,
		Checkpoints: []int64{4, 8, 12}, From: time.Date(2026, 3, 1, 9, 5, 0, 0, time.UTC), To: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es[4:] {
		_ = x.Entry(e)
	}
	for _, cp := range cps {
		_ = x.Checkpoint(cp)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	te := testExport{path: filepath.Join(dir, "export.jsonl"), keyFile: filepath.Join(dir, "key.pub"),
		lines: strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")}
	os.WriteFile(te.path, []byte(buf.String()), 0o600)
	os.WriteFile(te.keyFile, []byte(vkey+"\n"), 0o644)
	return te
}

// offline runs audit verify with no database in the environment.
func offline(args ...string) (string, error) {
	var out strings.Builder
	err := run(context.Background(), append([]string{"audit", "verify"}, args...), &out, &out, func(string) string { return "" })
	return out.String(), err
}

// TestVerifyOriginIsTheBrokers: the origin checked is the broker's
// (--broker-id, default varsel), never the one the file names.
func TestVerifyOriginIsTheBrokers(t *testing.T) {
	x := writeTestExport(t, "staging/audit")
	if _, err := offline("--file", x.path, "--checkpoint-key", x.keyFile); err == nil || !strings.Contains(err.Error(), `export header: origin is "staging/audit", not "varsel/audit"`) {
		t.Fatalf("default origin: %v", err)
	}
	// The header made to say varsel/audit: the checkpoints still do not.
	lines := append([]string(nil), x.lines...)
	lines[0] = strings.Replace(lines[0], `"origin":"staging/audit"`, `"origin":"varsel/audit"`, 1)
	forged := filepath.Join(t.TempDir(), "forged.jsonl")
	os.WriteFile(forged, []byte(strings.Join(lines, "")+"\n"), 0o600)
	if _, err := offline("--file", forged, "--checkpoint-key", x.keyFile); err == nil || !strings.Contains(err.Error(), `FAILED at seq 4: checkpoint at 4: signed for origin "staging/audit", not "varsel/audit"`) {
		t.Fatalf("header says varsel/audit: %v", err)
	}
	for _, flags := range [][]string{{"--broker-id", "staging"}, {"--origin", "staging/audit"}} {
		out, err := offline(append([]string{"--file", x.path, "--checkpoint-key", x.keyFile}, flags...)...)
		if err != nil || !strings.Contains(out, "ok: 8 entries, seqs 5..12") || !strings.Contains(out, "staging/audit") {
			t.Fatalf("%v: %v %s", flags, err, out)
		}
	}
	if _, err := offline("--file", x.path); err == nil || !strings.Contains(err.Error(), "--checkpoint-key KEYFILE is required") {
		t.Fatalf("no key: %v", err)
	}
}

// TestVerifyRefusesForgedExports: an export of a running broker, then
// forged copies of it, each refused by audit verify --file naming what
// failed.
func TestVerifyRefusesForgedExports(t *testing.T) {
	db := freshDB(t)
	signer := registerOn(t, db, "nav-forge", "nav-state", "nav-x")
	_, base := startMain(t, db, func(c *Config) { c.CheckpointInterval = 100 * time.Millisecond })
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	from := time.Now().Add(-time.Minute)
	for i := 0; i < 8; i++ {
		if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, nil); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			time.Sleep(300 * time.Millisecond) // a checkpoint in the middle
		}
	}
	time.Sleep(300 * time.Millisecond)
	dir := t.TempDir()
	key, _ := c.Do(ctx, "GET", "/v1/audit/key", nil)
	keyFile := filepath.Join(dir, "key.pub")
	os.WriteFile(keyFile, key.Body, 0o644)
	exp := filepath.Join(dir, "export.jsonl")
	if _, err := cliOn(t, db, "audit", "export", "--from", from.UTC().Format(time.RFC3339), "--to", time.Now().Add(time.Minute).UTC().Format(time.RFC3339), "--out", exp); err != nil {
		t.Fatal(err)
	}
	if out, err := offline("--file", exp, "--checkpoint-key", keyFile); err != nil || !strings.Contains(out, "ok: 9 entries, seqs 1..9") {
		t.Fatalf("the export: %v %s", err, out)
	}
	data, _ := os.ReadFile(exp)
	lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	if !strings.HasPrefix(lines[0], `{"export":{"format":"varsel-audit-export/2","origin":"varsel/audit","first_seq":1,"last_seq":9,"entries":9,"checkpoints":[`) {
		t.Fatalf("header %s", lines[0])
	}
	const line3 = 2 // entry 2, a whoami of kari
	forge := func(name string, i int, old, new string) string {
		t.Helper()
		ls := append([]string(nil), lines...)
		if !strings.Contains(ls[i], old) {
			t.Fatalf("%s: line %d has no %q: %s", name, i+1, old, ls[i])
		}
		ls[i] = strings.Replace(ls[i], old, new, 1)
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".jsonl")
		os.WriteFile(p, []byte(strings.Join(ls, "")+"\n"), 0o600)
		return p
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"case-changed duplicate", forge("case-changed duplicate", line3, `"actor":"kari"`, `"actor":"kari","Actor":"mallory"`),
			`line 3: unknown member "Actor" in "/entry"`},
		{"duplicate", forge("duplicate", line3, `"actor":"kari"`, `"actor":"mallory","actor":"kari"`),
			`line 3: duplicate object member name "actor"`},
		{"unknown key", forge("unknown key", line3, `"role":`, `"reviewed":true,"role":`),
			`line 3: unknown member "reviewed" in "/entry"`},
		{"header range", forge("header range", 0, `"last_seq":9,"entries":9`, `"last_seq":10,"entries":10`),
			`export header: last_seq is 10 but the last entry is 9`},
		{"header key case", forge("header key case", 0, `"first_seq":`, `"First_seq":`),
			`line 1: unknown member "First_seq" in "/export"`},
		{"entry changed", forge("entry changed", line3, `"actor":"kari"`, `"actor":"kara"`),
			`FAILED at seq 2: entry 2: hash does not match`},
	} {
		_, err := offline("--file", tc.file, "--checkpoint-key", keyFile)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 1 || oneLine(err.Error()) != err.Error() {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// rechainTail changes entry from as a superuser would, and re-chains it and
// every later entry, so that the chain holds on its own.
func rechainTail(t *testing.T, dbURL string, from int64, change func(*audit.Entry)) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var prev audit.Receipt
	if err := conn.QueryRow(ctx, `SELECT seq, hash FROM audit_entries WHERE seq = $1`, from-1).Scan(&prev.Seq, &prev.Hash); err != nil {
		t.Fatal(err)
	}
	rows, _ := conn.Query(ctx, `SELECT seq, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor_agency, actor, role, office, action,
		decision, subject_ref, flag_ids, legal_basis, emergency, justification, policy_version, reasons, request_jti
		FROM audit_entries WHERE seq >= $1 ORDER BY seq`, from)
	tail, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*audit.Entry, error) {
		e := new(audit.Entry)
		err := r.Scan(&e.Seq, &e.TS, &e.ActorAgency, &e.Actor, &e.Role, &e.Office, &e.Action, &e.Decision, &e.SubjectRef,
			&e.FlagIDs, &e.LegalBasis, &e.Emergency, &e.Justification, &e.PolicyVersion, &e.Reasons, &e.RequestJTI)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	change(tail[0])
	audit.Link(prev, tail)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	tx.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER`)
	for _, e := range tail {
		if _, err := tx.Exec(ctx, `UPDATE audit_entries SET actor = $2, prev_hash = $3, hash = $4 WHERE seq = $1`, e.Seq, e.Actor, e.PrevHash, e.Hash); err != nil {
			t.Fatal(err)
		}
	}
	tx.Exec(ctx, `ALTER TABLE audit_entries ENABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER`)
	if _, err := tx.Exec(ctx, `DELETE FROM audit_checkpoints WHERE count >= $1`, from); err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, `ALTER TABLE audit_checkpoints ENABLE TRIGGER USER`)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRewrittenTailIsNotSigned: a superuser rewrites and re-chains the
// tail and deletes the checkpoints over it while the broker runs. The
// broker signs no checkpoint of the forgery, says so in readiness and
// metrics, and audit verify with a saved checkpoint names the rewrite.
func TestRewrittenTailIsNotSigned(t *testing.T) {
	db := freshDB(t)
	signer := registerOn(t, db, "nav-rewrite", "nav-state", "nav-x")
	_, base := startMain(t, db, func(c *Config) { c.CheckpointInterval = 100 * time.Millisecond })
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	dir := t.TempDir()
	key, _ := c.Do(ctx, "GET", "/v1/audit/key", nil)
	cp, _ := c.Do(ctx, "GET", "/v1/audit/checkpoint", nil)
	keyFile, cpFile := filepath.Join(dir, "key.pub"), filepath.Join(dir, "saved.note")
	os.WriteFile(keyFile, key.Body, 0o644)
	os.WriteFile(cpFile, cp.Body, 0o644)
	if !strings.HasPrefix(string(cp.Body), "varsel/audit\n7\n") {
		t.Fatalf("checkpoint %q", cp.Body)
	}

	rechainTail(t, db, 4, func(e *audit.Entry) { e.Actor = "someone-else" })
	for i := 0; i < 3; i++ { // entries 8..10, chained to the rewritten head
		if _, err := c.JSON(ctx, "GET", "/v1/whoami", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // several checkpoint intervals (with backoff: at least two tries)

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints WHERE count >= 4`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d checkpoints signed over the rewritten tail (%v)", n, err)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"audit_chain":"degraded"`) {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "varsel_audit_checkpoint_refusals_total ") || strings.Contains(string(body), "varsel_audit_checkpoint_refusals_total 0\n") {
		t.Fatalf("no refusal counted:\n%s", grepLines(string(body), "refusals"))
	}
	// The saved checkpoint catches the rewrite, as before.
	if _, err := cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--trusted-checkpoint", cpFile); err == nil || !strings.Contains(err.Error(), "FAILED at seq 7: checkpoint at 7 names another head hash") {
		t.Fatalf("verify with the saved checkpoint: %v", err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
