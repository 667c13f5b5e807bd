package audit

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed statement of the log's size and head hash, in the
// signed-note format: the text "ORIGIN\nCOUNT\nBASE64(HEAD HASH)\n", then a
// blank line and the broker's Ed25519 signature line(s).
type Checkpoint struct {
	Count     int64     // entries covered: seqs 1..Count
	Hash      string    // hex hash of entry Count
	Note      string    // the signed note, as served
	CreatedAt time.Time // when it was stored
	// External marks a checkpoint kept outside the log (a trusted copy):
	// verifying an export ignores one outside the exported range.
	External bool
}

// CheckpointText is the body of a checkpoint note.
func CheckpointText(origin string, head Receipt) (string, error) {
	raw, err := hex.DecodeString(head.Hash)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("head hash %q is not 32 hex bytes", head.Hash)
	}
	return fmt.Sprintf("%s\n%d\n%s\n", origin, head.Seq, base64.StdEncoding.EncodeToString(raw)), nil
}

// SignCheckpoint signs head as a note.
func SignCheckpoint(origin string, head Receipt, signer note.Signer) (Checkpoint, error) {
	text, err := CheckpointText(origin, head)
	if err != nil {
		return Checkpoint{}, err
	}
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint at %d: %w", head.Seq, err)
	}
	return Checkpoint{Count: head.Seq, Hash: head.Hash, Note: string(msg)}, nil
}

// OpenCheckpoint verifies a checkpoint note with verifier and returns the
// origin, count and hex head hash it states.
func OpenCheckpoint(msg string, verifier note.Verifier) (origin string, head Receipt, err error) {
	n, err := note.Open([]byte(msg), note.VerifierList(verifier))
	if err != nil {
		return "", Receipt{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return "", Receipt{}, errors.New("checkpoint text is not origin, count and hash")
	}
	count, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || count < 0 {
		return "", Receipt{}, fmt.Errorf("checkpoint count %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != 32 {
		return "", Receipt{}, fmt.Errorf("checkpoint hash %q", lines[2])
	}
	return lines[0], Receipt{Seq: count, Hash: hex.EncodeToString(raw)}, nil
}

// CheckpointStore is where checkpoints are kept.
type CheckpointStore interface {
	// Head returns the last entry's seq and hash (zero when empty).
	Head(ctx context.Context) (Receipt, error)
	// LatestCheckpoint returns the newest checkpoint, or nil.
	LatestCheckpoint(ctx context.Context) (*Checkpoint, error)
	// InsertCheckpoint stores a checkpoint; one for a count already
	// checkpointed (by another replica) is ignored.
	InsertCheckpoint(ctx context.Context, cp Checkpoint) error
}

// Checkpointer signs a checkpoint every Interval when entries were added,
// and once more when it stops.
type Checkpointer struct {
	Store    CheckpointStore
	Signer   note.Signer
	Origin   string
	Interval time.Duration // default 5 s
	Logger   *slog.Logger
	// OnSigned, when set, is told of each stored checkpoint (for metrics).
	OnSigned func(Checkpoint)
}

// Checkpoint signs and stores a checkpoint of the current head, unless the
// newest checkpoint already covers it. It reports whether it made one.
func (c *Checkpointer) Checkpoint(ctx context.Context) (bool, error) {
	head, err := c.Store.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("read audit head: %w", err)
	}
	if head.Seq == 0 {
		return false, nil
	}
	last, err := c.Store.LatestCheckpoint(ctx)
	if err != nil {
		return false, fmt.Errorf("read latest checkpoint: %w", err)
	}
	if last != nil && last.Count >= head.Seq {
		return false, nil
	}
	cp, err := SignCheckpoint(c.Origin, head, c.Signer)
	if err != nil {
		return false, err
	}
	if err := c.Store.InsertCheckpoint(ctx, cp); err != nil {
		return false, fmt.Errorf("store checkpoint at %d: %w", cp.Count, err)
	}
	if c.OnSigned != nil {
		c.OnSigned(cp)
	}
	return true, nil
}

// Run checkpoints every Interval until ctx ends, retrying failures with
// backoff. The final checkpoint is the owner's to make (Checkpoint), once
// the audit writer has committed its last entries.
func (c *Checkpointer) Run(ctx context.Context) {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
			log.Warn("audit checkpoint failed; retrying", "subsystem", "audit", "err", err, "retry_in", wait)
			continue
		}
		failures, wait = 0, interval
	}
}
