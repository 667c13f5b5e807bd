package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// env looks up an environment variable; tests pass their own.
type env func(string) string

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, io cmdIO) error
}

// cmdIO is what a command may use of the outside world.
type cmdIO struct {
	stdout, stderr io.Writer
	getenv         env
}

func commands() []command {
	return []command{
		{"serve", "run the broker's HTTP API", runServe},
		{"migrate", "apply the database migrations (idempotent)", runMigrate},
		{"agency", "register and manage agencies and their keys", runAgency},
		{"keys", "rotate the subject key", runKeys},
		{"keygen", "make a signing key for an agency (ES256 or EdDSA)", runKeygen},
		{"audit", "verify the audit log's hash chain and signed checkpoints", runAudit},
		{"witness", "run a C2SP tlog-witness that cosigns a broker's checkpoints; make its key", runWitness},
		{"warn", "send a police warning to named offices (as a police liaison)", runWarn},
		{"inbox", "read an office's warning inbox, optionally following it", runInbox},
		{"call", "send one signed request to a broker, as an agency's employee", runCall},
		{"portal", "serve the agency portal: staff sign in with the agency's login and use Varsel in a browser", runPortal},
		{"version", "print the version", func(_ context.Context, _ []string, o cmdIO) error {
			fmt.Fprintln(o.stdout, "varsel", version)
			return nil
		}},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	o := cmdIO{stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], o)
		}
	}
	return fmt.Errorf("unknown command %q (see varsel help)", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `varsel: the Varsel risk-flag broker and its operator tools.

Usage: varsel COMMAND [flags]   (every command answers --help)

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every flag can also be set with an environment variable: --database-url is
VARSEL_DATABASE_URL, --listen is VARSEL_LISTEN, and so on. Flags win.
`)
}

// flagSet makes a FlagSet that reports errors instead of exiting.
func flagSet(name, synopsis string, o cmdIO) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(o.stdout, "Usage: varsel %s\n\n", synopsis)
		fs.SetOutput(o.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprintf(o.stdout, "\nEach flag may also come from VARSEL_<FLAG> in the environment (e.g. %s).\n", envName("database-url"))
	}
	return fs
}

// errHelp means --help was asked for and answered.
var errHelp = errors.New("help shown")

// parse parses args, then fills each flag not given from its VARSEL_*
// environment variable. It answers --help on stdout.
func parse(fs *flag.FlagSet, args []string, o cmdIO) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return errHelp
		}
		return fmt.Errorf("%s: %v (see varsel %s --help)", fs.Name(), err, fs.Name())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		if v := o.getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %s: %v", fs.Name(), envName(f.Name), err)
			}
		}
	})
	return envErr
}

func envName(flagName string) string {
	return "VARSEL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// handled turns the errHelp of parse into success.
func handled(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func readAll(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return b, nil
}
