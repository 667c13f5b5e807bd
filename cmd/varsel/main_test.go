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
	"testing"
	"time"

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

// startMain starts the broker in-process on a free loopback port.
func startMain(t testing.TB, dbURL string, mod func(*Config)) (*Main, string) {
	t.Helper()
	m := NewMain()
	m.Config.DatabaseURL = dbURL
	m.Config.Listen = "127.0.0.1:0"
	m.Config.Keys = "file:" + t.TempDir()
	m.Config.TestSubjects = true
	if mod != nil {
		mod(&m.Config)
	}
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	})
	return m, "http://" + m.Addr().String()
}

// brokerProcess is a `varsel serve` child process.
type brokerProcess struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
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
	p := &brokerProcess{cmd: cmd, logs: &bytes.Buffer{}}
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
