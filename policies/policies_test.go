package policies

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

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
	want := []string{"fvl-13b-6-navl", "fvl-13b-6-sotjl", "fvl-13b-7", "fvl2025-34-1-m", "hpl-23-4", "hpl-31", "navl-16", "navl-7",
		"politiregl-27", "politiregl-27-1", "politiregl-27-2", "politiregl-30", "sotjl-44", "strl-196"}
	emergency := []string{"fvl-13b-7", "fvl2025-34-1-m", "politiregl-27-1"}
	var got []string
	for _, b := range e.LegalBases() {
		got = append(got, b.Code)
		if b.Title == "" || b.Citation == "" || b.Citation != b.Provision.Citation || b.Wording == "" || b.Source == "" ||
			b.Conditions == "" || b.Verified.Checked == "" || b.Verified.NotChecked == "" || len(b.From) == 0 || len(b.To) == 0 {
			t.Errorf("%s incomplete: %+v", b.Code, b)
		}
		if b.EmergencyOnly != slices.Contains(emergency, b.Code) {
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
	if b, ok := e.LegalBasis("hpl-31"); !ok || b.SameOffice || !reflect.DeepEqual(b.To, []string{"police"}) || *b.MaxValidityDays != 14 {
		t.Errorf("LegalBasis(hpl-31) = %+v, %v", b, ok)
	}
	if _, ok := e.LegalBasis("gdpr-6"); ok {
		t.Error("LegalBasis(gdpr-6) found")
	}
	// A retired basis still resolves, with why and what replaced it.
	if b, ok := e.LegalBasis("navl-7"); !ok || b.Retired == nil || *b.InForceUntil != "2021-06-30" || !slices.Contains(b.Retired.ReplacedBy, "fvl-13b-7") {
		t.Errorf("LegalBasis(navl-7) = %+v, %v", b, ok)
	}
	// The police's bases are politiregisterloven's; fvl-13b-7 is NAV's alone.
	if b, _ := e.LegalBasis("fvl-13b-7"); slices.Contains(b.From, "police") || slices.Contains(b.From, "health") {
		t.Errorf("fvl-13b-7 from = %v", b.From)
	}
}

func TestLegalBasesAt(t *testing.T) {
	e := testEngine(t)
	codes := func(at time.Time) []string {
		var out []string
		for _, b := range e.LegalBasesAt(at) {
			out = append(out, b.Code)
		}
		return out
	}
	now := codes(testNow)
	for _, c := range []string{"navl-7", "sotjl-44", "politiregl-27", "fvl2025-34-1-m"} {
		if slices.Contains(now, c) {
			t.Errorf("%s is listed as in force at %s", c, testNow)
		}
	}
	for _, c := range []string{"fvl-13b-7", "politiregl-27-1", "politiregl-27-2", "politiregl-30", "hpl-23-4", "navl-16"} {
		if !slices.Contains(now, c) {
			t.Errorf("%s is not listed as in force at %s", c, testNow)
		}
	}
	then := codes(time.Date(2020, 6, 1, 12, 0, 0, 0, time.UTC))
	if !slices.Contains(then, "navl-7") || !slices.Contains(then, "sotjl-44") || slices.Contains(then, "fvl-13b-7") || slices.Contains(then, "fvl-13b-6-navl") {
		t.Errorf("in force in June 2020: %v", then)
	}
	// The decision day is the date in Norway: 23:30 UTC on 30 June 2021 is 1 July there.
	b, _ := e.LegalBasis("navl-7")
	if !b.InForceAt(time.Date(2021, 6, 30, 21, 59, 59, 0, time.UTC)) || b.InForceAt(time.Date(2021, 6, 30, 22, 0, 0, 0, time.UTC)) {
		t.Error("navl-7 does not end at midnight in Norway")
	}
}

// TestSubjectNoticeFor: the strictest of the basis's and the issuer kind's duty.
func TestSubjectNoticeFor(t *testing.T) {
	e := testEngine(t)
	for _, c := range []struct{ basis, kind, want string }{
		{"strl-196", "nav-state", NoticeNone},
		{"strl-196", "health", NoticeIfPossible},
		{"politiregl-30", "police", NoticeRequired},
		{"politiregl-27-2", "police", NoticeIfPossible},
		{"hpl-31", "health", NoticeIfPossible},
	} {
		b, _ := e.LegalBasis(c.basis)
		if got := e.SubjectNoticeFor(b, c.kind); got.Level != c.want || got.Provision == "" {
			t.Errorf("SubjectNoticeFor(%s, %s) = %+v, want %s", c.basis, c.kind, got, c.want)
		}
	}
	if o, ok := e.LevelObligations("exclusion"); !ok || !o.DecisionRecord.Required || !reflect.DeepEqual(o.DecisionRecord.DecidedByRoles, []string{DecidedByOfficeHead}) {
		t.Errorf("LevelObligations(exclusion) = %+v, %v", o, ok)
	}
}

// TestCatalogueLint breaks the shipped data.json one way at a time: each
// must stop the engine, naming the basis and what is missing.
func TestCatalogueLint(t *testing.T) {
	orig, err := fs.ReadFile(files, dataFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCatalogue(orig); err != nil {
		t.Fatalf("the shipped catalogue fails its own lint: %v", err)
	}
	edit := func(code string, f func(b map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(orig, &doc); err != nil {
			t.Fatal(err)
		}
		f(doc["legal_bases"].(map[string]any)[code].(map[string]any))
		out, _ := json.Marshal(doc)
		return out
	}
	cases := []struct {
		name, code string
		f          func(b map[string]any)
		want       string
	}{
		{"no provision", "hpl-31", func(b map[string]any) { delete(b, "provision") }, "provision.act is required"},
		{"no LOV id", "hpl-31", func(b map[string]any) { b["provision"].(map[string]any)["lov_id"] = "" }, "provision.lov_id is required"},
		{"no wording", "hpl-31", func(b map[string]any) { b["wording"] = " " }, "wording is required"},
		{"no source", "politiregl-30", func(b map[string]any) { delete(b, "source") }, "source is required"},
		{"no in_force_from", "navl-16", func(b map[string]any) { delete(b, "in_force_from") }, "in_force_from must be given"},
		{"no in_force_until", "navl-16", func(b map[string]any) { delete(b, "in_force_until") }, "in_force_until must be given"},
		{"bad date", "navl-16", func(b map[string]any) { b["in_force_from"] = "1.7.2006" }, "is not a date"},
		{"ends before it starts", "navl-7", func(b map[string]any) { b["in_force_until"] = "2001-01-01" }, "in_force_until is before"},
		{"ended without a reason", "navl-16", func(b map[string]any) { b["in_force_until"] = "2030-01-01" }, "must say why it was retired"},
		{"replaced by a retired basis", "navl-7", func(b map[string]any) {
			b["retired"].(map[string]any)["replaced_by"] = []any{"sotjl-44"}
		}, "is not a current basis"},
		{"nothing verified", "strl-196", func(b map[string]any) { delete(b, "verified") }, "verified.checked is required"},
		{"bad notice level", "hpl-23-4", func(b map[string]any) {
			b["obligations"].(map[string]any)["subject_notice"].(map[string]any)["level"] = "maybe"
		}, "is not none, if_possible or required"},
		{"no validity limit", "hpl-23-4", func(b map[string]any) { b["max_validity_days"] = nil }, "max_validity_days must be 1 to 365"},
		{"unknown wording kind", "hpl-31", func(b map[string]any) { b["wording_kind"] = "memory" }, "wording_kind"},
		{"two exception routes on one day", "fvl2025-34-1-m", func(b map[string]any) { b["in_force_from"] = "2026-01-01" }, "emergency routes fvl-13b-7 and fvl2025-34-1-m"},
		{"unknown field", "hpl-31", func(b map[string]any) { b["note"] = "x" }, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseCatalogue(edit(c.code, c.f))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("lint error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestInForceAgreesWithRego: the Go view of the dates (GET /v1/legal-bases,
// the 422s) and the policy's must agree on every basis at every edge.
func TestInForceAgreesWithRego(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	mods := map[string]string{}
	for _, name := range []string{"catalogue/catalogue.rego"} {
		bs, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		mods[name] = string(bs)
	}
	bs, _ := fs.ReadFile(files, dataFile)
	var data map[string]any
	if err := util.UnmarshalJSON(bs, &data); err != nil {
		t.Fatal(err)
	}
	opts := []func(*rego.Rego){rego.Query("data.catalogue.in_force(data.legal_bases[input.code], data.catalogue.day(input.time))"),
		rego.Store(inmem.NewFromObject(data))}
	for name, src := range mods {
		opts = append(opts, rego.Module(name, src))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for _, b := range e.LegalBases() {
		for _, d := range []*string{b.InForceFrom, b.InForceUntil} {
			if d == nil {
				continue
			}
			day, _ := time.ParseInLocation(time.DateOnly, *d, Oslo)
			times = append(times, day.Add(-time.Second), day, day.Add(24*time.Hour-time.Second), day.Add(24*time.Hour))
		}
	}
	times = append(times, testNow)
	for _, b := range e.LegalBases() {
		for _, at := range times {
			rs, err := pq.Eval(ctx, rego.EvalInput(map[string]any{"code": b.Code, "time": at.UTC().Format(time.RFC3339Nano)}))
			if err != nil {
				t.Fatal(err)
			}
			rego := len(rs) == 1 && rs[0].Expressions[0].Value == true
			if rego != b.InForceAt(at) {
				t.Errorf("%s at %s: Rego in force %v, Go %v", b.Code, at, rego, b.InForceAt(at))
			}
		}
	}
}

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/legal-bases.md from the catalogue")

// TestLegalBasesDoc fails when docs/legal-bases.md is not what the
// catalogue generates; -update-docs rewrites it.
func TestLegalBasesDoc(t *testing.T) {
	const path = "../docs/legal-bases.md"
	want := CatalogueMarkdown(testEngine(t).Catalogue())
	if *updateDocs {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./policies -run TestLegalBasesDoc -update-docs)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: regenerate it with go test ./policies -run TestLegalBasesDoc -update-docs", path)
	}
	// Every basis in force quotes its wording and names its source.
	for _, b := range testEngine(t).LegalBasesAt(testNow) {
		if !bytes.Contains(got, []byte("«"+b.Wording+"»")) || !bytes.Contains(got, []byte(b.Source)) {
			t.Errorf("%s: the document lacks its wording or source", b.Code)
		}
	}
}

// TestExamplesUseCurrentBases: the request bodies in docs/examples must use
// bases in force, never a retired one.
func TestExamplesUseCurrentBases(t *testing.T) {
	e := testEngine(t)
	paths, err := filepath.Glob("../docs/examples/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, p := range paths {
		bs, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			LegalBasis string `json:"legal_basis"`
		}
		if err := json.Unmarshal(bs, &body); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if body.LegalBasis == "" {
			continue
		}
		if b, ok := e.LegalBasis(body.LegalBasis); !ok || !b.InForceAt(time.Now()) || b.EmergencyOnly {
			t.Errorf("%s uses %q, which is not a basis in force for flags", p, body.LegalBasis)
		}
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

// testNow is the decision time of these tests: every current basis is in force.
var testNow = time.Date(2026, 12, 15, 10, 0, 0, 0, time.UTC)

func az(action string, p Principal, res any) AuthzInput {
	return AuthzInput{Action: action, Principal: p, Resource: res, Time: testNow}
}

func dis(p Principal, purpose string, emergency bool, flags []FlagMeta) DisclosureInput {
	return DisclosureInput{Principal: p, Purpose: purpose, Emergency: emergency, Flags: flags, Time: testNow}
}

var controllerDecision = IssueDecision{Given: true, DecidedByRole: DecidedByController}

func TestAuthorize(t *testing.T) {
	e := testEngine(t)
	issue := func(level, basis string, kinds, officeKinds []string, days int, informed bool) IssueResource {
		return IssueResource{Level: level, LegalBasis: basis, Audience: IssueAudience{Kinds: kinds, OfficeKinds: officeKinds},
			ValidityDays: days, SubjectNoticeGiven: informed, Decision: controllerDecision}
	}
	exclusion := IssueResource{Level: "exclusion", LegalBasis: "navl-16", ValidityDays: 84,
		Audience: IssueAudience{Offices: []string{"nav-grorud"}, OfficeKinds: []string{"nav-state", "nav-municipal"}},
		Decision: IssueDecision{Given: true, DecidedByRole: DecidedByOfficeHead, Notice: NoticeGiven, MilderMeasuresConsidered: true}}
	noMilder := exclusion
	noMilder.Decision.MilderMeasuresConsidered = false
	tests := []struct {
		name string
		in   AuthzInput
		want Decision
	}{
		{"police issues high", az(ActionFlagIssue, policeLiaison, issue("high", "politiregl-27-2", []string{"nav-state"}, nil, 90, true)),
			Decision{true, []string{"flag_issue_permitted"}}},
		{"pointer resource", az(ActionFlagIssue, policeLiaison, &IssueResource{Level: "high", LegalBasis: "politiregl-30",
			Audience: IssueAudience{OfficeKinds: []string{"nav-municipal"}}, ValidityDays: 1, SubjectNoticeGiven: true, Decision: controllerDecision}),
			Decision{true, []string{"flag_issue_permitted"}}},
		{"nil pointer resource", az(ActionFlagIssue, policeLiaison, (*IssueResource)(nil)),
			Decision{false, []string{"audience_empty", "basis_unknown", "level_not_permitted", "validity_invalid", "validity_too_long"}}},
		{"police exclusion", az(ActionFlagIssue, policeLiaison, issue("exclusion", "politiregl-27-2", []string{"nav-state"}, nil, 30, true)),
			Decision{false, []string{"exclusion_audience", "exclusion_decision_incomplete", "level_not_permitted"}}},
		{"exclusion by the office head", az(ActionFlagIssue, navCoord, exclusion), Decision{true, []string{"flag_issue_permitted"}}},
		{"exclusion without milder measures", az(ActionFlagIssue, navCoord, noMilder), Decision{false, []string{"exclusion_decision_incomplete"}}},
		{"basis direction", az(ActionFlagIssue, healthWorker, issue("high", "hpl-31", []string{"nav-state"}, nil, 10, true)),
			Decision{false, []string{"basis_direction"}}},
		{"office kind direction", az(ActionFlagIssue, healthWorker, issue("high", "hpl-31", []string{"police"}, []string{"nav-state"}, 10, true)),
			Decision{false, []string{"basis_direction"}}},
		{"situational duty too long", az(ActionFlagIssue, healthWorker, issue("high", "hpl-31", []string{"police"}, nil, 30, true)),
			Decision{false, []string{"validity_too_long_for_basis"}}},
		{"health not informed", az(ActionFlagIssue, healthWorker, issue("high", "hpl-23-4", []string{"nav-state"}, nil, 30, false)),
			Decision{false, []string{"subject_not_informed"}}},
		{"police without a decision record", az(ActionFlagIssue, policeLiaison, IssueResource{Level: "high", LegalBasis: "politiregl-27-2",
			Audience: IssueAudience{Kinds: []string{"nav-state"}}, ValidityDays: 30, SubjectNoticeGiven: true}),
			Decision{false, []string{"decision_record_missing"}}},
		{"retired basis", az(ActionFlagIssue, navCoord, issue("high", "navl-7", []string{"police"}, nil, 30, false)),
			Decision{false, []string{"basis_retired"}}},
		{"basis without commencement", az(ActionFlagIssue, navCoord, issue("high", "fvl2025-34-1-m", []string{"police"}, nil, 30, false)),
			Decision{false, []string{"basis_not_in_force"}}},
		{"no decision time", AuthzInput{Action: ActionFlagIssue, Principal: navCoord, Resource: issue("high", "fvl-13b-6-navl", []string{"police"}, nil, 30, false)},
			Decision{false, []string{"basis_not_in_force"}}},
		{"emergency-only basis", az(ActionFlagIssue, navCoord, issue("high", "fvl-13b-7", []string{"police"}, nil, 30, false)),
			Decision{false, []string{"basis_emergency_only"}}},
		{"warning by police", az(ActionWarningIssue, policeLiaison, issue("caution", "politiregl-27-2", nil, []string{"nav-state", "nav-municipal"}, 30, true)),
			Decision{true, []string{"warning_issue_permitted"}}},
		{"warning by nav", az(ActionWarningIssue, navCoord, issue("caution", "fvl-13b-6-navl", []string{"police"}, nil, 30, false)),
			Decision{false, []string{"role_not_permitted"}}},
		{"read own flag", az(ActionFlagRead, with(policeLiaison, "agency-admin"), FlagResource{IssuerAgency: "oslo-pd"}),
			Decision{true, []string{"flag_read_permitted"}}},
		{"revoke other agency flag", az(ActionFlagRevoke, navCoord, &FlagResource{IssuerAgency: "oslo-pd"}),
			Decision{false, []string{"not_issuing_agency"}}},
		{"check by reception", az(ActionCheckRun, munReception, nil),
			Decision{true, []string{"check_run_permitted"}}},
		{"check by privacy officer", az(ActionCheckRun, with(navCoord, "privacy-officer"), nil),
			Decision{false, []string{"role_not_permitted"}}},
		{"inbox own office", az(ActionWarningInbox, navCaseworker, OfficeResource{Office: "nav-grorud"}),
			Decision{true, []string{"warning_inbox_permitted"}}},
		{"ack other office", az(ActionWarningAck, navCoord, &OfficeResource{Office: "nav-arstad"}),
			Decision{false, []string{"office_mismatch"}}},
		{"disclosures by admin", az(ActionDisclosuresRead, with(healthWorker, "agency-admin"), nil),
			Decision{true, []string{"disclosures_read_permitted"}}},
		{"audit by broker", az(ActionAuditSearch, Principal{Agency: "varsel", AgencyKind: "broker", Role: "privacy-officer"}, nil),
			Decision{true, []string{"audit_search_permitted"}}},
		{"audit by caseworker", az(ActionAuditStats, navCaseworker, nil),
			Decision{false, []string{"role_not_permitted"}}},
		{"unknown action", az("flag.delete", navCoord, nil),
			Decision{false, []string{"unknown_action"}}},
		{"map resource", az(ActionFlagRead, policeLiaison, map[string]any{"issuer_agency": "oslo-pd"}),
			Decision{true, []string{"flag_read_permitted"}}},
		{"other struct resource goes through JSON", az(ActionWarningAck, navCoord, struct {
			Office string `json:"office"`
		}{"nav-grorud"}),
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

var normalFields = []string{"categories", "contact", "id", "issuer", "legal_basis", "level", "precautions", "valid_until"}

func meta(id, issuerKind, issuerOffice, basis string, kinds, offices []string) FlagMeta {
	return FlagMeta{ID: id, Level: "high", IssuerAgency: issuerKind + "-agency", IssuerKind: issuerKind, IssuerOffice: issuerOffice, LegalBasis: basis, Audience: Audience{Kinds: kinds, Offices: offices}}
}

func TestDisclose(t *testing.T) {
	e := testEngine(t)
	three := []FlagMeta{
		meta("f3", "police", "", "politiregl-27-2", []string{"nav-state"}, nil),
		meta("f1", "nav-municipal", "nav-grorud", "fvl-13b-6-sotjl", []string{"police"}, nil),
		meta("f2", "health", "", "hpl-23-4", []string{"nav-state"}, nil),
	}
	desk := meta("f4", "police", "", "politiregl-30", []string{"nav-state"}, nil)
	desk.DutyDesk = true
	tests := []struct {
		name string
		in   DisclosureInput
		want Disclosure
	}{
		{"normal with duty desk", dis(navCaseworker, "meeting", false, three), Disclosure{
			Allow: true,
			Flags: []Disclosed{
				{"f2", normalFields, "hpl-23-4", DutyDeskBasis, true},
				{"f3", normalFields, "politiregl-27-2", "politiregl-27-2", false},
			},
			Exception: []Excepted{},
			Reasons:   []string{"audience_and_basis"},
		}},
		{"issuer chose the duty desk", dis(navCaseworker, "meeting", false, []FlagMeta{desk}), Disclosure{
			Allow:     true,
			Flags:     []Disclosed{{"f4", normalFields, "politiregl-30", DutyDeskBasis, true}},
			Exception: []Excepted{},
			Reasons:   []string{"audience_and_basis"},
		}},
		{"emergency names the rest with their route", dis(navCaseworker, "home-visit", true, three), Disclosure{
			Allow: true,
			Flags: []Disclosed{
				{"f2", normalFields, "hpl-23-4", DutyDeskBasis, true},
				{"f3", normalFields, "politiregl-27-2", "politiregl-27-2", false},
			},
			Exception:      []Excepted{{"f1", "fvl-13b-7"}},
			ReviewRequired: true,
			Reasons:        []string{"life_and_health_exception"},
		}},
		{"navl-16 same office", dis(munReception, "meeting", false, []FlagMeta{
			meta("a", "nav-state", "nav-grorud", "navl-16", []string{"nav-municipal"}, nil),
			meta("b", "nav-state", "nav-arstad", "navl-16", []string{"nav-municipal"}, nil),
		}), Disclosure{
			Allow:     true,
			Flags:     []Disclosed{{"a", normalFields, "navl-16", "navl-16", false}},
			Exception: []Excepted{},
			Reasons:   []string{"audience_and_basis"},
		}},
		{"retired basis is not disclosed", dis(navCaseworker, "meeting", false, []FlagMeta{
			meta("r", "police", "", "politiregl-27", []string{"nav-state"}, nil)}), Disclosure{
			Allow: true, Flags: []Disclosed{}, Exception: []Excepted{}, Reasons: []string{"audience_and_basis"},
		}},
		{"reader outside audience sees clear", dis(healthWorker, "meeting", false, three), Disclosure{
			Allow: true, Flags: []Disclosed{}, Exception: []Excepted{}, Reasons: []string{"audience_and_basis"},
		}},
		{"no flags", dis(navCaseworker, "phone-call", false, nil), Disclosure{
			Allow: true, Flags: []Disclosed{}, Exception: []Excepted{}, Reasons: []string{"audience_and_basis"},
		}},
		{"privacy officer may not check", dis(with(navCoord, "privacy-officer"), "meeting", true, three), Disclosure{
			Allow: false, Flags: []Disclosed{}, Exception: []Excepted{}, ReviewRequired: true, Reasons: []string{"role_not_permitted"},
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
		a, err := e.Authorize(ctx, az(ActionCheckRun, p, nil))
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.Disclose(ctx, dis(p, "meeting", false, nil))
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
	in := dis(navCaseworker, "meeting", false, []FlagMeta{meta("f1", "police", "", "politiregl-27-2", []string{"nav-state"}, nil)})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				d, err := e.Disclose(context.Background(), in)
				if err != nil || len(d.Flags) != 1 {
					t.Errorf("Disclose() = %+v, %v", d, err)
					return
				}
				a, err := e.Authorize(context.Background(), az(ActionCheckRun, navCaseworker, nil))
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
		`{"allow": true, "review_required": false, "reasons": [], "exception": []}`,
		`{"allow": true, "review_required": 1, "reasons": [], "flags": [], "exception": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": {}, "exception": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": ["f1"], "exception": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": [{"id": 1}], "exception": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": [{"id": "f1", "fields": ["level"], "legal_basis": "x", "shown_basis": "x", "duty_desk": "no"}], "exception": []}`,
		`{"allow": false, "review_required": false, "reasons": [], "flags": [{"id": "f1", "fields": ["level"], "legal_basis": "x", "shown_basis": "x", "duty_desk": false}], "exception": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": []}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": [], "exception": [{"id": "f1"}]}`,
		`{"allow": true, "review_required": false, "reasons": [], "flags": [], "exception": ["f1"]}`,
		`{"allow": false, "review_required": true, "reasons": [], "flags": [], "exception": [{"id": "f1", "legal_basis": "x"}]}`,
	}
	for _, s := range badDisclosures {
		if _, err := decodeDisclosure(ast.MustParseTerm(s), nil); !errors.Is(err, errShape) {
			t.Errorf("decodeDisclosure(%s) error = %v, want errShape", s, err)
		}
	}
}

// validData is the smallest catalogue the lint accepts.
const validData = `{"issuer_obligations": {}, "level_obligations": {}, "legal_bases": {"x-1": {"title": "t",
 "provision": {"act": "a", "lov_id": "LOV-2000-01-01-1", "section": "§ 1", "ledd": null, "nr": null, "bokstav": null, "citation": "a § 1"},
 "wording": "w", "wording_kind": "as_enacted", "source": "s", "in_force_from": "2000-01-01", "in_force_until": null,
 "from": ["police"], "to": ["health"], "emergency_only": false, "max_validity_days": 30,
 "obligations": {"subject_notice": {"level": "none", "provision": "p"}, "decision_record": {"required": false, "provision": "p"},
  "issuer_told_at_disclosure": {"required": false, "provision": "p"}},
 "conditions": "c", "verified": {"checked": "c", "not_checked": "n"}}}}`

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
	d, err := e.Authorize(context.Background(), az(ActionCheckRun, navCaseworker, nil))
	if err != nil || d.Allow || !reflect.DeepEqual(d.Reasons, []string{reasonUndefined}) {
		t.Errorf("Authorize() with undefined decision = %+v, %v; want deny", d, err)
	}
	got, err := e.Disclose(context.Background(), DisclosureInput{Principal: navCaseworker})
	if !errors.Is(err, errShape) || got.Allow {
		t.Errorf("Disclose() with a string decision = %+v, %v; want errShape", got, err)
	}
}

func TestNewRejects(t *testing.T) {
	good := "package authz\n\ndecision := {\"allow\": false, \"reasons\": []}\n"
	tests := map[string]fstest.MapFS{
		"no data":          {"authz/authz.rego": {Data: []byte(good)}},
		"bad json":         {dataFile: {Data: []byte(`{`)}, "authz/authz.rego": {Data: []byte(good)}},
		"unknown field":    {dataFile: {Data: []byte(`{"legal_bases": {}, "extra": 1}`)}},
		"incomplete basis": {dataFile: {Data: []byte(`{"legal_bases": {"fvl-13b-7": {"title": "t", "from": ["police"], "to": ["health"], "emergency_only": true}}}`)}},
		"unknown kind":     {dataFile: {Data: []byte(strings.Replace(validData, `"health"`, `"broker"`, 1))}},
		"no wording":       {dataFile: {Data: []byte(strings.Replace(validData, `"wording": "w"`, `"wording": ""`, 1))}},
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

// BenchmarkDisclose3Flags is one evaluation of the policy (what a check
// with flags costs when its decision is not kept yet); Memo is the same
// decision answered from the memo.
func BenchmarkDisclose3Flags(b *testing.B) {
	e := testEngine(b)
	ctx := context.Background()
	in := DisclosureInput{
		Principal: navCaseworker,
		Purpose:   "meeting",
		Flags: []FlagMeta{
			meta("f3", "police", "", "politiregl-27-2", []string{"nav-state"}, nil),
			meta("f1", "police", "", "politiregl-30", []string{"police"}, []string{"nav-grorud"}),
			meta("f2", "health", "", "hpl-23-4", []string{"nav-state", "nav-municipal"}, nil),
		},
		Time: testNow,
	}
	for _, memo := range []bool{false, true} {
		b.Run(map[bool]string{false: "Evaluated", true: "Memo"}[memo], func(b *testing.B) {
			disclose := e.disclose
			if memo {
				disclose = e.Disclose
			}
			b.ReportAllocs()
			for b.Loop() {
				d, err := disclose(ctx, in)
				if err != nil || len(d.Flags) != 3 {
					b.Fatalf("Disclose() = %+v, %v", d, err)
				}
			}
		})
	}
}

func BenchmarkAuthorizeFlagIssue(b *testing.B) {
	e := testEngine(b)
	ctx := context.Background()
	in := az(ActionFlagIssue, navCoord, IssueResource{
		Level: "high", LegalBasis: "strl-196", ValidityDays: 14,
		Audience: IssueAudience{Kinds: []string{"police"}, OfficeKinds: []string{"police"}},
	})
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
			meta("f3", "police", "", "politiregl-27-2", []string{"nav-state"}, nil),
			meta("f1", "police", "", "politiregl-30", []string{"police"}, []string{"nav-grorud"}),
			meta("f2", "health", "", "hpl-23-4", []string{"nav-state", "nav-municipal"}, nil),
		},
		Time: testNow,
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
				Purpose: "meeting", Emergency: emergency, Time: testNow}
			first, err := e.Disclose(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			direct, err := e.disclose(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			// Another employee, another time: without flags no basis is
			// looked at, so the memo's key holds neither.
			in.Principal.Sub = "someone-else"
			in.Time = time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
			if later, err := e.disclose(ctx, in); err != nil || !reflect.DeepEqual(later, direct) {
				t.Fatalf("a decision without flags depends on the time: %+v, %v; at %s %+v", later, err, testNow, direct)
			}
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

// TestFlagsMemo compares the memo's answers for checks with flags (decided
// over position ids, kept per day) with the policy evaluated on the real
// input, over random inputs that revisit the same keys many times: readers
// of every kind and role, flags of every issuer kind, basis, level, office
// and audience, emergencies, and decision days on both sides of bases'
// dates and of midnight in Norway.
func TestFlagsMemo(t *testing.T) {
	e := testEngine(t)
	if !e.flagsMemoOK {
		t.Fatal("the disclosure rules are taken to read the time other than as the decision day: the memo is off")
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	kinds := []string{"nav-state", "nav-municipal", "police", "health", "broker"}
	offices := []string{"", "nav-grorud", "nav-arstad", "police-oslo", "health-ward"}
	some := func(from []string) []string {
		var out []string
		for _, s := range from {
			if r.IntN(3) == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	times := []time.Time{
		testNow,
		time.Date(2019, 6, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2025, 12, 31, 22, 59, 59, 0, time.UTC), // 23:59:59 in Norway
		time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC),   // the next day there
		time.Date(2031, 3, 1, 9, 0, 0, 0, time.UTC),
	}
	newInput := func(at time.Time) DisclosureInput {
		kind := pick(kinds...)
		in := DisclosureInput{
			Principal: Principal{Agency: kind + "-1", AgencyKind: kind, Role: pick("caseworker", "reception", "security-coordinator", "police-liaison", "health-worker", "privacy-officer"),
				Office: pick(offices...), Sub: "emp-" + strconv.Itoa(r.IntN(5))},
			Purpose: pick("meeting", "home-visit", "phone-call"), Emergency: r.IntN(4) == 0,
			Time: at,
		}
		for range 1 + r.IntN(3) {
			ik := pick("nav-state", "nav-municipal", "police", "health")
			f := meta("", ik, pick(offices...), pick(e.codes...), some(kinds[:4]), some(offices[1:]))
			f.Level = pick("caution", "high", "exclusion")
			f.IssuerAgency = ik + "-" + strconv.Itoa(1+r.IntN(2))
			f.DutyDesk = r.IntN(5) == 0
			in.Flags = append(in.Flags, f)
		}
		return in
	}
	hits, n, shown, excepted, several := 0, 0, 0, 0, 0
	// Day by day (the memo keeps one day), 40 readers and flag sets each,
	// asked 600 times with fresh ids, so that kept decisions are answered
	// for flags whose ids sort differently.
	for _, at := range times {
		var pool []DisclosureInput
		for range 40 {
			pool = append(pool, newInput(at))
		}
		for range 600 {
			n++
			in := pool[r.IntN(len(pool))]
			in.Principal.Sub = "emp-" + strconv.Itoa(r.IntN(5))
			in.Time = at.Add(time.Duration(r.IntN(60)) * time.Second)
			in.Flags = slices.Clone(in.Flags)
			for i := range in.Flags {
				in.Flags[i].ID = strconv.Itoa(r.IntN(1_000_000)) + "-" + strconv.Itoa(i)
			}
			if m := e.flagsMemo.Load(); m != nil && m.day == decisionDay(in.Time) {
				kept := true
				for _, f := range in.Flags {
					one := in
					one.Flags = []FlagMeta{f}
					one.Flags[0].ID = "0"
					_, ok := m.m.Load(flagsKey(one, m.day))
					kept = kept && ok
				}
				if kept {
					hits++
				}
			}
			got, err := e.Disclose(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.disclose(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("check %d: memo differs from evaluation\n input  %+v\n memo   %+v\n direct %+v", n, in, got, want)
			}
			if len(got.Flags) > 0 {
				shown++
				got.Flags[0].Fields[0] = "changed" // callers may change what they get
			}
			if len(got.Exception) > 0 {
				excepted++
			}
			if len(got.Flags)+len(got.Exception) > 1 {
				several++
			}
		}
	}
	if shown < 100 || excepted < 100 || several < 100 {
		t.Fatalf("of %d checks, %d disclosed flags, %d reached flags by the exception, %d named more than one: too few to test the memo", n, shown, excepted, several)
	}
	if hits < 100 {
		t.Fatalf("%d memo hits in %d checks: the test does not exercise the memo", hits, n)
	}
	t.Logf("%d of %d answered from the memo; %d disclosed flags, %d reached flags by the exception, %d named more than one", hits, n, shown, excepted, several)
}

func TestReadsTimeOutsideDay(t *testing.T) {
	for src, want := range map[string]bool{
		"package disclosure\ndecision_day := input.time":          false,
		"package disclosure\nx := input.flags[0].level":           false,
		"package disclosure\nx := input.time":                     true,
		"package catalogue\nx := time.parse_ns(\"\", input.time)": true,
		"package disclosure\nx := input":                          true,
		"package disclosure\nk := \"time\"\nx := input[k]":        true,
		"package authz\nx := input.time":                          false,
	} {
		m, err := ast.ParseModuleWithOpts("t.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		if got := readsTimeOutsideDay(map[string]*ast.Module{"t.rego": m}); got != want {
			t.Errorf("%q: readsTimeOutsideDay %v, want %v", src, got, want)
		}
	}
}
