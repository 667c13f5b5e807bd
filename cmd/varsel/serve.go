package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"varsel/broker/api"
	"varsel/broker/auth"
	"varsel/broker/keys"
	"varsel/broker/postgres"
	"varsel/schema"
)

func runServe(ctx context.Context, args []string, o cmdIO) error {
	m := NewMain()
	fs := flagSet("serve", "serve [flags]", o)
	m.Config.register(fs)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if err := m.Config.validate(); err != nil {
		return err
	}
	log, err := newLogger(m.Config.LogFormat, m.Config.LogLevel)
	if err != nil {
		return err
	}
	m.Logger = log
	return m.Run(ctx)
}

// Main is the running broker: what `varsel serve` starts, and what the
// end-to-end tests start on 127.0.0.1:0.
type Main struct {
	Config Config
	Logger *slog.Logger

	DB     *postgres.DB
	Keys   keys.Source
	Server *api.Server

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
	close(m.ready)
	go m.sweepJTIs(ctx)
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

	src, err := openKeys(c)
	if err != nil {
		return err
	}
	m.Keys = src

	verifier := &auth.Verifier{
		Audience: c.BrokerID,
		Keys:     &auth.KeyCache{Registry: db},
		Replay:   &auth.Replay{Store: db},
		Logger:   m.Logger,
	}
	m.Server = api.New(api.Config{
		Logger:          m.Logger,
		Auth:            verifier,
		ShutdownTimeout: c.ShutdownTimeout,
		Readiness: map[string]api.ReadinessCheck{
			"database": db.Ping,
			"keys":     src.Ping,
		},
	})
	return nil
}

func openKeys(c Config) (keys.Source, error) {
	dir, ok := strings.CutPrefix(c.Keys, "file:")
	if !ok {
		return nil, fmt.Errorf("--keys %q: only file:DIR is available in this build", c.Keys)
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

func (m *Main) close() {
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
		return fmt.Errorf("no database: set --database-url or VARSEL_DATABASE_URL")
	}
	v, err := schema.Migrate(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "database at schema version %d\n", v)
	return nil
}
