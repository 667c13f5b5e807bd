package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker"
)

// inboxLock serialises the creation of deliveries, so that their positions
// (the inbox cursor) commit in increasing order.
const inboxLock = 0x7661_7273_0001

// InboxChannel is the NOTIFY channel that wakes inbox long-polls; the
// payload is the office id.
const InboxChannel = "varsel_inbox"

// CreateWarning stores a warning's flag, the warning, one delivery per
// target office, the webhook pushes due, and the audit entry, in one
// transaction, and wakes the offices' long-polls on every replica.
func (db *DB) CreateWarning(ctx context.Context, f *broker.Flag, w *broker.Warning, offices []string, e *audit.Entry) error {
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(inboxLock)); err != nil {
			return fmt.Errorf("lock inbox: %w", err)
		}
		if err := insertFlag(ctx, tx, f); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO warnings (id, flag_id, issuer, issued_by) VALUES ($1, $2, $3, $4)
			RETURNING created_at`, w.ID, w.FlagID, w.Issuer, w.IssuedBy).Scan(&w.CreatedAt); err != nil {
			return fmt.Errorf("insert warning: %w", err)
		}
		for _, o := range offices {
			var d broker.Delivery
			d.Office = o
			if err := tx.QueryRow(ctx, `INSERT INTO warning_deliveries (warning_id, office) VALUES ($1, $2)
				RETURNING delivered_at`, w.ID, o).Scan(&d.DeliveredAt); err != nil {
				return fmt.Errorf("insert delivery to %s: %w", o, err)
			}
			w.Deliveries = append(w.Deliveries, d)
			if _, err := tx.Exec(ctx, `INSERT INTO webhook_pushes (warning_id, office, url)
				SELECT $1, office, url FROM office_webhooks WHERE office = $2`, w.ID, o); err != nil {
				return fmt.Errorf("queue webhook push to %s: %w", o, err)
			}
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, InboxChannel, o); err != nil {
				return fmt.Errorf("notify %s: %w", o, err)
			}
		}
		return appendAudit(ctx, tx, e)
	})
}

// Inbox returns up to limit deliveries to office after position after,
// oldest first, with their flags.
func (db *DB) Inbox(ctx context.Context, office string, after int64, limit int) ([]broker.InboxItem, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT d.pos, d.warning_id, d.office, d.delivered_at, d.read_at, d.acked_at, `+prefixed("f", flagColumns)+`
		FROM warning_deliveries d JOIN warnings w ON w.id = d.warning_id JOIN flags f ON f.id = w.flag_id
		WHERE d.office = $1 AND d.pos > $2 ORDER BY d.pos LIMIT $3`, office, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read inbox of %s: %w", office, err)
	}
	defer rows.Close()
	var out []broker.InboxItem
	for rows.Next() {
		var it broker.InboxItem
		f, err := scanFlagAfter(rows, &it.Pos, &it.WarningID, &it.Office, &it.DeliveredAt, &it.ReadAt, &it.AckedAt)
		if err != nil {
			return nil, fmt.Errorf("scan inbox item: %w", err)
		}
		it.Flag = f
		out = append(out, it)
	}
	return out, rows.Err()
}

// MarkRead records the first read of deliveries.
func (db *DB) MarkRead(ctx context.Context, office string, positions []int64) error {
	if len(positions) == 0 {
		return nil
	}
	_, err := db.Pool.Exec(ctx, `UPDATE warning_deliveries SET read_at = now()
		WHERE office = $1 AND pos = ANY($2) AND read_at IS NULL`, office, positions)
	return err
}

// AckWarning records an office's acknowledgement with its audit entry. The
// first ack counts; a later one changes nothing (acked reports false).
// Errors: ENOTFOUND when the office is not a target of the warning.
func (db *DB) AckWarning(ctx context.Context, id, office, by string, e *audit.Entry) (acked bool, err error) {
	err = db.auditedTx(ctx, func(tx pgx.Tx) error {
		var ackedAt *time.Time
		err := tx.QueryRow(ctx, `SELECT acked_at FROM warning_deliveries WHERE warning_id = $1 AND office = $2 FOR UPDATE`, id, office).Scan(&ackedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return broker.Errorf(broker.ENOTFOUND, "no such warning for this office")
		} else if err != nil {
			return fmt.Errorf("read delivery: %w", err)
		}
		if ackedAt == nil {
			if _, err := tx.Exec(ctx, `UPDATE warning_deliveries SET acked_at = now(), acked_by = $3,
				read_at = coalesce(read_at, now()) WHERE warning_id = $1 AND office = $2`, id, office, by); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
			acked = true
		} else {
			e.Reasons = []string{"already_acknowledged"}
		}
		return appendAudit(ctx, tx, e)
	})
	return acked, err
}

// WarningFlag returns the flag of a warning (for authorisation and audit).
// Errors: ENOTFOUND.
func (db *DB) WarningFlag(ctx context.Context, id string) (*broker.Flag, error) {
	f, err := scanFlag(db.Pool.QueryRow(ctx, `SELECT `+prefixed("f", flagColumns)+`
		FROM warnings w JOIN flags f ON f.id = w.flag_id WHERE w.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, broker.Errorf(broker.ENOTFOUND, "no such warning")
	} else if err != nil {
		return nil, unavailable(err, "select warning flag")
	}
	return f, nil
}

// Warning returns a warning with the state of every delivery.
func (db *DB) Warning(ctx context.Context, id string) (*broker.Warning, error) {
	var w broker.Warning
	err := db.Pool.QueryRow(ctx, `SELECT id, flag_id, issuer, issued_by, created_at FROM warnings WHERE id = $1`, id).
		Scan(&w.ID, &w.FlagID, &w.Issuer, &w.IssuedBy, &w.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, broker.Errorf(broker.ENOTFOUND, "no such warning")
	} else if err != nil {
		return nil, fmt.Errorf("select warning: %w", err)
	}
	rows, err := db.Pool.Query(ctx, `
		SELECT d.office, d.delivered_at, d.read_at, d.acked_at,
		       p.attempts, p.last_status, p.delivered_at, p.gave_up_at, p.id IS NOT NULL
		FROM warning_deliveries d LEFT JOIN webhook_pushes p ON p.warning_id = d.warning_id AND p.office = d.office
		WHERE d.warning_id = $1 ORDER BY d.office`, id)
	if err != nil {
		return nil, fmt.Errorf("select deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d broker.Delivery
		var p broker.Push
		var attempts *int
		var hasPush bool
		if err := rows.Scan(&d.Office, &d.DeliveredAt, &d.ReadAt, &d.AckedAt,
			&attempts, &p.LastStatus, &p.DeliveredAt, &p.GaveUpAt, &hasPush); err != nil {
			return nil, err
		}
		if hasPush {
			p.Attempts = *attempts
			d.Webhook = &p
		}
		w.Deliveries = append(w.Deliveries, d)
	}
	return &w, rows.Err()
}

// SetWebhook registers (or, with url "", removes) an office's webhook, with
// its audit entry.
func (db *DB) SetWebhook(ctx context.Context, office, url, by string, e *audit.Entry) error {
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		var err error
		if url == "" {
			_, err = tx.Exec(ctx, `DELETE FROM office_webhooks WHERE office = $1`, office)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO office_webhooks (office, url, set_by) VALUES ($1, $2, $3)
				ON CONFLICT (office) DO UPDATE SET url = $2, set_by = $3, updated_at = now()`, office, url, by)
		}
		if err != nil {
			return fmt.Errorf("set webhook of %s: %w", office, err)
		}
		return appendAudit(ctx, tx, e)
	})
}

// ClaimPushes takes up to limit due pushes for lease (other replicas skip
// them until it ends).
//
// A push goes to the office's webhook as it is now: one withdrawn since the
// delivery was queued is given up, one changed is followed.
func (db *DB) ClaimPushes(ctx context.Context, limit int, lease time.Duration) ([]broker.DuePush, error) {
	if _, err := db.Pool.Exec(ctx, `
		UPDATE webhook_pushes p SET gave_up_at = now(), last_error = 'webhook withdrawn'
		WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
		  AND NOT EXISTS (SELECT 1 FROM office_webhooks w WHERE w.office = p.office)`); err != nil {
		return nil, fmt.Errorf("give up withdrawn webhook pushes: %w", err)
	}
	rows, err := db.Pool.Query(ctx, `
		UPDATE webhook_pushes p SET next_attempt_at = now() + make_interval(secs => $2), url = w.url
		FROM office_webhooks w
		WHERE w.office = p.office AND p.id IN (SELECT id FROM webhook_pushes
			WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING p.id, p.kind, coalesce(p.warning_id, ''), coalesce(p.flag_id, ''), coalesce(p.check_seq, 0), p.legal_basis,
			p.office, w.url, p.attempts`, limit, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim webhook pushes: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (broker.DuePush, error) {
		var p broker.DuePush
		err := r.Scan(&p.ID, &p.Kind, &p.WarningID, &p.FlagID, &p.CheckSeq, &p.LegalBasis, &p.Office, &p.URL, &p.Attempts)
		return p, err
	})
}

// QueueExceptionNotices queues an exception-disclosure push for each notice
// whose issuing office has a webhook: the life-and-health exception reached
// that office's flag in the check entry seq. An office without a webhook
// learns of it from its disclosure feed alone; queuing twice is a no-op.
func (db *DB) QueueExceptionNotices(ctx context.Context, seq int64, notices []broker.ExceptionNotice) error {
	if len(notices) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, n := range notices {
		b.Queue(`INSERT INTO webhook_pushes (kind, flag_id, check_seq, legal_basis, office, url)
			SELECT 'exception-disclosure', $1, $2, $3, office, url FROM office_webhooks WHERE office = $4
			ON CONFLICT DO NOTHING`, n.FlagID, seq, n.LegalBasis, n.Office)
	}
	if err := db.Pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("queue exception notices: %w", err)
	}
	return nil
}

// RecordPush stores the outcome of one attempt: delivered, retry at next,
// or (next zero and not delivered) given up.
func (db *DB) RecordPush(ctx context.Context, id int64, status int, errText string, delivered bool, next time.Time) error {
	var st *int
	if status != 0 {
		st = &status
	}
	_, err := db.Pool.Exec(ctx, `UPDATE webhook_pushes SET attempts = attempts + 1, last_status = $2, last_error = $3,
		delivered_at = CASE WHEN $4 THEN now() END,
		gave_up_at = CASE WHEN NOT $4 AND $5::timestamptz IS NULL THEN now() END,
		next_attempt_at = coalesce($5, next_attempt_at)
		WHERE id = $1`, id, st, errText, delivered, nullTime(next))
	return err
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Disclosures lists the disclosures of issuer's flags recorded in the audit
// log after seq after: one item per disclosed flag of each entry, at most
// limit entries' worth. They come from the log itself, so none can be missing.
func (db *DB) Disclosures(ctx context.Context, issuer string, after int64, limit int) ([]broker.Disclosure, error) {
	rows, err := db.Pool.Query(ctx, `
		WITH e AS (
			SELECT seq, ts, actor_agency, office, role, action, legal_basis, emergency, flag_ids, reasons
			FROM audit_entries
			WHERE seq > $2 AND decision = 'allow' AND action = ANY($4) AND actor_agency <> $1
			  AND flag_ids <> '{}' AND flag_ids && ARRAY(SELECT id FROM flags WHERE issuer = $1)
			ORDER BY seq LIMIT $3)
		SELECT e.seq, f.id, e.ts, e.actor_agency, e.office, e.role, e.action, e.emergency, `+flagBasisSQL+`,
		       ('emergency_flag:' || f.id) = ANY(e.reasons)
		FROM e JOIN flags f ON f.id = ANY(e.flag_ids) AND f.issuer = $1
		ORDER BY e.seq, f.id`, issuer, after, limit, DisclosureActions)
	if err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	defer rows.Close()
	out := []broker.Disclosure{}
	for rows.Next() {
		var d broker.Disclosure
		// A normally visible flag is disclosed under its own basis; one the
		// check reached only through the life-and-health exception under the
		// exception's route for its issuer's kind (flagBasisSQL).
		if err := rows.Scan(&d.Seq, &d.FlagID, &d.At, &d.Agency, &d.Office, &d.Role, &d.Action, &d.Emergency, &d.LegalBasis,
			&d.ByException); err != nil {
			return nil, err
		}
		d.At = d.At.UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// DisclosureActions are the audited actions that show a flag to someone
// other than its issuer (kept in step with scopeClause).
var DisclosureActions = audit.DisclosureActions

func prefixed(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}
