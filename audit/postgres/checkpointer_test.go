package postgres_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

const testOrigin = "varsel-test/audit"

// asSuperuser runs sql with the audit tables' triggers off, as someone who
// owns the database would to change the log.
func asSuperuser(t *testing.T, owner *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, owner, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE audit_entries ENABLE TRIGGER USER; ALTER TABLE audit_checkpoints ENABLE TRIGGER USER`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rechain changes entry from with change, then recomputes its hash and
// every later entry's prev_hash and hash: a rewrite that leaves a chain
// which holds on its own.
func rechain(t *testing.T, owner *pgxpool.Pool, from int64, change func(*audit.Entry)) {
	t.Helper()
	ctx := context.Background()
	st := &auditpg.Store{Pool: owner}
	var prev audit.Receipt
	var tail []*audit.Entry
	if err := st.EntriesRange(ctx, from-2, 0, func(e *audit.Entry) error {
		if e.Seq == from-1 {
			prev = e.Receipt()
			return nil
		}
		tail = append(tail, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	change(tail[0])
	audit.Link(prev, tail)
	for _, e := range tail {
		asSuperuser(t, owner, `UPDATE audit_entries SET actor = $2, office = $3, prev_hash = $4, hash = $5 WHERE seq = $1`,
			e.Seq, e.Actor, e.Office, e.PrevHash, e.Hash)
	}
}

// rangeCounter records which entries the checkpointer reads.
type rangeCounter struct {
	*auditpg.Store
	ranges [][2]int64
}

func (r *rangeCounter) EntriesRange(ctx context.Context, from, to int64, fn func(*audit.Entry) error) error {
	r.ranges = append(r.ranges, [2]int64{from, to})
	return r.Store.EntriesRange(ctx, from, to, fn)
}

func appendN(t *testing.T, w *audit.Writer, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := w.Append(context.Background(), entry("cpt", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func storedCounts(t *testing.T, st *auditpg.Store) []int64 {
	t.Helper()
	cps, err := st.Checkpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, cp := range cps {
		out = append(out, cp.Count)
	}
	return out
}

// TestCheckpointerRefusesRewrittenTail is the attack of the review: a
// superuser rewrites entries 15..20 (signed at 20), re-chains them so the
// chain holds on its own, deletes every checkpoint, and lets the broker go
// on appending. The running checkpointer does not sign the forgery; a
// checkpoint an auditor saved still shows it to audit verify.
func TestCheckpointerRefusesRewrittenTail(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	counter := &rangeCounter{Store: store}
	var logs strings.Builder
	var refusals []error
	cpr := &audit.Checkpointer{Store: counter, Signer: signer, Verifier: verifier, Origin: testOrigin,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), OnRefused: func(err error) { refusals = append(refusals, err) }}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()

	appendN(t, w, 20)
	if made, err := cpr.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("checkpoint at 20: %v %v", made, err)
	}
	saved, err := store.LatestCheckpoint(ctx) // an auditor's copy, kept elsewhere
	if err != nil || saved.Count != 20 {
		t.Fatalf("saved checkpoint: %+v %v", saved, err)
	}
	// Only the entries since the last checkpoint are read: 21..25 and the
	// checkpointed entry 20 itself.
	appendN(t, w, 5)
	counter.ranges = nil
	if made, err := cpr.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("checkpoint at 25: %v %v", made, err)
	}
	if len(counter.ranges) != 1 || counter.ranges[0] != [2]int64{19, 25} {
		t.Fatalf("read %v, want only (19, 25]", counter.ranges)
	}
	saved, _ = store.LatestCheckpoint(ctx)

	rechain(t, owner, 15, func(e *audit.Entry) { e.Office = "nav-elsewhere" })
	asSuperuser(t, owner, `DELETE FROM audit_checkpoints`)
	appendN(t, w, 3) // the broker goes on, chaining to the rewritten head

	for round := 1; round <= 2; round++ { // and keeps refusing
		made, err := cpr.Checkpoint(ctx)
		if made || !errors.Is(err, audit.ErrNotExtension) || !strings.Contains(err.Error(), "entry 25 no longer has the checkpointed hash") {
			t.Fatalf("round %d: made %v, err %v", round, made, err)
		}
		if len(refusals) != round || cpr.Refused() == nil {
			t.Fatalf("round %d: %d refusals reported, Refused() = %v", round, len(refusals), cpr.Refused())
		}
	}
	if got := storedCounts(t, store); len(got) != 0 {
		t.Fatalf("checkpoints stored after the rewrite: %v", got)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "audit checkpoint refused") {
		t.Fatalf("no error logged:\n%s", logs.String())
	}
	for _, content := range []string{"nav-elsewhere", "nav-a", "cpt-", "jti-"} {
		if strings.Contains(logs.String(), content) {
			t.Fatalf("the log line holds entry contents (%q):\n%s", content, logs.String())
		}
	}

	// The database alone now looks consistent, but for its unsigned tail;
	// the saved checkpoint shows the rewrite.
	saved.External = true
	rep, err := audit.Verify(ctx, audit.WithCheckpoints(store, []audit.Checkpoint{*saved}), verifier, testOrigin)
	if err != nil || rep.OK() || rep.FirstBad != 25 || !strings.Contains(rep.Problem, "another head hash") {
		t.Fatalf("verify with the saved checkpoint: %+v %v", rep, err)
	}
}

func TestCheckpointerRefusesTruncation(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	cpr := &audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: testOrigin}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()
	appendN(t, w, 20)
	if made, err := cpr.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("checkpoint: %v %v", made, err)
	}
	asSuperuser(t, owner, `DELETE FROM audit_entries WHERE seq > 17; DELETE FROM audit_checkpoints`)
	if _, err := cpr.Checkpoint(ctx); !errors.Is(err, audit.ErrNotExtension) || !strings.Contains(err.Error(), "the log ends at 17, before the tree's 20 leaves") {
		t.Fatalf("truncated: %v", err)
	}
	// Nothing more is appended to a log whose tree lost entries.
	if _, err := w.Append(ctx, entry("after-truncation", 0)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("append after truncation: %v", err)
	}
	// An intruder who also drops the tree head gets the tree rebuilt from
	// the entries that are left, and appends go on; the checkpointer still
	// refuses the new history.
	asSuperuser(t, owner, `DELETE FROM audit_tree_heads`)
	appendN(t, w, 5) // 18..22: seq 20 is there again, with another hash
	if _, err := cpr.Checkpoint(ctx); !errors.Is(err, audit.ErrNotExtension) || !strings.Contains(err.Error(), "entry 20 no longer has the checkpointed hash") {
		t.Fatalf("truncated and refilled: %v", err)
	}
	// A middle entry deleted under the checkpoint is a refusal too.
	url2, owner2 := freshDB(t)
	store2 := &auditpg.Store{Pool: runtimePool(t, url2)}
	cpr2 := &audit.Checkpointer{Store: store2, Signer: signer, Verifier: verifier, Origin: testOrigin}
	w2 := audit.NewWriter(store2, audit.WriterConfig{})
	defer w2.Close()
	appendN(t, w2, 10)
	if _, err := cpr2.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, w2, 5)
	asSuperuser(t, owner2, `DELETE FROM audit_entries WHERE seq = 12`)
	if _, err := cpr2.Checkpoint(ctx); !errors.Is(err, audit.ErrNotExtension) || !strings.Contains(err.Error(), "entry 12 is missing") {
		t.Fatalf("gap: %v", err)
	}
}

// TestCheckpointerExtendsOtherReplicasCheckpoints: a replica that trusts an
// older head still checks the newest stored checkpoint that its key signed
// (another replica's): a rewrite under it is refused, though the chain
// holds from the older head.
func TestCheckpointerExtendsOtherReplicasCheckpoints(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	storeA, storeB := &auditpg.Store{Pool: runtimePool(t, url)}, &auditpg.Store{Pool: runtimePool(t, url)}
	a := &audit.Checkpointer{Store: storeA, Signer: signer, Verifier: verifier, Origin: testOrigin}
	b := &audit.Checkpointer{Store: storeB, Signer: signer, Verifier: verifier, Origin: testOrigin}
	w := audit.NewWriter(storeA, audit.WriterConfig{})
	defer w.Close()
	appendN(t, w, 10)
	if made, err := a.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("A at 10: %v %v", made, err)
	}
	// B finds A's checkpoint of the head: nothing to sign.
	if made, err := b.Checkpoint(ctx); err != nil || made || b.Trusted().Seq != 10 {
		t.Fatalf("B at 10: %v %v, trusts %+v", made, err, b.Trusted())
	}
	appendN(t, w, 10)
	if made, err := a.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("A at 20: %v %v", made, err)
	}
	rechain(t, owner, 15, func(e *audit.Entry) { e.Actor = "someone-else" })
	appendN(t, w, 2)
	if _, err := b.Checkpoint(ctx); !errors.Is(err, audit.ErrNotExtension) || !strings.Contains(err.Error(), "entry 20 no longer has the hash a stored checkpoint signed with this key names") {
		t.Fatalf("B after the rewrite under A's checkpoint: %v", err)
	}
	if got := storedCounts(t, storeA); len(got) != 2 || got[1] != 20 {
		t.Fatalf("stored %v", got)
	}
}

// TestCheckpointerTrustsOnlyItsOwnSignatures: at start (no memory), a
// checkpointer trusts the newest stored checkpoint whose signature its own
// key verifies, never a row someone inserted.
func TestCheckpointerTrustsOnlyItsOwnSignatures(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	forger, _ := newSigner(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()
	appendN(t, w, 5)
	first := &audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: testOrigin}
	if made, err := first.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("checkpoint at 5: %v %v", made, err)
	}
	appendN(t, w, 15)
	// Entry 8 is changed and given its new hash, but entry 9 still links to
	// the old one; the checkpoints go, and a row in the checkpoint table
	// (signed by another key) claims the head.
	var e8 *audit.Entry
	_ = store.EntriesRange(ctx, 7, 8, func(e *audit.Entry) error { e8 = e; return nil })
	e8.Office = "nav-elsewhere"
	e8.Hash, _ = e8.ComputeHash(nil)
	asSuperuser(t, owner, `UPDATE audit_entries SET office = $1, hash = $2 WHERE seq = 8`, e8.Office, e8.Hash)
	asSuperuser(t, owner, `DELETE FROM audit_checkpoints`)
	head, _ := store.Head(ctx)
	forged, err := audit.SignCheckpoint(testOrigin, head, forger)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InsertCheckpoint(ctx, forged); err != nil { // the runtime role may insert checkpoints
		t.Fatal(err)
	}
	// A restarted broker: trusting the row it would sign on; it checks from 1.
	var logs strings.Builder
	restarted := &audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: testOrigin,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	appendN(t, w, 1)
	if _, err := restarted.Checkpoint(ctx); !errors.Is(err, audit.ErrNotExtension) || !strings.Contains(err.Error(), "entry 9 does not link to entry 8") {
		t.Fatalf("restarted: %v", err)
	}
	if !strings.Contains(logs.String(), "not signed by this broker's key") {
		t.Fatalf("the unverifiable rows were not mentioned:\n%s", logs.String())
	}

	// A row with another hash at the count it is about to sign: an error,
	// not a checkpoint silently dropped by the conflict.
	url2, _ := freshDB(t)
	store2 := &auditpg.Store{Pool: runtimePool(t, url2)}
	w2 := audit.NewWriter(store2, audit.WriterConfig{})
	defer w2.Close()
	appendN(t, w2, 3)
	junk, _ := audit.SignCheckpoint(testOrigin, audit.TreeHead{Size: 3, Chain: strings.Repeat("ab", 32), Root: make([]byte, 32)}, forger)
	if err := store2.InsertCheckpoint(ctx, junk); err != nil {
		t.Fatal(err)
	}
	cpr := &audit.Checkpointer{Store: store2, Signer: signer, Verifier: verifier, Origin: testOrigin}
	if _, err := cpr.Checkpoint(ctx); err == nil || !strings.Contains(err.Error(), "another hash is already stored at 3") {
		t.Fatalf("conflicting row: %v", err)
	}
	// Once the head moves on, it signs (the junk row stays for verify to name).
	appendN(t, w2, 1)
	if made, err := cpr.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("after the junk row: %v %v", made, err)
	}
	rep, _ := audit.Verify(ctx, store2, verifier, testOrigin)
	if rep.OK() || rep.FirstBad != 3 || !strings.Contains(rep.Problem, "signature") {
		t.Fatalf("verify with the junk row: %+v", rep)
	}
}

// TestCheckpointerRestartsFromItsNewestCheckpoint: a restart reads only
// the entries after the newest checkpoint its key signed.
func TestCheckpointerRestartsFromItsNewestCheckpoint(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()
	appendN(t, w, 30)
	if _, err := (&audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: testOrigin}).Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 4)
	counter := &rangeCounter{Store: store}
	restarted := &audit.Checkpointer{Store: counter, Signer: signer, Verifier: verifier, Origin: testOrigin}
	if made, err := restarted.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("restarted: %v %v", made, err)
	}
	if len(counter.ranges) != 1 || counter.ranges[0] != [2]int64{29, 34} {
		t.Fatalf("read %v, want only (29, 34]", counter.ranges)
	}
	if made, err := restarted.Checkpoint(ctx); err != nil || made {
		t.Fatalf("unchanged head: %v %v", made, err)
	}
	if _, err := (&audit.Checkpointer{Store: store, Signer: signer, Origin: testOrigin}).Checkpoint(ctx); err == nil {
		t.Fatal("a checkpointer without its verifier signed")
	}
}

// After the upgrade to the tree, the newest trusted checkpoint states no
// root (the chain head's hash stands where the root is): the checkpointer
// builds the tree under it from the entries and signs the next head's root.
func TestCheckpointerAfterPreTreeCheckpoint(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()
	appendN(t, w, 7)
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(head.Chain)
	old, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", testOrigin, head.Size, base64.StdEncoding.EncodeToString(raw))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InsertCheckpoint(ctx, audit.Checkpoint{Count: head.Size, Hash: head.Chain, Note: string(old)}); err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 5)
	cpr := &audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: testOrigin}
	if made, err := cpr.Checkpoint(ctx); err != nil || !made {
		t.Fatalf("checkpoint after a pre-tree one: %v %v", made, err)
	}
	cp, _ := store.LatestCheckpoint(ctx)
	signed, err := audit.OpenCheckpoint(cp.Note, verifier)
	now, _ := store.Head(ctx)
	if err != nil || signed.Size != 12 || !bytes.Equal(signed.Root, now.Root) {
		t.Fatalf("signed %+v (%v), tree head %+v", signed, err, now)
	}
	rep, err := audit.Verify(ctx, store, verifier, testOrigin)
	if err != nil || !rep.OK() || rep.Checkpoints != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
