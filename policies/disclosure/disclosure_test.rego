# METADATA
# title: Tests for disclosure
# description: Audience, basis direction, same office, redaction and the life-and-health exception.
package disclosure_test

import data.disclosure

normal_fields := ["categories", "contact", "id", "issuer", "legal_basis", "level", "precautions", "valid_until"]

emergency_fields := ["level", "precautions", "valid_until"]

nav_state_caseworker := {"agency": "nav-state", "agency_kind": "nav-state", "role": "caseworker", "office": "nav-grorud", "sub": "s1"}

nav_municipal_reception := {"agency": "oslo-kommune", "agency_kind": "nav-municipal", "role": "reception", "office": "nav-grorud", "sub": "m1"}

police_liaison := {"agency": "oslo-pd", "agency_kind": "police", "role": "police-liaison", "office": "", "sub": "p1"}

health_worker := {"agency": "ous", "agency_kind": "health", "role": "health-worker", "office": "", "sub": "h1"}

flag(id, issuer_kind, issuer_office, basis, kinds, offices) := {
	"id": id,
	"level": "high",
	"issuer_agency": concat("-", [issuer_kind, "agency"]),
	"issuer_kind": issuer_kind,
	"issuer_office": issuer_office,
	"legal_basis": basis,
	"audience": {"kinds": kinds, "offices": offices},
}

check(principal, emergency, flags) := d if {
	d := disclosure.decision with input as {
		"principal": principal,
		"purpose": "meeting",
		"emergency": emergency,
		"flags": flags,
	}
}

normal(id, basis, duty_desk) := {
	"id": id,
	"fields": normal_fields,
	"legal_basis": basis,
	"emergency": false,
	"duty_desk": duty_desk,
}

exceptional(id) := {
	"id": id,
	"fields": emergency_fields,
	"legal_basis": "fvl-13b-7",
	"emergency": true,
	"duty_desk": false,
}

clear := {"allow": true, "flags": [], "review_required": false, "reasons": ["audience_and_basis"]}

seen_by(principal, f) if {
	d := check(principal, false, [f])
	d.flags == [normal(f.id, f.legal_basis, d.flags[0].duty_desk)]
}

hidden_from(principal, f) if check(principal, false, [f]) == clear

# Normal visibility by audience kind and basis direction

test_police_flag_to_nav_state_by_kind if {
	d := check(nav_state_caseworker, false, [flag("f1", "police", "", "politiregl-27", ["nav-state"], [])])
	d == {
		"allow": true,
		"flags": [normal("f1", "politiregl-27", false)],
		"review_required": false,
		"reasons": ["audience_and_basis"],
	}
}

test_police_flag_to_nav_office_by_office if {
	seen_by(nav_municipal_reception, flag("f1", "police", "", "politiregl-27", [], ["nav-grorud"]))
}

test_police_flag_to_other_office_hidden if {
	hidden_from(nav_municipal_reception, flag("f1", "police", "", "politiregl-27", [], ["nav-arstad"]))
}

test_reader_without_office_not_matched_by_empty_office if {
	hidden_from(police_liaison, flag("f1", "nav-state", "", "strl-196", [], [""]))
}

test_reader_kind_not_in_audience_hidden if {
	hidden_from(health_worker, flag("f1", "police", "", "politiregl-27", ["nav-state"], []))
}

# Each basis, in its direction, is seen; outside its direction, hidden even when
# the reader is in the audience.
direction_ok_cases := [
	["navl-7", "nav-state", police_liaison],
	["navl-7", "nav-state", nav_municipal_reception],
	["sotjl-44", "nav-municipal", nav_state_caseworker],
	["sotjl-44", "nav-municipal", health_worker],
	["hpl-23-4", "health", health_worker],
	["hpl-31", "health", police_liaison],
	["strl-196", "nav-municipal", police_liaison],
	["politiregl-27", "police", health_worker],
]

test_each_basis_direction_seen if {
	every c in direction_ok_cases {
		seen_by(c[2], flag("f1", c[1], "", c[0], ["nav-state", "nav-municipal", "police", "health"], []))
	}
}

direction_refused_cases := [
	["navl-7", "nav-state", nav_state_caseworker],
	["navl-7", "nav-municipal", police_liaison],
	["sotjl-44", "nav-municipal", nav_municipal_reception],
	["sotjl-44", "nav-state", police_liaison],
	["navl-16", "nav-state", police_liaison],
	["hpl-31", "health", nav_state_caseworker],
	["hpl-23-4", "police", nav_state_caseworker],
	["strl-196", "police", nav_state_caseworker],
	["politiregl-27", "police", police_liaison],
	["politiregl-27", "nav-state", health_worker],
	["fvl-13b-7", "police", nav_state_caseworker],
	["no-such-basis", "police", nav_state_caseworker],
]

test_each_basis_outside_direction_hidden if {
	every c in direction_refused_cases {
		hidden_from(c[2], flag("f1", c[1], "", c[0], ["nav-state", "nav-municipal", "police", "health"], []))
	}
}

# NAV-loven § 16: the same NAV office only

test_navl_16_same_office_seen if {
	seen_by(nav_municipal_reception, flag("f1", "nav-state", "nav-grorud", "navl-16", ["nav-municipal"], []))
}

test_navl_16_same_kind_same_office_seen if {
	seen_by(nav_state_caseworker, flag("f1", "nav-state", "nav-grorud", "navl-16", [], ["nav-grorud"]))
}

test_navl_16_other_office_hidden if {
	hidden_from(nav_municipal_reception, flag("f1", "nav-state", "nav-arstad", "navl-16", ["nav-municipal"], []))
}

test_navl_16_no_issuer_office_hidden if {
	hidden_from(nav_municipal_reception, flag("f1", "nav-state", "", "navl-16", ["nav-municipal"], []))
}

test_navl_16_reader_without_office_hidden if {
	hidden_from(object.union(nav_state_caseworker, {"office": ""}), flag("f1", "nav-municipal", "", "navl-16", ["nav-state"], []))
}

# Health-sourced flags go through the duty desk for non-health readers

test_health_flag_to_nav_reader_duty_desk if {
	d := check(nav_state_caseworker, false, [flag("f1", "health", "", "hpl-23-4", ["nav-state"], [])])
	d.flags == [normal("f1", "hpl-23-4", true)]
	d.reasons == ["audience_and_basis"]
}

test_health_flag_to_police_duty_desk if {
	d := check(police_liaison, false, [flag("f1", "health", "", "hpl-31", ["police"], [])])
	d.flags == [normal("f1", "hpl-31", true)]
}

test_health_flag_to_health_reader_not_redacted if {
	d := check(health_worker, false, [flag("f1", "health", "", "hpl-23-4", ["health"], [])])
	d.flags == [normal("f1", "hpl-23-4", false)]
}

test_nav_flag_not_redacted if {
	d := check(police_liaison, false, [flag("f1", "nav-state", "", "navl-7", ["police"], [])])
	d.flags == [normal("f1", "navl-7", false)]
}

# Life-and-health exception

test_emergency_sees_out_of_audience_flag_with_three_fields if {
	d := check(health_worker, true, [flag("f1", "police", "", "politiregl-27", ["nav-state"], [])])
	d == {
		"allow": true,
		"flags": [exceptional("f1")],
		"review_required": true,
		"reasons": ["life_and_health_exception"],
	}
	d.flags[0].fields == ["level", "precautions", "valid_until"]
	not "id" in d.flags[0].fields
}

test_emergency_does_not_reach_health_flags_outside_their_audience if {
	# fvl-13b-7 does not cover health as a source: health personnel are
	# bound by helsepersonelloven, and only their own bases disclose.
	d := check(police_liaison, true, [flag("f1", "health", "", "hpl-23-4", ["nav-state"], [])])
	d.flags == []
	d.review_required == true
}

test_emergency_keeps_visible_flags_normal if {
	flags := [
		flag("f3", "police", "", "politiregl-27", ["nav-state"], []),
		flag("f1", "nav-municipal", "", "sotjl-44", ["police"], []),
		flag("f2", "health", "", "hpl-23-4", ["nav-state"], []),
	]
	d := check(nav_state_caseworker, true, flags)
	d.flags == [exceptional("f1"), normal("f2", "hpl-23-4", true), normal("f3", "politiregl-27", false)]
	d.review_required == true
	d.reasons == ["life_and_health_exception"]
}

test_emergency_without_flags_still_reviewed if {
	d := check(nav_state_caseworker, true, [])
	d == {"allow": true, "flags": [], "review_required": true, "reasons": ["life_and_health_exception"]}
}

test_emergency_not_reaching_broker if {
	broker := {"agency": "varsel", "agency_kind": "broker", "role": "caseworker", "office": "", "sub": "b1"}
	d := check(broker, true, [flag("f1", "police", "", "politiregl-27", ["nav-state"], [])])
	d.flags == []
	d.review_required == true
}

test_emergency_must_be_true_boolean if {
	d := check(health_worker, "yes", [flag("f1", "police", "", "politiregl-27", ["nav-state"], [])])
	d == clear
}

# Denied roles see nothing: the same as a subject without flags

test_privacy_officer_cannot_check if {
	d := check(object.union(nav_state_caseworker, {"role": "privacy-officer"}), false, [flag("f1", "police", "", "politiregl-27", ["nav-state"], [])])
	d == {"allow": false, "flags": [], "review_required": false, "reasons": ["role_not_permitted"]}
}

test_agency_admin_cannot_check_even_in_emergency if {
	d := check(object.union(nav_state_caseworker, {"role": "agency-admin"}), true, [flag("f1", "police", "", "politiregl-27", ["nav-state"], [])])
	d.allow == false
	d.flags == []
	d.review_required == true
}

test_unauthorised_reader_gets_clear if {
	flags := [
		flag("f1", "police", "", "politiregl-27", ["health"], []),
		flag("f2", "health", "", "hpl-31", ["police"], []),
	]
	check(nav_state_caseworker, false, flags) == check(nav_state_caseworker, false, [])
	check(nav_state_caseworker, false, []) == clear
}

test_every_check_role_allowed if {
	every role in ["caseworker", "reception", "security-coordinator", "police-liaison", "health-worker"] {
		check(object.union(nav_state_caseworker, {"role": role}), false, []) == clear
	}
}

test_missing_input_denied if {
	disclosure.decision == {"allow": false, "flags": [], "review_required": false, "reasons": ["role_not_permitted"]}
}

test_flags_sorted_by_id if {
	flags := [
		flag("c", "police", "", "politiregl-27", ["nav-state"], []),
		flag("a", "police", "", "politiregl-27", ["nav-state"], []),
		flag("b", "police", "", "politiregl-27", ["nav-state"], []),
	]
	d := check(nav_state_caseworker, false, flags)
	[f.id | some f in d.flags] == ["a", "b", "c"]
}
