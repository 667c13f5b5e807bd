package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/broker"
)

// IssuedFlags lists the flags an agency issued, newest first: all of them,
// or (activeOnly) those active and not yet expired at t.
func (db *DB) IssuedFlags(ctx context.Context, issuer string, activeOnly bool, t time.Time, limit int) ([]*broker.Flag, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+flagColumns+` FROM flags
		WHERE issuer = $1 AND (NOT $2 OR (status = 'active' AND valid_until > $3))
		ORDER BY created_at DESC, id DESC LIMIT $4`, issuer, activeOnly, t, limit)
	if err != nil {
		return nil, fmt.Errorf("list flags of %s: %w", issuer, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*broker.Flag, error) { return scanFlag(r) })
}
