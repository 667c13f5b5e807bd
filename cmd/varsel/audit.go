package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker/postgres"
)

const auditUsage = `Usage: varsel audit SUBCOMMAND [flags]

  verify [--checkpoint-key KEYFILE] [--origin ORIGIN]
      Recompute the whole hash chain and check every signed checkpoint.
      Exit 0 when everything holds; otherwise exit 1 naming the first bad seq.
      KEYFILE holds the note verifier key (as served by GET /v1/audit/key).
`

func runAudit(ctx context.Context, args []string, o cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(o.stdout, auditUsage)
		return nil
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(ctx, args[1:], o)
	}
	return fmt.Errorf("audit: unknown subcommand %q (see varsel audit --help)", args[0])
}

func runAuditVerify(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("audit verify", "audit verify [--checkpoint-key KEYFILE] [--origin ORIGIN]", o)
	c.registerDatabase(fs)
	keyFile := fs.String("checkpoint-key", "", "file with the checkpoint verifier key (note format); without it, signatures are not checked")
	origin := fs.String("origin", "", `the checkpoints' origin line, e.g. "varsel/audit" (default: not checked)`)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	var verifier note.Verifier
	if *keyFile != "" {
		b, err := readFile(*keyFile)
		if err != nil {
			return err
		}
		if verifier, err = note.NewVerifier(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("audit verify: %s is not a note verifier key: %v", *keyFile, err)
		}
	}
	if c.DatabaseURL == "" {
		return fmt.Errorf("no database: set --database-url or VARSEL_DATABASE_URL")
	}
	db, err := postgres.Open(ctx, c.DatabaseURL, postgres.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	rep, err := audit.Verify(ctx, &auditpg.Store{Pool: db.Pool}, verifier, *origin)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	took := time.Since(start)
	if !rep.OK() {
		return fmt.Errorf("audit verify: FAILED at seq %d: %s", rep.FirstBad, rep.Problem)
	}
	rate := float64(rep.Entries) / took.Seconds()
	sig := "signatures checked"
	if verifier == nil {
		sig = "signatures NOT checked: no --checkpoint-key"
	}
	fmt.Fprintf(o.stdout, "ok: %d entries, head %d %s; %d checkpoints (%s); %.0f entries/s\n",
		rep.Entries, rep.Head.Seq, rep.Head.Hash, rep.Checkpoints, sig, rate)
	return nil
}
