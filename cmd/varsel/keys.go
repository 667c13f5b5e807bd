package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"varsel/audit"
	"varsel/broker/keys"
	"varsel/policies"
)

const keysUsage = `Usage: varsel keys SUBCOMMAND [flags]

  rotate-subject [--keys vault|file:DIR] [--grace 10s]
      Re-key every stored subject ref with the newest version of the subject
      key (write that version to Vault KV first). Every replica first learns
      of the pending key (within 2 s) and looks refs up under it too; after
      the grace period all flags are re-keyed in one transaction, audited.
      Audit entries keep the refs they were written with; searches and
      reports look under every key version, so nothing is lost.
`

func runKeys(ctx context.Context, args []string, o cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(o.stdout, keysUsage)
		return nil
	}
	if args[0] != "rotate-subject" {
		return fmt.Errorf("keys: unknown subcommand %q (see varsel keys --help)", args[0])
	}
	c := DefaultConfig()
	fs := flagSet("keys rotate-subject", "keys rotate-subject [--keys vault|file:DIR] [--grace 10s]", o)
	c.registerDatabase(fs)
	fs.StringVar(&c.Keys, "keys", c.Keys, "key source: file:DIR or vault (VAULT_ADDR, VAULT_TOKEN, ...)")
	fs.StringVar(&c.BrokerID, "broker-id", c.BrokerID, "the broker's id")
	grace := fs.Duration("grace", 10*time.Second, "how long replicas get to learn of the pending key before flags are re-keyed")
	if err := parse(fs, args[1:], o); err != nil {
		return handled(err)
	}
	c.Vault = keys.VaultConfigFromEnv(o.getenv)
	src, err := openKeys(ctx, c, nil)
	if err != nil {
		return err
	}
	db, err := operatorDB(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	chain, err := db.SubjectKeyChain(ctx)
	if err != nil {
		return err
	}
	if len(chain) == 0 {
		return fmt.Errorf("keys rotate-subject: no subject key chain yet: start the broker once first")
	}
	newKey, version, err := src.SubjectKey(ctx, "")
	if err != nil {
		return err
	}
	last := chain[len(chain)-1]
	position := 0
	switch {
	case last.State == "pending" && last.Version == version:
		position = last.Position // resume an interrupted rotation
	case last.Version == version:
		return fmt.Errorf("keys rotate-subject: version %s is already in use: write a new version of the subject key first", version)
	default:
		if position, err = db.AddPendingSubjectKey(ctx, version); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.stderr, "subject key version %s pending; waiting %s for every replica to see it\n", version, *grace)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*grace):
	}
	pol, err := policies.New(ctx)
	if err != nil {
		return err
	}
	operator := os.Getenv("USER")
	if operator == "" {
		operator = "operator"
	}
	e := &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: c.BrokerID, Actor: operator, Role: "operator",
		Action: "keys.rotate-subject", Decision: audit.Allow, PolicyVersion: pol.Version(),
		Reasons: []string{"subject_key_version:" + version}}
	n, err := db.RekeySubjects(ctx, position, newKey, e)
	if err != nil {
		return fmt.Errorf("keys rotate-subject: %w", err)
	}
	fmt.Fprintf(o.stdout, "re-keyed %d flags to subject key version %s (audit seq %d)\n", n, version, e.Seq)
	return nil
}
