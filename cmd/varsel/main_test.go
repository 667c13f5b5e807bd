package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"varsel/broker/app"
	"varsel/broker/client"
	"varsel/schema/schematest"
)

var (
	testURL    string // a migrated database for this package
	binaryPath string // the varsel binary, built once, for multi-process tests
)

func TestMain(m *testing.M) {
	ctx := context.Background()
	url, err := schematest.NewDatabase(ctx, "cmd_varsel", false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testURL = url
	dir, err := os.MkdirTemp("", "varsel-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "varsel")
	if out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build varsel: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = schematest.DropDatabase(ctx, url)
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the command line in-process with the test database.
func cli(t testing.TB, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "VARSEL_DATABASE_URL" {
			return testURL
		}
		return ""
	}
	err = run(context.Background(), args, &out, &errOut, getenv)
	return out.String(), err
}

func mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("varsel %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// demoAgency registers an agency with a fresh ES256 key through the CLI and
// returns a client signing as its employee.
func demoAgency(t *testing.T, id, kind string, offices ...string) *client.Signer {
	t.Helper()
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.jwk"), filepath.Join(dir, "k.jwks")
	mustCLI(t, "keygen", "--alg", "ES256", "--kid", id+"-1", "--out", priv, "--jwks-out", pub)
	args := []string{"agency", "add", "--id", id, "--kind", kind, "--name", "Test " + id, "--jwks", pub}
	for _, o := range offices {
		args = append(args, "--office", o)
	}
	mustCLI(t, args...)
	s, err := client.LoadSigner(id, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// uniq makes ids unique within the package's database.
func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
}

// testClock is a decision clock (app.Config.Now) that a test moves instead
// of sleeping: the real time plus an offset the test advances.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// startMain starts the broker in-process on a free loopback port.
func startMain(t testing.TB, dbURL string, mod func(*Config)) (*app.App, string) {
	t.Helper()
	return startMainClock(t, dbURL, nil, mod)
}

// startMainClock is startMain with now as the broker's clock of decisions
// (validity, expiry, emergency windows); nil for time.Now.
func startMainClock(t testing.TB, dbURL string, now func() time.Time, mod func(*Config)) (*app.App, string) {
	t.Helper()
	m, base, _ := startApp(t, dbURL, now, mod)
	return m, base
}

// startApp starts the broker in-process on dbURL and returns it, its base
// URL and a function that stops it (also called at cleanup; once is enough),
// for tests that restart the broker on the same database.
func startApp(t testing.TB, dbURL string, now func() time.Time, mod func(*Config)) (*app.App, string, func()) {
	t.Helper()
	c := DefaultConfig()
	c.DatabaseURL = dbURL
	c.Listen = "127.0.0.1:0"
	c.Keys = "file:" + t.TempDir()
	c.TestSubjects = true
	c.CheckFloor = 0 // the timing test sets its own; others need not wait
	if mod != nil {
		mod(&c)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	ac := c.app()
	ac.Now = now
	m := app.New(ac, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("broker did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("broker did not start within 30 s")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("broker stopped with %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return m, "http://" + m.Addr().String(), stop
}

// brokerProcess is a `varsel serve` child process.
type brokerProcess struct {
	cmd  *exec.Cmd
	url  string
	logs *logBuffer
}

// logBuffer collects a process's log lines as they come.
type logBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	added chan struct{} // closed and replaced at every write
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.added == nil {
		b.added = make(chan struct{})
	}
	close(b.added)
	b.added = make(chan struct{})
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor returns the logs once they contain every one of subs, or fails
// the test after 10 s.
func (b *logBuffer) waitFor(t testing.TB, subs ...string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		s := b.buf.String()
		if b.added == nil {
			b.added = make(chan struct{})
		}
		added := b.added
		b.mu.Unlock()
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(s, sub)
		}
		if all {
			return s
		}
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("logs lack %q after 10 s:\n%s", subs, s)
		}
	}
}

// waitForRecord returns the logs once one JSON line has every field of
// want (as strings), or fails the test after 10 s.
func (b *logBuffer) waitForRecord(t testing.TB, want map[string]string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		s := b.buf.String()
		if b.added == nil {
			b.added = make(chan struct{})
		}
		added := b.added
		b.mu.Unlock()
		for _, line := range strings.Split(s, "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			match := true
			for k, v := range want {
				match = match && fmt.Sprint(rec[k]) == v
			}
			if match {
				return s
			}
		}
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("no log line with %v after 10 s:\n%s", want, s)
		}
	}
}

// startProcess runs the built binary as a separate broker process.
func startProcess(t *testing.T, dbURL string, extra ...string) *brokerProcess {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json",
		"--keys", "file:" + t.TempDir(), "--test-subjects"}, extra...)
	cmd := exec.Command(binaryPath, args...)
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+dbURL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &brokerProcess{cmd: cmd, logs: &logBuffer{}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.Write(append(line, '\n'))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "varsel serving" {
				addr <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("broker process did not start: %s", p.logs)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	return p
}
