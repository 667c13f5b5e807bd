package postgres

import (
	"context"
	"fmt"
	"time"
)

// InsertJTI records a token id until it expires; false when it was there.
func (db *DB) InsertJTI(ctx context.Context, agencyID, jti string, expires time.Time) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `
		INSERT INTO request_jtis (agency_id, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (agency_id, jti) DO NOTHING`, agencyID, jti, expires)
	if err != nil {
		return false, fmt.Errorf("record jti: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SweepJTIs deletes token ids that have expired by the database's clock,
// the clock their expiry was set by (the audit writer records each id
// with now() plus its retention), returning how many. No replica's clock
// enters into it, so one whose clock runs ahead cannot sweep an id early
// while another replica could still accept its token.
func (db *DB) SweepJTIs(ctx context.Context) (int64, error) {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM request_jtis WHERE expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("sweep jtis: %w", err)
	}
	return tag.RowsAffected(), nil
}
