package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/audit/witness"
)

const auditUsage = `Usage: varsel audit SUBCOMMAND [flags]

  verify --checkpoint-key KEYFILE [--broker-id ID | --origin ORIGIN] [--file EXPORT]
         [--trusted-checkpoint FILE]... [--max-unsigned-age 2m]
         [--witness-key VKEYFILE... [--witnesses-required K]]
      Recompute the hash chain and check every signed checkpoint: of the
      database, or (--file) of an export, offline. KEYFILE holds the note
      verifier key (as served by GET /v1/audit/key); it is required. Every
      checkpoint must be signed by it for the origin ORIGIN, by default
      BROKER-ID/audit ("varsel/audit"), never taken from the file. An export
      must be in its exact form line by line, its header must agree with its
      lines, and signed checkpoints must name both its ends.
      With --witness-key (the database only), the newest checkpoint must
      also carry valid C2SP tlog-cosignatures from at least K of those
      witnesses (default: all of them): each cosigned it only because it
      extends what that witness saw before.
      Exit 0 when everything holds; otherwise exit 1 naming what failed (the
      first bad seq, the line, the header field, or the witnesses).
  verify --no-signatures [--file EXPORT]
      Check the chain only, without the key: exit 2 even when it holds,
      saying that signatures were not checked (a chain alone can be
      recomputed by whoever rewrote the log).
  monitor --url BROKER --checkpoint-key KEYFILE --state FILE [--receipts FILE]
          [--witness-key FILE]... [--witnesses-required K]
      Run by an agency: fetch the newest checkpoint, check its signature,
      check that it is consistent with the last one seen (kept in FILE), and
      that every receipt kept (--receipts) is included. Exit 0 with one line
      when all holds; exit 1 with one line naming what failed (a bad
      signature, a smaller tree, a fork, an inconsistent root, a missing
      receipt, too few witness cosignatures); the state is then unchanged.
      Exit 3 when it could not check (the broker unreachable or answering
      5xx). Receipts newer than the checkpoint are checked on a later run.
  export --from TIME --to TIME [--out FILE] [--broker-id ID | --origin ORIGIN]
      Write the entries of a period as JSON Lines, widened to the signed
      checkpoints around it, with those checkpoints, for a supervisory
      authority to verify offline with varsel audit verify --file.
`

// exitError is a failure with its own exit code and message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// ExitCode is the process's exit code for this error.
func (e *exitError) ExitCode() int { return e.code }

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
	case "monitor":
		return runAuditMonitor(ctx, args[1:], o)
	}
	return fmt.Errorf("audit: unknown subcommand %q (see varsel audit --help)", args[0])
}

// registerOrigin adds --broker-id and --origin; the returned function gives
// the origin to use: --origin, or BROKER-ID/audit.
func registerOrigin(fs *flag.FlagSet, c *Config) func() string {
	fs.StringVar(&c.BrokerID, "broker-id", c.BrokerID, "the broker's id: checkpoints' origin is BROKER-ID/audit")
	origin := fs.String("origin", "", `the checkpoints' origin line (default: BROKER-ID/audit, "varsel/audit")`)
	return func() string {
		if *origin != "" {
			return *origin
		}
		return audit.LogOrigin(c.BrokerID)
	}
}

func runAuditVerify(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("audit verify", "audit verify --checkpoint-key KEYFILE [--broker-id ID | --origin ORIGIN] [--file EXPORT] | --no-signatures", o)
	c.registerDatabase(fs)
	keyFile := fs.String("checkpoint-key", "", "file with the checkpoint verifier key (note format, from GET /v1/audit/key); required unless --no-signatures")
	noSigs := fs.Bool("no-signatures", false, "check the chain without the key; exits 2 even when it holds, since signatures were not checked")
	originOf := registerOrigin(fs, &c)
	file := fs.String("file", "", "verify this export file instead of the database (no database needed)")
	var trusted stringList
	fs.Var(&trusted, "trusted-checkpoint", "a checkpoint note saved earlier outside the database (from GET /v1/audit/checkpoint); the chain must still hold it (repeatable)")
	maxUnsigned := fs.Duration("max-unsigned-age", 2*time.Minute, "fail when the entries after the newest checkpoint go back further than this (0: do not check)")
	var witnessKeyFiles stringList
	fs.Var(&witnessKeyFiles, "witness-key", "a file with a witness's cosigner key (vkey, from varsel witness keygen); the newest checkpoint must carry its cosignature (repeatable)")
	witnessesRequired := fs.Int("witnesses-required", 0, "how many of the --witness-key witnesses must have cosigned the newest checkpoint (0: all of them)")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	origin := originOf()
	var witnessKeys []string
	for _, path := range witnessKeyFiles {
		b, err := readFile(path)
		if err != nil {
			return err
		}
		if _, err := witness.NewVerifier(string(b)); err != nil {
			return fmt.Errorf("audit verify: --witness-key %s: %v", path, err)
		}
		witnessKeys = append(witnessKeys, strings.TrimSpace(string(b)))
	}
	required := *witnessesRequired
	switch {
	case required < 0 || required > len(witnessKeys):
		return fmt.Errorf("audit verify: --witnesses-required %d needs at least that many --witness-key files (have %d)", required, len(witnessKeys))
	case len(witnessKeys) > 0 && (*file != "" || *noSigs):
		return fmt.Errorf("audit verify: --witness-key checks the database's newest checkpoint: not with --file or --no-signatures")
	case required == 0:
		required = len(witnessKeys)
	}
	var verifier note.Verifier
	switch {
	case *keyFile != "" && *noSigs:
		return fmt.Errorf("audit verify: --checkpoint-key and --no-signatures exclude each other")
	case *keyFile == "" && !*noSigs:
		return fmt.Errorf("audit verify: --checkpoint-key KEYFILE is required (the verifier key from GET /v1/audit/key); --no-signatures checks the chain alone and exits 2")
	case *noSigs && len(trusted) > 0:
		return fmt.Errorf("audit verify: --trusted-checkpoint needs --checkpoint-key")
	case origin == audit.LogOrigin(""):
		return fmt.Errorf("audit verify: --broker-id must not be empty")
	case *keyFile != "":
		b, err := readFile(*keyFile)
		if err != nil {
			return err
		}
		if verifier, err = note.NewVerifier(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("audit verify: %s is not a note verifier key: %v", *keyFile, err)
		}
	}
	var extra []audit.Checkpoint
	for _, path := range trusted {
		b, err := readFile(path)
		if err != nil {
			return err
		}
		head, err := audit.OpenCheckpoint(string(b), verifier)
		if err != nil {
			return fmt.Errorf("audit verify: trusted checkpoint %s: %w", path, err)
		}
		if head.Origin != origin {
			return fmt.Errorf("audit verify: trusted checkpoint %s is signed for origin %q, not %q", path, head.Origin, origin)
		}
		extra = append(extra, audit.Checkpoint{Count: head.Size, Hash: head.Chain, Note: string(b), External: true})
	}
	start := time.Now()
	var rep *audit.Report
	if *file != "" {
		f := &audit.File{Path: *file}
		if err := f.Open(); err != nil {
			return fmt.Errorf("audit verify: FAILED: %s: %w", *file, err)
		}
		var err error
		if rep, err = audit.VerifyFile(ctx, f, verifier, origin, extra); err != nil {
			return fmt.Errorf("audit verify: FAILED: %s: %w", *file, err)
		}
	} else {
		db, err := operatorDB(ctx, c)
		if err != nil {
			return err
		}
		defer db.Close()
		var src audit.Source = &auditpg.Store{Pool: db.Pool}
		if len(extra) > 0 {
			src = audit.WithCheckpoints(src, extra)
		}
		if rep, err = audit.Verify(ctx, src, verifier, origin); err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if rep.OK() {
			// The stored tree (what the tiles and proofs are built from)
			// must hash to the entries too.
			if _, err := (&auditpg.Store{Pool: db.Pool}).CheckStoredTree(ctx); err != nil {
				return fmt.Errorf("audit verify: FAILED: the stored Merkle tree: %w", err)
			}
		}
	}
	took := time.Since(start)
	if !rep.OK() {
		return fmt.Errorf("audit verify: FAILED at seq %d: %s", rep.FirstBad, rep.Problem)
	}
	if *file == "" && rep.Unsigned != "" && verifier != nil {
		// Entries no checkpoint covers: fine when they are seconds old, but
		// old unsigned entries in the database mean checkpoints went missing.
		if ts, err := time.Parse(audit.TimeFormat, rep.Unsigned); err == nil && *maxUnsigned > 0 && start.Sub(ts) > *maxUnsigned {
			return fmt.Errorf("audit verify: FAILED: entries since %s are covered by no checkpoint: checkpoints were deleted, or the broker stopped without signing one (start it, or pass --max-unsigned-age 0)", rep.Unsigned)
		}
	}
	var witnessed string
	if len(witnessKeys) > 0 {
		var err error
		if witnessed, err = verifyWitnessed(ctx, c, witnessKeys, required); err != nil {
			return fmt.Errorf("audit verify: FAILED: %w", err)
		}
	}
	rate := float64(rep.Entries) / took.Seconds()
	if verifier == nil {
		fmt.Fprintf(o.stdout, "chain ok: %d entries, seqs %d..%d, head %s; %.0f entries/s; signatures NOT checked\n",
			rep.Entries, rep.First, rep.Head.Seq, rep.Head.Hash, rate)
		return &exitError{code: 2, msg: "audit verify: signatures were not checked (--no-signatures): the chain alone does not show the log is the broker's"}
	}
	fmt.Fprintf(o.stdout, "ok: %d entries, seqs %d..%d, head %s; %d checkpoints of %s (signatures checked); %.0f entries/s\n",
		rep.Entries, rep.First, rep.Head.Seq, rep.Head.Hash, rep.Checkpoints, origin, rate)
	if witnessed != "" {
		fmt.Fprintln(o.stdout, witnessed)
	}
	return nil
}

// verifyWitnessed checks that the newest checkpoint in the database (whose
// signature audit.Verify checked) carries at least required valid
// cosignatures from witnessKeys.
func verifyWitnessed(ctx context.Context, c Config, witnessKeys []string, required int) (string, error) {
	db, err := operatorDB(ctx, c)
	if err != nil {
		return "", err
	}
	defer db.Close()
	cp, err := (&auditpg.Store{Pool: db.Pool}).LatestCheckpoint(ctx)
	if err != nil {
		return "", err
	}
	if cp == nil {
		return "", fmt.Errorf("no checkpoint for the witnesses to have cosigned")
	}
	n, err := witness.VerifyCosignatures(cp.Note, witnessKeys, required)
	if err != nil {
		return "", fmt.Errorf("the newest checkpoint (%d): %w", cp.Count, err)
	}
	return fmt.Sprintf("witnessed: %d of %d witnesses cosigned the newest checkpoint (%d); %d required", n, len(witnessKeys), cp.Count, required), nil
}

func runAuditExport(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("audit export", "audit export --from TIME --to TIME [--out FILE] [--broker-id ID | --origin ORIGIN]", o)
	c.registerDatabase(fs)
	fromS := fs.String("from", "", "start of the period, RFC 3339 (inclusive)")
	toS := fs.String("to", "", "end of the period, RFC 3339 (exclusive)")
	out := fs.String("out", "", "file to write (default: standard output)")
	originOf := registerOrigin(fs, &c)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	origin := originOf()
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
	var inRange []audit.Checkpoint
	counts := []int64{}
	for _, cp := range cps {
		if cp.Count >= start-1 && cp.Count <= end && cp.Count > 0 {
			inRange = append(inRange, cp)
			counts = append(counts, cp.Count)
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
	// The header states what follows; audit verify --file checks it.
	x, err := audit.NewExportWriter(w, audit.ExportHeader{Origin: origin, FirstSeq: start, LastSeq: end,
		Entries: end - start + 1, Checkpoints: counts, From: from.UTC(), To: to.UTC(), CreatedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	n := int64(0)
	if err := store.EntriesRange(ctx, start-1, end, func(e *audit.Entry) error { n++; return x.Entry(e) }); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	for _, cp := range inRange {
		if err := x.Checkpoint(cp); err != nil {
			return err
		}
	}
	if err := x.Close(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if n != end-start+1 {
		return fmt.Errorf("audit export: the log has %d entries in %d..%d, not %d: entries are missing (run varsel audit verify); the file will not verify", n, start, end, end-start+1)
	}
	if !endCovered {
		fmt.Fprintf(o.stderr, "warning: entries after the last checkpoint are not yet covered by a signature; export again after the next checkpoint\n")
	}
	fmt.Fprintf(o.stderr, "exported entries %d..%d (%d) for %s..%s\n", start, end, n, from.Format(time.RFC3339), to.Format(time.RFC3339))
	return nil
}
