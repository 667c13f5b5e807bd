package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed statement of the log's size and Merkle root, in
// the C2SP tlog-checkpoint format (a signed note): the text
// "ORIGIN\nSIZE\nBASE64(ROOT)\n" followed by one extension line,
// "varsel-chain HEX", naming the hash of entry SIZE (the hash chain's head),
// then a blank line and the broker's Ed25519 signature line(s), and any
// witness cosignatures. Checkpoints signed before the tree existed have no
// extension line and state the chain head's hash where the root would be.
type Checkpoint struct {
	Count     int64     // entries covered: seqs 1..Count
	Hash      string    // hex hash of entry Count
	Note      string    // the signed note, as served
	CreatedAt time.Time // when it was stored
	// External marks a checkpoint kept outside the log (a trusted copy):
	// verifying an export ignores one outside the exported range.
	External bool
}

// LogOrigin is the origin line of a broker's checkpoints: its id and
// "/audit".
func LogOrigin(brokerID string) string { return brokerID + "/audit" }

// chainExtension starts the extension line naming the chain head.
const chainExtension = "varsel-chain "

// SignedHead is what a checkpoint states.
type SignedHead struct {
	Origin string
	Size   int64
	Root   []byte // nil in a checkpoint signed before the tree existed
	Chain  string // hex hash of entry Size
}

// Receipt is the chain head the checkpoint names.
func (h SignedHead) Receipt() Receipt { return Receipt{Seq: h.Size, Hash: h.Chain} }

// CheckpointText is the body of a checkpoint note for head.
func CheckpointText(origin string, head TreeHead) (string, error) {
	raw, err := hex.DecodeString(head.Chain)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("head hash %q is not 32 hex bytes", head.Chain)
	}
	if len(head.Root) != 32 {
		return "", fmt.Errorf("tree root of %d bytes at %d", len(head.Root), head.Size)
	}
	return fmt.Sprintf("%s\n%d\n%s\n%s%s\n", origin, head.Size, base64.StdEncoding.EncodeToString(head.Root),
		chainExtension, head.Chain), nil
}

// SignCheckpoint signs head as a note.
func SignCheckpoint(origin string, head TreeHead, signer note.Signer) (Checkpoint, error) {
	text, err := CheckpointText(origin, head)
	if err != nil {
		return Checkpoint{}, err
	}
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint at %d: %w", head.Size, err)
	}
	return Checkpoint{Count: head.Size, Hash: head.Chain, Note: string(msg)}, nil
}

// OpenCheckpoint verifies a checkpoint note with verifier and returns what
// it states. Signatures by other keys (witness cosignatures) are ignored.
func OpenCheckpoint(msg string, verifier note.Verifier) (SignedHead, error) {
	n, err := note.Open([]byte(msg), note.VerifierList(verifier))
	if err != nil {
		return SignedHead{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	return ParseCheckpointText(n.Text)
}

// ParseCheckpointText reads a checkpoint body (without checking any
// signature).
func ParseCheckpointText(text string) (SignedHead, error) {
	lines := strings.Split(text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" || lines[0] == "" {
		return SignedHead{}, errors.New("checkpoint text is not origin, size and hash")
	}
	count, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || count < 0 || strconv.FormatInt(count, 10) != lines[1] {
		return SignedHead{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != 32 {
		return SignedHead{}, fmt.Errorf("checkpoint hash %q", lines[2])
	}
	h := SignedHead{Origin: lines[0], Size: count}
	switch ext := lines[3 : len(lines)-1]; {
	case len(ext) == 0: // signed before the tree: the hash is the chain head's
		h.Chain = hex.EncodeToString(raw)
	case len(ext) == 1 && strings.HasPrefix(ext[0], chainExtension):
		chain := strings.TrimPrefix(ext[0], chainExtension)
		if b, err := hex.DecodeString(chain); err != nil || len(b) != 32 || hex.EncodeToString(b) != chain {
			return SignedHead{}, fmt.Errorf("checkpoint chain head %q", chain)
		}
		h.Root, h.Chain = raw, chain
	default:
		return SignedHead{}, errors.New("checkpoint has extension lines this broker does not write")
	}
	return h, nil
}

// CheckpointStore is where checkpoints are kept, and the part of the log a
// Checkpointer reads to check that a new head extends the last one signed.
type CheckpointStore interface {
	// Head returns the tree at the last entry (zero size when empty).
	Head(ctx context.Context) (TreeHead, error)
	// CheckpointsBefore returns up to limit stored checkpoints with
	// count < before, newest first.
	CheckpointsBefore(ctx context.Context, before int64, limit int) ([]Checkpoint, error)
	// InsertCheckpoint stores a checkpoint. One for a count already stored
	// with the same hash (by another replica) is ignored; one with another
	// hash is an error.
	InsertCheckpoint(ctx context.Context, cp Checkpoint) error
	// EntriesRange streams the entries with from < seq <= to in seq order.
	EntriesRange(ctx context.Context, from, to int64, fn func(*Entry) error) error
	// TileSource: the tree's tiles, which the trusted tree's compact range
	// is read from.
	TileSource
}

// ErrNotExtension is what a Checkpointer returns (wrapped, with the seq and
// the check that failed) when the log's head does not extend the last head
// it trusts: entries it covered were changed, removed or re-chained. It
// signs nothing until the log is consistent with that head again.
var ErrNotExtension = errors.New("the audit log does not extend the last signed checkpoint")

// Checkpointer signs a checkpoint every Interval when entries were added,
// and once more when it stops.
//
// It signs a head only when that head extends the last one it trusts: the
// entry at the trusted count still has the trusted hash (and its contents
// still hash to it), and every entry after it, up to the new head, links to
// the one before and hashes to its hash. The trusted head is the last one
// it signed or verified itself (kept in memory: a checkpoint row in the
// database proves nothing until its signature does), and at start the
// newest stored checkpoint whose signature verifies with Verifier and
// states Origin. So a superuser who rewrites and re-chains the tail and
// deletes the checkpoints over it does not get the forgery signed by a
// running broker; only the entries since the last checkpoint are read.
// A broker started after such a rewrite cannot tell it from an honest log
// (nothing it trusts covers the rewritten part): checkpoints saved outside
// the database (audit verify --trusted-checkpoint) are what catch that.
type Checkpointer struct {
	Store    CheckpointStore
	Signer   note.Signer
	Verifier note.Verifier // Signer's own key: which stored checkpoints to trust
	Origin   string
	Interval time.Duration // default 5 s
	Logger   *slog.Logger
	// OnSigned, when set, is told of each stored checkpoint (for metrics).
	OnSigned func(Checkpoint)
	// OnRefused, when set, is told each time a head is refused because it
	// does not extend the trusted one (for metrics and readiness).
	OnRefused func(error)

	run          sync.Mutex // one Checkpoint at a time
	loaded       bool       // trusted was found (at the first Checkpoint)
	warnedForged int64      // the count of the last unverifiable row warned of

	mu      sync.Mutex // guards trusted and refused for readers
	trusted Receipt    // the head the next must extend ({0, ""}: none, check from entry 1)
	tree    *Tree      // the tree at trusted.Seq, its root the trusted one
	refused error      // the last refusal; nil once a head was accepted
}

// Refused returns why the last attempt refused to sign (an error wrapping
// ErrNotExtension), or nil when it did not.
func (c *Checkpointer) Refused() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

// Trusted returns the head the next checkpoint must extend ({0, ""}: none
// yet, so the next one is checked from entry 1).
func (c *Checkpointer) Trusted() Receipt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trusted
}

func (c *Checkpointer) set(trusted Receipt, tree *Tree, refused error) {
	c.mu.Lock()
	c.trusted, c.tree, c.refused = trusted, tree, refused
	c.mu.Unlock()
}

func (c *Checkpointer) trustedTree() *Tree {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tree
}

// Checkpoint signs and stores a checkpoint of the current head, unless it
// is already checkpointed. It reports whether it made one. A head that does
// not extend the trusted one, or the newest stored checkpoint that this key
// signed (another replica's), is refused: an error wrapping
// ErrNotExtension, logged (seqs only, never entry contents) and passed to
// OnRefused.
func (c *Checkpointer) Checkpoint(ctx context.Context) (bool, error) {
	c.run.Lock()
	defer c.run.Unlock()
	if c.Verifier == nil {
		return false, errors.New("audit checkpointer: no verifier for its own signatures")
	}
	trusted, tree := c.Trusted(), c.trustedTree()
	if !c.loaded {
		t, err := c.newestOwnCheckpoint(ctx)
		if err != nil {
			return false, err
		}
		if tree, err = c.treeAt(ctx, t); err != nil {
			if errors.Is(err, ErrNotExtension) {
				c.refuse(Receipt{}, nil, err)
			}
			return false, err
		}
		trusted, c.loaded = t.Receipt(), true
		c.set(trusted, tree, nil)
	}
	th, err := c.Store.Head(ctx)
	if err != nil {
		err = fmt.Errorf("read audit head: %w", err)
		if errors.Is(err, ErrNotExtension) {
			c.refuse(trusted, tree, err)
		}
		return false, err
	}
	head := th.Receipt()
	// The newest stored checkpoint, when this key signed it (another
	// replica, or this one before): the head must extend it too.
	var other *Receipt
	latest, err := c.Store.CheckpointsBefore(ctx, math.MaxInt64, 1)
	if err != nil {
		return false, fmt.Errorf("read latest checkpoint: %w", err)
	}
	if len(latest) == 1 {
		if r, ok := c.own(latest[0]); ok {
			if r.Seq > trusted.Seq || (r.Seq == trusted.Seq && r.Hash != trusted.Hash) {
				other = &r
			}
		} else if latest[0].Count != c.warnedForged {
			c.warnedForged = latest[0].Count
			c.logger().Warn("the newest stored audit checkpoint is not signed by this broker's key; ignored (run varsel audit verify)",
				"subsystem", "audit", "count", latest[0].Count)
		}
	}
	next, err := c.extends(ctx, trusted, tree, other, th)
	if err != nil {
		if errors.Is(err, ErrNotExtension) {
			c.refuse(trusted, tree, err)
		}
		return false, err
	}
	if head.Seq == trusted.Seq || (other != nil && *other == head) {
		c.set(head, next, nil)
		return false, nil // nothing new, or another replica signed it
	}
	cp, err := SignCheckpoint(c.Origin, th, c.Signer)
	if err != nil {
		return false, err
	}
	if err := c.Store.InsertCheckpoint(ctx, cp); err != nil {
		return false, fmt.Errorf("store checkpoint at %d: %w", cp.Count, err)
	}
	c.set(head, next, nil)
	if c.OnSigned != nil {
		c.OnSigned(cp)
	}
	return true, nil
}

// own reports whether cp was signed with this checkpointer's key for its
// origin and states what its row does.
func (c *Checkpointer) own(cp Checkpoint) (Receipt, bool) {
	h, ok := c.ownHead(cp)
	return h.Receipt(), ok
}

func (c *Checkpointer) ownHead(cp Checkpoint) (SignedHead, bool) {
	h, err := OpenCheckpoint(cp.Note, c.Verifier)
	if err != nil || h.Origin != c.Origin || h.Size != cp.Count || h.Chain != cp.Hash {
		return SignedHead{}, false
	}
	return h, true
}

// treeAt reads the compact range of the tree at the trusted head t out of
// the tiles, and checks that it has the root t states (a checkpoint from
// before the tree states none: the range is then built from the entries).
func (c *Checkpointer) treeAt(ctx context.Context, t SignedHead) (*Tree, error) {
	if t.Size == 0 {
		return NewTree(), nil
	}
	if t.Root == nil {
		// A checkpoint from before the tree binds no root: the tree under it
		// is built from the entries' hashes (once, after the upgrade), not
		// taken from stored nodes nothing signed; the chain check covers
		// the entries from it on.
		tree := NewTree()
		last := ""
		err := c.Store.EntriesRange(ctx, 0, t.Size, func(e *Entry) error {
			if uint64(e.Seq) != tree.Size()+1 {
				return fmt.Errorf("%w: entry %d is missing", ErrNotExtension, tree.Size()+1)
			}
			last = e.Hash
			_, err := tree.AppendEntry(e.Hash, nil)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("build the tree under checkpoint %d: %w", t.Size, err)
		}
		if int64(tree.Size()) != t.Size || last != t.Chain {
			return nil, fmt.Errorf("%w: entry %d no longer has the checkpointed hash", ErrNotExtension, t.Size)
		}
		return tree, nil
	}
	tree, err := TreeFromTiles(ctx, c.Store, uint64(t.Size))
	if err != nil {
		return nil, fmt.Errorf("read the tree at checkpoint %d: %w", t.Size, err)
	}
	if t.Root != nil && !bytes.Equal(tree.Root(), t.Root) {
		return nil, fmt.Errorf("%w: the tree's tiles at %d do not have the checkpointed root", ErrNotExtension, t.Size)
	}
	return tree, nil
}

func (c *Checkpointer) refuse(trusted Receipt, tree *Tree, err error) {
	c.set(trusted, tree, err)
	c.logger().Error("audit checkpoint refused: the log does not extend the last signed checkpoint; "+
		"someone changed the audit log in the database (run varsel audit verify)",
		"subsystem", "audit", "err", err)
	if c.OnRefused != nil {
		c.OnRefused(err)
	}
}

func (c *Checkpointer) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// newestOwnCheckpoint finds the newest stored checkpoint that this broker's
// key signed for its origin, and whose row states what the note does; rows
// that are not are skipped (and counted in a warning), never trusted. After
// maxSkipped such rows it gives up and trusts nothing: the next head is
// then checked from entry 1, which costs more but proves more.
func (c *Checkpointer) newestOwnCheckpoint(ctx context.Context) (SignedHead, error) {
	const page, maxSkipped = 64, 4096
	before, skipped := int64(math.MaxInt64), 0
	defer func() {
		if skipped > 0 {
			c.logger().Warn("stored audit checkpoints not signed by this broker's key were skipped (run varsel audit verify)",
				"subsystem", "audit", "skipped", skipped)
		}
	}()
	for {
		cps, err := c.Store.CheckpointsBefore(ctx, before, page)
		if err != nil {
			return SignedHead{}, fmt.Errorf("read checkpoints: %w", err)
		}
		for _, cp := range cps {
			if h, ok := c.ownHead(cp); ok {
				return h, nil
			}
			skipped++
			before = cp.Count
		}
		if len(cps) < page || skipped >= maxSkipped {
			return SignedHead{}, nil
		}
	}
}

// extends checks that head extends trusted, and other (a newer checkpoint
// signed with this key, or nil), by reading the entries from trusted's seq
// to head's, and that the tree's root at head is the root of the trusted
// tree with those entries added. It returns the tree at head.
func (c *Checkpointer) extends(ctx context.Context, trusted Receipt, tree *Tree, other *Receipt, th TreeHead) (*Tree, error) {
	head := th.Receipt()
	next, err := c.chainExtends(ctx, trusted, tree, other, head)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(next.Root(), th.Root) {
		return nil, fmt.Errorf("%w: the stored tree root at %d is not the root of the log's entries", ErrNotExtension, th.Size)
	}
	return next, nil
}

func (c *Checkpointer) chainExtends(ctx context.Context, trusted Receipt, tree *Tree, other *Receipt, head Receipt) (*Tree, error) {
	next, err := LoadTree(tree.Size(), tree.Hashes())
	if err != nil {
		return nil, err
	}
	if other != nil {
		switch {
		case other.Seq > head.Seq:
			return nil, fmt.Errorf("%w: the log ends at %d, before the stored checkpoint at %d", ErrNotExtension, head.Seq, other.Seq)
		case other.Seq == trusted.Seq:
			return nil, fmt.Errorf("%w: a stored checkpoint signed with this key names another hash for entry %d than the one this broker trusts",
				ErrNotExtension, other.Seq)
		}
	}
	switch {
	case head.Seq < trusted.Seq:
		return nil, fmt.Errorf("%w: the log ends at %d, before the checkpoint at %d", ErrNotExtension, head.Seq, trusted.Seq)
	case head.Seq == trusted.Seq && head.Hash != trusted.Hash:
		return nil, fmt.Errorf("%w: entry %d no longer has the checkpointed hash", ErrNotExtension, head.Seq)
	case head.Seq == trusted.Seq:
		return next, nil
	}
	// The trusted entry is read again (its hash must still be the trusted
	// one, and still recompute), then every entry after it up to head.
	from, expect := trusted.Seq-1, trusted.Seq
	prev := Receipt{Seq: 0, Hash: ZeroHash}
	if trusted.Seq == 0 {
		from, expect = 0, 1
	}
	var buf []byte
	var bad error
	err = c.Store.EntriesRange(ctx, from, head.Seq, func(e *Entry) error {
		var h string
		h, buf = e.ComputeHash(buf)
		switch {
		case e.Seq != expect:
			bad = fmt.Errorf("%w: entry %d is missing", ErrNotExtension, expect)
		case e.Seq == trusted.Seq:
			if e.Hash != trusted.Hash || h != e.Hash {
				bad = fmt.Errorf("%w: entry %d no longer has the checkpointed hash", ErrNotExtension, e.Seq)
			}
		case e.PrevHash != prev.Hash:
			bad = fmt.Errorf("%w: entry %d does not link to entry %d", ErrNotExtension, e.Seq, prev.Seq)
		case h != e.Hash:
			bad = fmt.Errorf("%w: entry %d does not hash to its hash", ErrNotExtension, e.Seq)
		case other != nil && e.Seq == other.Seq && e.Hash != other.Hash:
			bad = fmt.Errorf("%w: entry %d no longer has the hash a stored checkpoint signed with this key names", ErrNotExtension, e.Seq)
		}
		if bad != nil {
			return bad
		}
		if e.Seq > trusted.Seq {
			if _, err := next.AppendEntry(e.Hash, nil); err != nil {
				return err
			}
		}
		prev, expect = Receipt{Seq: e.Seq, Hash: e.Hash}, expect+1
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, fmt.Errorf("read audit entries %d..%d: %w", from+1, head.Seq, err)
	}
	switch {
	case expect <= trusted.Seq:
		return nil, fmt.Errorf("%w: entry %d is missing", ErrNotExtension, trusted.Seq)
	case prev != head:
		// Head was read by another query: the head changed in between.
		// Nothing is signed; the next round reads again.
		return nil, fmt.Errorf("the audit head moved from %d while it was checked (read up to %d)", head.Seq, prev.Seq)
	}
	return next, nil
}

// Run checkpoints every Interval until ctx ends, retrying failures with
// backoff. The final checkpoint is the owner's to make (Checkpoint), once
// the audit writer has committed its last entries.
func (c *Checkpointer) Run(ctx context.Context) {
	log := c.logger()
	interval := c.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	wait, failures := interval, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := c.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			failures++
			wait = min(interval*time.Duration(1<<min(failures, 6)), 2*time.Minute)
			if !errors.Is(err, ErrNotExtension) { // a refusal was logged as an error already
				log.Warn("audit checkpoint failed; retrying", "subsystem", "audit", "err", err, "retry_in", wait)
			}
			continue
		}
		failures, wait = 0, interval
	}
}
