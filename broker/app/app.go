// Package app owns the running broker: it builds every long-lived part
// (database, keys and the subject key follower, policies, audit writer and
// checkpointer, flag lookups, inbox notifier, webhook pusher, review and
// token-id sweepers, HTTP server), starts them, and stops them in one
// ordered shutdown:
//
//	HTTP server (in-flight requests finish)
//	→ producers (pusher, sweepers, notifier, checkpointer and witness loops)
//	→ audit writer (what is queued is committed, in batches)
//	→ final checkpoint
//	→ keys (follower, Vault renewers) and flag lookups
//	→ database
//
// cmd/varsel turns flags into a Config; the end-to-end tests start the
// same App on 127.0.0.1:0.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
	"varsel/broker/api"
	"varsel/broker/auth"
	"varsel/broker/keys"
	"varsel/broker/postgres"
	"varsel/broker/service"
	"varsel/policies"
	"varsel/schema"
)

// Config is what the running broker needs; cmd/varsel fills it from flags
// and the environment. Zero durations and limits take the defaults noted.
type Config struct {
	DatabaseURL  string
	DatabaseRole string // role assumed on every connection; "" for the URL's user
	MaxDBConns   int    // default 32
	Migrate      bool   // apply migrations before serving

	Listen      string // e.g. 127.0.0.1:8080; ":0" picks a port
	PprofListen string // loopback address for pprof; "" for none
	BrokerID    string // the aud every token names; the checkpoint origin's prefix
	Keys        string // "file:DIR" or "vault"
	Vault       keys.VaultConfig

	DutyDesk        broker.Contact
	EmergencyLimit  int // per employee per hour; default 5
	TestSubjects    bool
	ReviewOverdue   time.Duration
	Anomalies       broker.AnomalyRules
	ShutdownTimeout time.Duration // default 20 s

	WebhookAllowHTTP  bool
	WebhookFirstRetry time.Duration
	WebhookInterval   time.Duration

	ReviewSweepInterval time.Duration // default 30 s
	CheckpointInterval  time.Duration // default 5 s
	KeyReloadInterval   time.Duration // default keys.DefaultReloadInterval
	JTISweepInterval    time.Duration // default 1 min

	// WithoutAuditTree is for benchmarks only (it needs TestSubjects):
	// audit entries are appended without advancing the Merkle tree, and
	// no checkpoint is signed (there is no tree root to sign), so that a
	// load run can measure what the tree costs. The next broker started
	// without it catches the tree up over the entries it missed.
	WithoutAuditTree bool

	// CheckFloor is the least time a "clear" check takes (0: none): see
	// service.Service.ClearFloor.
	CheckFloor time.Duration

	// Witnesses are sent each checkpoint (C2SP tlog-witness); their
	// cosignatures are served with it.
	Witnesses []WitnessConfig

	// Now is the clock of decisions (validity, expiry, emergency windows);
	// nil for time.Now. Tests move it instead of sleeping.
	Now func() time.Time

	// TokenNow is the clock tokens' iat and exp are checked against; nil
	// for time.Now. Only a fault test that skews a replica's clock sets it.
	TokenNow func() time.Time
}

// App is the running broker. Its exported parts are there for tests and
// operators to trigger work (a checkpoint, a sweep, a key reload) instead
// of waiting for a ticker.
type App struct {
	cfg Config
	log *slog.Logger

	DB           *postgres.DB
	Keys         keys.Source
	SubjectKeys  *keys.Follower
	Policies     *policies.Engine
	AuditStore   *auditpg.Store
	AuditWriter  *audit.Writer
	Checkpointer *audit.Checkpointer
	Witnesses    *Witnesses // sends checkpoints to the configured witnesses
	Sweeper      *service.Sweeper
	Pusher       *service.Pusher
	Service      *service.Service
	Server       *api.Server
	Notifier     *postgres.Notifier // wakes this replica's long-polls

	lookups        *postgres.FlagLookups
	lastCheckpoint atomic.Int64

	addr  net.Addr
	ready chan struct{}
}

// New returns an App that Run will build and start.
func New(cfg Config, log *slog.Logger) *App {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &App{cfg: cfg, log: log, ready: make(chan struct{})}
}

// Ready is closed once the server listens and every part runs; Addr is
// then set.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Addr is the address the server listens on.
func (a *App) Addr() net.Addr { return a.addr }

// Run builds the broker, serves until ctx ends, then shuts down in order.
// It returns the first error that stopped it.
func (a *App) Run(ctx context.Context) (err error) {
	defer func() { err = errors.Join(err, a.close()) }()
	if err := a.open(ctx); err != nil {
		return err
	}
	addr, err := a.Server.Listen(a.cfg.Listen)
	if err != nil {
		return err
	}
	a.addr = addr
	a.log.Info("varsel serving", "addr", addr.String())

	// Producers: background work that reads state or appends entries.
	// They stop after the server, before the audit writer.
	pctx, stopProducers := context.WithCancel(context.WithoutCancel(ctx))
	var producers sync.WaitGroup
	start := func(run func(context.Context)) {
		producers.Add(1)
		go func() { defer producers.Done(); run(pctx) }()
	}
	start(a.Sweeper.Run)
	start(a.Notifier.Run)
	start(a.Pusher.Run)
	if !a.cfg.WithoutAuditTree {
		start(a.Checkpointer.Run)
	}
	start(a.Witnesses.Run)
	start(a.SubjectKeys.Run)
	start(func(ctx context.Context) { every(ctx, a.cfg.JTISweepInterval, time.Minute, a.sweepJTIs) })
	if a.cfg.PprofListen != "" {
		start(func(ctx context.Context) { a.servePprof(ctx, a.cfg.PprofListen) })
	}
	close(a.ready)
	serveErr := a.Server.Serve(ctx) // returns once in-flight requests finished
	stopProducers()
	producers.Wait()
	return serveErr
}

// close stops what open built, in order; parts that were never built are
// skipped. It is safe after a failed open.
func (a *App) close() error {
	var errs []error
	if a.AuditWriter != nil {
		a.AuditWriter.Close() // commits what is queued
	}
	if a.Checkpointer != nil && !a.cfg.WithoutAuditTree {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := a.Checkpointer.Checkpoint(ctx); err != nil {
			a.log.Error("final audit checkpoint failed", "subsystem", "audit", "err", err)
		}
		cancel()
	}
	if a.lookups != nil {
		a.lookups.Close()
	}
	if a.Keys != nil {
		if err := a.Keys.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close keys: %w", err))
		}
	}
	if a.DB != nil {
		a.DB.Close()
	}
	return errors.Join(errs...)
}

func (a *App) open(ctx context.Context) error {
	c := a.cfg
	if c.WithoutAuditTree && !c.TestSubjects {
		return errors.New("running without the audit tree is for benchmarks only: it needs test subjects")
	}
	if c.Migrate {
		v, err := schema.Migrate(ctx, c.DatabaseURL)
		if err != nil {
			return err
		}
		a.log.Info("database migrated", "version", v)
	}
	maxConns := c.MaxDBConns
	if maxConns <= 0 {
		maxConns = 32
	}
	db, err := postgres.Open(ctx, c.DatabaseURL, postgres.Options{Role: c.DatabaseRole, MaxConns: int32(maxConns)})
	if err != nil {
		return err
	}
	a.DB = db
	if err := db.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", errors.Unwrap(err))
	}

	src, err := OpenKeys(ctx, c.Keys, c.BrokerID, c.Vault, a.log)
	if err != nil {
		return err
	}
	a.Keys = src
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.SubjectKeys, err = keys.NewFollower(ctx, db, src, keys.FollowerConfig{
		Interval: c.KeyReloadInterval, Logger: a.log, Now: c.Now, Registerer: registry})
	if err != nil {
		return err
	}
	signer, verifierKey, err := src.CheckpointSigner(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint signer: %w", err)
	}
	if a.Policies, err = policies.New(ctx); err != nil {
		return fmt.Errorf("load policies: %w", err)
	}

	a.AuditStore = &auditpg.Store{Pool: db.Pool, WithoutTree: c.WithoutAuditTree}
	// A log from before the Merkle tree (or bulk-loaded) gets its tree
	// built before the first append, in chunks, under the chain lock.
	size, err := auditpg.CatchUpTree(ctx, db.Pool, 0)
	if err != nil {
		return fmt.Errorf("audit tree: %w", err)
	}
	a.log.Info("audit tree ready", "size", size)
	if c.WithoutAuditTree {
		a.log.Warn("benchmark mode: audit entries are appended without advancing the Merkle tree, and no audit checkpoint is signed",
			"subsystem", "audit")
	}
	a.AuditWriter = audit.NewWriter(a.AuditStore, audit.WriterConfig{Logger: a.log, Registerer: registry})
	ownVerifier, err := note.NewVerifier(verifierKey)
	if err != nil {
		return fmt.Errorf("checkpoint verifier key: %w", err)
	}
	refusals := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "varsel_audit_checkpoint_refusals_total",
		Help: "Checkpoints not signed because the log did not extend the last signed checkpoint (the log was changed).",
	})
	registry.MustRegister(refusals)
	a.Witnesses, err = NewWitnesses(&Witnesses{Store: a.AuditStore, Verifier: ownVerifier, Origin: audit.LogOrigin(c.BrokerID),
		Logger: a.log}, c.Witnesses, registry)
	if err != nil {
		return err
	}
	a.Checkpointer = &audit.Checkpointer{
		Store: a.AuditStore, Signer: signer, Verifier: ownVerifier, Origin: audit.LogOrigin(c.BrokerID),
		Interval: c.CheckpointInterval, Logger: a.log,
		OnSigned: func(cp audit.Checkpoint) {
			a.lastCheckpoint.Store(time.Now().UnixNano())
			a.Witnesses.Notify(cp)
		},
		OnRefused: func(error) { refusals.Inc() },
	}
	a.lastCheckpoint.Store(time.Now().UnixNano())
	registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "varsel_audit_seconds_since_checkpoint",
		Help: "Seconds since this replica last signed an audit checkpoint (or started).",
	}, func() float64 { return time.Since(time.Unix(0, a.lastCheckpoint.Load())).Seconds() }))

	verifier := &auth.Verifier{
		Audience: c.BrokerID,
		Keys:     &auth.KeyCache{Registry: db},
		Replay:   &auth.Replay{}, // across replicas: the audit append records each jti
		Logger:   a.log,
		Now:      c.TokenNow,
	}
	a.Notifier = &postgres.Notifier{URL: c.DatabaseURL, Logger: a.log}
	jws, jwk, err := keys.BrokerJWS(signer, verifierKey, service.WebhookType)
	if err != nil {
		return err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return err
	}
	rules := c.Anomalies
	if rules.Window <= 0 {
		rules.Window = time.Hour
	}
	a.Sweeper = &service.Sweeper{Store: db, Interval: c.ReviewSweepInterval, Logger: a.log, Rules: rules, Now: c.Now}
	a.lookups = postgres.NewFlagLookups(db, 4)
	emergencyLimit := c.EmergencyLimit
	if emergencyLimit <= 0 {
		emergencyLimit = 5
	}
	a.Service = &service.Service{
		Locks:             db,
		Reviews:           db,
		Emergencies:       db,
		Sweeper:           a.Sweeper,
		ReviewOverdue:     c.ReviewOverdue,
		Policies:          a.Policies,
		Audit:             a.AuditWriter,
		AuditReader:       a.AuditStore,
		Flags:             &hotFlags{DB: db, lookups: a.lookups},
		Warnings:          db,
		InboxWaiter:       a.Notifier,
		AllowHTTPWebhooks: c.WebhookAllowHTTP,
		Subjects:          a.SubjectKeys.Keys(),
		DutyDesk:          c.DutyDesk,
		BrokerID:          c.BrokerID,
		EmergencyLimit:    emergencyLimit,
		EmergencyWindow:   time.Hour,
		TestSubjects:      c.TestSubjects,
		ClearFloor:        c.CheckFloor,
		Logger:            a.log,
		Now:               c.Now,
	}
	a.Pusher = &service.Pusher{Store: db, Audit: a.AuditWriter, Signer: jws, BrokerID: c.BrokerID,
		Policy: a.Policies.Version, FirstRetry: c.WebhookFirstRetry, Interval: c.WebhookInterval, Logger: a.log,
		AllowPrivate: c.WebhookAllowHTTP}
	a.Server = api.New(api.Config{
		BrokerJWKS:      jwks,
		Logger:          a.log,
		Registry:        registry,
		Auth:            verifier,
		Service:         a.Service,
		Checkpoints:     a.AuditStore,
		CheckpointKey:   verifierKey,
		Tree:            a.AuditStore,
		ShutdownTimeout: c.ShutdownTimeout,
		Readiness: map[string]api.ReadinessCheck{
			"database":     db.Ping,
			"keys":         src.Ping,
			"subject_keys": a.SubjectKeys.Ping,
			"audit_chain":  a.auditChain,
		},
	})
	return nil
}

// auditChain is degraded while the checkpointer refuses to sign because
// the log no longer extends the last signed checkpoint: requests are still
// answered and audited, but someone changed the log (see the error log and
// varsel audit verify).
func (a *App) auditChain(context.Context) error {
	if err := a.Checkpointer.Refused(); err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeDegraded,
			Message: "audit checkpoints refused: the log does not extend the last signed checkpoint", Err: err}
	}
	return nil
}

// OpenKeys opens the key source named by spec: "file:DIR" or "vault".
func OpenKeys(ctx context.Context, spec, brokerID string, vc keys.VaultConfig, log *slog.Logger) (keys.Source, error) {
	if spec == "vault" {
		vc.Name, vc.Logger = brokerID, log
		return keys.OpenVault(ctx, vc)
	}
	dir, ok := strings.CutPrefix(spec, "file:")
	if !ok {
		return nil, fmt.Errorf("--keys %q: want file:DIR or vault", spec)
	}
	d := &keys.Dir{Path: dir, Name: brokerID}
	if err := d.Open(); err != nil {
		return nil, err
	}
	return d, nil
}

// sweepJTIs removes expired token ids.
func (a *App) sweepJTIs(ctx context.Context) {
	if _, err := a.DB.SweepJTIs(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("sweep token ids", "err", err)
	}
}

// every runs fn every interval (def when interval is zero) until ctx ends.
func every(ctx context.Context, interval, def time.Duration, fn func(context.Context)) {
	if interval <= 0 {
		interval = def
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// servePprof serves runtime profiles for diagnosing load, on loopback only.
func (a *App) servePprof(ctx context.Context, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		a.log.Error("pprof refused: --pprof-listen must be a loopback address", "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && ctx.Err() == nil {
		a.log.Warn("pprof server", "err", err)
	}
}

// hotFlags is the flag store with the check path's lookups batched.
type hotFlags struct {
	*postgres.DB
	lookups *postgres.FlagLookups
}

func (h *hotFlags) ActiveFlags(ctx context.Context, refs []string, t time.Time) ([]*broker.Flag, error) {
	return h.lookups.ActiveFlags(ctx, refs, t)
}
