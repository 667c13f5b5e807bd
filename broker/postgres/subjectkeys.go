package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker"
)

// SubjectKeyChain returns the chain's links in order.
func (db *DB) SubjectKeyChain(ctx context.Context) ([]broker.SubjectKeyLink, error) {
	rows, err := db.Pool.Query(ctx, `SELECT position, version, state FROM subject_key_chain ORDER BY position`)
	if err != nil {
		return nil, fmt.Errorf("read subject key chain: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (broker.SubjectKeyLink, error) {
		var l broker.SubjectKeyLink
		err := r.Scan(&l.Position, &l.Version, &l.State)
		return l, err
	})
}

// StartSubjectKeyChain records the first link when the chain is empty.
func (db *DB) StartSubjectKeyChain(ctx context.Context, version string) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO subject_key_chain (position, version, state, activated_at)
		VALUES (1, $1, 'active', now()) ON CONFLICT (position) DO NOTHING`, version)
	return err
}

// AddPendingSubjectKey appends a pending link. Errors: ECONFLICT when one
// is pending already.
func (db *DB) AddPendingSubjectKey(ctx context.Context, version string) (int, error) {
	var pos int
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE subject_key_chain IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var pending int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM subject_key_chain WHERE state = 'pending'`).Scan(&pending); err != nil {
			return err
		}
		if pending > 0 {
			return broker.Errorf(broker.ECONFLICT, "a rotation is already in progress")
		}
		return tx.QueryRow(ctx, `INSERT INTO subject_key_chain (position, version, state)
			SELECT coalesce(max(position), 0) + 1, $1, 'pending' FROM subject_key_chain RETURNING position`, version).Scan(&pos)
	})
	return pos, err
}

// RekeySubjects re-keys every flag's subject ref with key (the pending link
// at position), activates the link and appends the audit entry, in one
// transaction. Flags are locked against writes meanwhile.
func (db *DB) RekeySubjects(ctx context.Context, position int, key []byte, e *audit.Entry) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE flags IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock flags: %w", err)
		}
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM subject_key_chain WHERE position = $1 FOR UPDATE`, position).Scan(&state); err != nil {
			return fmt.Errorf("read chain link %d: %w", position, err)
		}
		if state != "pending" {
			return broker.Errorf(broker.ECONFLICT, "chain link %d is not pending", position)
		}
		rows, err := tx.Query(ctx, `SELECT id, subject_ref FROM flags`)
		if err != nil {
			return err
		}
		var ids, refs []string
		for rows.Next() {
			var id, ref string
			if err := rows.Scan(&id, &ref); err != nil {
				rows.Close()
				return err
			}
			ids, refs = append(ids, id), append(refs, broker.Rekey(key, ref))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		const chunk = 50_000
		for i := 0; i < len(ids); i += chunk {
			j := min(i+chunk, len(ids))
			tag, err := tx.Exec(ctx, `UPDATE flags f SET subject_ref = u.ref FROM unnest($1::text[], $2::text[]) AS u(id, ref)
				WHERE f.id = u.id`, ids[i:j], refs[i:j])
			if err != nil {
				return fmt.Errorf("re-key flags: %w", err)
			}
			n += tag.RowsAffected()
		}
		if _, err := tx.Exec(ctx, `UPDATE subject_key_chain SET state = 'active', activated_at = now() WHERE position = $1`, position); err != nil {
			return err
		}
		e.Reasons = append(e.Reasons, fmt.Sprintf("flags_rekeyed:%d", n))
		return appendAudit(ctx, tx, e)
	})
	return n, err
}
