package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
)

// Source is a log to verify: the database, or an export file.
type Source interface {
	// Entries calls fn for every entry in seq order.
	Entries(ctx context.Context, fn func(*Entry) error) error
	// Checkpoints returns every stored checkpoint.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
}

// Report is the outcome of Verify.
type Report struct {
	Entries int64   // entries read
	First   int64   // the first entry's seq
	Head    Receipt // the last entry
	// Root is the Merkle tree root of entries 1..Head (nil for an export
	// that starts later, or a log whose chain is broken).
	Root []byte
	// Unsigned is the ts of the first entry after the newest checkpoint
	// ("" when a checkpoint covers the head): entries a checkpoint does not
	// cover yet should be only seconds old.
	Unsigned    string
	Checkpoints int // checkpoints whose signature and hash held
	// FirstBad is the lowest seq at which the log is wrong (0: none), and
	// Problem says what is wrong there.
	FirstBad int64
	Problem  string
}

// OK reports whether the whole log verified.
func (r *Report) OK() bool { return r.FirstBad == 0 }

func (r *Report) fail(seq int64, format string, args ...any) {
	if r.FirstBad == 0 || seq < r.FirstBad {
		r.FirstBad, r.Problem = seq, fmt.Sprintf(format, args...)
	}
}

// Verify recomputes every entry's hash, checks that seqs run 1, 2, 3…
// without a gap, that each prev_hash is the hash before it, and that every
// checkpoint's signature verifies with verifier and names a hash the chain
// has at its count, and that each states origin. Hashing runs on every
// core. A nil verifier skips the signature check (the chain is still
// checked, and so are the checkpoints' counts and hashes against it); with
// a verifier, origin is required.
func Verify(ctx context.Context, src Source, verifier note.Verifier, origin string) (*Report, error) {
	if verifier != nil && origin == "" {
		return nil, errors.New("checking checkpoint signatures needs the origin they must state")
	}
	rep := &Report{}
	cps, err := src.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	// Checkpoint counts to check against the chain as it streams by.
	want := map[int64][]Checkpoint{}
	roots := map[int64][][]byte{} // tree roots the checkpoints state
	newest := int64(0)
	for _, cp := range cps {
		var head SignedHead
		if verifier != nil {
			head, err = OpenCheckpoint(cp.Note, verifier)
			if err != nil {
				rep.fail(max(cp.Count, 1), "checkpoint at %d: %v", cp.Count, err)
				continue
			}
			if head.Origin != origin {
				rep.fail(max(cp.Count, 1), "checkpoint at %d: signed for origin %q, not %q", cp.Count, head.Origin, origin)
				continue
			}
		} else if head, err = ParseCheckpointText(noteText(cp.Note)); err != nil {
			rep.fail(max(cp.Count, 1), "checkpoint at %d: %v", cp.Count, err)
			continue
		}
		if head.Size != cp.Count || head.Chain != cp.Hash {
			rep.fail(max(cp.Count, 1), "checkpoint at %d: signed text does not match its record", cp.Count)
			continue
		}
		want[cp.Count] = append(want[cp.Count], cp)
		if head.Root != nil {
			roots[cp.Count] = append(roots[cp.Count], head.Root)
		}
		newest = max(newest, cp.Count)
	}

	workers := max(runtime.GOMAXPROCS(0), 1)
	const chunk = 2048
	jobs := make(chan []*Entry, workers*2)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for batch := range jobs {
				for _, e := range batch {
					var h string
					h, buf = e.ComputeHash(buf)
					if h != e.Hash {
						mu.Lock()
						rep.fail(e.Seq, "entry %d: hash does not match its contents", e.Seq)
						mu.Unlock()
					}
				}
			}
		}()
	}

	// A segment (an export) may start after seq 1: its first entry's
	// prev_hash is then taken as given, and checked against a checkpoint
	// at the seq before it when the file has one.
	segment := false
	if s, ok := src.(interface{ Segment() bool }); ok {
		segment = s.Segment()
	}
	// The Merkle tree is rebuilt in seq order on a goroutine of its own,
	// and its root compared with every checkpoint's that states one. An
	// export that starts after seq 1 lacks the tree's left part: its
	// checkpoints' roots are not checked (their chain heads are).
	treeJobs := make(chan []*Entry, workers*2)
	treeDone := make(chan struct{})
	go func(jobs <-chan []*Entry) {
		defer close(treeDone)
		tree, broken := NewTree(), false
		for batch := range jobs {
			for _, e := range batch {
				if broken {
					continue
				}
				if _, err := tree.AppendEntry(e.Hash, nil); err != nil || uint64(e.Seq) != tree.Size() {
					broken = true // a gap or a bad hash, already reported by the chain check
					continue
				}
				for _, root := range roots[e.Seq] {
					if !bytes.Equal(root, tree.Root()) {
						mu.Lock()
						rep.fail(e.Seq, "checkpoint at %d states another tree root than the entries 1..%d give", e.Seq, e.Seq)
						mu.Unlock()
					}
				}
			}
		}
		if !broken && tree.Size() > 0 {
			mu.Lock()
			rep.Root = tree.Root()
			mu.Unlock()
		}
	}(treeJobs)
	first := true
	firstSeq := int64(1)
	var prev Receipt
	batch := make([]*Entry, 0, chunk)
	err = src.Entries(ctx, func(e *Entry) error {
		if first && segment && e.Seq > 1 {
			firstSeq = e.Seq
			close(treeJobs)
			treeJobs = nil
			prev = Receipt{Seq: e.Seq - 1, Hash: e.PrevHash}
			mu.Lock()
			for _, cp := range want[prev.Seq] {
				if cp.Hash != e.PrevHash {
					rep.fail(e.Seq, "entry %d: prev_hash is not the hash the checkpoint at %d names", e.Seq, prev.Seq)
				}
			}
			delete(want, prev.Seq)
			mu.Unlock()
		}
		if first {
			rep.First = e.Seq
		}
		first = false
		if e.Seq == newest+1 {
			rep.Unsigned = e.TS
		}
		expect := prev.Seq + 1
		prevHash := prev.Hash
		if prev.Seq == 0 {
			prevHash = ZeroHash
		}
		mu.Lock()
		switch {
		case e.Seq != expect:
			rep.fail(expect, "entry %d is missing (next stored entry is %d)", expect, e.Seq)
		case e.PrevHash != prevHash:
			rep.fail(e.Seq, "entry %d: prev_hash is not the hash of entry %d", e.Seq, prev.Seq)
		}
		for _, cp := range want[e.Seq] {
			if cp.Hash != e.Hash {
				rep.fail(e.Seq, "checkpoint at %d names another head hash than the chain's", e.Seq)
			}
		}
		delete(want, e.Seq)
		mu.Unlock()
		rep.Entries++
		prev = Receipt{Seq: e.Seq, Hash: e.Hash}
		batch = append(batch, e)
		if len(batch) == chunk {
			jobs <- batch
			if treeJobs != nil {
				treeJobs <- batch
			}
			batch = make([]*Entry, 0, chunk)
		}
		return nil
	})
	if len(batch) > 0 {
		jobs <- batch
		if treeJobs != nil {
			treeJobs <- batch
		}
	}
	close(jobs)
	if treeJobs != nil {
		close(treeJobs)
	}
	wg.Wait()
	<-treeDone
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	rep.Head = prev
	for count, cps := range want {
		if segment && len(cps) > 0 && cps[0].External {
			continue // a trusted checkpoint for another part of the log
		}
		switch {
		case count > prev.Seq:
			rep.fail(prev.Seq+1, "checkpoint at %d covers entries the log no longer has (it ends at %d)", count, prev.Seq)
		case count < firstSeq-1:
			rep.fail(firstSeq, "checkpoint at %d lies before the exported entries (they start at %d)", count, firstSeq)
		}
	}
	rep.Checkpoints = len(cps)
	if rep.FirstBad != 0 {
		rep.Checkpoints = 0
		for _, cp := range cps {
			if cp.Count < rep.FirstBad {
				rep.Checkpoints++
			}
		}
	}
	return rep, nil
}

// WithCheckpoints adds checkpoints kept outside the log (a trusted copy an
// auditor saved earlier) to a source: Verify then requires the chain to
// still hold each of them, so a rewritten or truncated tail is caught even
// when the checkpoints in the database were deleted with it.
func WithCheckpoints(src Source, extra []Checkpoint) Source {
	return &extraCheckpoints{Source: src, extra: extra}
}

type extraCheckpoints struct {
	Source
	extra []Checkpoint
}

func (x *extraCheckpoints) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	cps, err := x.Source.Checkpoints(ctx)
	return append(cps, x.extra...), err
}

func (x *extraCheckpoints) Segment() bool {
	s, ok := x.Source.(interface{ Segment() bool })
	return ok && s.Segment()
}

// noteText is the text of a signed note, before the blank line that starts
// its signatures.
func noteText(msg string) string {
	if i := strings.Index(msg, "\n\n"); i >= 0 {
		return msg[:i+1]
	}
	return msg
}
