package service_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
	"varsel/broker/postgres"
	"varsel/broker/service"
	"varsel/policies"
	"varsel/schema/schematest"
)

// The package's shared parts, built once by TestMain on a fresh migrated
// database: the store as production opens it (role varsel_app), the
// compiled policies, and one subject key. Each test builds its own Service
// over them with newFixture.
var (
	db         *postgres.DB   // as the broker connects: SET ROLE varsel_app
	admin      *pgxpool.Pool  // the test's own view, to count rows and read entries
	auditStore *auditpg.Store // the log the audit writers append to
	engine     *policies.Engine
	hasher     *broker.SubjectHasher
)

// Broker id and duty desk, as the service is configured with them.
const brokerID = "varsel"

var dutyDesk = broker.Contact{Unit: "Varsel duty desk", Phone: "+47 11 22 33 44"}

// The registry: a NAV office (nav-grorud) shared by state and municipal
// staff, a police district, a health trust, another NAV office, the
// operator's auditors, and a disabled agency whose office must count as
// unknown.
type registration struct {
	id      string
	kind    broker.AgencyKind
	offices []string
	status  string
}

var agencies = []registration{
	{"oslo-pd", broker.KindPolice, []string{"oslo-pd-sentrum"}, "active"},
	{"nav-stat", broker.KindNAVState, []string{"nav-grorud", "nav-arstad"}, "active"},
	{"oslo-kommune", broker.KindNAVMunicipal, []string{"nav-grorud", "nav-arstad"}, "active"},
	{"ous", broker.KindHealth, []string{"ous-psyk"}, "active"},
	{"nav-vest", broker.KindNAVState, []string{"nav-bergen"}, "active"},
	{"varsel-tilsyn", broker.KindBroker, []string{}, "active"},
	{"nav-nedlagt", broker.KindNAVState, []string{"nav-stengt"}, "disabled"},
}

func TestMain(m *testing.M) {
	os.Exit(schematest.Main(chainVerified{m}, "broker_service", setup))
}

func setup(url string) (func(), error) {
	ctx := context.Background()
	var err error
	if admin, err = pgxpool.New(ctx, url); err != nil {
		return nil, err
	}
	for _, a := range agencies {
		if _, err := admin.Exec(ctx, `INSERT INTO agencies (id, kind, name, offices, status) VALUES ($1, $2, $1, $3, $4)`,
			a.id, string(a.kind), a.offices, a.status); err != nil {
			return nil, fmt.Errorf("register %s: %w", a.id, err)
		}
	}
	if db, err = postgres.Open(ctx, url, postgres.Options{Role: "varsel_app", MaxConns: 16}); err != nil {
		return nil, err
	}
	auditStore = &auditpg.Store{Pool: db.Pool}
	if engine, err = policies.New(ctx); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if hasher, err = broker.NewSubjectHasher(key, "1"); err != nil {
		return nil, err
	}
	return func() { db.Close(); admin.Close() }, nil
}

// chainVerified runs the tests, then checks that every entry they caused,
// through the audit writer or inside a store's transaction, is on one
// unbroken hash chain.
type chainVerified struct{ m *testing.M }

func (c chainVerified) Run() int {
	if code := c.m.Run(); code != 0 {
		return code
	}
	rep, err := audit.Verify(context.Background(), auditStore, nil, "")
	if err != nil || !rep.OK() {
		fmt.Fprintf(os.Stderr, "audit chain after the tests: %v %+v\n", err, rep)
		return 1
	}
	return 0
}

// clock is the service's injected time; tests move it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// fixture is one Service wired as broker/app wires it, with its own clock,
// audit writer, flag lookups and subject key holder.
type fixture struct {
	svc   *service.Service
	clock *clock
	keys  *broker.SubjectKeys
	audit *audit.Writer
}

// batchedFlags is the flag store with checks' lookups batched, as in production.
type batchedFlags struct {
	*postgres.DB
	lookups *postgres.FlagLookups
}

func (b *batchedFlags) ActiveFlags(ctx context.Context, refs []string, t time.Time) ([]*broker.Flag, error) {
	return b.lookups.ActiveFlags(ctx, refs, t)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := &clock{t: time.Now().UTC().Truncate(time.Microsecond)}
	keys := &broker.SubjectKeys{}
	keys.Set(hasher)
	w := audit.NewWriter(auditStore, audit.WriterConfig{})
	lookups := postgres.NewFlagLookups(db, 2)
	t.Cleanup(func() { w.Close(); lookups.Close() })
	sweeper := &service.Sweeper{Store: db, Rules: broker.AnomalyRules{Window: time.Hour}, Now: c.Now}
	svc := &service.Service{
		Locks:           db,
		Reviews:         db,
		Emergencies:     db,
		Sweeper:         sweeper,
		Policies:        engine,
		Audit:           w,
		AuditReader:     auditStore,
		Flags:           &batchedFlags{DB: db, lookups: lookups},
		Warnings:        db,
		Subjects:        keys,
		DutyDesk:        dutyDesk,
		BrokerID:        brokerID,
		EmergencyLimit:  5,
		EmergencyWindow: time.Hour,
		TestSubjects:    true,
		Now:             c.Now,
	}
	return &fixture{svc: svc, clock: c, keys: keys, audit: w}
}

var (
	jtis     atomic.Int64
	subjects atomic.Int64
)

// as is an employee of a registered agency, as the auth layer would hand
// the service one: each principal carries a token id of its own, so use
// one per call.
func as(agency, role, office, sub string) *broker.Principal {
	i := slices.IndexFunc(agencies, func(a registration) bool { return a.id == agency })
	if i < 0 {
		panic("unregistered agency " + agency)
	}
	return &broker.Principal{Agency: agency, AgencyKind: agencies[i].kind, Role: role, Office: office, Sub: sub,
		JTI: "jti-" + strconv.FormatInt(jtis.Add(1), 10), KID: agency + "-1"}
}

// again is p's employee on a new request (a fresh token id).
func again(p *broker.Principal) *broker.Principal {
	q := *p
	q.JTI = "jti-" + strconv.FormatInt(jtis.Add(1), 10)
	return &q
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// person is a synthetic national id no other test uses.
func person() string { return broker.SyntheticNumber(int(subjects.Add(1)), 40) }

// realPerson is a well-formed non-synthetic id (a real-looking date).
func realPerson() string { return broker.SyntheticNumber(int(subjects.Add(1)), 0) }

// ref is the subject ref the service stores for number.
func ref(t *testing.T, number string) string {
	t.Helper()
	s, err := broker.ParseSubject(number, true)
	if err != nil {
		t.Fatal(err)
	}
	return hasher.Ref(s)
}

func kinds(k ...string) broker.Audience   { return broker.Audience{Kinds: k} }
func offices(o ...string) broker.Audience { return broker.Audience{Offices: o} }

// flagReq is a valid flag request under basis, valid for 30 days from now.
// flagReq is a flag with every record a basis may demand: the person was
// told, and the police's controller decided it. Tests of an obligation take
// the record away.
func flagReq(subject, basis string, aud broker.Audience, now time.Time) broker.FlagRequest {
	until := now.Add(14 * 24 * time.Hour)
	decided := now.Add(-time.Hour)
	return broker.FlagRequest{
		Subject: subject, Level: broker.LevelHigh,
		Categories: []string{"threats", "weapons"}, Precautions: []string{"two-staff", "police-present"},
		ValidUntil: &until, LegalBasis: basis, Audience: aud,
		Contact:         broker.Contact{Unit: "Operasjonssentralen", Phone: "+47 22 66 90 50"},
		SubjectInformed: informed(true, ""),
		Decision: &broker.DecisionRecord{DecidedBy: "Seksjonsleder", DecidedByRole: broker.DecidedByController,
			DecidedAt: &decided, Reference: "OPD 26/1"},
	}
}

// exclusionDecision is the office head's complete exclusion decision.
func exclusionDecision(now time.Time) *broker.DecisionRecord {
	decided, told, yes := now.Add(-time.Hour), now.Add(-48*time.Hour), true
	return &broker.DecisionRecord{DecidedBy: "Kontorleder NAV Grorud", DecidedByRole: broker.DecidedByOfficeHead,
		DecidedAt: &decided, Reference: "NAV 26/77", NoticeGivenAt: &told, CouldRespond: &yes, MilderMeasuresConsidered: &yes}
}

func informed(v bool, reason string) *broker.SubjectInformed {
	return &broker.SubjectInformed{Informed: &v, Reason: reason}
}

// issue stores a flag through the service; it must succeed.
func (f *fixture) issue(t *testing.T, p *broker.Principal, req broker.FlagRequest) *broker.Flag {
	t.Helper()
	r, err := f.svc.IssueFlag(context.Background(), p, req)
	if err != nil {
		t.Fatalf("issue flag: %v", err)
	}
	return r.Flag
}

// check runs a check for a meeting; justification "" is an ordinary check.
func (f *fixture) check(p *broker.Principal, subject, justification string) (*service.CheckResult, error) {
	req := service.CheckRequest{Subject: subject, Purpose: "meeting"}
	if justification != "" {
		req.Emergency = &service.Emergency{Justification: justification}
	}
	return f.svc.Check(context.Background(), p, req)
}

// wantErr fails unless err has kind and wire code; kind "" wants no error.
func wantErr(t *testing.T, err error, kind, code string) {
	t.Helper()
	switch {
	case kind == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case kind != "" && err == nil:
		t.Fatalf("no error, want %s/%s", kind, code)
	case kind != "" && (broker.ErrorKind(err) != kind || broker.ErrorCode(err) != code):
		t.Fatalf("error %q is %s/%s, want %s/%s", err, broker.ErrorKind(err), broker.ErrorCode(err), kind, code)
	}
}

// entry is an audit entry as stored.
type entry struct {
	Seq                                                int64
	Action, Decision, ActorAgency, Actor, Role, Office string
	SubjectRef, LegalBasis, Justification              string
	PolicyVersion, RequestJTI, Hash                    string
	FlagIDs, Reasons                                   []string
	Emergency                                          bool
}

// head is the newest entry's seq.
func head(t *testing.T) int64 {
	t.Helper()
	var seq int64
	if err := admin.QueryRow(context.Background(), `SELECT coalesce(max(seq), 0) FROM audit_entries`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

func entriesAfter(t *testing.T, seq int64) []entry {
	t.Helper()
	rows, err := admin.Query(context.Background(), `SELECT seq, action, decision, actor_agency, actor, role, office,
		subject_ref, legal_basis, justification, policy_version, request_jti, hash, flag_ids, reasons, emergency
		FROM audit_entries WHERE seq > $1 ORDER BY seq`, seq)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.Seq, &e.Action, &e.Decision, &e.ActorAgency, &e.Actor, &e.Role, &e.Office,
			&e.SubjectRef, &e.LegalBasis, &e.Justification, &e.PolicyVersion, &e.RequestJTI, &e.Hash,
			&e.FlagIDs, &e.Reasons, &e.Emergency); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// audited is what one audit entry must say. reasons nil: not checked;
// []string{}: none.
type audited struct {
	action, decision string
	reasons          []string
}

func allow(action string, reasons ...string) audited { return audited{action, audit.Allow, reasons} }
func deny(action string, reasons ...string) audited  { return audited{action, audit.Deny, reasons} }

// expectAudit checks that exactly the entries want were appended after seq
// before, in order, each under the running policy version, and returns them.
func expectAudit(t *testing.T, before int64, want ...audited) []entry {
	t.Helper()
	got := entriesAfter(t, before)
	if len(got) != len(want) {
		t.Fatalf("%d audit entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Action != w.action || g.Decision != w.decision || (w.reasons != nil && !slices.Equal(g.Reasons, w.reasons)) {
			t.Fatalf("audit entry %d: %s %s %q, want %s %s %q", g.Seq, g.Action, g.Decision, g.Reasons, w.action, w.decision, w.reasons)
		}
		if g.PolicyVersion != engine.Version() {
			t.Fatalf("audit entry %d: policy version %q, want %q", g.Seq, g.PolicyVersion, engine.Version())
		}
	}
	return got
}

// wantReceipt checks that a receipt names the entry.
func wantReceipt(t *testing.T, r audit.Receipt, e entry) {
	t.Helper()
	if r.Seq != e.Seq || r.Hash != e.Hash || r.Hash == "" {
		t.Fatalf("receipt %+v, entry %d %s", r, e.Seq, e.Hash)
	}
}

// count runs a count query.
func count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// jsonOf is v as the wire shows it.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
