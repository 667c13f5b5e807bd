package service_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"varsel/broker"
	"varsel/broker/service"
)

// TestIssueFlagRefusesInvalidFields: each field that breaks a rule of
// docs/api.md §4 is 422 with its code, and nothing is stored or audited.
func TestIssueFlagRefusesInvalidFields(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	day := 24 * time.Hour
	many := make([]string, 201)
	for i := range many {
		many[i] = fmt.Sprintf("office-%03d", i)
	}
	liaison := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-v")
	doctor := as("ous", broker.RoleHealthWorker, "", "lege-v")
	coordinator := as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-v")
	cases := []struct {
		name   string
		issuer *broker.Principal // nil: the police liaison
		mod    func(r *broker.FlagRequest)
		code   string
	}{
		{"subject not all digits", nil, func(r *broker.FlagRequest) { r.Subject = r.Subject[:10] + "x" }, broker.CodeInvalidSubject},
		{"the subject is checked first", nil, func(r *broker.FlagRequest) { r.Subject, r.Level = "12345678901", "extreme" }, broker.CodeInvalidSubject},
		{"unknown level", nil, func(r *broker.FlagRequest) { r.Level = "extreme" }, broker.CodeInvalidField},
		{"no level", nil, func(r *broker.FlagRequest) { r.Level = "" }, broker.CodeInvalidField},
		{"no categories", nil, func(r *broker.FlagRequest) { r.Categories = nil }, broker.CodeInvalidField},
		{"a diagnosis as category", nil, func(r *broker.FlagRequest) { r.Categories = []string{"psychosis"} }, broker.CodeInvalidField},
		{"a category twice", nil, func(r *broker.FlagRequest) { r.Categories = []string{"threats", "threats"} }, broker.CodeInvalidField},
		{"no precautions", nil, func(r *broker.FlagRequest) { r.Precautions = []string{} }, broker.CodeInvalidField},
		{"unknown precaution", nil, func(r *broker.FlagRequest) { r.Precautions = []string{"bring-a-dog"} }, broker.CodeInvalidField},
		{"a precaution twice", nil, func(r *broker.FlagRequest) { r.Precautions = []string{"two-staff", "two-staff"} }, broker.CodeInvalidField},
		{"empty audience", nil, func(r *broker.FlagRequest) { r.Audience = broker.Audience{} }, broker.CodeInvalidField},
		{"audience kind broker", nil, func(r *broker.FlagRequest) { r.Audience = kinds("broker") }, broker.CodeInvalidField},
		{"malformed office id", nil, func(r *broker.FlagRequest) { r.Audience = offices("NAV Grorud") }, broker.CodeInvalidField},
		{"an office twice", nil, func(r *broker.FlagRequest) { r.Audience = offices("nav-grorud", "nav-grorud") }, broker.CodeInvalidField},
		{"201 offices", nil, func(r *broker.FlagRequest) { r.Audience = offices(many...) }, broker.CodeInvalidField},
		{"no contact unit", nil, func(r *broker.FlagRequest) { r.Contact.Unit = "   " }, broker.CodeInvalidField},
		{"contact unit over 100 characters", nil, func(r *broker.FlagRequest) { r.Contact.Unit = strings.Repeat("å", 101) }, broker.CodeInvalidField},
		{"narrative in the contact unit", nil, func(r *broker.FlagRequest) { r.Contact.Unit = "Oslo PD\nHe was diagnosed with…" }, broker.CodeInvalidField},
		{"a tab in the contact unit", nil, func(r *broker.FlagRequest) { r.Contact.Unit = "Oslo\tPD" }, broker.CodeInvalidField},
		{"phone in words", nil, func(r *broker.FlagRequest) { r.Contact.Phone = "call the desk" }, broker.CodeInvalidField},
		{"phone too short", nil, func(r *broker.FlagRequest) { r.Contact.Phone = "1234" }, broker.CodeInvalidField},
		{"subject_informed without informed", nil, func(r *broker.FlagRequest) { r.SubjectInformed = &broker.SubjectInformed{} }, broker.CodeInvalidField},
		{"informed with a reason", nil, func(r *broker.FlagRequest) { r.SubjectInformed = informed(true, "told by phone") }, broker.CodeInvalidField},
		{"not informed without a reason", nil, func(r *broker.FlagRequest) { r.SubjectInformed = informed(false, "") }, broker.CodeInvalidField},
		{"not informed, reason on two lines", nil, func(r *broker.FlagRequest) { r.SubjectInformed = informed(false, "risk\nof harm") }, broker.CodeInvalidField},
		{"health issuer without subject_informed", doctor, func(r *broker.FlagRequest) { r.LegalBasis, r.SubjectInformed = "hpl-23-4", nil }, broker.CodeInvalidField},
		{"health issuer under strl-196 without subject_informed", doctor, func(r *broker.FlagRequest) {
			r.LegalBasis, r.Audience, r.SubjectInformed = "strl-196", kinds("police"), nil
		}, broker.CodeInvalidField},
		{"police basis owing notice, none recorded", nil, func(r *broker.FlagRequest) { r.LegalBasis, r.SubjectInformed = "politiregl-30", nil }, broker.CodeInvalidField},
		{"police basis without a decision record", nil, func(r *broker.FlagRequest) { r.Decision = nil }, broker.CodeInvalidField},
		{"police decision by an office head", nil, func(r *broker.FlagRequest) { r.Decision.DecidedByRole = broker.DecidedByOfficeHead }, broker.CodeInvalidField},
		{"decision with an unknown role", nil, func(r *broker.FlagRequest) { r.Decision.DecidedByRole = "chief" }, broker.CodeInvalidField},
		{"decision in the future", nil, func(r *broker.FlagRequest) { r.Decision.DecidedAt = at(time.Hour) }, broker.CodeInvalidField},
		{"decision without a reference", nil, func(r *broker.FlagRequest) { r.Decision.Reference = "" }, broker.CodeInvalidField},
		{"decision with narrative", nil, func(r *broker.FlagRequest) { r.Decision.DecidedBy = "Leder\nfordi han truet" }, broker.CodeInvalidField},
		{"unknown representation", nil, func(r *broker.FlagRequest) { r.RepresentedBy = "anonymous" }, broker.CodeInvalidField},
		{"exclusion without its decision record", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", offices("nav-grorud"), nil
		}, broker.CodeInvalidField},
		{"exclusion decided by someone else", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience = broker.LevelExclusion, "navl-16", offices("nav-grorud")
		}, broker.CodeInvalidField},
		{"exclusion without notice or a reason", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", offices("nav-grorud"), exclusionDecision(now)
			r.Decision.NoticeGivenAt, r.Decision.CouldRespond = nil, nil
		}, broker.CodeInvalidField},
		{"exclusion notice after the decision", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", offices("nav-grorud"), exclusionDecision(now)
			r.Decision.NoticeGivenAt = at(0)
		}, broker.CodeInvalidField},
		{"exclusion without milder measures considered", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", offices("nav-grorud"), exclusionDecision(now)
			no := false
			r.Decision.MilderMeasuresConsidered = &no
		}, broker.CodeInvalidField},
		{"exclusion for more than its office", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", broker.Audience{Kinds: []string{"nav-state"}, Offices: []string{"nav-grorud"}}, exclusionDecision(now)
		}, broker.CodeInvalidField},
		{"exclusion for another office", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", offices("nav-arstad"), exclusionDecision(now)
		}, broker.CodeInvalidField},
		{"situational duty over 14 days", doctor, func(r *broker.FlagRequest) {
			r.LegalBasis, r.Audience, r.ValidUntil = "hpl-31", kinds("police"), at(14*day+time.Second)
		}, broker.CodeInvalidValidity},
		{"repealed basis", coordinator, func(r *broker.FlagRequest) { r.LegalBasis, r.Audience = "navl-7", kinds("police") }, broker.CodeRetiredLegalBasis},
		{"withdrawn code", nil, func(r *broker.FlagRequest) { r.LegalBasis = "politiregl-27" }, broker.CodeRetiredLegalBasis},
		{"basis without commencement", coordinator, func(r *broker.FlagRequest) { r.LegalBasis, r.Audience = "fvl2025-34-1-m", kinds("police") }, broker.CodeLegalBasisNotInForce},
		{"valid_from over a day ago", nil, func(r *broker.FlagRequest) { r.ValidFrom = at(-day - time.Second) }, broker.CodeInvalidValidity},
		{"valid_from over a year ahead", nil, func(r *broker.FlagRequest) { r.ValidFrom, r.ValidUntil = at(366*day), at(367*day) }, broker.CodeInvalidValidity},
		{"no valid_until", nil, func(r *broker.FlagRequest) { r.ValidUntil = nil }, broker.CodeInvalidValidity},
		{"valid_until now", nil, func(r *broker.FlagRequest) { r.ValidUntil = at(0) }, broker.CodeInvalidValidity},
		{"valid_until in the past", nil, func(r *broker.FlagRequest) { r.ValidFrom, r.ValidUntil = at(-2*time.Hour), at(-time.Hour) }, broker.CodeInvalidValidity},
		{"valid_until before valid_from", nil, func(r *broker.FlagRequest) { r.ValidFrom, r.ValidUntil = at(2*day), at(day) }, broker.CodeInvalidValidity},
		{"valid for a year and a second", nil, func(r *broker.FlagRequest) { r.ValidUntil = at(365*day + time.Second) }, broker.CodeInvalidValidity},
		{"exclusion valid over 84 days", coordinator, func(r *broker.FlagRequest) {
			r.Level, r.LegalBasis, r.Audience, r.ValidUntil = broker.LevelExclusion, "navl-16", offices("nav-grorud"), at(84*day+time.Second)
			r.Decision = exclusionDecision(now)
		}, broker.CodeInvalidValidity},
		{"the fields are checked before the validity", nil, func(r *broker.FlagRequest) { r.Level, r.ValidUntil = "extreme", nil }, broker.CodeInvalidField},
		{"unknown legal basis", nil, func(r *broker.FlagRequest) { r.LegalBasis = "gdpr-6" }, broker.CodeUnknownLegalBasis},
		{"no legal basis", nil, func(r *broker.FlagRequest) { r.LegalBasis = "" }, broker.CodeUnknownLegalBasis},
		{"the validity is checked before the basis", nil, func(r *broker.FlagRequest) { r.LegalBasis, r.ValidUntil = "gdpr-6", nil }, broker.CodeInvalidValidity},
		{"unregistered office", nil, func(r *broker.FlagRequest) { r.Audience = offices("nav-grorud", "nav-nowhere") }, broker.CodeUnknownOffice},
		{"office of a disabled agency", nil, func(r *broker.FlagRequest) { r.Audience = offices("nav-stengt") }, broker.CodeUnknownOffice},
		{"the basis is checked before the offices", nil, func(r *broker.FlagRequest) { r.LegalBasis, r.Audience = "gdpr-6", offices("nav-nowhere") }, broker.CodeUnknownLegalBasis},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			issuer := liaison
			if c.issuer != nil {
				issuer = c.issuer
			}
			req := flagReq(person(), "politiregl-27-2", kinds("nav-state"), now)
			c.mod(&req)
			flags, before := count(t, `SELECT count(*) FROM flags`), head(t)
			res, err := f.svc.IssueFlag(context.Background(), again(issuer), req)
			wantErr(t, err, broker.EINVALID, c.code)
			if res != nil {
				t.Fatalf("refused flag answered %+v", res)
			}
			if strings.Contains(broker.ErrorMessage(err), req.Subject) {
				t.Fatalf("the error echoes the number: %q", broker.ErrorMessage(err))
			}
			if count(t, `SELECT count(*) FROM flags`) != flags {
				t.Fatal("a refused flag was stored")
			}
			expectAudit(t, before)
		})
	}
}

// TestIssueFlagPolicy: a well-formed flag goes to the policy (docs/api.md
// §4's table of issuers and the direction of legal bases); a denial is 403
// with its reasons in the entry and stores nothing, an allow stores the
// flag with its entry.
func TestIssueFlagPolicy(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	day := 24 * time.Hour
	cases := []struct {
		name    string
		issuer  *broker.Principal
		mod     func(r *broker.FlagRequest) // applied to a police flag to NAV (politiregl-27-2)
		reasons []string                    // nil: allowed
	}{
		{name: "police liaison to NAV", issuer: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-p")},
		{name: "police liaison from yesterday, caution", issuer: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-p"),
			mod: func(r *broker.FlagRequest) {
				v := now.Add(-23 * time.Hour)
				r.ValidFrom, r.Level = &v, broker.LevelCaution
			}},
		{name: "NAV coordinator's exclusion for 84 days", issuer: as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-p"),
			mod: func(r *broker.FlagRequest) {
				v := now.Add(84 * day)
				r.Level, r.LegalBasis, r.Audience, r.ValidUntil = broker.LevelExclusion, "navl-16", offices("nav-grorud"), &v
				r.Decision = exclusionDecision(now)
			}},
		{name: "police flag through the duty desk", issuer: as("oslo-pd", broker.RolePoliceLiaison, "oslo-pd-sentrum", "liaison-p"),
			mod: func(r *broker.FlagRequest) { r.RepresentedBy = broker.RepresentedByDutyDesk }},
		{name: "health worker, person not informed", issuer: as("ous", broker.RoleHealthWorker, "", "lege-p"),
			mod: func(r *broker.FlagRequest) {
				r.LegalBasis, r.SubjectInformed = "hpl-23-4", informed(false, "telling would put staff at risk")
			}},
		{name: "police exclusion", issuer: as("oslo-pd", broker.RolePoliceLiaison, "oslo-pd-sentrum", "liaison-p"),
			mod: func(r *broker.FlagRequest) {
				r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "navl-16", offices("oslo-pd-sentrum"), exclusionDecision(now)
			}, reasons: []string{"basis_direction", "level_not_permitted"}},
		{name: "exclusion under a basis that is not the office's", issuer: as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-p"),
			mod: func(r *broker.FlagRequest) {
				r.Level, r.LegalBasis, r.Audience, r.Decision = broker.LevelExclusion, "strl-196", offices("nav-grorud"), exclusionDecision(now)
			}, reasons: []string{"basis_direction", "exclusion_audience"}},
		{name: "caseworker", issuer: as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-p"),
			mod:     func(r *broker.FlagRequest) { r.LegalBasis, r.Audience = "navl-16", kinds("nav-municipal") },
			reasons: []string{"level_not_permitted", "role_not_permitted"}},
		{name: "the issuing agency's privacy officer", issuer: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-p"),
			reasons: []string{"level_not_permitted", "role_not_permitted"}},
		{name: "police under a NAV basis", issuer: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-p"),
			mod: func(r *broker.FlagRequest) { r.LegalBasis = "fvl-13b-6-navl" }, reasons: []string{"basis_direction"}},
		{name: "the emergency-only basis", issuer: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-p"),
			mod: func(r *broker.FlagRequest) { r.LegalBasis = "fvl-13b-7" }, reasons: []string{"basis_emergency_only"}},
		{name: "police basis to the police", issuer: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-p"),
			mod: func(r *broker.FlagRequest) { r.Audience = kinds("nav-state", "police") }, reasons: []string{"basis_direction"}},
		{name: "health-to-police basis for a NAV office", issuer: as("ous", broker.RoleHealthWorker, "", "lege-p"),
			mod: func(r *broker.FlagRequest) {
				r.LegalBasis, r.Audience, r.SubjectInformed = "hpl-31", offices("nav-grorud"), informed(true, "")
			}, reasons: []string{"basis_direction"}},
		{name: "health flag to NAV", issuer: as("ous", broker.RoleHealthWorker, "", "lege-p"),
			mod: func(r *broker.FlagRequest) { r.LegalBasis = "hpl-23-4" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			subject := person()
			req := flagReq(subject, "politiregl-27-2", kinds("nav-state", "nav-municipal"), now)
			if c.mod != nil {
				c.mod(&req)
			}
			p := again(c.issuer)
			flags, before := count(t, `SELECT count(*) FROM flags`), head(t)
			res, err := f.svc.IssueFlag(context.Background(), p, req)
			if c.reasons != nil {
				wantErr(t, err, broker.EFORBIDDEN, broker.CodeForbidden)
				e := expectAudit(t, before, deny("flag.issue", c.reasons...))[0]
				if e.SubjectRef != ref(t, subject) || e.LegalBasis != req.LegalBasis || len(e.FlagIDs) != 0 {
					t.Fatalf("denial's entry: %+v", e)
				}
				if res != nil || count(t, `SELECT count(*) FROM flags`) != flags {
					t.Fatal("a denied flag was stored")
				}
				return
			}
			wantErr(t, err, "", "")
			e := expectAudit(t, before, allow("flag.issue"))[0]
			wantReceipt(t, res.Audit, e)
			if !slices.Equal(e.FlagIDs, []string{res.ID}) || e.SubjectRef != ref(t, subject) || e.LegalBasis != req.LegalBasis {
				t.Fatalf("issue's entry: %+v", e)
			}
			from := now
			if req.ValidFrom != nil {
				from = *req.ValidFrom
			}
			if res.Status != broker.FlagActive || res.Issuer != p.Agency || res.IssuedBy != p.Sub || res.IssuerOffice != p.Office ||
				!res.ValidFrom.Equal(from) || !res.ValidUntil.Equal(*req.ValidUntil) || res.SubjectRef != e.SubjectRef {
				t.Fatalf("issued %+v", res.Flag)
			}
			if count(t, `SELECT count(*) FROM flags WHERE id = $1 AND subject_ref = $2 AND status = 'active'`, res.ID, e.SubjectRef) != 1 ||
				count(t, `SELECT count(*) FROM flags`) != flags+1 {
				t.Fatal("the flag was not stored once")
			}
		})
	}
}

const noSuchFlag = "00000000-0000-4000-8000-000000000000"

// TestRevokeFlag walks one flag through refused and allowed revocations.
// A flag of another agency, a role that may not revoke and a flag that does
// not exist all answer the same 404, audited.
func TestRevokeFlag(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	liaison := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-r")
	fl := f.issue(t, liaison, flagReq(person(), "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
	short := flagReq(person(), "politiregl-27-2", kinds("nav-state"), f.clock.Now())
	until := f.clock.Now().Add(24 * time.Hour)
	short.ValidUntil = &until
	expiring := f.issue(t, again(liaison), short)

	var firstRevokedAt *time.Time
	steps := []struct {
		name       string
		who        *broker.Principal
		id         string
		reason     string
		advance    time.Duration
		kind, code string
		audit      []audited
		reasonKept string // the revoke reason the flag then has ("": still active)
	}{
		{name: "no reason", who: liaison, id: fl.ID, reason: " ", kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "a reason on two lines", who: liaison, id: fl.ID, reason: "moved\naway", kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "a reason over 500 characters", who: liaison, id: fl.ID, reason: strings.Repeat("r", 501), kind: broker.EINVALID, code: broker.CodeInvalidField},
		{name: "another agency's issuer", who: as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-r"), id: fl.ID, reason: "not ours",
			kind: broker.ENOTFOUND, code: broker.CodeNotFound, audit: []audited{deny("flag.revoke", "not_issuing_agency")}},
		{name: "the issuing agency's privacy officer", who: as("oslo-pd", broker.RolePrivacyOfficer, "", "po-r"), id: fl.ID, reason: "review",
			kind: broker.ENOTFOUND, code: broker.CodeNotFound, audit: []audited{deny("flag.revoke", "role_not_permitted")}},
		{name: "no such flag", who: liaison, id: noSuchFlag, reason: "typo",
			kind: broker.ENOTFOUND, code: broker.CodeNotFound, audit: []audited{deny("flag.revoke", "no_such_flag")}},
		{name: "a colleague of the issuer", who: as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-r2"), id: fl.ID, reason: "case closed",
			audit: []audited{{"flag.revoke", "allow", []string{}}}, reasonKept: "case closed"},
		{name: "again, by the agency admin: nothing changes", who: as("oslo-pd", broker.RoleAgencyAdmin, "", "admin-r"), id: fl.ID, reason: "tidy up",
			audit: []audited{allow("flag.revoke", "already_revoked")}, reasonKept: "case closed"},
		{name: "an expired flag can be revoked", who: liaison, id: expiring.ID, reason: "expired anyway", advance: 48 * time.Hour,
			audit: []audited{{"flag.revoke", "allow", []string{}}}, reasonKept: "expired anyway"},
	}
	var notFound []string
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.clock.Advance(s.advance)
			before := head(t)
			res, err := f.svc.RevokeFlag(ctx, again(s.who), s.id, service.RevokeRequest{Reason: s.reason})
			wantErr(t, err, s.kind, s.code)
			entries := expectAudit(t, before, s.audit...)
			if s.kind == broker.ENOTFOUND {
				notFound = append(notFound, broker.ErrorMessage(err))
			}
			if s.id != noSuchFlag {
				var status, reason string
				if err := admin.QueryRow(ctx, `SELECT status, revoke_reason FROM flags WHERE id = $1`, s.id).Scan(&status, &reason); err != nil {
					t.Fatal(err)
				}
				if reason != s.reasonKept || (status == broker.FlagRevoked) != (s.reasonKept != "") {
					t.Fatalf("flag is %s with reason %q, want reason %q", status, reason, s.reasonKept)
				}
			}
			if s.kind != "" {
				return
			}
			wantReceipt(t, res.Audit, entries[0])
			if res.Status != broker.FlagRevoked || res.RevokeReason != s.reasonKept || res.RevokedAt == nil {
				t.Fatalf("revoke answered %+v", res.Flag)
			}
			if s.id == fl.ID {
				if firstRevokedAt == nil {
					firstRevokedAt = res.RevokedAt
				} else if !res.RevokedAt.Equal(*firstRevokedAt) {
					t.Fatalf("revoked_at moved from %v to %v", firstRevokedAt, res.RevokedAt)
				}
			}
			if !slices.Equal(entries[0].FlagIDs, []string{s.id}) {
				t.Fatalf("entry names %q", entries[0].FlagIDs)
			}
		})
	}
	// Existence does not show: every 404 reads the same.
	if len(notFound) != 3 || notFound[0] != notFound[1] || notFound[1] != notFound[2] {
		t.Fatalf("404 messages: %q", notFound)
	}
}
