package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/app"
	"varsel/broker/auth"
	"varsel/broker/client"
	"varsel/broker/keys"
	"varsel/broker/postgres"
	"varsel/schema/schematest"
)

// testURL is the database of the running test: each test takes a fresh
// one (useFreshDB), since the subject key chain is per database.
var testURL string

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

func useFreshDB(t *testing.T) {
	t.Helper()
	url, err := schematest.NewDatabase(context.Background(), "broker_app", false)
	if err != nil {
		t.Fatal(err)
	}
	testURL = url
	t.Cleanup(func() { _ = schematest.DropDatabase(context.Background(), url) })
}

// replica starts an App on the package's database with the key directory
// dir; its followers reload only when the test says so.
func replica(t *testing.T, dir string) (*app.App, string) {
	t.Helper()
	a := app.New(app.Config{
		DatabaseURL: testURL, DatabaseRole: "varsel_app", Listen: "127.0.0.1:0", BrokerID: "varsel",
		Keys: "file:" + dir, TestSubjects: true,
		KeyReloadInterval: time.Hour, CheckpointInterval: time.Hour, ReviewSweepInterval: time.Hour,
		DutyDesk: broker.Contact{Unit: "Varsel duty desk"},
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("replica did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("replica stopped with %v", err)
		}
	})
	return a, "http://" + a.Addr().String()
}

// agency registers an agency with a fresh key, straight in the registry.
func agency(t *testing.T, id string, kind broker.AgencyKind, offices ...string) *client.Signer {
	t.Helper()
	ctx := context.Background()
	priv, pub, err := auth.GenerateKey(auth.AlgES256, id+"-1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(pub, &set); err != nil {
		t.Fatal(err)
	}
	if offices == nil {
		offices = []string{}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO agencies (id, kind, name, offices) VALUES ($1, $2, $1, $3)`, id, string(kind), offices); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO agency_keys (agency_id, kid, jwk) VALUES ($1, $2, $3)`, id, id+"-1", string(set.Keys[0])); err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSigner(id, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type checkResult struct {
	Result      string
	Precautions []string
}

func check(t *testing.T, base string, s *client.Signer, office, subject string) (checkResult, *client.Response) {
	t.Helper()
	c := &client.Client{BaseURL: base, Signer: s, Employee: client.Employee{Sub: "cw-1", Role: "caseworker", Office: office}}
	var r checkResult
	resp, err := c.JSON(context.Background(), "POST", "/v1/checks", map[string]any{"subject": subject, "purpose": "meeting"}, &r)
	if err != nil && resp == nil {
		t.Fatal(err)
	}
	return r, resp
}

func issueFlag(t *testing.T, base string, s *client.Signer, subject string) {
	t.Helper()
	c := &client.Client{BaseURL: base, Signer: s, Employee: client.Employee{Sub: "liaison-1", Role: "police-liaison"}}
	body := map[string]any{
		"subject": subject, "level": "high", "categories": []string{"threats"}, "precautions": []string{"two-staff"},
		"valid_until": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"legal_basis": "politiregl-27-2", "audience": map[string]any{"kinds": []string{"nav-state"}},
		"contact":          map[string]any{"unit": "Oslo PD", "phone": "+47 22 66 90 50"},
		"subject_informed": map[string]any{"informed": true},
		"decision": map[string]any{"decided_by": "Seksjonsleder", "decided_by_role": "controller",
			"decided_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "reference": "OPD 26/1"},
	}
	if resp, err := c.JSON(context.Background(), "POST", "/v1/flags", body, nil); err != nil || resp.Status != 201 {
		t.Fatalf("issue flag: %v %+v", err, resp)
	}
}

func rotationStore(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testURL, postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// TestRotationRightAfterStart is the race of a rotation whose pending key
// is recorded after two replicas loaded the chain at start and before
// their first reload. Each replica must load the pending key at that
// first reload, so that checks made after the flags are re-keyed still
// find the flag. (A follower that took the first state it reads as seen,
// without loading it, answered "clear" here until its next reload after
// the activation.)
func TestRotationRightAfterStart(t *testing.T) {
	useFreshDB(t)
	dir := t.TempDir()
	kd := &keys.Dir{Path: dir, Name: "varsel"}
	if err := kd.Open(); err != nil {
		t.Fatal(err)
	}
	police := agency(t, "rot-pd", broker.KindPolice)
	nav := agency(t, "rot-nav", broker.KindNAVState, "rot-office")
	a, baseA := replica(t, dir)
	b, baseB := replica(t, dir)
	person := broker.SyntheticNumber(4242, 40)
	issueFlag(t, baseA, police, person)
	for _, base := range []string{baseA, baseB} {
		if r, resp := check(t, base, nav, "rot-office", person); resp.Status != 200 || r.Result != "precautions" {
			t.Fatalf("before rotation: %d %s", resp.Status, resp.Body)
		}
	}

	// Right after start: a new key version, recorded as pending before
	// either replica has reloaded once.
	if _, err := kd.NewSubjectKey(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rot := &keys.Rotation{Store: rotationStore(t), Source: kd, Pending: func(string) {
		// The replicas' first reload after start (what their ticker does).
		for _, r := range []*app.App{a, b} {
			if err := r.SubjectKeys.Reload(ctx); err != nil {
				t.Errorf("reload: %v", err)
			}
		}
	}}
	res, err := rot.Run(ctx, &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "varsel", Actor: "test", Role: "operator",
		PolicyVersion: a.Policies.Version()})
	if err != nil || res.Flags < 1 || res.Version != "2" {
		t.Fatalf("rotation: %+v %v", res, err)
	}
	// The flags are re-keyed; neither replica has reloaded since.
	for name, base := range map[string]string{"replica A": baseA, "replica B": baseB} {
		if r, resp := check(t, base, nav, "rot-office", person); resp.Status != 200 || r.Result != "precautions" {
			t.Fatalf("%s right after the re-keying: %d %s", name, resp.Status, resp.Body)
		}
	}
	// After their next reload they use the new chain; still found.
	for _, r := range []*app.App{a, b} {
		if err := r.SubjectKeys.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if v := r.SubjectKeys.Keys().Hasher().Version; v != "2" {
			t.Fatalf("active version %q after reload, want 2", v)
		}
	}
	if r, resp := check(t, baseB, nav, "rot-office", person); resp.Status != 200 || r.Result != "precautions" {
		t.Fatalf("after reload: %d %s", resp.Status, resp.Body)
	}
}

// TestStaleSubjectKeys: a replica that sees the chain change and cannot
// load it answers checks with 503 (never "clear") and is not ready, until
// it can.
func TestStaleSubjectKeys(t *testing.T) {
	useFreshDB(t)
	dir := t.TempDir()
	kd := &keys.Dir{Path: dir, Name: "varsel"}
	if err := kd.Open(); err != nil {
		t.Fatal(err)
	}
	police := agency(t, "stale-pd", broker.KindPolice)
	nav := agency(t, "stale-nav", broker.KindNAVState, "stale-office")
	a, base := replica(t, dir)
	person := broker.SyntheticNumber(777, 40)
	issueFlag(t, base, police, person)
	ctx := context.Background()
	db := rotationStore(t)
	chain, err := db.SubjectKeyChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A pending version this replica's key source does not have.
	missing := fmt.Sprint(len(chain) + 1)
	if _, err := db.AddPendingSubjectKey(ctx, missing); err != nil {
		t.Fatal(err)
	}
	if err := a.SubjectKeys.Reload(ctx); err == nil {
		t.Fatal("reload of a chain with a missing key version succeeded")
	}
	_, resp := check(t, base, nav, "stale-office", person)
	if p := resp.Problem(); resp.Status != 503 || p == nil || p.Code != broker.CodeKeysUnavailable {
		t.Fatalf("check with stale keys: %d %s", resp.Status, resp.Body)
	}
	if code, body := readyz(t, base); code != 503 || !strings.Contains(body, `"subject_keys":"unavailable"`) {
		t.Fatalf("readyz with stale keys: %d %s", code, body)
	}
	// The key arrives (written to the directory); the next reload loads it.
	for {
		v, err := kd.NewSubjectKey()
		if err != nil {
			t.Fatal(err)
		}
		if v == missing {
			break
		}
	}
	if err := a.SubjectKeys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if r, resp := check(t, base, nav, "stale-office", person); resp.Status != 200 || r.Result != "precautions" {
		t.Fatalf("after the key arrived: %d %s", resp.Status, resp.Body)
	}
	if code, body := readyz(t, base); code != 200 {
		t.Fatalf("readyz after recovery: %d %s", code, body)
	}
}

func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
