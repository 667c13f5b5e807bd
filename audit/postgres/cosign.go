package postgres

import (
	"context"
	"fmt"
)

// AddCosignature stores a witness's cosignature line for the checkpoint at
// count (served after the broker's signature by LatestCheckpoint). A line
// already stored for that witness and count is kept.
func (s *Store) AddCosignature(ctx context.Context, count int64, witness, line string) error {
	if _, err := s.Pool.Exec(ctx, `INSERT INTO audit_cosignatures (count, witness, line) VALUES ($1, $2, $3)
		ON CONFLICT (count, witness) DO NOTHING`, count, witness, line); err != nil {
		return fmt.Errorf("store the cosignature of %s at %d: %w", witness, count, err)
	}
	return nil
}

// LastCosigned returns the count of the newest checkpoint witness has
// cosigned (0: none).
func (s *Store) LastCosigned(ctx context.Context, witness string) (int64, error) {
	var n int64
	if err := s.Pool.QueryRow(ctx, `SELECT coalesce(max(count), 0) FROM audit_cosignatures WHERE witness = $1`, witness).Scan(&n); err != nil {
		return 0, fmt.Errorf("read the cosignatures of %s: %w", witness, err)
	}
	return n, nil
}
