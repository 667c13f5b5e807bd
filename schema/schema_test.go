package schema_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"varsel/schema"
	"varsel/schema/schematest"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	ctx := context.Background()
	url, err := schematest.NewDatabase(ctx, "schema", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = schematest.DropDatabase(context.Background(), url) })

	v1, err := schema.Migrate(ctx, url)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	if v1 != schema.Latest() || v1 == 0 {
		t.Fatalf("after first migrate: version %d, want latest %d", v1, schema.Latest())
	}
	before := catalog(t, url)
	v2, err := schema.Migrate(ctx, url)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if v2 != v1 {
		t.Fatalf("second migrate moved the version from %d to %d", v1, v2)
	}
	if after := catalog(t, url); after != before {
		t.Fatalf("second migrate changed the catalog:\nbefore %s\nafter  %s", before, after)
	}
}

// catalog summarises the public schema's tables, columns, triggers and grants.
func catalog(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	err = conn.QueryRow(ctx, `
		SELECT coalesce(string_agg(x, ';' ORDER BY x), '') FROM (
		  SELECT table_name || '.' || column_name || ':' || data_type AS x
		    FROM information_schema.columns WHERE table_schema = 'public'
		  UNION ALL SELECT 'trigger:' || tgname FROM pg_trigger WHERE NOT tgisinternal
		  UNION ALL SELECT 'grant:' || grantee || ':' || table_name || ':' || privilege_type
		    FROM information_schema.role_table_grants WHERE table_schema = 'public'
		  UNION ALL SELECT 'rows:' || count(*)::text FROM schema_version
		) q`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	if s == "" {
		t.Fatal("empty catalog")
	}
	return s
}
