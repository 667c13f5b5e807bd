package postgres_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/schema/schematest"
)

// freshDB gives a test its own migrated database: the log's seqs start at 1.
func freshDB(t testing.TB) (url string, owner *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	url, err := schematest.NewDatabase(ctx, "audit_pg", false)
	if err != nil {
		t.Fatal(err)
	}
	owner, err = pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		owner.Close()
		_ = schematest.DropDatabase(context.Background(), url)
	})
	return url, owner
}

// runtimePool connects as the broker does: with the runtime role assumed.
func runtimePool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE varsel_app")
		return err
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func entry(actor string, i int) *audit.Entry {
	return &audit.Entry{
		TS: audit.FormatTime(time.Now()), ActorAgency: "nav-test", Actor: fmt.Sprintf("%s-%d", actor, i),
		Role: "caseworker", Office: "nav-a", Action: "check", Decision: audit.Allow,
		RequestJTI: fmt.Sprintf("jti-%s-%d-%d", actor, i, time.Now().UnixNano()),
	}
}

func newSigner(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "varsel-test")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return s, v
}

func TestConcurrentAppendsAcrossTwoWriters(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	// Two writers on separate pools, as two replicas would be.
	w1 := audit.NewWriter(&auditpg.Store{Pool: runtimePool(t, url)}, audit.WriterConfig{})
	w2 := audit.NewWriter(&auditpg.Store{Pool: runtimePool(t, url)}, audit.WriterConfig{})
	defer w1.Close()
	defer w2.Close()

	const goroutines, each = 64, 40
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			w := w1
			if g%2 == 1 {
				w = w2
			}
			for i := 0; i < each; i++ {
				r, err := w.Append(ctx, entry(fmt.Sprintf("g%d", g), i))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if _, dup := seen[r.Seq]; dup {
					errs <- fmt.Errorf("seq %d given twice", r.Seq)
				}
				seen[r.Seq] = r.Hash
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != goroutines*each {
		t.Fatalf("%d receipts, want %d", len(seen), goroutines*each)
	}
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	rep, err := audit.Verify(ctx, store, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Entries != goroutines*each || rep.Head.Seq != goroutines*each {
		t.Fatalf("report %+v", rep)
	}
	// Every receipt names the entry the log has at that seq.
	err = store.Entries(ctx, func(e *audit.Entry) error {
		if seen[e.Seq] != e.Hash {
			return fmt.Errorf("seq %d: receipt hash %s, log %s", e.Seq, seen[e.Seq], e.Hash)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReplayedTokenIDsAreRefused(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	w := audit.NewWriter(&auditpg.Store{Pool: runtimePool(t, url)}, audit.WriterConfig{})
	defer w.Close()
	e1 := entry("r", 1)
	if _, err := w.Append(ctx, e1); err != nil {
		t.Fatal(err)
	}
	again := entry("r", 2)
	again.RequestJTI = e1.RequestJTI
	if _, err := w.Append(ctx, again); err != audit.ErrReplayed {
		t.Fatalf("replayed jti: %v", err)
	}
	// The same jti for another agency is not a replay.
	other := entry("r", 3)
	other.RequestJTI, other.ActorAgency = e1.RequestJTI, "police-test"
	if r, err := w.Append(ctx, other); err != nil || r.Seq != 2 {
		t.Fatalf("other agency: %v %+v", err, r)
	}
	// Two uses in one batch: exactly one commits.
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	a, b := entry("r", 4), entry("r", 5)
	b.RequestJTI = a.RequestJTI
	replayed, err := store.AppendBatch(ctx, []*audit.Entry{a, b})
	if err != nil || len(replayed) != 1 || replayed[0] != 1 || a.Seq != 3 {
		t.Fatalf("batch with a repeat: %v %v seq %d", replayed, err, a.Seq)
	}
	rep, _ := audit.Verify(ctx, store, nil, "")
	if !rep.OK() || rep.Entries != 3 {
		t.Fatalf("after replays: %+v", rep)
	}
}

func TestRuntimeRoleCannotChangeTheLog(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	pool := runtimePool(t, url)
	w := audit.NewWriter(&auditpg.Store{Pool: pool}, audit.WriterConfig{})
	defer w.Close()
	for i := 0; i < 3; i++ {
		if _, err := w.Append(ctx, entry("rt", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{
		`UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 2`,
		`DELETE FROM audit_entries WHERE seq = 2`,
		`TRUNCATE audit_entries`,
		`UPDATE audit_checkpoints SET note = 'x'`,
		`DELETE FROM audit_checkpoints`,
		`ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only`,
	} {
		if _, err := pool.Exec(ctx, stmt); err == nil {
			t.Errorf("runtime role could run %q", stmt)
		} else if !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("%q failed for another reason: %v", stmt, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after attempts: %d %v", n, err)
	}
}

func TestTriggersStopEvenTheOwner(t *testing.T) {
	url, owner := freshDB(t)
	ctx := context.Background()
	w := audit.NewWriter(&auditpg.Store{Pool: runtimePool(t, url)}, audit.WriterConfig{})
	if _, err := w.Append(ctx, entry("own", 1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, stmt := range []string{`UPDATE audit_entries SET actor = 'x'`, `DELETE FROM audit_entries`, `TRUNCATE audit_entries`} {
		_, err := owner.Exec(ctx, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("owner ran %q: %v", stmt, err)
		}
	}
}

// TestVerifyFindsTampering changes the log as a superuser would (triggers
// disabled) and checks that Verify names the first bad seq.
func TestVerifyFindsTampering(t *testing.T) {
	signer, verifier := newSigner(t)
	cases := []struct {
		name    string
		tamper  func(ctx context.Context, owner *pgxpool.Pool) error
		wantSeq int64
		want    string
	}{
		{"row changed", func(ctx context.Context, owner *pgxpool.Pool) error {
			_, err := owner.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER;
				UPDATE audit_entries SET office = 'nav-elsewhere' WHERE seq = 7;
				ALTER TABLE audit_entries ENABLE TRIGGER USER`)
			return err
		}, 7, "hash does not match"},
		{"row changed and rehashed", func(ctx context.Context, owner *pgxpool.Pool) error {
			_, err := owner.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER;
				UPDATE audit_entries SET hash = repeat('a', 64) WHERE seq = 9;
				ALTER TABLE audit_entries ENABLE TRIGGER USER`)
			return err
		}, 9, "hash does not match"},
		{"middle row deleted", func(ctx context.Context, owner *pgxpool.Pool) error {
			_, err := owner.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER;
				DELETE FROM audit_entries WHERE seq = 5;
				ALTER TABLE audit_entries ENABLE TRIGGER USER`)
			return err
		}, 5, "missing"},
		{"tail deleted", func(ctx context.Context, owner *pgxpool.Pool) error {
			_, err := owner.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER;
				DELETE FROM audit_entries WHERE seq > 15;
				ALTER TABLE audit_entries ENABLE TRIGGER USER`)
			return err
		}, 16, "no longer has"},
		{"forged checkpoint", func(ctx context.Context, owner *pgxpool.Pool) error {
			forger, _ := newSigner(t)
			var hash string
			if err := owner.QueryRow(ctx, `SELECT hash FROM audit_entries WHERE seq = 12`).Scan(&hash); err != nil {
				return err
			}
			cp, err := audit.SignCheckpoint("varsel-test/audit", audit.TreeHead{Size: 12, Chain: hash, Root: make([]byte, 32)}, forger)
			if err != nil {
				return err
			}
			_, err = owner.Exec(ctx, `INSERT INTO audit_checkpoints (count, hash, note) VALUES (12, $1, $2)`, cp.Hash, cp.Note)
			return err
		}, 12, "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, owner := freshDB(t)
			ctx := context.Background()
			store := &auditpg.Store{Pool: runtimePool(t, url)}
			w := audit.NewWriter(store, audit.WriterConfig{})
			for i := 1; i <= 20; i++ {
				if _, err := w.Append(ctx, entry("tamper", i)); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			cpr := &audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: "varsel-test/audit"}
			if made, err := cpr.Checkpoint(ctx); err != nil || !made {
				t.Fatalf("checkpoint: %v %v", made, err)
			}
			rep, err := audit.Verify(ctx, store, verifier, "varsel-test/audit")
			if err != nil || !rep.OK() || rep.Checkpoints != 1 {
				t.Fatalf("before tampering: %+v %v", rep, err)
			}
			if err := tc.tamper(ctx, owner); err != nil {
				t.Fatal(err)
			}
			rep, err = audit.Verify(ctx, store, verifier, "varsel-test/audit")
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.FirstBad != tc.wantSeq || !strings.Contains(rep.Problem, tc.want) {
				t.Fatalf("got first bad %d (%s), want %d (%s)", rep.FirstBad, rep.Problem, tc.wantSeq, tc.want)
			}
		})
	}
}

func TestCheckpointer(t *testing.T) {
	url, _ := freshDB(t)
	ctx := context.Background()
	signer, verifier := newSigner(t)
	store := &auditpg.Store{Pool: runtimePool(t, url)}
	cpr := &audit.Checkpointer{Store: store, Signer: signer, Verifier: verifier, Origin: "varsel-test/audit", Interval: 50 * time.Millisecond}
	if made, err := cpr.Checkpoint(ctx); err != nil || made {
		t.Fatalf("empty log: %v %v", made, err)
	}
	w := audit.NewWriter(store, audit.WriterConfig{})
	defer w.Close()
	// The checkpointer is driven directly (its Run loop only calls
	// Checkpoint on a ticker): one checkpoint per new head, none for an
	// unchanged one.
	var last audit.Receipt
	for i := 0; i < 5; i++ {
		r, err := w.Append(ctx, entry("cp", i))
		if err != nil {
			t.Fatal(err)
		}
		last = r
		if made, err := cpr.Checkpoint(ctx); err != nil || !made {
			t.Fatalf("checkpoint after entry %d: %v %v", r.Seq, made, err)
		}
	}
	cp, err := store.LatestCheckpoint(ctx)
	if err != nil || cp == nil {
		t.Fatalf("latest: %v %v", cp, err)
	}
	head, err := audit.OpenCheckpoint(cp.Note, verifier)
	if err != nil || head.Origin != "varsel-test/audit" || head.Receipt() != (audit.Receipt{Seq: last.Seq, Hash: last.Hash}) || last.TreeSize != last.Seq {
		t.Fatalf("checkpoint %q: %v %+v want %+v", cp.Note, err, head, last)
	}
	cps, _ := store.Checkpoints(ctx)
	if len(cps) != 5 {
		t.Fatalf("%d checkpoints over 5 appends, each followed by a checkpoint", len(cps))
	}
	if made, _ := cpr.Checkpoint(ctx); made {
		t.Fatal("checkpointed an unchanged head")
	}
}

func TestMain(m *testing.M) {
	if _, err := schematest.ServerURL(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
