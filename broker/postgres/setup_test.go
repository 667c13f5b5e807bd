package postgres_test

import (
	"context"
	"testing"

	"varsel/broker/postgres"
)

// TestConnectionSetup: every connection runs without JIT (set after
// connecting, not as a startup parameter) and as the runtime role.
func TestConnectionSetup(t *testing.T) {
	db, err := postgres.Open(context.Background(), testURL, postgres.Options{Role: "varsel_app"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var jit, role string
	if err := db.Pool.QueryRow(context.Background(), `SELECT current_setting('jit'), current_user`).Scan(&jit, &role); err != nil {
		t.Fatal(err)
	}
	if jit != "off" || role != "varsel_app" {
		t.Fatalf("jit %s, role %s; want off, varsel_app", jit, role)
	}
}
