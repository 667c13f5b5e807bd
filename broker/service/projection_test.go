package service

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"varsel/audit"
	"varsel/broker"
)

// projectionFixture: oslo-pd issued P1 and P2, ous issued H, nav-stat issued N.
func projectionFixture(viewer string) *projection {
	return &projection{viewer: viewer, origins: map[string]broker.FlagOrigin{
		"P1": {Issuer: "oslo-pd", LegalBasis: "politiregl-27", SubjectRef: "refA"},
		"P2": {Issuer: "oslo-pd", LegalBasis: "politiregl-27", SubjectRef: "refB"},
		"H":  {Issuer: "ous", LegalBasis: "hpl-23-4", SubjectRef: "refA"},
		"N":  {Issuer: "nav-stat", LegalBasis: "navl-16", SubjectRef: "refA"},
	}}
}

func TestProjectionRules(t *testing.T) {
	emergencyCheck := audit.Entry{Seq: 9, ActorAgency: "ous", Actor: "lege", Role: "health-worker", Action: "check",
		Decision: "allow", SubjectRef: "refA", FlagIDs: []string{"N", "P1"}, LegalBasis: "fvl-13b-7", Emergency: true,
		Justification: "knife", Reasons: []string{"life_and_health_exception", "emergency_flag:N", "emergency_flag:P1"},
		RequestJTI: "jti-1", PolicyVersion: "pv", PrevHash: "ph", Hash: "h"}
	mixedCheck := audit.Entry{Seq: 10, ActorAgency: "oslo-kommune", Actor: "ola", Role: "caseworker", Office: "nav-arstad",
		Action: "check", Decision: "allow", SubjectRef: "refA", FlagIDs: []string{"N", "P1"}, LegalBasis: "fvl-13b-7,politiregl-27",
		Emergency: true, Justification: "armed", Reasons: []string{"life_and_health_exception", "emergency_flag:N"}, RequestJTI: "jti-2"}
	cases := []struct {
		name   string
		viewer string
		in     audit.Entry
		want   func(v EntryView) bool
	}{
		{"operator sees all", "", emergencyCheck, func(v EntryView) bool {
			return !v.Projected && reflect.DeepEqual(v.Entry, emergencyCheck)
		}},
		{"own emergency check withholds other agencies' exception flags", "ous", emergencyCheck, func(v EntryView) bool {
			return v.Projected && len(v.FlagIDs) == 0 && v.Actor == "lege" && v.Justification == "knife" && v.SubjectRef == "refA" &&
				v.LegalBasis == "fvl-13b-7" && slices.Equal(v.Reasons, []string{"life_and_health_exception", "emergency_flag:withheld", "emergency_flag:withheld"})
		}},
		{"issuer of an exception flag sees it, its basis, nothing of the reader", "oslo-pd", emergencyCheck, func(v EntryView) bool {
			return v.Projected && slices.Equal(v.FlagIDs, []string{"P1"}) && v.LegalBasis == "fvl-13b-7" && v.Actor == "" &&
				v.Justification == "" && v.SubjectRef == "" && v.RequestJTI == "" && v.Emergency && v.Hash == "h" &&
				slices.Equal(v.Reasons, []string{"life_and_health_exception", "emergency_flag:P1"})
		}},
		{"a flag disclosed normally in an emergency check has its own basis", "oslo-pd", mixedCheck, func(v EntryView) bool {
			return slices.Equal(v.FlagIDs, []string{"P1"}) && v.LegalBasis == "politiregl-27" && v.Office == "nav-arstad" &&
				slices.Equal(v.Reasons, []string{"life_and_health_exception"})
		}},
		{"own emergency check keeps own agency's exception flags", "nav-stat", audit.Entry{ActorAgency: "nav-stat", Action: "check",
			Decision: "allow", FlagIDs: []string{"N"}, Reasons: []string{"life_and_health_exception", "emergency_flag:N"}}, func(v EntryView) bool {
			return slices.Equal(v.FlagIDs, []string{"N"}) && slices.Equal(v.Reasons, []string{"life_and_health_exception", "emergency_flag:N"})
		}},
		{"own normal check keeps other agencies' flags it was shown", "nav-stat", audit.Entry{ActorAgency: "nav-stat", Action: "check",
			Decision: "allow", SubjectRef: "refA", FlagIDs: []string{"H", "P1"}, LegalBasis: "hpl-23-4,politiregl-27"}, func(v EntryView) bool {
			return slices.Equal(v.FlagIDs, []string{"H", "P1"}) && v.LegalBasis == "hpl-23-4,politiregl-27" && v.SubjectRef == "refA"
		}},
		{"own acknowledgement withholds the warning's flag and subject", "nav-stat", audit.Entry{ActorAgency: "nav-stat", Actor: "cw",
			Action: "warning.ack", Decision: "allow", SubjectRef: "refB", FlagIDs: []string{"P2"}}, func(v EntryView) bool {
			return len(v.FlagIDs) == 0 && v.SubjectRef == "" && v.Actor == "cw"
		}},
		{"own verdict withholds the reviewed entry's other agencies' flags", "ous", audit.Entry{ActorAgency: "ous", Action: "review.verdict",
			Decision: "allow", FlagIDs: []string{"N", "P1"}, LegalBasis: "fvl-13b-7", Reasons: []string{"review:emergency:9", "verdict:justified"}},
			// and their bases, which could name their sector.
			func(v EntryView) bool { return len(v.FlagIDs) == 0 && v.LegalBasis == "" }},
		{"own refused read of an own flag names the id the employee asked for", "nav-stat", audit.Entry{ActorAgency: "nav-stat",
			Action: "flag.read", Decision: "deny", FlagIDs: []string{"N"}, Reasons: []string{"role_not_permitted"}},
			func(v EntryView) bool {
				return slices.Equal(v.FlagIDs, []string{"N"}) && slices.Equal(v.Reasons, []string{"role_not_permitted"})
			}},
		{"own refused read of another agency's flag reads as one of no flag", "nav-stat", audit.Entry{ActorAgency: "nav-stat",
			Action: "flag.read", Decision: "deny", FlagIDs: []string{"P1"}, Reasons: []string{"not_issuing_agency"}},
			func(v EntryView) bool {
				return len(v.FlagIDs) == 0 && slices.Equal(v.Reasons, []string{"no_such_flag"})
			}},
		{"own refused revocation of another agency's flag reads as one of no flag", "nav-stat", audit.Entry{ActorAgency: "nav-stat",
			Action: "flag.revoke", Decision: "deny", FlagIDs: []string{"H"}, Reasons: []string{"role_not_permitted"}},
			func(v EntryView) bool {
				return len(v.FlagIDs) == 0 && slices.Equal(v.Reasons, []string{"no_such_flag"})
			}},
		{"own entry: a flag the broker does not know is nobody's", "nav-stat", audit.Entry{ActorAgency: "nav-stat",
			Action: "warning.ack", Decision: "deny", FlagIDs: []string{"gone"}, SubjectRef: "refX"},
			func(v EntryView) bool { return len(v.FlagIDs) == 0 && v.SubjectRef == "" }},
		{"inbox page of another agency: the viewer's flags, their bases; no colon reasons", "oslo-pd", audit.Entry{ActorAgency: "nav-vest",
			Actor: "cw-b", Action: "warning.inbox", Decision: "allow", Office: "nav-bergen", FlagIDs: []string{"P1", "H", "P2"},
			LegalBasis: "hpl-23-4,politiregl-27", Reasons: []string{"office:nav-bergen"}}, func(v EntryView) bool {
			return slices.Equal(v.FlagIDs, []string{"P1", "P2"}) && v.LegalBasis == "politiregl-27" && len(v.Reasons) == 0 && v.Actor == ""
		}},
		{"a foreign flag the broker does not know is not the viewer's", "oslo-pd", audit.Entry{ActorAgency: "nav-vest", Action: "check",
			Decision: "allow", FlagIDs: []string{"gone", "P1"}}, func(v EntryView) bool { return slices.Equal(v.FlagIDs, []string{"P1"}) }},
	}
	for _, c := range cases {
		in := c.in
		in.FlagIDs, in.Reasons = slices.Clone(c.in.FlagIDs), slices.Clone(c.in.Reasons)
		v := projectionFixture(c.viewer).project(&in)
		if !c.want(v) {
			t.Errorf("%s: %+v", c.name, v)
		}
		if !reflect.DeepEqual(in.FlagIDs, c.in.FlagIDs) || !reflect.DeepEqual(in.Reasons, c.in.Reasons) {
			t.Errorf("%s: project changed its input", c.name)
		}
		if c.viewer != "" && (v.FlagIDs == nil || v.Reasons == nil) {
			t.Errorf("%s: a list is null", c.name)
		}
	}
}

// Another agency's entry is built from an allow-list: with every string of
// the entry set to a marker (lists too), only the allowed members carry it,
// whatever members audit.Entry gains.
func TestProjectionForeignAllowList(t *testing.T) {
	var e audit.Entry
	rv := reflect.ValueOf(&e).Elem()
	for i := 0; i < rv.NumField(); i++ {
		switch f := rv.Field(i); f.Kind() {
		case reflect.String:
			f.SetString("SECRET-" + rv.Type().Field(i).Name)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"SECRET-" + rv.Type().Field(i).Name}))
		}
	}
	e.ActorAgency = "nav-stat"
	e.FlagIDs = append(e.FlagIDs, "P1")
	v := projectionFixture("oslo-pd").project(&e)
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	allowed := map[string]bool{"ts": true, "role": true, "office": true, "action": true, "decision": true,
		"policy_version": true, "prev_hash": true, "hash": true}
	for k, val := range m {
		s, _ := json.Marshal(val)
		if strings.Contains(string(s), "SECRET") && !allowed[k] {
			t.Errorf("another agency's %s reaches the viewer: %s", k, s)
		}
	}
	if !slices.Equal(v.FlagIDs, []string{"P1"}) || v.LegalBasis != "politiregl-27" || !v.Projected {
		t.Errorf("projected %s", b)
	}
}
