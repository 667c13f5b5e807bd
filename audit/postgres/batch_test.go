package postgres_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

// A batch is stored by INSERT statements of 256, 128, ... 1 rows, sent in
// one pipeline after the one that takes the lock, reads the head and
// records the token ids. Batches of every awkward size, one with a replayed
// token id among them, must give a log that verifies entry by entry, whose
// stored tree is the one rebuilt from the entries, in seq order with
// nothing lost.
func TestAppendBatchSizes(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	var want int64
	for bi, n := range []int{1, 2, 3, 255, 256, 257, 511, 512, 7} {
		batch := make([]*audit.Entry, n)
		for i := range batch {
			batch[i] = entry("size", bi*1000+i)
		}
		replay := -1
		if n > 2 {
			replay = n / 2
			batch[replay].RequestJTI = batch[0].RequestJTI
		}
		replayed, err := store.AppendBatch(ctx, batch)
		if err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		if replay >= 0 && (len(replayed) != 1 || replayed[0] != replay) || replay < 0 && len(replayed) != 0 {
			t.Fatalf("batch of %d: replayed %v, want [%d]", n, replayed, replay)
		}
		for i, e := range batch {
			if i == replay {
				continue
			}
			want++
			if e.Seq != want || e.TreeSize < want {
				t.Fatalf("batch of %d, entry %d: seq %d tree size %d, want seq %d", n, i, e.Seq, e.TreeSize, want)
			}
		}
	}
	rep, err := audit.Verify(ctx, store, nil, "")
	if err != nil || !rep.OK() || int64(rep.Entries) != want {
		t.Fatalf("verify: %v %+v, want %d entries", err, rep, want)
	}
	head, err := store.Head(ctx)
	if err != nil || head.Size != want || !bytes.Equal(head.Root, rep.Root) {
		t.Fatalf("stored tree head %+v (%v), rebuilt root %x over %d", head, err, rep.Root, want)
	}
}

// While a transaction older than the appends stays open (varsel audit
// verify's snapshot, pg_dump), PostgreSQL keeps every version of a row
// that the appends update. Each append reads the tree head and replaces
// it, under the chain lock; that read must not walk the versions the long
// transaction keeps, or every append slows down for as long as it runs.
// Counted in buffers, not time: with the head as one updated row (before
// migration 013), the same read after 1,000 such appends touched about 50
// buffers, one more for every 20 or so appends.
func TestTreeHeadReadUnderLongSnapshot(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	pool := runtimePool(t, url)
	store := &auditpg.Store{Pool: pool}
	if _, err := store.AppendBatch(ctx, []*audit.Entry{entry("snapshot", 0)}); err != nil {
		t.Fatal(err)
	}
	// Statistics as autovacuum leaves them (one live row): the plan a
	// cached statement keeps must still use the primary key.
	if _, err := owner.Exec(ctx, `VACUUM ANALYZE audit_tree_heads`); err != nil {
		t.Fatal(err)
	}
	// The head read planned now, in a transaction set up as the append's
	// (lockHeadJTIs), and kept, as pgx keeps its prepared statements.
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	asAppend := func(sql string, scan ...any) {
		t.Helper()
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, sql).Scan(scan...)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, `PREPARE head AS SELECT size FROM audit_tree_heads ORDER BY size DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	var size int64
	asAppend(`EXECUTE head`, &size)
	long, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback(ctx)
	var before int64
	if err := long.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	const appends = 1000
	for i := 1; i <= appends; i++ {
		if _, err := store.AppendBatch(ctx, []*audit.Entry{entry("snapshot", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Planned over one live row, a plain plan would scan every kept head.
	var plan []map[string]any
	asAppend(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE head`, &plan)
	top := plan[0]["Plan"].(map[string]any)
	if hits := top["Shared Hit Blocks"].(float64) + top["Shared Read Blocks"].(float64); hits > 8 {
		t.Errorf("reading the tree head after %d appends under an open snapshot touched %v buffers; want at most 8", appends, hits)
	}
	var heads int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_tree_heads`).Scan(&heads); err != nil || heads != 1 {
		t.Errorf("%d tree heads stored (%v); want 1, each append deleting the one it extended", heads, err)
	}
	head, err := store.Head(ctx)
	if err != nil || head.Size != appends+1 {
		t.Fatalf("tree head %+v (%v); want size %d", head, err, appends+1)
	}
	// The long transaction still sees the log as it was.
	var still int64
	if err := long.QueryRow(ctx, `SELECT coalesce(max(size), 0) FROM audit_tree_heads`).Scan(&still); err != nil || still != before {
		t.Fatalf("the long transaction sees a tree of %d (%v); want %d", still, err, before)
	}
}
