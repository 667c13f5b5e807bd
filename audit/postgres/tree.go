package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
)

// The Merkle tree over the log (package audit explains the leaves and the
// tiles): advanced inside each append's transaction, under the chain lock.

// tileWidth is the number of hashes in a full tile (C2SP tlog-tiles).
const tileWidth = 256

// catchUp adds the leaves of the entries after the tree's size up to seq
// to (stored before the tree existed, or by a bulk load), at most limit of
// them (0: all), and returns the tile nodes they completed.
func catchUp(ctx context.Context, tx conn, tree *audit.Tree, to int64, limit int64, nodes []audit.Node) ([]audit.Node, error) {
	from := int64(tree.Size())
	if limit > 0 {
		to = min(to, from+limit)
	}
	if from >= to {
		return nodes, nil
	}
	rows, err := tx.Query(ctx, `SELECT seq, hash FROM audit_entries WHERE seq > $1 AND seq <= $2 ORDER BY seq`, from, to)
	if err != nil {
		return nodes, fmt.Errorf("read entries for the tree: %w", err)
	}
	defer rows.Close()
	var seq int64
	var hash string
	for rows.Next() {
		if err := rows.Scan(&seq, &hash); err != nil {
			return nodes, err
		}
		if uint64(seq) != tree.Size()+1 {
			return nodes, fmt.Errorf("the tree cannot grow past %d: entry %d is missing", tree.Size(), tree.Size()+1)
		}
		if nodes, err = tree.AppendEntry(hash, nodes); err != nil {
			return nodes, fmt.Errorf("entry %d: %w", seq, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nodes, fmt.Errorf("read entries for the tree: %w", err)
	}
	if int64(tree.Size()) != to {
		return nodes, fmt.Errorf("the tree cannot grow past %d: entry %d is missing", tree.Size(), tree.Size()+1)
	}
	return nodes, nil
}

// queueTree adds to b the statement that stores the tree head and the
// tile nodes completed since the last write, and deletes the head of size
// prev it extends (migration 013 says why a row per head).
func queueTree(b *pgx.Batch, tree *audit.Tree, prev uint64, nodes []audit.Node) {
	levels := make([]int16, len(nodes))
	idxs := make([]int64, len(nodes))
	hashes := make([][]byte, len(nodes))
	for i, n := range nodes {
		levels[i], idxs[i], hashes[i] = int16(n.Level), int64(n.Index), n.Hash
	}
	b.Queue(`
		WITH nodes AS (
			INSERT INTO audit_tree_nodes (level, idx, hash)
			SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])),
		extended AS (DELETE FROM audit_tree_heads WHERE size = $7 AND size <> $4)
		INSERT INTO audit_tree_heads (size, root, range) VALUES ($4, $5, $6)
		ON CONFLICT (size) DO UPDATE SET root = excluded.root, range = excluded.range`,
		levels, idxs, hashes, int64(tree.Size()), tree.Root(), tree.Hashes(), int64(prev))
}

// writeTree stores the tree head and the tile nodes completed since the
// last write.
func writeTree(ctx context.Context, tx pgx.Tx, tree *audit.Tree, prev uint64, nodes []audit.Node) error {
	b := &pgx.Batch{}
	queueTree(b, tree, prev, nodes)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store the tree at %d: %w", tree.Size(), err)
	}
	return nil
}

// advanceTree adds the leaves of entries (just linked after head) to the
// stored tree (as lockHeadJTIs read it), sets each entry's TreeSize to the
// size it reaches, and queues the tree's new head and nodes on b.
func advanceTree(ctx context.Context, tx conn, b *pgx.Batch, tree *audit.Tree, head audit.Receipt, entries []*audit.Entry) error {
	if int64(tree.Size()) > head.Seq {
		// Committed entries were removed (by a database superuser): append
		// nothing more, so that no disclosure lands in a log whose tree
		// has lost entries; checkpoints, witnesses and monitors name it.
		return fmt.Errorf("%w: the tree holds %d leaves but the log ends at %d: entries were removed",
			audit.ErrNotExtension, tree.Size(), head.Seq)
	}
	prev := tree.Size()
	nodes, err := catchUp(ctx, tx, tree, head.Seq, 0, nil)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if nodes, err = tree.AppendEntry(e.Hash, nodes); err != nil {
			return fmt.Errorf("%w: entry %d: %v", audit.ErrRejected, e.Seq, err)
		}
	}
	for _, e := range entries {
		e.TreeSize = int64(tree.Size())
	}
	queueTree(b, tree, prev, nodes)
	return nil
}

// CatchUpTree builds the tree over entries stored before it existed (or
// bulk-loaded without it), in transactions of at most chunk entries under
// the chain lock, so that no append waits for the whole log. It returns the
// tree's size.
func CatchUpTree(ctx context.Context, pool *pgxpool.Pool, chunk int64) (int64, error) {
	if chunk <= 0 {
		chunk = 100_000
	}
	for {
		var size int64
		var done bool
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			head, tree, err := lockHead(ctx, tx)
			if err != nil {
				return err
			}
			if int64(tree.Size()) > head.Seq {
				return fmt.Errorf("the tree holds %d leaves but the log ends at %d: entries were removed", tree.Size(), head.Seq)
			}
			if int64(tree.Size()) == head.Seq && head.Seq > 0 {
				size, done = head.Seq, true
				return nil
			}
			prev := tree.Size()
			nodes, err := catchUp(ctx, tx, tree, head.Seq, chunk, nil)
			if err != nil {
				return err
			}
			size, done = int64(tree.Size()), int64(tree.Size()) == head.Seq
			return writeTree(ctx, tx, tree, prev, nodes)
		})
		if err != nil || done {
			return size, err
		}
	}
}

// Tile returns the hashes of tile (level, index), width hashes wide, as
// C2SP tlog-tiles lays them out: level 0 holds leaf hashes, level L the
// roots of the perfect subtrees of 256^L leaves. A tile the tree is too
// small for is audit.ErrNoTile.
func (s *Store) Tile(ctx context.Context, level, index uint64, width int) ([]byte, error) {
	if width < 1 || width > tileWidth || level > 7 {
		return nil, fmt.Errorf("%w: level %d, width %d", audit.ErrNoTile, level, width)
	}
	var size int64
	if err := s.Pool.QueryRow(ctx, `SELECT size FROM audit_tree_heads ORDER BY size DESC LIMIT 1`).Scan(&size); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: the tree is empty", audit.ErrNoTile)
		}
		return nil, fmt.Errorf("read the tree head: %w", err)
	}
	if index > uint64(size)>>(8*level)/tileWidth { // also before index*256 could wrap
		return nil, fmt.Errorf("%w: tile %d/%d is beyond a tree of %d", audit.ErrNoTile, level, index, size)
	}
	first := index * tileWidth
	if first > uint64(size)>>(8*level) || uint64(width) > uint64(size)>>(8*level)-first {
		return nil, fmt.Errorf("%w: tile %d/%d of width %d is beyond a tree of %d", audit.ErrNoTile, level, index, width, size)
	}
	out := make([]byte, 0, 32*width)
	var rows pgx.Rows
	var err error
	if level == 0 {
		rows, err = s.Pool.Query(ctx, `SELECT hash FROM audit_entries WHERE seq > $1 AND seq <= $2 ORDER BY seq`,
			int64(first), int64(first)+int64(width))
	} else {
		rows, err = s.Pool.Query(ctx, `SELECT hash FROM audit_tree_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx`,
			int16(8*level), int64(first), int64(first)+int64(width))
	}
	if err != nil {
		return nil, fmt.Errorf("read tile %d/%d: %w", level, index, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if level == 0 {
			var hash string
			if err := rows.Scan(&hash); err != nil {
				return nil, err
			}
			leaf, err := audit.LeafHash(hash)
			if err != nil {
				return nil, err
			}
			out = append(out, leaf...)
		} else {
			var h []byte
			if err := rows.Scan(&h); err != nil {
				return nil, err
			}
			out = append(out, h...)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tile %d/%d: %w", level, index, err)
	}
	if n != width {
		return nil, fmt.Errorf("tile %d/%d has %d of its %d hashes stored", level, index, n, width)
	}
	return out, nil
}

// EntryBundle returns entry bundle index, width entries wide, as C2SP
// tlog-tiles lays it out: each entry as a big-endian uint16 length and
// then its bytes, in the form an export writes (audit.EntryLine).
func (s *Store) EntryBundle(ctx context.Context, index uint64, width int) ([]byte, error) {
	if width < 1 || width > tileWidth {
		return nil, fmt.Errorf("%w: width %d", audit.ErrNoTile, width)
	}
	var size int64
	if err := s.Pool.QueryRow(ctx, `SELECT coalesce(max(size), 0) FROM audit_tree_heads`).Scan(&size); err != nil {
		return nil, fmt.Errorf("read the tree head: %w", err)
	}
	if index > uint64(size)/tileWidth { // also before index*256 could wrap
		return nil, fmt.Errorf("%w: entry bundle %d is beyond a tree of %d", audit.ErrNoTile, index, size)
	}
	first := index * tileWidth
	if first > uint64(size) || uint64(width) > uint64(size)-first {
		return nil, fmt.Errorf("%w: entry bundle %d of width %d is beyond a tree of %d", audit.ErrNoTile, index, width, size)
	}
	var out, line []byte
	n := 0
	err := s.EntriesRange(ctx, int64(first), int64(first)+int64(width), func(e *audit.Entry) error {
		line = audit.EntryLine(line[:0], e)
		if len(line) > 0xffff {
			return fmt.Errorf("entry %d is %d bytes, too long for an entry bundle", e.Seq, len(line))
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(line)))
		out = append(out, line...)
		n++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read entry bundle %d: %w", index, err)
	}
	if n != width {
		return nil, fmt.Errorf("entry bundle %d has %d of its %d entries stored", index, n, width)
	}
	return out, nil
}
