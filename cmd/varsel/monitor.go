package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
	"varsel/audit/monitor"
)

const monitorSynopsis = `audit monitor --url BROKER --checkpoint-key KEYFILE --state FILE [--receipts FILE]
         [--witness-key FILE]... [--witnesses-required K] [--broker-id ID | --origin ORIGIN]`

// runAuditMonitor is varsel audit monitor: one check of the broker's log,
// as an agency runs it (from cron or a systemd timer).
func runAuditMonitor(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("audit monitor", monitorSynopsis, o)
	base := fs.String("url", "", "the broker's base URL, e.g. https://varsel.example (required)")
	keyFile := fs.String("checkpoint-key", "", "file with the broker's checkpoint verifier key (note format, from GET /v1/audit/key; keep your own copy) (required)")
	state := fs.String("state", "", "the monitor's state file: the last checkpoint it accepted (created on the first run) (required)")
	receipts := fs.String("receipts", "", "a file of receipts the agency kept (the \"audit\" objects of the broker's answers, as a JSON array or one per line): each must be included")
	var witnessKeys stringList
	fs.Var(&witnessKeys, "witness-key", "file with a witness's cosignature verifier key (C2SP tlog-cosignature) (repeatable)")
	required := fs.Int("witnesses-required", 0, "how many of the --witness-key witnesses must have cosigned the checkpoint")
	originOf := registerOrigin(fs, &c)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	switch {
	case *base == "" || *keyFile == "" || *state == "":
		return &exitError{code: 2, msg: "audit monitor: --url, --checkpoint-key and --state are required (see varsel audit monitor --help)"}
	case *required < 0 || *required > len(witnessKeys):
		return &exitError{code: 2, msg: fmt.Sprintf("audit monitor: --witnesses-required %d, but %d --witness-key given", *required, len(witnessKeys))}
	}
	b, err := readFile(*keyFile)
	if err != nil {
		return err
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("audit monitor: %s is not a note verifier key: %v", *keyFile, err)
	}
	cfg := monitor.Config{URL: *base, Verifier: verifier, Origin: originOf(), State: *state, WitnessesRequired: *required}
	for _, path := range witnessKeys {
		b, err := readFile(path)
		if err != nil {
			return err
		}
		cfg.WitnessKeys = append(cfg.WitnessKeys, strings.TrimSpace(string(b)))
	}
	if *receipts != "" {
		b, err := readFile(*receipts)
		if err != nil {
			return err
		}
		if cfg.Receipts, err = monitor.ReadReceipts(b); err != nil {
			return fmt.Errorf("audit monitor: %s: %w", *receipts, err)
		}
	}
	res, err := monitor.Run(ctx, cfg)
	var failure *monitor.Failure
	switch {
	case errors.As(err, &failure):
		return fmt.Errorf("audit monitor: FAILED: %w", err)
	case err != nil:
		return &exitError{code: 3, msg: "audit monitor: could not check (nothing was found wrong; try again): " + err.Error()}
	}
	pending := ""
	if res.Pending > 0 {
		pending = fmt.Sprintf(" (%d newer than the checkpoint, checked next run)", res.Pending)
	}
	fmt.Fprintf(o.stdout, "audit monitor: OK: checkpoint at %d (root %s) %s, %d receipts included%s, %d witness cosignatures\n",
		res.Head.Size, shortRoot(res.Head), consistentWith(res.Previous), res.Receipts, pending, res.Cosigners)
	return nil
}

func shortRoot(h audit.SignedHead) string { return fmt.Sprintf("%x", h.Root[:8]) }

func consistentWith(prev int64) string {
	if prev == 0 {
		return "accepted as the first seen"
	}
	return fmt.Sprintf("consistent with %d seen before", prev)
}
