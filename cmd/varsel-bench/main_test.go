package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"varsel/broker/bench"
)

// TestMain lets the test binary stand in for varsel-bench when a run in
// this process starts the stack reference's server (os.Executable is the
// test binary here).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "stack-server" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchCLI runs the command in-process with the given environment.
func benchCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut, func(k string) string { return env[k] })
	return out.String(), errOut.String(), err
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		out, _, err := benchCLI(t, nil, arg)
		if err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		for _, want := range []string{"Usage: varsel-bench", "POST /v1/checks", "stock OPA", "-varsel", "-server-url", "DATABASE_URL", "Example", "bin/varsel-bench --flags"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: help lacks %q", arg, want)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"--no-such-flag"}, "no-such-flag"},
		{"argument", nil, []string{"bench", "--flags", "10"}, `unexpected argument "bench"`},
		{"bad environment", map[string]string{"VARSEL_FLAGS": "many"}, nil, "VARSEL_FLAGS"},
		{"missing --varsel", nil, []string{"--varsel", filepath.Join(t.TempDir(), "varsel")}, "not an executable file"},
		// The test binary has no varsel next to it.
		{"no varsel next to it", nil, nil, "no varsel binary next to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := benchCLI(t, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if out != "" {
				t.Errorf("printed %q", out)
			}
		})
	}
}

func TestVarselNextTo(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "varsel-bench")
	if _, err := varselNextTo(self); err == nil || !strings.Contains(err.Error(), "--varsel PATH") {
		t.Fatalf("without a varsel: %v", err)
	}
	want := filepath.Join(dir, "varsel")
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := varselNextTo(self); err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

func TestReportRendersEarlierRun(t *testing.T) {
	dir := t.TempDir()
	res := bench.Result{Machine: "2 CPUs", Command: "varsel-bench --flags 10", StartedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Flags: 10, Entries: 20, Connections: 4, Alg: "ES256", Duration: time.Second, Requests: 100, OK: 100, RPS: 100,
		Latency: map[string]float64{"p50": 1, "p90": 2, "p99": 3, "max": 4}, Answered: 120, Audited: 120, AllAudited: true,
		Postgres: "PostgreSQL 15.18, shared_buffers 4GB",
		// The broker 0.2 ms a check at 50 µs a verification (4 ×); paced
		// to 80/s, 0.25 ms; echo and the signature 0.1 and 0.12 ms.
		CPUPerRequest: 0.2, Floor: bench.Floor{P256VerifyUs: 50}, FloorRatio: 4,
		Paced: []*bench.PacedRun{{Share: 0.8, Paced: 80, Window: bench.Window{Requests: 80, OK: 80, RPS: 80, CPU: bench.CPUShare{ServerMs: 0.25}}}},
		Stack: &bench.StackReference{
			Bare:        &bench.StackRun{FloorRatio: 0.4, Window: bench.Window{RPS: 1000, CPU: bench.CPUShare{ServerMs: 0.02}}},
			Signed:      &bench.StackRun{Verify: true, FloorRatio: 2, Window: bench.Window{RPS: 500, CPU: bench.CPUShare{ServerMs: 0.1}}},
			PacedBare:   &bench.StackRun{Paced: 80, FloorRatio: 0.6, Window: bench.Window{RPS: 80, CPU: bench.CPUShare{ServerMs: 0.03}}},
			PacedSigned: &bench.StackRun{Verify: true, Paced: 80, FloorRatio: 2.4, Window: bench.Window{RPS: 80, CPU: bench.CPUShare{ServerMs: 0.12}}}}}
	b, _ := json.Marshal(res)
	resultFile, md := filepath.Join(dir, "result.json"), filepath.Join(dir, "perf.md")
	if err := os.WriteFile(resultFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := benchCLI(t, nil, "--report", resultFile, "--markdown", md, "--section", "short")
	if err != nil || !strings.Contains(out, "checks/s:       100") {
		t.Fatalf("%v %q", err, out)
	}
	text, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(text), "<!-- bench:short:start -->") || !strings.Contains(string(text), "varsel-bench --flags 10") ||
		!strings.Contains(string(text), "| database | PostgreSQL 15.18, shared_buffers 4GB |") {
		t.Fatalf("%v %q", err, text)
	}
	// What the broker spends beyond echo and the signature, each pair
	// driven the same way.
	for _, want := range []string{
		"| the broker, with the tree, paced to 80 % of that rate",
		"| the broker beyond echo and the signature, both as fast as they answer (at different rates) | 100 µs of CPU per check (2.00 × one P-256 verification) |",
		"| the broker beyond echo and the signature, both paced to 80/s | 130 µs of CPU per check (broker 0.250 ms, 5.00 × one P-256 verification, against 0.120 ms, 2.40 ×) |",
		"| stack reference: echo and the signature, paced to 80/s |",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
}

// TestShortRun runs the tool for real, briefly and without the OPA
// reference, against a varsel built for the test: with the window without
// the audit tree, and audit verify timed over the seeded log.
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds varsel and runs a broker")
	}
	dir := t.TempDir()
	varsel := filepath.Join(dir, "varsel")
	if out, err := exec.Command("go", "build", "-o", varsel, "varsel/cmd/varsel").CombinedOutput(); err != nil {
		t.Fatalf("build varsel: %v\n%s", err, out)
	}
	resultFile := filepath.Join(dir, "result.json")
	out, log, err := benchCLI(t, map[string]string{"DATABASE_URL": os.Getenv("DATABASE_URL")}, "--varsel", varsel,
		"--flags", "200", "--entries", "1000", "--connections", "4", "--warmup", "200ms", "--duration", "1s", "--skip-opa", "--compare-tree", "--out", resultFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if !strings.Contains(out, "every answer audited: true") || !strings.Contains(out, "errors:         none") {
		t.Errorf("summary:\n%s\nlog:\n%s", out, log)
	}
	var res bench.Result
	if b, err := os.ReadFile(resultFile); err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("result file: %v", err)
	}
	if res.OK == 0 || res.Entries != 1000 || !strings.HasPrefix(res.Command, "varsel-bench --varsel ") {
		t.Errorf("result: %+v", res)
	}
	// The report names the server and the settings that decide its cost.
	if !strings.HasPrefix(res.Postgres, "PostgreSQL ") || !strings.Contains(res.Postgres, "shared_buffers ") ||
		!strings.Contains(out, "postgres:       PostgreSQL ") {
		t.Errorf("postgres %q, summary:\n%s", res.Postgres, out)
	}
	if c := res.WithoutTree; c == nil || c.OK == 0 || len(c.Errors) > 0 || c.RateRatio <= 0 || c.CPURatio <= 0 {
		t.Errorf("without the tree: %+v\nlog:\n%s", c, log)
	}
	// 1,000 seeded entries and the agencies' own.
	if v := res.Verify; v == nil || v.Entries < 1000 || v.Rate <= 0 || !v.RootMatches {
		t.Errorf("audit verify: %+v", v)
	}
	if !strings.Contains(out, "tree cost:") || !strings.Contains(out, "audit verify:") {
		t.Errorf("summary:\n%s", out)
	}
	// The broker was driven again at half and four fifths of its rate,
	// and the paced generator kept below that rate.
	if len(res.Paced) != 2 || !strings.Contains(out, "paced 50 %:") || !strings.Contains(out, "paced 80 %:") {
		t.Fatalf("paced runs: %+v\nsummary:\n%s", res.Paced, out)
	}
	for _, p := range res.Paced {
		if p.OK == 0 || p.OK != p.Requests || len(p.Errors) > 0 || p.Latency["p99"] <= 0 || p.Requests > int64(p.Paced*p.Measured.Seconds())+1 {
			t.Errorf("paced to %.0f/s: %+v", p.Paced, p)
		}
	}
	// The stack reference ran both ways, unpaced and paced to the
	// broker's paced run at 80 %, and every request was answered.
	st := res.Stack
	if st == nil || st.Bare == nil || st.Signed == nil || st.PacedBare == nil || st.PacedSigned == nil {
		t.Fatalf("stack reference: %+v\nsummary:\n%s\nlog:\n%s", st, out, log)
	}
	for _, run := range []*bench.StackRun{st.Bare, st.Signed, st.PacedBare, st.PacedSigned} {
		if run.OK == 0 || run.OK != run.Requests || len(run.Errors) > 0 || run.CPU.ServerMs <= 0 || run.FloorRatio <= 0 {
			t.Errorf("stack run: %+v", run)
		}
	}
	if st.Bare.Verify || !st.Signed.Verify || st.PacedBare.Verify || !st.PacedSigned.Verify ||
		st.Bare.Paced != 0 || st.PacedSigned.Paced != res.Paced[1].Paced ||
		!strings.Contains(out, "stack:          as fast as it answers: echo alone") || !strings.Contains(out, "stack paced:    to ") {
		t.Errorf("stack reference: %+v\nsummary:\n%s", st, out)
	}
	// Every answer of both windows was audited.
	if !res.AllAudited {
		t.Errorf("not every answer audited: %d entries for %d answers", res.Audited, res.Answered)
	}
}
