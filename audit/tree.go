package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// The Merkle tree over the log. Every entry is a leaf of an RFC 6962 tree
// in seq order (leaf index = seq - 1). The leaf data is the 32 bytes of the
// entry's hash, not its canonical JSON: that hash already commits to the
// entry's every field and to the entry before it, so the tree binds exactly
// what the chain does; and an agency holding only a receipt (seq, hash) can
// check its inclusion, and a witness or monitor can check the tree, without
// ever seeing an entry's contents (a subject_ref, an employee id).
//
// The tree is stored as the C2SP tlog-tiles layout needs it: level-0 tiles
// are the entries' leaf hashes (computed from the hash column), and every
// perfect subtree of 256^k leaves (k >= 1) has its root kept, which are the
// hashes of the higher tiles. The compact range at the head is kept so that
// the next batch extends the tree in the same transaction as its entries.

// Hasher is the tree's hash: RFC 6962 with SHA-256.
var Hasher = rfc6962.DefaultHasher

var rangeFactory = compact.RangeFactory{Hash: Hasher.HashChildren}

// LeafHash is the leaf hash of the entry whose hash is hexHash:
// SHA-256(0x00 || the 32 hash bytes).
func LeafHash(hexHash string) ([]byte, error) {
	raw, err := hex.DecodeString(hexHash)
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("entry hash %q is not 32 hex bytes", hexHash)
	}
	return Hasher.HashLeaf(raw), nil
}

// TileHeight is how many tree levels one tile spans (C2SP tlog-tiles).
const TileHeight = layout.TileHeight

// Node is a tree node kept for the higher tiles: the root of the perfect
// subtree at Level (a multiple of TileHeight) and Index.
type Node struct {
	Level uint
	Index uint64
	Hash  []byte
}

// Tree is the compact range of a tree of Size leaves: enough to add leaves
// and compute the root.
type Tree struct {
	r *compact.Range
}

// NewTree is the empty tree.
func NewTree() *Tree { return &Tree{r: rangeFactory.NewEmptyRange(0)} }

// LoadTree rebuilds a tree of size leaves from its compact range hashes, as
// Hashes returned them.
func LoadTree(size uint64, hashes []byte) (*Tree, error) {
	if len(hashes)%32 != 0 {
		return nil, fmt.Errorf("tree range of %d bytes is not whole hashes", len(hashes))
	}
	hs := make([][]byte, len(hashes)/32)
	for i := range hs {
		hs[i] = hashes[32*i : 32*i+32 : 32*i+32]
	}
	r, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return nil, fmt.Errorf("tree range at size %d: %w", size, err)
	}
	return &Tree{r: r}, nil
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// Hashes is the compact range, for LoadTree.
func (t *Tree) Hashes() []byte {
	out := make([]byte, 0, 32*len(t.r.Hashes()))
	for _, h := range t.r.Hashes() {
		out = append(out, h...)
	}
	return out
}

// Root is the tree's root hash (RFC 6962's empty root for no leaves).
func (t *Tree) Root() []byte {
	if t.r.End() == 0 {
		return Hasher.EmptyRoot()
	}
	root, err := t.r.GetRootHash(nil)
	if err != nil { // only for a range not starting at 0, which a Tree never is
		panic(err)
	}
	return root
}

// Append adds a leaf hash and returns the tile nodes it completed (roots of
// perfect subtrees at levels 8, 16, …), appended to nodes.
func (t *Tree) Append(leaf []byte, nodes []Node) ([]Node, error) {
	err := t.r.Append(leaf, func(id compact.NodeID, h []byte) {
		if id.Level > 0 && id.Level%TileHeight == 0 {
			nodes = append(nodes, Node{Level: id.Level, Index: id.Index, Hash: h})
		}
	})
	return nodes, err
}

// AppendEntry adds the leaf of an entry with hash hexHash.
func (t *Tree) AppendEntry(hexHash string, nodes []Node) ([]Node, error) {
	leaf, err := LeafHash(hexHash)
	if err != nil {
		return nodes, err
	}
	return t.Append(leaf, nodes)
}

// TreeHead is the tree at the log's head: its size (= the last seq), root,
// and the hash of the last entry (the chain head).
type TreeHead struct {
	Size  int64
	Root  []byte
	Chain string // hex hash of entry Size ("" for an empty log)
}

// Receipt is the chain head as a Receipt.
func (h TreeHead) Receipt() Receipt { return Receipt{Seq: h.Size, Hash: h.Chain} }

// TileSource serves the log's tiles: the hashes of tile (level, index),
// width hashes wide (1..256), as C2SP tlog-tiles lays them out. A tile
// that the log is too small for is an error wrapping ErrNoTile.
type TileSource interface {
	Tile(ctx context.Context, level, index uint64, width int) ([]byte, error)
}

// ErrNoTile: the tile asked for is beyond the tree.
var ErrNoTile = errors.New("audit: no such tile")

// Proofs builds inclusion and consistency proofs from tiles, with the
// tlog-tiles client of Tessera (the same code a third-party client runs).
type Proofs struct {
	Tiles TileSource
}

func (p Proofs) fetcher() client.TileFetcherFunc {
	return func(ctx context.Context, level, index uint64, w uint8) ([]byte, error) {
		width := int(w)
		if width == 0 {
			width = layout.TileWidth
		}
		return p.Tiles.Tile(ctx, level, index, width)
	}
}

// Inclusion is the proof that leaf index is in the tree of size.
func (p Proofs) Inclusion(ctx context.Context, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("leaf %d is not in a tree of %d", index, size)
	}
	pb, err := client.NewProofBuilder(ctx, size, p.fetcher())
	if err != nil {
		return nil, err
	}
	return pb.InclusionProof(ctx, index)
}

// Consistency is the proof that the tree of size from is a prefix of the
// tree of size to.
func (p Proofs) Consistency(ctx context.Context, from, to uint64) ([][]byte, error) {
	if from > to {
		return nil, fmt.Errorf("tree size %d is larger than %d", from, to)
	}
	pb, err := client.NewProofBuilder(ctx, to, p.fetcher())
	if err != nil {
		return nil, err
	}
	return pb.ConsistencyProof(ctx, from, to)
}

// TreeFromTiles reads the compact range of the tree of size leaves out of
// tiles.
func TreeFromTiles(ctx context.Context, tiles TileSource, size uint64) (*Tree, error) {
	if size == 0 {
		return NewTree(), nil
	}
	hashes, err := client.FetchRangeNodes(ctx, size, Proofs{Tiles: tiles}.fetcher())
	if err != nil {
		return nil, err
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return &Tree{r: r}, nil
}

// HeadOf is the tree head over entries, which must be seqs 1..len(entries)
// in order (for tests and for exports that start at seq 1).
func HeadOf(entries []*Entry) (TreeHead, error) {
	tree := NewTree()
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			return TreeHead{}, fmt.Errorf("entry %d where %d belongs", e.Seq, i+1)
		}
		if _, err := tree.AppendEntry(e.Hash, nil); err != nil {
			return TreeHead{}, err
		}
	}
	h := TreeHead{Size: int64(len(entries)), Root: tree.Root()}
	if len(entries) > 0 {
		h.Chain = entries[len(entries)-1].Hash
	}
	return h, nil
}
