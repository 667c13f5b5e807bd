package service_test

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"varsel/broker"
	"varsel/broker/service"
)

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
