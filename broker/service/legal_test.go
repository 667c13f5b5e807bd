package service_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"varsel/broker"
	"varsel/broker/service"
	"varsel/policies"
)

// TestBasesFollowTheDecisionClock: the bases in force are those of the
// service's clock. On 30 June 2021 the old NAV-loven § 7 wording still
// applied and its flag was shown; from 1 July (midnight in Norway) it is
// refused for new flags and its flag is no longer disclosed, and the 2021
// wording takes over.
func TestBasesFollowTheDecisionClock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	coordinator := as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-clock")
	liaison := as("oslo-pd", broker.RolePoliceLiaison, "", "liaison-clock")
	f.clock.Set(time.Date(2021, 6, 30, 10, 0, 0, 0, time.UTC))
	subject := person()
	old := f.issue(t, coordinator, flagReq(subject, "navl-7", kinds("police"), f.clock.Now()))
	if res, err := f.check(again(liaison), subject, ""); err != nil || len(res.Flags) != 1 || res.Flags[0].ID != old.ID {
		t.Fatalf("on 30 June 2021: %+v %v", res, err)
	}
	if _, err := f.svc.IssueFlag(ctx, again(coordinator), flagReq(person(), "fvl-13b-6-navl", kinds("police"), f.clock.Now())); broker.ErrorCode(err) != broker.CodeLegalBasisNotInForce {
		t.Fatalf("the 2021 wording before it applied: %v", err)
	}
	if got := f.svc.LegalBases(nil); !slices.ContainsFunc(got, func(b policies.LegalBasis) bool { return b.Code == "navl-7" }) {
		t.Fatal("navl-7 not listed as in force on 30 June 2021")
	}

	f.clock.Set(time.Date(2021, 6, 30, 22, 30, 0, 0, time.UTC)) // 00:30 on 1 July in Oslo
	if res, err := f.check(again(liaison), subject, ""); err != nil || res.Result != service.ResultClear {
		t.Fatalf("a flag under a repealed basis is still disclosed: %+v %v", res, err)
	}
	if _, err := f.svc.IssueFlag(ctx, again(coordinator), flagReq(person(), "navl-7", kinds("police"), f.clock.Now())); broker.ErrorCode(err) != broker.CodeRetiredLegalBasis {
		t.Fatalf("navl-7 after its repeal: %v", err)
	}
	f.issue(t, again(coordinator), flagReq(person(), "fvl-13b-6-navl", kinds("police"), f.clock.Now()))
	// The retired basis still resolves, for the entry that disclosed under it.
	if b, err := f.svc.LegalBasis("navl-7"); err != nil || b.Retired == nil {
		t.Fatalf("navl-7 does not resolve: %+v %v", b, err)
	}
}

// TestExceptionAggregateQueuesIssuerNotices: the aggregate is the union of
// the reached flags' precautions at their highest level; the issuing
// offices with a webhook get a push queued, those without none, and the
// feed of each issuer names the route.
func TestExceptionAggregateQueuesIssuerNotices(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	coordinator := as("nav-stat", broker.RoleSecurityCoordinator, "nav-grorud", "sec-x")
	liaison := as("oslo-pd", broker.RolePoliceLiaison, "oslo-pd-sentrum", "liaison-x")
	if _, err := f.svc.SetWebhook(ctx, again(coordinator), "nav-grorud", service.WebhookRequest{URL: "https://hooks.example.org/nav"}); err != nil {
		t.Fatal(err)
	}
	subject := person()
	a := flagReq(subject, "fvl-13b-6-navl", kinds("police"), f.clock.Now())
	a.Level, a.Precautions = broker.LevelCaution, []string{"remote-contact-only"}
	nav := f.issue(t, again(coordinator), a)
	police := f.issue(t, again(liaison), flagReq(subject, "politiregl-27-2", kinds("nav-state"), f.clock.Now()))

	res, err := f.check(as("ous", broker.RoleHealthWorker, "", "lege-x"), subject, justification)
	if err != nil {
		t.Fatal(err)
	}
	want := &service.Exception{Level: broker.LevelHigh, Precautions: []string{"two-staff", "police-present", "remote-contact-only"}, Contact: dutyDesk}
	if len(res.Flags) != 0 || jsonOf(t, res.Exception) != jsonOf(t, want) {
		t.Fatalf("answer %s, want exception %s", jsonOf(t, res), jsonOf(t, want))
	}
	if n := count(t, `SELECT count(*) FROM webhook_pushes WHERE kind = 'exception-disclosure' AND check_seq = $1 AND flag_id = $2
		AND office = 'nav-grorud' AND legal_basis = 'fvl-13b-7'`, res.Audit.Seq, nav.ID); n != 1 {
		t.Fatalf("%d pushes queued to NAV Grorud, want 1", n)
	}
	// The police office registered no webhook: its feed alone tells it.
	if n := count(t, `SELECT count(*) FROM webhook_pushes WHERE flag_id = $1`, police.ID); n != 0 {
		t.Fatalf("%d pushes queued for an office without a webhook", n)
	}
	feed, err := f.svc.Disclosures(ctx, again(liaison), strconv.FormatInt(res.Audit.Seq-1, 10), 0)
	if err != nil {
		t.Fatal(err)
	}
	var mine []broker.Disclosure
	for _, d := range feed.Disclosures {
		if d.FlagID == police.ID {
			mine = append(mine, d)
		}
	}
	if len(mine) != 1 || mine[0].Seq != res.Audit.Seq || mine[0].LegalBasis != "politiregl-27-1" || !mine[0].ByException {
		t.Fatalf("police feed for its flag: %+v", mine)
	}
}
