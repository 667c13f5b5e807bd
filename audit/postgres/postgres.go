// Package postgres keeps the audit log in PostgreSQL: group-committed
// batches under a transaction-scoped advisory lock (so writers on every
// replica take turns at the chain head), the replay check of request token
// ids inside the same transaction, checkpoints, streaming for verification,
// and search.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
)

// chainLock is the advisory lock key that serialises appends to the chain.
const chainLock = 0x7661_7273_656c // "varsel"

// jtiRetention is how long a token id is remembered: longer than any token
// can be valid (300 s lifetime plus 30 s skew on each side).
const jtiRetention = 6 * time.Minute

// Store is the audit log in PostgreSQL.
type Store struct {
	Pool *pgxpool.Pool

	// WithoutTree, for benchmarks only (varsel serve --bench-without-tree,
	// which needs --test-subjects), has AppendBatch append entries without
	// advancing the Merkle tree: the tree then lags the log (entries get
	// TreeSize 0, Head is an error, no checkpoint can be signed) until
	// CatchUpTree or the next append with the tree (AppendInTx) grows it
	// over the entries it missed.
	WithoutTree bool
}

var (
	_ audit.Store           = (*Store)(nil)
	_ audit.CheckpointStore = (*Store)(nil)
	_ audit.Source          = (*Store)(nil)
)

var columns = []string{"seq", "ts", "actor_agency", "actor", "role", "office", "action", "decision",
	"subject_ref", "flag_ids", "legal_basis", "emergency", "justification", "policy_version",
	"reasons", "request_jti", "prev_hash", "hash"}

// AppendBatch stores entries after the head in one transaction, which it
// begins in the first of the two pipelines appendInTx sends and commits in
// the second: two round trips in all.
func (s *Store) AppendBatch(ctx context.Context, entries []*audit.Entry) (replayed []int, err error) {
	c, err := s.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	replayed, err = appendInTx(ctx, c, entries, !s.WithoutTree, true)
	if err != nil {
		endTx(ctx, c.Conn())
		return nil, err
	}
	return replayed, nil
}

// endTx rolls back what a failed append left open on c, or closes c (the
// pool then drops it) when that cannot be done.
func endTx(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
		c.Close(ctx)
	}
}

// conn is what an append sends its statements on: a transaction, or a
// connection on which it begins and commits its own.
type conn interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// AppendInTx appends entries within tx, so that a change and its audit
// entry commit together (issuing a flag, revoking it). It takes the chain
// lock until tx ends. Entries whose token id was used before are skipped
// and their indexes returned.
func AppendInTx(ctx context.Context, tx pgx.Tx, entries []*audit.Entry) (replayed []int, err error) {
	return appendInTx(ctx, tx, entries, true, false)
}

// appendInTx is AppendInTx; without tree (benchmarks only, see
// Store.WithoutTree) the Merkle tree is not advanced.
//
// The chain lock is held from the first statement to the end of tx, and
// every append on every replica waits for it, so the statements are sent
// in two pipelines (one round trip each, once the connection has prepared
// them: pgx prepares a batch's new statements in one more, and forgets a
// failed batch's) rather than one at a time: the lock, the head and the
// token ids; then the tree and the entries. With own, the first pipeline
// begins the transaction and the second commits it.
// The COMMIT is then sent before the inserts' answers are read, so when the
// connection fails or the context ends while the server works through the
// second pipeline, the entries may have been committed although an error
// is returned (as when a separate COMMIT's answer is lost, in a wider
// window): nothing is disclosed on an error, and the next append reads the
// head again, so the chain goes on after them. The log then holds entries
// for answers that were never given, never the other way round.
func appendInTx(ctx context.Context, tx conn, entries []*audit.Entry, tree, own bool) (replayed []int, err error) {
	head, stored, replayed, err := lockHeadJTIs(ctx, tx, entries, own)
	if err != nil {
		return nil, err
	}
	kept := entries
	if len(replayed) > 0 {
		skip := map[int]bool{}
		for _, i := range replayed {
			skip[i] = true
		}
		kept = make([]*audit.Entry, 0, len(entries)-len(replayed))
		for i, e := range entries {
			if !skip[i] {
				kept = append(kept, e)
			}
		}
	}
	if len(kept) == 0 {
		if own {
			// Nothing to store: end the transaction, which changed nothing.
			b := &pgx.Batch{}
			b.Queue("COMMIT")
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return nil, err
			}
		}
		return replayed, nil
	}
	audit.Link(head, kept)
	b := &pgx.Batch{}
	if tree {
		if err := advanceTree(ctx, tx, b, stored, head, kept); err != nil {
			return nil, err
		}
	}
	statements := b.Len()
	if err := queueInserts(b, kept); err != nil {
		return nil, err
	}
	inserts := b.Len()
	if own {
		b.Queue("COMMIT")
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	for i := range b.Len() {
		tag, err := br.Exec()
		if err == nil && i == inserts && tag.String() != "COMMIT" {
			err = fmt.Errorf("the transaction ended with %s", tag)
		}
		if err != nil {
			if i == inserts {
				return nil, fmt.Errorf("commit %d entries: %w", len(kept), err)
			}
			if errors.As(err, new(pgx.ErrPreprocessingBatch)) {
				// Nothing was sent: an argument could not be encoded, or a
				// statement not prepared.
				return nil, fmt.Errorf("append %d entries: %w", len(kept), err)
			}
			if i < statements {
				return nil, fmt.Errorf("store the tree at %d: %w", kept[len(kept)-1].Seq, err)
			}
			if isDataError(err) {
				err = errors.Join(audit.ErrRejected, err)
			}
			return nil, fmt.Errorf("insert %d entries: %w", len(kept), err)
		}
	}
	if err := br.Close(); err != nil && !own {
		// With own the COMMIT's tag was read above: the entries are stored,
		// whatever closing the results says.
		return nil, fmt.Errorf("insert %d entries: %w", len(kept), err)
	}
	return replayed, nil
}

// insertRows is the most entries one INSERT statement carries; a batch is
// inserted by statements of 256, 128, ... 1 rows (its size in binary), so
// that a connection prepares at most nine statement shapes.
const insertRows = 256

// queueInserts adds to b the INSERT statements that store entries.
func queueInserts(b *pgx.Batch, entries []*audit.Entry) error {
	for len(entries) > 0 {
		n := insertRows
		for n > len(entries) {
			n /= 2
		}
		args := make([]any, 0, n*len(columns))
		for _, e := range entries[:n] {
			ts, err := time.Parse(audit.TimeFormat, e.TS)
			if err != nil {
				return fmt.Errorf("%w: entry ts %q: %v", audit.ErrRejected, e.TS, err)
			}
			args = append(args, row(e, ts)...)
		}
		b.Queue(insertSQL(n), args...)
		entries = entries[n:]
	}
	return nil
}

var insertSQLs [insertRows + 1]string

func init() {
	for n := 1; n <= insertRows; n *= 2 {
		var q strings.Builder
		q.WriteString("INSERT INTO audit_entries (" + strings.Join(columns, ", ") + ") VALUES ")
		for r := range n {
			if r > 0 {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			for c := range columns {
				if c > 0 {
					q.WriteString(", ")
				}
				fmt.Fprintf(&q, "$%d", r*len(columns)+c+1)
			}
			q.WriteByte(')')
		}
		insertSQLs[n] = q.String()
	}
}

// insertSQL is the INSERT of n rows (n a power of two up to insertRows).
func insertSQL(n int) string { return insertSQLs[n] }

// isDataError reports whether PostgreSQL refused a value (SQLSTATE class
// 22, data exception: a NUL, an invalid byte sequence, a value out of
// range) rather than failed as a whole.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22")
}

// lockHeadJTIs takes the chain lock until tx ends (serialising writers
// on every replica), reads the head it may append after and the stored
// tree head (nil: no tree stored yet), and records the entries' token ids,
// returning the indexes of entries whose id was used before: one round
// trip.
func lockHeadJTIs(ctx context.Context, tx conn, entries []*audit.Entry, begin bool) (audit.Receipt, *audit.Tree, []int, error) {
	var head audit.Receipt
	b := &pgx.Batch{}
	if begin {
		b.Queue("BEGIN")
	}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(chainLock))
	// The tree head table holds one live row, so once analyzed PostgreSQL
	// would read it by a sequential scan, and a cached plan keeps doing so:
	// while a long transaction keeps the deleted heads, that scan reads all
	// of them under the chain lock. The primary key reaches the newest head
	// (and the one the append deletes) directly, whatever is kept.
	b.Queue(`SET LOCAL enable_seqscan = off`)
	b.Queue(`SELECT e.seq, e.hash, t.size, t.range
		FROM (SELECT 1) AS one
		LEFT JOIN LATERAL (SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1) e ON true
		LEFT JOIN LATERAL (SELECT size, range FROM audit_tree_heads ORDER BY size DESC LIMIT 1) t ON true`)
	agencies, jtis := tokenIDs(entries)
	if len(jtis) > 0 {
		b.Queue(`INSERT INTO request_jtis (agency_id, jti, expires_at)
		SELECT a, j, now() + make_interval(secs => $3) FROM unnest($1::text[], $2::text[]) AS t(a, j)
		ON CONFLICT (agency_id, jti) DO NOTHING
		RETURNING agency_id, jti`, agencies, jtis, jtiRetention.Seconds())
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if begin {
		if _, err := br.Exec(); err != nil {
			return head, nil, nil, fmt.Errorf("begin: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return head, nil, nil, fmt.Errorf("lock chain: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return head, nil, nil, fmt.Errorf("set up the append: %w", err)
	}
	var seq, size *int64
	var hash *string
	var rng []byte
	if err := br.QueryRow().Scan(&seq, &hash, &size, &rng); err != nil {
		return head, nil, nil, fmt.Errorf("read chain head: %w", err)
	}
	var replayed []int
	if len(jtis) > 0 {
		rows, err := br.Query()
		if err == nil {
			replayed, err = replays(rows, entries)
		}
		if err != nil {
			if isDataError(err) {
				// An agency or token id the database cannot hold: the
				// writer finds the entry that holds it, as for the entries.
				err = errors.Join(audit.ErrRejected, err)
			}
			return head, nil, nil, fmt.Errorf("record token ids: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return head, nil, nil, err
	}
	if seq != nil {
		head = audit.Receipt{Seq: *seq, Hash: *hash}
	}
	if size == nil {
		return head, audit.NewTree(), replayed, nil
	}
	tree, err := audit.LoadTree(uint64(*size), rng)
	if err != nil {
		return head, nil, nil, fmt.Errorf("read the tree head: %w", err)
	}
	return head, tree, replayed, nil
}

func row(e *audit.Entry, ts time.Time) []any {
	return []any{e.Seq, ts, e.ActorAgency, e.Actor, e.Role, e.Office, e.Action, e.Decision,
		e.SubjectRef, e.FlagIDs, e.LegalBasis, e.Emergency, e.Justification, e.PolicyVersion,
		e.Reasons, e.RequestJTI, e.PrevHash, e.Hash}
}

// tokenIDs lists the entries' (agency, token id) pairs, entries without
// one left out.
func tokenIDs(entries []*audit.Entry) (agencies, jtis []string) {
	for _, e := range entries {
		if e.RequestJTI != "" {
			agencies = append(agencies, e.ActorAgency)
			jtis = append(jtis, e.RequestJTI)
		}
	}
	return agencies, jtis
}

// replays reads the token ids the insert recorded (rows) and returns the
// indexes of entries whose id was used before (earlier, or earlier in
// this batch).
func replays(rows pgx.Rows, entries []*audit.Entry) ([]int, error) {
	fresh := map[[2]string]bool{}
	for rows.Next() {
		var a, j string
		if err := rows.Scan(&a, &j); err != nil {
			rows.Close()
			return nil, err
		}
		fresh[[2]string{a, j}] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var replayed []int
	for i, e := range entries {
		if e.RequestJTI == "" {
			continue
		}
		k := [2]string{e.ActorAgency, e.RequestJTI}
		if fresh[k] {
			delete(fresh, k) // the first in the batch wins; a second is a replay
			continue
		}
		replayed = append(replayed, i)
	}
	return replayed, nil
}

// Head returns the tree at the last entry: its size, root and the last
// entry's hash, read together. A log whose tree lags its entries (a log
// from before the tree, not caught up yet) is an error.
func (s *Store) Head(ctx context.Context) (audit.TreeHead, error) {
	var h audit.TreeHead
	var size, seq *int64
	var hash *string
	err := s.Pool.QueryRow(ctx, `SELECT t.size, t.root, e.seq, e.hash
		FROM (SELECT 1) AS one
		LEFT JOIN LATERAL (SELECT size, root FROM audit_tree_heads ORDER BY size DESC LIMIT 1) t ON true
		LEFT JOIN LATERAL (SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1) e ON true`).
		Scan(&size, &h.Root, &seq, &hash)
	if err != nil {
		return audit.TreeHead{}, err
	}
	if seq == nil {
		return audit.TreeHead{Root: audit.Hasher.EmptyRoot()}, nil
	}
	switch {
	case size != nil && *size > *seq:
		return audit.TreeHead{}, fmt.Errorf("%w: the log ends at %d, before the tree's %d leaves (entries were removed)",
			audit.ErrNotExtension, *seq, *size)
	case size == nil || *size != *seq:
		return audit.TreeHead{}, fmt.Errorf("the tree does not cover the log's %d entries yet", *seq)
	}
	h.Size, h.Chain = *size, *hash
	return h, nil
}

// LatestCheckpoint returns the newest checkpoint, or nil. Its note ends
// with the witnesses' cosignature lines the broker holds for it.
func (s *Store) LatestCheckpoint(ctx context.Context) (*audit.Checkpoint, error) {
	var cp audit.Checkpoint
	err := s.Pool.QueryRow(ctx, `SELECT c.count, c.hash,
			c.note || coalesce((SELECT string_agg(w.line, '' ORDER BY w.witness) FROM audit_cosignatures w WHERE w.count = c.count), ''),
			c.created_at
		FROM audit_checkpoints c ORDER BY c.count DESC LIMIT 1`).
		Scan(&cp.Count, &cp.Hash, &cp.Note, &cp.CreatedAt)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latest checkpoint: %w", err)
	}
	return &cp, nil
}

// InsertCheckpoint stores a checkpoint. When its count is already there
// with the same hash (another replica signed the same head) nothing
// changes; with another hash it is an error: the row was not written by a
// checkpointer that saw this chain.
func (s *Store) InsertCheckpoint(ctx context.Context, cp audit.Checkpoint) error {
	tag, err := s.Pool.Exec(ctx, `INSERT INTO audit_checkpoints (count, hash, note) VALUES ($1, $2, $3)
		ON CONFLICT (count) DO NOTHING`, cp.Count, cp.Hash, cp.Note)
	if err != nil || tag.RowsAffected() == 1 {
		return err
	}
	// A statement of its own, so that it sees a row committed by a replica
	// the insert waited for.
	var stored string
	if err := s.Pool.QueryRow(ctx, `SELECT hash FROM audit_checkpoints WHERE count = $1`, cp.Count).Scan(&stored); err != nil {
		return fmt.Errorf("read the checkpoint already stored at %d: %w", cp.Count, err)
	}
	if stored != cp.Hash {
		return fmt.Errorf("a checkpoint with another hash is already stored at %d", cp.Count)
	}
	return nil
}

// CheckpointsBefore returns up to limit checkpoints with count < before,
// newest first.
func (s *Store) CheckpointsBefore(ctx context.Context, before int64, limit int) ([]audit.Checkpoint, error) {
	rows, err := s.Pool.Query(ctx, `SELECT count, hash, note, created_at FROM audit_checkpoints
		WHERE count < $1 ORDER BY count DESC LIMIT $2`, before, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanCheckpoint)
}

func scanCheckpoint(r pgx.CollectableRow) (audit.Checkpoint, error) {
	var cp audit.Checkpoint
	err := r.Scan(&cp.Count, &cp.Hash, &cp.Note, &cp.CreatedAt)
	return cp, err
}

// Checkpoints returns every checkpoint, oldest first.
func (s *Store) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := s.Pool.Query(ctx, `SELECT count, hash, note, created_at FROM audit_checkpoints ORDER BY count`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanCheckpoint)
}

const selectEntries = `SELECT seq, ts, actor_agency, actor, role, office, action, decision, subject_ref, flag_ids,
	legal_basis, emergency, justification, policy_version, reasons, request_jti, prev_hash, hash FROM audit_entries`

func scanEntry(row pgx.Row, e *audit.Entry) error {
	var ts time.Time
	if err := row.Scan(&e.Seq, &ts, &e.ActorAgency, &e.Actor, &e.Role, &e.Office, &e.Action, &e.Decision,
		&e.SubjectRef, &e.FlagIDs, &e.LegalBasis, &e.Emergency, &e.Justification, &e.PolicyVersion,
		&e.Reasons, &e.RequestJTI, &e.PrevHash, &e.Hash); err != nil {
		return err
	}
	e.TS = audit.FormatTime(ts)
	if e.FlagIDs == nil {
		e.FlagIDs = []string{}
	}
	if e.Reasons == nil {
		e.Reasons = []string{}
	}
	return nil
}

// Entries streams every entry in seq order.
func (s *Store) Entries(ctx context.Context, fn func(*audit.Entry) error) error {
	return s.EntriesRange(ctx, 0, 0, fn)
}

// EntriesRange streams entries with from < seq (and seq <= to when to > 0).
func (s *Store) EntriesRange(ctx context.Context, from, to int64, fn func(*audit.Entry) error) error {
	q := selectEntries + ` WHERE seq > $1 AND ($2 = 0 OR seq <= $2) ORDER BY seq`
	rows, err := s.Pool.Query(ctx, q, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e := new(audit.Entry)
		if err := scanEntry(rows, e); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Search returns the entries matching q in seq order, at most q.Limit.
func (s *Store) Search(ctx context.Context, q audit.Query) ([]audit.Entry, error) {
	var from, to *time.Time
	if !q.From.IsZero() {
		from = &q.From
	}
	if !q.To.IsZero() {
		to = &q.To
	}
	rows, err := s.Pool.Query(ctx, selectEntries+`
		WHERE seq > $1
		  AND ($2 = '' OR actor_agency = $2 OR (decision = 'allow' AND action = ANY($10)
		       AND flag_ids <> '{}' AND flag_ids && ARRAY(SELECT id FROM flags WHERE issuer = $2)))
		  AND (cardinality($3::text[]) = 0 OR subject_ref = ANY($3))
		  AND ($4 = '' OR actor_agency = $4)
		  AND ($5 = '' OR actor = $5)
		  AND ($6::timestamptz IS NULL OR ts >= $6)
		  AND ($7::timestamptz IS NULL OR ts < $7)
		  AND (NOT $8 OR emergency)
		ORDER BY seq LIMIT $9`,
		q.AfterSeq, q.Scope, nonNilStrings(q.SubjectRefs), q.ActorAgency, q.Actor, from, to, q.EmergencyOnly, q.Limit, audit.DisclosureActions)
	if err != nil {
		return nil, fmt.Errorf("search audit: %w", err)
	}
	defer rows.Close()
	out := []audit.Entry{}
	for rows.Next() {
		var e audit.Entry
		if err := scanEntry(rows, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// SeqRange returns the first and last seq of entries with from <= ts < to
// (0, 0 when there are none).
func (s *Store) SeqRange(ctx context.Context, from, to time.Time) (first, last int64, err error) {
	err = s.Pool.QueryRow(ctx, `SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM audit_entries
		WHERE ts >= $1 AND ts < $2`, from, to).Scan(&first, &last)
	return first, last, err
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// lockHead takes the chain lock until tx ends and reads the head and the
// stored tree head (lockHeadJTIs without token ids).
func lockHead(ctx context.Context, tx pgx.Tx) (audit.Receipt, *audit.Tree, error) {
	head, tree, _, err := lockHeadJTIs(ctx, tx, nil, false)
	return head, tree, err
}
