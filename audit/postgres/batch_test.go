package postgres_test

import (
	"bytes"
	"context"
	"testing"

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
