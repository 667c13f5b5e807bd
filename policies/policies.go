// Package policies decides what Varsel allows and discloses.
//
// The rules are Rego v1 modules embedded in the binary: authz (may this
// principal perform this action?) and disclosure (which of a subject's flags
// does this check reveal, which fields of each, and under which legal basis?).
// The legal bases are data (data.json at data.legal_bases): which agency kinds
// may disclose to which, and under what conditions.
//
// [New] parses and compiles the modules and prepares both queries once, so a
// request pays only for one evaluation. Every rule set denies by default: an
// unknown action, role or legal basis, malformed input or an undefined result
// is a denial, never an allow. [Engine.Version] identifies the policy files so
// that every audited decision can name the exact policy that made it.
//
// The Rego tests live beside the rules (*_test.rego) and run with both
// `opa test policies` and `go test ./policies/`.
package policies

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
)

// files holds the policy modules, their tests and the legal bases. The tests
// are embedded too so that the Go test suite runs exactly the shipped bytes;
// the engine itself loads only the modules and data.json.
//
//go:embed data.json */*.rego
var files embed.FS

const (
	dataFile        = "data.json"
	authzQuery      = "data.authz.decision"
	disclosureQuery = "data.disclosure.decision"

	// maxValidityDays is the longest any flag lasts; a basis may set less.
	maxValidityDays = 365
)

// Actions that [Engine.Authorize] knows. Any other action is denied.
const (
	ActionFlagIssue       = "flag.issue"
	ActionWarningIssue    = "warning.issue"
	ActionFlagRead        = "flag.read"
	ActionFlagRevoke      = "flag.revoke"
	ActionCheckRun        = "check.run"
	ActionWarningInbox    = "warning.inbox"
	ActionWarningAck      = "warning.ack"
	ActionWebhookSet      = "webhook.set"
	ActionDisclosuresRead = "disclosures.read"
	ActionAuditSearch     = "audit.search"
	ActionAuditReview     = "audit.review"
	ActionAuditReport     = "audit.report"
	ActionAuditStats      = "audit.stats"
	ActionAuditEntries    = "audit.entries"
)

// reasonUndefined is the reason given when a policy returns no decision.
const reasonUndefined = "undefined_decision"

// Principal is the verified caller: the agency that signed the request and
// the employee's claims.
type Principal struct {
	Agency     string `json:"agency"`
	AgencyKind string `json:"agency_kind"`
	Role       string `json:"role"`
	Office     string `json:"office"`
	Sub        string `json:"sub"`
}

// AuthzInput asks whether Principal may perform Action on Resource.
//
// Resource is action specific. [IssueResource], [FlagResource] and
// [OfficeResource] (and their pointers) are converted directly; any other
// value goes through JSON, which is slower but equivalent. Actions without a
// resource (check.run, disclosures.read, audit.*) take nil.
type AuthzInput struct {
	Action    string    `json:"action"`
	Principal Principal `json:"principal"`
	Resource  any       `json:"resource"`
	// Time is the decision time: a legal basis counts only on the days it
	// is in force (its date in Norway). The zero time is no time, and no
	// basis is in force then.
	Time time.Time `json:"time"`
}

// IssueResource is the resource of flag.issue and warning.issue.
type IssueResource struct {
	Level      string        `json:"level"`
	LegalBasis string        `json:"legal_basis"`
	Audience   IssueAudience `json:"audience"`
	// ValidityDays is valid_until − valid_from in whole days, rounded up.
	ValidityDays int `json:"validity_days"`
	// SubjectNoticeGiven: the flag records whether the person was told,
	// or why not.
	SubjectNoticeGiven bool          `json:"subject_notice_given"`
	Decision           IssueDecision `json:"decision"`
}

// IssueDecision is what the policy needs to know of a flag's decision record.
type IssueDecision struct {
	Given         bool   `json:"given"`
	DecidedByRole string `json:"decided_by_role"`
	// Notice is "given" (the person was told in advance and could
	// respond), "explained" (the record says why not) or "".
	Notice                   string `json:"notice"`
	MilderMeasuresConsidered bool   `json:"milder_measures_considered"`
}

// Notice states of an IssueDecision.
const (
	NoticeGiven     = "given"
	NoticeExplained = "explained"
)

// IssueAudience is the audience of a flag being issued. OfficeKinds are the
// kinds of the agencies that own the audience's offices, resolved by the
// caller, so that the policy can check them against the basis's direction.
type IssueAudience struct {
	Kinds       []string `json:"kinds"`
	Offices     []string `json:"offices"`
	OfficeKinds []string `json:"office_kinds"`
}

// FlagResource is the resource of flag.read and flag.revoke.
type FlagResource struct {
	IssuerAgency string `json:"issuer_agency"`
}

// OfficeResource is the resource of warning.inbox and warning.ack.
type OfficeResource struct {
	Office string `json:"office"`
}

// Decision is the authz answer. Reasons are short machine-readable strings:
// on denial, why (e.g. "role_not_permitted", "basis_direction",
// "exclusion_too_long"); on allow, the action that was permitted.
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
}

// DisclosureInput asks which of a subject's flags a check reveals to
// Principal at Time. Flags must hold only active, unexpired flags.
type DisclosureInput struct {
	Principal Principal  `json:"principal"`
	Purpose   string     `json:"purpose"`
	Emergency bool       `json:"emergency"`
	Flags     []FlagMeta `json:"flags"`
	// Time is the decision time: a flag is disclosed only under a basis in
	// force then.
	Time time.Time `json:"time"`
}

// FlagMeta is what the disclosure policy needs to know about a flag.
type FlagMeta struct {
	ID           string   `json:"id"`
	Level        string   `json:"level"`
	IssuerAgency string   `json:"issuer_agency"`
	IssuerKind   string   `json:"issuer_kind"`
	IssuerOffice string   `json:"issuer_office"`
	LegalBasis   string   `json:"legal_basis"`
	Audience     Audience `json:"audience"`
	// DutyDesk: the issuer chose to be represented by the duty desk.
	DutyDesk bool `json:"duty_desk"`
}

// Audience is who a flag is meant for: agency kinds and office ids.
type Audience struct {
	Kinds   []string `json:"kinds"`
	Offices []string `json:"offices"`
}

// Disclosure is the disclosure answer. Allow says whether the role may run a
// check at all; Flags lists only what is disclosed in full, sorted by id, and
// Exception the flags the life-and-health exception reaches, sorted by id;
// both are empty when Allow is false. ReviewRequired is set for every
// emergency check.
type Disclosure struct {
	Allow          bool        `json:"allow"`
	Flags          []Disclosed `json:"flags"`
	Exception      []Excepted  `json:"exception"`
	ReviewRequired bool        `json:"review_required"`
	Reasons        []string    `json:"reasons"`
}

// Disclosed is one flag disclosed in full. Fields lists, sorted, the flag
// fields the reader may see; anything else must be left out of the response.
// LegalBasis is the basis it is disclosed under (for the audit entry),
// ShownBasis what the reader is shown as its basis. DutyDesk means the caller
// must replace issuer and contact with the broker's duty desk.
type Disclosed struct {
	ID         string   `json:"id"`
	Fields     []string `json:"fields"`
	LegalBasis string   `json:"legal_basis"`
	ShownBasis string   `json:"shown_basis"`
	DutyDesk   bool     `json:"duty_desk"`
}

// Excepted is a flag the life-and-health exception reaches: it is shown
// only inside the one aggregate of the check (highest level, union of
// precautions), never by itself. LegalBasis is the exception's route for
// the issuer's kind (fvl-13b-7 for NAV, politiregl-27-1 for the police).
type Excepted struct {
	ID         string `json:"id"`
	LegalBasis string `json:"legal_basis"`
}

// Engine holds the prepared queries. Safe for concurrent use.
type Engine struct {
	authz      rego.PreparedEvalQuery
	disclosure rego.PreparedEvalQuery
	version    string
	catalogue  *Catalogue
	codes      []string
	words      vocabulary

	memoOK   bool         // the disclosure rules do not read the sub
	noFlags  sync.Map     // noFlagsKey → Disclosure, for checks of people without flags
	noFlagsN atomic.Int64 // entries stored, to bound the memo

	flagsMemoOK bool                      // the rules read the time only as the decision day (memo.go)
	flagsMemo   atomic.Pointer[flagsMemo] // the decision day's kept decisions for checks with flags
}

// New parses the embedded modules and legal bases, compiles them in strict
// mode and prepares both queries. Call it once at start.
func New(ctx context.Context) (*Engine, error) {
	return newEngine(ctx, files)
}

func newEngine(ctx context.Context, fsys fs.FS) (*Engine, error) {
	src, err := policyFiles(fsys)
	if err != nil {
		return nil, err
	}
	cat, err := parseCatalogue(src[dataFile])
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := util.UnmarshalJSON(src[dataFile], &data); err != nil {
		return nil, fmt.Errorf("parse %s: %w", dataFile, err)
	}
	dataValue, err := ast.InterfaceToValue(data)
	if err != nil {
		return nil, fmt.Errorf("convert %s: %w", dataFile, err)
	}
	dataObject, ok := dataValue.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not an object", dataFile)
	}

	modules := make(map[string]*ast.Module, len(src))
	for name, bs := range src {
		if !strings.HasSuffix(name, ".rego") {
			continue
		}
		m, err := ast.ParseModuleWithOpts(name, string(bs), ast.ParserOptions{
			RegoVersion:       ast.RegoV1,
			ProcessAnnotation: true,
		})
		if err != nil {
			return nil, fmt.Errorf("parse policy %s: %w", name, err)
		}
		modules[name] = m
	}
	compiler := ast.NewCompiler().WithStrict(true)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("compile policies: %w", compiler.Errors)
	}

	// The store holds AST values, so data lookups need no conversion.
	store := inmem.NewFromASTObject(dataObject)
	prepare := func(query string, decode func(*ast.Term, *rego.EvalContext) (any, error)) (rego.PreparedEvalQuery, error) {
		pq, err := rego.New(
			rego.Query(query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.GenerateJSON(decode),
		).PrepareForEval(ctx)
		if err != nil {
			return pq, fmt.Errorf("prepare %s: %w", query, err)
		}
		return pq, nil
	}
	e := &Engine{version: version(src), catalogue: cat}
	if e.authz, err = prepare(authzQuery, decodeDecision); err != nil {
		return nil, err
	}
	if e.disclosure, err = prepare(disclosureQuery, decodeDisclosure); err != nil {
		return nil, err
	}
	// The no-flags memo is exact only while the rules never read the sub.
	e.memoOK = !readsSub(modules, "disclosure")
	e.flagsMemoOK = e.memoOK && oslo != nil && !readsTimeOutsideDay(modules)
	e.codes = slices.Sorted(maps.Keys(cat.LegalBases))
	e.words = newVocabulary(slices.Concat(baseWords, e.codes)...)
	return e, nil
}

// policyFiles returns the policy modules (not their tests) and data.json by
// path.
func policyFiles(fsys fs.FS) (map[string][]byte, error) {
	src := make(map[string][]byte)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isPolicyFile(p) {
			return nil
		}
		bs, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		src[p] = bs
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded policies: %w", err)
	}
	if _, ok := src[dataFile]; !ok {
		return nil, fmt.Errorf("read embedded policies: %s missing", dataFile)
	}
	return src, nil
}

func isPolicyFile(p string) bool {
	if p == dataFile {
		return true
	}
	return path.Ext(p) == ".rego" && !strings.HasSuffix(p, "_test.rego")
}

// version hashes the sorted file names with their contents. Each file adds
// name, NUL, decimal length, NUL, contents, so no two file sets collide by
// concatenation.
func version(src map[string][]byte) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(src)) {
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(src[name]))))
		h.Write([]byte{0})
		h.Write(src[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

var validKinds = map[string]bool{"nav-state": true, "nav-municipal": true, "police": true, "health": true}

// Catalogue returns a copy of the legal bases and the obligations data.json holds.
func (e *Engine) Catalogue() Catalogue {
	c := Catalogue{IssuerObligations: maps.Clone(e.catalogue.IssuerObligations),
		LevelObligations: map[string]LevelObligations{}, LegalBases: map[string]LegalBasis{}}
	for l := range e.catalogue.LevelObligations {
		c.LevelObligations[l], _ = e.LevelObligations(l)
	}
	for code, b := range e.catalogue.LegalBases {
		c.LegalBases[code] = cloneBasis(b)
	}
	return c
}

// Version is the hex SHA-256 of the policy modules and data.json, recorded
// with every decision.
func (e *Engine) Version() string { return e.version }

// Version returns what [Engine.Version] of an engine built by [New] returns,
// without compiling anything: for operator commands that record a decision
// but evaluate no policy.
func Version() (string, error) {
	src, err := policyFiles(files)
	if err != nil {
		return "", err
	}
	return version(src), nil
}

// LegalBases returns every legal basis in the catalogue, retired ones and
// those not yet in force included, sorted by code.
func (e *Engine) LegalBases() []LegalBasis {
	out := make([]LegalBasis, 0, len(e.codes))
	for _, code := range e.codes {
		out = append(out, cloneBasis(e.catalogue.LegalBases[code]))
	}
	return out
}

// LegalBasesAt returns the legal bases in force at t, sorted by code.
func (e *Engine) LegalBasesAt(t time.Time) []LegalBasis {
	out := []LegalBasis{}
	for _, code := range e.codes {
		if b := e.catalogue.LegalBases[code]; b.InForceAt(t) {
			out = append(out, cloneBasis(b))
		}
	}
	return out
}

// LegalBasis returns the legal basis with the given code, in force or not:
// old audit entries and flags still resolve after a basis is retired.
func (e *Engine) LegalBasis(code string) (LegalBasis, bool) {
	b, ok := e.catalogue.LegalBases[code]
	if !ok {
		return LegalBasis{}, false
	}
	return cloneBasis(b), true
}

// SubjectNoticeFor is the strictest subject-notice duty that a flag under
// basis by an issuer of kind issuerKind carries: the basis's own, or the
// one the issuer's kind owes whatever the basis (health personnel:
// pasient- og brukerrettighetsloven § 3-6).
func (e *Engine) SubjectNoticeFor(b LegalBasis, issuerKind string) SubjectNotice {
	n := b.Obligations.SubjectNotice
	if o, ok := e.catalogue.IssuerObligations[issuerKind]; ok && noticeRank[o.SubjectNotice.Level] > noticeRank[n.Level] {
		n = o.SubjectNotice
	}
	return n
}

var noticeRank = map[string]int{NoticeNone: 0, NoticeIfPossible: 1, NoticeRequired: 2}

// LevelObligations returns what a flag's level demands whatever the basis.
func (e *Engine) LevelObligations(level string) (LevelObligations, bool) {
	o, ok := e.catalogue.LevelObligations[level]
	if ok {
		o.DecisionRecord.DecidedByRoles = slices.Clone(o.DecisionRecord.DecidedByRoles)
	}
	return o, ok
}

func cloneBasis(b LegalBasis) LegalBasis {
	b.From = slices.Clone(b.From)
	b.To = slices.Clone(b.To)
	b.Obligations.DecisionRecord.DecidedByRoles = slices.Clone(b.Obligations.DecisionRecord.DecidedByRoles)
	if b.Retired != nil {
		r := *b.Retired
		r.ReplacedBy = slices.Clone(r.ReplacedBy)
		b.Retired = &r
	}
	return b
}

// Authorize decides whether in.Principal may perform in.Action. An error
// means the policy could not be evaluated; treat it as a denial.
func (e *Engine) Authorize(ctx context.Context, in AuthzInput) (Decision, error) {
	input, err := e.words.authzValue(in)
	if err != nil {
		return Decision{}, fmt.Errorf("authorize %q: %w", in.Action, err)
	}
	rs, err := e.authz.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return Decision{}, fmt.Errorf("authorize %q: %w", in.Action, err)
	}
	v, err := single(rs)
	if err != nil {
		return Decision{}, fmt.Errorf("authorize %q: %w", in.Action, err)
	}
	if v == nil {
		return Decision{Reasons: []string{reasonUndefined}}, nil
	}
	d, ok := v.(Decision)
	if !ok {
		return Decision{}, fmt.Errorf("authorize %q: result is %T", in.Action, v)
	}
	return d, nil
}

// Disclose decides which of in.Flags a check reveals to in.Principal. An
// error means the policy could not be evaluated; disclose nothing.
func (e *Engine) Disclose(ctx context.Context, in DisclosureInput) (Disclosure, error) {
	if len(in.Flags) > 0 && e.flagsMemoOK && !in.Time.IsZero() {
		return e.discloseFlags(ctx, in)
	}
	// Most checks are about people without flags. Their decision depends
	// only on the input's other fields, so it is kept, keyed by every field
	// the disclosure rules read (New refuses the memo if they read sub).
	var key noFlagsKey
	if len(in.Flags) == 0 && e.memoOK {
		// The time is not in the key: without flags, no basis is looked at.
		key = noFlagsKey{in.Principal.Agency, in.Principal.AgencyKind, in.Principal.Role, in.Principal.Office, in.Purpose, in.Emergency}
		if v, ok := e.noFlags.Load(key); ok {
			return v.(Disclosure).clone(), nil
		}
	}
	d, err := e.disclose(ctx, in)
	if err == nil && len(in.Flags) == 0 && e.memoOK && e.noFlagsN.Add(1) <= maxNoFlagsMemo {
		e.noFlags.Store(key, d.clone())
	}
	return d, err
}

// maxNoFlagsMemo bounds the memo (agencies × offices × roles × purposes × 2).
const maxNoFlagsMemo = 50_000

type noFlagsKey struct {
	agency, kind, role, office, purpose string
	emergency                           bool
}

func (d Disclosure) clone() Disclosure {
	d.Flags = slices.Clone(d.Flags)
	d.Exception = slices.Clone(d.Exception)
	d.Reasons = slices.Clone(d.Reasons)
	if d.Flags == nil {
		d.Flags = []Disclosed{}
	}
	if d.Exception == nil {
		d.Exception = []Excepted{}
	}
	return d
}

// readsSub reports whether the package's rules may read the principal's
// sub: a ref to input.principal.sub, or to input.principal or input whole
// (which could be indexed by sub later).
func readsSub(modules map[string]*ast.Module, pkg string) bool {
	found := false
	principal, sub := ast.StringTerm("principal"), ast.StringTerm("sub")
	for _, m := range modules {
		if m.Package.Path.String() != "data."+pkg {
			continue
		}
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			switch {
			case len(r) == 1:
				found = true
			case r[1].Equal(principal) && (len(r) == 2 || r[2].Equal(sub) || !ast.IsConstant(r[2].Value)):
				found = true
			case !ast.IsConstant(r[1].Value):
				found = true
			}
			return false
		})
	}
	return found
}

func (e *Engine) disclose(ctx context.Context, in DisclosureInput) (Disclosure, error) {
	rs, err := e.disclosure.Eval(ctx, rego.EvalParsedInput(e.words.disclosureValue(in)))
	if err != nil {
		return Disclosure{}, fmt.Errorf("disclose %d flags: %w", len(in.Flags), err)
	}
	v, err := single(rs)
	if err != nil {
		return Disclosure{}, fmt.Errorf("disclose %d flags: %w", len(in.Flags), err)
	}
	if v == nil {
		return Disclosure{Flags: []Disclosed{}, Exception: []Excepted{}, ReviewRequired: in.Emergency, Reasons: []string{reasonUndefined}}, nil
	}
	d, ok := v.(Disclosure)
	if !ok {
		return Disclosure{}, fmt.Errorf("disclose %d flags: result is %T", len(in.Flags), v)
	}
	return d, nil
}

// single returns the decoded value of a one-expression query, or nil when
// the decision is undefined.
func single(rs rego.ResultSet) (any, error) {
	switch {
	case len(rs) == 0:
		return nil, nil
	case len(rs) > 1:
		return nil, fmt.Errorf("%d results, want 1", len(rs))
	case len(rs[0].Expressions) != 1:
		return nil, fmt.Errorf("%d expressions, want 1", len(rs[0].Expressions))
	}
	return rs[0].Expressions[0].Value, nil
}

var errShape = errors.New("unexpected decision shape")
