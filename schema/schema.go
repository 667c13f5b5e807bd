// Package schema holds Varsel's PostgreSQL migrations: plain, numbered,
// forward-only .sql files embedded in the binary and applied by
// github.com/jackc/tern/v2. Tern takes an advisory lock while it migrates, so
// several replicas starting at once with --migrate apply each file once.
package schema

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var files embed.FS

// versionTable records which migrations have been applied.
const versionTable = "schema_version"

// RuntimeRole is the database role the broker acts as while serving. The
// migrations create it and grant it only what each table needs: on the audit
// table, INSERT and SELECT alone.
const RuntimeRole = "varsel_app"

// Migrate applies every migration not yet applied to the database at url and
// returns the schema version it leaves. Applying it again is a no-op.
func Migrate(ctx context.Context, url string) (int32, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("connect for migration: %w", err)
	}
	defer conn.Close(ctx)

	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return 0, fmt.Errorf("prepare migrator: %w", err)
	}
	if err := m.LoadMigrations(mustSub()); err != nil {
		return 0, fmt.Errorf("load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Latest is the version of the newest embedded migration.
func Latest() int32 {
	names, err := migrate.FindMigrations(mustSub())
	if err != nil {
		return 0
	}
	return int32(len(names))
}

func mustSub() fs.FS {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}
