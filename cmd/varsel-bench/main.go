// Command varsel-bench is Varsel's load tool (package broker/bench): it
// seeds a fresh database, starts a varsel binary as the broker under test
// and drives POST /v1/checks, with reference figures measured in the same
// run. It is a separate binary so that the production varsel neither
// carries the tool nor builds OPA at run time. Run "varsel-bench --help".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"varsel/broker/bench"
	"varsel/schema/schematest"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "varsel-bench: "+strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

const help = `Usage: varsel-bench [flags]
       varsel-bench faults [flags]   (the fault harness: varsel-bench faults --help)
       varsel-bench stack-server --listen ADDR --keys FILE [--verify]
                                     (the stack reference's server; the tool starts it)

varsel-bench load-tests the Varsel broker end to end. It creates a fresh
database on a PostgreSQL server, seeds it with flags and audit entries, starts
a varsel binary as the broker ("varsel serve" on 127.0.0.1, a separate
process), and drives POST /v1/checks from many connections. Every request's
token (a fresh jti each) is signed, on all cores, before the measured window,
so that in the window the load generator spends its CPU on HTTP alone. It
reports checks per second, latency percentiles, the CPU per request of the
generator, the broker and PostgreSQL (and what other processes used), the
broker's peak RSS, and whether every answer was audited, next to references
measured in the same run on the same machine: the cost floor (the CPU of one
bare P-256 ECDSA and one Ed25519 verification on one core), the audit writer
alone (the group-commit ceiling), a stock OPA server evaluating the same
policy over loopback HTTP, and the stack reference: an echo server (a
process of its own) that answers POST /v1/checks with a fixed answer of the
broker's size, first at once and then after verifying the token's signature
with the broker's own code, each as fast as it answers and paced to the
broker's paced rate at 80 % (below), so that the report shows what HTTP and
the signature cost with none of Varsel's work around them. Each reference
is driven by the same generator with the same connections. After its
windows the broker is driven again, paced to 50 % and then 80 % of the rate
it made (--stack-duration each; a paced request's latency runs from when it
was due), for the latency a caller sees when the broker is not saturated
(--skip-paced does without). With --wrk it also drives the broker and the
OPA server with wrk (a C load generator; deploy/wrk.sh installs Debian's
package as root) fed pre-signed requests by a Lua script, and reports both.
With --compare-tree it restarts the broker on the same database without the
audit log's Merkle tree ("varsel serve --bench-without-tree", a benchmark
only mode) right after the window, measures the same load again and
reports what the tree costs. Before the load it times "varsel audit
verify" (audit.Verify: hashes, chain and the tree rebuilt) over the seeded
log (--skip-verify does without). The database is dropped at the end.

It needs a varsel binary (--varsel; by default the one next to this
executable, where "make build" puts both), a PostgreSQL server it may create
databases on (--server-url, else DATABASE_URL, else a throwaway cluster
started with deploy/pg.sh), and the checkout it was built from: the OPA
reference is built there with the Go toolchain ("go build
github.com/open-policy-agent/opa", the version in go.mod) and reads
policies/ (--skip-opa does without it).

Example, the short run of "make bench":

  make build
  bin/varsel-bench --flags 100000 --entries 1000000 --duration 20s --opa-duration 10s --wrk auto \
    --compare-tree --out .data/bench-result.json --markdown docs/performance.md --section short

The window's tokens must all be sent within their 300 s lifetime, so
--duration is at most about 4 minutes.

Flags:
`

// run is the whole command; main only reports its error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && args[0] == "faults" {
		return runFaults(ctx, args[1:], stdout, stderr, getenv)
	}
	if len(args) > 0 && args[0] == "stack-server" {
		return runStackServer(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("varsel-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	varselBin := fs.String("varsel", "", "the varsel binary to run as the broker (default: varsel next to this executable)")
	server := fs.String("server-url", "", "PostgreSQL server to create the bench database on (default: DATABASE_URL, else a throwaway cluster started by deploy/pg.sh)")
	flags := fs.Int("flags", 1_000_000, "flags to seed")
	entries := fs.Int("entries", 10_000_000, "audit entries to seed (COPY)")
	conns := fs.Int("connections", 64, "concurrent connections")
	dur := fs.Duration("duration", 60*time.Second, "measured load")
	warm := fs.Duration("warmup", 3*time.Second, "unmeasured load before it")
	opaDur := fs.Duration("opa-duration", 0, "how long to drive the stock OPA server (default min(duration, 15s))")
	skipOPA := fs.Bool("skip-opa", false, "do not run the stock OPA reference")
	skipStack := fs.Bool("skip-stack", false, "do not run the stack reference (echo alone, and echo with the signature)")
	skipPaced := fs.Bool("skip-paced", false, "do not drive the broker again at 50 % and 80 % of its window's rate (the latency below saturation)")
	stackDur := fs.Duration("stack-duration", 0, "how long to drive each paced run of the broker and each run of the stack reference (default min(duration, 15s))")
	alg := fs.String("alg", "ES256", "the agencies' signing algorithm: ES256 or EdDSA")
	out := fs.String("out", "bench-result.json", "JSON result file")
	md := fs.String("markdown", "", "update the load section of this Markdown file (e.g. docs/performance.md)")
	section := fs.String("section", "full", `name of the Markdown section to write ("full", "short")`)
	tokens := fs.Int("tokens", 0, "requests to pre-sign for the window (default: 2.5 × the warm-up's rate × duration)")
	wrk := fs.String("wrk", "off", "also drive the broker and the OPA server with wrk: off, auto (when deploy/wrk.sh finds or installs it) or on")
	compareTree := fs.Bool("compare-tree", false, "after the window, restart the broker on the same database without the audit Merkle tree (varsel serve --bench-without-tree) and measure the same load again; the report gives both and their ratio")
	skipVerify := fs.Bool("skip-verify", false, "do not time varsel audit verify (audit.Verify, the tree included) over the seeded log")
	keepDB := fs.Bool("keep-db", false, "keep the bench database (and its key directory) afterwards, to look at it; the log names both")
	fromJSON := fs.String("report", "", "do not run: render the result file of an earlier run (with --markdown)")
	// Not fs.Usage: the flag package would print it on every parse error.
	usage := func() {
		fmt.Fprint(stdout, help)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprint(stdout, `
Each flag may also come from VARSEL_<FLAG> in the environment (e.g.
VARSEL_SERVER_URL); flags win. VARSEL_BENCH_PPROF=ADDR has the broker serve
pprof on ADDR during the run.
`)
	}
	if err := parse(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return nil
		}
		return err
	}
	if *fromJSON != "" {
		return render(*fromJSON, *md, *section, stdout)
	}
	// Before anything slow: a run without a broker to start is no run.
	binary, err := findVarsel(*varselBin)
	if err != nil {
		return err
	}
	if *server == "" {
		*server = getenv("DATABASE_URL")
	}
	if *server == "" {
		u, err := schematest.ServerURL()
		if err != nil {
			return err
		}
		*server = u
	}
	self := ""
	if !*skipStack {
		if self, err = os.Executable(); err != nil {
			return fmt.Errorf("the stack reference runs this executable: %w", err)
		}
	}
	cfg := bench.Config{Self: self, StackDuration: *stackDur, Command: strings.TrimSpace("varsel-bench " + strings.Join(args, " ")), ServerURL: *server, Binary: binary,
		RepoDir: schematest.RepoRoot(), Flags: *flags, Entries: *entries, Connections: *conns, Duration: *dur, Warmup: *warm,
		OPADuration: *opaDur, SkipOPA: *skipOPA, Alg: *alg, Out: *out, Log: stderr, Tokens: *tokens, Wrk: *wrk,
		CompareTree: *compareTree, SkipVerify: *skipVerify, SkipPaced: *skipPaced, KeepDB: *keepDB}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprint(stdout, bench.Summary(res))
	if *md != "" {
		if err := bench.UpdateMarkdown(*md, *section, res); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "updated %s\n", filepath.Clean(*md))
	}
	return nil
}

// parse parses args, then fills each flag not given from its VARSEL_*
// environment variable, as varsel's own commands do.
func parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%v (see varsel-bench --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see varsel-bench --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		name := "VARSEL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %v", name, err)
			}
		}
	})
	return envErr
}

// findVarsel returns the broker binary to start: the --varsel path (or
// name on PATH), else the varsel next to this executable.
func findVarsel(flagValue string) (string, error) {
	if flagValue != "" {
		p, err := exec.LookPath(flagValue)
		if err != nil {
			return "", fmt.Errorf("--varsel %s: not an executable file", flagValue)
		}
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable: %w", err)
	}
	return varselNextTo(self)
}

// varselNextTo returns the varsel binary in self's directory, where
// "make build" puts it beside bin/varsel-bench.
func varselNextTo(self string) (string, error) {
	p := filepath.Join(filepath.Dir(self), "varsel")
	if _, err := exec.LookPath(p); err != nil {
		return "", fmt.Errorf("no varsel binary next to %s: build both with make build, or pass --varsel PATH", self)
	}
	return p, nil
}

// render prints (and with md writes into the Markdown file) the result
// file of an earlier run.
func render(path, md, section string, stdout io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var res bench.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprint(stdout, bench.Summary(&res))
	if md != "" {
		return bench.UpdateMarkdown(md, section, &res)
	}
	return nil
}

// runStackServer is "varsel-bench stack-server": the stack reference's
// server, which the tool runs as a process of its own so that its CPU is
// measured apart from the generator's.
func runStackServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("varsel-bench stack-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	keys := fs.String("keys", "", "the agencies' public keys (JSON, written by varsel-bench)")
	verify := fs.Bool("verify", false, "verify each request's token signature before answering")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, "Usage: varsel-bench stack-server --listen ADDR --keys FILE [--verify]\n\nThe stack reference's server, started by varsel-bench itself: see varsel-bench --help.\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return err
	}
	if *keys == "" {
		return errors.New("stack-server: --keys is required")
	}
	return bench.ServeStack(ctx, *listen, *keys, *verify, stdout)
}
