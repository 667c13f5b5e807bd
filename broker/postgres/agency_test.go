package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/postgres"
)

// opEntry is the audit entry of a registry change by the test's operator.
func opEntry(action string, reasons ...string) *audit.Entry {
	return &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "varsel", Actor: "test-operator", Role: "operator",
		Action: action, Decision: audit.Allow, PolicyVersion: "test", Reasons: reasons}
}

func auditCount(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_entries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// wantLogged checks that e was committed, under its seq, as it was given.
func wantLogged(t *testing.T, db *postgres.DB, e *audit.Entry) {
	t.Helper()
	if e.Seq == 0 || len(e.Hash) != 64 {
		t.Fatalf("%s: entry not appended (seq %d, hash %q)", e.Action, e.Seq, e.Hash)
	}
	var action, actor, actorAgency, role, hash string
	var reasons []string
	err := db.Pool.QueryRow(context.Background(), `
		SELECT action, actor, actor_agency, role, reasons, hash FROM audit_entries WHERE seq = $1`, e.Seq).
		Scan(&action, &actor, &actorAgency, &role, &reasons, &hash)
	if err != nil {
		t.Fatalf("%s: entry %d: %v", e.Action, e.Seq, err)
	}
	if action != e.Action || actor != e.Actor || actorAgency != e.ActorAgency || role != e.Role ||
		!slices.Equal(reasons, e.Reasons) || hash != e.Hash {
		t.Fatalf("entry %d is %s %s %s %s %v %s; want %+v", e.Seq, action, actor, actorAgency, role, reasons, hash, e)
	}
}

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
	before := auditCount(t, db)
	added := opEntry("agency.add", "agency:nav-test", "kind:nav-state", "kid:k1")
	if err := db.CreateAgency(ctx, a, newKeys(t, "nav-test", "k1"), added); err != nil {
		t.Fatal(err)
	}
	wantLogged(t, db, added)
	if a.Status != broker.StatusActive || a.CreatedAt.IsZero() {
		t.Fatalf("created agency: status %q created %v", a.Status, a.CreatedAt)
	}
	dup := opEntry("agency.add")
	err := db.CreateAgency(ctx, &broker.Agency{ID: "nav-test", Kind: broker.KindPolice, Name: "dup"}, nil, dup)
	if broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("duplicate agency: got %v, want conflict", err)
	}
	if dup.Seq != 0 {
		t.Fatalf("refused add has audit seq %d", dup.Seq)
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

	disabled := opEntry("agency.disable", "agency:nav-test")
	if err := db.SetAgencyStatus(ctx, "nav-test", broker.StatusDisabled, disabled); err != nil {
		t.Fatal(err)
	}
	wantLogged(t, db, disabled)
	if got, _ := db.Agency(ctx, "nav-test"); got.Status != broker.StatusDisabled {
		t.Fatalf("status after disable: %q", got.Status)
	}
	if err := db.SetAgencyStatus(ctx, "no-such", broker.StatusDisabled, opEntry("agency.disable")); broker.ErrorKind(err) != broker.ENOTFOUND {
		t.Fatalf("disable unknown: %v", err)
	}
	// A change that changes nothing is refused, and not audited.
	if err := db.SetAgencyStatus(ctx, "nav-test", broker.StatusDisabled, opEntry("agency.disable")); broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("disable a disabled agency: %v, want conflict", err)
	}
	enabled := opEntry("agency.enable", "agency:nav-test")
	if err := db.SetAgencyStatus(ctx, "nav-test", broker.StatusActive, enabled); err != nil {
		t.Fatal(err)
	}
	wantLogged(t, db, enabled)
	if got, _ := db.Agency(ctx, "nav-test"); got.Status != broker.StatusActive {
		t.Fatalf("status after enable: %q", got.Status)
	}
	if err := db.SetAgencyStatus(ctx, "nav-test", broker.StatusActive, opEntry("agency.enable")); broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("enable an active agency: %v, want conflict", err)
	}

	// Keys: add, refuse a duplicate kid, retire.
	keyAdded := opEntry("agency.key.add", "agency:nav-test", "kid:k2")
	if err := db.AddKeys(ctx, "nav-test", newKeys(t, "nav-test", "k2"), keyAdded); err != nil {
		t.Fatal(err)
	}
	wantLogged(t, db, keyAdded)
	if err := db.AddKeys(ctx, "nav-test", newKeys(t, "nav-test", "k2"), opEntry("agency.key.add")); broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("duplicate kid: %v", err)
	}
	if err := db.AddKeys(ctx, "no-such", newKeys(t, "no-such", "k1"), opEntry("agency.key.add")); broker.ErrorKind(err) != broker.ENOTFOUND {
		t.Fatalf("keys for unknown agency: %v", err)
	}
	retired := opEntry("agency.key.retire", "agency:nav-test", "kid:k1")
	if err := db.RetireKey(ctx, "nav-test", "k1", retired); err != nil {
		t.Fatal(err)
	}
	wantLogged(t, db, retired)
	if err := db.RetireKey(ctx, "nav-test", "nope", opEntry("agency.key.retire")); broker.ErrorKind(err) != broker.ENOTFOUND {
		t.Fatalf("retire unknown kid: %v", err)
	}
	if err := db.RetireKey(ctx, "nav-test", "k1", opEntry("agency.key.retire")); broker.ErrorKind(err) != broker.ECONFLICT {
		t.Fatalf("retire a retired key: %v, want conflict", err)
	}
	// Five changes, five entries, in order; the refused ones wrote none.
	if n := auditCount(t, db) - before; n != 5 {
		t.Fatalf("%d audit entries for 5 changes", n)
	}
	seqs := []int64{added.Seq, disabled.Seq, enabled.Seq, keyAdded.Seq, retired.Seq}
	if !slices.IsSorted(seqs) || seqs[4]-seqs[0] != 4 {
		t.Fatalf("seqs %v", seqs)
	}
	if err := db.SetAgencyStatus(ctx, "nav-test", broker.StatusDisabled, nil); err == nil {
		t.Fatal("a change without its audit entry succeeded")
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

// A registry change whose audit append fails inside its transaction (here: a
// token id used before, so the append is refused as a replay; or a ts the
// log cannot store) leaves the registry and the log as they were.
func TestAgencyChangeRolledBackWithItsAudit(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	const id = "rollback-test"
	if err := db.CreateAgency(ctx, &broker.Agency{ID: id, Kind: broker.KindPolice, Name: "Rollback"}, newKeys(t, id, "k1"), opEntry("agency.add")); err != nil {
		t.Fatal(err)
	}
	n := 0
	replayed := func(action string) *audit.Entry {
		n++
		jti := fmt.Sprintf("rollback-jti-%d-%d", n, time.Now().UnixNano())
		if first, err := db.InsertJTI(ctx, "varsel", jti, time.Now().Add(time.Hour)); err != nil || !first {
			t.Fatalf("insert jti: %v %v", first, err)
		}
		e := opEntry(action)
		e.RequestJTI = jti
		return e
	}
	badTS := func(action string) *audit.Entry {
		e := opEntry(action)
		e.TS = "yesterday"
		return e
	}
	wantState := func(status string, kids map[string]string) {
		t.Helper()
		a, err := db.Agency(ctx, id)
		if err != nil || a.Status != status {
			t.Fatalf("agency %s: %+v %v, want status %s", id, a, err, status)
		}
		keys, err := db.Keys(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, k := range keys {
			got[k.KID] = k.Status
		}
		if fmt.Sprint(got) != fmt.Sprint(kids) {
			t.Fatalf("keys %v, want %v", got, kids)
		}
	}
	before := auditCount(t, db)

	for _, bad := range []func(string) *audit.Entry{replayed, badTS} {
		e := bad("agency.add")
		err := db.CreateAgency(ctx, &broker.Agency{ID: "rollback-new", Kind: broker.KindHealth, Name: "New"}, newKeys(t, "rollback-new", "k1"), e)
		if err == nil {
			t.Fatal("add with a failing audit append succeeded")
		}
		if _, err := db.Agency(ctx, "rollback-new"); broker.ErrorKind(err) != broker.ENOTFOUND {
			t.Fatalf("agency of a failed add: %v", err)
		}
		if keys, _ := db.Keys(ctx, "rollback-new"); len(keys) != 0 {
			t.Fatalf("keys of a failed add: %v", keys)
		}

		if err := db.SetAgencyStatus(ctx, id, broker.StatusDisabled, bad("agency.disable")); err == nil {
			t.Fatal("disable with a failing audit append succeeded")
		}
		wantState(broker.StatusActive, map[string]string{"k1": broker.StatusActive})

		if err := db.AddKeys(ctx, id, newKeys(t, id, "k2"), bad("agency.key.add")); err == nil {
			t.Fatal("key add with a failing audit append succeeded")
		}
		wantState(broker.StatusActive, map[string]string{"k1": broker.StatusActive})

		if err := db.RetireKey(ctx, id, "k1", bad("agency.key.retire")); err == nil {
			t.Fatal("key retire with a failing audit append succeeded")
		}
		wantState(broker.StatusActive, map[string]string{"k1": broker.StatusActive})
	}
	// The replay is reported as such; the unstorable entry as the audit log
	// being unavailable.
	if err := db.SetAgencyStatus(ctx, id, broker.StatusDisabled, replayed("agency.disable")); err != broker.ErrReplayed {
		t.Fatalf("replayed: %v", err)
	}
	if err := db.SetAgencyStatus(ctx, id, broker.StatusDisabled, badTS("agency.disable")); broker.ErrorCode(err) != broker.CodeAuditUnavailable {
		t.Fatalf("bad ts: %v", err)
	}
	if n := auditCount(t, db); n != before {
		t.Fatalf("failed changes wrote %d audit entries", n-before)
	}

	// Enable, the one change not yet tried, needs a disabled agency.
	if err := db.SetAgencyStatus(ctx, id, broker.StatusDisabled, opEntry("agency.disable")); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAgencyStatus(ctx, id, broker.StatusActive, replayed("agency.enable")); err == nil {
		t.Fatal("enable with a failing audit append succeeded")
	}
	wantState(broker.StatusDisabled, map[string]string{"k1": broker.StatusActive})
	if n := auditCount(t, db); n != before+1 {
		t.Fatalf("%d audit entries after one change", n-before)
	}
}

func TestInsertJTI(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	// Already expired by the database's clock, which the sweep goes by.
	exp := timeNow().Add(-60e9)
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
	n, err := db.SweepJTIs(ctx)
	if err != nil || n < 2 {
		t.Fatalf("sweep: %d %v", n, err)
	}
}
