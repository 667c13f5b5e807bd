package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"varsel/broker/postgres"
	"varsel/schema/schematest"
)

var testURL string

func TestMain(m *testing.M) {
	ctx := context.Background()
	url, err := schematest.NewDatabase(ctx, "postgres_pkg", false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testURL = url
	code := m.Run()
	_ = schematest.DropDatabase(ctx, url)
	os.Exit(code)
}

func openDB(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testURL, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func timeNow() time.Time { return time.Now() }
