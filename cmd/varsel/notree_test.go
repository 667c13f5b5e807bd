package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"varsel/audit"
	"varsel/broker/app"
)

// --bench-without-tree is for benchmarks only: it is refused without
// --test-subjects, and --help says what it is for.
func TestBenchWithoutTreeRefusedInProduction(t *testing.T) {
	_, err := cli(t, "serve", "--listen", "127.0.0.1:0", "--keys", "file:"+t.TempDir(), "--bench-without-tree")
	if err == nil || !strings.Contains(err.Error(), "--test-subjects") {
		t.Fatalf("serve --bench-without-tree without --test-subjects: %v", err)
	}
	out, err := cli(t, "serve", "--help")
	if err != nil || !strings.Contains(out, "-bench-without-tree") || !strings.Contains(out, "benchmark only") {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	// The app refuses it too, whoever fills its Config.
	c := DefaultConfig()
	c.DatabaseURL, c.Listen, c.Keys, c.BenchWithoutTree = testURL, "127.0.0.1:0", "file:"+t.TempDir(), true
	if err := app.New(c.app(), nil).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "benchmarks only") {
		t.Fatalf("app without the tree, without test subjects: %v", err)
	}
}

// A broker run without the tree answers and audits checks but neither
// grows the tree nor signs a checkpoint; the next broker with the tree
// catches it up, signs, and the log verifies, its root the tree's.
func TestBenchWithoutTreeThenCatchUp(t *testing.T) {
	db := freshDB(t)
	nav := registerOn(t, db, "nav-stat", "nav-state", "nav-grorud")
	ctx := context.Background()

	c := DefaultConfig()
	c.DatabaseURL, c.Listen, c.Keys = db, "127.0.0.1:0", "file:"+t.TempDir()
	c.TestSubjects, c.CheckFloor, c.BenchWithoutTree = true, 0, true
	c.CheckpointInterval = 50 * time.Millisecond
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	off := app.New(c.app(), nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- off.Run(runCtx) }()
	select {
	case <-off.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("broker without the tree did not start: %v", err)
	}
	w := &world{t: t, db: db, base: "http://" + off.Addr().String(), navState: nav}
	for range 20 {
		res, resp := w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting"})
		if resp.Status != 200 || res.Audit.Seq == 0 || res.Audit.TreeSize != 0 {
			t.Fatalf("check without the tree: %d %+v", resp.Status, res.Audit)
		}
	}
	time.Sleep(200 * time.Millisecond) // several checkpoint intervals
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("broker without the tree stopped with %v", err)
	}
	if n := w.count(`SELECT count(*) FROM audit_checkpoints`); n != 0 {
		t.Fatalf("%d checkpoints signed without the tree", n)
	}
	if _, err := off.AuditStore.Head(ctx); err == nil {
		t.Fatal("the tree covers the log although it was not advanced")
	}

	keys := c.Keys
	on, base := startMain(t, db, func(c *Config) { c.Keys = keys })
	w.base = base
	res, resp := w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting"})
	if resp.Status != 200 || res.Audit.TreeSize != res.Audit.Seq {
		t.Fatalf("check with the tree again: %d %+v", resp.Status, res.Audit)
	}
	if signed, err := on.Checkpointer.Checkpoint(ctx); err != nil || !signed {
		t.Fatalf("checkpoint after the catch-up: %v %v", signed, err)
	}
	head, err := on.AuditStore.Head(ctx)
	if err != nil || head.Size != res.Audit.Seq {
		t.Fatalf("tree head %+v, %v", head, err)
	}
	rep, err := audit.Verify(ctx, on.AuditStore, on.Checkpointer.Verifier, "varsel/audit")
	if err != nil || !rep.OK() || rep.Checkpoints != 1 || !bytes.Equal(rep.Root, head.Root) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
