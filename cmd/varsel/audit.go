package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
)

const auditUsage = `Usage: varsel audit SUBCOMMAND [flags]

  verify [--checkpoint-key KEYFILE] [--origin ORIGIN] [--file EXPORT]
      Recompute the hash chain and check every signed checkpoint: of the
      database, or (--file) of an export, offline. Exit 0 when everything
      holds; otherwise exit 1 naming the first bad seq. KEYFILE holds the
      note verifier key (as served by GET /v1/audit/key).
  export --from TIME --to TIME [--out FILE] [--origin ORIGIN]
      Write the entries of a period as JSON Lines, widened to the signed
      checkpoints around it, with those checkpoints, for a supervisory
      authority to verify offline with varsel audit verify --file.
`

func runAudit(ctx context.Context, args []string, o cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(o.stdout, auditUsage)
		return nil
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(ctx, args[1:], o)
	case "export":
		return runAuditExport(ctx, args[1:], o)
	}
	return fmt.Errorf("audit: unknown subcommand %q (see varsel audit --help)", args[0])
}

func runAuditVerify(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("audit verify", "audit verify [--checkpoint-key KEYFILE] [--origin ORIGIN]", o)
	c.registerDatabase(fs)
	keyFile := fs.String("checkpoint-key", "", "file with the checkpoint verifier key (note format); without it, signatures are not checked")
	origin := fs.String("origin", "", `the checkpoints' origin line, e.g. "varsel/audit" (default: not checked)`)
	file := fs.String("file", "", "verify this export file instead of the database (no database needed)")
	var trusted stringList
	fs.Var(&trusted, "trusted-checkpoint", "a checkpoint note saved earlier outside the database (from GET /v1/audit/checkpoint); the chain must still hold it (repeatable)")
	maxUnsigned := fs.Duration("max-unsigned-age", 2*time.Minute, "fail when the entries after the newest checkpoint go back further than this (0: do not check)")
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
	var src audit.Source
	if *file != "" {
		f := &audit.File{Path: *file}
		if err := f.Open(); err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if *origin == "" {
			*origin = f.Header.Origin
		}
		src = f
	} else {
		db, err := operatorDB(ctx, c)
		if err != nil {
			return err
		}
		defer db.Close()
		src = &auditpg.Store{Pool: db.Pool}
	}
	if len(trusted) > 0 {
		if verifier == nil {
			return fmt.Errorf("audit verify: --trusted-checkpoint needs --checkpoint-key")
		}
		var extra []audit.Checkpoint
		for _, path := range trusted {
			b, err := readFile(path)
			if err != nil {
				return err
			}
			_, head, err := audit.OpenCheckpoint(string(b), verifier)
			if err != nil {
				return fmt.Errorf("audit verify: trusted checkpoint %s: %w", path, err)
			}
			extra = append(extra, audit.Checkpoint{Count: head.Seq, Hash: head.Hash, Note: string(b), External: true})
		}
		src = audit.WithCheckpoints(src, extra)
	}
	start := time.Now()
	rep, err := audit.Verify(ctx, src, verifier, *origin)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	took := time.Since(start)
	if !rep.OK() {
		return fmt.Errorf("audit verify: FAILED at seq %d: %s", rep.FirstBad, rep.Problem)
	}
	if rep.Unsigned != "" && verifier != nil {
		// Entries no checkpoint covers: fine when they are seconds old, but an
		// export must be anchored at both ends, and old unsigned entries in
		// the database mean checkpoints went missing.
		if *file != "" {
			return fmt.Errorf("audit verify: FAILED at seq %d: the export's last entries are not covered by a signed checkpoint", rep.Head.Seq)
		}
		if ts, err := time.Parse(audit.TimeFormat, rep.Unsigned); err == nil && *maxUnsigned > 0 && start.Sub(ts) > *maxUnsigned {
			return fmt.Errorf("audit verify: FAILED: entries since %s are covered by no checkpoint: checkpoints were deleted, or the broker stopped without signing one (start it, or pass --max-unsigned-age 0)", rep.Unsigned)
		}
	}
	if *file != "" && rep.First > 1 && verifier != nil && !hasCheckpointAt(ctx, src, rep.First-1) {
		return fmt.Errorf("audit verify: FAILED at seq %d: the export's first prev_hash is not named by a signed checkpoint", rep.First)
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

func runAuditExport(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("audit export", "audit export --from TIME --to TIME [--out FILE] [--origin ORIGIN]", o)
	c.registerDatabase(fs)
	fromS := fs.String("from", "", "start of the period, RFC 3339 (inclusive)")
	toS := fs.String("to", "", "end of the period, RFC 3339 (exclusive)")
	out := fs.String("out", "", "file to write (default: standard output)")
	origin := fs.String("origin", "varsel/audit", "the checkpoints' origin line")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	from, err1 := time.Parse(time.RFC3339, *fromS)
	to, err2 := time.Parse(time.RFC3339, *toS)
	if err1 != nil || err2 != nil || !to.After(from) {
		return fmt.Errorf("audit export: --from and --to must be RFC 3339 times, to after from")
	}
	db, err := operatorDB(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	store := &auditpg.Store{Pool: db.Pool}
	first, last, err := store.SeqRange(ctx, from, to)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if first == 0 {
		return fmt.Errorf("audit export: no entries between %s and %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	cps, err := store.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	// Widen to the checkpoints around the period: the one before anchors the
	// first prev_hash, the one after the last hash.
	start, end := int64(1), last
	var endCovered bool
	for _, cp := range cps {
		if cp.Count < first && cp.Count+1 > start {
			start = cp.Count + 1
		}
		if cp.Count >= last && (!endCovered || cp.Count < end) {
			end, endCovered = cp.Count, true
		}
	}
	w := o.stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		defer f.Close()
		w = f
	}
	x, err := audit.NewExportWriter(w, audit.ExportHeader{Origin: *origin, FirstSeq: start, LastSeq: end,
		From: from.UTC(), To: to.UTC(), CreatedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	n := 0
	if err := store.EntriesRange(ctx, start-1, end, func(e *audit.Entry) error { n++; return x.Entry(e) }); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	for _, cp := range cps {
		if cp.Count >= start-1 && cp.Count <= end && cp.Count > 0 {
			if err := x.Checkpoint(cp); err != nil {
				return err
			}
		}
	}
	if err := x.Close(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if !endCovered {
		fmt.Fprintf(o.stderr, "warning: entries after the last checkpoint are not yet covered by a signature; export again after the next checkpoint\n")
	}
	fmt.Fprintf(o.stderr, "exported entries %d..%d (%d) for %s..%s\n", start, end, n, from.Format(time.RFC3339), to.Format(time.RFC3339))
	return nil
}

func hasCheckpointAt(ctx context.Context, src audit.Source, count int64) bool {
	cps, err := src.Checkpoints(ctx)
	if err != nil {
		return false
	}
	for _, cp := range cps {
		if cp.Count == count {
			return true
		}
	}
	return false
}
