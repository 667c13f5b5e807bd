package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker/auth"
)

type brokerProc struct {
	cmd  *exec.Cmd
	url  string
	once sync.Once
}

// startBroker runs `varsel serve` as a child process listening on listen
// ("127.0.0.1:0" for any port) and waits for it; withoutTree adds
// --bench-without-tree.
func startBroker(ctx context.Context, binary, dbURL, keyDir, listen string, conns int, withoutTree bool) (*brokerProc, error) {
	cmd := exec.CommandContext(ctx, binary, "serve", "--listen", listen, "--keys", "file:"+keyDir,
		"--test-subjects", "--log-format", "json", "--log-level", "info", "--office-hours", "",
		"--max-db-conns", strconv.Itoa(min(max(conns/2, 8), 64)))
	if withoutTree {
		cmd.Args = append(cmd.Args, "--bench-without-tree")
	}
	if p := os.Getenv("VARSEL_BENCH_PPROF"); p != "" {
		cmd.Args = append(cmd.Args, "--pprof-listen", p)
	}
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+dbURL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	b := &brokerProc{cmd: cmd}
	addr := make(chan string, 1)
	exited := make(chan string, 1) // its last log line
	go func() {
		sc := bufio.NewScanner(stderr)
		var last string
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			last = sc.Text()
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "varsel serving" {
				addr <- rec.Addr
			}
		}
		exited <- last
	}()
	select {
	case a := <-addr:
		b.url = "http://" + a
		return b, nil
	case last := <-exited:
		b.stop()
		return nil, fmt.Errorf("broker exited before serving: %s", last)
	case <-time.After(60 * time.Second):
		b.stop()
		return nil, fmt.Errorf("broker did not start within 60 s")
	}
}

func (b *brokerProc) stop() {
	b.once.Do(func() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = b.cmd.Process.Kill()
		}
	})
}

// procCPU returns a process's user+system CPU seconds and peak RSS in MiB.
func procCPU(pid int) (float64, float64) {
	var cpu, rss float64
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) > 13 {
			ut, _ := strconv.ParseFloat(fields[11], 64)
			st, _ := strconv.ParseFloat(fields[12], 64)
			cpu = (ut + st) / 100 // USER_HZ
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%f", &kb)
				rss = kb / 1024
			}
		}
	}
	return cpu, rss
}

// warmGuess is the check rate the warm-up's pre-signed pool is sized for;
// a faster broker only ends the warm-up early.
const warmGuess = 15000

// drive runs the check load with pre-signed requests: a warm-up (which
// measures the rate the window's pool is sized from), the signing of that
// pool with the broker idle, a second short warm-up, then the measured
// window, in which the generator only sends and reads. It returns the
// pre-signed requests the window did not send (for b's address) and when
// they were signed.
func drive(ctx context.Context, cfg Config, w *world, b *brokerProc, pgPID int, res *Result, logf func(string, ...any)) (*leftover, error) {
	host := strings.TrimPrefix(b.url, "http://")
	g := newGenerator(host, cfg.Connections)
	g.hitMarker = []byte(`"result":"precautions"`)
	defer g.close()

	t0 := time.Now()
	warm, err := presign(ctx, w, host, int(cfg.Warmup.Seconds()*warmGuess)+10*cfg.Connections, cfg.FlaggedShare, 1)
	if err != nil {
		return nil, err
	}
	logf("pre-signed %d warm-up requests in %.1f s; warming up for %s with %d connections", len(warm), time.Since(t0).Seconds(), cfg.Warmup, cfg.Connections)
	wp := g.run(ctx, &requestPool{reqs: warm}, cfg.Warmup, nil)
	if wp.OK == 0 {
		return nil, fmt.Errorf("warm-up: no check answered 200 (%s)", errorsText(wp.Errors))
	}
	rate := float64(wp.Requests) / wp.Elapsed.Seconds()
	n := cfg.Tokens
	if n == 0 {
		n = int(rate*(cfg.Duration.Seconds()*2.5+1)) + 50*cfg.Connections
	}
	signStart := time.Now()
	pool, err := presign(ctx, w, host, n, cfg.FlaggedShare, 2)
	if err != nil {
		return nil, err
	}
	res.PreSigned, res.SignSeconds = n, time.Since(signStart).Seconds()
	logf("warm-up rate %.0f/s; pre-signed %d requests for the window in %.1f s", rate, n, res.SignSeconds)
	if time.Since(signStart)+cfg.Duration+2*time.Second > tokenBudget {
		return nil, fmt.Errorf("the window's tokens would expire before it ends: signing took %.0f s, --duration is %s, tokens live %s",
			res.SignSeconds, cfg.Duration, auth.MaxLifetime)
	}
	// Signing left the broker idle: warm it up again, briefly, from the pool.
	rw := g.run(ctx, &requestPool{reqs: pool[:min(len(pool), int(rate)+1)]}, time.Second, nil)
	pool = pool[min(len(pool), int(rate)+1):]

	meter := cpuMeter{serverPID: b.cmd.Process.Pid, pgPID: pgPID}
	c0 := meter.read()
	last, lastAt := int64(0), time.Duration(0)
	window := &requestPool{reqs: pool}
	ph := g.run(ctx, window, cfg.Duration, func(at time.Duration, n int64) {
		logf("t=%3.0fs  checks/s=%6.0f  total=%d", at.Seconds(), float64(n-last)/(at-lastAt).Seconds(), n)
		last, lastAt = n, at
	})
	c1 := meter.read()
	if ph.Drained {
		logf("the pre-signed requests ran out after %.1f s of the %s window: the window ends there", ph.Elapsed.Seconds(), cfg.Duration)
		res.WindowCut = true
	}
	res.Requests, res.OK, res.Precautions = ph.Requests, ph.OK, ph.Hits
	res.Errors = ph.Errors
	res.Measured = ph.Elapsed
	res.RPS = float64(ph.Requests) / ph.Elapsed.Seconds()
	res.Latency = percentiles(ph.Latency)
	res.CPU = share(c0, c1, ph.Requests, pgPID > 0)
	res.BrokerCPU = res.CPU.Server
	res.CPUPerRequest = res.CPU.ServerMs
	res.PeakRSSMiB = c1.rss
	res.Answered = wp.Answered + rw.Answered + ph.Answered
	logf("measured %d checks in %.1f s: %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, errors %v; CPU ms per check: generator %.3f, broker %.3f, postgres %.3f, other %.3f",
		res.Requests, ph.Elapsed.Seconds(), res.RPS, res.Latency["p50"], res.Latency["p99"], res.Latency["max"], ph.Errors,
		res.CPU.GeneratorMs, res.CPU.ServerMs, res.CPU.PostgresMs, res.CPU.OtherMs)
	return &leftover{host: host, reqs: pool[min(len(pool), int(window.next.Load())):], signedAt: signStart}, nil
}

// leftover is what a window left of its pre-signed requests: their Host
// is host, and their tokens' lifetime runs from signedAt.
type leftover struct {
	host     string
	reqs     [][]byte
	signedAt time.Time
}

// ceiling measures the audit writer alone: the same number of rows, the
// same concurrency, no HTTP, JWS or policy.
func ceiling(ctx context.Context, dbURL string, cfg Config, res *Result, logf func(string, ...any)) error {
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 16
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE varsel_app")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	// First: is every answered check in the log? Count the checks the
	// broker logged (the seeded entries carry policy_version "seed").
	var audited int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entries WHERE action = 'check' AND policy_version <> 'seed'`).Scan(&audited); err != nil {
		return err
	}
	res.Audited = audited
	res.AllAudited = audited >= res.Answered
	logf("answered 200: %d (warm-up included); check entries in the log: %d", res.Answered, audited)

	n := res.Requests
	if n == 0 {
		n = 10_000
	}
	wr := audit.NewWriter(&auditpg.Store{Pool: pool}, audit.WriterConfig{})
	defer wr.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < cfg.Connections; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				e := &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "nav-state-1", Actor: fmt.Sprintf("cw-%d", g),
					Role: "caseworker", Office: "nav-office-01", Action: "ceiling", Decision: audit.Allow,
					SubjectRef: fmt.Sprintf("%064x", i), PolicyVersion: "ceiling", RequestJTI: fmt.Sprintf("ceiling-%d-%d", g, i)}
				if _, err := wr.Append(ctx, e); err != nil {
					return
				}
			}
		}(g)
	}
	wg.Wait()
	took := time.Since(start)
	res.CeilingRows = n
	res.CeilingRate = float64(n) / took.Seconds()
	if res.CeilingRate > 0 {
		res.CeilingRatio = res.RPS / res.CeilingRate
	}
	logf("group-commit ceiling: %d rows in %.1f s = %.0f rows/s (ratio %.2f)", n, took.Seconds(), res.CeilingRate, res.CeilingRatio)
	return nil
}

// opaServer builds and starts a stock OPA server on the same policies.
type opaServer struct {
	cmd  *exec.Cmd
	addr string
}

func startOPA(ctx context.Context, cfg Config) (*opaServer, error) {
	bin := filepath.Join(os.TempDir(), "varsel-bench-opa")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/open-policy-agent/opa")
	build.Dir = cfg.RepoDir
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build opa: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, bin, "run", "--server", "--addr", addr, "--log-level", "error",
		"--ignore", "*_test.rego", filepath.Join(cfg.RepoDir, "policies"))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start opa: %w", err)
	}
	o := &opaServer{cmd: cmd, addr: addr}
	hc := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ; i++ {
		resp, err := hc.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return o, nil
			}
		}
		if i > 100 {
			o.stop()
			return nil, fmt.Errorf("opa server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (o *opaServer) stop() { _ = o.cmd.Process.Kill(); _ = o.cmd.Wait() }

// opaRequests builds n requests for the disclosure decision, with the
// input the broker gives the same policy for a check (the same share of
// flagged people, the flags as the broker reads them).
func opaRequests(cfg Config, w *world, host string, n int) [][]byte {
	r := mrand.New(mrand.NewPCG(7, 7))
	out := make([][]byte, n)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := range out {
		e := w.caseworker[r.IntN(len(w.caseworker))]
		flags := []map[string]any{}
		if r.Float64() < cfg.FlaggedShare && len(w.flagMeta) > 0 {
			flags = w.flagMeta[r.IntN(len(w.flagMeta))]
		}
		in := map[string]any{"input": map[string]any{
			"principal": map[string]any{"agency": e.signer.Agency, "agency_kind": e.kind, "role": e.emp.Role, "office": e.emp.Office, "sub": e.emp.Sub},
			"purpose":   "meeting", "emergency": false, "flags": flags, "time": now}}
		body, _ := json.Marshal(in)
		out[i] = rawRequest(host, opaPath, "", body)
	}
	return out
}

const opaPath = "/v1/data/disclosure/decision"

// opaReference drives the stock OPA server with the same generator and
// connection count as the broker: a second of warm-up, then the window.
func opaReference(ctx context.Context, cfg Config, w *world, o *opaServer, res *Result, logf func(string, ...any)) error {
	g := newGenerator(o.addr, cfg.Connections)
	g.okMarker = []byte(`"allow":true`)
	defer g.close()
	pool := &requestPool{reqs: opaRequests(cfg, w, o.addr, 10_000), cycle: true}
	if wp := g.run(ctx, pool, time.Second, nil); wp.OK == 0 {
		return fmt.Errorf("opa server: no decision allowed in the warm-up (%s)", errorsText(wp.Errors))
	}
	meter := cpuMeter{serverPID: o.cmd.Process.Pid}
	c0 := meter.read()
	ph := g.run(ctx, pool, cfg.OPADuration, nil)
	c1 := meter.read()
	res.OPADecisions = ph.OK
	res.OPARate = float64(ph.OK) / ph.Elapsed.Seconds()
	lat := percentiles(ph.Latency)
	res.OPALatencyP99 = lat["p99"]
	res.OPALatency = lat
	res.OPAErrors = ph.Errors
	res.OPACPU = share(c0, c1, ph.Requests, false)
	if res.OPARate > 0 {
		res.OPARatio = res.RPS / res.OPARate
	}
	logf("stock OPA server: %d decisions in %.1f s = %.0f/s, p99 %.2f ms (ratio %.2f); CPU ms per decision: generator %.3f, opa %.3f",
		res.OPADecisions, ph.Elapsed.Seconds(), res.OPARate, res.OPALatencyP99, res.OPARatio, res.OPACPU.GeneratorMs, res.OPACPU.ServerMs)
	return nil
}

// pacedShares are the shares of the window's rate at which the broker is
// driven again, paced, for the latency a caller sees when the broker is
// not the bottleneck; the stack reference is paced to the run at
// comparedShare too.
var pacedShares = []float64{0.5, comparedShare}

const comparedShare = 0.8

// pacedAt is the paced run at share of the window's rate, or nil.
func (r *Result) pacedAt(share float64) *PacedRun {
	for _, p := range r.Paced {
		if p.Share == share {
			return p
		}
	}
	return nil
}

// Window is what one paced or reference window of the generator gave.
type Window struct {
	Requests  int64              `json:"requests"`
	OK        int64              `json:"ok"`
	RPS       float64            `json:"requests_per_second"`
	Latency   map[string]float64 `json:"latency_ms"`
	Errors    map[string]int64   `json:"errors,omitempty"`
	Measured  time.Duration      `json:"measured_ns"`
	WindowCut bool               `json:"window_cut_short,omitempty"` // the pre-signed requests ran out
	CPU       CPUShare           `json:"cpu"`
}

// window sums up a phase and the CPU it took.
func window(ph *phase, cpu CPUShare) Window {
	return Window{Requests: ph.Requests, OK: ph.OK, RPS: float64(ph.Requests) / ph.Elapsed.Seconds(), Latency: percentiles(ph.Latency),
		Errors: ph.Errors, Measured: ph.Elapsed, WindowCut: ph.Drained, CPU: cpu}
}

// PacedRun is the broker driven, with as many connections, at a share of
// the rate it made in its window.
type PacedRun struct {
	Share float64 `json:"share_of_window_rate"`
	Paced float64 `json:"paced_requests_per_second"`
	Window
}

// pacedBroker drives b at each of pacedShares of the window's rate for
// cfg.StackDuration, after a second's paced warm-up, from requests signed
// before each run.
func pacedBroker(ctx context.Context, cfg Config, w *world, b *brokerProc, pgPID int, res *Result, logf func(string, ...any)) error {
	host := strings.TrimPrefix(b.url, "http://")
	for i, frac := range pacedShares {
		rate := frac * res.RPS
		if rate < 1 {
			continue
		}
		warmN := int(rate) + cfg.Connections
		n := warmN + int(rate*cfg.StackDuration.Seconds()) + 2*cfg.Connections
		reqs, err := presign(ctx, w, host, n, cfg.FlaggedShare, uint64(10+i))
		if err != nil {
			return err
		}
		g := newGenerator(host, cfg.Connections)
		g.hitMarker = []byte(`"result":"precautions"`)
		g.rate = rate
		wp := g.run(ctx, &requestPool{reqs: reqs[:warmN]}, time.Second, nil)
		meter := cpuMeter{serverPID: b.cmd.Process.Pid, pgPID: pgPID}
		c0 := meter.read()
		ph := g.run(ctx, &requestPool{reqs: reqs[warmN:]}, cfg.StackDuration, nil)
		c1 := meter.read()
		g.close()
		res.Answered += wp.Answered + ph.Answered // audited too
		p := &PacedRun{Share: frac, Paced: rate, Window: window(ph, share(c0, c1, ph.Requests, pgPID > 0))}
		res.Paced = append(res.Paced, p)
		logf("the broker paced to %.0f %% of its rate (%.0f/s): %.0f checks/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, errors %s; CPU ms per check: generator %.3f, broker %.3f, postgres %.3f",
			frac*100, rate, p.RPS, p.Latency["p50"], p.Latency["p90"], p.Latency["p99"], errorsText(p.Errors), p.CPU.GeneratorMs, p.CPU.ServerMs, p.CPU.PostgresMs)
	}
	return nil
}
