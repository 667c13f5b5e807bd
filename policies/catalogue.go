package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // the decision day is the date in Norway, also where the host has no zoneinfo
)

// The catalogue of legal bases (data.json at data.legal_bases) carries its
// own evidence: for every basis the provision, the operative words quoted in
// Norwegian, where they were read, when the basis is in force, its
// direction, its obligations and what was and was not verified. parseCatalogue
// is the data lint: the broker refuses to start on a basis that lacks any of
// it, and the Go and Rego tests run the same checks.

// DutyDeskBasis is the legal_basis a reader sees of a flag shown through
// the broker's duty desk: a health-sourced flag read outside the health
// sector, or a flag whose issuer chose the duty desk. It names no provision,
// so it cannot tell a reader which sector the flag came from; the true basis
// is in the audit entry and known to the duty desk.
const DutyDeskBasis = "via-duty-desk"

// Obligation levels of subject_notice.
const (
	NoticeNone       = "none"
	NoticeIfPossible = "if_possible"
	NoticeRequired   = "required"
)

// Decision-maker roles of a decision record.
const (
	DecidedByOfficeHead         = "office-head"
	DecidedByController         = "controller"
	DecidedByControllerDelegate = "controller-delegate"
)

// DecidedByRoles are the roles a decision record may name.
var DecidedByRoles = []string{DecidedByOfficeHead, DecidedByController, DecidedByControllerDelegate}

// wordingKinds says what a basis's wording was read in.
var wordingKinds = map[string]string{
	"as_enacted":   "the act as enacted",
	"amending_act": "the amending act that gave the provision this wording",
	"consolidated": "a consolidated text",
	"secondary":    "a secondary source quoting the provision (not a statute copy)",
}

// Oslo is where the law's dates are dates: a basis in force from a day is in
// force from midnight in Norway.
var Oslo = mustLocation("Europe/Oslo")

func mustLocation(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err) // time/tzdata is embedded
	}
	return l
}

// Day is the decision day of t: its date in Norway, "YYYY-MM-DD".
func Day(t time.Time) string { return t.In(Oslo).Format(time.DateOnly) }

// Provision names where a basis is in the statute book.
type Provision struct {
	Act      string  `json:"act"`
	LovID    string  `json:"lov_id"`
	Section  string  `json:"section"`
	Ledd     *int    `json:"ledd"`
	Nr       *string `json:"nr"`
	Bokstav  *string `json:"bokstav"`
	Citation string  `json:"citation"`
}

// SubjectNotice is the duty to tell the person, and where it comes from.
type SubjectNotice struct {
	Level     string `json:"level"`
	Provision string `json:"provision"`
}

// DecisionObligation is the duty to record a decision to disclose.
type DecisionObligation struct {
	Required bool `json:"required"`
	// DecidedByRoles, when set, are the roles that may take the decision.
	DecidedByRoles []string `json:"decided_by_roles,omitempty"`
	// Notice and MilderMeasures (exclusions): the record must say when the
	// person was told and could respond (or why not), and that milder
	// measures were considered.
	Notice         bool   `json:"notice,omitempty"`
	MilderMeasures bool   `json:"milder_measures,omitempty"`
	Provision      string `json:"provision"`
}

// IssuerNotice is the duty to tell the issuing agency when the flag is
// disclosed.
type IssuerNotice struct {
	Required  bool   `json:"required"`
	Provision string `json:"provision"`
}

// Obligations are what a disclosure under a basis demands.
type Obligations struct {
	SubjectNotice          SubjectNotice      `json:"subject_notice"`
	DecisionRecord         DecisionObligation `json:"decision_record"`
	IssuerToldAtDisclosure IssuerNotice       `json:"issuer_told_at_disclosure"`
}

// Verified says what was checked against the statute texts and what not.
type Verified struct {
	Checked    string `json:"checked"`
	NotChecked string `json:"not_checked"`
}

// Retired says why a basis is no longer accepted and what replaces it.
type Retired struct {
	Why        string   `json:"why"`
	ReplacedBy []string `json:"replaced_by"`
}

// LegalBasis is one legal basis for disclosure, as served at
// GET /v1/legal-bases.
type LegalBasis struct {
	Code  string `json:"code"`
	Title string `json:"title"`
	// Citation repeats Provision.Citation (the v1 wire format had it).
	Citation    string    `json:"citation"`
	Provision   Provision `json:"provision"`
	Wording     string    `json:"wording"`
	WordingKind string    `json:"wording_kind"`
	Source      string    `json:"source"`
	// InForceFrom and InForceUntil are dates in Norway ("YYYY-MM-DD"),
	// both inclusive; a nil InForceFrom means not in force (no
	// commencement, or none known), a nil InForceUntil no end.
	InForceFrom     *string     `json:"in_force_from"`
	InForceUntil    *string     `json:"in_force_until"`
	Retired         *Retired    `json:"retired,omitempty"`
	From            []string    `json:"from"`
	To              []string    `json:"to"`
	EmergencyOnly   bool        `json:"emergency_only"`
	SameOffice      bool        `json:"same_office"`
	MaxValidityDays *int        `json:"max_validity_days"`
	Obligations     Obligations `json:"obligations"`
	Conditions      string      `json:"conditions"`
	Verified        Verified    `json:"verified"`
}

// InForceOn reports whether the basis is in force on day ("YYYY-MM-DD").
func (b LegalBasis) InForceOn(day string) bool {
	return b.InForceFrom != nil && *b.InForceFrom <= day && (b.InForceUntil == nil || day <= *b.InForceUntil)
}

// InForceAt reports whether the basis is in force at t (its day in Norway).
func (b LegalBasis) InForceAt(t time.Time) bool { return b.InForceOn(Day(t)) }

// EndedBy reports whether the basis was in force and ended before day.
func (b LegalBasis) EndedBy(day string) bool { return b.InForceUntil != nil && *b.InForceUntil < day }

// Catalogue is data.json: the legal bases and the obligations that follow
// from the issuer's kind or the flag's level rather than from a basis.
type Catalogue struct {
	IssuerObligations map[string]IssuerObligations `json:"issuer_obligations"`
	LevelObligations  map[string]LevelObligations  `json:"level_obligations"`
	LegalBases        map[string]LegalBasis        `json:"legal_bases"`
}

// IssuerObligations follow from the issuer's agency kind, whatever the basis.
type IssuerObligations struct {
	SubjectNotice SubjectNotice `json:"subject_notice"`
}

// LevelObligations follow from a flag's level, whatever the basis.
type LevelObligations struct {
	DecisionRecord DecisionObligation `json:"decision_record"`
}

var (
	codePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	datePattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// parseCatalogue decodes data.json and lints it, so that a broken catalogue
// stops the broker at start rather than denying (or worse) later.
func parseCatalogue(bs []byte) (*Catalogue, error) {
	dec := json.NewDecoder(bytes.NewReader(bs))
	dec.DisallowUnknownFields()
	var c Catalogue
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", dataFile, err)
	}
	// Keys that must be present even when null: in_force_from, in_force_until,
	// max_validity_days and the provision's ledd, nr and bokstav.
	var raw struct {
		LegalBases map[string]struct {
			InForceFrom     json.RawMessage `json:"in_force_from"`
			InForceUntil    json.RawMessage `json:"in_force_until"`
			MaxValidityDays json.RawMessage `json:"max_validity_days"`
			Provision       struct {
				Ledd    json.RawMessage `json:"ledd"`
				Nr      json.RawMessage `json:"nr"`
				Bokstav json.RawMessage `json:"bokstav"`
			} `json:"provision"`
		} `json:"legal_bases"`
	}
	if err := json.Unmarshal(bs, &raw); err != nil {
		return nil, fmt.Errorf("parse %s: %w", dataFile, err)
	}
	var errs []string
	for _, code := range slices.Sorted(maps.Keys(c.LegalBases)) {
		b := c.LegalBases[code]
		r := raw.LegalBases[code]
		for name, v := range map[string]json.RawMessage{"in_force_from": r.InForceFrom, "in_force_until": r.InForceUntil,
			"max_validity_days": r.MaxValidityDays, "provision.ledd": r.Provision.Ledd, "provision.nr": r.Provision.Nr,
			"provision.bokstav": r.Provision.Bokstav} {
			if v == nil {
				errs = append(errs, fmt.Sprintf("%s: %s must be given (null when it does not apply or is not known)", code, name))
			}
		}
		b.Code = code
		b.Citation = b.Provision.Citation
		errs = append(errs, lintBasis(b, c.LegalBases)...)
		c.LegalBases[code] = b
	}
	errs = append(errs, lintEmergencyRoutes(c.LegalBases)...)
	for kind, o := range c.IssuerObligations {
		if !validKinds[kind] {
			errs = append(errs, fmt.Sprintf("issuer_obligations: unknown agency kind %q", kind))
		}
		errs = append(errs, lintNotice("issuer_obligations."+kind, o.SubjectNotice)...)
	}
	for level, o := range c.LevelObligations {
		if level != "caution" && level != "high" && level != "exclusion" {
			errs = append(errs, fmt.Sprintf("level_obligations: unknown level %q", level))
		}
		errs = append(errs, lintDecision("level_obligations."+level, o.DecisionRecord)...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", dataFile, strings.Join(errs, "; "))
	}
	return &c, nil
}

// lintBasis lists what is wrong with one basis.
func lintBasis(b LegalBasis, all map[string]LegalBasis) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, b.Code+": "+fmt.Sprintf(format, args...)) }
	if !codePattern.MatchString(b.Code) {
		bad("the code must be lower-case words joined by hyphens")
	}
	for name, v := range map[string]string{"title": b.Title, "provision.act": b.Provision.Act, "provision.lov_id": b.Provision.LovID,
		"provision.section": b.Provision.Section, "provision.citation": b.Provision.Citation, "wording": b.Wording,
		"source": b.Source, "conditions": b.Conditions, "verified.checked": b.Verified.Checked,
		"verified.not_checked": b.Verified.NotChecked} {
		if strings.TrimSpace(v) == "" {
			bad("%s is required", name)
		}
	}
	if !strings.Contains(b.Provision.LovID, "LOV-") {
		bad("provision.lov_id must name the act's LOV id")
	}
	if _, ok := wordingKinds[b.WordingKind]; !ok {
		bad("wording_kind %q is not one of %s", b.WordingKind, strings.Join(slices.Sorted(maps.Keys(wordingKinds)), ", "))
	}
	for name, d := range map[string]*string{"in_force_from": b.InForceFrom, "in_force_until": b.InForceUntil} {
		if d == nil {
			continue
		}
		if _, err := time.Parse(time.DateOnly, *d); err != nil || !datePattern.MatchString(*d) {
			bad("%s %q is not a date (YYYY-MM-DD)", name, *d)
		}
	}
	if b.InForceUntil != nil {
		if b.InForceFrom != nil && *b.InForceUntil < *b.InForceFrom {
			bad("in_force_until is before in_force_from")
		}
		if b.Retired == nil {
			bad("a basis with an end date must say why it was retired")
		}
	}
	if b.Retired != nil {
		if b.InForceUntil == nil {
			bad("a retired basis needs in_force_until")
		}
		if strings.TrimSpace(b.Retired.Why) == "" || len(b.Retired.ReplacedBy) == 0 {
			bad("retired needs why and replaced_by")
		}
		for _, r := range b.Retired.ReplacedBy {
			if n, ok := all[r]; !ok || n.Retired != nil {
				bad("replaced_by %q is not a current basis", r)
			}
		}
	}
	if len(b.From) == 0 || len(b.To) == 0 {
		bad("from and to must not be empty")
	}
	for _, k := range slices.Concat(b.From, b.To) {
		if !validKinds[k] {
			bad("unknown agency kind %q", k)
		}
	}
	switch {
	case b.EmergencyOnly && b.MaxValidityDays != nil:
		bad("an emergency-only basis issues no flags: max_validity_days must be null")
	case !b.EmergencyOnly && (b.MaxValidityDays == nil || *b.MaxValidityDays < 1 || *b.MaxValidityDays > maxValidityDays):
		bad("max_validity_days must be 1 to %d", maxValidityDays)
	}
	errs = append(errs, lintNotice(b.Code+": obligations", b.Obligations.SubjectNotice)...)
	errs = append(errs, lintDecision(b.Code+": obligations", b.Obligations.DecisionRecord)...)
	if strings.TrimSpace(b.Obligations.IssuerToldAtDisclosure.Provision) == "" {
		bad("obligations.issuer_told_at_disclosure.provision is required")
	}
	return errs
}

func lintNotice(where string, n SubjectNotice) []string {
	var errs []string
	if !slices.Contains([]string{NoticeNone, NoticeIfPossible, NoticeRequired}, n.Level) {
		errs = append(errs, fmt.Sprintf("%s.subject_notice.level %q is not none, if_possible or required", where, n.Level))
	}
	if strings.TrimSpace(n.Provision) == "" {
		errs = append(errs, where+".subject_notice.provision is required")
	}
	return errs
}

func lintDecision(where string, d DecisionObligation) []string {
	var errs []string
	if strings.TrimSpace(d.Provision) == "" {
		errs = append(errs, where+".decision_record.provision is required")
	}
	for _, r := range d.DecidedByRoles {
		if !slices.Contains(DecidedByRoles, r) {
			errs = append(errs, fmt.Sprintf("%s.decision_record: unknown role %q", where, r))
		}
	}
	if !d.Required && (len(d.DecidedByRoles) > 0 || d.Notice || d.MilderMeasures) {
		errs = append(errs, where+".decision_record: conditions on a record that is not required")
	}
	return errs
}

// lintEmergencyRoutes checks that on no day two emergency-only bases are in
// force for the same issuer kind: the life-and-health exception must have
// exactly one route per issuer kind, so a commencement date that makes two
// overlap has to end the old one.
func lintEmergencyRoutes(bases map[string]LegalBasis) []string {
	var errs []string
	codes := slices.Sorted(maps.Keys(bases))
	for i, a := range codes {
		for _, b := range codes[i+1:] {
			x, y := bases[a], bases[b]
			if !x.EmergencyOnly || !y.EmergencyOnly || x.InForceFrom == nil || y.InForceFrom == nil {
				continue
			}
			shared := slices.ContainsFunc(x.From, func(k string) bool { return slices.Contains(y.From, k) })
			endX, endY := "9999-12-31", "9999-12-31"
			if x.InForceUntil != nil {
				endX = *x.InForceUntil
			}
			if y.InForceUntil != nil {
				endY = *y.InForceUntil
			}
			if shared && *x.InForceFrom <= endY && *y.InForceFrom <= endX {
				errs = append(errs, fmt.Sprintf("emergency routes %s and %s are in force on the same days for the same issuer kind", a, b))
			}
		}
	}
	return errs
}
