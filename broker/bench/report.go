package bench

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Summary is the human-readable outcome of a run.
func Summary(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine:        %s\n", r.Machine)
	if r.Postgres != "" {
		fmt.Fprintf(&b, "postgres:       %s\n", r.Postgres)
	}
	fmt.Fprintf(&b, "seeded:         %d flags, %d audit entries (%.0f s)\n", r.Flags, r.Entries, r.SeedSeconds)
	fmt.Fprintf(&b, "load:           POST /v1/checks, %d connections, %s measured, 10%% flagged people, %s keys\n", r.Connections, measured(r), algOr(r.Alg))
	if r.Generator != "" {
		fmt.Fprintf(&b, "generator:      %s (%d requests signed in %.1f s before the window)\n", r.Generator, r.PreSigned, r.SignSeconds)
	}
	fmt.Fprintf(&b, "checks/s:       %.0f  (%d requests, %d ok, %d with precautions)\n", r.RPS, r.Requests, r.OK, r.Precautions)
	fmt.Fprintf(&b, "latency ms:     p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.Latency["p50"], r.Latency["p90"], r.Latency["p99"], r.Latency["max"])
	fmt.Fprintf(&b, "errors:         %s\n", errorsText(r.Errors))
	fmt.Fprintf(&b, "broker:         %.1f CPU s, %.3f CPU ms per request, peak RSS %.0f MiB\n", r.BrokerCPU, r.CPUPerRequest, r.PeakRSSMiB)
	if r.CPU.MachineCPUs > 0 {
		fmt.Fprintf(&b, "CPU ms/check:   %s\n", cpuText(r.CPU, "broker"))
	}
	if r.Floor.P256VerifyUs > 0 {
		fmt.Fprintf(&b, "cost floor:     one P-256 verify %.1f µs, one Ed25519 verify %.1f µs (one core) -> broker CPU per check = %.2f × P-256 verify\n",
			r.Floor.P256VerifyUs, r.Floor.Ed25519VerifyUs, r.FloorRatio)
	}
	if v := r.Verify; v != nil {
		fmt.Fprintf(&b, "audit verify:   %.0f entries/s (%d entries in %.2f s, tree root = the stored one: %v)\n", v.Rate, v.Entries, v.Seconds, v.RootMatches)
	}
	for _, p := range r.Paced {
		fmt.Fprintf(&b, "paced %2.0f %%:     %.0f checks/s (paced to %.0f/s), p50 %.2f p90 %.2f p99 %.2f max %.2f ms, errors %s%s; CPU ms/check: %s\n",
			p.Share*100, p.RPS, p.Paced, p.Latency["p50"], p.Latency["p90"], p.Latency["p99"], p.Latency["max"], errorsText(p.Errors), pacedCut(p), cpuText(p.CPU, "broker"))
	}
	if c := r.WithoutTree; c != nil {
		fmt.Fprintf(&b, "without tree:   %.0f checks/s (%d requests, %d ok), p50 %.2f p99 %.2f max %.2f ms, errors %s\n",
			c.RPS, c.Requests, c.OK, c.Latency["p50"], c.Latency["p99"], c.Latency["max"], errorsText(c.Errors))
		fmt.Fprintf(&b, "  CPU ms/check: %s\n", cpuText(c.CPU, "broker"))
		fmt.Fprintf(&b, "tree cost:      checks/s with ÷ without %.3f, broker CPU per check with ÷ without %.3f", c.RateRatio, c.CPURatio)
		if c.CPU.PostgresMs > 0 {
			fmt.Fprintf(&b, ", broker + postgres CPU per check with ÷ without %.3f", (r.CPU.ServerMs+r.CPU.PostgresMs)/(c.CPU.ServerMs+c.CPU.PostgresMs))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "audited:        %d check entries for %d answers (every answer audited: %v)\n", r.Audited, r.Answered, r.AllAudited)
	fmt.Fprintf(&b, "group commit:   %.0f rows/s alone -> ratio %.2f\n", r.CeilingRate, r.CeilingRatio)
	if r.OPARate > 0 {
		fmt.Fprintf(&b, "stock OPA:      %.0f decisions/s (p99 %.2f ms) -> ratio %.2f\n", r.OPARate, r.OPALatencyP99, r.OPARatio)
		if r.OPACPU.MachineCPUs > 0 {
			fmt.Fprintf(&b, "OPA CPU ms/dec: %s\n", cpuText(r.OPACPU, "opa"))
		}
	}
	if st := r.Stack; st != nil && st.Bare != nil && st.Signed != nil {
		fmt.Fprintf(&b, "stack:          as fast as it answers: echo alone %.0f requests/s, %.3f CPU ms per request (%.2f × P-256 verify); echo and the signature %.0f/s, %.3f ms (%.2f ×), p99 %.2f ms; errors %s, %s\n",
			st.Bare.RPS, st.Bare.CPU.ServerMs, st.Bare.FloorRatio, st.Signed.RPS, st.Signed.CPU.ServerMs, st.Signed.FloorRatio, st.Signed.Latency["p99"], errorsText(st.Bare.Errors), errorsText(st.Signed.Errors))
		if pb, ps := st.PacedBare, st.PacedSigned; pb != nil && ps != nil {
			fmt.Fprintf(&b, "stack paced:    to %.0f/s: echo alone %.3f CPU ms per request (%.2f ×); echo and the signature %.3f ms (%.2f ×), p99 %.2f ms; errors %s, %s\n",
				ps.Paced, pb.CPU.ServerMs, pb.FloorRatio, ps.CPU.ServerMs, ps.FloorRatio, ps.Latency["p99"], errorsText(pb.Errors), errorsText(ps.Errors))
		}
	}
	if w := r.Wrk; w != nil {
		fmt.Fprintf(&b, "wrk checks/s:   %.0f  (%d requests, %d ok, %d pre-signed), p50 %.2f p99 %.2f max %.2f ms, errors %s\n",
			w.Broker.RPS, w.Broker.Requests, w.Broker.OK, w.Broker.PreSigned, w.Broker.Latency["p50"], w.Broker.Latency["p99"], w.Broker.Latency["max"], errorsText(w.Broker.Errors))
		fmt.Fprintf(&b, "wrk CPU ms:     %s\n", cpuText(w.Broker.CPU, "broker"))
		if w.OPA != nil {
			fmt.Fprintf(&b, "wrk stock OPA:  %.0f decisions/s (p99 %.2f ms) -> ratio %.2f; CPU ms/decision %s\n", w.OPA.RPS, w.OPA.Latency["p99"], w.OPARatio, cpuText(w.OPA.CPU, "opa"))
		}
	}
	return b.String()
}

// pacedCut says when a paced run's requests ran out before its end.
func pacedCut(p *PacedRun) string {
	if p.WindowCut {
		return " (the pre-signed requests ran out early)"
	}
	return ""
}

func measured(r *Result) string {
	if r.WindowCut && r.Measured > 0 {
		return fmt.Sprintf("%.1fs (of %s: the pre-signed requests ran out)", r.Measured.Seconds(), r.Duration)
	}
	return r.Duration.String()
}

func cpuText(c CPUShare, server string) string {
	s := fmt.Sprintf("generator %.3f, %s %.3f", c.GeneratorMs, server, c.ServerMs)
	if c.Postgres > 0 {
		s += fmt.Sprintf(", postgres %.3f", c.PostgresMs)
	}
	return s + fmt.Sprintf(", other processes %.3f (machine busy %.0f of %.0f CPU s)", c.OtherMs, c.MachineBusy, c.MachineCPUs)
}

func errorsText(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// UpdateMarkdown writes the run into the file between the markers of the
// named section (appending the section when they are missing), so that the
// full run and `make bench`'s short run each keep their own.
func UpdateMarkdown(path, name string, r *Result) error {
	mdStart, mdEnd := "<!-- bench:"+name+":start -->", "<!-- bench:"+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var rows strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&rows, "| %s | "+format+" |\n", append([]any{k}, args...)...)
	}
	row("seeded", "%d flags, %d audit entries (seeding took %.0f s)", r.Flags, r.Entries, r.SeedSeconds)
	if r.Postgres != "" {
		row("database", "%s", r.Postgres)
	}
	gen := "a fresh " + algOr(r.Alg) + " token per request"
	if r.Generator != "" {
		gen = fmt.Sprintf("%s keys; generator: %s, sending %d requests signed (a fresh jti each) in %.1f s before the window", algOr(r.Alg), r.Generator, r.PreSigned, r.SignSeconds)
	}
	row("load", "%d connections, %s measured after a warm-up, 10 %% of checks on flagged people, %s", r.Connections, measured(r), gen)
	row("checks per second", "**%.0f** (%d requests, %d answered 200, %d with precautions)", r.RPS, r.Requests, r.OK, r.Precautions)
	row("latency p50 / p90 / p99 / max", "%.2f / %.2f / **%.2f** / %.2f ms", r.Latency["p50"], r.Latency["p90"], r.Latency["p99"], r.Latency["max"])
	row("errors", "%s", errorsText(r.Errors))
	row("broker CPU", "%.1f s in all, **%.3f ms per request**", r.BrokerCPU, r.CPUPerRequest)
	if r.CPU.MachineCPUs > 0 {
		row("CPU ms per check", "%s", cpuText(r.CPU, "broker"))
	}
	if r.Floor.P256VerifyUs > 0 {
		sig := 100 * r.Floor.P256VerifyUs / (r.CPUPerRequest * 1000)
		if algOr(r.Alg) == "EdDSA" {
			sig = 100 * r.Floor.Ed25519VerifyUs / (r.CPUPerRequest * 1000)
		}
		row("cost floor (one core, same run)", "one bare P-256 ECDSA verification %.1f µs, one Ed25519 verification %.1f µs → broker CPU per check = **%.2f × one P-256 verification**; a bare %s verification is %.0f %% of it, everything else %.0f µs",
			r.Floor.P256VerifyUs, r.Floor.Ed25519VerifyUs, r.FloorRatio, algOr(r.Alg), sig, r.CPUPerRequest*1000*(1-sig/100))
	}
	row("broker peak RSS", "**%.0f MiB**", r.PeakRSSMiB)
	for _, p := range r.Paced {
		row(fmt.Sprintf("the broker, with the tree, paced to %.0f %% of that rate (same generator, as many connections, the last runs on the broker; latency from when each request was due)", p.Share*100),
			"%.0f checks/s, p50 / p90 / p99 / max %.2f / %.2f / **%.2f** / %.2f ms, errors %s%s; CPU ms per check: %s",
			p.RPS, p.Latency["p50"], p.Latency["p90"], p.Latency["p99"], p.Latency["max"], errorsText(p.Errors), pacedCut(p), cpuText(p.CPU, "broker"))
	}
	if c := r.WithoutTree; c != nil {
		row("without the audit tree (broker restarted on the same database with `--bench-without-tree`, right after the window above; same load)",
			"**%.0f** checks/s (%d requests, %d answered 200, %d pre-signed), p50 / p90 / p99 / max %.2f / %.2f / **%.2f** / %.2f ms, errors %s; %s",
			c.RPS, c.Requests, c.OK, c.PreSigned, c.Latency["p50"], c.Latency["p90"], c.Latency["p99"], c.Latency["max"], errorsText(c.Errors), cutText(c))
		row("CPU ms per check without the tree", "%s", cpuText(c.CPU, "broker"))
		pg := ""
		if c.CPU.PostgresMs > 0 {
			with, without := r.CPU.ServerMs+r.CPU.PostgresMs, c.CPU.ServerMs+c.CPU.PostgresMs
			pg = fmt.Sprintf(", PostgreSQL %.3f against %.3f ms; broker and PostgreSQL together **%.3f against %.3f ms (× %.3f)**",
				r.CPU.PostgresMs, c.CPU.PostgresMs, with, without, with/without)
		}
		row("the tree's cost (with against without, same run)", "checks/s ratio **%.3f** (%+.1f %%), p99 %.2f against %.2f ms, broker CPU per check %.3f against %.3f ms (× %.3f)%s",
			c.RateRatio, 100*(c.RateRatio-1), r.Latency["p99"], c.Latency["p99"], r.CPUPerRequest, c.CPU.ServerMs, c.CPURatio, pg)
	}
	if v := r.Verify; v != nil {
		row("`varsel audit verify` over the seeded log (audit.Verify from PostgreSQL: entry hashes, chain, Merkle tree rebuilt, before the load)",
			"**%.0f entries/s** (%d entries in %.2f s; rebuilt tree root = the stored tree's: %v; machine busy %.1f of %.1f CPU s)",
			v.Rate, v.Entries, v.Seconds, v.RootMatches, v.MachineBusy, v.MachineCPUs)
	}
	row("audited", "%d check entries for %d answers: every answer audited = %v", r.Audited, r.Answered, r.AllAudited)
	row("group-commit ceiling (writer alone, same rows, same concurrency)", "%.0f rows/s → ratio **%.2f**", r.CeilingRate, r.CeilingRatio)
	opa := "stock OPA server, same policy and input, loopback HTTP"
	if r.Generator != "" {
		opa += ", same generator and connections"
	}
	row(opa, "%.0f decisions/s, p99 %.2f ms → ratio **%.2f**", r.OPARate, r.OPALatencyP99, r.OPARatio)
	if r.OPACPU.MachineCPUs > 0 {
		row("CPU ms per OPA decision", "%s", cpuText(r.OPACPU, "opa"))
	}
	if st := r.Stack; st != nil && st.Bare != nil && st.Signed != nil {
		type labelled struct {
			label string
			run   *StackRun
		}
		runs := []labelled{{"stack reference: echo alone, as fast as it answers (a fixed answer of the broker's size, same generator and connections)", st.Bare},
			{"stack reference: echo and the signature (the broker's signature check, nothing else), as fast as it answers", st.Signed}}
		if st.PacedBare != nil && st.PacedSigned != nil {
			runs = append(runs, labelled{fmt.Sprintf("stack reference: echo alone, paced to %.0f/s (the broker's paced run at %.0f %%)", st.PacedBare.Paced, comparedShare*100), st.PacedBare},
				labelled{fmt.Sprintf("stack reference: echo and the signature, paced to %.0f/s", st.PacedSigned.Paced), st.PacedSigned})
		}
		for _, x := range runs {
			row(x.label, "%.0f requests/s, p50 / p99 %.2f / %.2f ms, errors %s; server CPU **%.3f ms per request = %.2f × one P-256 verification**; CPU ms per request: %s",
				x.run.RPS, x.run.Latency["p50"], x.run.Latency["p99"], errorsText(x.run.Errors), x.run.CPU.ServerMs, x.run.FloorRatio, cpuText(x.run.CPU, "server"))
		}
		if r.CPUPerRequest > 0 && r.Floor.P256VerifyUs > 0 {
			row("the broker beyond echo and the signature, both as fast as they answer (at different rates)", "%.0f µs of CPU per check (%.2f × one P-256 verification)",
				(r.CPUPerRequest-st.Signed.CPU.ServerMs)*1000, r.FloorRatio-st.Signed.FloorRatio)
		}
		if p := r.pacedAt(comparedShare); p != nil && st.PacedSigned != nil && r.Floor.P256VerifyUs > 0 {
			row(fmt.Sprintf("the broker beyond echo and the signature, both paced to %.0f/s", p.Paced), "%.0f µs of CPU per check (broker %.3f ms, %.2f × one P-256 verification, against %.3f ms, %.2f ×)",
				(p.CPU.ServerMs-st.PacedSigned.CPU.ServerMs)*1000, p.CPU.ServerMs, p.CPU.ServerMs*1000/r.Floor.P256VerifyUs, st.PacedSigned.CPU.ServerMs, st.PacedSigned.FloorRatio)
		}
	}
	if w := r.Wrk; w != nil {
		label := "wrk (same broker, after the window above)"
		if r.WithoutTree != nil {
			label = "wrk (the broker with the tree, restarted after the windows above)"
		}
		row(label, "**%.0f** checks/s (%d requests, %d answered 2xx, %d pre-signed), p50 / p90 / p99 / max %.2f / %.2f / **%.2f** / %.2f ms, errors %s",
			w.Broker.RPS, w.Broker.Requests, w.Broker.OK, w.Broker.PreSigned, w.Broker.Latency["p50"], w.Broker.Latency["p90"], w.Broker.Latency["p99"], w.Broker.Latency["max"], errorsText(w.Broker.Errors))
		row("CPU ms per check under wrk", "%s", cpuText(w.Broker.CPU, "broker"))
		if w.OPA != nil {
			row("stock OPA server under wrk", "%.0f decisions/s, p99 %.2f ms → ratio **%.2f**; CPU ms per decision: %s", w.OPA.RPS, w.OPA.Latency["p99"], w.OPARatio, cpuText(w.OPA.CPU, "opa"))
		}
	}
	note := "The load generator runs on the same two cores as the broker and PostgreSQL."
	if r.Generator != "" {
		note = "The load generator, the broker and PostgreSQL share the machine's cores; \"other processes\" is the machine's busy CPU in the window that none of them used (other work on the machine). Ratios are from the same run."
	}
	section := fmt.Sprintf("%s\n## Load: POST /v1/checks end to end, %s run (measured by `varsel-bench`)\n\nRun %s on %s.\n\n```sh\n%s\n```\n\n| figure | value |\n|---|---|\n%s\n%s\n%s\n",
		mdStart, name, r.StartedAt.Format("2006-01-02 15:04 MST"), r.Machine, r.Command, rows.String(), note, mdEnd)
	text := string(old)
	if i, j := strings.Index(text, mdStart), strings.Index(text, mdEnd); i >= 0 && j > i {
		text = text[:i] + strings.TrimSuffix(section, "\n") + text[j+len(mdEnd):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func cutText(c *TreeComparison) string {
	if c.WindowCut {
		return fmt.Sprintf("measured %.1f s (the pre-signed requests ran out)", c.Measured.Seconds())
	}
	return fmt.Sprintf("measured %.1f s", c.Measured.Seconds())
}

func algOr(a string) string {
	if a == "" {
		return "ES256"
	}
	return a
}
