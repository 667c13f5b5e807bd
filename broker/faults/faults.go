// Package faults is Varsel's fault harness: it starts, on this machine, a
// PostgreSQL primary with a synchronous streaming standby, three `varsel
// serve` replicas on one multi-host URL (target_session_attrs=read-write),
// and a steady load of signed checks, flag writes, warnings and their
// acknowledgements spread round robin over the replicas; then it injects
// one fault at a time under that load and checks, after each, that every
// 2xx answer is in the log (by seq and hash), no seq is claimed twice and
// none is missing, `varsel audit verify` passes, no token was accepted
// twice, and how long the replicas took to serve again. It runs as
// `varsel-bench faults` and, in a short version, in `go test`.
package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/broker/client"
	"varsel/schema"
)

// Fault names, in the order of a full run (the failover last: after it
// the promoted standby runs without a standby of its own).
const (
	FaultKill9    = "kill9"
	FaultSIGTERM  = "sigterm"
	FaultRolling  = "rolling"
	FaultClock    = "clock"
	FaultVault    = "vault"
	FaultFreeze   = "freeze"
	FaultWALFull  = "walfull"
	FaultFailover = "failover"
)

// AllFaults is the full run.
var AllFaults = []string{FaultKill9, FaultSIGTERM, FaultRolling, FaultClock, FaultVault, FaultFreeze, FaultWALFull, FaultFailover}

// Config is one harness run.
type Config struct {
	Binary   string   // the varsel binary
	RepoDir  string   // the repository (deploy/vault/setup.sh)
	VaultBin string   // a vault binary: --keys vault and the Vault fault ("" skips both)
	Faults   []string // default AllFaults
	Rate     int      // requests per second over all replicas (default 150)
	Workers  int      // concurrent requests at most (default 16)
	Before   time.Duration
	Hold     time.Duration // how long a fault lasts before it is repaired (default 3 s; the freeze is 10 s)
	Freeze   time.Duration // default 10 s
	After    time.Duration // load after every replica serves again (default 3 s)
	Command  string        // how the run was started, for the report
	Log      io.Writer
	Keep     bool // keep the working directory
}

func (c *Config) defaults() {
	if len(c.Faults) == 0 {
		c.Faults = AllFaults
	}
	if c.Rate == 0 {
		c.Rate = 150
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.Before == 0 {
		c.Before = 3 * time.Second
	}
	if c.Hold == 0 {
		c.Hold = 3 * time.Second
	}
	if c.Freeze == 0 {
		c.Freeze = 10 * time.Second
	}
	if c.After == 0 {
		c.After = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Row is what one fault measured.
type Row struct {
	Fault          string         `json:"fault"`
	What           string         `json:"what"`
	Skipped        string         `json:"skipped,omitempty"`
	Sent           int            `json:"sent"`
	OK             int            `json:"ok_2xx"`
	Unavailable    int            `json:"status_503"`
	Conn           int            `json:"connection_errors"`
	Other          int            `json:"other"`
	ReplaysRefused int            `json:"replays_refused"`
	Codes          map[string]int `json:"codes"` // every non-2xx by status and code
	Checked        int            `json:"receipts_checked"`
	Lost           int            `json:"lost"`
	DuplicateSeq   int            `json:"duplicate_seq"`
	MissingSeq     int64          `json:"missing_seq"`
	TwiceAccepted  int            `json:"token_accepted_twice"`
	NoEntry        int            `json:"ok_without_entry"`
	Verify         string         `json:"audit_verify"`
	Entries        int64          `json:"log_entries"`
	Window         float64        `json:"fault_seconds"`      // injection to repair
	Disrupted      float64        `json:"disrupted_seconds"`  // first to last failed answer
	Recover        float64        `json:"recover_seconds"`    // repair to every replica answering 2xx again
	Checkpoint     float64        `json:"checkpoint_seconds"` // repair to the next signed checkpoint (Vault)
	Notes          []string       `json:"notes,omitempty"`
}

// Pass reports whether the row shows nothing acknowledged lost.
func (r *Row) Pass() bool {
	return r.Skipped != "" || (r.Lost == 0 && r.DuplicateSeq == 0 && r.MissingSeq == 0 && r.TwiceAccepted == 0 &&
		r.NoEntry == 0 && r.Verify == "ok" && r.Recover >= 0 && r.OK > 0)
}

// Result is a whole run.
type Result struct {
	Machine   string    `json:"machine"`
	Command   string    `json:"command"`
	StartedAt time.Time `json:"started_at"`
	Postgres  string    `json:"postgres"`
	Keys      string    `json:"keys"`
	Rate      int       `json:"rate"`
	Rows      []Row     `json:"rows"`
}

// Pass reports whether every row passed.
func (r *Result) Pass() bool {
	for i := range r.Rows {
		if !r.Rows[i].Pass() {
			return false
		}
	}
	return true
}

// harness is the running system under test.
type harness struct {
	cfg       Config
	base      string
	primary   *pgNode
	standby   *pgNode
	url       string // the brokers' multi-host URL
	replicas  []*replica
	vault     *vaultServer
	load      *load
	keyFile   string // the checkpoint verifier key
	logf      func(string, ...any)
	seqs      map[int64]string // every seq a 2xx claimed, with its token id
	jtis      map[string]bool  // every token id a 2xx accepted
	pgVersion string
}

// Run starts the system, injects each fault under load and measures it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	res := &Result{Machine: machine(), Command: cfg.Command, StartedAt: time.Now().UTC(), Rate: cfg.Rate, Keys: "file"}
	h := &harness{cfg: cfg, seqs: map[int64]string{}, jtis: map[string]bool{},
		logf: func(f string, a ...any) { fmt.Fprintf(cfg.Log, "faults: "+f+"\n", a...) }}
	if cfg.VaultBin != "" {
		res.Keys = "vault"
	}
	defer h.close()
	if err := h.setup(ctx); err != nil {
		return nil, err
	}
	res.Postgres = h.pgVersion
	for _, f := range cfg.Faults {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		row, err := h.run(ctx, f)
		if err != nil {
			return res, fmt.Errorf("fault %s: %w", f, err)
		}
		h.logf("%s: sent %d, 2xx %d, 503 %d, conn %d, other %d, lost %d, dup %d, verify %s, recovered in %.2f s",
			f, row.Sent, row.OK, row.Unavailable, row.Conn, row.Other, row.Lost, row.DuplicateSeq, row.Verify, row.Recover)
		res.Rows = append(res.Rows, *row)
	}
	return res, nil
}

func (h *harness) setup(ctx context.Context) error {
	base, err := os.MkdirTemp("", "varsel-faults-")
	if err != nil {
		return err
	}
	h.base = base
	if err := os.Chmod(base, 0o755); err != nil {
		return err
	}
	bin, err := pgBin()
	if err != nil {
		return err
	}
	owner := ""
	if os.Geteuid() == 0 {
		owner = "postgres"
	}
	var ports [7]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	h.primary = &pgNode{name: "pg1", bin: bin, dir: filepath.Join(base, "pg1", "data"), run: filepath.Join(base, "pg1", "run"),
		walDir: filepath.Join(base, "pg1", "wal"), port: ports[0], owner: owner}
	h.standby = &pgNode{name: "pg2", bin: bin, dir: filepath.Join(base, "pg2", "data"), run: filepath.Join(base, "pg2", "run"),
		port: ports[1], owner: owner}
	for _, d := range []string{filepath.Join(base, "pg1"), filepath.Join(base, "pg2")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := h.primary.chown(d); err != nil {
			return err
		}
	}
	// The WAL volume: 48 MB, so a full one is reached in seconds.
	if err := h.primary.initPrimary(48, os.Geteuid() == 0 && contains(h.cfg.Faults, FaultWALFull)); err != nil {
		return err
	}
	if err := h.primary.start(); err != nil {
		return err
	}
	if err := h.primary.queryRow(ctx, "postgres", "SELECT version()", &h.pgVersion); err != nil {
		return err
	}
	h.pgVersion = strings.Join(strings.Fields(h.pgVersion)[:2], " ")
	if c, err := pgx.Connect(ctx, h.primary.url("postgres")); err != nil {
		return err
	} else {
		// No standby yet: commit locally while the database is made.
		_, err := c.Exec(ctx, "SET synchronous_commit = local")
		if err == nil {
			_, err = c.Exec(ctx, "CREATE DATABASE varsel")
		}
		c.Close(ctx)
		if err != nil {
			return err
		}
	}
	if err := h.standby.initStandby(h.primary); err != nil {
		return err
	}
	if err := h.standby.start(); err != nil {
		return err
	}
	if err := h.primary.waitSync(ctx, "pg2", 30*time.Second); err != nil {
		return err
	}
	h.logf("postgres %s: primary 127.0.0.1:%d, synchronous standby 127.0.0.1:%d (wal on tmpfs: %v)", h.pgVersion, h.primary.port, h.standby.port, h.primary.walFS)
	h.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/varsel?sslmode=disable&target_session_attrs=read-write&connect_timeout=2",
		h.primary.port, h.standby.port)
	if _, err := schema.Migrate(ctx, h.url); err != nil {
		return err
	}

	keys := "file:" + keyDir(base)
	var env []string
	if h.cfg.VaultBin != "" {
		h.vault = &vaultServer{binary: h.cfg.VaultBin, dir: filepath.Join(base, "vault"), port: ports[2]}
		if err := h.vault.start(ctx); err != nil {
			return err
		}
		tok, err := h.vault.brokerToken(h.cfg.RepoDir)
		if err != nil {
			return err
		}
		keys = "vault"
		env = append(env, "VAULT_ADDR="+h.vault.addr(), "VAULT_TOKEN="+tok)
		h.logf("vault at %s (file storage, unsealed)", h.vault.addr())
	}
	env = append(env, "VARSEL_DATABASE_URL="+h.url)

	police, err := h.agency("fault-pd", "police")
	if err != nil {
		return err
	}
	nav, err := h.agency("fault-nav", "nav-state", "nav-a", "nav-b")
	if err != nil {
		return err
	}
	args := []string{"--log-format", "json", "--test-subjects", "--office-hours", "", "--keys", keys,
		"--max-db-conns", "8", "--shutdown-timeout", "10s", "--checkpoint-interval", "2s"}
	for i := 0; i < 3; i++ {
		r := &replica{i: i, binary: h.cfg.Binary, port: ports[3+i], args: args, env: env,
			logPath: filepath.Join(base, fmt.Sprintf("replica-%d.log", i))}
		if err := r.start(ctx); err != nil {
			return err
		}
		h.replicas = append(h.replicas, r)
	}
	var urls []string
	for _, r := range h.replicas {
		urls = append(urls, r.url())
	}
	h.logf("replicas at %s", strings.Join(urls, " "))
	c := &client.Client{BaseURL: urls[0], Signer: nav, Employee: client.Employee{Sub: "auditor", Role: "caseworker", Office: "nav-a"}}
	resp, err := c.Do(ctx, "GET", "/v1/audit/key", nil)
	if err != nil || resp.Status != 200 {
		return fmt.Errorf("GET /v1/audit/key: %v %v", err, resp)
	}
	h.keyFile = filepath.Join(base, "checkpoint.pub")
	if err := os.WriteFile(h.keyFile, resp.Body, 0o644); err != nil {
		return err
	}
	h.load = newLoad(urls, police, nav, h.cfg.Rate, h.cfg.Workers)
	return nil
}

// agency registers an agency with a fresh ES256 key through the CLI.
func (h *harness) agency(id, kind string, offices ...string) (*client.Signer, error) {
	priv, pub := filepath.Join(h.base, id+".jwk"), filepath.Join(h.base, id+".jwks")
	if err := h.varsel("keygen", "--alg", "ES256", "--kid", id+"-1", "--out", priv, "--jwks-out", pub); err != nil {
		return nil, err
	}
	args := []string{"agency", "add", "--id", id, "--kind", kind, "--name", "Fault " + id, "--jwks", pub, "--operator", "faults"}
	for _, o := range offices {
		args = append(args, "--office", o)
	}
	if err := h.varsel(args...); err != nil {
		return nil, err
	}
	return client.LoadSigner(id, priv)
}

func (h *harness) varsel(args ...string) error {
	cmd := exec.Command(h.cfg.Binary, args...)
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+h.url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("varsel %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (h *harness) close() {
	for _, r := range h.replicas {
		r.stop()
	}
	if h.vault != nil {
		h.vault.stop()
	}
	if h.standby != nil {
		h.standby.stop()
	}
	if h.primary != nil {
		if h.primary.running() {
			_ = h.primary.signal(syscall.SIGCONT)
			h.primary.stop()
		}
		h.primary.unmount()
	}
	if h.base != "" && !h.cfg.Keep {
		os.RemoveAll(h.base)
	} else if h.base != "" {
		h.logf("kept %s", h.base)
	}
}

var descriptions = map[string]string{
	FaultKill9:    "kill -9 of one replica, restarted after the hold",
	FaultSIGTERM:  "SIGTERM of one replica (graceful drain), restarted after it exits",
	FaultRolling:  "all three replicas restarted one by one (SIGTERM, start, ready, next)",
	FaultClock:    "one replica restarted with its clock 30 s ahead, then back",
	FaultVault:    "the Vault server stopped, then started and unsealed (--keys vault)",
	FaultFreeze:   "the Postgres primary frozen (SIGSTOP of every process), then SIGCONT",
	FaultWALFull:  "the primary's WAL volume (a 48 MB tmpfs) filled to the last byte, then freed",
	FaultFailover: "the Postgres primary killed (kill -9 of every process), the standby promoted (pg_ctl promote)",
}

// run measures one fault.
func (h *harness) run(ctx context.Context, fault string) (*Row, error) {
	row := &Row{Fault: fault, What: descriptions[fault], Codes: map[string]int{}}
	switch {
	case fault == FaultVault && h.vault == nil:
		row.Skipped = "no vault binary (VARSEL_VAULT_BIN)"
		return row, nil
	case fault == FaultWALFull && !h.primary.walFS:
		row.Skipped = "no tmpfs for the WAL (needs root)"
		return row, nil
	case fault == FaultWALFull && !h.primary.running():
		row.Skipped = "the original primary is gone (after the failover)"
		return row, nil
	case descriptions[fault] == "":
		return nil, fmt.Errorf("unknown fault %q", fault)
	}
	h.load.start()
	time.Sleep(h.cfg.Before) // steady load before the fault: the time is the measurement
	injected := time.Now()
	repaired, err := h.inject(ctx, fault, row)
	if err != nil {
		h.load.finish()
		return nil, err
	}
	row.Window = repaired.Sub(injected).Seconds()
	// Load until every replica has answered 2xx since the repair, then a
	// little more; at most a minute.
	deadline := time.Now().Add(60 * time.Second)
	for !h.servedSince(repaired) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(h.cfg.After)
	outs := h.load.finish()
	if fault == FaultVault {
		row.Checkpoint = h.checkpointAfter(ctx, repaired)
	}
	h.tally(row, outs, injected, repaired)
	if err := h.verify(ctx, row, outs); err != nil {
		return nil, err
	}
	return row, nil
}

// inject causes the fault, holds it, repairs it, and returns when the
// repair began.
func (h *harness) inject(ctx context.Context, fault string, row *Row) (time.Time, error) {
	r1 := h.replicas[1]
	switch fault {
	case FaultKill9:
		if err := r1.signal(syscall.SIGKILL, 10*time.Second); err != nil {
			return time.Time{}, err
		}
		time.Sleep(h.cfg.Hold)
		t := time.Now()
		return t, r1.start(ctx)
	case FaultSIGTERM:
		start := time.Now()
		if err := r1.signal(syscall.SIGTERM, 30*time.Second); err != nil {
			return time.Time{}, err
		}
		row.Notes = append(row.Notes, fmt.Sprintf("Drained and exited in %.2f s", time.Since(start).Seconds()))
		time.Sleep(h.cfg.Hold)
		t := time.Now()
		return t, r1.start(ctx)
	case FaultRolling:
		for _, r := range h.replicas {
			if err := r.signal(syscall.SIGTERM, 30*time.Second); err != nil {
				return time.Time{}, err
			}
			if err := r.start(ctx); err != nil {
				return time.Time{}, err
			}
		}
		return time.Now(), nil
	case FaultClock:
		r2 := h.replicas[2]
		if err := r2.signal(syscall.SIGTERM, 30*time.Second); err != nil {
			return time.Time{}, err
		}
		if err := r2.start(ctx, "--clock-offset", "30s"); err != nil {
			return time.Time{}, err
		}
		time.Sleep(h.cfg.Hold + h.cfg.Before)
		if err := r2.signal(syscall.SIGTERM, 30*time.Second); err != nil {
			return time.Time{}, err
		}
		t := time.Now()
		return t, r2.start(ctx)
	case FaultVault:
		h.vault.stop()
		time.Sleep(h.cfg.Hold + h.cfg.Before)
		t := time.Now()
		return t, h.vault.start(ctx)
	case FaultFreeze:
		if err := h.primary.signal(syscall.SIGSTOP); err != nil {
			return time.Time{}, err
		}
		time.Sleep(h.cfg.Freeze)
		t := time.Now()
		return t, h.primary.signal(syscall.SIGCONT)
	case FaultWALFull:
		filler, err := h.primary.fillWAL()
		if err != nil {
			return time.Time{}, err
		}
		// Make the server need a new WAL segment now rather than when the
		// load would fill the current one.
		end := time.Now().Add(h.cfg.Hold + h.cfg.Before)
		for time.Now().Before(end) && h.primary.running() {
			var lsn string
			_ = h.primary.queryRow(ctx, "postgres", "SELECT pg_switch_wal()::text", &lsn)
			time.Sleep(200 * time.Millisecond)
		}
		crashed := !h.primary.running()
		if !crashed {
			time.Sleep(time.Until(end))
		}
		t := time.Now()
		if err := os.Remove(filler); err != nil {
			return t, err
		}
		if log, err := os.ReadFile(filepath.Join(filepath.Dir(h.primary.dir), "pg1.log")); err == nil {
			if strings.Contains(string(log), "No space left on device") {
				row.Notes = append(row.Notes, "Postgres logged \"No space left on device\"")
			}
			if strings.Contains(string(log), "PANIC") {
				row.Notes = append(row.Notes, "Postgres PANICked and restarted")
			}
		}
		if !h.primary.running() {
			row.Notes = append(row.Notes, "The primary stopped; it was started again once the volume was freed, and the standby caught up")
			if err := h.primary.start(); err != nil {
				return t, err
			}
		}
		return t, h.primary.waitSync(ctx, "pg2", 60*time.Second)
	case FaultFailover:
		var state string
		if err := h.primary.queryRow(ctx, "postgres", "SELECT coalesce(max(sync_state), 'none') FROM pg_stat_replication WHERE application_name = 'pg2'", &state); err != nil {
			return time.Time{}, err
		}
		row.Notes = append(row.Notes, fmt.Sprintf("When the primary was killed the standby's sync_state was %q", state))
		if err := h.primary.kill(); err != nil {
			return time.Time{}, err
		}
		time.Sleep(h.cfg.Hold)
		t := time.Now()
		if err := h.standby.promote(); err != nil {
			return t, err
		}
		if err := h.standby.waitPrimary(ctx, 30*time.Second); err != nil {
			return t, err
		}
		row.Notes = append(row.Notes, fmt.Sprintf("pg_ctl promote took %.2f s; the brokers were not restarted", time.Since(t).Seconds()))
		h.primary, h.standby = h.standby, h.primary
		h.standby.unmount()
		h.standby = nil
		return t, nil
	}
	return time.Time{}, fmt.Errorf("unknown fault %q", fault)
}

// servedSince reports whether every replica answered a 2xx after t.
func (h *harness) servedSince(t time.Time) bool {
	h.load.mu.Lock()
	defer h.load.mu.Unlock()
	seen := make([]bool, len(h.replicas))
	for i := len(h.load.outcomes) - 1; i >= 0; i-- {
		o := h.load.outcomes[i]
		if o.at.Before(t) {
			break
		}
		if o.kind != kindReplay && o.status >= 200 && o.status < 300 {
			seen[o.replica] = true
		}
	}
	for _, s := range seen {
		if !s {
			return false
		}
	}
	return true
}

// tally counts the answers of the phase and the times.
func (h *harness) tally(row *Row, outs []outcome, injected, repaired time.Time) {
	sort.Slice(outs, func(i, j int) bool { return outs[i].at.Before(outs[j].at) })
	var firstFail, lastFail time.Time
	recovered := make([]time.Time, len(h.replicas))
	for _, o := range outs {
		row.Sent++
		ok := o.status >= 200 && o.status < 300
		switch {
		case o.kind == kindReplay && o.status == 401 && o.code == "replayed":
			row.ReplaysRefused++
			continue
		case ok:
			row.OK++
			if o.noEntry {
				row.NoEntry++
			}
			if !o.at.Before(repaired) && recovered[o.replica].IsZero() && o.kind != kindReplay {
				recovered[o.replica] = o.at
			}
			continue
		case o.status == 0:
			row.Conn++
			row.Codes["connection error"]++
		case o.status == 503:
			row.Unavailable++
			row.Codes[fmt.Sprintf("503 %s", o.code)]++
		default:
			row.Other++
			row.Codes[fmt.Sprintf("%d %s %s", o.status, o.code, o.kind)]++
		}
		if firstFail.IsZero() {
			firstFail = o.at
		}
		lastFail = o.at
	}
	if !firstFail.IsZero() {
		row.Disrupted = lastFail.Sub(firstFail).Seconds()
	}
	row.Recover = 0
	for _, t := range recovered {
		if t.IsZero() {
			row.Recover = -1 // a replica never served again
			return
		}
		row.Recover = max(row.Recover, t.Sub(repaired).Seconds())
	}
}

// verify checks the phase's receipts against the log and runs varsel
// audit verify.
func (h *harness) verify(ctx context.Context, row *Row, outs []outcome) error {
	var conn *pgx.Conn
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err = pgx.Connect(cctx, h.url)
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("connect for verification: %w", err)
	}
	defer conn.Close(context.Background())
	type logged struct{ hash, jti string }
	log := map[int64]logged{}
	rows, err := conn.Query(ctx, `SELECT seq, hash, request_jti FROM audit_entries`)
	if err != nil {
		return err
	}
	var maxSeq int64
	for rows.Next() {
		var seq int64
		var l logged
		if err := rows.Scan(&seq, &l.hash, &l.jti); err != nil {
			rows.Close()
			return err
		}
		log[seq] = l
		maxSeq = max(maxSeq, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	row.Entries = int64(len(log))
	row.MissingSeq = maxSeq - int64(len(log))
	for _, o := range outs {
		if o.status < 200 || o.status >= 300 || o.noEntry {
			continue
		}
		row.Checked++
		if l, ok := log[o.seq]; !ok || l.hash != o.hash || l.jti != o.jti {
			row.Lost++
		}
		if prev, ok := h.seqs[o.seq]; ok && prev != o.jti {
			row.DuplicateSeq++
		}
		h.seqs[o.seq] = o.jti
		if h.jtis[o.jti] {
			row.TwiceAccepted++
		}
		h.jtis[o.jti] = true
	}
	cmd := exec.CommandContext(ctx, h.cfg.Binary, "audit", "verify", "--checkpoint-key", h.keyFile)
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+h.url)
	out, err := cmd.CombinedOutput()
	row.Verify = "ok"
	if err != nil {
		row.Verify = "FAILED: " + strings.Join(strings.Fields(string(out)), " ")
	}
	return nil
}

// checkpointAfter is how long after t the next checkpoint was stored.
func (h *harness) checkpointAfter(ctx context.Context, t time.Time) float64 {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := pgx.Connect(ctx, h.url)
		if err == nil {
			var at time.Time
			err = c.QueryRow(ctx, `SELECT coalesce(max(created_at), 'epoch') FROM audit_checkpoints`).Scan(&at)
			c.Close(ctx)
			if err == nil && at.After(t) {
				return at.Sub(t).Seconds()
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return -1
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
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
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// ErrFailed is returned by callers when a run's rows do not all pass.
var ErrFailed = errors.New("a fault lost or duplicated an acknowledged entry, or a replica did not serve again")
