package service_test

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/service"
)

// TestEveryDecisionIsAuditedOnce: each operation, allowed or refused by the
// policy, leaves exactly one entry with its action, decision and reasons.
// The rows run in order (the second acknowledgement follows the first).
func TestEveryDecisionIsAuditedOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.svc
	subject := person()
	liaison := func() *broker.Principal { return as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-a") }
	po := func() *broker.Principal { return as("ous", broker.RolePrivacyOfficer, "", "po-a") }
	cw := func() *broker.Principal { return as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-a") }
	coordinator := func(office string) *broker.Principal {
		return as("nav-stat", broker.RoleSecurityCoordinator, office, "sec-a")
	}
	fl := f.issue(t, liaison(), flagReq(subject, "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
	warn := func(p *broker.Principal, office string) (*service.WarningResult, error) {
		return s.IssueWarning(ctx, p, service.WarningRequest{
			FlagRequest: flagReq(person(), "politiregl-27-2", broker.Audience{}, f.clock.Now()),
			Targets:     service.Targets{Offices: []string{office}}})
	}
	w, err := warn(liaison(), "nav-grorud")
	if err != nil {
		t.Fatal(err)
	}
	inbox := service.InboxQuery{Office: "nav-grorud", Limit: service.DefaultInboxLimit}
	justified := service.VerdictRequest{Verdict: "justified"}

	cases := []struct {
		name       string
		call       func() error
		kind, code string
		want       audited
	}{
		{"whoami", func() error { _, err := s.Whoami(ctx, cw()); return err }, "", "", allow("whoami")},
		{"check", func() error { _, err := f.check(cw(), subject, ""); return err }, "", "",
			allow("check", "audience_and_basis")},
		{"check by a role that may not", func() error { _, err := f.check(po(), subject, ""); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("check", "role_not_permitted")},
		{"issue a flag", func() error {
			_, err := s.IssueFlag(ctx, liaison(), flagReq(person(), "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
			return err
		}, "", "", allow("flag.issue")},
		{"issue a flag the policy refuses", func() error {
			_, err := s.IssueFlag(ctx, liaison(), flagReq(person(), "fvl-13b-6-navl", kinds("nav-municipal"), f.clock.Now()))
			return err
		}, broker.EFORBIDDEN, broker.CodeForbidden, deny("flag.issue", "basis_direction")},
		{"read a flag as its issuer", func() error { _, err := s.Flag(ctx, liaison(), fl.ID); return err }, "", "", allow("flag.read")},
		{"read a flag as the issuer's privacy officer", func() error {
			_, err := s.Flag(ctx, as("oslo-pd", broker.RolePrivacyOfficer, "", "po-pd"), fl.ID)
			return err
		}, "", "", allow("flag.read")},
		{"read another agency's flag", func() error { _, err := s.Flag(ctx, coordinator("nav-grorud"), fl.ID); return err },
			broker.ENOTFOUND, broker.CodeNotFound, deny("flag.read", "not_issuing_agency")},
		{"read no flag", func() error { _, err := s.Flag(ctx, liaison(), noSuchFlag); return err },
			broker.ENOTFOUND, broker.CodeNotFound, deny("flag.read", "no_such_flag")},
		{"issue a warning", func() error { _, err := warn(liaison(), "nav-arstad"); return err }, "", "",
			allow("warning.issue", "targets:nav-arstad")},
		{"issue a warning as NAV", func() error { _, err := warn(coordinator("nav-grorud"), "nav-arstad"); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("warning.issue", "basis_direction", "role_not_permitted")},
		{"read a warning as its issuer", func() error { _, err := s.Warning(ctx, liaison(), w.ID); return err }, "", "",
			allow("warning.read")},
		// Refused, a warning read is recorded as a read of its flag.
		{"read another agency's warning", func() error { _, err := s.Warning(ctx, coordinator("nav-grorud"), w.ID); return err },
			broker.ENOTFOUND, broker.CodeNotFound, deny("flag.read", "not_issuing_agency")},
		{"read the office's inbox", func() error { _, err := s.Inbox(ctx, cw(), inbox); return err }, "", "", allow("warning.inbox")},
		{"read another office's inbox", func() error {
			_, err := s.Inbox(ctx, as("nav-stat", broker.RoleCaseworker, "nav-arstad", "cw-b"), inbox)
			return err
		}, broker.EFORBIDDEN, broker.CodeForbidden, deny("warning.inbox", "office_mismatch", "office:nav-grorud")},
		{"read the inbox as reception", func() error {
			_, err := s.Inbox(ctx, as("nav-stat", broker.RoleReception, "nav-grorud", "rec-a"), inbox)
			return err
		}, broker.EFORBIDDEN, broker.CodeForbidden, deny("warning.inbox", "role_not_permitted", "office:nav-grorud")},
		{"acknowledge", func() error { _, err := s.Ack(ctx, coordinator("nav-grorud"), w.ID); return err }, "", "",
			audited{"warning.ack", "allow", []string{}}},
		{"acknowledge again", func() error { _, err := s.Ack(ctx, coordinator("nav-grorud"), w.ID); return err }, "", "",
			allow("warning.ack", "already_acknowledged")},
		{"acknowledge at an office not targeted", func() error { _, err := s.Ack(ctx, coordinator("nav-arstad"), w.ID); return err },
			broker.ENOTFOUND, broker.CodeNotFound, deny("warning.ack", "not_a_target_office")},
		{"acknowledge no warning", func() error { _, err := s.Ack(ctx, coordinator("nav-grorud"), noSuchFlag); return err },
			broker.ENOTFOUND, broker.CodeNotFound, deny("warning.ack", "no_such_warning")},
		{"set the office's webhook", func() error {
			_, err := s.SetWebhook(ctx, coordinator("nav-arstad"), "nav-arstad", service.WebhookRequest{URL: "https://hooks.example.no/a"})
			return err
		}, "", "", allow("webhook.set")},
		{"set another office's webhook", func() error {
			_, err := s.SetWebhook(ctx, coordinator("nav-grorud"), "nav-arstad", service.WebhookRequest{URL: "https://hooks.example.no/a"})
			return err
		}, broker.EFORBIDDEN, broker.CodeForbidden, deny("webhook.set", "office_mismatch")},
		{"read the disclosure feed", func() error { _, err := s.Disclosures(ctx, liaison(), "", 0); return err }, "", "",
			allow("disclosures.read")},
		{"read the feed as a caseworker", func() error { _, err := s.Disclosures(ctx, cw(), "", 0); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("disclosures.read", "role_not_permitted")},
		{"search the log", func() error { _, err := s.SearchAudit(ctx, po(), service.AuditSearch{Limit: 1}); return err }, "", "",
			allow("audit.search")},
		{"search the log as a caseworker", func() error { _, err := s.SearchAudit(ctx, cw(), service.AuditSearch{}); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("audit.search", "role_not_permitted")},
		{"subject report", func() error {
			_, err := s.Report(ctx, po(), service.SubjectReportRequest{Subject: subject})
			return err
		}, "", "", allow("audit.report")},
		{"subject report as a caseworker", func() error {
			_, err := s.Report(ctx, cw(), service.SubjectReportRequest{Subject: subject})
			return err
		}, broker.EFORBIDDEN, broker.CodeForbidden, deny("audit.report", "role_not_permitted")},
		{"stats", func() error { _, err := s.AuditStats(ctx, po(), broker.StatsFilter{}); return err }, "", "", allow("audit.stats")},
		{"stats as a caseworker", func() error { _, err := s.AuditStats(ctx, cw(), broker.StatsFilter{}); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("audit.stats", "role_not_permitted")},
		{"list reviews", func() error { _, err := s.ListReviews(ctx, po(), broker.ReviewFilter{}); return err }, "", "",
			allow("audit.reviews", "status:")},
		{"list reviews as a caseworker", func() error { _, err := s.ListReviews(ctx, cw(), broker.ReviewFilter{}); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("audit.review", "role_not_permitted")},
		{"judge as a caseworker", func() error { _, err := s.Judge(ctx, cw(), "1", justified); return err },
			broker.EFORBIDDEN, broker.CodeForbidden, deny("audit.review", "role_not_permitted")},
		{"revoke", func() error {
			_, err := s.RevokeFlag(ctx, liaison(), fl.ID, service.RevokeRequest{Reason: "done"})
			return err
		},
			"", "", audited{"flag.revoke", "allow", []string{}}},
		{"revoke another agency's flag", func() error {
			_, err := s.RevokeFlag(ctx, coordinator("nav-grorud"), fl.ID, service.RevokeRequest{Reason: "done"})
			return err
		}, broker.ENOTFOUND, broker.CodeNotFound, deny("flag.revoke", "not_issuing_agency")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := head(t)
			wantErr(t, c.call(), c.kind, c.code)
			expectAudit(t, before, c.want)
		})
	}
}

// TestNoAuditNoDisclosure: when the audit log cannot take the entry,
// nothing is answered: the caller gets 503 audit_unavailable, not the flags.
func TestNoAuditNoDisclosure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	subject := person()
	liaison := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-n")
	fl := f.issue(t, liaison, flagReq(subject, "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
	f.audit.Close()
	cases := []struct {
		name string
		call func() (answered bool, err error)
	}{
		{"a check of a flagged person", func() (bool, error) {
			r, err := f.check(as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-n"), subject, "")
			return r != nil, err
		}},
		{"an emergency check", func() (bool, error) {
			r, err := f.check(as("ous", broker.RoleHealthWorker, "", "lege-n"), subject, justification)
			return r != nil, err
		}},
		{"a refused check", func() (bool, error) {
			r, err := f.check(as("nav-stat", broker.RolePrivacyOfficer, "", "po-n"), subject, "")
			return r != nil, err
		}},
		{"the issuer's read", func() (bool, error) {
			r, err := f.svc.Flag(ctx, again(liaison), fl.ID)
			return r != nil, err
		}},
		{"whoami", func() (bool, error) {
			r, err := f.svc.Whoami(ctx, again(liaison))
			return r != (audit.Receipt{}), err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := head(t)
			answered, err := c.call()
			wantErr(t, err, broker.EUNAVAILABLE, broker.CodeAuditUnavailable)
			if answered {
				t.Fatal("answered without an audit entry")
			}
			expectAudit(t, before)
		})
	}
}

// TestReplayedTokenChangesNothing: a token id is used once; a second
// request with it is refused and neither discloses nor stores anything.
func TestReplayedTokenChangesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	subject := person()
	f.issue(t, as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-x"), flagReq(subject, "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
	cases := []struct {
		name string
		p    *broker.Principal
		call func(p *broker.Principal) (answered bool, err error)
		want audited
	}{
		{"check", as("nav-stat", broker.RoleCaseworker, "nav-grorud", "cw-x"), func(p *broker.Principal) (bool, error) {
			r, err := f.check(p, subject, "")
			return r != nil, err
		}, allow("check")},
		{"issue a flag", as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-x"), func(p *broker.Principal) (bool, error) {
			r, err := f.svc.IssueFlag(ctx, p, flagReq(person(), "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
			return r != nil, err
		}, allow("flag.issue")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			flags, before := count(t, `SELECT count(*) FROM flags`), head(t)
			if answered, err := c.call(c.p); err != nil || !answered {
				t.Fatal(err)
			}
			made := count(t, `SELECT count(*) FROM flags`)
			answered, err := c.call(c.p)
			wantErr(t, err, broker.EUNAUTHORIZED, broker.CodeReplayed)
			if answered {
				t.Fatal("the replay was answered")
			}
			if made != count(t, `SELECT count(*) FROM flags`) || (c.want.action == "flag.issue") != (made == flags+1) {
				t.Fatal("the replay changed the flags")
			}
			e := expectAudit(t, before, c.want)[0]
			if e.RequestJTI != c.p.JTI {
				t.Fatalf("entry records token id %q, want %q", e.RequestJTI, c.p.JTI)
			}
		})
	}
}

// TestRefusedForeignFlagReadLooksLikeNoFlag: an employee who asks for
// another agency's flag by its id is refused as for an id that names no
// flag, and their own agency's privacy officer cannot tell the two apart
// in the log either (its reason and id would say that the other agency
// holds a flag under that id). The operator's auditors see both whole.
func TestRefusedForeignFlagReadLooksLikeNoFlag(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.svc
	liaison := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-probe")
	fl := f.issue(t, liaison, flagReq(person(), "politiregl-27-2", kinds("nav-state"), f.clock.Now()))
	prober := as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-probe")
	for _, id := range []string{fl.ID, noSuchFlag} {
		if _, err := s.Flag(ctx, again(prober), id); broker.ErrorKind(err) != broker.ENOTFOUND {
			t.Fatalf("read %s: %v; want ENOTFOUND", id, err)
		}
		if _, err := s.RevokeFlag(ctx, again(prober), id, service.RevokeRequest{Reason: "probe"}); broker.ErrorKind(err) != broker.ENOTFOUND {
			t.Fatalf("revoke %s: %v; want ENOTFOUND", id, err)
		}
	}

	search := func(p *broker.Principal) []service.EntryView {
		res, err := s.SearchAudit(ctx, p, service.AuditSearch{ActorAgency: "nav-stat", Actor: "sec-probe", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		return res.Entries
	}
	// Each view with what differs between any two entries blanked.
	same := func(v service.EntryView) service.EntryView {
		v.Seq, v.TS, v.RequestJTI, v.PrevHash, v.Hash = 0, "", "", "", ""
		return v
	}
	officer := search(as("nav-stat", broker.RolePrivacyOfficer, "", "po-probe"))
	if len(officer) != 4 {
		t.Fatalf("the officer sees %d entries; want 4 (two reads, two revocations)", len(officer))
	}
	// In log order: read and revoke of the foreign flag, then of no flag.
	for i := range 2 {
		foreign, none := officer[i], officer[i+2]
		if !reflect.DeepEqual(same(foreign), same(none)) {
			t.Errorf("%s: the officer can tell a refusal of another agency's flag\n%+v\nfrom one of no flag\n%+v", foreign.Action, foreign, none)
		}
		if len(none.FlagIDs) != 0 || !slices.Equal(none.Reasons, []string{"no_such_flag"}) {
			t.Errorf("%s: refusal of no flag %+v; want no ids and no_such_flag", none.Action, none)
		}
	}

	operator := search(as("varsel-tilsyn", broker.RolePrivacyOfficer, "", "tilsyn-probe"))
	if len(operator) != 4 || !slices.Equal(operator[0].FlagIDs, []string{fl.ID}) || slices.Contains(operator[0].Reasons, "no_such_flag") ||
		!slices.Equal(operator[2].Reasons, []string{"no_such_flag"}) {
		t.Fatalf("the operator's auditors' view %+v; want the foreign read with its id and the policy's reason", operator)
	}
}
