// Package postgres stores Varsel's state in PostgreSQL through a pgx pool.
// Every table it touches is created by the migrations in varsel/schema.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/broker"
)

// DB is a pool of connections to the broker's database.
type DB struct {
	Pool *pgxpool.Pool
}

// Options tune Open.
type Options struct {
	// Role, when set, is assumed (SET ROLE) on every new connection, so that
	// a broker given an owner's URL in development still acts with only the
	// runtime role's privileges.
	Role     string
	MaxConns int32
}

// Open connects to the database at url. It does not wait for the database
// to be reachable: Ping does.
func Open(ctx context.Context, url string, opt Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	// Per host of a multi-host URL: a primary that went away without a
	// word (a partition, a frozen machine) must not hold every new
	// connection for long before the next host is tried. The URL's
	// connect_timeout wins when it gives one.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// No JIT compilation: every statement the broker runs is short, and
	// PostgreSQL's estimate for the review sweep's counts (over entries
	// its statistics have not seen yet) is high enough to have LLVM
	// compile each of them, about half a second of CPU every sweep, for
	// statements that take milliseconds. Set after connecting rather than
	// as a startup parameter, which connection poolers (PgBouncer) refuse;
	// a URL that sets jit itself (?jit=on) keeps it.
	var set []string
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		set = append(set, "SET jit = off")
	}
	if opt.Role != "" {
		set = append(set, "SET ROLE "+pgx.Identifier{opt.Role}.Sanitize())
	}
	if setup := strings.Join(set, "; "); setup != "" {
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, setup)
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Close closes every connection.
func (db *DB) Close() { db.Pool.Close() }

// Ping checks the database answers a query within ctx.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.Pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Message: "database unreachable", Err: err}
	}
	return nil
}

// auditedTx runs fn in a transaction that appends an audit entry with its
// change. When the database cannot be reached or the connection is lost
// (a failover, a frozen or full server), the error is 503
// audit_unavailable, never a 500: the change and its entry were not
// confirmed, and the caller may try again. Errors fn returns as a
// broker.Error pass through as they are.
func (db *DB) auditedTx(ctx context.Context, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, db.Pool, fn)
	var be *broker.Error
	if err == nil || errors.As(err, &be) || !isUnavailable(err) {
		return err
	}
	return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable,
		Message: "the database is unavailable: the change and its audit entry were not confirmed", Err: err}
}

// unavailable wraps a read's error: 503 when the database could not be
// reached or the connection was lost, else a plain error with what.
func unavailable(err error, what string) error {
	if isUnavailable(err) {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Message: "the database is unavailable", Err: fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isUnavailable reports whether err means the database was not there
// rather than that it refused the statement: no connection, a lost or
// timed-out connection, a server shutting down, out of disk or memory, or
// a server that does not accept writes (a standby).
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), pgconn.Timeout(err), pgconn.SafeToRetry(err), errors.As(err, &ne),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, pgx.ErrTxClosed), strings.Contains(err.Error(), "conn closed"):
		return true
	case errors.As(err, &pe):
		c := pe.Code
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "57P") || strings.HasPrefix(c, "53") ||
			strings.HasPrefix(c, "58") || c == "25006" // read_only_sql_transaction
	}
	return false
}

// isUniqueViolation reports whether err is a unique_violation.
func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// isForeignKeyViolation reports whether err is a foreign_key_violation.
func isForeignKeyViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23503"
}

// LockKey holds a session advisory lock on key (hashed) on one pooled
// connection until unlock is called: a lock that holds across replicas, for
// the rare operations that must not run twice at once anywhere (an
// employee's emergency checks, counted against their limit).
func (db *DB) LockKey(ctx context.Context, key string) (unlock func(), err error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection for lock: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1::text, 0))`, key); err != nil {
		conn.Release()
		return nil, fmt.Errorf("take lock: %w", err)
	}
	return func() {
		// Unlock even if the request's context has ended.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1::text, 0))`, key); err != nil {
			// A connection whose lock state is unknown must not be reused.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}, nil
}
