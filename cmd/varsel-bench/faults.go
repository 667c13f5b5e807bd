package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"varsel/broker/faults"
	"varsel/schema/schematest"
)

const faultsHelp = `Usage: varsel-bench faults [flags]

The fault harness. It starts, on this machine, a PostgreSQL primary with a
synchronous streaming standby (pg_basebackup, synchronous_standby_names,
synchronous_commit = on; Debian's server under /usr/lib/postgresql), three
"varsel serve" replicas on one multi-host URL (target_session_attrs=
read-write) and, with --vault, a Vault with file storage holding the keys
(--keys vault). Then, under a steady load of signed checks, flag writes,
warnings, acknowledgements and replays of accepted tokens spread round
robin over the replicas, it injects one fault at a time:

  kill9     kill -9 of one replica, restarted
  sigterm   SIGTERM of one replica (graceful drain), restarted
  rolling   all three replicas restarted one by one
  clock     one replica restarted with its clock 30 s ahead, then back
  vault     the Vault server stopped, then started and unsealed
  freeze    the Postgres primary stopped (SIGSTOP) for 10 s, then SIGCONT
  walfull   the primary's WAL volume (a tmpfs, as root) filled, then freed
  failover  the primary killed, the standby promoted (pg_ctl promote)

After each it checks that every 2xx answer is in the log by seq and hash
(and token id), that no seq was claimed twice and none is missing, that
"varsel audit verify" passes, that no token was accepted twice, and how long
the replicas took to serve again. It exits 1 when any of that fails.
As root it needs the "postgres" system user (Debian's package makes it).

Example, what make test-faults runs:

  make build
  bin/varsel-bench faults --vault "$(deploy/vault/build.sh)" --markdown docs/reliability.md

Flags:
`

func runFaults(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("varsel-bench faults", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	varselBin := fs.String("varsel", "", "the varsel binary to run as the replicas (default: varsel next to this executable)")
	vault := fs.String("vault", "", "a vault binary (deploy/vault/build.sh): keys from Vault, and the vault fault (default: none, file keys)")
	only := fs.String("faults", strings.Join(faults.AllFaults, ","), "the faults to inject, in order")
	rate := fs.Int("rate", 150, "requests per second over all replicas")
	workers := fs.Int("workers", 16, "concurrent requests at most")
	before := fs.Duration("before", 3*time.Second, "steady load before each fault")
	hold := fs.Duration("hold", 3*time.Second, "how long a fault lasts before it is repaired")
	freeze := fs.Duration("freeze", 10*time.Second, "how long the primary stays frozen")
	after := fs.Duration("after", 3*time.Second, "load after every replica serves again")
	out := fs.String("out", "", "JSON result file")
	md := fs.String("markdown", "", "rewrite the fault section of this Markdown file (e.g. docs/reliability.md)")
	section := fs.String("section", "full", "name of the Markdown section to write")
	keep := fs.Bool("keep", false, "keep the working directory (logs, data) afterwards")
	usage := func() {
		fmt.Fprint(stdout, faultsHelp)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := parse(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return nil
		}
		return err
	}
	binary, err := findVarsel(*varselBin)
	if err != nil {
		return err
	}
	command := "varsel-bench faults " + strings.Join(args, " ")
	if *vault != "" { // the path is this machine's: the command names where it comes from
		command = strings.Replace(command, *vault, `"$(deploy/vault/build.sh)"`, 1)
	}
	res, err := faults.Run(ctx, faults.Config{Binary: binary, RepoDir: schematest.RepoRoot(), VaultBin: *vault,
		Faults: strings.Split(*only, ","), Rate: *rate, Workers: *workers, Before: *before, Hold: *hold, Freeze: *freeze,
		After: *after, Command: "bin/" + strings.TrimSpace(command), Log: stderr, Keep: *keep})
	if res != nil {
		fmt.Fprint(stdout, faults.Markdown(res))
		if *out != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(*out, append(b, '\n'), 0o644); werr != nil {
				return werr
			}
		}
		if *md != "" && err == nil {
			if werr := faults.UpdateMarkdown(*md, *section, res); werr != nil {
				return werr
			}
			fmt.Fprintf(stderr, "updated %s\n", filepath.Clean(*md))
		}
	}
	if err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	if !res.Pass() {
		return faults.ErrFailed
	}
	return nil
}
