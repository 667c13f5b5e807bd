package service_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/service"
)

// justification is an emergency justification; the entry keeps it trimmed.
const justification = "  Threatened staff on the phone ten minutes ago  "

// view is how much of a flag a check shows.
type view int

const (
	hidden    view = iota // nothing: the answer is "clear"
	full                  // every field, the issuer's own issuer and contact
	viaDesk               // every field, the duty desk standing in for a health issuer, the basis masked
	exception             // only in the life-and-health exception's aggregate: level, precautions, the duty desk
)

// shown is what a check must show of fl in view v.
func shown(v view, fl *broker.Flag) []service.CheckFlag {
	if v == hidden {
		return []service.CheckFlag{}
	}
	vu, contact := fl.ValidUntil, fl.Contact
	all := service.CheckFlag{ID: fl.ID, Level: fl.Level, Categories: fl.Categories, Precautions: fl.Precautions,
		ValidUntil: &vu, Issuer: fl.Issuer, Contact: &contact, LegalBasis: fl.LegalBasis}
	switch v {
	case viaDesk:
		desk := dutyDesk
		all.Issuer, all.Contact, all.LegalBasis = brokerID, &desk, "via-duty-desk"
		return []service.CheckFlag{all}
	case exception:
		return []service.CheckFlag{}
	}
	return []service.CheckFlag{all}
}

// aggregated is the exception a check must answer in view v.
func aggregated(v view, fl *broker.Flag) *service.Exception {
	if v != exception {
		return nil
	}
	return &service.Exception{Level: fl.Level, Precautions: fl.Precautions, Contact: dutyDesk}
}

// shape is a check result without what differs between any two checks.
func shape(t *testing.T, r *service.CheckResult) string {
	t.Helper()
	c := *r
	c.CheckID, c.Audit = "", audit.Receipt{}
	return jsonOf(t, c)
}

// sameDecision is an entry without what differs between any two checks.
func sameDecision(e entry) entry {
	e.Seq, e.SubjectRef, e.RequestJTI, e.Hash = 0, "", "", ""
	return e
}

func TestCheckDisclosure(t *testing.T) {
	f := newFixture(t)
	police := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-1")
	navCoordinator := as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-1")
	doctor := as("ous", broker.RoleHealthWorker, "", "lege-1")
	cases := []struct {
		name      string
		issuer    *broker.Principal // nil: the person has no flag
		basis     string
		audience  broker.Audience
		reader    *broker.Principal
		emergency bool
		want      view
		wantBasis string // the entry's legal_basis
		forbidden bool   // the reader's role may not check at all
		desk      bool   // the issuer chose the duty desk
	}{
		{name: "no flag", reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-1"), want: hidden},
		{name: "police flag for NAV kinds, state caseworker", issuer: police, basis: "politiregl-27-2",
			audience: kinds("nav-state", "nav-municipal"), reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-2"),
			want: full, wantBasis: "politiregl-27-2"},
		{name: "police flag for NAV kinds, municipal reception", issuer: police, basis: "politiregl-27-2",
			audience: kinds("nav-state", "nav-municipal"), reader: as("oslo-kommune", broker.RoleReception, "nav-arstad", "rec-1"),
			want: full, wantBasis: "politiregl-27-2"},
		{name: "police flag for an office, reader at that office", issuer: police, basis: "politiregl-27-2",
			audience: offices("nav-grorud"), reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-3"),
			want: full, wantBasis: "politiregl-27-2"},
		{name: "police flag for an office, reader at another office", issuer: police, basis: "politiregl-27-2",
			audience: offices("nav-grorud"), reader: as("nav-stat", broker.RoleCaseworker, "nav-arstad", "cw-4"),
			want: hidden},
		{name: "police flag for NAV, health worker outside the audience", issuer: police, basis: "politiregl-27-2",
			audience: kinds("nav-state"), reader: as("ous", broker.RoleHealthWorker, "", "lege-2"), want: hidden},
		{name: "same-office basis, reader at the issuing office", issuer: navCoordinator, basis: "navl-16",
			audience: kinds("nav-municipal"), reader: as("oslo-kommune", broker.RoleCaseworker, "nav-grorud", "kcw-1"),
			want: full, wantBasis: "navl-16"},
		{name: "same-office basis, reader at another office", issuer: navCoordinator, basis: "navl-16",
			audience: kinds("nav-municipal"), reader: as("oslo-kommune", broker.RoleCaseworker, "nav-arstad", "kcw-2"),
			want: hidden},
		{name: "health flag read by NAV shows the duty desk", issuer: doctor, basis: "hpl-23-4",
			audience: kinds("nav-state"), reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-5"),
			want: viaDesk, wantBasis: "hpl-23-4"},
		{name: "health flag read in the health sector shows its issuer", issuer: doctor, basis: "hpl-23-4",
			audience: kinds("health"), reader: as("ous", broker.RoleHealthWorker, "", "lege-3"),
			want: full, wantBasis: "hpl-23-4"},
		{name: "emergency shows a police flag not addressed to the reader, minimally", issuer: police, basis: "politiregl-27-2",
			audience: kinds("nav-state"), reader: as("ous", broker.RoleHealthWorker, "", "lege-4"), emergency: true,
			want: exception, wantBasis: "politiregl-27-1"},
		{name: "emergency reaches a NAV report not addressed to the reader", issuer: navCoordinator, basis: "fvl-13b-6-navl",
			audience: kinds("police"), reader: as("ous", broker.RoleHealthWorker, "", "lege-5"), emergency: true,
			want: exception, wantBasis: "fvl-13b-7"},
		{name: "police flag through the duty desk, read by NAV", issuer: police, basis: "politiregl-30", desk: true,
			audience: kinds("nav-state"), reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-9"),
			want: viaDesk, wantBasis: "politiregl-30"},
		{name: "emergency shows a flag the reader may see in full", issuer: police, basis: "politiregl-27-2",
			audience: kinds("nav-state"), reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-6"), emergency: true,
			want: full, wantBasis: "politiregl-27-2"},
		{name: "emergency never reaches a health flag", issuer: doctor, basis: "hpl-23-4",
			audience: kinds("health"), reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-7"), emergency: true,
			want: hidden},
		{name: "emergency without a flag", reader: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-8"), emergency: true,
			want: hidden},
		{name: "privacy officer may not check", issuer: police, basis: "politiregl-27-2", audience: kinds("nav-state"),
			reader: as("nav-stat", broker.RolePrivacyOfficer, "", "po-1"), forbidden: true},
		{name: "agency admin may not check, not even in an emergency", issuer: police, basis: "politiregl-27-2",
			audience: kinds("nav-state"), reader: as("nav-stat", broker.RoleAgencyAdmin, "", "admin-1"), emergency: true, forbidden: true},
		{name: "the operator's auditors may not check", reader: as("varsel-tilsyn", broker.RolePrivacyOfficer, "", "tilsyn-1"),
			forbidden: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			subject := person()
			var fl *broker.Flag
			if c.issuer != nil {
				req := flagReq(subject, c.basis, c.audience, f.clock.Now())
				if c.desk {
					req.RepresentedBy = broker.RepresentedByDutyDesk
				}
				fl = f.issue(t, again(c.issuer), req)
			}
			just := ""
			if c.emergency {
				just = justification
			}
			before := head(t)
			res, err := f.check(c.reader, subject, just)

			if c.forbidden {
				wantErr(t, err, broker.EFORBIDDEN, broker.CodeForbidden)
				if res != nil {
					t.Fatalf("a refused check answered %+v", res)
				}
				e := expectAudit(t, before, deny("check", "role_not_permitted"))[0]
				if len(e.FlagIDs) != 0 || e.SubjectRef != ref(t, subject) || e.Emergency != c.emergency {
					t.Fatalf("refused check's entry: %+v", e)
				}
				return
			}
			wantErr(t, err, "", "")
			wantFlags, wantIDs, result := shown(c.want, fl), []string{}, service.ResultClear
			if c.want != hidden {
				wantIDs, result = []string{fl.ID}, service.ResultPrecautions
			}
			if res.Result != result || res.Emergency != c.emergency || res.PolicyVersion != engine.Version() ||
				jsonOf(t, res.Flags) != jsonOf(t, wantFlags) || jsonOf(t, res.Exception) != jsonOf(t, aggregated(c.want, fl)) {
				t.Fatalf("check answered %s, want result %s emergency %v flags %s exception %s", jsonOf(t, res), result, c.emergency,
					jsonOf(t, wantFlags), jsonOf(t, aggregated(c.want, fl)))
			}

			reasons := []string{"audience_and_basis"}
			if c.emergency {
				reasons = []string{"life_and_health_exception"}
			}
			if c.want == exception {
				reasons = append(reasons, "emergency_flag:"+fl.ID, "emergency_basis:"+fl.ID+":"+c.wantBasis)
			}
			e := expectAudit(t, before, allow("check", reasons...))[0]
			wantReceipt(t, res.Audit, e)
			if res.CheckID != "chk-"+itoa(e.Seq) {
				t.Fatalf("check id %q for entry %d", res.CheckID, e.Seq)
			}
			wantJust := ""
			if c.emergency {
				wantJust = strings.TrimSpace(justification)
			}
			if !slices.Equal(e.FlagIDs, wantIDs) || e.LegalBasis != c.wantBasis || e.SubjectRef != ref(t, subject) ||
				e.Emergency != c.emergency || e.Justification != wantJust || e.Actor != c.reader.Sub {
				t.Fatalf("check's entry: %+v; want flags %q basis %q", e, wantIDs, c.wantBasis)
			}

			// A flag the reader may not see gives exactly the answer, and
			// leaves exactly the entry, of a person without flags.
			if fl != nil && c.want == hidden {
				before := head(t)
				none, err := f.check(again(c.reader), person(), just)
				if err != nil {
					t.Fatal(err)
				}
				e2 := expectAudit(t, before, allow("check"))[0]
				if shape(t, res) != shape(t, none) {
					t.Fatalf("hidden flag answered %s, no flag %s", shape(t, res), shape(t, none))
				}
				if jsonOf(t, sameDecision(e)) != jsonOf(t, sameDecision(e2)) {
					t.Fatalf("hidden flag's entry %+v, no flag's %+v", e, e2)
				}
			}
		})
	}
}

// TestCheckNeverShowsInactiveFlags moves the clock across a flag's
// validity and revokes it: only an active flag within its validity is shown,
// to an ordinary check or under the exception.
func TestCheckNeverShowsInactiveFlags(t *testing.T) {
	f := newFixture(t)
	base := f.clock.Now()
	cases := []struct {
		name      string
		from      time.Duration // valid_from after base; 0: none given (now)
		revoke    bool
		at        func(fl *broker.Flag) time.Time // when the check runs; nil: base
		emergency bool
		want      view
		status    string // what the issuer then reads
	}{
		{name: "active", want: full, status: broker.FlagActive},
		{name: "active, emergency", emergency: true, want: full, status: broker.FlagActive},
		{name: "a microsecond before valid_until", at: func(fl *broker.Flag) time.Time { return fl.ValidUntil.Add(-time.Microsecond) },
			want: full, status: broker.FlagActive},
		{name: "at valid_until", at: func(fl *broker.Flag) time.Time { return fl.ValidUntil }, want: hidden, status: broker.FlagExpired},
		{name: "expired, emergency", at: func(fl *broker.Flag) time.Time { return fl.ValidUntil.Add(time.Hour) }, emergency: true,
			want: hidden, status: broker.FlagExpired},
		{name: "revoked", revoke: true, want: hidden, status: broker.FlagRevoked},
		{name: "revoked, emergency", revoke: true, emergency: true, want: hidden, status: broker.FlagRevoked},
		{name: "before valid_from", from: time.Hour, want: hidden, status: broker.FlagActive},
		{name: "at valid_from", from: time.Hour, at: func(fl *broker.Flag) time.Time { return fl.ValidFrom }, want: full,
			status: broker.FlagActive},
	}
	ctx := context.Background()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.clock.Set(base)
			liaison := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-2")
			subject := person()
			req := flagReq(subject, "politiregl-27-2", kinds("nav-state"), base)
			until := base.Add(10 * 24 * time.Hour)
			req.ValidUntil = &until
			if c.from != 0 {
				from := base.Add(c.from)
				req.ValidFrom = &from
			}
			fl := f.issue(t, liaison, req)
			if c.revoke {
				if _, err := f.svc.RevokeFlag(ctx, again(liaison), fl.ID, service.RevokeRequest{Reason: "withdrawn"}); err != nil {
					t.Fatal(err)
				}
			}
			if c.at != nil {
				f.clock.Set(c.at(fl))
			}
			just := ""
			if c.emergency {
				just = justification
			}
			before := head(t)
			res, err := f.check(as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-inactive-"+itoa(int64(i))), subject, just)
			wantErr(t, err, "", "")
			if jsonOf(t, res.Flags) != jsonOf(t, shown(c.want, fl)) {
				t.Fatalf("check shows %s, want %s", jsonOf(t, res.Flags), jsonOf(t, shown(c.want, fl)))
			}
			e := expectAudit(t, before, allow("check"))[0]
			if (c.want == hidden) != (len(e.FlagIDs) == 0) {
				t.Fatalf("entry names flags %q", e.FlagIDs)
			}
			got, err := f.svc.Flag(ctx, again(liaison), fl.ID)
			if err != nil || got.Status != c.status {
				t.Fatalf("issuer reads status %v (%v), want %s", got, err, c.status)
			}
		})
	}
}

// TestCheckRefusesBadInput: a check that breaks a rule of its input is 422
// and decides nothing, so it leaves no audit entry (docs/api.md §2: "Requests
// refused with 400, 401, 413, 415 or 422 are not audited").
func TestCheckRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	valid := person()
	corrupt := valid[:10] + string('0'+(valid[10]-'0'+1)%10) // the last control digit off by one
	genuine := realPerson()
	notADate := genuine[:2] + "13" + genuine[4:] // month 13, checked before the control digits
	cases := []struct {
		name          string
		realOnly      bool // the broker runs without --test-subjects
		stale         bool // the subject key chain is marked out of date
		subject       string
		purpose       *string // nil: "meeting"
		justification *string
		kind, code    string // "": the check is answered
	}{
		{name: "bad control digit", subject: corrupt, kind: broker.EINVALID, code: broker.CodeInvalidSubject},
		{name: "ten digits", subject: valid[:10], kind: broker.EINVALID, code: broker.CodeInvalidSubject},
		{name: "a letter", subject: valid[:10] + "x", kind: broker.EINVALID, code: broker.CodeInvalidSubject},
		{name: "not a date", subject: notADate, realOnly: true, kind: broker.EINVALID, code: broker.CodeInvalidSubject},
		{name: "synthetic number without test subjects", subject: valid, realOnly: true, kind: broker.EINVALID, code: broker.CodeInvalidSubject},
		{name: "real number without test subjects", subject: genuine, realOnly: true},
		{name: "synthetic number with test subjects", subject: valid},
		{name: "unknown purpose", subject: valid, purpose: ptr("lunch"), kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "no purpose", subject: valid, purpose: ptr(""), kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "the subject is checked before the purpose", subject: corrupt, purpose: ptr("lunch"), kind: broker.EINVALID, code: broker.CodeInvalidSubject},
		{name: "every purpose is known", subject: valid, purpose: ptr("home-visit")},
		{name: "emergency with an empty justification", subject: valid, justification: ptr(""),
			kind: broker.EINVALID, code: broker.CodeJustificationRequired},
		{name: "emergency with 19 characters padded by spaces", subject: valid, justification: ptr("     " + strings.Repeat("x", 19) + "     "),
			kind: broker.EINVALID, code: broker.CodeJustificationRequired},
		{name: "emergency with 20 characters", subject: valid, justification: ptr(strings.Repeat("æ", 20))},
		{name: "emergency with 1000 characters", subject: valid, justification: ptr(strings.Repeat("ø", 1000))},
		{name: "emergency with 1001 characters", subject: valid, justification: ptr(strings.Repeat("x", 1001)),
			kind: broker.EINVALID, code: broker.CodeJustificationRequired},
		{name: "emergency justification that is not UTF-8", subject: valid, justification: ptr(strings.Repeat("x", 25) + "\xff"),
			kind: broker.EINVALID, code: broker.CodeJustificationRequired},
		{name: "the purpose is checked before the justification", subject: valid, purpose: ptr("lunch"), justification: ptr(""),
			kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "subject keys out of date", subject: valid, stale: true, kind: broker.EUNAVAILABLE, code: broker.CodeKeysUnavailable},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.svc.TestSubjects = !c.realOnly
			if c.stale {
				f.keys.SetStale(errors.New("chain changed"))
				defer f.keys.SetStale(nil)
			}
			req := service.CheckRequest{Subject: c.subject, Purpose: "meeting"}
			if c.purpose != nil {
				req.Purpose = *c.purpose
			}
			if c.justification != nil {
				req.Emergency = &service.Emergency{Justification: *c.justification}
			}
			before := head(t)
			res, err := f.svc.Check(context.Background(), as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-input-"+itoa(int64(i))), req)
			wantErr(t, err, c.kind, c.code)
			if c.kind != "" {
				if res != nil {
					t.Fatalf("refused check answered %+v", res)
				}
				if msg := broker.ErrorMessage(err); strings.Contains(msg, c.subject) {
					t.Fatalf("the error echoes the number: %q", msg)
				}
				expectAudit(t, before)
				return
			}
			e := expectAudit(t, before, allow("check"))[0]
			if e.Emergency != (c.justification != nil) || res.Result != service.ResultClear {
				t.Fatalf("answer %+v, entry %+v", res, e)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestEmergencyLimit walks one employee's emergency checks through the
// limit (2 an hour here) with the clock, to the microsecond the window ends.
func TestEmergencyLimit(t *testing.T) {
	f := newFixture(t)
	f.svc.EmergencyLimit = 2
	t0 := f.clock.Now()
	// Allowed uses are counted with ts >= now - 1h; refused ones not at all.
	steps := []struct {
		name      string
		sub       string
		at        time.Duration // after t0
		emergency bool
		limited   bool
	}{
		{name: "first", sub: "lege-a", emergency: true},
		{name: "second", sub: "lege-a", emergency: true},
		{name: "third within the hour", sub: "lege-a", at: time.Minute, emergency: true, limited: true},
		{name: "an ordinary check is not limited", sub: "lege-a", at: time.Minute},
		{name: "another employee is not limited", sub: "lege-b", at: time.Minute, emergency: true},
		{name: "an hour after the first two they still count", sub: "lege-a", at: time.Hour, emergency: true, limited: true},
		{name: "a microsecond later they have left the window", sub: "lege-a", at: time.Hour + time.Microsecond, emergency: true},
		{name: "one more fits", sub: "lege-a", at: time.Hour + 2*time.Microsecond, emergency: true},
		{name: "then the limit holds again", sub: "lege-a", at: time.Hour + 3*time.Microsecond, emergency: true, limited: true},
	}
	subject := person()
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.clock.Set(t0.Add(s.at))
			just := ""
			if s.emergency {
				just = justification
			}
			before := head(t)
			res, err := f.check(as("ous", broker.RoleHealthWorker, "", s.sub), subject, just)
			if !s.limited {
				wantErr(t, err, "", "")
				e := expectAudit(t, before, allow("check"))[0]
				if e.Emergency != s.emergency || res.Emergency != s.emergency {
					t.Fatalf("answer %+v, entry %+v", res, e)
				}
				return
			}
			wantErr(t, err, broker.ERATELIMITED, broker.CodeRateLimited)
			var rl *service.RateLimited
			if !errors.As(err, &rl) || rl.RetryAfterSeconds() != 1800 || res != nil {
				t.Fatalf("rate limit %v: retry after %v, answer %+v", err, rl, res)
			}
			e := expectAudit(t, before, deny("check", "emergency_rate_limited"))[0]
			if !e.Emergency || e.Justification != strings.TrimSpace(justification) || len(e.FlagIDs) != 0 {
				t.Fatalf("refused emergency's entry: %+v", e)
			}
		})
	}
}

// TestEmergencyLimitUnderConcurrency: parallel emergency checks by one
// employee cannot all slip under the limit (the lock is held from the
// count to the append).
func TestEmergencyLimitUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	f.svc.EmergencyLimit = 2
	const n = 6
	subject := person()
	before := head(t)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.check(as("ous", broker.RoleHealthWorker, "", "lege-racer"), subject, justification)
		}()
	}
	wg.Wait()
	ok, limited := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case broker.ErrorKind(err) == broker.ERATELIMITED:
			limited++
		default:
			t.Fatal(err)
		}
	}
	allowed, denied := 0, 0
	for _, e := range entriesAfter(t, before) {
		if e.Actor == "lege-racer" && e.Decision == audit.Allow {
			allowed++
		} else if e.Actor == "lege-racer" && slices.Equal(e.Reasons, []string{"emergency_rate_limited"}) {
			denied++
		}
	}
	if ok != 2 || limited != n-2 || allowed != 2 || denied != n-2 {
		t.Fatalf("%d answered, %d limited; %d allowed and %d refused entries; want 2, %d", ok, limited, allowed, denied, n-2)
	}
}
