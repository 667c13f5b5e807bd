package auth_test

import (
	"context"
	"os"
	"testing"

	"varsel/broker/postgres"
	"varsel/schema/schematest"
)

var testDB *postgres.DB

func TestMain(m *testing.M) {
	os.Exit(schematest.Main(m, "auth_pkg", func(url string) (func(), error) {
		var err error
		testDB, err = postgres.Open(context.Background(), url, postgres.Options{})
		if err != nil {
			return nil, err
		}
		return testDB.Close, nil
	}))
}
