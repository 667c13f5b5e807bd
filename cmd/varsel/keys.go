package main

import (
	"context"
	"fmt"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/app"
	"varsel/broker/keys"
	"varsel/policies"
)

const keysUsage = `Usage: varsel keys SUBCOMMAND [flags]

  rotate-subject [--keys vault|file:DIR] [--grace 10s]
      Re-key every stored subject ref with the newest version of the subject
      key (write that version to Vault KV first; with --keys file:DIR, a new
      subject.N.key file). Every replica first learns of the pending key
      (within --key-reload-interval, 2 s by default) and looks refs up under
      it too; a replica that cannot read the chain for 3 intervals answers
      checks with 503 instead. After the grace period (at least 8 s) all
      flags are re-keyed in one transaction, audited.
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
	grace := fs.Duration("grace", 10*time.Second, "how long replicas get to learn of the pending key before flags are re-keyed (at least 8s)")
	unsafeGrace := fs.Bool("unsafe-grace", false, "allow a --grace below 8s (tests, or replicas run with a shorter --key-reload-interval)")
	operator := fs.String("operator", "", "who rotates, for the audit entry (default: the OS user)")
	if err := parse(fs, args[1:], o); err != nil {
		return handled(err)
	}
	if *grace < keys.MinRotationGrace && !*unsafeGrace {
		return fmt.Errorf("keys rotate-subject: --grace %s is shorter than %s: replicas might answer \"clear\" for flagged people while they catch up", *grace, keys.MinRotationGrace)
	}
	c.Vault = keys.VaultConfigFromEnv(o.getenv)
	src, err := app.OpenKeys(ctx, c.Keys, c.BrokerID, c.Vault, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	db, err := operatorDB(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	actor, err := operatorName(*operator, o.getenv)
	if err != nil {
		return fmt.Errorf("keys rotate-subject: %w", err)
	}
	policyVersion, err := policies.Version()
	if err != nil {
		return err
	}
	rot := &keys.Rotation{Store: db, Source: src, Grace: *grace, Pending: func(version string) {
		fmt.Fprintf(o.stderr, "subject key version %s pending; waiting %s for every replica to see it\n", version, *grace)
	}}
	e := &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: c.BrokerID, Actor: actor,
		Role: "operator", PolicyVersion: policyVersion}
	res, err := rot.Run(ctx, e)
	if err != nil {
		return fmt.Errorf("keys rotate-subject: %v", broker.ErrorMessage(err))
	}
	fmt.Fprintf(o.stdout, "re-keyed %d flags to subject key version %s (audit seq %d)\n", res.Flags, res.Version, res.Audit.Seq)
	return nil
}
