package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
)

// appendAudit appends e inside tx; a replayed token id aborts the change.
func appendAudit(ctx context.Context, tx pgx.Tx, e *audit.Entry) error {
	if err := e.Storable(); err != nil {
		return &broker.Error{Kind: broker.EMALFORMED, Message: "a value in the request cannot be recorded: nothing was changed", Err: err}
	}
	replayed, err := auditpg.AppendInTx(ctx, tx, []*audit.Entry{e})
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log is unavailable: nothing was changed", Err: err}
	}
	if len(replayed) > 0 {
		return broker.ErrReplayed
	}
	return nil
}

// CreateFlag stores f and its audit entry in one transaction: the flag
// exists if and only if its issuing is in the log.
func (db *DB) CreateFlag(ctx context.Context, f *broker.Flag, e *audit.Entry) error {
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		if err := insertFlag(ctx, tx, f); err != nil {
			return err
		}
		return appendAudit(ctx, tx, e)
	})
}

// RevokeFlag marks a flag revoked, with its audit entry, in one transaction.
// A flag already revoked is left as it is (revoked reports false).
func (db *DB) RevokeFlag(ctx context.Context, id, by, reason string, e *audit.Entry) (revoked bool, err error) {
	err = db.auditedTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE flags SET status = 'revoked', revoked_at = now(), revoked_by = $2, revoke_reason = $3
			WHERE id = $1 AND status = 'active'`, id, by, reason)
		if err != nil {
			return fmt.Errorf("revoke flag: %w", err)
		}
		revoked = tag.RowsAffected() == 1
		return appendAudit(ctx, tx, e)
	})
	return revoked, err
}

func insertFlag(ctx context.Context, tx pgx.Tx, f *broker.Flag) error {
	var informed *bool
	reason := ""
	if f.SubjectInformed != nil {
		informed, reason = f.SubjectInformed.Informed, f.SubjectInformed.Reason
	}
	offices := f.Audience.Offices
	if offices == nil {
		offices = []string{}
	}
	kinds := f.Audience.Kinds
	if kinds == nil {
		kinds = []string{}
	}
	if f.RepresentedBy == "" {
		f.RepresentedBy = broker.RepresentedByIssuer
	}
	err := tx.QueryRow(ctx, `
			INSERT INTO flags (id, subject_ref, issuer, issuer_kind, issuer_office, issued_by, level, categories,
				precautions, valid_from, valid_until, audience_kinds, audience_offices, legal_basis,
				contact_unit, contact_phone, subject_informed, subject_informed_reason, decision, represented_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
			RETURNING status, created_at`,
		f.ID, f.SubjectRef, f.Issuer, string(f.IssuerKind), f.IssuerOffice, f.IssuedBy, f.Level, f.Categories,
		f.Precautions, f.ValidFrom, f.ValidUntil, kinds, offices, f.LegalBasis,
		f.Contact.Unit, f.Contact.Phone, informed, reason, f.Decision, f.RepresentedBy).Scan(&f.Status, &f.CreatedAt)
	if err != nil {
		return fmt.Errorf("insert flag: %w", err)
	}
	return nil
}

const flagColumns = `id, subject_ref, issuer, issuer_kind, issuer_office, issued_by, level, categories, precautions,
	valid_from, valid_until, audience_kinds, audience_offices, legal_basis, contact_unit, contact_phone,
	subject_informed, subject_informed_reason, status, created_at, revoked_at, revoke_reason, decision, represented_by`

func scanFlag(row pgx.Row) (*broker.Flag, error) {
	return scanFlagAfter(row)
}

// scanFlagAfter scans leading columns into before, then a flag.
func scanFlagAfter(row pgx.Row, before ...any) (*broker.Flag, error) {
	var f broker.Flag
	var kind, reason string
	var informed *bool
	err := row.Scan(append(before, &f.ID, &f.SubjectRef, &f.Issuer, &kind, &f.IssuerOffice, &f.IssuedBy, &f.Level, &f.Categories,
		&f.Precautions, &f.ValidFrom, &f.ValidUntil, &f.Audience.Kinds, &f.Audience.Offices, &f.LegalBasis,
		&f.Contact.Unit, &f.Contact.Phone, &informed, &reason, &f.Status, &f.CreatedAt, &f.RevokedAt, &f.RevokeReason,
		&f.Decision, &f.RepresentedBy)...)
	if err != nil {
		return nil, err
	}
	f.IssuerKind = broker.AgencyKind(kind)
	if informed != nil {
		f.SubjectInformed = &broker.SubjectInformed{Informed: informed, Reason: reason}
	}
	f.ValidFrom, f.ValidUntil, f.CreatedAt = f.ValidFrom.UTC(), f.ValidUntil.UTC(), f.CreatedAt.UTC()
	if d := f.Decision; d != nil {
		for _, t := range []*time.Time{d.DecidedAt, d.NoticeGivenAt} {
			if t != nil {
				*t = t.UTC()
			}
		}
	}
	return &f, nil
}

// Flag returns one flag. Errors: ENOTFOUND.
func (db *DB) Flag(ctx context.Context, id string) (*broker.Flag, error) {
	f, err := scanFlag(db.Pool.QueryRow(ctx, `SELECT `+flagColumns+` FROM flags WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, broker.Errorf(broker.ENOTFOUND, "no such flag")
	} else if err != nil {
		return nil, unavailable(err, "select flag")
	}
	return f, nil
}

// ActiveFlags returns the subject's flags that are active and valid at t:
// revoked and expired flags never leave the database for a check.
func (db *DB) ActiveFlags(ctx context.Context, subjectRefs []string, t time.Time) ([]*broker.Flag, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+flagColumns+` FROM flags
		WHERE subject_ref = ANY($1) AND status = 'active' AND valid_from <= $2 AND valid_until > $2
		ORDER BY id`, subjectRefs, t)
	if err != nil {
		return nil, fmt.Errorf("select active flags: %w", err)
	}
	defer rows.Close()
	var out []*broker.Flag
	for rows.Next() {
		f, err := scanFlag(rows)
		if err != nil {
			return nil, fmt.Errorf("scan flag: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// OfficeKinds returns, for each office given, the kinds of the active
// agencies it belongs to; an office no agency has is absent.
func (db *DB) OfficeKinds(ctx context.Context, offices []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(offices) == 0 {
		return out, nil
	}
	rows, err := db.Pool.Query(ctx, `
		SELECT o, kind FROM agencies, unnest(offices) AS o
		WHERE status = 'active' AND o = ANY($1) ORDER BY o, kind`, offices)
	if err != nil {
		return nil, fmt.Errorf("look up offices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var o, k string
		if err := rows.Scan(&o, &k); err != nil {
			return nil, err
		}
		out[o] = append(out[o], k)
	}
	return out, rows.Err()
}

// FlagOrigins returns the issuer, basis and subject of each of the flags
// named (for the privacy officers' projection); an id with no flag is absent.
func (db *DB) FlagOrigins(ctx context.Context, ids []string) (map[string]broker.FlagOrigin, error) {
	out := make(map[string]broker.FlagOrigin, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Pool.Query(ctx, `SELECT id, issuer, legal_basis, subject_ref FROM flags WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up flag origins: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var o broker.FlagOrigin
		if err := rows.Scan(&id, &o.Issuer, &o.LegalBasis, &o.SubjectRef); err != nil {
			return nil, err
		}
		out[id] = o
	}
	return out, rows.Err()
}
