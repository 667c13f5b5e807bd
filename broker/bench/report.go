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
	fmt.Fprintf(&b, "seeded:         %d flags, %d audit entries (%.0f s)\n", r.Flags, r.Entries, r.SeedSeconds)
	fmt.Fprintf(&b, "load:           POST /v1/checks, %d connections, %s measured, 10%% flagged people\n", r.Connections, r.Duration)
	fmt.Fprintf(&b, "checks/s:       %.0f  (%d requests, %d ok, %d with precautions)\n", r.RPS, r.Requests, r.OK, r.Precautions)
	fmt.Fprintf(&b, "latency ms:     p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.Latency["p50"], r.Latency["p90"], r.Latency["p99"], r.Latency["max"])
	fmt.Fprintf(&b, "errors:         %s\n", errorsText(r.Errors))
	fmt.Fprintf(&b, "broker:         %.1f CPU s, %.3f CPU ms per request, peak RSS %.0f MiB\n", r.BrokerCPU, r.CPUPerRequest, r.PeakRSSMiB)
	fmt.Fprintf(&b, "audited:        %d check entries for %d answers (every answer audited: %v)\n", r.Audited, r.Answered, r.AllAudited)
	fmt.Fprintf(&b, "group commit:   %.0f rows/s alone -> ratio %.2f\n", r.CeilingRate, r.CeilingRatio)
	if r.OPARate > 0 {
		fmt.Fprintf(&b, "stock OPA:      %.0f decisions/s (p99 %.2f ms) -> ratio %.2f\n", r.OPARate, r.OPALatencyP99, r.OPARatio)
	}
	return b.String()
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
	section := fmt.Sprintf(`%s
## Load: POST /v1/checks end to end, %s run (measured by `+"`varsel-bench`"+`)

Run %s on %s.

`+"```sh\n%s\n```"+`

| figure | value |
|---|---|
| seeded | %d flags, %d audit entries (seeding took %.0f s) |
| load | %d connections, %s measured after a warm-up, 10 %% of checks on flagged people, a fresh %s token per request |
| checks per second | **%.0f** (%d requests, %d answered 200, %d with precautions) |
| latency p50 / p90 / p99 / max | %.2f / %.2f / **%.2f** / %.2f ms |
| errors | %s |
| broker CPU | %.1f s in all, **%.3f ms per request** |
| broker peak RSS | **%.0f MiB** |
| audited | %d check entries for %d answers: every answer audited = %v |
| group-commit ceiling (writer alone, same rows, same concurrency) | %.0f rows/s → ratio **%.2f** |
| stock OPA server, same policy and input, loopback HTTP | %.0f decisions/s, p99 %.2f ms → ratio **%.2f** |

The load generator runs on the same two cores as the broker and PostgreSQL.
%s
`, mdStart, name, r.StartedAt.Format("2006-01-02 15:04 MST"), r.Machine, r.Command,
		r.Flags, r.Entries, r.SeedSeconds, r.Connections, r.Duration, algOr(r.Alg), r.RPS, r.Requests, r.OK, r.Precautions,
		r.Latency["p50"], r.Latency["p90"], r.Latency["p99"], r.Latency["max"], errorsText(r.Errors),
		r.BrokerCPU, r.CPUPerRequest, r.PeakRSSMiB, r.Audited, r.Answered, r.AllAudited,
		r.CeilingRate, r.CeilingRatio, r.OPARate, r.OPALatencyP99, r.OPARatio, mdEnd)
	text := string(old)
	if i, j := strings.Index(text, mdStart), strings.Index(text, mdEnd); i >= 0 && j > i {
		text = text[:i] + strings.TrimSuffix(section, "\n") + text[j+len(mdEnd):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func algOr(a string) string {
	if a == "" {
		return "ES256"
	}
	return a
}
