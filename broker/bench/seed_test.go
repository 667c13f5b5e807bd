package bench

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/schema/schematest"
)

// TestSeedEntriesVerify checks that the seeded entries continue the chain
// after an existing head, across COPY batches, exactly as the writer would
// have linked them: the whole log verifies.
func TestSeedEntriesVerify(t *testing.T) {
	ctx := context.Background()
	url, err := schematest.NewDatabase(ctx, "broker_bench", false)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		_ = schematest.DropDatabase(context.Background(), url)
	})
	store := &auditpg.Store{Pool: pool}
	first := &audit.Entry{TS: audit.FormatTime(time.Now().Add(-400 * 24 * time.Hour)), ActorAgency: "nav-state-1", Actor: "cw-0",
		Role: "caseworker", Office: "nav-office-01", Action: "check", Decision: audit.Allow, RequestJTI: "before-the-seed"}
	if _, err := store.AppendBatch(ctx, []*audit.Entry{first}); err != nil {
		t.Fatal(err)
	}
	const n = 120_000 // three batches, the last one partial
	if err := seedEntries(ctx, pool, n, t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, store, nil, "")
	if err != nil || !rep.OK() || rep.Entries != n+1 || rep.Head.Seq != n+1 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	var jti string
	if err := pool.QueryRow(ctx, `SELECT request_jti FROM audit_entries WHERE seq = $1`, n+1).Scan(&jti); err != nil || jti != "seed-120000" {
		t.Fatalf("last entry's request_jti %q, %v", jti, err)
	}
}
