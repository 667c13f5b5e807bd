// Package bench is Varsel's load tool: it seeds a database with flags and
// audit entries, runs the broker as a separate process, drives
// POST /v1/checks with freshly signed requests from many connections, and
// measures two references on the same machine in the same run: the bare
// group-commit ceiling of the audit writer, and a stock OPA server
// evaluating the same policy over loopback HTTP.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/client"
	"varsel/schema"
)

// Config is one load run.
type Config struct {
	ServerURL    string        // a PostgreSQL server where a fresh database is created
	Binary       string        // the varsel binary to run as the broker
	RepoDir      string        // the repository (policies/ and go.mod for the OPA reference)
	Flags        int           // flags to seed (default 1,000,000)
	Entries      int           // audit entries to seed (default 10,000,000)
	Connections  int           // concurrent connections (default 64)
	Duration     time.Duration // measured load (default 60 s)
	Warmup       time.Duration // unmeasured load first (default 3 s)
	FlaggedShare float64       // share of checks on flagged people (default 0.1)
	OPADuration  time.Duration // the OPA reference's run (default min(Duration, 15 s)); 0 with SkipOPA
	SkipOPA      bool
	SkipPaced    bool          // no paced runs of the broker after its window
	Alg          string        // the agencies' key algorithm: ES256 (default) or EdDSA
	Out          string        // JSON result file ("" for none)
	Command      string        // how the run was started, for the report
	Log          io.Writer     // progress lines
	KeepDB       bool          // keep the database afterwards
	Tokens       int           // requests to pre-sign for the window (default: from the warm-up's rate)
	Wrk          string        // also drive with wrk: off (default), auto (when deploy/wrk.sh finds or installs it) or on
	FloorRound   time.Duration // one round of the cost floor (default 300 ms; 5 rounds per algorithm)
	CompareTree  bool          // after the window, the same load on a broker without the audit tree (--bench-without-tree)
	SkipVerify   bool          // do not time audit.Verify over the seeded log
	// Self is a varsel-bench binary to run the stack reference's server
	// from ("varsel-bench stack-server"); "" skips the reference.
	Self          string
	StackDuration time.Duration // each of the stack reference's two runs and of the broker's paced runs (default min(Duration, 15 s))
}

func (c *Config) defaults() {
	if c.Flags == 0 {
		c.Flags = 1_000_000
	}
	if c.Entries == 0 {
		c.Entries = 10_000_000
	}
	if c.Connections == 0 {
		c.Connections = 64
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 3 * time.Second
	}
	if c.FlaggedShare == 0 {
		c.FlaggedShare = 0.1
	}
	if c.OPADuration == 0 {
		c.OPADuration = min(c.Duration, 15*time.Second)
	}
	if c.StackDuration == 0 {
		c.StackDuration = min(c.Duration, 15*time.Second)
	}
	if c.Alg == "" {
		c.Alg = "ES256"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.FloorRound == 0 {
		c.FloorRound = 300 * time.Millisecond
	}
}

// Result is what a run measured.
type Result struct {
	Machine string `json:"machine"`
	// Postgres is the server's version and the settings that decide its
	// cost at full size (shared_buffers, max_wal_size, ...), as SHOW gives them.
	Postgres    string        `json:"postgres,omitempty"`
	Command     string        `json:"command"`
	StartedAt   time.Time     `json:"started_at"`
	Flags       int           `json:"flags"`
	Entries     int           `json:"entries_seeded"`
	Connections int           `json:"connections"`
	Alg         string        `json:"alg"`
	Duration    time.Duration `json:"duration_ns"`
	SeedSeconds float64       `json:"seed_seconds"`

	Requests      int64              `json:"requests"`
	OK            int64              `json:"ok"`
	Precautions   int64              `json:"precautions"`
	Errors        map[string]int64   `json:"errors"`
	RPS           float64            `json:"requests_per_second"`
	Latency       map[string]float64 `json:"latency_ms"` // p50 p90 p99 max
	BrokerCPU     float64            `json:"broker_cpu_seconds"`
	CPUPerRequest float64            `json:"broker_cpu_ms_per_request"`
	PeakRSSMiB    float64            `json:"broker_peak_rss_mib"`
	Answered      int64              `json:"answered_200_total"`
	Audited       int64              `json:"audited_checks"`
	AllAudited    bool               `json:"every_answer_audited"`
	Generator     string             `json:"generator"`
	PreSigned     int                `json:"pre_signed_requests"`
	SignSeconds   float64            `json:"pre_sign_seconds"`
	Measured      time.Duration      `json:"measured_ns"`
	WindowCut     bool               `json:"window_cut_short,omitempty"` // the pre-signed requests ran out
	CPU           CPUShare           `json:"cpu"`
	Floor         Floor              `json:"floor"`
	FloorRatio    float64            `json:"broker_cpu_per_check_over_p256_verify"`

	CeilingRows   int64              `json:"ceiling_rows"`
	CeilingRate   float64            `json:"group_commit_rows_per_second"`
	CeilingRatio  float64            `json:"ratio_to_group_commit"`
	OPADecisions  int64              `json:"opa_decisions"`
	OPARate       float64            `json:"opa_decisions_per_second"`
	OPARatio      float64            `json:"ratio_to_opa"`
	OPALatencyP99 float64            `json:"opa_p99_ms"`
	OPALatency    map[string]float64 `json:"opa_latency_ms,omitempty"`
	OPAErrors     map[string]int64   `json:"opa_errors,omitempty"`
	OPACPU        CPUShare           `json:"opa_cpu"`

	Wrk *WrkResult `json:"wrk,omitempty"`

	// Stack is the stack reference: echo alone, and echo with the
	// signature, driven as the broker was.
	Stack *StackReference `json:"stack,omitempty"`
	// Paced is the broker driven again below its window's rate.
	Paced []*PacedRun `json:"paced,omitempty"`

	WithoutTree *TreeComparison `json:"without_tree,omitempty"`
	Verify      *VerifyRun      `json:"verify,omitempty"`
}

// GeneratorName describes the built-in load generator in reports.
const GeneratorName = "varsel-bench's own (raw HTTP/1.1, keep-alive)"

// Run performs a whole load run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	res := &Result{Command: cfg.Command, StartedAt: time.Now().UTC(), Flags: cfg.Flags, Entries: cfg.Entries, Connections: cfg.Connections, Alg: cfg.Alg,
		Duration: cfg.Duration, Errors: map[string]int64{}, Machine: machine()}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, format+"\n", args...) }

	wrkBin, err := findWrk(ctx, cfg.Wrk, cfg.RepoDir, logf)
	if err != nil {
		return nil, err
	}
	if cfg.Duration+cfg.Warmup > tokenBudget-30*time.Second {
		return nil, fmt.Errorf("--duration %s is too long: the window's pre-signed tokens live %s", cfg.Duration, auth.MaxLifetime)
	}
	dbURL, drop, err := createDatabase(ctx, cfg.ServerURL)
	if err != nil {
		return nil, err
	}
	if !cfg.KeepDB {
		defer drop()
	}
	logf("database %s", redact(dbURL))

	seedStart := time.Now()
	w, err := seed(ctx, dbURL, cfg, logf)
	if err != nil {
		return nil, err
	}
	if !cfg.KeepDB { // the keys are only good for the database
		defer os.RemoveAll(w.keyDir)
	} else {
		logf("keeping the database and the broker's keys in %s", w.keyDir)
	}
	res.SeedSeconds = time.Since(seedStart).Seconds()
	logf("seeded %d flags and %d audit entries in %.1f s", cfg.Flags, cfg.Entries, res.SeedSeconds)

	if !cfg.SkipVerify {
		if err := verifyLog(ctx, dbURL, res, logf); err != nil {
			return nil, err
		}
	}

	pgPID := postmasterPID(ctx, dbURL)
	res.Postgres = postgresSettings(ctx, dbURL)
	if pgPID == 0 {
		logf("PostgreSQL is not a local process: its CPU is not measured")
	}

	res.Floor = measureFloor(cfg.FloorRound, 5)
	logf("cost floor (one core, thread CPU): P-256 ECDSA verify %.1f µs, Ed25519 verify %.1f µs", res.Floor.P256VerifyUs, res.Floor.Ed25519VerifyUs)

	b, err := startBroker(ctx, cfg.Binary, dbURL, w.keyDir, "127.0.0.1:0", cfg.Connections, false)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	logf("broker pid %d at %s", b.cmd.Process.Pid, b.url)

	res.Generator = GeneratorName
	left, err := drive(ctx, cfg, w, b, pgPID, res, logf)
	if err != nil {
		return nil, err
	}
	if res.Floor.P256VerifyUs > 0 {
		res.FloorRatio = res.CPUPerRequest * 1000 / res.Floor.P256VerifyUs
	}
	if cfg.CompareTree {
		// Right after the window: the same load on the same database,
		// the broker restarted without the tree; then (for wrk) with it
		// again.
		b.stop()
		if err := compareTree(ctx, cfg, w, dbURL, pgPID, left, res, logf); err != nil {
			return nil, err
		}
		if wrkBin != "" || !cfg.SkipPaced {
			if b, err = startBroker(ctx, cfg.Binary, dbURL, w.keyDir, "127.0.0.1:0", cfg.Connections, false); err != nil {
				return nil, err
			}
			defer b.stop()
			logf("broker with the tree again: pid %d at %s", b.cmd.Process.Pid, b.url)
		}
	}
	var tmp string
	if wrkBin != "" {
		if tmp, err = os.MkdirTemp("", "varsel-bench-wrk"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		res.Wrk = &WrkResult{Binary: wrkBin, Threads: wrkThreads()}
		if err := wrkBroker(ctx, cfg, w, b, pgPID, wrkBin, tmp, res, logf); err != nil {
			return nil, err
		}
	}
	// Last on the broker, so that the windows above stay back to back.
	if !cfg.SkipPaced {
		if err := pacedBroker(ctx, cfg, w, b, pgPID, res, logf); err != nil {
			return nil, err
		}
	}
	b.stop()

	if cfg.Self != "" {
		if err := stackReference(ctx, cfg, w, res, logf); err != nil {
			return nil, err
		}
	}
	if err := ceiling(ctx, dbURL, cfg, res, logf); err != nil {
		return nil, err
	}
	if !cfg.SkipOPA {
		o, err := startOPA(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer o.stop()
		if err := opaReference(ctx, cfg, w, o, res, logf); err != nil {
			return nil, err
		}
		if res.Wrk != nil {
			if err := wrkOPA(ctx, cfg, w, o, wrkBin, tmp, res, logf); err != nil {
				return nil, err
			}
		}
		o.stop()
	}
	if cfg.Out != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.Out, append(data, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s/%s, %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return p.Redacted()
}

// createDatabase makes a fresh, migrated database on the server.
func createDatabase(ctx context.Context, server string) (string, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "varsel_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", redact(server), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, _ := url.Parse(server)
	u.Path = "/" + name
	dbURL := u.String()
	if _, err := schema.Migrate(ctx, dbURL); err != nil {
		return "", nil, err
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), server)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	}
	return dbURL, drop, nil
}

// percentiles of latencies (sorted in place), in milliseconds.
func percentiles(lat []time.Duration) map[string]float64 {
	out := map[string]float64{}
	if len(lat) == 0 {
		return out
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)].Microseconds()) / 1000
	}
	out["p50"], out["p90"], out["p99"], out["max"] = at(0.50), at(0.90), at(0.99), at(1)
	return out
}

// people hands out distinct synthetic national ids (month + 40 for flagged
// people, month + 80 for the others), valid under --test-subjects.
type people struct{ next int }

func (p *people) take(plus int) string {
	p.next++
	return broker.SyntheticNumber(p.next, plus)
}

// world is what the seed made: agencies with signers, and the people.
type world struct {
	keyDir     string
	caseworker []employee // who runs checks
	flagged    []string
	unflagged  []string
	flagMeta   [][]map[string]any // for the OPA reference: flags per flagged person
	subjects   *broker.SubjectHasher
	keys       []stackKey // the agencies' public keys, for the stack reference
}

type employee struct {
	signer *client.Signer
	emp    client.Employee
	kind   string
}

func pick[T any](r *mrand.Rand, s []T) T { return s[r.IntN(len(s))] }
