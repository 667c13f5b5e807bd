package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

// forgingProxy stands between the monitor and the real broker, and serves
// forged answers where the test says so: a malicious log server.
type forgingProxy struct {
	*httptest.Server
	mu       sync.Mutex
	override map[string]func(real []byte) []byte // by path: rewrite the broker's answer
}

func newForgingProxy(t *testing.T, base string) *forgingProxy {
	t.Helper()
	target, _ := url.Parse(base)
	p := &forgingProxy{override: map[string]func([]byte) []byte{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		p.mu.Lock()
		f := p.override[r.Request.URL.Path]
		p.mu.Unlock()
		if f == nil {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		b = f(b)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		r.ContentLength = int64(len(b))
		r.Header.Del("Content-Length")
		return nil
	}
	p.Server = httptest.NewServer(rp)
	t.Cleanup(p.Close)
	return p
}

func (p *forgingProxy) set(path string, f func([]byte) []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f == nil {
		delete(p.override, path)
		return
	}
	p.override[path] = f
}

// flipProofHash changes one byte of the first hash of a proof answer.
func flipProofHash(b []byte) []byte {
	var p map[string]any
	if json.Unmarshal(b, &p) != nil {
		return b
	}
	hs, _ := p["hashes"].([]any)
	if len(hs) > 0 {
		s := hs[0].(string)
		c := 'A'
		if s[0] == 'A' {
			c = 'B'
		}
		hs[0] = string(c) + s[1:]
	}
	out, _ := json.Marshal(p)
	return out
}

type monitorRun struct {
	t                 *testing.T
	key, state, rcpts string
}

func (m *monitorRun) run(base string, extra ...string) (string, error) {
	m.t.Helper()
	args := append([]string{"audit", "monitor", "--url", base, "--checkpoint-key", m.key, "--state", m.state}, extra...)
	if m.rcpts != "" {
		args = append(args, "--receipts", m.rcpts)
	}
	return cli(m.t, args...)
}

func (m *monitorRun) mustFail(t *testing.T, base, want string) {
	t.Helper()
	before, _ := os.ReadFile(m.state)
	out, err := m.run(base)
	matched := false
	for _, alt := range strings.Split(want, "|") { // any of the alternatives
		matched = matched || (err != nil && strings.Contains(err.Error(), alt))
	}
	if !matched || strings.Contains(err.Error(), "\n") {
		t.Fatalf("monitor: %q %v, want one line with %q", out, err, want)
	}
	if ec, ok := err.(interface{ ExitCode() int }); ok && ec.ExitCode() == 0 {
		t.Fatalf("exit code 0 for %v", err)
	}
	if after, _ := os.ReadFile(m.state); string(after) != string(before) {
		t.Fatal("a failed run changed the state file")
	}
}

// TestAuditMonitor: an agency's monitor accepts the honest log as it
// grows, with its receipts, and refuses each forgery a malicious server (a
// proxy in front of the real broker, holding the broker's signing key, as
// a dishonest operator would) serves, naming what failed.
func TestAuditMonitor(t *testing.T) {
	dir := t.TempDir()
	keysDir := "file:" + filepath.Join(dir, "keys")
	w := newWorld(t, func(c *Config) { c.Keys = keysDir })
	ctx := context.Background()
	m := &monitorRun{t: t, key: filepath.Join(dir, "broker.vkey"), state: filepath.Join(dir, "state.json"), rcpts: filepath.Join(dir, "receipts.jsonl")}
	if err := os.WriteFile(m.key, get(t, w.base, "/v1/audit/key", 200), 0o600); err != nil {
		t.Fatal(err)
	}
	var receipts []string
	checks := func(n int) {
		for range n {
			var res struct {
				Audit audit.Receipt `json:"audit"`
			}
			resp, err := w.caseworker().JSON(ctx, "POST", "/v1/checks", map[string]any{"subject": personB, "purpose": "meeting"}, &res)
			if err != nil || resp.Status != 200 {
				t.Fatalf("check: %v %+v", err, resp)
			}
			b, _ := json.Marshal(res.Audit)
			receipts = append(receipts, string(b))
		}
		if err := os.WriteFile(m.rcpts, []byte(strings.Join(receipts, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkpointNow(t, w.main)
	}
	checks(40)
	out, err := m.run(w.base)
	if err != nil || !strings.Contains(out, "OK") || !strings.Contains(out, "40 receipts included") || !strings.Contains(out, "first seen") {
		t.Fatalf("first run: %q %v", out, err)
	}
	seen := get(t, w.base, "/v1/audit/checkpoint", 200)
	checks(300) // the tree passes a full tile
	if out, err := m.run(w.base); err != nil || !strings.Contains(out, "consistent with") || !strings.Contains(out, "340 receipts included") {
		t.Fatalf("second run: %q %v", out, err)
	}

	signer, _, err := w.main.Keys.CheckpointSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signedHead, err := audit.OpenCheckpoint(string(get(t, w.base, "/v1/audit/checkpoint", 200)), logVerifier(t, w.base))
	if err != nil {
		t.Fatal(err)
	}
	resign := func(h audit.TreeHead) []byte {
		cp, err := audit.SignCheckpoint("varsel/audit", h, signer)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(cp.Note)
	}
	p := newForgingProxy(t, w.base)
	if out, err := m.run(p.URL); err != nil {
		t.Fatalf("through the honest proxy: %q %v", out, err)
	}

	t.Run("bad signature", func(t *testing.T) {
		skey, _, _ := note.GenerateKey(rand.Reader, "varsel")
		other, _ := note.NewSigner(skey)
		p.set("/v1/audit/checkpoint", func([]byte) []byte {
			cp, _ := audit.SignCheckpoint("varsel/audit", audit.TreeHead{Size: signedHead.Size, Root: signedHead.Root, Chain: signedHead.Chain}, other)
			return []byte(cp.Note)
		})
		defer p.set("/v1/audit/checkpoint", nil)
		m.mustFail(t, p.URL, "signature does not verify")
	})
	t.Run("tree shrinks", func(t *testing.T) {
		p.set("/v1/audit/checkpoint", func([]byte) []byte { return seen })
		defer p.set("/v1/audit/checkpoint", nil)
		m.mustFail(t, p.URL, "the log shrank")
	})
	t.Run("fork", func(t *testing.T) {
		root := make([]byte, 32)
		p.set("/v1/audit/checkpoint", func([]byte) []byte {
			return resign(audit.TreeHead{Size: signedHead.Size, Root: root, Chain: signedHead.Chain})
		})
		defer p.set("/v1/audit/checkpoint", nil)
		m.mustFail(t, p.URL, "fork")
	})
	t.Run("tile does not hash to the root", func(t *testing.T) {
		size := uint64(signedHead.Size)
		path := "/v1/audit/" + layout.TilePath(0, size/256, uint8(size%256))
		p.set(path, func(b []byte) []byte { b[0] ^= 1; return b })
		defer p.set(path, nil)
		m.mustFail(t, p.URL, "tiles do not hash to the checkpoint's root")
	})
	t.Run("changed entry's inclusion proof", func(t *testing.T) {
		p.set("/v1/audit/proof", flipProofHash)
		defer p.set("/v1/audit/proof", nil)
		m.mustFail(t, p.URL, "missing receipt")
	})
	t.Run("receipt for a changed entry", func(t *testing.T) {
		var r audit.Receipt
		_ = json.Unmarshal([]byte(receipts[7]), &r)
		r.Hash = strings.Repeat("0", 63) + "1"
		b, _ := json.Marshal(r)
		bad := filepath.Join(dir, "bad-receipts.jsonl")
		_ = os.WriteFile(bad, b, 0o600)
		mm := *m
		mm.rcpts = bad
		mm.mustFail(t, w.base, "missing receipt: entry")
	})
	t.Run("consistency proof that does not link", func(t *testing.T) {
		checks(5)
		p.set("/v1/audit/consistency", flipProofHash)
		defer p.set("/v1/audit/consistency", nil)
		m.mustFail(t, p.URL, "inconsistent")
	})

	// A broker operator's rewrite: an entry changed as the database
	// superuser, the chain and the tree recomputed, the checkpoints
	// deleted, and a new checkpoint signed with the broker's own key by a
	// restarted broker. The monitor that saw the earlier checkpoint catches
	// it.
	t.Run("operator rewrite", func(t *testing.T) {
		if out, err := m.run(w.base); err != nil {
			t.Fatalf("before the rewrite: %q %v", out, err)
		}
		rewriteEntry(t, w.db, 10)
		// A broker started after the rewrite trusts no checkpoint (they
		// are gone) and signs the rewritten log with the broker's key.
		main2, base2 := startMainClock(t, w.db, w.clock.Now, func(c *Config) { c.Keys = keysDir })
		checkpointNow(t, main2)
		if _, err := audit.OpenCheckpoint(string(get(t, base2, "/v1/audit/checkpoint", 200)), logVerifier(t, base2)); err != nil {
			t.Fatalf("the rewritten log's checkpoint is not signed by the broker's key: %v", err)
		}
		// The same size with another root (a fork), or a larger tree that
		// does not extend the one seen, depending on whether the restart
		// appended an entry before the checkpoint.
		m.mustFail(t, base2, "fork|inconsistent")
		mm := *m
		mm.rcpts = ""
		// After more entries, the same rewrite shows as an inconsistency.
		cw := w.caseworker()
		cw.BaseURL = base2
		if _, resp := call[map[string]any](t, cw, "POST", "/v1/checks",
			map[string]any{"subject": personB, "purpose": "meeting"}); resp.Status != 200 {
			t.Fatalf("check: %+v", resp)
		}
		checkpointNow(t, main2)
		mm.mustFail(t, base2, "inconsistent")
	})
}

// rewriteEntry does what a dishonest operator with database superuser
// rights can: changes entry seq, re-links and re-hashes every entry after
// it, deletes the checkpoints and the tree (the broker rebuilds the tree
// from the entries when it starts).
func rewriteEntry(t *testing.T, dbURL string, seq int64) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var entries []*audit.Entry
	if err := (&auditpg.Store{Pool: pool}).Entries(ctx, func(e *audit.Entry) error {
		entries = append(entries, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	entries[seq-1].Actor = "someone-else"
	audit.Link(audit.Receipt{Seq: seq - 1, Hash: entries[seq-2].Hash}, entries[seq-1:])
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_entries DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;
			ALTER TABLE audit_tree_nodes DISABLE TRIGGER USER; ALTER TABLE audit_cosignatures DISABLE TRIGGER USER`); err != nil {
			return err
		}
		for _, e := range entries[seq-1:] {
			if _, err := tx.Exec(ctx, `UPDATE audit_entries SET actor = $2, prev_hash = $3, hash = $4 WHERE seq = $1`,
				e.Seq, e.Actor, e.PrevHash, e.Hash); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_cosignatures; DELETE FROM audit_checkpoints; DELETE FROM audit_tree_nodes; DELETE FROM audit_tree_heads`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE audit_entries ENABLE TRIGGER USER; ALTER TABLE audit_checkpoints ENABLE TRIGGER USER;
			ALTER TABLE audit_tree_nodes ENABLE TRIGGER USER; ALTER TABLE audit_cosignatures ENABLE TRIGGER USER`)
		return err
	})
	if err != nil {
		t.Fatalf("rewrite: %v", err)
	}
}

// TestAuditVerifyCatchesTreeForgery: audit verify checks the stored tree
// (what tiles and proofs are built from) against the entries, and, with a
// checkpoint kept outside the database, catches an operator's rewrite that
// recomputed the chain, the tree and the checkpoints with the broker's key.
func TestAuditVerifyCatchesTreeForgery(t *testing.T) {
	dir := t.TempDir()
	keysDir := "file:" + filepath.Join(dir, "keys")
	w := newWorld(t, func(c *Config) { c.Keys = keysDir })
	ctx := context.Background()
	for range 300 {
		if _, resp := w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting"}); resp.Status != 200 {
			t.Fatalf("check: %+v", resp)
		}
	}
	checkpointNow(t, w.main)
	key := filepath.Join(dir, "broker.vkey")
	saved := filepath.Join(dir, "saved-checkpoint")
	_ = os.WriteFile(key, get(t, w.base, "/v1/audit/key", 200), 0o600)
	_ = os.WriteFile(saved, get(t, w.base, "/v1/audit/checkpoint", 200), 0o600)
	verify := func(extra ...string) (string, error) {
		return cliOn(t, w.db, append([]string{"audit", "verify", "--checkpoint-key", key, "--max-unsigned-age", "0"}, extra...)...)
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "ok:") {
		t.Fatalf("honest log: %q %v", out, err)
	}

	// A tile node changed in the database: the tiles no longer hash to
	// the entries' root.
	pool, err := pgxpool.New(ctx, w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var orig []byte
	if err := pool.QueryRow(ctx, `SELECT hash FROM audit_tree_nodes WHERE level = 8 AND idx = 0`).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	forged := append([]byte{orig[0] ^ 1}, orig[1:]...)
	setNode := func(h []byte) {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for _, q := range []string{`ALTER TABLE audit_tree_nodes DISABLE TRIGGER USER`,
				`UPDATE audit_tree_nodes SET hash = $1 WHERE level = 8 AND idx = 0`,
				`ALTER TABLE audit_tree_nodes ENABLE TRIGGER USER`} {
				args := []any{}
				if strings.Contains(q, "$1") {
					args = append(args, h)
				}
				if _, err := tx.Exec(ctx, q, args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setNode(forged)
	if _, err := verify(); err == nil || !strings.Contains(err.Error(), "stored tile node at level 8, index 0") {
		t.Fatalf("forged tile node: %v", err)
	}
	setNode(orig)

	// The operator's rewrite, re-signed by a broker started after it.
	rewriteEntry(t, w.db, 10)
	main2, _ := startMainClock(t, w.db, w.clock.Now, func(c *Config) { c.Keys = keysDir })
	checkpointNow(t, main2)
	if out, err := verify(); err != nil {
		t.Fatalf("the rewritten log verifies on its own (nothing outside it is kept): %q %v", out, err)
	}
	if _, err := verify("--trusted-checkpoint", saved); err == nil || !strings.Contains(err.Error(), "FAILED at seq") {
		t.Fatalf("a kept checkpoint must catch the rewrite: %v", err)
	}
}
