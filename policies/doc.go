package policies

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// DocKinds are the agency kinds that issue and read flags, in the order the
// direction matrix lists them.
var DocKinds = []string{"nav-state", "nav-municipal", "police", "health"}

// CatalogueMarkdown renders docs/legal-bases.md from the catalogue. It
// depends on the data alone (never on today's date), so the file is stale
// exactly when data.json changed and it was not regenerated.
func CatalogueMarkdown(c Catalogue) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	codes := slices.Sorted(maps.Keys(c.LegalBases))

	p("# Legal bases\n\n")
	p("<!-- Generated from policies/data.json by `go test ./policies -run TestLegalBasesDoc -update-docs`; do not edit by hand. -->\n\n")
	p("Every legal basis Varsel decides under, as `policies/data.json` holds it: the provision, its operative\n")
	p("words quoted in Norwegian, where they were read, when the basis is in force, its direction, its\n")
	p("obligations, and what was and was not verified. The policy uses only the bases in force on the\n")
	p("decision day (the date in Norway), so setting a commencement date is a change to the data alone.\n")
	p("How a basis is added or retired, and who signs it off: the README, \"Legal bases\".\n\n")
	p("Nothing here is legal advice. What is listed as not verified must be confirmed by a lawyer of the\n")
	p("agency before production.\n\n")

	p("## Direction matrix\n\n")
	p("Which bases let a flag of the issuer's kind (rows) be shown to a reader of a kind (columns). Retired\n")
	p("bases are left out. *exception:* marks the route of the life-and-health exception, which never shows\n")
	p("a flag, only one aggregate (highest level, union of precautions, the duty desk as contact).\n")
	p("† not in force: no commencement date yet.\n\n")
	p("| issuer ↓ · reader → | %s |\n", strings.Join(DocKinds, " | "))
	p("|---%s|\n", strings.Repeat("|---", len(DocKinds)))
	for _, from := range DocKinds {
		cells := make([]string, 0, len(DocKinds))
		for _, to := range DocKinds {
			var normal, exception []string
			for _, code := range codes {
				x := c.LegalBases[code]
				if x.Retired != nil || !slices.Contains(x.From, from) || !slices.Contains(x.To, to) {
					continue
				}
				name := "`" + code + "`"
				if x.InForceFrom == nil {
					name += " †"
				}
				if x.SameOffice {
					name += " (same office)"
				}
				if x.EmergencyOnly {
					exception = append(exception, name)
				} else {
					normal = append(normal, name)
				}
			}
			cell := strings.Join(normal, ", ")
			if len(exception) > 0 {
				if cell != "" {
					cell += "; "
				}
				cell += "*exception:* " + strings.Join(exception, ", ")
			}
			if cell == "" {
				cell = "–"
			}
			cells = append(cells, cell)
		}
		p("| **%s** | %s |\n", from, strings.Join(cells, " | "))
	}
	p("\n")

	p("## Obligations beyond a basis\n\n")
	for _, kind := range slices.Sorted(maps.Keys(c.IssuerObligations)) {
		o := c.IssuerObligations[kind]
		p("* Issuers of kind `%s`, whatever the basis: subject notice `%s` (%s).\n", kind, o.SubjectNotice.Level, o.SubjectNotice.Provision)
	}
	for _, level := range slices.Sorted(maps.Keys(c.LevelObligations)) {
		o := c.LevelObligations[level].DecisionRecord
		p("* Level `%s`: a decision record is required, decided by %s", level, roleList(o.DecidedByRoles))
		if o.Notice {
			p(", saying when the person was told and could respond (or why not)")
		}
		if o.MilderMeasures {
			p(", and that milder measures were considered")
		}
		p(" (%s).\n", o.Provision)
	}
	p("\n")

	p("## Not verified\n\n")
	p("What was not checked against a statute text, basis by basis:\n\n")
	for _, code := range codes {
		p("* `%s`: %s\n", code, c.LegalBases[code].Verified.NotChecked)
	}
	p("\n")

	p("## The bases\n\n")
	for _, code := range codes {
		x := c.LegalBases[code]
		p("### `%s`\n\n", code)
		p("%s\n\n", x.Title)
		pr := x.Provision
		p("* **Provision:** %s (%s, %s, %s", pr.Citation, pr.Act, pr.LovID, pr.Section)
		if pr.Ledd != nil {
			p(", ledd %d", *pr.Ledd)
		}
		if pr.Nr != nil {
			p(", nr. %s", *pr.Nr)
		}
		if pr.Bokstav != nil {
			p(", bokstav %s", *pr.Bokstav)
		}
		p(")\n")
		p("* **Wording:** «%s» — read in %s\n", x.Wording, wordingKinds[x.WordingKind])
		p("* **Source:** %s\n", x.Source)
		p("* **In force:** %s\n", inForceText(x))
		if x.Retired != nil {
			p("* **Retired:** %s Replaced by %s.\n", x.Retired.Why, codeList(x.Retired.ReplacedBy))
		}
		dir := fmt.Sprintf("%s → %s", strings.Join(x.From, ", "), strings.Join(x.To, ", "))
		if x.SameOffice {
			dir += "; same office only"
		}
		if x.EmergencyOnly {
			dir += "; only through the life-and-health exception"
		}
		p("* **Direction:** %s\n", dir)
		if x.MaxValidityDays != nil {
			p("* **Maximum validity:** %d days\n", *x.MaxValidityDays)
		} else {
			p("* **Maximum validity:** issues no flags\n")
		}
		o := x.Obligations
		p("* **Subject notice:** `%s` — %s\n", o.SubjectNotice.Level, o.SubjectNotice.Provision)
		rec := "not required"
		if o.DecisionRecord.Required {
			rec = "required"
			if len(o.DecisionRecord.DecidedByRoles) > 0 {
				rec += ", decided by " + roleList(o.DecisionRecord.DecidedByRoles)
			}
		}
		p("* **Decision record:** %s — %s\n", rec, o.DecisionRecord.Provision)
		told := "no"
		if o.IssuerToldAtDisclosure.Required {
			told = "yes, at once"
		}
		p("* **Issuer told at disclosure:** %s — %s\n", told, o.IssuerToldAtDisclosure.Provision)
		p("* **Conditions:** %s\n", x.Conditions)
		p("* **Verified:** %s\n", x.Verified.Checked)
		p("* **Not verified:** %s\n\n", x.Verified.NotChecked)
	}
	return append(bytes.TrimRight(b.Bytes(), "\n"), '\n')
}

func inForceText(x LegalBasis) string {
	switch {
	case x.InForceFrom == nil:
		return "not in force: no commencement date"
	case x.InForceUntil == nil:
		return "from " + *x.InForceFrom
	default:
		return fmt.Sprintf("from %s until %s (inclusive); refused for new flags and not disclosed after", *x.InForceFrom, *x.InForceUntil)
	}
}

func codeList(codes []string) string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = "`" + c + "`"
	}
	return strings.Join(out, ", ")
}

func roleList(roles []string) string {
	if len(roles) == 0 {
		return "whoever the issuer's agency lets decide"
	}
	return strings.Join(roles, " or ")
}
