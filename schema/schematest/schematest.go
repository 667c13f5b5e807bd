// Package schematest gives tests a fresh, migrated database on a real
// PostgreSQL: the one DATABASE_URL names, or else a throwaway cluster started
// by deploy/pg.sh under the repository's .data/test-pg (installing Debian's
// postgresql when it is missing). Each test package gets its own database.
package schematest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/schema"
)

// RepoRoot is the repository's top directory, found from this file's path.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	serverOnce sync.Once
	serverURL  string
	serverErr  error
)

// ServerURL returns a URL of a PostgreSQL server a superuser can create
// databases on: DATABASE_URL, or the test cluster started on first use.
func ServerURL() (string, error) {
	serverOnce.Do(func() {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			serverURL = u
			return
		}
		cmd := exec.Command(filepath.Join(RepoRoot(), "deploy", "pg.sh"), "start", TestClusterDir())
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			serverErr = fmt.Errorf("start test PostgreSQL with deploy/pg.sh: %w", err)
			return
		}
		serverURL = strings.TrimSpace(string(out))
	})
	return serverURL, serverErr
}

// TestClusterDir is where tests keep their own cluster when DATABASE_URL is unset.
func TestClusterDir() string { return filepath.Join(RepoRoot(), ".data", "test-pg") }

// NewDatabase creates an empty database named after prefix and a random
// suffix, applies the migrations unless bare is set, and returns its URL.
func NewDatabase(ctx context.Context, prefix string, bare bool) (string, error) {
	base, err := ServerURL()
	if err != nil {
		return "", err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.ToLower(strings.NewReplacer("-", "_", "/", "_", ".", "_").Replace(prefix)) + "_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	if !bare {
		if _, err := schema.Migrate(ctx, dbURL); err != nil {
			return "", err
		}
	}
	return dbURL, nil
}

// DropDatabase removes a database made by NewDatabase, ending its sessions.
func DropDatabase(ctx context.Context, dbURL string) error {
	base, err := ServerURL()
	if err != nil {
		return err
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
	return err
}

// Main runs a test package against a fresh, migrated database of its own:
// setup gets its URL before the tests run (and may return a teardown), and
// the database is dropped after them. From TestMain:
//
//	os.Exit(schematest.Main(m, "pkg", func(url string) (func(), error) { testURL = url; return nil, nil }))
func Main(m interface{ Run() int }, prefix string, setup func(url string) (teardown func(), err error)) int {
	ctx := context.Background()
	u, err := NewDatabase(ctx, prefix, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = DropDatabase(ctx, u) }()
	teardown, err := setup(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if teardown != nil {
		defer teardown()
	}
	return m.Run()
}

// OwnCluster starts a PostgreSQL cluster of the caller's own under dir with
// deploy/pg.sh (for tests that stop and restart it) and returns its URL and
// the script; the cleanup wipes it.
func OwnCluster(dir string) (url, script string, cleanup func(), err error) {
	script = filepath.Join(RepoRoot(), "deploy", "pg.sh")
	out, err := exec.Command(script, "start", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", "", nil, fmt.Errorf("start own cluster: %w", err)
	}
	return strings.TrimSpace(string(out)), script, func() { _ = exec.Command(script, "wipe", dir).Run() }, nil
}
