// Package monitor is what an agency runs against the broker's audit log
// (varsel audit monitor): it fetches the newest signed checkpoint, checks
// its signature, checks that it is consistent with the last one it saw
// (kept in a small state file), and checks that every receipt the agency
// kept is included in it. It reads only the public transparency endpoints
// (hashes, never entries), and trusts nothing the broker says that a
// signature or a proof does not bind.
package monitor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	"varsel/audit/witness"
)

// Config is one monitoring run.
type Config struct {
	URL      string        // the broker's base URL
	Verifier note.Verifier // the broker's checkpoint key
	Origin   string        // the checkpoints' origin (BROKER-ID/audit)
	State    string        // the state file: the last checkpoint seen
	Receipts []audit.Receipt
	// WitnessKeys are the witnesses' cosignature verifier keys (C2SP
	// tlog-cosignature); at least WitnessesRequired of them must have
	// cosigned the checkpoint.
	WitnessKeys       []string
	WitnessesRequired int
	Client            *http.Client
	Now               func() time.Time
}

// State is what the monitor keeps between runs.
type State struct {
	Origin     string    `json:"origin"`
	Size       int64     `json:"size"`
	Root       []byte    `json:"root"` // base64 in JSON
	Checkpoint string    `json:"checkpoint"`
	SeenAt     time.Time `json:"seen_at"`
}

// Result is a run that found nothing wrong.
type Result struct {
	Head      audit.SignedHead
	Previous  int64 // the size last seen (0: first run)
	Receipts  int   // receipts proven included
	Pending   int   // receipts newer than the checkpoint (checked on a later run)
	Cosigners int   // witnesses whose cosignature verified
}

// Failure is a check that failed: the log (or the broker serving it) is
// not what it signed before, or does not hold a receipt.
type Failure struct{ Problem string }

func (f *Failure) Error() string { return f.Problem }

func failf(format string, args ...any) error { return &Failure{Problem: fmt.Sprintf(format, args...)} }

// Run checks the broker's log once. A *Failure means the log failed a
// check; any other error that the check could not be made (the broker
// unreachable, the state file unreadable). The state file is written only
// after every check passed.
func Run(ctx context.Context, c Config) (*Result, error) {
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// One run at a time per state file (cron runs may overlap): a slower
	// run must not write an older checkpoint over a newer one.
	unlock, err := lockState(c.State)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := loadState(c.State)
	if err != nil {
		return nil, err
	}
	raw, status, err := c.get(ctx, "/v1/audit/checkpoint")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/audit/checkpoint: status %d", status)
	}
	head, err := audit.OpenCheckpoint(string(raw), c.Verifier)
	if err != nil {
		return nil, failf("the checkpoint's signature does not verify with the broker's key: %v", err)
	}
	switch {
	case head.Origin != c.Origin:
		return nil, failf("the checkpoint is for origin %q, not %q", head.Origin, c.Origin)
	case head.Root == nil:
		return nil, failf("the checkpoint states no Merkle tree root (a broker from before the tree)")
	}
	res := &Result{Head: head}
	if prev != nil {
		if prev.Origin != c.Origin {
			return nil, fmt.Errorf("the state file %s is for origin %q, not %q", c.State, prev.Origin, c.Origin)
		}
		res.Previous = prev.Size
		if err := c.consistent(ctx, prev, head); err != nil {
			return nil, err
		}
	}
	// The tiles a tlog-tiles client reads must give the signed root.
	if err := c.tilesGiveRoot(ctx, head); err != nil {
		return nil, err
	}
	if res.Cosigners, err = witness.VerifyCosignatures(string(raw), c.WitnessKeys, 0); err != nil {
		return nil, err
	}
	if res.Cosigners < c.WitnessesRequired {
		return nil, failf("the checkpoint at %d carries %d valid witness cosignatures, %d required", head.Size, res.Cosigners, c.WitnessesRequired)
	}
	for _, r := range c.Receipts {
		if r.Seq > head.Size {
			// Newer than the checkpoint (signed every few seconds): it is
			// checked by a later run, once a checkpoint covers it.
			res.Pending++
			continue
		}
		if err := c.included(ctx, r, head); err != nil {
			return nil, err
		}
		res.Receipts++
	}
	st := State{Origin: c.Origin, Size: head.Size, Root: head.Root, Checkpoint: string(raw), SeenAt: c.Now().UTC()}
	if err := saveState(c.State, st); err != nil {
		return nil, err
	}
	return res, nil
}

// tilesGiveRoot reads the tree's compact range at head's size out of the
// broker's tiles (C2SP tlog-tiles, with Tessera's client: one tile per
// level along the right edge) and checks that it hashes to head's root.
func (c Config) tilesGiveRoot(ctx context.Context, head audit.SignedHead) error {
	u, err := url.Parse(strings.TrimSuffix(c.URL, "/") + "/v1/audit/")
	if err != nil {
		return fmt.Errorf("broker url %q: %w", c.URL, err)
	}
	f, err := client.NewHTTPFetcher(u, c.Client)
	if err != nil {
		return err
	}
	tree, err := audit.TreeFromTiles(ctx, httpTiles{f}, uint64(head.Size))
	if err != nil {
		return failf("the broker's tiles for the tree of %d cannot be read: %v", head.Size, err)
	}
	if !bytes.Equal(tree.Root(), head.Root) {
		return failf("the tiles do not hash to the checkpoint's root at %d", head.Size)
	}
	return nil
}

type httpTiles struct{ f *client.HTTPFetcher }

func (t httpTiles) Tile(ctx context.Context, level, index uint64, width int) ([]byte, error) {
	return t.f.ReadTile(ctx, level, index, uint8(width%256))
}

// consistent checks that head extends the checkpoint last seen.
func (c Config) consistent(ctx context.Context, prev *State, head audit.SignedHead) error {
	switch {
	case head.Size < prev.Size:
		return failf("the log shrank: the checkpoint states %d entries, %d were seen before", head.Size, prev.Size)
	case head.Size == prev.Size && !bytes.Equal(head.Root, prev.Root):
		return failf("fork: two signed checkpoints of size %d with different roots", head.Size)
	case head.Size == prev.Size:
		return nil
	}
	hashes, err := c.proof(ctx, fmt.Sprintf("/v1/audit/consistency?from=%d&to=%d", prev.Size, head.Size))
	if err != nil {
		return err
	}
	if err := proof.VerifyConsistency(audit.Hasher, uint64(prev.Size), uint64(head.Size), hashes, prev.Root, head.Root); err != nil {
		return failf("inconsistent: the tree of %d is not an extension of the tree of %d seen before (%s)", head.Size, prev.Size, proofProblem(err))
	}
	return nil
}

// included checks that receipt r is in the tree head states.
func (c Config) included(ctx context.Context, r audit.Receipt, head audit.SignedHead) error {
	leaf, err := audit.LeafHash(r.Hash)
	if err != nil || r.Seq < 1 {
		return fmt.Errorf("receipt %d: not a receipt: %v", r.Seq, err)
	}
	hashes, err := c.proof(ctx, fmt.Sprintf("/v1/audit/proof?seq=%d&tree_size=%d", r.Seq, head.Size))
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			return failf("missing receipt: entry %d: %s", r.Seq, f.Problem)
		}
		return err
	}
	if err := proof.VerifyInclusion(audit.Hasher, uint64(r.Seq-1), uint64(head.Size), leaf, hashes, head.Root); err != nil {
		return failf("missing receipt: entry %d with hash %s is not in the tree of %d (%s)", r.Seq, r.Hash, head.Size, proofProblem(err))
	}
	return nil
}

// proofProblem says in one line why a proof did not verify.
func proofProblem(err error) string {
	var rm proof.RootMismatchError
	if errors.As(err, &rm) {
		return "the proof leads to another root than the checkpoint's"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// proof fetches a proof's hashes. A broker that refuses to give a proof
// for what its own checkpoint covers fails the check.
func (c Config) proof(ctx context.Context, path string) ([][]byte, error) {
	raw, status, err := c.get(ctx, path)
	if err != nil {
		return nil, err
	}
	switch {
	case status >= 500:
		return nil, fmt.Errorf("GET %s: status %d (the broker could not answer; try again later)", path, status)
	case status != http.StatusOK:
		return nil, failf("the broker gave no proof (GET %s: status %d)", path, status)
	}
	var p struct {
		Hashes []string `json:"hashes"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, failf("the broker's proof is not JSON: %v", err)
	}
	out := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		b, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, failf("the broker's proof holds a hash that is not 32 base64 bytes")
		}
		out[i] = b
	}
	return out, nil
}

func (c Config) get(ctx context.Context, path string) ([]byte, int, error) {
	u, err := url.JoinPath(c.URL, "/")
	if err != nil {
		return nil, 0, fmt.Errorf("broker url %q: %w", c.URL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u, "/")+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	return b, resp.StatusCode, nil
}

// lockState takes an exclusive lock on PATH.lock until unlock.
func lockState(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state file lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("state file lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if len(st.Root) != 32 || st.Size < 0 {
		return nil, fmt.Errorf("state file %s: no valid size and root", path)
	}
	return &st, nil
}

// saveState writes the state file atomically, so an interrupted run
// leaves the last good state.
func saveState(path string, st State) error { return audit.WriteStateFile(path, st) }

// ReadReceipts reads receipts kept by an agency: a JSON array of receipt
// objects, or one per line (JSON Lines), as the broker returns them in
// "audit" ({"seq":…,"hash":…}); other members are ignored.
func ReadReceipts(b []byte) ([]audit.Receipt, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	var out []audit.Receipt
	if b[0] == '[' {
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, fmt.Errorf("receipts: %w", err)
		}
	} else {
		for i, line := range bytes.Split(b, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			var r audit.Receipt
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, fmt.Errorf("receipts line %d: %w", i+1, err)
			}
			out = append(out, r)
		}
	}
	for i, r := range out {
		if raw, err := hex.DecodeString(r.Hash); r.Seq < 1 || err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("receipt %d: needs a seq and a 64-hex hash", i+1)
		}
	}
	return out, nil
}
