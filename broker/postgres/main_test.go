package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"varsel/broker/postgres"
	"varsel/schema/schematest"
)

var testURL string

func TestMain(m *testing.M) {
	os.Exit(schematest.Main(m, "postgres_pkg", func(url string) (func(), error) { testURL = url; return nil, nil }))
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
