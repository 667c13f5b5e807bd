package bench

import (
	"bufio"
	"bytes"
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
)

type brokerProc struct {
	cmd  *exec.Cmd
	url  string
	once sync.Once
}

// startBroker runs `varsel serve` as a child process and waits for it.
func startBroker(ctx context.Context, binary, dbURL, keyDir string, conns int) (*brokerProc, error) {
	cmd := exec.CommandContext(ctx, binary, "serve", "--listen", "127.0.0.1:0", "--keys", "file:"+keyDir,
		"--test-subjects", "--log-format", "json", "--log-level", "info", "--office-hours", "",
		"--max-db-conns", strconv.Itoa(min(max(conns/2, 8), 64)))
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
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "varsel serving" {
				addr <- rec.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		b.url = "http://" + a
		return b, nil
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

func httpClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

// drive runs the check load: warm-up, then the measured window.
func drive(ctx context.Context, cfg Config, w *world, b *brokerProc, res *Result, logf func(string, ...any)) error {
	hc := httpClient(cfg.Connections)
	var (
		measuring atomic.Bool
		stop      atomic.Bool
		requests  atomic.Int64
		ok        atomic.Int64
		answered  atomic.Int64 // every 200, warm-up included
		prec      atomic.Int64
		mu        sync.Mutex
		errs      = map[string]int64{}
		lats      = make([][]time.Duration, cfg.Connections)
	)
	var wg sync.WaitGroup
	for g := 0; g < cfg.Connections; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(g), 99))
			lat := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
				e := w.caseworker[r.IntN(len(w.caseworker))]
				subject := pick(r, w.unflagged)
				if r.Float64() < cfg.FlaggedShare {
					subject = pick(r, w.flagged)
				}
				body := []byte(`{"subject":"` + subject + `","purpose":"meeting"}`)
				tok, err := e.signer.Token(e.emp, "POST", "/v1/checks", body)
				if err != nil {
					panic(err)
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", b.url+"/v1/checks", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				start := time.Now()
				resp, err := hc.Do(req)
				d := time.Since(start)
				m := measuring.Load()
				if err != nil {
					if m {
						mu.Lock()
						errs["transport"]++
						mu.Unlock()
						requests.Add(1)
					}
					continue
				}
				var out struct {
					Result string `json:"result"`
				}
				if resp.StatusCode == 200 {
					_ = json.NewDecoder(resp.Body).Decode(&out)
					answered.Add(1)
				}
				resp.Body.Close()
				if !m {
					continue
				}
				requests.Add(1)
				lat = append(lat, d)
				if resp.StatusCode == 200 {
					ok.Add(1)
					if out.Result == "precautions" {
						prec.Add(1)
					}
				} else {
					mu.Lock()
					errs[strconv.Itoa(resp.StatusCode)]++
					mu.Unlock()
				}
			}
			lats[g] = lat
		}(g)
	}

	logf("warming up for %s with %d connections", cfg.Warmup, cfg.Connections)
	time.Sleep(cfg.Warmup)
	cpu0, _ := procCPU(b.cmd.Process.Pid)
	measuring.Store(true)
	start := time.Now()
	ticker := time.NewTicker(5 * time.Second)
	last, lastAt := int64(0), start
	deadline := time.After(cfg.Duration)
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		case now := <-ticker.C:
			n := requests.Load()
			logf("t=%3.0fs  checks/s=%6.0f  total=%d  ok=%d", now.Sub(start).Seconds(), float64(n-last)/now.Sub(lastAt).Seconds(), n, ok.Load())
			last, lastAt = n, now
		}
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1, rss := procCPU(b.cmd.Process.Pid)
	stop.Store(true)
	wg.Wait()
	ticker.Stop()

	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	res.Requests, res.OK, res.Precautions = requests.Load(), ok.Load(), prec.Load()
	res.Errors = errs
	res.RPS = float64(res.Requests) / elapsed.Seconds()
	res.Latency = percentiles(all)
	res.BrokerCPU = cpu1 - cpu0
	if res.Requests > 0 {
		res.CPUPerRequest = res.BrokerCPU * 1000 / float64(res.Requests)
	}
	res.PeakRSSMiB = rss
	logf("measured %d checks in %.1f s: %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, errors %v",
		res.Requests, elapsed.Seconds(), res.RPS, res.Latency["p50"], res.Latency["p99"], res.Latency["max"], errs)
	res.Answered = answered.Load()
	return nil
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

// opaReference runs a stock OPA server on the same policies and drives
// the same disclosure decision over loopback HTTP.
func opaReference(ctx context.Context, cfg Config, w *world, res *Result, logf func(string, ...any)) error {
	bin := filepath.Join(os.TempDir(), "varsel-bench-opa")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/open-policy-agent/opa")
	build.Dir = cfg.RepoDir
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build opa: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, bin, "run", "--server", "--addr", addr, "--log-level", "error",
		"--ignore", "*_test.rego", filepath.Join(cfg.RepoDir, "policies"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start opa: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	hc := httpClient(cfg.Connections)
	url := "http://" + addr + "/v1/data/disclosure/decision"
	for i := 0; ; i++ {
		resp, err := hc.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 100 {
			return fmt.Errorf("opa server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stop atomic.Bool
	var n atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for g := 0; g < cfg.Connections; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(g), 7))
			var lat []time.Duration
			for !stop.Load() {
				e := w.caseworker[r.IntN(len(w.caseworker))]
				flags := []map[string]any{}
				if r.Float64() < cfg.FlaggedShare && len(w.flagMeta) > 0 {
					flags = w.flagMeta[r.IntN(len(w.flagMeta))]
				}
				in := map[string]any{"input": map[string]any{
					"principal": map[string]any{"agency": e.signer.Agency, "agency_kind": e.kind, "role": e.emp.Role, "office": e.emp.Office, "sub": e.emp.Sub},
					"purpose":   "meeting", "emergency": false, "flags": flags, "time": time.Now().UTC().Format(time.RFC3339Nano)}}
				body, _ := json.Marshal(in)
				start := time.Now()
				resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					continue
				}
				var out struct {
					Result struct {
						Allow bool `json:"allow"`
					} `json:"result"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == 200 && out.Result.Allow {
					n.Add(1)
					lat = append(lat, time.Since(start))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(g)
	}
	start := time.Now()
	time.Sleep(cfg.OPADuration)
	stop.Store(true)
	took := time.Since(start)
	wg.Wait()
	res.OPADecisions = n.Load()
	res.OPARate = float64(res.OPADecisions) / took.Seconds()
	res.OPALatencyP99 = percentiles(all)["p99"]
	if res.OPARate > 0 {
		res.OPARatio = res.RPS / res.OPARate
	}
	logf("stock OPA server: %d decisions in %.1f s = %.0f/s, p99 %.2f ms (ratio %.2f)", res.OPADecisions, took.Seconds(), res.OPARate, res.OPALatencyP99, res.OPARatio)
	return nil
}
