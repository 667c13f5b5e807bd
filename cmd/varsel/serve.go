package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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

func runServe(ctx context.Context, args []string, o cmdIO) error {
	m := NewMain()
	fs := flagSet("serve", "serve [flags]", o)
	m.Config.register(fs)
	base := fs.Usage
	fs.Usage = func() {
		base()
		fmt.Fprint(o.stdout, `
With --keys vault the broker reads VAULT_ADDR and logs in with VAULT_TOKEN, or
AppRole (VARSEL_VAULT_ROLE_ID, VARSEL_VAULT_SECRET_ID), or Kubernetes
(VARSEL_VAULT_K8S_ROLE); VARSEL_VAULT_SUBJECT_KEY (default
secret/data/varsel/subject-key) and VARSEL_VAULT_TRANSIT_KEY (default
transit/keys/varsel-checkpoint) name the keys. See the README.
`)
	}
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	m.Config.Vault = keys.VaultConfigFromEnv(o.getenv)
	if err := m.Config.validate(); err != nil {
		return err
	}
	log, err := newLogger(m.Config.LogFormat, m.Config.LogLevel)
	if err != nil {
		return err
	}
	m.Logger = log
	tuneGC(o.getenv)
	return m.Run(ctx)
}

// Main is the running broker: what `varsel serve` starts, and what the
// end-to-end tests start on 127.0.0.1:0.
type Main struct {
	Config Config
	Logger *slog.Logger

	DB           *postgres.DB
	Keys         keys.Source
	Subjects     *broker.SubjectKeys
	Policies     *policies.Engine
	AuditStore   *auditpg.Store
	AuditWriter  *audit.Writer
	Checkpointer *audit.Checkpointer
	Server       *api.Server

	notifier       *postgres.Notifier
	pusher         *service.Pusher
	sweeper        *service.Sweeper
	lastCheckpoint atomic.Int64
	stopBackground context.CancelFunc
	background     sync.WaitGroup

	addr  net.Addr
	ready chan struct{}
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{Config: DefaultConfig(), Logger: slog.New(slog.DiscardHandler), ready: make(chan struct{})}
}

// Ready is closed once the server listens; Addr is then set.
func (m *Main) Ready() <-chan struct{} { return m.ready }

// Addr is the address the server listens on.
func (m *Main) Addr() net.Addr { return m.addr }

// Run opens the dependencies, serves until ctx ends, then shuts down cleanly.
func (m *Main) Run(ctx context.Context) error {
	if err := m.open(ctx); err != nil {
		m.close()
		return err
	}
	defer m.close()
	addr, err := m.Server.Listen(m.Config.Listen)
	if err != nil {
		return err
	}
	m.addr = addr
	m.Logger.Info("varsel serving", "version", version, "addr", addr.String(), "config", m.Config)
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopBackground = stop
	m.background.Add(6)
	go func() { defer m.background.Done(); m.followSubjectKeys(bg) }()
	go func() { defer m.background.Done(); m.sweeper.Run(bg) }()
	go func() { defer m.background.Done(); m.sweepJTIs(bg) }()
	go func() { defer m.background.Done(); m.notifier.Run(bg) }()
	go func() { defer m.background.Done(); m.pusher.Run(bg) }()
	go func() { defer m.background.Done(); m.Checkpointer.Run(bg) }()
	if c := m.Config.PprofListen; c != "" {
		go m.servePprof(bg, c)
	}
	close(m.ready)
	return m.Server.Serve(ctx)
}

func (m *Main) open(ctx context.Context) error {
	c := m.Config
	if c.Migrate {
		v, err := schema.Migrate(ctx, c.DatabaseURL)
		if err != nil {
			return err
		}
		m.Logger.Info("database migrated", "version", v)
	}
	db, err := postgres.Open(ctx, c.DatabaseURL, postgres.Options{Role: c.DatabaseRole, MaxConns: int32(c.MaxDBConns)})
	if err != nil {
		return err
	}
	m.DB = db
	if err := db.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", errors.Unwrap(err))
	}

	src, err := openKeys(ctx, c, m.Logger)
	if err != nil {
		return err
	}
	m.Keys = src
	hasher, err := keys.LoadSubjectKeys(ctx, db, src)
	if err != nil {
		return fmt.Errorf("subject key: %w", err)
	}
	m.Subjects = &broker.SubjectKeys{}
	m.Subjects.Set(hasher)
	signer, verifierKey, err := src.CheckpointSigner(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint signer: %w", err)
	}

	if m.Policies, err = policies.New(ctx); err != nil {
		return fmt.Errorf("load policies: %w", err)
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.AuditStore = &auditpg.Store{Pool: db.Pool}
	m.AuditWriter = audit.NewWriter(m.AuditStore, audit.WriterConfig{Logger: m.Logger, Registerer: registry})
	m.Checkpointer = &audit.Checkpointer{
		Store: m.AuditStore, Signer: signer, Origin: c.BrokerID + "/audit",
		Interval: c.CheckpointInterval, Logger: m.Logger,
		OnSigned: func(audit.Checkpoint) { m.lastCheckpoint.Store(time.Now().UnixNano()) },
	}
	m.lastCheckpoint.Store(time.Now().UnixNano())
	registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "varsel_audit_seconds_since_checkpoint",
		Help: "Seconds since this replica last signed an audit checkpoint (or started).",
	}, func() float64 { return time.Since(time.Unix(0, m.lastCheckpoint.Load())).Seconds() }))

	verifier := &auth.Verifier{
		Audience: c.BrokerID,
		Keys:     &auth.KeyCache{Registry: db},
		Replay:   &auth.Replay{}, // across replicas: the audit append records each jti
		Logger:   m.Logger,
	}
	m.notifier = &postgres.Notifier{URL: c.DatabaseURL, Logger: m.Logger}
	jws, jwk, err := keys.BrokerJWS(signer, verifierKey, service.WebhookType)
	if err != nil {
		return err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return err
	}
	m.sweeper = &service.Sweeper{Store: db, Interval: c.ReviewSweepInterval, Logger: m.Logger,
		Rules: postgres.AnomalyRules{Window: time.Hour, MaxSubjects: c.AnomalySubjects, Hours: c.officeHours()}}
	flags := &hotFlags{DB: db, lookups: postgres.NewFlagLookups(db, 4)}
	svc := &service.Service{
		Locks:             db,
		Reviews:           db,
		Sweeper:           m.sweeper,
		ReviewOverdue:     c.ReviewOverdue,
		Policies:          m.Policies,
		Audit:             m.AuditWriter,
		AuditReader:       m.AuditStore,
		Flags:             flags,
		Warnings:          db,
		InboxWaiter:       m.notifier,
		AllowHTTPWebhooks: c.WebhookAllowHTTP,
		Subjects:          m.Subjects,
		DutyDesk:          broker.Contact{Unit: c.DutyDeskUnit, Phone: c.DutyDeskPhone},
		BrokerID:          c.BrokerID,
		EmergencyLimit:    c.EmergencyLimit,
		EmergencyWindow:   time.Hour,
		TestSubjects:      c.TestSubjects,
		Logger:            m.Logger,
	}
	m.pusher = &service.Pusher{Store: db, Audit: m.AuditWriter, Signer: jws, BrokerID: c.BrokerID,
		Policy: m.Policies.Version, FirstRetry: c.WebhookFirstRetry, Interval: c.WebhookInterval, Logger: m.Logger,
		AllowPrivate: c.WebhookAllowHTTP}
	m.Server = api.New(api.Config{
		BrokerJWKS:      jwks,
		Logger:          m.Logger,
		Registry:        registry,
		Auth:            verifier,
		Service:         svc,
		Checkpoints:     m.AuditStore,
		CheckpointKey:   verifierKey,
		ShutdownTimeout: c.ShutdownTimeout,
		Readiness: map[string]api.ReadinessCheck{
			"database": db.Ping,
			"keys":     src.Ping,
		},
	})
	return nil
}

func openKeys(ctx context.Context, c Config, log *slog.Logger) (keys.Source, error) {
	if c.Keys == "vault" {
		vc := c.Vault
		vc.Name, vc.Logger = c.BrokerID, log
		return keys.OpenVault(ctx, vc)
	}
	dir, ok := strings.CutPrefix(c.Keys, "file:")
	if !ok {
		return nil, fmt.Errorf("--keys %q: want file:DIR or vault", c.Keys)
	}
	d := &keys.Dir{Path: dir, Name: c.BrokerID}
	if err := d.Open(); err != nil {
		return nil, err
	}
	return d, nil
}

// sweepJTIs removes expired token ids once a minute.
func (m *Main) sweepJTIs(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, err := m.DB.SweepJTIs(ctx, now); err != nil && ctx.Err() == nil {
				m.Logger.Warn("sweep token ids", "err", err)
			}
		}
	}
}

// close runs after the server has finished its in-flight requests: commit
// what the audit writer holds, make a final checkpoint, then disconnect.
func (m *Main) close() {
	if m.AuditWriter != nil {
		m.AuditWriter.Close()
	}
	if m.stopBackground != nil {
		m.stopBackground()
		m.background.Wait()
	}
	if m.DB != nil {
		m.DB.Close()
	}
}

func runMigrate(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("migrate", "migrate [--database-url URL]", o)
	c.registerDatabase(fs)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if c.DatabaseURL == "" {
		return errNoDatabase
	}
	v, err := schema.Migrate(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "database at schema version %d\n", v)
	return nil
}

// servePprof serves runtime profiles for diagnosing load, on loopback only.
func (m *Main) servePprof(ctx context.Context, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		m.Logger.Error("pprof refused: --pprof-listen must be a loopback address", "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && ctx.Err() == nil {
		m.Logger.Warn("pprof server", "err", err)
	}
}

// followSubjectKeys reloads the subject key chain when a rotation changes
// it, so every replica looks refs up under a pending key within seconds.
func (m *Main) followSubjectKeys(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	seen := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		chain, err := m.DB.SubjectKeyChain(ctx)
		if err != nil {
			continue
		}
		state := fmt.Sprint(chain)
		if seen == "" {
			seen = state
			continue
		}
		if state == seen {
			continue
		}
		h, err := keys.LoadSubjectKeys(ctx, m.DB, m.Keys)
		if err != nil {
			m.Logger.Error("reload subject key chain", "subsystem", "keys", "err", err)
			continue
		}
		m.Subjects.Set(h)
		seen = state
		m.Logger.Info("subject key chain changed", "subsystem", "keys", "links", len(chain), "pending", h.PendingVersion)
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

// tuneGC trades memory for CPU on the request path: the broker's live heap
// is small (tens of MiB), so collecting at 4× it instead of 2× halves the GC
// work while a soft limit keeps the process well under its memory budget.
// GOGC and GOMEMLIMIT in the environment win.
func tuneGC(getenv env) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}
