package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // office hours need a time zone on machines without zoneinfo

	"github.com/jackc/pgx/v5/pgconn"

	"varsel/audit/witness"
	"varsel/broker"
	"varsel/broker/app"
	"varsel/broker/keys"
	"varsel/broker/postgres"
)

// Config is the broker's configuration: every setting, its default and its
// flag in one place. Environment variables VARSEL_<FLAG> fill what the
// command line leaves out.
type Config struct {
	DatabaseURL         string
	DatabaseRole        string
	MaxDBConns          int
	Listen              string
	BrokerID            string
	Keys                string
	DutyDeskUnit        string
	DutyDeskPhone       string
	EmergencyLimit      int
	WebhookAllowHTTP    bool
	ReviewOverdue       time.Duration
	ReviewSweepInterval time.Duration
	AnomalySubjects     int
	AnomalyRepeats      int
	CheckFloor          time.Duration
	OfficeHours         string
	PprofListen         string
	Vault               keys.VaultConfig // from VAULT_* and VARSEL_VAULT_* when --keys vault
	WebhookFirstRetry   time.Duration
	WebhookInterval     time.Duration
	TestSubjects        bool
	Migrate             bool
	LogFormat           string
	LogLevel            string
	ShutdownTimeout     time.Duration
	CheckpointInterval  time.Duration
	KeyReloadInterval   time.Duration
	ClockOffset         time.Duration // fault injection only: the broker's clock runs this far ahead
	Witnesses           []string      // URL=VKEYFILE

	witnesses        []app.WitnessConfig // Witnesses read (by validate)
	BenchWithoutTree bool
}

// DefaultConfig is the embedded default that `make run` relies on.
func DefaultConfig() Config {
	return Config{
		DatabaseRole:        "varsel_app",
		MaxDBConns:          32,
		Listen:              "127.0.0.1:8080",
		BrokerID:            "varsel",
		Keys:                "file:.data/keys",
		DutyDeskUnit:        "Varsel duty desk",
		EmergencyLimit:      5,
		WebhookFirstRetry:   2 * time.Second,
		ReviewOverdue:       7 * 24 * time.Hour,
		ReviewSweepInterval: 30 * time.Second,
		AnomalySubjects:     30,
		AnomalyRepeats:      10,
		CheckFloor:          10 * time.Millisecond,
		OfficeHours:         "07-18 mon-fri Europe/Oslo",
		WebhookInterval:     time.Second,
		LogFormat:           "text",
		LogLevel:            "info",
		ShutdownTimeout:     20 * time.Second,
		CheckpointInterval:  5 * time.Second,
		KeyReloadInterval:   keys.DefaultReloadInterval,
	}
}

func (c *Config) registerDatabase(fs *flag.FlagSet) {
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "PostgreSQL URL (secret: its password is never logged)")
}

func (c *Config) register(fs *flag.FlagSet) {
	c.registerDatabase(fs)
	fs.StringVar(&c.DatabaseRole, "database-role", c.DatabaseRole, `role assumed on every connection ("" to act as the URL's user)`)
	fs.IntVar(&c.MaxDBConns, "max-db-conns", c.MaxDBConns, "largest number of database connections")
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve HTTP on")
	fs.StringVar(&c.BrokerID, "broker-id", c.BrokerID, "the broker's id: the aud every token must name")
	fs.StringVar(&c.Keys, "keys", c.Keys, "key source: file:DIR (local key files, made on first start) or vault")
	fs.StringVar(&c.DutyDeskUnit, "duty-desk-unit", c.DutyDeskUnit, "name of the broker's duty desk, shown instead of the issuer of a flag through the duty desk, and as the contact of every exception aggregate")
	fs.StringVar(&c.DutyDeskPhone, "duty-desk-phone", c.DutyDeskPhone, "phone of the broker's duty desk (shown with its unit)")
	fs.IntVar(&c.EmergencyLimit, "emergency-limit", c.EmergencyLimit, "emergency (life-and-health) checks one employee may make per hour")
	fs.BoolVar(&c.TestSubjects, "test-subjects", c.TestSubjects, "accept synthetic national ids (month + 40 or + 80); never in production")
	fs.BoolVar(&c.WebhookAllowHTTP, "webhook-allow-http", c.WebhookAllowHTTP, "accept http:// webhook URLs and loopback or private addresses (development and tests only)")
	fs.DurationVar(&c.WebhookFirstRetry, "webhook-first-retry", c.WebhookFirstRetry, "wait before the first webhook retry; doubles each time, up to 5m, 12 attempts")
	fs.DurationVar(&c.WebhookInterval, "webhook-interval", c.WebhookInterval, "how often to look for webhook pushes that are due")
	fs.DurationVar(&c.ReviewOverdue, "review-overdue", c.ReviewOverdue, "age at which a pending review is listed as overdue")
	fs.DurationVar(&c.ReviewSweepInterval, "review-sweep-interval", c.ReviewSweepInterval, "how often to raise reviews from the log (they are also raised before every review list)")
	fs.IntVar(&c.AnomalySubjects, "anomaly-subjects", c.AnomalySubjects, "different people one employee may check in an hour before it is an anomaly")
	fs.IntVar(&c.AnomalyRepeats, "anomaly-repeats", c.AnomalyRepeats, "checks of the same person by one employee in an hour before it is an anomaly")
	fs.DurationVar(&c.CheckFloor, "check-floor", c.CheckFloor, `the least time a "clear" check takes, so a check of someone with flags the caller may not see cannot be told from one of someone without flags by timing (0 turns it off)`)
	fs.StringVar(&c.OfficeHours, "office-hours", c.OfficeHours, `when checks are expected, "HH-HH [mon-fri] [TIME ZONE]"; checks outside are anomalies ("" to turn off)`)
	fs.StringVar(&c.PprofListen, "pprof-listen", c.PprofListen, "serve Go's pprof profiles on this loopback address (off when empty)")
	fs.BoolVar(&c.Migrate, "migrate", c.Migrate, "apply database migrations before serving")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight requests may take to finish on SIGTERM")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", c.CheckpointInterval, "how often to sign an audit checkpoint when entries were added")
	fs.DurationVar(&c.ClockOffset, "clock-offset", c.ClockOffset, "testing only (needs --test-subjects): run the broker's clock this far ahead of the machine's, to measure a replica with a skewed clock")
	fs.Var((*stringList)(&c.Witnesses), "witness", "a witness to send each checkpoint to, as URL=VKEYFILE: its C2SP tlog-witness submission prefix and a file with its cosigner key (repeatable; see varsel witness)")
	fs.DurationVar(&c.KeyReloadInterval, "key-reload-interval", c.KeyReloadInterval, "how often to read the subject key chain; checks stop (503) after 3 intervals without a good read. keys rotate-subject --grace must exceed 4 of them")
	fs.BoolVar(&c.BenchWithoutTree, "bench-without-tree", c.BenchWithoutTree, "benchmark only (varsel-bench --compare-tree): append audit entries without advancing the Merkle tree and sign no checkpoints; refused without --test-subjects, never in production")
}

func (c *Config) validate() error {
	if c.DatabaseURL == "" {
		return errNoDatabase
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if c.BrokerID == "" {
		return fmt.Errorf("--broker-id must not be empty")
	}
	if _, err := parseOfficeHours(c.OfficeHours); err != nil {
		return err
	}
	if c.ClockOffset != 0 && !c.TestSubjects {
		return fmt.Errorf("--clock-offset is for fault tests only: it needs --test-subjects")
	}
	if c.Keys != "vault" && !strings.HasPrefix(c.Keys, "file:") {
		return fmt.Errorf("--keys %q: want file:DIR or vault", c.Keys)
	}
	ws, err := readWitnesses(c.Witnesses)
	if err != nil {
		return err
	}
	c.witnesses = ws
	if c.BenchWithoutTree && !c.TestSubjects {
		return fmt.Errorf("--bench-without-tree is for benchmarks only: it needs --test-subjects")
	}
	return nil
}

// readWitnesses reads --witness URL=VKEYFILE values.
func readWitnesses(specs []string) ([]app.WitnessConfig, error) {
	var out []app.WitnessConfig
	for _, spec := range specs {
		i := strings.LastIndex(spec, "=")
		if i < 0 {
			return nil, fmt.Errorf("--witness %q: want URL=VKEYFILE", spec)
		}
		u, file := spec[:i], spec[i+1:]
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("--witness %q: %q is not an http(s) URL", spec, u)
		}
		b, err := readFile(file)
		if err != nil {
			return nil, fmt.Errorf("--witness: %w", err)
		}
		vkey := strings.TrimSpace(string(b))
		if _, err := witness.NewVerifier(vkey); err != nil {
			return nil, fmt.Errorf("--witness %s: %v", file, err)
		}
		out = append(out, app.WitnessConfig{URL: u, VKey: vkey})
	}
	return out, nil
}

// LogValue masks secrets, so the config can be logged once at start.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", redactURL(c.DatabaseURL)),
		slog.String("database_role", c.DatabaseRole),
		slog.Int("max_db_conns", c.MaxDBConns),
		slog.String("listen", c.Listen),
		slog.String("broker_id", c.BrokerID),
		slog.String("keys", c.Keys),
		slog.String("vault_addr", c.Vault.Address),
		slog.Bool("vault_token_set", c.Vault.Token != ""),
		slog.Bool("test_subjects", c.TestSubjects),
		slog.String("duty_desk_unit", c.DutyDeskUnit),
		slog.String("duty_desk_phone", c.DutyDeskPhone),
		slog.Int("emergency_limit", c.EmergencyLimit),
		slog.Bool("webhook_allow_http", c.WebhookAllowHTTP),
		slog.Duration("review_overdue", c.ReviewOverdue),
		slog.Int("anomaly_subjects", c.AnomalySubjects),
		slog.Int("anomaly_repeats", c.AnomalyRepeats),
		slog.Duration("check_floor", c.CheckFloor),
		slog.String("office_hours", c.OfficeHours),
		slog.Bool("migrate", c.Migrate),
		slog.String("log_format", c.LogFormat),
		slog.String("log_level", c.LogLevel),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("checkpoint_interval", c.CheckpointInterval),
		slog.Duration("key_reload_interval", c.KeyReloadInterval),
		slog.Duration("clock_offset", c.ClockOffset),
		slog.Any("witnesses", c.Witnesses),
		slog.Bool("bench_without_tree", c.BenchWithoutTree),
	)
}

// redactURL shows where the database is, never a password: only host,
// port, database and user are kept, whatever form the URL takes (a URL's
// user info or query, or keyword/value pairs).
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		return "(unparseable)"
	}
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database}
	if cfg.User != "" {
		u.User = url.User(cfg.User)
	}
	return u.String()
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

// parseOfficeHours reads "07-18 mon-fri Europe/Oslo" ("" turns the signal off).
func parseOfficeHours(s string) (broker.OfficeHours, error) {
	h := broker.OfficeHours{TimeZone: "Europe/Oslo"}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return h, nil
	}
	bad := fmt.Errorf("--office-hours %q: want HH-HH [mon-fri] [TIME ZONE], e.g. \"07-18 mon-fri Europe/Oslo\"", s)
	var err error
	if h.Start, h.End, err = hourRange(fields[0]); err != nil {
		return h, bad
	}
	for _, f := range fields[1:] {
		switch {
		case f == "mon-fri":
			h.Weekdays = true
		case strings.Contains(f, "/") || f == "UTC":
			if _, err := time.LoadLocation(f); err != nil {
				return h, bad
			}
			h.TimeZone = f
		default:
			return h, bad
		}
	}
	h.Enabled = true
	return h, nil
}

func hourRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	start, err1 := strconv.Atoi(a)
	end, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || start < 0 || end > 24 || start >= end {
		return 0, 0, fmt.Errorf("bad hour range")
	}
	return start, end, nil
}

// app is the running broker's configuration (after validate).
func (c *Config) app() app.Config {
	hours, _ := parseOfficeHours(c.OfficeHours)
	var now func() time.Time
	if off := c.ClockOffset; off != 0 {
		now = func() time.Time { return time.Now().Add(off) }
	}
	return app.Config{
		Now: now, TokenNow: now,
		DatabaseURL: c.DatabaseURL, DatabaseRole: c.DatabaseRole, MaxDBConns: c.MaxDBConns, Migrate: c.Migrate,
		Listen: c.Listen, PprofListen: c.PprofListen, BrokerID: c.BrokerID, Keys: c.Keys, Vault: c.Vault,
		DutyDesk:       broker.Contact{Unit: c.DutyDeskUnit, Phone: c.DutyDeskPhone},
		EmergencyLimit: c.EmergencyLimit, TestSubjects: c.TestSubjects, ReviewOverdue: c.ReviewOverdue,
		Anomalies:        broker.AnomalyRules{Window: time.Hour, MaxSubjects: c.AnomalySubjects, MaxRepeats: c.AnomalyRepeats, Hours: hours},
		ShutdownTimeout:  c.ShutdownTimeout,
		WebhookAllowHTTP: c.WebhookAllowHTTP, WebhookFirstRetry: c.WebhookFirstRetry, WebhookInterval: c.WebhookInterval,
		ReviewSweepInterval: c.ReviewSweepInterval, CheckpointInterval: c.CheckpointInterval,
		KeyReloadInterval: c.KeyReloadInterval, CheckFloor: c.CheckFloor,
		Witnesses:        c.witnesses,
		WithoutAuditTree: c.BenchWithoutTree,
	}
}

// errNoDatabase is what a command that needs the database says without one.
var errNoDatabase = fmt.Errorf("no database: set --database-url or VARSEL_DATABASE_URL")

// operatorDB opens the database for an operator command, as the URL's user
// (not the runtime role: registering agencies or rotating keys needs more).
func operatorDB(ctx context.Context, c Config) (*postgres.DB, error) {
	if c.DatabaseURL == "" {
		return nil, errNoDatabase
	}
	return postgres.Open(ctx, c.DatabaseURL, postgres.Options{MaxConns: 2})
}
