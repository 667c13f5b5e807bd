package faults

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Markdown renders a run as the section of docs/reliability.md it owns.
func Markdown(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s, PostgreSQL %s (primary and synchronous standby), three replicas, keys from %s, load %d requests/s round robin.\n\n",
		r.StartedAt.Format("2006-01-02 15:04 MST"), r.Machine, strings.TrimPrefix(r.Postgres, "PostgreSQL "), r.Keys, r.Rate)
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", r.Command)
	b.WriteString("| fault | sent | 2xx | 503 | conn. errors | other | replays refused | receipts checked | lost | duplicate seq | missing seq | token twice | 2xx without entry | audit verify | fault lasted | disrupted | recovered after repair |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
	for _, row := range r.Rows {
		if row.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s | | | | | | | | | | | | | | | |\n", row.Fault, row.Skipped)
			continue
		}
		rec := fmt.Sprintf("%.2f s", row.Recover)
		if row.Recover < 0 {
			rec = "**never**"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | **%d** | **%d** | %d | %d | %d | %s | %.1f s | %.1f s | %s |\n",
			row.Fault, row.Sent, row.OK, row.Unavailable, row.Conn, row.Other, row.ReplaysRefused, row.Checked,
			row.Lost, row.DuplicateSeq, row.MissingSeq, row.TwiceAccepted, row.NoEntry, row.Verify, row.Window, row.Disrupted, rec)
	}
	b.WriteString("\nWhat each fault was, and every answer other than a 2xx, by status and code:\n\n")
	for _, row := range r.Rows {
		if row.Skipped != "" {
			continue
		}
		fmt.Fprintf(&b, "* **%s**: %s.", row.Fault, row.What)
		var codes []string
		for k, v := range row.Codes {
			codes = append(codes, fmt.Sprintf("%s × %d", strings.TrimSpace(k), v))
		}
		sort.Strings(codes)
		if len(codes) > 0 {
			fmt.Fprintf(&b, " Non-2xx: %s.", strings.Join(codes, ", "))
		} else {
			b.WriteString(" Every answer was a 2xx (or a refused replay).")
		}
		if row.Checkpoint > 0 {
			fmt.Fprintf(&b, " The next checkpoint was signed %.1f s after Vault was back.", row.Checkpoint)
		} else if row.Fault == FaultVault {
			b.WriteString(" No checkpoint was signed within 30 s of Vault being back.")
		}
		for _, n := range row.Notes {
			fmt.Fprintf(&b, " %s.", strings.TrimSuffix(n, "."))
		}
		fmt.Fprintf(&b, " The log held %d entries after it.\n", row.Entries)
	}
	return b.String()
}

// UpdateMarkdown rewrites the section named name of the file at path
// (between its markers), appending the section when the file lacks it.
func UpdateMarkdown(path, name string, r *Result) error {
	start, end := "<!-- faults:"+name+":start -->", "<!-- faults:"+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := start + "\n" + Markdown(r) + end
	s := string(old)
	i, j := strings.Index(s, start), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + section + s[j+len(end):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s += "\n"
		}
		s += section + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
