package policies

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/util"
)

// minCoverage is the Rego line coverage, over the policy modules, below which
// the suite fails.
const minCoverage = 90.0

// TestRego runs every *_test.rego test embedded beside the rules, against the
// same data.json, and checks their coverage of the policy modules.
func TestRego(t *testing.T) {
	ctx := context.Background()
	modules := make(map[string]*ast.Module)
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		bs, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(p, string(bs), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			return err
		}
		modules[p] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := fs.ReadFile(files, dataFile)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := util.UnmarshalJSON(bs, &data); err != nil {
		t.Fatal(err)
	}

	cov := cover.New()
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetCompiler(ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)).
		SetStore(inmem.NewFromObject(data)).
		SetModules(modules).
		SetCoverageQueryTracer(cov).
		SetCoverageRuns([]cover.Kind{}).
		RunTests(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for r := range ch {
		ran++
		name := strings.TrimPrefix(r.Package, "data.") + "." + r.Name
		switch {
		case r.Error != nil:
			t.Errorf("%s: error: %v", name, r.Error)
		case r.Fail:
			t.Errorf("%s: FAIL at %v", name, r.Location)
		case r.Skip:
			t.Logf("%s: skipped", name)
		}
	}
	if ran == 0 {
		t.Fatal("no Rego tests ran")
	}
	t.Logf("%d Rego tests ran", ran)

	policy := make(map[string]*ast.Module)
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			policy[name] = m
		}
	}
	report := cov.Report(policy)
	if report.Coverage < minCoverage {
		for name, f := range report.Files {
			for _, r := range f.NotCovered {
				t.Logf("%s: lines %d-%d not covered", name, r.Start.Row, r.End.Row)
			}
		}
		t.Errorf("Rego coverage %.1f%%, want >= %.0f%%", report.Coverage, minCoverage)
	}
	t.Logf("Rego coverage %.1f%%", report.Coverage)
}

var (
	engineOnce sync.Once
	engine     *Engine
	engineErr  error
)

func testEngine(tb testing.TB) *Engine {
	tb.Helper()
	engineOnce.Do(func() { engine, engineErr = New(context.Background()) })
	if engineErr != nil {
		tb.Fatal(engineErr)
	}
	return engine
}

func TestVersion(t *testing.T) {
	e := testEngine(t)
	v := e.Version()
	if len(v) != 64 {
		t.Fatalf("Version() = %q, want 64 hex chars", v)
	}
	if _, err := hex.DecodeString(v); err != nil {
		t.Fatalf("Version() = %q: %v", v, err)
	}
	e2, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e2.Version() != v {
		t.Errorf("Version() not stable: %s then %s", v, e2.Version())
	}
	if pv, err := Version(); err != nil || pv != v {
		t.Errorf("package Version() = %q, %v; the engine's is %s", pv, err, v)
	}

	src, err := policyFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	for name := range src {
		if strings.HasSuffix(name, "_test.rego") {
			t.Errorf("policy files include test %s", name)
		}
	}
	for _, want := range []string{dataFile, "authz/authz.rego", "disclosure/disclosure.rego"} {
		if _, ok := src[want]; !ok {
			t.Errorf("policy files lack %s", want)
		}
	}
	changed := maps.Clone(src)
	changed[dataFile] = append(slices.Clone(src[dataFile]), ' ')
	if version(changed) == v {
		t.Error("Version() does not change with data.json")
	}
	// Moving bytes between a name and its contents must change the hash.
	if version(map[string][]byte{"a": []byte("bc")}) == version(map[string][]byte{"ab": []byte("c")}) {
		t.Error("version is ambiguous")
	}
}

func TestLegalBases(t *testing.T) {
	e := testEngine(t)
	want := []string{"fvl-13b-7", "hpl-23-4", "hpl-31", "navl-16", "navl-7", "politiregl-27", "sotjl-44", "strl-196"}
	var got []string
	for _, b := range e.LegalBases() {
		got = append(got, b.Code)
		if b.Title == "" || b.Citation == "" || b.Conditions == "" || len(b.From) == 0 || len(b.To) == 0 {
			t.Errorf("%s incomplete: %+v", b.Code, b)
		}
		if b.EmergencyOnly != (b.Code == EmergencyBasis) {
			t.Errorf("%s: emergency_only = %v", b.Code, b.EmergencyOnly)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LegalBases() codes = %v, want %v", got, want)
	}

	b, ok := e.LegalBasis("navl-16")
	if !ok || !b.SameOffice || !reflect.DeepEqual(b.To, []string{"nav-state", "nav-municipal"}) {
		t.Errorf("LegalBasis(navl-16) = %+v, %v", b, ok)
	}
	b.To[0] = "broker"
	if again, _ := e.LegalBasis("navl-16"); again.To[0] != "nav-state" {
		t.Error("LegalBasis returns shared slices")
	}
	if b, ok := e.LegalBasis("hpl-31"); !ok || b.SameOffice || !reflect.DeepEqual(b.To, []string{"police"}) {
		t.Errorf("LegalBasis(hpl-31) = %+v, %v", b, ok)
	}
	if _, ok := e.LegalBasis("gdpr-6"); ok {
		t.Error("LegalBasis(gdpr-6) found")
	}
}

var (
	policeLiaison = Principal{Agency: "oslo-pd", AgencyKind: "police", Role: "police-liaison", Sub: "p1"}
	navCoord      = Principal{Agency: "nav-state", AgencyKind: "nav-state", Role: "security-coordinator", Office: "nav-grorud", Sub: "s1"}
	navCaseworker = Principal{Agency: "nav-state", AgencyKind: "nav-state", Role: "caseworker", Office: "nav-grorud", Sub: "s2"}
	munReception  = Principal{Agency: "oslo-kommune", AgencyKind: "nav-municipal", Role: "reception", Office: "nav-grorud", Sub: "m1"}
	healthWorker  = Principal{Agency: "ous", AgencyKind: "health", Role: "health-worker", Sub: "h1"}
)

func with(p Principal, role string) Principal {
	p.Role = role
	return p
}

func TestAuthorize(t *testing.T) {
	e := testEngine(t)
	issue := func(level, basis string, kinds, officeKinds []string, days int, informed bool) IssueResource {
		return IssueResource{Level: level, LegalBasis: basis, Audience: IssueAudience{Kinds: kinds, OfficeKinds: officeKinds}, ValidityDays: days, SubjectInformedGiven: informed}
	}
	tests := []struct {
		name string
		in   AuthzInput
		want Decision
	}{
		{"police issues high", AuthzInput{ActionFlagIssue, policeLiaison, issue("high", "politiregl-27", []string{"nav-state"}, nil, 90, false)},
			Decision{true, []string{"flag_issue_permitted"}}},
		{"pointer resource", AuthzInput{ActionFlagIssue, policeLiaison, &IssueResource{Level: "high", LegalBasis: "politiregl-27", Audience: IssueAudience{OfficeKinds: []string{"nav-municipal"}}, ValidityDays: 1}},
			Decision{true, []string{"flag_issue_permitted"}}},
		{"nil pointer resource", AuthzInput{ActionFlagIssue, policeLiaison, (*IssueResource)(nil)},
			Decision{false, []string{"audience_empty", "basis_unknown", "level_not_permitted", "validity_invalid", "validity_too_long"}}},
		{"police exclusion", AuthzInput{ActionFlagIssue, policeLiaison, issue("exclusion", "politiregl-27", []string{"nav-state"}, nil, 30, false)},
			Decision{false, []string{"level_not_permitted"}}},
		{"exclusion too long", AuthzInput{ActionFlagIssue, navCoord, issue("exclusion", "navl-16", []string{"nav-municipal"}, nil, 85, false)},
			Decision{false, []string{"exclusion_too_long"}}},
		{"basis direction", AuthzInput{ActionFlagIssue, healthWorker, issue("high", "hpl-31", []string{"nav-state"}, nil, 30, true)},
			Decision{false, []string{"basis_direction"}}},
		{"office kind direction", AuthzInput{ActionFlagIssue, healthWorker, issue("high", "hpl-31", []string{"police"}, []string{"nav-state"}, 30, true)},
			Decision{false, []string{"basis_direction"}}},
		{"health not informed", AuthzInput{ActionFlagIssue, healthWorker, issue("high", "hpl-23-4", []string{"nav-state"}, nil, 30, false)},
			Decision{false, []string{"subject_not_informed"}}},
		{"emergency-only basis", AuthzInput{ActionFlagIssue, navCoord, issue("high", EmergencyBasis, []string{"police"}, nil, 30, false)},
			Decision{false, []string{"basis_emergency_only"}}},
		{"warning by police", AuthzInput{ActionWarningIssue, policeLiaison, issue("caution", "politiregl-27", nil, []string{"nav-state", "nav-municipal"}, 30, false)},
			Decision{true, []string{"warning_issue_permitted"}}},
		{"warning by nav", AuthzInput{ActionWarningIssue, navCoord, issue("caution", "navl-7", []string{"police"}, nil, 30, false)},
			Decision{false, []string{"role_not_permitted"}}},
		{"read own flag", AuthzInput{ActionFlagRead, with(policeLiaison, "agency-admin"), FlagResource{IssuerAgency: "oslo-pd"}},
			Decision{true, []string{"flag_read_permitted"}}},
		{"revoke other agency flag", AuthzInput{ActionFlagRevoke, navCoord, &FlagResource{IssuerAgency: "oslo-pd"}},
			Decision{false, []string{"not_issuing_agency"}}},
		{"check by reception", AuthzInput{ActionCheckRun, munReception, nil},
			Decision{true, []string{"check_run_permitted"}}},
		{"check by privacy officer", AuthzInput{ActionCheckRun, with(navCoord, "privacy-officer"), nil},
			Decision{false, []string{"role_not_permitted"}}},
		{"inbox own office", AuthzInput{ActionWarningInbox, navCaseworker, OfficeResource{Office: "nav-grorud"}},
			Decision{true, []string{"warning_inbox_permitted"}}},
		{"ack other office", AuthzInput{ActionWarningAck, navCoord, &OfficeResource{Office: "nav-arstad"}},
			Decision{false, []string{"office_mismatch"}}},
		{"disclosures by admin", AuthzInput{ActionDisclosuresRead, with(healthWorker, "agency-admin"), nil},
			Decision{true, []string{"disclosures_read_permitted"}}},
		{"audit by broker", AuthzInput{ActionAuditSearch, Principal{Agency: "varsel", AgencyKind: "broker", Role: "privacy-officer"}, nil},
			Decision{true, []string{"audit_search_permitted"}}},
		{"audit by caseworker", AuthzInput{ActionAuditStats, navCaseworker, nil},
			Decision{false, []string{"role_not_permitted"}}},
		{"unknown action", AuthzInput{"flag.delete", navCoord, nil},
			Decision{false, []string{"unknown_action"}}},
		{"map resource", AuthzInput{ActionFlagRead, policeLiaison, map[string]any{"issuer_agency": "oslo-pd"}},
			Decision{true, []string{"flag_read_permitted"}}},
		{"other struct resource goes through JSON", AuthzInput{ActionWarningAck, navCoord, struct {
			Office string `json:"office"`
		}{"nav-grorud"}},
			Decision{true, []string{"warning_ack_permitted"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Authorize(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Authorize() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAuthorizeBadResource(t *testing.T) {
	e := testEngine(t)
	_, err := e.Authorize(context.Background(), AuthzInput{Action: ActionFlagRead, Principal: navCoord, Resource: make(chan int)})
	if err == nil {
		t.Fatal("Authorize with a channel resource: no error")
	}
}

var (
	normalFields    = []string{"categories", "contact", "id", "issuer", "legal_basis", "level", "precautions", "valid_until"}
	emergencyFields = []string{"level", "precautions", "valid_until"}
)

func meta(id, issuerKind, issuerOffice, basis string, kinds, offices []string) FlagMeta {
	return FlagMeta{ID: id, Level: "high", IssuerAgency: issuerKind + "-agency", IssuerKind: issuerKind, IssuerOffice: issuerOffice, LegalBasis: basis, Audience: Audience{Kinds: kinds, Offices: offices}}
}

func TestDisclose(t *testing.T) {
	e := testEngine(t)
	three := []FlagMeta{
		meta("f3", "police", "", "politiregl-27", []string{"nav-state"}, nil),
		meta("f1", "nav-municipal", "nav-grorud", "sotjl-44", []string{"police"}, nil),
		meta("f2", "health", "", "hpl-23-4", []string{"nav-state"}, nil),
	}
	tests := []struct {
		name string
		in   DisclosureInput
		want Disclosure
	}{
		{"normal with duty desk", DisclosureInput{navCaseworker, "meeting", false, three}, Disclosure{
			Allow: true,
			Flags: []Disclosed{
				{"f2", normalFields, "hpl-23-4", false, true},
				{"f3", normalFields, "politiregl-27", false, false},
			},
			Reasons: []string{"audience_and_basis"},
		}},
		{"emergency adds the rest with three fields", DisclosureInput{navCaseworker, "home-visit", true, three}, Disclosure{
			Allow: true,
			Flags: []Disclosed{
				{"f1", emergencyFields, EmergencyBasis, true, false},
				{"f2", normalFields, "hpl-23-4", false, true},
				{"f3", normalFields, "politiregl-27", false, false},
			},
			ReviewRequired: true,
			Reasons:        []string{"life_and_health_exception"},
		}},
		{"navl-16 same office", DisclosureInput{munReception, "meeting", false, []FlagMeta{
			meta("a", "nav-state", "nav-grorud", "navl-16", []string{"nav-municipal"}, nil),
			meta("b", "nav-state", "nav-arstad", "navl-16", []string{"nav-municipal"}, nil),
		}}, Disclosure{
			Allow:   true,
			Flags:   []Disclosed{{"a", normalFields, "navl-16", false, false}},
			Reasons: []string{"audience_and_basis"},
		}},
		{"reader outside audience sees clear", DisclosureInput{healthWorker, "meeting", false, three}, Disclosure{
			Allow: true, Flags: []Disclosed{}, Reasons: []string{"audience_and_basis"},
		}},
		{"no flags", DisclosureInput{navCaseworker, "phone-call", false, nil}, Disclosure{
			Allow: true, Flags: []Disclosed{}, Reasons: []string{"audience_and_basis"},
		}},
		{"privacy officer may not check", DisclosureInput{with(navCoord, "privacy-officer"), "meeting", true, three}, Disclosure{
			Allow: false, Flags: []Disclosed{}, ReviewRequired: true, Reasons: []string{"role_not_permitted"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Disclose(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Disclose() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestCheckRolesAgree keeps authz's check.run and disclosure's allow in step.
func TestCheckRolesAgree(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	for _, role := range []string{"caseworker", "reception", "security-coordinator", "police-liaison", "health-worker", "privacy-officer", "agency-admin", "janitor", ""} {
		p := with(navCoord, role)
		a, err := e.Authorize(ctx, AuthzInput{Action: ActionCheckRun, Principal: p})
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.Disclose(ctx, DisclosureInput{Principal: p, Purpose: "meeting"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Allow != d.Allow {
			t.Errorf("role %q: check.run allow = %v, disclosure allow = %v", role, a.Allow, d.Allow)
		}
	}
}

func TestConcurrent(t *testing.T) {
	e := testEngine(t)
	in := DisclosureInput{navCaseworker, "meeting", false, []FlagMeta{meta("f1", "police", "", "politiregl-27", []string{"nav-state"}, nil)}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				d, err := e.Disclose(context.Background(), in)
				if err != nil || len(d.Flags) != 1 {
					t.Errorf("Disclose() = %+v, %v", d, err)
					return
				}
				a, err := e.Authorize(context.Background(), AuthzInput{Action: ActionCheckRun, Principal: navCaseworker})
				if err != nil || !a.Allow {
					t.Errorf("Authorize() = %+v, %v", a, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestDecodeShapes(t *testing.T) {
	bad := []string{
		`"allow"`,
		`{}`,
		`{"allow": "yes", "reasons": []}`,
		`{"allow": true, "reasons": "x"}`,
		`{"allow": true, "reasons": [1]}`,
	}
	for _, s := range bad {
		if _, err := decodeDecision(ast.MustParseTerm(s), nil); !errors.Is(err, errShape) {
			t.Errorf("decodeDecision(%s) error = %v, want errShape", s, err)
		}
	}
	badDisclosures := []string{
		`[]`,
		`{"allow": true, "review_required": false, "reasons": []}`,
		`{"allow": true, "review_required": 1, "reasons": [], "flags": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": {}}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": ["f1"]}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": [{"id": 1}]}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": [{"id": "f1", "fields": ["level"], "legal_basis": "x", "emergency": "no", "duty_desk": false}]}`,
		`{"allow": false, "review_required": false, "reasons": [], "flags": [{"id": "f1", "fields": ["level"], "legal_basis": "x", "emergency": false, "duty_desk": false}]}`,
	}
	for _, s := range badDisclosures {
		if _, err := decodeDisclosure(ast.MustParseTerm(s), nil); !errors.Is(err, errShape) {
			t.Errorf("decodeDisclosure(%s) error = %v, want errShape", s, err)
		}
	}
}

const validData = `{"legal_bases": {"fvl-13b-7": {"title": "t", "citation": "c", "from": ["police"], "to": ["health"], "emergency_only": true, "conditions": "x"}}}`

// TestUnexpectedPolicies swaps in policies that misbehave: an undefined
// decision must deny, a wrong shape must be an error, never an allow.
func TestUnexpectedPolicies(t *testing.T) {
	fsys := fstest.MapFS{
		dataFile:                          {Data: []byte(validData)},
		"authz/authz.rego":                {Data: []byte("package authz\n\ndecision := {\"allow\": true, \"reasons\": []} if input.never\n")},
		"disclosure/disclosure.rego":      {Data: []byte("package disclosure\n\ndecision := \"everything\"\n")},
		"disclosure/disclosure_test.rego": {Data: []byte("this is not Rego and must not be loaded")},
	}
	e, err := newEngine(context.Background(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Authorize(context.Background(), AuthzInput{Action: ActionCheckRun, Principal: navCaseworker})
	if err != nil || d.Allow || !reflect.DeepEqual(d.Reasons, []string{reasonUndefined}) {
		t.Errorf("Authorize() with undefined decision = %+v, %v; want deny", d, err)
	}
	dis, err := e.Disclose(context.Background(), DisclosureInput{Principal: navCaseworker})
	if !errors.Is(err, errShape) || dis.Allow {
		t.Errorf("Disclose() with a string decision = %+v, %v; want errShape", dis, err)
	}
}

func TestNewRejects(t *testing.T) {
	good := "package authz\n\ndecision := {\"allow\": false, \"reasons\": []}\n"
	tests := map[string]fstest.MapFS{
		"no data":          {"authz/authz.rego": {Data: []byte(good)}},
		"bad json":         {dataFile: {Data: []byte(`{`)}, "authz/authz.rego": {Data: []byte(good)}},
		"unknown field":    {dataFile: {Data: []byte(`{"legal_bases": {}, "extra": 1}`)}},
		"no emergency":     {dataFile: {Data: []byte(`{"legal_bases": {}}`)}},
		"incomplete basis": {dataFile: {Data: []byte(`{"legal_bases": {"fvl-13b-7": {"title": "t", "from": ["police"], "to": ["health"], "emergency_only": true}}}`)}},
		"unknown kind":     {dataFile: {Data: []byte(strings.Replace(validData, `"health"`, `"broker"`, 1))}},
		"bad rego":         {dataFile: {Data: []byte(validData)}, "authz/authz.rego": {Data: []byte("package authz\n\ndecision if {")}},
		"not strict":       {dataFile: {Data: []byte(validData)}, "authz/authz.rego": {Data: []byte("package authz\n\ndecision if {\n\tx := 1\n}\n")}},
	}
	for name, fsys := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := newEngine(context.Background(), fsys)
			if err == nil {
				t.Fatal("newEngine() succeeded")
			}
			t.Log(err)
		})
	}
}

func BenchmarkDisclose3Flags(b *testing.B) {
	e := testEngine(b)
	ctx := context.Background()
	in := DisclosureInput{
		Principal: navCaseworker,
		Purpose:   "meeting",
		Flags: []FlagMeta{
			meta("f3", "police", "", "politiregl-27", []string{"nav-state"}, nil),
			meta("f1", "nav-municipal", "nav-grorud", "sotjl-44", []string{"police"}, []string{"nav-grorud"}),
			meta("f2", "health", "", "hpl-23-4", []string{"nav-state", "nav-municipal"}, nil),
		},
	}
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Disclose(ctx, in)
		if err != nil || len(d.Flags) != 3 {
			b.Fatalf("Disclose() = %+v, %v", d, err)
		}
	}
}

func BenchmarkAuthorizeFlagIssue(b *testing.B) {
	e := testEngine(b)
	ctx := context.Background()
	in := AuthzInput{Action: ActionFlagIssue, Principal: navCoord, Resource: IssueResource{
		Level: "high", LegalBasis: "navl-7", ValidityDays: 180,
		Audience: IssueAudience{Kinds: []string{"police", "nav-municipal"}, OfficeKinds: []string{"nav-municipal"}},
	}}
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Authorize(ctx, in)
		if err != nil || !d.Allow {
			b.Fatalf("Authorize() = %+v, %v", d, err)
		}
	}
}

// BenchmarkDiscloseInputForms compares the ways of handing OPA the input and
// taking the result, to justify building AST values and decoding AST terms.
func BenchmarkDiscloseInputForms(b *testing.B) {
	e := testEngine(b)
	ctx := context.Background()
	in := DisclosureInput{
		Principal: navCaseworker,
		Purpose:   "meeting",
		Flags: []FlagMeta{
			meta("f3", "police", "", "politiregl-27", []string{"nav-state"}, nil),
			meta("f1", "nav-municipal", "nav-grorud", "sotjl-44", []string{"police"}, []string{"nav-grorud"}),
			meta("f2", "health", "", "hpl-23-4", []string{"nav-state", "nav-municipal"}, nil),
		},
	}
	var asMap map[string]any
	raw, err := json.Marshal(in)
	if err != nil {
		b.Fatal(err)
	}
	if err := util.UnmarshalJSON(raw, &asMap); err != nil {
		b.Fatal(err)
	}
	toJSON := rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return ast.JSON(t.Value) })
	forms := []struct {
		name string
		opts func() []rego.EvalOption
	}{
		{"ast-input/ast-decode", func() []rego.EvalOption {
			return []rego.EvalOption{rego.EvalParsedInput(e.words.disclosureValue(in))}
		}},
		{"struct-input/ast-decode", func() []rego.EvalOption { return []rego.EvalOption{rego.EvalInput(in)} }},
		{"map-input/ast-decode", func() []rego.EvalOption { return []rego.EvalOption{rego.EvalInput(asMap)} }},
		{"ast-input/json-decode", func() []rego.EvalOption {
			return []rego.EvalOption{rego.EvalParsedInput(e.words.disclosureValue(in)), toJSON}
		}},
		{"ast-input/no-indexing", func() []rego.EvalOption {
			return []rego.EvalOption{rego.EvalParsedInput(e.words.disclosureValue(in)), rego.EvalRuleIndexing(false)}
		}},
		{"ast-input/no-early-exit", func() []rego.EvalOption {
			return []rego.EvalOption{rego.EvalParsedInput(e.words.disclosureValue(in)), rego.EvalEarlyExit(false)}
		}},
	}
	for _, f := range forms {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs, err := e.disclosure.Eval(ctx, f.opts()...)
				if err != nil || len(rs) != 1 {
					b.Fatalf("Eval() = %v, %v", rs, err)
				}
			}
		})
	}
}

func TestNoFlagsMemo(t *testing.T) {
	e := testEngine(t)
	if !e.memoOK {
		t.Fatal("the disclosure rules are taken to read the sub: the memo is off")
	}
	ctx := context.Background()
	for _, emergency := range []bool{false, true} {
		for _, role := range []string{"caseworker", "privacy-officer"} {
			in := DisclosureInput{Principal: Principal{Agency: "nav-state", AgencyKind: "nav-state", Role: role, Office: "nav-grorud", Sub: "s1"},
				Purpose: "meeting", Emergency: emergency}
			first, err := e.Disclose(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			direct, err := e.disclose(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			in.Principal.Sub = "someone-else"
			again, _ := e.Disclose(ctx, in)
			if !reflect.DeepEqual(first, direct) || !reflect.DeepEqual(again, direct) {
				t.Fatalf("memo differs from evaluation:\n memo   %+v\n again  %+v\n direct %+v", first, again, direct)
			}
			// Callers may change what they get without changing the memo.
			again.Reasons[0] = "changed"
			if third, _ := e.Disclose(ctx, in); third.Reasons[0] == "changed" {
				t.Fatal("the memo shares its slices")
			}
		}
	}
}

func BenchmarkDiscloseNoFlags(b *testing.B) {
	e := testEngine(b)
	in := DisclosureInput{Principal: Principal{Agency: "nav-state", AgencyKind: "nav-state", Role: "caseworker", Office: "nav-grorud", Sub: "s1"}, Purpose: "meeting"}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := e.Disclose(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReadsSub(t *testing.T) {
	for src, want := range map[string]bool{
		"package disclosure\nx := input.principal.role":             false,
		"package disclosure\nx := input.flags[0].id":                false,
		"package disclosure\nx := input.principal.sub":              true,
		"package disclosure\nx := input.principal":                  true,
		"package disclosure\nx := input":                            true,
		"package disclosure\nk := \"sub\"\nx := input.principal[k]": true,
		"package other\nx := input.principal.sub":                   false,
	} {
		m, err := ast.ParseModuleWithOpts("t.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		if got := readsSub(map[string]*ast.Module{"t.rego": m}, "disclosure"); got != want {
			t.Errorf("%q: readsSub %v, want %v", src, got, want)
		}
	}
}
