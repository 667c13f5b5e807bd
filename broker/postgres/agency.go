package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker"
)

var _ broker.AgencyRegistry = (*DB)(nil)

// The registry decides who can authenticate, so every change to it commits
// with its audit entry e in one transaction: a refused change writes none,
// and a failed append leaves the registry as it was.

// errNoEntry guards against a registry change without its audit entry.
var errNoEntry = broker.Errorf(broker.EINTERNAL, "a registry change needs its audit entry")

// CreateAgency registers an agency with its first keys, audited by e, in one
// transaction. Errors: ECONFLICT when the id or a kid is taken.
func (db *DB) CreateAgency(ctx context.Context, a *broker.Agency, keys []broker.AgencyKey, e *audit.Entry) error {
	if e == nil {
		return errNoEntry
	}
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		offices := a.Offices
		if offices == nil {
			offices = []string{}
		}
		err := tx.QueryRow(ctx, `
			INSERT INTO agencies (id, kind, name, offices) VALUES ($1, $2, $3, $4)
			RETURNING status, created_at`,
			a.ID, string(a.Kind), a.Name, offices).Scan(&a.Status, &a.CreatedAt)
		if isUniqueViolation(err) {
			return broker.Errorf(broker.ECONFLICT, "agency %q is already registered", a.ID)
		} else if err != nil {
			return fmt.Errorf("insert agency %s: %w", a.ID, err)
		}
		if err := insertKeys(ctx, tx, a.ID, keys); err != nil {
			return err
		}
		return appendAudit(ctx, tx, e)
	})
}

func insertKeys(ctx context.Context, tx pgx.Tx, agencyID string, keys []broker.AgencyKey) error {
	for _, k := range keys {
		_, err := tx.Exec(ctx, `INSERT INTO agency_keys (agency_id, kid, jwk) VALUES ($1, $2, $3)`,
			agencyID, k.KID, k.JWK)
		switch {
		case isUniqueViolation(err):
			return broker.Errorf(broker.ECONFLICT, "agency %q already has a key with kid %q", agencyID, k.KID)
		case isForeignKeyViolation(err):
			return broker.Errorf(broker.ENOTFOUND, "no agency %q", agencyID)
		case err != nil:
			return fmt.Errorf("insert key %s/%s: %w", agencyID, k.KID, err)
		}
	}
	// Replicas poll this to refresh their key caches.
	if _, err := tx.Exec(ctx, `UPDATE agencies SET updated_at = now() WHERE id = $1`, agencyID); err != nil {
		return fmt.Errorf("touch agency %s: %w", agencyID, err)
	}
	return nil
}

const agencyColumns = `id, kind, name, offices, status, created_at`

func scanAgency(row pgx.Row) (*broker.Agency, error) {
	var a broker.Agency
	var kind string
	if err := row.Scan(&a.ID, &kind, &a.Name, &a.Offices, &a.Status, &a.CreatedAt); err != nil {
		return nil, err
	}
	a.Kind = broker.AgencyKind(kind)
	return &a, nil
}

// Agency returns one agency.
func (db *DB) Agency(ctx context.Context, id string) (*broker.Agency, error) {
	a, err := scanAgency(db.Pool.QueryRow(ctx, `SELECT `+agencyColumns+` FROM agencies WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, broker.Errorf(broker.ENOTFOUND, "no agency %q", id)
	} else if err != nil {
		return nil, fmt.Errorf("select agency %s: %w", id, err)
	}
	return a, nil
}

// Agencies lists every agency ordered by id.
func (db *DB) Agencies(ctx context.Context) ([]*broker.Agency, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+agencyColumns+` FROM agencies ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list agencies: %w", err)
	}
	defer rows.Close()
	var out []*broker.Agency
	for rows.Next() {
		a, err := scanAgency(rows)
		if err != nil {
			return nil, fmt.Errorf("scan agency: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetAgencyStatus enables or disables an agency, audited by e, in one
// transaction. Errors: ENOTFOUND; ECONFLICT when the agency already has that
// status (nothing changes, so nothing is audited).
func (db *DB) SetAgencyStatus(ctx context.Context, id, status string, e *audit.Entry) error {
	if e == nil {
		return errNoEntry
	}
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		var current string
		err := tx.QueryRow(ctx, `SELECT status FROM agencies WHERE id = $1 FOR UPDATE`, id).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) {
			return broker.Errorf(broker.ENOTFOUND, "no agency %q", id)
		} else if err != nil {
			return fmt.Errorf("look up agency %s: %w", id, err)
		}
		if current == status {
			return broker.Errorf(broker.ECONFLICT, "agency %q is already %s", id, status)
		}
		if _, err := tx.Exec(ctx, `UPDATE agencies SET status = $2, updated_at = now() WHERE id = $1`, id, status); err != nil {
			return fmt.Errorf("set agency %s status %s: %w", id, status, err)
		}
		return appendAudit(ctx, tx, e)
	})
}

// AddKeys registers more keys for an existing agency, audited by e, in one
// transaction. Errors: ENOTFOUND, ECONFLICT when a kid is taken.
func (db *DB) AddKeys(ctx context.Context, agencyID string, keys []broker.AgencyKey, e *audit.Entry) error {
	if e == nil {
		return errNoEntry
	}
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agencies WHERE id = $1)`, agencyID).Scan(&exists); err != nil {
			return fmt.Errorf("look up agency %s: %w", agencyID, err)
		}
		if !exists {
			return broker.Errorf(broker.ENOTFOUND, "no agency %q", agencyID)
		}
		if err := insertKeys(ctx, tx, agencyID, keys); err != nil {
			return err
		}
		return appendAudit(ctx, tx, e)
	})
}

// RetireKey stops a key from verifying requests, audited by e, in one
// transaction. Errors: ENOTFOUND; ECONFLICT when the key is already retired
// (nothing changes, so nothing is audited).
func (db *DB) RetireKey(ctx context.Context, agencyID, kid string, e *audit.Entry) error {
	if e == nil {
		return errNoEntry
	}
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM agency_keys WHERE agency_id = $1 AND kid = $2 FOR UPDATE`,
			agencyID, kid).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return broker.Errorf(broker.ENOTFOUND, "agency %q has no key %q", agencyID, kid)
		} else if err != nil {
			return fmt.Errorf("look up key %s/%s: %w", agencyID, kid, err)
		}
		if status == broker.StatusRetired {
			return broker.Errorf(broker.ECONFLICT, "key %q of agency %q is already retired", kid, agencyID)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE agency_keys SET status = 'retired', retired_at = now()
			WHERE agency_id = $1 AND kid = $2`, agencyID, kid); err != nil {
			return fmt.Errorf("retire key %s/%s: %w", agencyID, kid, err)
		}
		// Replicas poll this to refresh their key caches.
		if _, err := tx.Exec(ctx, `UPDATE agencies SET updated_at = now() WHERE id = $1`, agencyID); err != nil {
			return fmt.Errorf("touch agency %s: %w", agencyID, err)
		}
		return appendAudit(ctx, tx, e)
	})
}

// Keys lists an agency's keys, oldest first.
func (db *DB) Keys(ctx context.Context, agencyID string) ([]broker.AgencyKey, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT agency_id, kid, jwk, status, created_at, retired_at
		FROM agency_keys WHERE agency_id = $1 ORDER BY created_at, kid`, agencyID)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", agencyID, err)
	}
	defer rows.Close()
	var out []broker.AgencyKey
	for rows.Next() {
		var k broker.AgencyKey
		var retired *time.Time
		if err := rows.Scan(&k.AgencyID, &k.KID, &k.JWK, &k.Status, &k.CreatedAt, &retired); err != nil {
			return nil, fmt.Errorf("scan key: %w", err)
		}
		k.RetiredAt = retired
		out = append(out, k)
	}
	return out, rows.Err()
}

// ActiveKeys lists every agency's active keys, for the verifier's
// in-memory snapshot of the registry.
func (db *DB) ActiveKeys(ctx context.Context) ([]broker.AgencyKey, error) {
	rows, err := db.Pool.Query(ctx, `SELECT agency_id, kid, jwk, status, created_at FROM agency_keys
		WHERE status = 'active' ORDER BY agency_id, kid`)
	if err != nil {
		return nil, fmt.Errorf("read active keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (broker.AgencyKey, error) {
		var k broker.AgencyKey
		err := r.Scan(&k.AgencyID, &k.KID, &k.JWK, &k.Status, &k.CreatedAt)
		return k, err
	})
}
