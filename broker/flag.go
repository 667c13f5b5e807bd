package broker

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Flag levels (docs/api.md §4).
const (
	LevelCaution   = "caution"
	LevelHigh      = "high"
	LevelExclusion = "exclusion" // the office head's decision to keep the person out of an office's premises
)

// Vocabularies of a flag: a flag holds only these, never narrative.
var (
	Levels      = []string{LevelCaution, LevelHigh, LevelExclusion}
	Categories  = []string{"threats", "violence", "weapons", "harassment", "stalking"}
	Precautions = []string{"two-staff", "room-near-exit", "secure-zone-only", "alarm-ready",
		"no-home-visits", "police-present", "remote-contact-only", "consult-issuer-first"}
	// AudienceKinds are the kinds a flag may be meant for.
	AudienceKinds = []string{string(KindNAVState), string(KindNAVMunicipal), string(KindPolice), string(KindHealth)}
)

// Validity limits.
const (
	MaxValidity          = 365 * 24 * time.Hour
	MaxExclusionValidity = 84 * 24 * time.Hour
)

// Flag statuses.
const (
	FlagActive  = "active"
	FlagRevoked = "revoked"
	FlagExpired = "expired" // shown, never stored: an active flag past valid_until
)

// Audience is who a flag is meant for.
type Audience struct {
	Kinds   []string `json:"kinds"`
	Offices []string `json:"offices"`
}

// Contact is where a reader asks for more.
type Contact struct {
	Unit  string `json:"unit"`
	Phone string `json:"phone"`
}

// SubjectInformed records whether the person was told of the flag, or why
// not. A flag under a basis with a subject-notice duty (or by a health
// issuer, pasient- og brukerrettighetsloven § 3-6) must carry it.
type SubjectInformed struct {
	Informed *bool  `json:"informed"`
	Reason   string `json:"reason,omitempty"`
}

// Decision-maker roles of a decision record (policies.DecidedByRoles).
const (
	DecidedByOfficeHead         = "office-head"
	DecidedByController         = "controller"
	DecidedByControllerDelegate = "controller-delegate"
)

// DecidedByRoles are the roles a decision record may name.
var DecidedByRoles = []string{DecidedByOfficeHead, DecidedByController, DecidedByControllerDelegate}

// DecisionRecord is the record of the decision to disclose: required under a
// basis whose disclosures must be decided and recorded (politiregisterloven
// § 27 femte ledd, § 30 andre ledd) and for every exclusion, the office
// head's decision that the security coordinator records. Only who decided,
// when, the archive reference and, for an exclusion, the notice and the
// milder measures; never the grounds themselves, which stay in the issuer's
// own archive under Reference.
type DecisionRecord struct {
	DecidedBy     string     `json:"decided_by"`
	DecidedByRole string     `json:"decided_by_role"`
	DecidedAt     *time.Time `json:"decided_at"`
	Reference     string     `json:"reference"`
	// NoticeGivenAt is when the person was told in advance, CouldRespond
	// whether they could answer before the decision; NoNoticeReason why
	// not, when either is missing.
	NoticeGivenAt            *time.Time `json:"notice_given_at,omitempty"`
	CouldRespond             *bool      `json:"could_respond,omitempty"`
	NoNoticeReason           string     `json:"no_notice_reason,omitempty"`
	MilderMeasuresConsidered *bool      `json:"milder_measures_considered,omitempty"`
}

// NoticeState is how the record accounts for advance notice: "given" (told
// and could respond), "explained" (a reason why not) or "".
func (d *DecisionRecord) NoticeState() string {
	switch {
	case d == nil:
		return ""
	case d.NoticeGivenAt != nil && d.CouldRespond != nil && *d.CouldRespond:
		return "given"
	case d.NoNoticeReason != "":
		return "explained"
	}
	return ""
}

// Representation: who a reader sees as the issuer and contact.
const (
	RepresentedByIssuer   = "issuer"
	RepresentedByDutyDesk = "duty-desk"
)

// Flag is a minimal risk warning about one person.
type Flag struct {
	ID              string           `json:"id"`
	Status          string           `json:"status"`
	SubjectRef      string           `json:"-"`
	Issuer          string           `json:"issuer"`
	IssuerKind      AgencyKind       `json:"-"`
	IssuerOffice    string           `json:"issuer_office,omitempty"`
	IssuedBy        string           `json:"issued_by"`
	Level           string           `json:"level"`
	Categories      []string         `json:"categories"`
	Precautions     []string         `json:"precautions"`
	ValidFrom       time.Time        `json:"valid_from"`
	ValidUntil      time.Time        `json:"valid_until"`
	LegalBasis      string           `json:"legal_basis"`
	Audience        Audience         `json:"audience"`
	Contact         Contact          `json:"contact"`
	SubjectInformed *SubjectInformed `json:"subject_informed,omitempty"`
	Decision        *DecisionRecord  `json:"decision,omitempty"`
	// RepresentedBy is "duty-desk" when the issuer chose to be shown
	// through the broker's duty desk, else "issuer".
	RepresentedBy string     `json:"represented_by"`
	CreatedAt     time.Time  `json:"created_at"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	RevokeReason  string     `json:"revoke_reason,omitempty"`
}

// ViaDutyDesk reports whether the issuer chose the duty desk.
func (f *Flag) ViaDutyDesk() bool { return f.RepresentedBy == RepresentedByDutyDesk }

// StatusAt is the flag's status at t: expired once valid_until has passed.
func (f *Flag) StatusAt(t time.Time) string {
	if f.Status == FlagActive && !t.Before(f.ValidUntil) {
		return FlagExpired
	}
	return f.Status
}

// FlagRequest is the body of POST /v1/flags (and the flag part of a warning).
type FlagRequest struct {
	Subject         string           `json:"subject"`
	Level           string           `json:"level"`
	Categories      []string         `json:"categories"`
	Precautions     []string         `json:"precautions"`
	ValidFrom       *time.Time       `json:"valid_from,omitempty"`
	ValidUntil      *time.Time       `json:"valid_until"`
	LegalBasis      string           `json:"legal_basis"`
	Audience        Audience         `json:"audience"`
	Contact         Contact          `json:"contact"`
	SubjectInformed *SubjectInformed `json:"subject_informed,omitempty"`
	Decision        *DecisionRecord  `json:"decision,omitempty"`
	RepresentedBy   string           `json:"represented_by,omitempty"`
}

var phonePattern = regexp.MustCompile(`^\+?[0-9][0-9 ]{4,19}$`)

func invalidField(format string, args ...any) error {
	return CodeErrorf(EINVALID, CodeInvalidField, format, args...)
}

// Validate checks every field of a flag request that needs no lookup, at
// time now, and returns the validity window. The subject, the legal basis
// and the records a basis demands are checked by the caller (they need the
// test-subject setting and the catalogue); an exclusion's decision record
// and audience here, because the level alone demands them.
func (r *FlagRequest) Validate(issuerOffice string, now time.Time) (from, until time.Time, err error) {
	if !slices.Contains(Levels, r.Level) {
		return from, until, invalidField("level must be one of %s", strings.Join(Levels, ", "))
	}
	if err := checkSet("categories", r.Categories, Categories); err != nil {
		return from, until, err
	}
	if err := checkSet("precautions", r.Precautions, Precautions); err != nil {
		return from, until, err
	}
	if len(r.Audience.Kinds) == 0 && len(r.Audience.Offices) == 0 {
		return from, until, invalidField("audience needs at least one kind or office")
	}
	if len(r.Audience.Kinds) > 0 {
		if err := checkSet("audience.kinds", r.Audience.Kinds, AudienceKinds); err != nil {
			return from, until, err
		}
	}
	seen := map[string]bool{}
	for _, o := range r.Audience.Offices {
		if !ValidID(o) {
			return from, until, invalidField("audience.offices: %q is not an office id", truncate(o))
		}
		if seen[o] {
			return from, until, invalidField("audience.offices: %q given twice", o)
		}
		seen[o] = true
	}
	if len(r.Audience.Offices) > 200 {
		return from, until, invalidField("audience.offices: at most 200")
	}
	if err := CheckText("contact.unit", r.Contact.Unit, 100); err != nil {
		return from, until, err
	}
	if !phonePattern.MatchString(r.Contact.Phone) {
		return from, until, invalidField("contact.phone must be a phone number (digits and spaces, optional +)")
	}
	if r.SubjectInformed != nil {
		si := r.SubjectInformed
		switch {
		case si.Informed == nil:
			return from, until, invalidField("subject_informed.informed is required")
		case *si.Informed && si.Reason != "":
			return from, until, invalidField("subject_informed.reason is only for informed: false")
		case !*si.Informed:
			if err := CheckText("subject_informed.reason", si.Reason, 200); err != nil {
				return from, until, err
			}
		}
	}
	if err := r.Decision.validate(now); err != nil {
		return from, until, err
	}
	if r.Level == LevelExclusion {
		if err := r.validateExclusion(issuerOffice); err != nil {
			return from, until, err
		}
	}
	switch r.RepresentedBy {
	case "", RepresentedByIssuer, RepresentedByDutyDesk:
	default:
		return from, until, invalidField("represented_by must be %s or %s", RepresentedByIssuer, RepresentedByDutyDesk)
	}

	from = now
	if r.ValidFrom != nil {
		from = r.ValidFrom.UTC()
		if from.Before(now.Add(-24*time.Hour)) || from.After(now.Add(MaxValidity)) {
			return from, until, CodeErrorf(EINVALID, CodeInvalidValidity, "valid_from must be within a day before now and a year after")
		}
	}
	if r.ValidUntil == nil {
		return from, until, CodeErrorf(EINVALID, CodeInvalidValidity, "valid_until is required")
	}
	until = r.ValidUntil.UTC()
	if !until.After(from) || !until.After(now) {
		return from, until, CodeErrorf(EINVALID, CodeInvalidValidity, "valid_until must be after valid_from and in the future")
	}
	limit, what := MaxValidity, "365 days"
	if r.Level == LevelExclusion {
		limit, what = MaxExclusionValidity, "84 days for an exclusion"
	}
	if until.Sub(from) > limit {
		return from, until, CodeErrorf(EINVALID, CodeInvalidValidity, "a flag may be valid for at most %s", what)
	}
	return from.Truncate(time.Microsecond), until.Truncate(time.Microsecond), nil
}

// validate checks a decision record's fields, when there is one.
func (d *DecisionRecord) validate(now time.Time) error {
	if d == nil {
		return nil
	}
	if err := CheckText("decision.decided_by", d.DecidedBy, 100); err != nil {
		return err
	}
	if !slices.Contains(DecidedByRoles, d.DecidedByRole) {
		return invalidField("decision.decided_by_role must be one of %s", strings.Join(DecidedByRoles, ", "))
	}
	if d.DecidedAt == nil || d.DecidedAt.After(now.Add(5*time.Minute)) || d.DecidedAt.Before(now.Add(-MaxValidity)) {
		return invalidField("decision.decided_at is required: when the decision was taken, within the last year")
	}
	if err := CheckText("decision.reference", d.Reference, 100); err != nil {
		return err
	}
	if d.NoticeGivenAt != nil {
		if d.NoticeGivenAt.After(*d.DecidedAt) {
			return invalidField("decision.notice_given_at must be before the decision (decided_at)")
		}
		if d.CouldRespond == nil {
			return invalidField("decision.could_respond is required with notice_given_at")
		}
	} else if d.CouldRespond != nil {
		return invalidField("decision.could_respond is only for a notice given (notice_given_at)")
	}
	if d.NoNoticeReason != "" {
		if err := CheckText("decision.no_notice_reason", d.NoNoticeReason, 200); err != nil {
			return err
		}
		if d.NoticeState() == "given" {
			return invalidField("decision.no_notice_reason is only for a notice not given or no chance to respond")
		}
	}
	return nil
}

// validateExclusion checks what an exclusion needs whatever its basis: the
// office head's complete decision record, and the issuer's own office, and
// nothing else, as its audience.
func (r *FlagRequest) validateExclusion(issuerOffice string) error {
	d := r.Decision
	switch {
	case d == nil:
		return invalidField("an exclusion needs its decision record (decision): who decided, when, the reference, the notice and the milder measures considered")
	case d.DecidedByRole != DecidedByOfficeHead:
		return invalidField("an exclusion is the office head's decision: decision.decided_by_role must be %s", DecidedByOfficeHead)
	case d.NoticeState() == "":
		return invalidField("an exclusion's decision must say when the person was told and could respond (notice_given_at, could_respond) or why not (no_notice_reason)")
	case d.MilderMeasuresConsidered == nil || !*d.MilderMeasuresConsidered:
		return invalidField("an exclusion's decision must record that milder measures were considered (milder_measures_considered: true)")
	case issuerOffice == "":
		return invalidField("an exclusion is issued from a NAV office: the token needs an office")
	case len(r.Audience.Kinds) > 0 || len(r.Audience.Offices) != 1 || r.Audience.Offices[0] != issuerOffice:
		return invalidField("an exclusion's audience is its own office alone: audience must be {\"offices\": [%q]}", issuerOffice)
	}
	return nil
}

func checkSet(name string, got, allowed []string) error {
	if len(got) == 0 {
		return invalidField("%s needs at least one of %s", name, strings.Join(allowed, ", "))
	}
	seen := map[string]bool{}
	for _, v := range got {
		if !slices.Contains(allowed, v) {
			return invalidField("%s: %q is not one of %s", name, truncate(v), strings.Join(allowed, ", "))
		}
		if seen[v] {
			return invalidField("%s: %q given twice", name, v)
		}
		seen[v] = true
	}
	return nil
}

// CheckText allows a short single line: a unit's name or a reason, never
// narrative.
func CheckText(name, s string, max int) error {
	n := utf8.RuneCountInString(strings.TrimSpace(s))
	if n == 0 || n > max {
		return invalidField("%s must be 1 to %d characters", name, max)
	}
	if !utf8.ValidString(s) || strings.ContainsAny(s, "\n\r\t") || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
		return invalidField("%s must be one line of text", name)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%.40s…", s)
	}
	return s
}
