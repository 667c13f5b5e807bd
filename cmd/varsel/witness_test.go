package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	"varsel/audit/witness"
	"varsel/broker/client"
	"varsel/broker/keys"
)

// brokerKeys makes a broker's key directory before the broker starts, so
// that witnesses can be given its checkpoint key first; it returns the
// directory and the note verifier key (as GET /v1/audit/key serves it).
func brokerKeys(t *testing.T) (dir, vkey string) {
	t.Helper()
	dir = t.TempDir()
	d := &keys.Dir{Path: dir, Name: "varsel"}
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	_, vkey, err := d.CheckpointSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return dir, vkey
}

// testWitness is an in-process witness of the broker's log that a test
// can stop (its port refuses connections) and start again on the same
// address, as a new server reading its state file.
type testWitness struct {
	t        *testing.T
	name     string
	vkey     string
	vkeyFile string
	url      string
	addr     string
	cfg      witness.Config
	srv      *witness.Server
	hs       *http.Server
}

func newTestWitness(t *testing.T, name, logVKey string) *testWitness {
	t.Helper()
	skey, vkey, err := witness.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := witness.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := &testWitness{t: t, name: name, vkey: vkey, vkeyFile: filepath.Join(dir, "witness.vkey"),
		cfg: witness.Config{Signer: signer, StatePath: filepath.Join(dir, "state.json"),
			Logs: []witness.Log{{Origin: "varsel/audit", Verifiers: []note.Verifier{lv}}}}}
	os.WriteFile(w.vkeyFile, []byte(vkey+"\n"), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr, w.url = ln.Addr().String(), "http://"+ln.Addr().String()
	w.serve(ln)
	t.Cleanup(w.stop)
	return w
}

func (w *testWitness) serve(ln net.Listener) {
	w.t.Helper()
	srv, err := witness.New(w.cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.srv = srv
	w.hs = &http.Server{Handler: srv}
	go w.hs.Serve(ln)
}

func (w *testWitness) stop() { w.hs.Close() }

func (w *testWitness) start() {
	w.t.Helper()
	ln, err := net.Listen("tcp", w.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.serve(ln)
}

// flag is the broker's --witness value for w.
func (w *testWitness) flag() string { return w.url + "=" + w.vkeyFile }

// witnessProcess runs `varsel witness` (the built binary) for the broker's
// log, with a key made by `varsel witness keygen`.
func witnessProcess(t *testing.T, name, logVKey string) (url, vkey, vkeyFile string) {
	t.Helper()
	dir := t.TempDir()
	skeyFile, logKeyFile := filepath.Join(dir, "witness.key"), filepath.Join(dir, "log.vkey")
	vkeyFile = filepath.Join(dir, "witness.vkey")
	out, err := cliOn(t, "", "witness", "keygen", "--name", name, "--out", skeyFile, "--vkey-out", vkeyFile)
	if err != nil {
		t.Fatal(err)
	}
	vkey = strings.TrimSpace(out)
	os.WriteFile(logKeyFile, []byte(logVKey+"\n"), 0o644)
	cmd := exec.Command(binaryPath, "witness", "--listen", "127.0.0.1:0", "--key", skeyFile,
		"--log", "varsel/audit="+logKeyFile, "--state", filepath.Join(dir, "state.json"), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg, Addr string
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "varsel witness serving" {
				addr <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return "http://" + a, vkey, vkeyFile
	case <-time.After(20 * time.Second):
		t.Fatal("varsel witness did not start")
	}
	return "", "", ""
}

// metric reads one sample from the broker's /metrics ("name{labels}").
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s in /metrics:\n%s", sample, grepLines(string(b), "witness"))
	return 0
}

func lagEntries(t *testing.T, base, name string) float64 {
	return metric(t, base, `varsel_audit_witness_lag_entries{witness="`+name+`"}`)
}

// servedCheckpoint is GET /v1/audit/checkpoint.
func servedCheckpoint(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/v1/audit/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("checkpoint: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func whoamis(t *testing.T, c *client.Client, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.JSON(context.Background(), "GET", "/v1/whoami", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWitnessesCosignCheckpoints: a broker with two witnesses (one in
// process, one a `varsel witness` process) gets each checkpoint cosigned
// by both, serves them with it, and audit verify --witness-key holds them.
func TestWitnessesCosignCheckpoints(t *testing.T) {
	db := freshDB(t)
	keyDir, logVKey := brokerKeys(t)
	w1 := newTestWitness(t, "witness.test/w1", logVKey)
	url2, vkey2, vkeyFile2 := witnessProcess(t, "witness.test/w2", logVKey)
	signer := registerOn(t, db, "nav-witness", "nav-state", "nav-x")
	m, base := startMain(t, db, func(c *Config) {
		c.Keys = "file:" + keyDir
		c.Witnesses = []string{w1.flag(), url2 + "=" + vkeyFile2}
	})
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	keys := []string{w1.vkey, vkey2}
	for round := 0; round < 2; round++ { // the first from size 0, the second with a consistency proof
		whoamis(t, c, 3)
		checkpointNow(t, m)
		if err := m.Witnesses.Push(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		served := servedCheckpoint(t, base)
		if n, err := witness.VerifyCosignatures(served, keys, 2); n != 2 || err != nil {
			t.Fatalf("round %d: %d cosignatures (%v) on\n%s", round, n, err, served)
		}
		cp, err := m.AuditStore.LatestCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if size, _, _ := w1.srv.Latest("varsel/audit"); size != uint64(cp.Count) {
			t.Fatalf("round %d: witness 1 at %d, checkpoint at %d", round, size, cp.Count)
		}
	}
	for _, name := range []string{"witness.test/w1", "witness.test/w2"} {
		if lag := lagEntries(t, base, name); lag != 0 {
			t.Errorf("%s lags %v entries", name, lag)
		}
		if n := metric(t, base, `varsel_audit_witness_submissions_total{outcome="cosigned",witness="`+name+`"}`); n < 2 {
			t.Errorf("%s: %v cosigned submissions", name, n)
		}
	}

	dir := t.TempDir()
	keyFile, unknownFile := filepath.Join(dir, "log.vkey"), filepath.Join(dir, "w3.vkey")
	os.WriteFile(keyFile, []byte(logVKey+"\n"), 0o644)
	_, vkey3, _ := witness.GenerateKey("witness.test/w3")
	os.WriteFile(unknownFile, []byte(vkey3+"\n"), 0o644)
	out, err := cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--witness-key", w1.vkeyFile, "--witness-key", vkeyFile2)
	if err != nil || !strings.Contains(out, "witnessed: 2 of 2 witnesses cosigned the newest checkpoint") {
		t.Fatalf("verify with witnesses: %v\n%s", err, out)
	}
	_, err = cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--witness-key", w1.vkeyFile, "--witness-key", vkeyFile2,
		"--witness-key", unknownFile, "--witnesses-required", "3")
	if err == nil || exitCode(err) != 1 || oneLine(err.Error()) != err.Error() ||
		!strings.Contains(err.Error(), "2 of 3 required witness cosignatures on the checkpoint (witness.test/w3: no cosignature)") {
		t.Fatalf("verify with a witness that did not cosign: %v", err)
	}
	if _, err := cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--witness-key", unknownFile, "--witnesses-required", "2"); err == nil ||
		!strings.Contains(err.Error(), "--witnesses-required 2 needs at least that many --witness-key files") {
		t.Fatalf("more required than keys: %v", err)
	}
}

// TestWitnessDownDoesNotBlockChecks: with one witness down, checks answer
// as before, the other witness cosigns, the down one's lag grows in the
// metrics, and once it is back it catches up with one consistency proof.
func TestWitnessDownDoesNotBlockChecks(t *testing.T) {
	db := freshDB(t)
	keyDir, logVKey := brokerKeys(t)
	w1 := newTestWitness(t, "witness.test/up", logVKey)
	w2 := newTestWitness(t, "witness.test/down", logVKey)
	signer := registerOn(t, db, "nav-down", "nav-state", "nav-x")
	m, base := startMain(t, db, func(c *Config) {
		c.Keys = "file:" + keyDir
		c.Witnesses = []string{w1.flag(), w2.flag()}
	})
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	check := func() {
		t.Helper()
		start := time.Now()
		var res map[string]any
		resp, err := c.JSON(ctx, "POST", "/v1/checks", map[string]any{"subject": personA, "purpose": "meeting"}, &res)
		if err != nil || resp.Status != 200 || res["result"] != "clear" {
			t.Fatalf("check with a witness down: %v %v", err, resp)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("check took %s", d)
		}
	}
	check()
	checkpointNow(t, m)
	if err := m.Witnesses.Push(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := m.AuditStore.LatestCheckpoint(ctx)

	w2.stop()
	var lags []float64
	for round := 0; round < 2; round++ {
		for i := 0; i < 3; i++ {
			check()
		}
		checkpointNow(t, m)
		err := m.Witnesses.Push(ctx)
		if err == nil || !strings.Contains(err.Error(), "witness witness.test/down") || strings.Contains(err.Error(), "witness.test/up") {
			t.Fatalf("push with one witness down: %v", err)
		}
		if lag := lagEntries(t, base, "witness.test/up"); lag != 0 {
			t.Fatalf("the witness that is up lags %v", lag)
		}
		lags = append(lags, lagEntries(t, base, "witness.test/down"))
	}
	cp, _ := m.AuditStore.LatestCheckpoint(ctx)
	if want := float64(cp.Count - before.Count); lags[1] != want || lags[0] <= 0 || lags[0] >= lags[1] {
		t.Fatalf("lag of the down witness %v, want growing to %v", lags, want)
	}
	if s := metric(t, base, `varsel_audit_witness_lag_seconds{witness="witness.test/down"}`); s <= 0 {
		t.Fatalf("lag seconds %v", s)
	}
	if n := metric(t, base, `varsel_audit_witness_submissions_total{outcome="unreachable",witness="witness.test/down"}`); n < 2 {
		t.Fatalf("%v unreachable submissions counted", n)
	}
	served := servedCheckpoint(t, base)
	if _, err := witness.VerifyCosignatures(served, []string{w1.vkey, w2.vkey}, 2); err == nil ||
		!strings.Contains(err.Error(), "1 of 2 required witness cosignatures on the checkpoint (witness.test/down: no cosignature)") {
		t.Fatalf("served with one witness down: %v", err)
	}

	w2.start()
	if err := m.Witnesses.Push(ctx); err != nil {
		t.Fatalf("push once the witness is back: %v", err)
	}
	if lag := lagEntries(t, base, "witness.test/down"); lag != 0 {
		t.Fatalf("lag %v after catching up", lag)
	}
	if s := metric(t, base, `varsel_audit_witness_lag_seconds{witness="witness.test/down"}`); s != 0 {
		t.Fatalf("lag seconds %v after catching up", s)
	}
	if n, err := witness.VerifyCosignatures(servedCheckpoint(t, base), []string{w1.vkey, w2.vkey}, 2); n != 2 || err != nil {
		t.Fatalf("after catching up: %d %v", n, err)
	}
}

// TestWitnessCatchesOperatorRewrite: the broker operator, as the database
// superuser, changes an entry, re-chains the log, drops the checkpoints
// and cosignatures over it and the tree head, and restarts the broker,
// which rebuilds the tree and signs the rewritten history with its own
// key. The witness that cosigned the earlier checkpoint refuses every
// checkpoint of the rewritten history (422: a fork at the same size, a
// proof that does not link after it), the broker counts and logs the
// refusal, and audit verify --witness-key fails.
func TestWitnessCatchesOperatorRewrite(t *testing.T) {
	db := freshDB(t)
	keyDir, logVKey := brokerKeys(t)
	w := newTestWitness(t, "witness.test/w1", logVKey)
	signer := registerOn(t, db, "nav-rewrite-w", "nav-state", "nav-x")
	mod := func(c *Config) { c.Keys, c.Witnesses = "file:"+keyDir, []string{w.flag()} }
	m, base, stop := startApp(t, db, nil, mod)
	c := &client.Client{BaseURL: base, Signer: signer, Employee: client.Employee{Sub: "kari", Role: "caseworker", Office: "nav-x"}}
	ctx := context.Background()
	whoamis(t, c, 6)
	checkpointNow(t, m)
	if err := m.Witnesses.Push(ctx); err != nil {
		t.Fatal(err)
	}
	stop() // signs a final checkpoint of what is there, which the witness has not seen
	seen, seenRoot, _ := w.srv.Latest("varsel/audit")
	if seen < 7 {
		t.Fatalf("the witness saw %d", seen)
	}

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE audit_cosignatures DISABLE TRIGGER USER;
		DELETE FROM audit_cosignatures WHERE count >= 4;
		ALTER TABLE audit_cosignatures ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	rechainTail(t, db, 4, func(e *audit.Entry) { e.Actor = "someone-else" })
	if _, err := conn.Exec(ctx, `DELETE FROM audit_tree_heads`); err != nil {
		t.Fatal(err)
	}

	m, base, _ = startApp(t, db, nil, mod) // rebuilds the tree from the rewritten entries
	c.BaseURL = base
	checkpointNow(t, m) // the forgery, signed with the broker's own key
	forged, err := m.AuditStore.LatestCheckpoint(ctx)
	if err != nil || forged.Count < int64(seen) {
		t.Fatalf("forged checkpoint %+v %v", forged, err)
	}
	err = m.Witnesses.Push(ctx)
	var r *witness.RefusedError
	if !errors.As(err, &r) || r.Status != 422 {
		t.Fatalf("the witness did not refuse the rewritten checkpoint at %d: %v", forged.Count, err)
	}
	t.Logf("witness saw %d; rewritten checkpoint at %d refused: %s", seen, forged.Count, r.Message)
	if forged.Count == int64(seen) && !strings.Contains(r.Message, "fork") {
		t.Fatalf("same size, want a fork: %v", err)
	}
	whoamis(t, c, 2) // the rewritten history grows
	checkpointNow(t, m)
	err = m.Witnesses.Push(ctx)
	if !errors.As(err, &r) || r.Status != 422 || !strings.Contains(r.Message, "does not verify against the root cosigned at "+strconv.FormatUint(seen, 10)) {
		t.Fatalf("the witness did not refuse the grown rewrite: %v", err)
	}
	t.Logf("grown rewrite refused: %s", r.Message)
	if size, root, _ := w.srv.Latest("varsel/audit"); size != seen || string(root) != string(seenRoot) {
		t.Fatalf("the witness moved to %d", size)
	}
	if n := metric(t, base, `varsel_audit_witness_submissions_total{outcome="refused",witness="witness.test/w1"}`); n < 2 {
		t.Fatalf("%v refusals counted", n)
	}
	if lag := lagEntries(t, base, "witness.test/w1"); lag <= 0 {
		t.Fatalf("lag %v", lag)
	}
	keyFile := filepath.Join(t.TempDir(), "log.vkey")
	os.WriteFile(keyFile, []byte(logVKey+"\n"), 0o644)
	_, err = cliOn(t, db, "audit", "verify", "--checkpoint-key", keyFile, "--witness-key", w.vkeyFile, "--max-unsigned-age", "0")
	if err == nil || !strings.Contains(err.Error(), "0 of 1 required witness cosignatures on the checkpoint (witness.test/w1: no cosignature)") {
		t.Fatalf("verify of the rewritten log with the witness: %v", err)
	}
}

func TestWitnessFlags(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"http://w.example", "want URL=VKEYFILE"},
		{"ftp://w.example=/dev/null", "is not an http(s) URL"},
		{"http://w.example=/nonexistent/w.vkey", "read /nonexistent/w.vkey"},
		{"http://w.example=/dev/null", "witness key"},
	} {
		c := DefaultConfig()
		c.DatabaseURL, c.Witnesses = "postgres://x", []string{tc.spec}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--witness %s: %v, want %q", tc.spec, err, tc.want)
		}
	}
	if out, err := cliOn(t, "", "witness", "--help"); err != nil || !strings.Contains(out, "Usage: varsel witness --listen ADDR") {
		t.Errorf("witness --help: %v %s", err, out)
	}
	if _, err := cliOn(t, "", "witness", "--listen", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "--key, --state and at least one --log are required") {
		t.Errorf("witness without a key: %v", err)
	}
	if _, err := cliOn(t, "", "witness", "keygen", "--name", "w"); err == nil || !strings.Contains(err.Error(), "--name and --out are required") {
		t.Errorf("keygen without --out: %v", err)
	}
}
