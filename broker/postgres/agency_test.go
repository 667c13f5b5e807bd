package postgres_test

import (
	"context"
	"slices"
	"testing"

	"varsel/broker"
	"varsel/broker/auth"
)

func newKeys(t *testing.T, agency string, kids ...string) []broker.AgencyKey {
	t.Helper()
	var out []broker.AgencyKey
	for _, kid := range kids {
		_, pub, err := auth.GenerateKey(auth.AlgEdDSA, kid)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := auth.ParseJWKS(agency, pub)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ks...)
	}
	return out
}

func TestAgencyRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)

	a := &broker.Agency{ID: "nav-test", Kind: broker.KindNAVState, Name: "NAV test", Offices: []string{"nav-a", "nav-b"}}
	if err := db.CreateAgency(ctx, a, newKeys(t, "nav-test", "k1")); err != nil {
		t.Fatal(err)
	}
	if a.Status != broker.StatusActive || a.CreatedAt.IsZero() {
		t.Fatalf("created agency: status %q created %v", a.Status, a.CreatedAt)
	}
	err := db.CreateAgency(ctx, &broker.Agency{ID: "nav-test", Kind: broker.KindPolice, Name: "dup"}, nil)
	if broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("duplicate agency: got %v, want conflict", err)
	}

	got, err := db.Agency(ctx, "nav-test")
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != broker.KindNAVState || !slices.Equal(got.Offices, []string{"nav-a", "nav-b"}) || got.Name != "NAV test" {
		t.Fatalf("read back %+v", got)
	}
	list, err := db.Agencies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(x *broker.Agency) bool { return x.ID == "nav-test" }) {
		t.Fatalf("list lacks nav-test: %+v", list)
	}

	if err := db.SetAgencyStatus(ctx, "nav-test", broker.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Agency(ctx, "nav-test"); got.Status != broker.StatusDisabled {
		t.Fatalf("status after disable: %q", got.Status)
	}
	if err := db.SetAgencyStatus(ctx, "no-such", broker.StatusDisabled); broker.ErrorKind(err) != broker.ENOTFOUND {
		t.Fatalf("disable unknown: %v", err)
	}

	// Keys: add, refuse a duplicate kid, retire.
	if err := db.AddKeys(ctx, "nav-test", newKeys(t, "nav-test", "k2")); err != nil {
		t.Fatal(err)
	}
	if err := db.AddKeys(ctx, "nav-test", newKeys(t, "nav-test", "k2")); broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("duplicate kid: %v", err)
	}
	if err := db.AddKeys(ctx, "no-such", newKeys(t, "no-such", "k1")); broker.ErrorKind(err) != broker.ENOTFOUND {
		t.Fatalf("keys for unknown agency: %v", err)
	}
	if err := db.RetireKey(ctx, "nav-test", "k1"); err != nil {
		t.Fatal(err)
	}
	if err := db.RetireKey(ctx, "nav-test", "nope"); broker.ErrorKind(err) != broker.ENOTFOUND {
		t.Fatalf("retire unknown kid: %v", err)
	}
	keys, err := db.Keys(ctx, "nav-test")
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, k := range keys {
		status[k.KID] = k.Status
		if k.Status == broker.StatusRetired && k.RetiredAt == nil {
			t.Errorf("retired key %s has no retired_at", k.KID)
		}
		if _, err := auth.ParsePublicJWK(k.JWK); err != nil {
			t.Errorf("stored JWK of %s: %v", k.KID, err)
		}
	}
	if status["k1"] != broker.StatusRetired || status["k2"] != broker.StatusActive || len(status) != 2 {
		t.Fatalf("key statuses %v", status)
	}
}

func TestInsertJTI(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	exp := timeNow().Add(60e9)
	first, err := db.InsertJTI(ctx, "agency-x", "jti-0123456789abcdef", exp)
	if err != nil || !first {
		t.Fatalf("first use: %v %v", first, err)
	}
	again, err := db.InsertJTI(ctx, "agency-x", "jti-0123456789abcdef", exp)
	if err != nil || again {
		t.Fatalf("second use: %v %v (want false)", again, err)
	}
	other, err := db.InsertJTI(ctx, "agency-y", "jti-0123456789abcdef", exp)
	if err != nil || !other {
		t.Fatalf("same jti for another agency: %v %v", other, err)
	}
	n, err := db.SweepJTIs(ctx, exp.Add(1e9))
	if err != nil || n < 2 {
		t.Fatalf("sweep: %d %v", n, err)
	}
}
