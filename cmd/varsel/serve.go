package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"varsel/broker/app"
	"varsel/broker/keys"
	"varsel/schema"
)

func runServe(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("serve", "serve [flags]", o)
	c.register(fs)
	base := fs.Usage
	fs.Usage = func() {
		base()
		fmt.Fprint(o.stdout, `
With --keys vault the broker reads VAULT_ADDR and logs in with VAULT_TOKEN, or
AppRole (VARSEL_VAULT_ROLE_ID, VARSEL_VAULT_SECRET_ID), or Kubernetes
(VARSEL_VAULT_K8S_ROLE); VARSEL_VAULT_SUBJECT_KEY (default
secret/data/varsel/subject-key) and VARSEL_VAULT_TRANSIT_KEY (default
transit/keys/varsel-checkpoint) name the keys. See the README.
`)
	}
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	c.Vault = keys.VaultConfigFromEnv(o.getenv)
	if err := c.validate(); err != nil {
		return err
	}
	log, err := newLogger(c.LogFormat, c.LogLevel)
	if err != nil {
		return err
	}
	log.Info("varsel starting", "version", version, "config", c)
	tuneGC(o.getenv)
	return app.New(c.app(), log).Run(ctx)
}

func runMigrate(ctx context.Context, args []string, o cmdIO) error {
	c := DefaultConfig()
	fs := flagSet("migrate", "migrate [--database-url URL]", o)
	c.registerDatabase(fs)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if c.DatabaseURL == "" {
		return errNoDatabase
	}
	v, err := schema.Migrate(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "database at schema version %d\n", v)
	return nil
}

// tuneGC trades memory for CPU on the request path: the broker's live heap
// is small (tens of MiB), so collecting at 4× it instead of 2× halves the GC
// work while a soft limit keeps the process well under its memory budget.
// GOGC and GOMEMLIMIT in the environment win.
func tuneGC(getenv env) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}
