// Package postgres stores Varsel's state in PostgreSQL through a pgx pool.
// Every table it touches is created by the migrations in varsel/schema.
package postgres

import (
	"context"
	"errors"
	"fmt"
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
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	if opt.Role != "" {
		role := opt.Role
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize())
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
