package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The optional second generator: wrk (a C load generator, Debian's wrk
// package, found or installed by deploy/wrk.sh), fed the same kind of
// pre-signed requests by a Lua script, one file per wrk thread.

// wrkScript reads the next request of its thread's file (a line with the
// byte length, then the raw request). Signed requests are sent once: when
// a file is used up, it sends a request the broker answers 404, which
// wrk counts as an error. With cycle=1 (the OPA reference) it starts over.
const wrkScript = `
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local f, cycle
function init(args)
  f = assert(io.open(args[1] .. "." .. id, "rb"))
  cycle = args[2] == "1"
end

function request()
  local l = f:read("*l")
  if not l and cycle then
    f:seek("set", 0)
    l = f:read("*l")
  end
  if not l then
    return wrk.format("GET", "/varsel-bench-requests-used-up")
  end
  return f:read(tonumber(l))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('VARSEL-WRK {"duration_us":%.0f,"requests":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`

// WrkRun is what one wrk run measured.
type WrkRun struct {
	Requests  int64              `json:"requests"`
	OK        int64              `json:"ok"` // answered 2xx
	RPS       float64            `json:"per_second"`
	Errors    map[string]int64   `json:"errors"`
	Latency   map[string]float64 `json:"latency_ms"`
	CPU       CPUShare           `json:"cpu"`
	Duration  time.Duration      `json:"duration_ns"`
	PreSigned int                `json:"pre_signed,omitempty"`
}

// WrkResult is the broker and the OPA reference driven by wrk.
type WrkResult struct {
	Binary   string  `json:"binary"`
	Threads  int     `json:"threads"`
	Broker   WrkRun  `json:"broker"`
	OPA      *WrkRun `json:"opa,omitempty"`
	OPARatio float64 `json:"ratio_to_opa,omitempty"`
}

// findWrk resolves --wrk: "off" (or empty), "auto" (deploy/wrk.sh, which
// installs Debian's wrk as root; skipped with a note when that fails) or
// "on" (the same, but a failure ends the run).
func findWrk(ctx context.Context, mode, repo string, logf func(string, ...any)) (string, error) {
	switch mode {
	case "", "off":
		return "", nil
	case "auto", "on":
	default:
		return "", fmt.Errorf("--wrk %q: want off, auto or on", mode)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "deploy", "wrk.sh"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if mode == "on" {
			return "", fmt.Errorf("wrk: %v: %s", err, msg)
		}
		logf("no wrk, so no wrk figures: %s", msg)
		return "", nil
	}
	return strings.TrimSpace(string(out)), nil
}

// writeWrkFiles writes reqs into threads files prefix.0, prefix.1, ...
func writeWrkFiles(prefix string, threads int, reqs [][]byte) error {
	for t := range threads {
		f, err := os.Create(prefix + "." + strconv.Itoa(t))
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		for i := t; i < len(reqs); i += threads {
			bw.WriteString(strconv.Itoa(len(reqs[i])) + "\n")
			bw.Write(reqs[i])
		}
		if err := bw.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// runWrk runs wrk against url with the requests in prefix.* and reads its
// figures; the CPU of the server (serverPID), PostgreSQL (pgPID) and wrk
// itself over the run is measured as for the built-in generator.
func runWrk(ctx context.Context, bin, url, prefix string, cycle bool, conns, threads int, d time.Duration, serverPID, pgPID int) (*WrkRun, error) {
	dir := filepath.Dir(prefix)
	script := filepath.Join(dir, "varsel-bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	c := "0"
	if cycle {
		c = "1"
	}
	cmd := exec.CommandContext(ctx, bin, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(int(d.Seconds()))+"s", "--timeout", "30s", "-s", script, url, "--", prefix, c)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	meter := cpuMeter{serverPID: serverPID, pgPID: pgPID}
	c0 := meter.read()
	c0.gen = 0
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wrk: %v: %s %s", err, stderr.String(), stdout.String())
	}
	c1 := meter.read()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c1.gen = tv(ru.Utime) + tv(ru.Stime)
	}
	var line string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "VARSEL-WRK "); ok {
			line = s
		}
	}
	var w struct {
		DurationUs float64 `json:"duration_us"`
		Requests   float64 `json:"requests"`
		Connect    float64 `json:"connect"`
		Read       float64 `json:"read"`
		Write      float64 `json:"write"`
		Status     float64 `json:"status"`
		Timeout    float64 `json:"timeout"`
		P50        float64 `json:"p50"`
		P90        float64 `json:"p90"`
		P99        float64 `json:"p99"`
		Max        float64 `json:"max"`
	}
	if err := json.Unmarshal([]byte(line), &w); err != nil || w.DurationUs == 0 {
		return nil, fmt.Errorf("wrk printed no figures: %s %s", stdout.String(), stderr.String())
	}
	run := &WrkRun{Requests: int64(w.Requests), OK: int64(w.Requests - w.Status), Duration: time.Duration(w.DurationUs) * time.Microsecond,
		Errors: map[string]int64{}, Latency: map[string]float64{"p50": w.P50 / 1000, "p90": w.P90 / 1000, "p99": w.P99 / 1000, "max": w.Max / 1000}}
	for k, v := range map[string]float64{"connect": w.Connect, "read": w.Read, "write": w.Write, "status": w.Status, "timeout": w.Timeout} {
		if v > 0 {
			run.Errors[k] = int64(v)
		}
	}
	run.RPS = float64(run.OK) / run.Duration.Seconds()
	run.CPU = share(c0, c1, run.Requests, pgPID > 0)
	return run, nil
}

func wrkThreads() int { return max(runtime.NumCPU(), 1) }

// wrkBroker drives the broker (warm, after the built-in generator's
// window) with wrk for the same duration and connections, from requests
// signed before it starts: twice the built-in generator's rate, so that
// wrk does not run out.
func wrkBroker(ctx context.Context, cfg Config, w *world, b *brokerProc, pgPID int, bin, dir string, res *Result, logf func(string, ...any)) error {
	host := strings.TrimPrefix(b.url, "http://")
	n := int(res.RPS*cfg.Duration.Seconds()*2) + 100*cfg.Connections
	t0 := time.Now()
	reqs, err := presign(ctx, w, host, n, cfg.FlaggedShare, 3)
	if err != nil {
		return err
	}
	prefix := filepath.Join(dir, "checks")
	if err := writeWrkFiles(prefix, res.Wrk.Threads, reqs); err != nil {
		return err
	}
	reqs = nil
	logf("wrk: pre-signed %d requests in %.1f s; running %s with %d connections, %d threads", n, time.Since(t0).Seconds(), cfg.Duration, cfg.Connections, res.Wrk.Threads)
	if time.Since(t0)+cfg.Duration+2*time.Second > tokenBudget {
		return fmt.Errorf("wrk: the tokens would expire before the run ends")
	}
	run, err := runWrk(ctx, bin, b.url, prefix, false, cfg.Connections, res.Wrk.Threads, cfg.Duration, b.cmd.Process.Pid, pgPID)
	if err != nil {
		return err
	}
	run.PreSigned = n
	res.Wrk.Broker = *run
	res.Answered += run.OK
	if _, rss := procCPU(b.cmd.Process.Pid); rss > res.PeakRSSMiB {
		res.PeakRSSMiB = rss
	}
	logf("wrk: %d checks in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, errors %v; CPU ms per check: wrk %.3f, broker %.3f, postgres %.3f, other %.3f",
		run.Requests, run.Duration.Seconds(), run.RPS, run.Latency["p50"], run.Latency["p99"], run.Errors,
		run.CPU.GeneratorMs, run.CPU.ServerMs, run.CPU.PostgresMs, run.CPU.OtherMs)
	return nil
}

// wrkOPA drives the stock OPA server with wrk, as wrkBroker the broker.
func wrkOPA(ctx context.Context, cfg Config, w *world, o *opaServer, bin, dir string, res *Result, logf func(string, ...any)) error {
	prefix := filepath.Join(dir, "opa")
	if err := writeWrkFiles(prefix, res.Wrk.Threads, opaRequests(cfg, w, o.addr, 10_000)); err != nil {
		return err
	}
	run, err := runWrk(ctx, bin, "http://"+o.addr, prefix, true, cfg.Connections, res.Wrk.Threads, cfg.OPADuration, o.cmd.Process.Pid, 0)
	if err != nil {
		return err
	}
	res.Wrk.OPA = run
	if run.RPS > 0 {
		res.Wrk.OPARatio = res.Wrk.Broker.RPS / run.RPS
	}
	logf("wrk: stock OPA %.0f decisions/s, p99 %.2f ms (ratio %.2f); CPU ms per decision: wrk %.3f, opa %.3f",
		run.RPS, run.Latency["p99"], res.Wrk.OPARatio, run.CPU.GeneratorMs, run.CPU.ServerMs)
	return nil
}
