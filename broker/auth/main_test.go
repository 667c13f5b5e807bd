package auth_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"varsel/broker/postgres"
	"varsel/schema/schematest"
)

var testDB *postgres.DB

func TestMain(m *testing.M) {
	ctx := context.Background()
	url, err := schematest.NewDatabase(ctx, "auth_pkg", false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDB, err = postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testDB.Close()
	_ = schematest.DropDatabase(ctx, url)
	os.Exit(code)
}
