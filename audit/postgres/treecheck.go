package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
)

// TreeProblem is a stored tree that does not hash to the log's entries:
// its tiles would not give the root of the entries.
type TreeProblem struct {
	Problem string
}

func (p *TreeProblem) Error() string { return p.Problem }

// CheckStoredTree rebuilds the tree from the entries' hashes and checks
// that every stored tile node and the stored tree head are what the entries
// give, so that the tiles served (and the proofs built from them) hash to
// the root of the log. It returns the tree's size, and a *TreeProblem
// naming the first node that does not match.
func (s *Store) CheckStoredTree(ctx context.Context) (size int64, err error) {
	// One snapshot, so that appends committing meanwhile (on a live log)
	// are either wholly in it or wholly not.
	err = pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		size, err = checkStoredTree(ctx, tx)
		return err
	})
	return size, err
}

func checkStoredTree(ctx context.Context, tx pgx.Tx) (int64, error) {
	rows, err := tx.Query(ctx, `SELECT level, idx, hash FROM audit_tree_nodes`)
	if err != nil {
		return 0, fmt.Errorf("read tree nodes: %w", err)
	}
	type key struct {
		level uint
		index uint64
	}
	nodes := map[key][]byte{}
	for rows.Next() {
		var level int16
		var idx int64
		var h []byte
		if err := rows.Scan(&level, &idx, &h); err != nil {
			rows.Close()
			return 0, err
		}
		nodes[key{uint(level), uint64(idx)}] = h
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read tree nodes: %w", err)
	}
	var size int64
	var root, rng []byte
	err = tx.QueryRow(ctx, `SELECT size, root, range FROM audit_tree_heads ORDER BY size DESC LIMIT 1`).Scan(&size, &root, &rng)
	if errors.Is(err, pgx.ErrNoRows) {
		var entries bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit_entries)`).Scan(&entries); err != nil {
			return 0, err
		}
		if !entries && len(nodes) == 0 {
			return 0, nil // an empty log whose broker has not started yet
		}
		return 0, &TreeProblem{Problem: "no tree is stored (start the broker once: it builds the tree from the entries)"}
	}
	if err != nil {
		return 0, fmt.Errorf("read the tree head: %w", err)
	}
	tree := audit.NewTree()
	var built []audit.Node
	var bad error
	hashes, err := tx.Query(ctx, `SELECT seq, hash FROM audit_entries WHERE seq <= $1 ORDER BY seq`, size)
	if err != nil {
		return 0, fmt.Errorf("read entries: %w", err)
	}
	defer hashes.Close()
	err = forEachHash(hashes, func(e *audit.Entry) error {
		if uint64(e.Seq) != tree.Size()+1 {
			bad = &TreeProblem{Problem: fmt.Sprintf("entry %d is missing under the stored tree", tree.Size()+1)}
			return bad
		}
		var err error
		if built, err = tree.AppendEntry(e.Hash, built[:0]); err != nil {
			return err
		}
		for _, n := range built {
			h, ok := nodes[key{n.Level, n.Index}]
			if !ok || !bytes.Equal(h, n.Hash) {
				bad = &TreeProblem{Problem: fmt.Sprintf("the stored tile node at level %d, index %d does not hash to entries %d..%d",
					n.Level, n.Index, n.Index<<n.Level+1, (n.Index+1)<<n.Level)}
				return bad
			}
			delete(nodes, key{n.Level, n.Index})
		}
		return nil
	})
	if bad != nil {
		return 0, bad
	}
	if err != nil {
		return 0, fmt.Errorf("read entries: %w", err)
	}
	switch {
	case int64(tree.Size()) != size:
		return 0, &TreeProblem{Problem: fmt.Sprintf("the stored tree has %d leaves, the log %d entries", size, tree.Size())}
	case !bytes.Equal(tree.Root(), root):
		return 0, &TreeProblem{Problem: fmt.Sprintf("the stored tree head's root at %d is not the root of the entries", size)}
	case !bytes.Equal(tree.Hashes(), rng):
		return 0, &TreeProblem{Problem: fmt.Sprintf("the stored tree head's compact range at %d is not the entries'", size)}
	case len(nodes) > 0:
		return 0, &TreeProblem{Problem: fmt.Sprintf("%d stored tile nodes lie beyond the tree of %d", len(nodes), size)}
	}
	return size, nil
}

// forEachHash calls fn with each row's seq and hash (the rest of the entry
// is not read: the tree needs only its hash).
func forEachHash(rows pgx.Rows, fn func(*audit.Entry) error) error {
	var e audit.Entry
	for rows.Next() {
		if err := rows.Scan(&e.Seq, &e.Hash); err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
