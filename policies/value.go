package policies

import (
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Inputs are built as AST values and results decoded straight from AST
// terms: passing Go structs would make OPA round-trip them through JSON, and
// the default result conversion builds maps only for us to pick them apart
// again. Keys are shared terms; OPA never mutates input or result terms.
var (
	keyAction             = ast.StringTerm("action")
	keyPrincipal          = ast.StringTerm("principal")
	keyResource           = ast.StringTerm("resource")
	keyAgency             = ast.StringTerm("agency")
	keyAgencyKind         = ast.StringTerm("agency_kind")
	keyRole               = ast.StringTerm("role")
	keyOffice             = ast.StringTerm("office")
	keySub                = ast.StringTerm("sub")
	keyLevel              = ast.StringTerm("level")
	keyLegalBasis         = ast.StringTerm("legal_basis")
	keyAudience           = ast.StringTerm("audience")
	keyKinds              = ast.StringTerm("kinds")
	keyOfficeKinds        = ast.StringTerm("office_kinds")
	keyOffices            = ast.StringTerm("offices")
	keyValidityDays       = ast.StringTerm("validity_days")
	keySubjectNoticeGiven = ast.StringTerm("subject_notice_given")
	keyDecision           = ast.StringTerm("decision")
	keyGiven              = ast.StringTerm("given")
	keyDecidedByRole      = ast.StringTerm("decided_by_role")
	keyNotice             = ast.StringTerm("notice")
	keyMilderMeasures     = ast.StringTerm("milder_measures_considered")
	keyTime               = ast.StringTerm("time")
	keyException          = ast.StringTerm("exception")
	keyShownBasis         = ast.StringTerm("shown_basis")
	keyIssuerAgency       = ast.StringTerm("issuer_agency")
	keyIssuerKind         = ast.StringTerm("issuer_kind")
	keyIssuerOffice       = ast.StringTerm("issuer_office")
	keyPurpose            = ast.StringTerm("purpose")
	keyEmergency          = ast.StringTerm("emergency")
	keyFlags              = ast.StringTerm("flags")
	keyID                 = ast.StringTerm("id")
	keyAllow              = ast.StringTerm("allow")
	keyReasons            = ast.StringTerm("reasons")
	keyFields             = ast.StringTerm("fields")
	keyDutyDesk           = ast.StringTerm("duty_desk")
	keyReviewRequired     = ast.StringTerm("review_required")
)

// vocabulary holds shared string terms for the words that recur in every
// input (agency kinds, roles, purposes, levels, legal basis codes), so that
// building an input allocates only for ids, offices and other free text.
type vocabulary map[string]*ast.Term

func newVocabulary(words ...string) vocabulary {
	v := make(vocabulary, len(words))
	for _, w := range words {
		v[w] = ast.StringTerm(w)
	}
	return v
}

// baseWords are the fixed vocabulary; New adds the legal basis codes.
var baseWords = []string{
	"",
	"nav-state", "nav-municipal", "police", "health", "broker",
	"caseworker", "reception", "security-coordinator", "police-liaison",
	"health-worker", "privacy-officer", "agency-admin",
	DecidedByOfficeHead, DecidedByController, DecidedByControllerDelegate, NoticeGiven, NoticeExplained,
	"meeting", "home-visit", "phone-call", "case-processing",
	"caution", "high", "exclusion",
	ActionFlagIssue, ActionWarningIssue, ActionFlagRead, ActionFlagRevoke,
	ActionCheckRun, ActionWarningInbox, ActionWarningAck, ActionDisclosuresRead,
	ActionAuditSearch, ActionAuditReview, ActionAuditReport, ActionAuditStats, ActionAuditEntries,
}

func (v vocabulary) str(s string) *ast.Term {
	if t, ok := v[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

// strs converts ss to an array; nil becomes [], never null.
func (v vocabulary) strs(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = v.str(s)
	}
	return ast.ArrayTerm(ts...)
}

func (v vocabulary) authzValue(in AuthzInput) (ast.Value, error) {
	res, err := v.resourceTerm(in.Resource)
	if err != nil {
		return nil, err
	}
	return ast.NewObject(
		ast.Item(keyAction, v.str(in.Action)),
		ast.Item(keyPrincipal, v.principalTerm(in.Principal)),
		ast.Item(keyResource, res),
		ast.Item(keyTime, timeTerm(in.Time)),
	), nil
}

// timeTerm is t in RFC 3339 (UTC, nanoseconds), or "" for the zero time,
// which no basis is in force at.
func timeTerm(t time.Time) *ast.Term {
	if t.IsZero() {
		return ast.StringTerm("")
	}
	return ast.StringTerm(t.UTC().Format(time.RFC3339Nano))
}

func (v vocabulary) resourceTerm(r any) (*ast.Term, error) {
	switch r := r.(type) {
	case nil:
		return ast.ObjectTerm(), nil
	case IssueResource:
		return v.issueTerm(&r), nil
	case *IssueResource:
		if r == nil {
			return ast.ObjectTerm(), nil
		}
		return v.issueTerm(r), nil
	case FlagResource:
		return ast.ObjectTerm(ast.Item(keyIssuerAgency, ast.StringTerm(r.IssuerAgency))), nil
	case *FlagResource:
		if r == nil {
			return ast.ObjectTerm(), nil
		}
		return ast.ObjectTerm(ast.Item(keyIssuerAgency, ast.StringTerm(r.IssuerAgency))), nil
	case OfficeResource:
		return ast.ObjectTerm(ast.Item(keyOffice, v.str(r.Office))), nil
	case *OfficeResource:
		if r == nil {
			return ast.ObjectTerm(), nil
		}
		return ast.ObjectTerm(ast.Item(keyOffice, v.str(r.Office))), nil
	}
	val, err := ast.InterfaceToValue(r)
	if err != nil {
		return nil, fmt.Errorf("convert resource %T: %w", r, err)
	}
	return ast.NewTerm(val), nil
}

func (v vocabulary) issueTerm(r *IssueResource) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(keyLevel, v.str(r.Level)),
		ast.Item(keyLegalBasis, v.str(r.LegalBasis)),
		ast.Item(keyAudience, ast.ObjectTerm(
			ast.Item(keyKinds, v.strs(r.Audience.Kinds)),
			ast.Item(keyOffices, v.strs(r.Audience.Offices)),
			ast.Item(keyOfficeKinds, v.strs(r.Audience.OfficeKinds)),
		)),
		ast.Item(keyValidityDays, ast.IntNumberTerm(r.ValidityDays)),
		ast.Item(keySubjectNoticeGiven, ast.BooleanTerm(r.SubjectNoticeGiven)),
		ast.Item(keyDecision, ast.ObjectTerm(
			ast.Item(keyGiven, ast.BooleanTerm(r.Decision.Given)),
			ast.Item(keyDecidedByRole, v.str(r.Decision.DecidedByRole)),
			ast.Item(keyNotice, v.str(r.Decision.Notice)),
			ast.Item(keyMilderMeasures, ast.BooleanTerm(r.Decision.MilderMeasuresConsidered)),
		)),
	)
}

func (v vocabulary) principalTerm(p Principal) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(keyAgency, ast.StringTerm(p.Agency)),
		ast.Item(keyAgencyKind, v.str(p.AgencyKind)),
		ast.Item(keyRole, v.str(p.Role)),
		ast.Item(keyOffice, v.str(p.Office)),
		ast.Item(keySub, ast.StringTerm(p.Sub)),
	)
}

func (v vocabulary) disclosureValue(in DisclosureInput) ast.Value {
	flags := make([]*ast.Term, len(in.Flags))
	for i := range in.Flags {
		f := &in.Flags[i]
		flags[i] = ast.ObjectTerm(
			ast.Item(keyID, ast.StringTerm(f.ID)),
			ast.Item(keyLevel, v.str(f.Level)),
			ast.Item(keyIssuerAgency, ast.StringTerm(f.IssuerAgency)),
			ast.Item(keyIssuerKind, v.str(f.IssuerKind)),
			ast.Item(keyIssuerOffice, v.str(f.IssuerOffice)),
			ast.Item(keyLegalBasis, v.str(f.LegalBasis)),
			ast.Item(keyAudience, ast.ObjectTerm(
				ast.Item(keyKinds, v.strs(f.Audience.Kinds)),
				ast.Item(keyOffices, v.strs(f.Audience.Offices)),
			)),
			ast.Item(keyDutyDesk, ast.BooleanTerm(f.DutyDesk)),
		)
	}
	return ast.NewObject(
		ast.Item(keyPrincipal, v.principalTerm(in.Principal)),
		ast.Item(keyPurpose, v.str(in.Purpose)),
		ast.Item(keyEmergency, ast.BooleanTerm(in.Emergency)),
		ast.Item(keyFlags, ast.ArrayTerm(flags...)),
		ast.Item(keyTime, timeTerm(in.Time)),
	)
}

// decodeDecision is the authz query's result converter: it returns a
// Decision, or an error for any other shape.
func decodeDecision(t *ast.Term, _ *rego.EvalContext) (any, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: authz decision is %s", errShape, ast.ValueName(t.Value))
	}
	var d Decision
	var err error
	if d.Allow, err = boolField(obj, keyAllow); err != nil {
		return nil, err
	}
	if d.Reasons, err = stringsField(obj, keyReasons); err != nil {
		return nil, err
	}
	return d, nil
}

// decodeDisclosure is the disclosure query's result converter: it returns a
// Disclosure, or an error for any other shape.
func decodeDisclosure(t *ast.Term, _ *rego.EvalContext) (any, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: disclosure decision is %s", errShape, ast.ValueName(t.Value))
	}
	var d Disclosure
	var err error
	if d.Allow, err = boolField(obj, keyAllow); err != nil {
		return nil, err
	}
	if d.ReviewRequired, err = boolField(obj, keyReviewRequired); err != nil {
		return nil, err
	}
	if d.Reasons, err = stringsField(obj, keyReasons); err != nil {
		return nil, err
	}
	arr, err := arrayField(obj, keyFlags)
	if err != nil {
		return nil, err
	}
	if !d.Allow && arr.Len() > 0 {
		return nil, fmt.Errorf("%w: %d flags disclosed to a reader who may not check", errShape, arr.Len())
	}
	d.Flags = make([]Disclosed, arr.Len())
	for i := range arr.Len() {
		f, ok := arr.Elem(i).Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("%w: flags[%d] is %s", errShape, i, ast.ValueName(arr.Elem(i).Value))
		}
		x := &d.Flags[i]
		if x.ID, err = stringField(f, keyID); err != nil {
			return nil, err
		}
		if x.Fields, err = stringsField(f, keyFields); err != nil {
			return nil, err
		}
		if x.LegalBasis, err = stringField(f, keyLegalBasis); err != nil {
			return nil, err
		}
		if x.ShownBasis, err = stringField(f, keyShownBasis); err != nil {
			return nil, err
		}
		if x.DutyDesk, err = boolField(f, keyDutyDesk); err != nil {
			return nil, err
		}
	}
	exc, err := arrayField(obj, keyException)
	if err != nil {
		return nil, err
	}
	if !d.Allow && exc.Len() > 0 {
		return nil, fmt.Errorf("%w: %d flags excepted for a reader who may not check", errShape, exc.Len())
	}
	d.Exception = make([]Excepted, exc.Len())
	for i := range exc.Len() {
		f, ok := exc.Elem(i).Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("%w: exception[%d] is %s", errShape, i, ast.ValueName(exc.Elem(i).Value))
		}
		if d.Exception[i].ID, err = stringField(f, keyID); err != nil {
			return nil, err
		}
		if d.Exception[i].LegalBasis, err = stringField(f, keyLegalBasis); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func field(obj ast.Object, key *ast.Term) (ast.Value, error) {
	t := obj.Get(key)
	if t == nil {
		return nil, fmt.Errorf("%w: %s missing", errShape, key.Value)
	}
	return t.Value, nil
}

func boolField(obj ast.Object, key *ast.Term) (bool, error) {
	v, err := field(obj, key)
	if err != nil {
		return false, err
	}
	b, ok := v.(ast.Boolean)
	if !ok {
		return false, fmt.Errorf("%w: %s is %s, want boolean", errShape, key.Value, ast.ValueName(v))
	}
	return bool(b), nil
}

func stringField(obj ast.Object, key *ast.Term) (string, error) {
	v, err := field(obj, key)
	if err != nil {
		return "", err
	}
	s, ok := v.(ast.String)
	if !ok {
		return "", fmt.Errorf("%w: %s is %s, want string", errShape, key.Value, ast.ValueName(v))
	}
	return string(s), nil
}

func arrayField(obj ast.Object, key *ast.Term) (*ast.Array, error) {
	v, err := field(obj, key)
	if err != nil {
		return nil, err
	}
	arr, ok := v.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("%w: %s is %s, want array", errShape, key.Value, ast.ValueName(v))
	}
	return arr, nil
}

func stringsField(obj ast.Object, key *ast.Term) ([]string, error) {
	arr, err := arrayField(obj, key)
	if err != nil {
		return nil, err
	}
	out := make([]string, arr.Len())
	for i := range arr.Len() {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("%w: %s[%d] is %s, want string", errShape, key.Value, i, ast.ValueName(arr.Elem(i).Value))
		}
		out[i] = string(s)
	}
	return out, nil
}
