package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"varsel/broker/bench"
	"varsel/schema/schematest"
)

func runBench(ctx context.Context, args []string, o cmdIO) error {
	fs := flagSet("bench", "bench [--flags N] [--entries M] [--connections C] [--duration D] [--out FILE] [--markdown FILE]", o)
	server := fs.String("server-url", "", "PostgreSQL server to create the bench database on (default: DATABASE_URL, else a throwaway cluster started by deploy/pg.sh)")
	flags := fs.Int("flags", 1_000_000, "flags to seed")
	entries := fs.Int("entries", 10_000_000, "audit entries to seed (COPY)")
	conns := fs.Int("connections", 64, "concurrent connections")
	dur := fs.Duration("duration", 60*time.Second, "measured load")
	warm := fs.Duration("warmup", 3*time.Second, "unmeasured load before it")
	opaDur := fs.Duration("opa-duration", 0, "how long to drive the stock OPA server (default min(duration, 15s))")
	skipOPA := fs.Bool("skip-opa", false, "do not run the stock OPA reference")
	alg := fs.String("alg", "ES256", "the agencies' signing algorithm: ES256 or EdDSA")
	out := fs.String("out", "bench-result.json", "JSON result file")
	md := fs.String("markdown", "", "update the load section of this Markdown file (e.g. docs/performance.md)")
	section := fs.String("section", "full", `name of the Markdown section to write ("full", "short")`)
	fromJSON := fs.String("report", "", "do not run: render the result file of an earlier run (with --markdown)")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if *fromJSON != "" {
		return renderBench(*fromJSON, *md, *section, o)
	}
	root := schematest.RepoRoot()
	if *server == "" {
		*server = o.getenv("DATABASE_URL")
	}
	if *server == "" {
		u, err := schematest.ServerURL()
		if err != nil {
			return err
		}
		*server = u
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := bench.Config{Command: strings.TrimSpace("varsel bench " + strings.Join(args, " ")), ServerURL: *server, Binary: self, RepoDir: root, Flags: *flags, Entries: *entries,
		Connections: *conns, Duration: *dur, Warmup: *warm, OPADuration: *opaDur, SkipOPA: *skipOPA, Alg: *alg, Out: *out, Log: o.stderr}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprint(o.stdout, bench.Summary(res))
	if *md != "" {
		if err := bench.UpdateMarkdown(*md, *section, res); err != nil {
			return err
		}
		fmt.Fprintf(o.stderr, "updated %s\n", filepath.Clean(*md))
	}
	return nil
}

func renderBench(path, md, section string, o cmdIO) error {
	b, err := readFile(path)
	if err != nil {
		return err
	}
	var res bench.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	fmt.Fprint(o.stdout, bench.Summary(&res))
	if md != "" {
		return bench.UpdateMarkdown(md, section, &res)
	}
	return nil
}
