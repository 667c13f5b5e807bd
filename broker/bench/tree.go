package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

// What the audit log's Merkle tree costs: the same load against a broker
// restarted on the same database with `varsel serve --bench-without-tree`
// (audit entries appended without advancing the tree, no checkpoints), and
// the speed of `varsel audit verify` (audit.Verify, which rebuilds the
// tree) over the seeded log.

// TreeComparison is the window without the tree, measured right after the
// built-in generator's window with it.
type TreeComparison struct {
	Requests    int64              `json:"requests"`
	OK          int64              `json:"ok"`
	Errors      map[string]int64   `json:"errors"`
	RPS         float64            `json:"requests_per_second"`
	Latency     map[string]float64 `json:"latency_ms"`
	CPU         CPUShare           `json:"cpu"`
	PeakRSSMiB  float64            `json:"broker_peak_rss_mib"`
	PreSigned   int                `json:"pre_signed_requests"`
	SignSeconds float64            `json:"pre_sign_seconds"`
	Measured    time.Duration      `json:"measured_ns"`
	WindowCut   bool               `json:"window_cut_short,omitempty"`
	// RateRatio is checks/s with the tree over checks/s without it;
	// CPURatio the broker's CPU per check with it over without it.
	RateRatio float64 `json:"rate_with_over_without"`
	CPURatio  float64 `json:"broker_cpu_with_over_without"`
}

// compareWarmup is the warm-up of the window without the tree (the broker
// was just started; the database is warm from the window before).
const compareWarmup = 2 * time.Second

// compareTree restarts the broker without the tree on the same database
// and address (the broker with it must be stopped) and drives the same
// load as the window before: the same connections, share of flagged
// people and duration, from requests signed before it for 1.75 × the rate
// measured with the tree: what that window left (tokens bind the method,
// path and body, not the address), topped up. The tree is caught up
// afterwards, so that what follows runs on a log whose tree covers it.
func compareTree(ctx context.Context, cfg Config, w *world, dbURL string, pgPID int, left *leftover, res *Result, logf func(string, ...any)) error {
	b, err := startBroker(ctx, cfg.Binary, dbURL, w.keyDir, left.host, cfg.Connections, true)
	if err != nil { // the address was taken meanwhile: another, and all requests signed afresh
		logf("without the tree: %v; on another port", err)
		if b, err = startBroker(ctx, cfg.Binary, dbURL, w.keyDir, "127.0.0.1:0", cfg.Connections, true); err != nil {
			return fmt.Errorf("broker without the tree: %w", err)
		}
	}
	defer b.stop()
	logf("broker without the tree (--bench-without-tree): pid %d at %s", b.cmd.Process.Pid, b.url)
	host := strings.TrimPrefix(b.url, "http://")
	g := newGenerator(host, cfg.Connections)
	g.hitMarker = []byte(`"result":"precautions"`)
	defer g.close()

	rate := max(res.RPS, 100)
	warmN := int(rate*compareWarmup.Seconds()) + 10*cfg.Connections
	n := warmN + int(rate*cfg.Duration.Seconds()*1.75) + 50*cfg.Connections
	var reqs [][]byte
	if host == left.host && time.Since(left.signedAt)+compareWarmup+cfg.Duration+5*time.Second < tokenBudget {
		reqs = left.reqs[:min(n, len(left.reqs))]
	}
	signStart := time.Now()
	more, err := presign(ctx, w, host, n-len(reqs), cfg.FlaggedShare, 4)
	if err != nil {
		return err
	}
	c := &TreeComparison{PreSigned: n, SignSeconds: time.Since(signStart).Seconds()}
	logf("without the tree: %d requests left by the window, %d more pre-signed in %.1f s; warming up for %s", len(reqs), len(more), c.SignSeconds, compareWarmup)
	// The window's own requests go first: they are the oldest.
	reqs = append(reqs[:len(reqs):len(reqs)], more...)
	oldest := signStart
	if len(more) < n {
		oldest = left.signedAt
		if time.Since(oldest)+compareWarmup+cfg.Duration+2*time.Second > tokenBudget {
			// Signing the rest took the margin: the window's requests
			// would expire before this window ends, so they are signed
			// afresh too.
			fresh, err := presign(ctx, w, host, n-len(more), cfg.FlaggedShare, 5)
			if err != nil {
				return err
			}
			reqs, oldest = append(fresh, more...), signStart
			c.SignSeconds = time.Since(signStart).Seconds()
			logf("without the tree: the window's requests were signed afresh (%d)", len(fresh))
		}
	}
	if time.Since(oldest)+compareWarmup+cfg.Duration+2*time.Second > tokenBudget {
		return fmt.Errorf("without the tree: the tokens would expire before the window ends")
	}
	wp := g.run(ctx, &requestPool{reqs: reqs[:warmN]}, compareWarmup, nil)
	if wp.OK == 0 {
		return fmt.Errorf("without the tree: no check answered 200 in the warm-up (%s)", errorsText(wp.Errors))
	}
	meter := cpuMeter{serverPID: b.cmd.Process.Pid, pgPID: pgPID}
	c0 := meter.read()
	last, lastAt := int64(0), time.Duration(0)
	ph := g.run(ctx, &requestPool{reqs: reqs[warmN:]}, cfg.Duration, func(at time.Duration, n int64) {
		logf("without the tree: t=%3.0fs  checks/s=%6.0f  total=%d", at.Seconds(), float64(n-last)/(at-lastAt).Seconds(), n)
		last, lastAt = n, at
	})
	c1 := meter.read()
	if ph.Drained {
		logf("without the tree: the pre-signed requests ran out after %.1f s of the %s window: the window ends there", ph.Elapsed.Seconds(), cfg.Duration)
		c.WindowCut = true
	}
	c.Requests, c.OK, c.Errors, c.Measured = ph.Requests, ph.OK, ph.Errors, ph.Elapsed
	c.RPS = float64(ph.Requests) / ph.Elapsed.Seconds()
	c.Latency = percentiles(ph.Latency)
	c.CPU = share(c0, c1, ph.Requests, pgPID > 0)
	c.PeakRSSMiB = c1.rss
	if c.RPS > 0 {
		c.RateRatio = res.RPS / c.RPS
	}
	if c.CPU.ServerMs > 0 {
		c.CPURatio = res.CPUPerRequest / c.CPU.ServerMs
	}
	res.Answered += wp.Answered + ph.Answered // every answer must be audited, these too
	res.WithoutTree = c
	logf("without the tree: %d checks in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms, errors %v; CPU ms per check: generator %.3f, broker %.3f, postgres %.3f, other %.3f",
		c.Requests, ph.Elapsed.Seconds(), c.RPS, c.Latency["p50"], c.Latency["p99"], c.Errors,
		c.CPU.GeneratorMs, c.CPU.ServerMs, c.CPU.PostgresMs, c.CPU.OtherMs)
	logf("the tree's cost: checks/s with ÷ without %.3f, broker CPU per check with ÷ without %.3f", c.RateRatio, c.CPURatio)
	b.stop()

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	t0 := time.Now()
	size, err := auditpg.CatchUpTree(ctx, pool, 0)
	if err != nil {
		return fmt.Errorf("catch the tree up after the window without it: %w", err)
	}
	logf("caught the tree up to %d entries in %s", size, time.Since(t0).Round(time.Millisecond))
	return nil
}

// VerifyRun is `varsel audit verify`'s core (audit.Verify: every entry's
// hash, the chain, the Merkle tree rebuilt, checkpoints) over the log.
type VerifyRun struct {
	Entries     int64   `json:"entries"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"entries_per_second"`
	RootMatches bool    `json:"root_matches_stored_tree"`
	MachineBusy float64 `json:"machine_busy_cpu_seconds"`
	MachineCPUs float64 `json:"machine_cpu_seconds"`
}

// verifyLog runs audit.Verify over the whole log, as `varsel audit verify`
// does (streamed from PostgreSQL, hashing on every core, the tree on a
// goroutine of its own), and compares the root it rebuilt with the stored
// tree's.
func verifyLog(ctx context.Context, dbURL string, res *Result, logf func(string, ...any)) error {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := &auditpg.Store{Pool: pool}
	busy0, total0 := machineCPU()
	t0 := time.Now()
	rep, err := audit.Verify(ctx, store, nil, "")
	took := time.Since(t0)
	busy1, total1 := machineCPU()
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if !rep.OK() {
		return fmt.Errorf("audit verify: the seeded log is wrong at %d: %s", rep.FirstBad, rep.Problem)
	}
	head, err := store.Head(ctx)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	v := &VerifyRun{Entries: rep.Entries, Seconds: took.Seconds(), Rate: float64(rep.Entries) / took.Seconds(),
		RootMatches: head.Size == rep.Head.Seq && string(head.Root) == string(rep.Root),
		MachineBusy: busy1 - busy0, MachineCPUs: total1 - total0}
	if !v.RootMatches {
		return fmt.Errorf("audit verify: the rebuilt tree root is not the stored tree's (size %d, %d entries)", head.Size, rep.Entries)
	}
	res.Verify = v
	logf("audit verify: %d entries in %.2f s = %.0f entries/s (tree root = the stored one; machine busy %.1f of %.1f CPU s)",
		v.Entries, v.Seconds, v.Rate, v.MachineBusy, v.MachineCPUs)
	return nil
}
