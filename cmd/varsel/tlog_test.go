package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
)

// get fetches a public transparency endpoint of the broker (no signed
// request), failing the test on a status other than want.
func get(t testing.TB, base, path string, want int) []byte {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	return b
}

// logVerifier is the checkpoint key the broker publishes.
func logVerifier(t testing.TB, base string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(strings.TrimSpace(string(get(t, base, "/v1/audit/key", 200))))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type proofJSON struct {
	LeafIndex *int64   `json:"leaf_index"`
	From      *int64   `json:"from"`
	TreeSize  int64    `json:"tree_size"`
	Hashes    []string `json:"hashes"`
}

func decodeProof(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var p proofJSON
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		raw, err := base64.StdEncoding.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

func leafOf(t testing.TB, hexHash string) []byte {
	t.Helper()
	raw, err := hex.DecodeString(hexHash)
	if err != nil {
		t.Fatal(err)
	}
	return rfc6962.DefaultHasher.HashLeaf(raw)
}

// TestTransparencyLog is the issue's acceptance with the real broker and
// Postgres: a third-party-style client (Tessera's tlog-tiles client and
// transparency-dev/merkle only) rebuilds the root from the tiles and gets
// the signed checkpoint's; every receipt of 1,000 checks has an inclusion
// proof that verifies against a later checkpoint; consistency proofs
// verify between every pair of checkpoints seen; entry bundles are for the
// broker's auditors only and hash to the level-0 tiles.
func TestTransparencyLog(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	if _, resp := w.issue(w.liaison(), flagBody(personA)); resp.Status != 201 {
		t.Fatalf("issue: %d %s", resp.Status, resp.Body)
	}
	v := logVerifier(t, w.base)
	origin := "varsel/audit"

	// 1,000 checks from 8 callers; a checkpoint after each 200.
	var receipts []audit.Receipt
	var checkpoints [][]byte
	var mu sync.Mutex
	for round := range 5 {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cw := w.as(w.navState, fmt.Sprintf("cw-%d", g), "caseworker", "nav-grorud")
				for i := range 25 {
					subject := personB
					if i%5 == 0 {
						subject = personA // disclosed
					}
					var res struct {
						Audit audit.Receipt `json:"audit"`
					}
					resp, err := cw.JSON(ctx, "POST", "/v1/checks", map[string]any{"subject": subject, "purpose": "meeting"}, &res)
					if err != nil || resp.Status != 200 {
						t.Errorf("check: %v %+v", err, resp)
						return
					}
					mu.Lock()
					receipts = append(receipts, res.Audit)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if _, err := w.main.Checkpointer.Checkpoint(ctx); err != nil {
			t.Fatalf("checkpoint %d: %v", round, err)
		}
		checkpoints = append(checkpoints, get(t, w.base, "/v1/audit/checkpoint", 200))
	}
	if len(receipts) != 1000 {
		t.Fatalf("%d receipts", len(receipts))
	}

	// The third-party client: the checkpoint opened with the published
	// key, the tree's compact range read out of the tiles, its root.
	u, _ := url.Parse(w.base + "/v1/audit/")
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	latest, _, _, err := client.FetchCheckpoint(ctx, f.ReadCheckpoint, v, origin)
	if err != nil {
		t.Fatalf("third-party client: %v", err)
	}
	nodes, err := client.FetchRangeNodes(ctx, latest.Size, f.ReadTile)
	if err != nil {
		t.Fatalf("range from tiles: %v", err)
	}
	rng, err := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewRange(0, latest.Size, nodes)
	if err != nil {
		t.Fatal(err)
	}
	root, err := rng.GetRootHash(nil)
	if err != nil || string(root) != string(latest.Hash) {
		t.Fatalf("root from tiles %x (%v), checkpoint states %x", root, err, latest.Hash)
	}
	// The whole level-0 row, leaf by leaf, against the entries' hashes.
	leaves, err := client.FetchLeafHashes(ctx, f.ReadTile, 0, latest.Size, latest.Size)
	if err != nil || uint64(len(leaves)) != latest.Size {
		t.Fatalf("leaf hashes: %d %v", len(leaves), err)
	}

	// Every receipt: its leaf, and its inclusion in the latest tree; and
	// in the tree its receipt named.
	for _, r := range receipts {
		if r.LeafIndex != r.Seq-1 || r.TreeSize < r.Seq || uint64(r.TreeSize) > latest.Size {
			t.Fatalf("receipt %+v", r)
		}
		leaf := leafOf(t, r.Hash)
		if string(leaves[r.LeafIndex]) != string(leaf) {
			t.Fatalf("tile leaf %d is not the receipt's", r.LeafIndex)
		}
		p := decodeProof(t, get(t, w.base, fmt.Sprintf("/v1/audit/proof?seq=%d&tree_size=%d", r.Seq, latest.Size), 200))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(r.LeafIndex), latest.Size, leaf, p, latest.Hash); err != nil {
			t.Fatalf("inclusion of receipt %d: %v", r.Seq, err)
		}
	}
	// A proof built client-side from the tiles is the server's.
	pb, err := client.NewProofBuilder(ctx, latest.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := pb.InclusionProof(ctx, 123)
	if err != nil {
		t.Fatal(err)
	}
	theirs := decodeProof(t, get(t, w.base, fmt.Sprintf("/v1/audit/proof?seq=124&tree_size=%d", latest.Size), 200))
	if fmt.Sprint(mine) != fmt.Sprint(theirs) {
		t.Fatal("the server's inclusion proof is not the one the tiles give")
	}

	// Consistency between every pair of checkpoints seen.
	var heads []*log.Checkpoint
	for _, raw := range checkpoints {
		cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
		if err != nil {
			t.Fatal(err)
		}
		heads = append(heads, cp)
	}
	for i, a := range heads {
		for _, b := range heads[i+1:] {
			p := decodeProof(t, get(t, w.base, fmt.Sprintf("/v1/audit/consistency?from=%d&to=%d", a.Size, b.Size), 200))
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, p, a.Hash, b.Hash); err != nil {
				t.Fatalf("consistency %d -> %d: %v", a.Size, b.Size, err)
			}
		}
	}

	// Entry bundles: the broker's auditor reads them (signed, audited); the
	// entries hash to their hashes and those to the level-0 tile.
	auditor := w.as(w.ops, "auditor", "privacy-officer", "")
	resp, err := auditor.Do(ctx, "GET", "/v1/audit/tile/entries/000", nil)
	if err != nil || resp.Status != 200 {
		t.Fatalf("entry bundle: %v %+v", err, resp)
	}
	var bundle api.EntryBundle
	if err := bundle.UnmarshalText(resp.Body); err != nil || len(bundle.Entries) != 256 {
		t.Fatalf("bundle: %d entries, %v", len(bundle.Entries), err)
	}
	for i, raw := range bundle.Entries {
		e, err := audit.ParseEntryLine(raw)
		if err != nil {
			t.Fatalf("bundle entry %d: %v", i, err)
		}
		if e.Seq != int64(i+1) || string(leafOf(t, e.Hash)) != string(leaves[i]) {
			t.Fatalf("bundle entry %d (seq %d) does not hash to its leaf", i, e.Seq)
		}
	}
	// An agency's officer may not read them, nor anyone unsigned.
	officer := w.as(w.navState, "po", "privacy-officer", "")
	if resp, err := officer.Do(ctx, "GET", "/v1/audit/tile/entries/000", nil); err != nil || resp.Status != 403 {
		t.Fatalf("agency officer read an entry bundle: %v %+v", err, resp)
	}
	get(t, w.base, "/v1/audit/tile/entries/000", 401)

	// Bad input: clear errors.
	get(t, w.base, fmt.Sprintf("/v1/audit/proof?seq=1&tree_size=%d", latest.Size+1_000_000), 422)
	get(t, w.base, "/v1/audit/proof?seq=0&tree_size=5", 422)
	get(t, w.base, "/v1/audit/proof?seq=x&tree_size=5", 422)
	get(t, w.base, "/v1/audit/consistency?from=9&to=5", 422)
	get(t, w.base, "/v1/audit/tile/0/x999/999", 404)
	get(t, w.base, "/v1/audit/tile/0/abc", 404)
	get(t, w.base, "/v1/audit/tile//000", 404)
	// An index whose tile offset would wrap around 2^64 is beyond the tree,
	// not tile 0 again.
	get(t, w.base, "/v1/audit/tile/0/x072/x057/x594/x037/x927/936", 404)
	if resp, err := auditor.Do(ctx, "GET", "/v1/audit/tile/entries/x072/x057/x594/x037/x927/936", nil); err != nil || resp.Status != 404 {
		t.Fatalf("wrapped entry bundle index: %v %+v", err, resp)
	}
}
