package faults_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"varsel/broker/faults"
	"varsel/schema/schematest"
)

// TestFaultsShort is the short run of the fault harness that make test
// runs: a primary with a synchronous standby, three replicas on the
// multi-host URL, a load over them, and two faults: kill -9 of a replica
// and a Postgres failover (kill -9 of the primary, pg_ctl promote). Every
// acknowledged entry must be in the log, no seq twice or missing, audit
// verify must pass and every replica must serve again. `make test-faults`
// (varsel-bench faults) is the full run.
func TestFaultsShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL servers and three brokers")
	}
	if _, err := schematest.ServerURL(); err != nil { // installs Postgres when it is missing
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "varsel")
	build := exec.Command("go", "build", "-o", bin, "./cmd/varsel")
	build.Dir = schematest.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build varsel: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := faults.Run(ctx, faults.Config{
		Binary: bin, RepoDir: schematest.RepoRoot(), Faults: []string{faults.FaultKill9, faults.FaultFailover},
		Rate: 80, Workers: 8, Before: 1500 * time.Millisecond, Hold: time.Second, After: time.Second,
		Command: "go test ./broker/faults", Log: testLog{t}, Keep: os.Getenv("VARSEL_FAULTS_KEEP") != "",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", faults.Markdown(res))
	for _, row := range res.Rows {
		if !row.Pass() {
			t.Errorf("%s: %+v", row.Fault, row)
		}
		if row.Other > 0 {
			t.Errorf("%s: answers other than 2xx, 503 or a connection error: %v", row.Fault, row.Codes)
		}
		if row.Recover > 30 {
			t.Errorf("%s: the replicas took %.1f s to serve again", row.Fault, row.Recover)
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }
