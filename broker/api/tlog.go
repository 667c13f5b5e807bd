package api

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/transparency-dev/tessera/api/layout"

	"varsel/audit"
	"varsel/broker"
)

// TreeReader reads the audit log's Merkle tree.
type TreeReader interface {
	audit.TileSource
	// Head is the tree at the log's head.
	Head(ctx context.Context) (audit.TreeHead, error)
}

// The log's transparency endpoints, served without a signed request: the
// newest checkpoint (C2SP tlog-checkpoint, with witness cosignatures), the
// checkpoint key, the hash tiles (C2SP tlog-tiles), and inclusion and
// consistency proofs. They carry hashes only (a leaf is the hash of an
// entry's hash), so witnesses, monitors and any tlog-tiles client can use
// them; the entries themselves (entry bundles) need a signed request by the
// broker operator's auditor.
func (s *Server) tlogRoutes(e *echo.Echo) {
	e.GET("/v1/audit/checkpoint", s.auditCheckpoint)
	e.GET("/v1/audit/key", s.auditKey)
	if s.cfg.Tree == nil {
		return
	}
	e.GET("/v1/audit/tile/*", s.tile)
	e.GET("/v1/audit/proof", s.inclusionProof)
	e.GET("/v1/audit/consistency", s.consistencyProof)
}

// parseTilePath reads "L/N[.p/W]" (tiles) or "N[.p/W]" (entry bundles,
// level "") as C2SP tlog-tiles writes them; width 256 for a full tile.
func parseTilePath(level, rest string) (l, index uint64, width int, err error) {
	var p uint8
	if level == "" {
		index, p, err = layout.ParseTileIndexPartial(rest)
	} else {
		l, index, p, err = layout.ParseTileLevelIndexPartial(level, rest)
	}
	if err != nil {
		return 0, 0, 0, broker.Errorf(broker.ENOTFOUND, "not a tile path: %v", err)
	}
	width = int(p)
	if width == 0 {
		width = layout.TileWidth
	}
	return l, index, width, nil
}

func (s *Server) tile(c echo.Context) error {
	path := c.Param("*")
	level, rest, ok := strings.Cut(path, "/")
	if !ok || level == "" || level == "entries" {
		return broker.Errorf(broker.ENOTFOUND, "no such tile")
	}
	l, index, width, err := parseTilePath(level, rest)
	if err != nil {
		return err
	}
	b, err := s.cfg.Tree.Tile(c.Request().Context(), l, index, width)
	if errors.Is(err, audit.ErrNoTile) {
		return broker.Errorf(broker.ENOTFOUND, "the tree has no such tile")
	}
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit tree cannot be read", Err: err}
	}
	tileCache(c, width)
	return c.Blob(http.StatusOK, "application/octet-stream", b)
}

// tileCache marks a full tile immutable (it never changes once the tree
// is past it); a partial one is superseded as the tree grows.
func tileCache(c echo.Context, width int) {
	if width == layout.TileWidth {
		c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		c.Response().Header().Set("Cache-Control", "no-cache")
	}
}

// entryBundle serves GET /v1/audit/tile/entries/N[.p/W] to the broker
// operator's auditors (a signed request; audited).
func (s *Server) entryBundle(c echo.Context) error {
	_, index, width, err := parseTilePath("", c.Param("*"))
	if err != nil {
		return err
	}
	b, err := s.cfg.Service.EntryBundle(c.Request().Context(), principal(c), index, width)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "private, no-store")
	return c.Blob(http.StatusOK, "application/octet-stream", b)
}

// Proof is an inclusion or consistency proof, hashes in base64.
type Proof struct {
	LeafIndex *int64   `json:"leaf_index,omitempty"`
	TreeSize  int64    `json:"tree_size"`
	From      *int64   `json:"from,omitempty"`
	Hashes    []string `json:"hashes"`
}

func queryInt(c echo.Context, name string) (int64, error) {
	v := c.QueryParam(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if v == "" || err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
		return 0, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "%s must be a whole number", name)
	}
	return n, nil
}

// treeSize checks that size is within the tree now.
func (s *Server) treeSize(ctx context.Context, size int64) error {
	head, err := s.cfg.Tree.Head(ctx)
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit tree cannot be read", Err: err}
	}
	if size > head.Size {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidRange, "tree_size %d is larger than the tree (%d)", size, head.Size)
	}
	return nil
}

func b64s(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

// inclusionProof serves GET /v1/audit/proof?seq=N&tree_size=M: the
// inclusion proof of entry N (leaf N-1) in the tree of size M.
func (s *Server) inclusionProof(c echo.Context) error {
	seq, err := queryInt(c, "seq")
	if err != nil {
		return err
	}
	size, err := queryInt(c, "tree_size")
	if err != nil {
		return err
	}
	if seq < 1 || seq > size {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidRange, "seq must be 1 to tree_size")
	}
	ctx := c.Request().Context()
	if err := s.treeSize(ctx, size); err != nil {
		return err
	}
	hs, err := audit.Proofs{Tiles: s.cfg.Tree}.Inclusion(ctx, uint64(seq-1), uint64(size))
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the proof cannot be built", Err: err}
	}
	leaf := seq - 1
	return c.JSON(http.StatusOK, Proof{LeafIndex: &leaf, TreeSize: size, Hashes: b64s(hs)})
}

// consistencyProof serves GET /v1/audit/consistency?from=A&to=B: the proof
// that the tree of size A is a prefix of the tree of size B.
func (s *Server) consistencyProof(c echo.Context) error {
	from, err := queryInt(c, "from")
	if err != nil {
		return err
	}
	to, err := queryInt(c, "to")
	if err != nil {
		return err
	}
	if from > to {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidRange, "from must not be larger than to")
	}
	ctx := c.Request().Context()
	if err := s.treeSize(ctx, to); err != nil {
		return err
	}
	hs, err := audit.Proofs{Tiles: s.cfg.Tree}.Consistency(ctx, uint64(from), uint64(to))
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the proof cannot be built", Err: err}
	}
	return c.JSON(http.StatusOK, Proof{From: &from, TreeSize: to, Hashes: b64s(hs)})
}
