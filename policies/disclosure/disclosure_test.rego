# METADATA
# title: Tests for disclosure
# description: >-
#   Audience, basis direction for every issuer kind and reader kind, in-force
#   dates, same office, the duty desk and the life-and-health exception.
package disclosure_test

import data.disclosure

normal_fields := ["categories", "contact", "id", "issuer", "legal_basis", "level", "precautions", "valid_until"]

now := "2026-12-15T10:00:00Z"

kinds := ["nav-state", "nav-municipal", "police", "health"]

nav_state_caseworker := {"agency": "nav-state", "agency_kind": "nav-state", "role": "caseworker", "office": "nav-grorud", "sub": "s1"}

nav_municipal_reception := {"agency": "oslo-kommune", "agency_kind": "nav-municipal", "role": "reception", "office": "nav-grorud", "sub": "m1"}

police_liaison := {"agency": "oslo-pd", "agency_kind": "police", "role": "police-liaison", "office": "", "sub": "p1"}

health_worker := {"agency": "ous", "agency_kind": "health", "role": "health-worker", "office": "", "sub": "h1"}

reader_of_kind := {
	"nav-state": nav_state_caseworker,
	"nav-municipal": nav_municipal_reception,
	"police": police_liaison,
	"health": health_worker,
}

flag(id, issuer_kind, issuer_office, basis, aud_kinds, offices) := {
	"id": id,
	"level": "high",
	"issuer_agency": concat("-", [issuer_kind, "agency"]),
	"issuer_kind": issuer_kind,
	"issuer_office": issuer_office,
	"legal_basis": basis,
	"audience": {"kinds": aud_kinds, "offices": offices},
	"duty_desk": false,
}

check_at(principal, emergency, flags, t) := d if {
	d := disclosure.decision with input as {
		"principal": principal,
		"purpose": "meeting",
		"emergency": emergency,
		"flags": flags,
		"time": t,
	}
}

check(principal, emergency, flags) := check_at(principal, emergency, flags, now)

normal(id, basis, duty_desk) := {
	"id": id,
	"fields": normal_fields,
	"legal_basis": basis,
	"shown_basis": {true: "via-duty-desk", false: basis}[duty_desk],
	"duty_desk": duty_desk,
}

clear := {"allow": true, "flags": [], "exception": [], "review_required": false, "reasons": ["audience_and_basis"]}

seen_by(principal, f) if {
	d := check(principal, false, [f])
	d.flags == [normal(f.id, f.legal_basis, d.flags[0].duty_desk)]
}

hidden_from(principal, f) if check(principal, false, [f]) == clear

# Every pair of issuer kind and reader kind, and the bases (in force on
# 2026-12-15) under which a flag addressed to the reader is shown to it.
# Everything else in the catalogue must stay hidden for that pair.
direction_table := {
	"nav-state": {
		"nav-state": {"navl-16"},
		"nav-municipal": {"navl-16"},
		"police": {"fvl-13b-6-navl", "strl-196"},
		"health": set(),
	},
	"nav-municipal": {
		"nav-state": {"navl-16"},
		"nav-municipal": {"navl-16"},
		"police": {"fvl-13b-6-sotjl", "strl-196"},
		"health": set(),
	},
	"police": {
		"nav-state": {"politiregl-27-2", "politiregl-30"},
		"nav-municipal": {"politiregl-27-2", "politiregl-30"},
		"police": set(),
		"health": {"politiregl-27-2", "politiregl-30"},
	},
	"health": {
		"nav-state": {"hpl-23-4"},
		"nav-municipal": {"hpl-23-4"},
		"police": {"hpl-23-4", "hpl-31", "strl-196"},
		"health": {"hpl-23-4"},
	},
}

# The emergency route for each pair: the basis the exception reaches a
# flag not addressed to the reader under, or none.
emergency_table := {
	"nav-state": {"nav-state": "fvl-13b-7", "nav-municipal": "fvl-13b-7", "police": "fvl-13b-7", "health": "fvl-13b-7"},
	"nav-municipal": {"nav-state": "fvl-13b-7", "nav-municipal": "fvl-13b-7", "police": "fvl-13b-7", "health": "fvl-13b-7"},
	"police": {"nav-state": "politiregl-27-1", "nav-municipal": "politiregl-27-1", "police": null, "health": "politiregl-27-1"},
	"health": {"nav-state": null, "nav-municipal": null, "police": null, "health": null},
}

test_direction_table_covers_every_pair if {
	every ik in kinds {
		every rk in kinds {
			is_set(direction_table[ik][rk])
			emergency_table[ik][rk] != "missing"
		}
	}
}

test_every_basis_for_every_pair if {
	every ik in kinds {
		every rk in kinds {
			reader := reader_of_kind[rk]
			every code, _ in data.legal_bases {
				# Addressed to the reader by kind and office, issued from the reader's office.
				f := flag("f1", ik, reader.office, code, [rk], [])
				d := check(reader, false, [f])
				expected := code in direction_table[ik][rk]
				shown := count(d.flags) == 1
				expected == shown
				d.exception == []
			}
		}
	}
}

test_emergency_route_for_every_pair if {
	every ik in kinds {
		every rk in kinds {
			reader := reader_of_kind[rk]

			# Not addressed to the reader: only the exception can reach it.
			f := flag("f1", ik, "", "strl-196", [], ["somewhere-else"])
			d := check(reader, true, [f])
			d.flags == []
			d.review_required == true
			route := emergency_table[ik][rk]
			expected := {true: [], false: [{"id": "f1", "legal_basis": route}]}[route == null]
			d.exception == expected
		}
	}
}

# Normal visibility by audience kind and office

test_police_flag_to_nav_state_by_kind if {
	d := check(nav_state_caseworker, false, [flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])])
	d == {
		"allow": true,
		"flags": [normal("f1", "politiregl-27-2", false)],
		"exception": [],
		"review_required": false,
		"reasons": ["audience_and_basis"],
	}
}

test_police_flag_to_nav_office_by_office if {
	seen_by(nav_municipal_reception, flag("f1", "police", "", "politiregl-30", [], ["nav-grorud"]))
}

test_police_flag_to_other_office_hidden if {
	hidden_from(nav_municipal_reception, flag("f1", "police", "", "politiregl-30", [], ["nav-arstad"]))
}

test_reader_without_office_not_matched_by_empty_office if {
	hidden_from(police_liaison, flag("f1", "nav-state", "", "strl-196", [], [""]))
}

test_reader_kind_not_in_audience_hidden if {
	hidden_from(health_worker, flag("f1", "police", "", "politiregl-27-2", ["nav-state"], []))
}

test_unknown_basis_hidden if {
	hidden_from(nav_state_caseworker, flag("f1", "police", "", "no-such-basis", kinds, []))
}

# In force at the decision time

test_flags_under_retired_bases_no_longer_disclosed if {
	every c in [["navl-7", "nav-state", police_liaison], ["sotjl-44", "nav-municipal", police_liaison], ["politiregl-27", "police", nav_state_caseworker]] {
		f := flag("f1", c[1], "", c[0], kinds, [])
		hidden_from(c[2], f)

		# While the basis was in force, the same flag was shown.
		count(check_at(c[2], false, [f], "2020-06-01T10:00:00Z").flags) == 1
	}
}

test_basis_not_yet_in_force_not_disclosed if {
	f := flag("f1", "nav-state", "", "fvl-13b-6-navl", ["police"], [])
	check_at(police_liaison, false, [f], "2020-06-01T10:00:00Z").flags == []
	count(check(police_liaison, false, [f]).flags) == 1
}

test_decision_without_time_discloses_nothing if {
	f := flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])
	d := disclosure.decision with input as {"principal": nav_state_caseworker, "purpose": "meeting", "emergency": true, "flags": [f]}
	d.flags == []
	d.exception == []
	d.review_required == true
}

# When the new forvaltningsloven gets a commencement date, the exception
# switches route on that day: a change to data alone.
successor_bases := object.union(data.legal_bases, {
	"fvl-13b-7": object.union(data.legal_bases["fvl-13b-7"], {"in_force_until": "2027-06-30", "retired": {"why": "replaced", "replaced_by": ["fvl2025-34-1-m"]}}),
	"fvl2025-34-1-m": object.union(data.legal_bases["fvl2025-34-1-m"], {"in_force_from": "2027-07-01"}),
})

test_exception_route_follows_commencement if {
	f := flag("f1", "nav-state", "", "strl-196", ["police"], [])
	before := check_at(health_worker, true, [f], "2027-06-30T12:00:00Z") with data.legal_bases as successor_bases
	before.exception == [{"id": "f1", "legal_basis": "fvl-13b-7"}]
	after := check_at(health_worker, true, [f], "2027-07-01T12:00:00Z") with data.legal_bases as successor_bases
	after.exception == [{"id": "f1", "legal_basis": "fvl2025-34-1-m"}]
	today := check(health_worker, true, [f])
	today.exception == [{"id": "f1", "legal_basis": "fvl-13b-7"}]
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

# The duty desk

test_health_flag_to_non_health_readers_through_the_desk if {
	every c in [[nav_state_caseworker, "hpl-23-4"], [nav_municipal_reception, "hpl-23-4"], [police_liaison, "hpl-31"], [police_liaison, "strl-196"]] {
		d := check(c[0], false, [flag("f1", "health", "", c[1], kinds, [])])
		d.flags == [normal("f1", c[1], true)]
		d.flags[0].shown_basis == "via-duty-desk"
	}
}

test_health_flag_to_health_reader_not_redacted if {
	d := check(health_worker, false, [flag("f1", "health", "", "hpl-23-4", ["health"], [])])
	d.flags == [normal("f1", "hpl-23-4", false)]
}

test_nav_flag_not_redacted if {
	d := check(police_liaison, false, [flag("f1", "nav-state", "", "fvl-13b-6-navl", ["police"], [])])
	d.flags == [normal("f1", "fvl-13b-6-navl", false)]
}

test_any_issuer_may_choose_the_desk if {
	every c in [["police", "politiregl-27-2", nav_state_caseworker], ["police", "politiregl-30", health_worker], ["nav-state", "strl-196", police_liaison]] {
		f := object.union(flag("f1", c[0], "", c[1], kinds, []), {"duty_desk": true})
		d := check(c[2], false, [f])
		d.flags == [normal("f1", c[1], true)]
	}
}

# A reader sees the same of a health flag and of a police flag whose issuer
# chose the desk: only the internal basis (for the audit entry) differs.
test_health_source_cannot_be_told_from_the_desk if {
	h := flag("f1", "health", "", "hpl-23-4", ["nav-state"], [])
	p := object.union(flag("f1", "police", "", "politiregl-27-2", ["nav-state"], []), {"duty_desk": true})
	dh := check(nav_state_caseworker, false, [h])
	dp := check(nav_state_caseworker, false, [p])
	object.remove(dh.flags[0], ["legal_basis"]) == object.remove(dp.flags[0], ["legal_basis"])
	object.remove(dh, ["flags"]) == object.remove(dp, ["flags"])
}

# The life-and-health exception

test_emergency_names_hidden_flags_with_their_route if {
	d := check(health_worker, true, [flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])])
	d == {
		"allow": true,
		"flags": [],
		"exception": [{"id": "f1", "legal_basis": "politiregl-27-1"}],
		"review_required": true,
		"reasons": ["life_and_health_exception"],
	}
}

test_emergency_does_not_reach_health_flags_outside_their_audience if {
	# Health personnel are bound by helsepersonelloven; only their own bases disclose.
	d := check(police_liaison, true, [flag("f1", "health", "", "hpl-23-4", ["nav-state"], [])])
	d.flags == []
	d.exception == []
	d.review_required == true
}

test_emergency_does_not_reach_exclusions if {
	f := object.union(flag("f1", "nav-state", "nav-grorud", "navl-16", [], ["nav-grorud"]), {"level": "exclusion"})
	d := check(police_liaison, true, [f])
	d.exception == []
	hidden_from(object.union(nav_state_caseworker, {"office": "nav-arstad"}), f)
}

test_emergency_keeps_visible_flags_normal if {
	flags := [
		flag("f3", "police", "", "politiregl-27-2", ["nav-state"], []),
		flag("f1", "nav-municipal", "", "fvl-13b-6-sotjl", ["police"], []),
		flag("f4", "police", "", "politiregl-30", ["health"], []),
		flag("f2", "health", "", "hpl-23-4", ["nav-state"], []),
	]
	d := check(nav_state_caseworker, true, flags)
	d.flags == [normal("f2", "hpl-23-4", true), normal("f3", "politiregl-27-2", false)]
	d.exception == [{"id": "f1", "legal_basis": "fvl-13b-7"}, {"id": "f4", "legal_basis": "politiregl-27-1"}]
	d.review_required == true
	d.reasons == ["life_and_health_exception"]
}

test_emergency_without_flags_still_reviewed if {
	d := check(nav_state_caseworker, true, [])
	d == {"allow": true, "flags": [], "exception": [], "review_required": true, "reasons": ["life_and_health_exception"]}
}

test_emergency_not_reaching_broker if {
	broker := {"agency": "varsel", "agency_kind": "broker", "role": "caseworker", "office": "", "sub": "b1"}
	d := check(broker, true, [flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])])
	d.flags == []
	d.exception == []
	d.review_required == true
}

test_emergency_must_be_true_boolean if {
	d := check(health_worker, "yes", [flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])])
	d == clear
}

# Denied roles see nothing: the same as a subject without flags

test_privacy_officer_cannot_check if {
	d := check(object.union(nav_state_caseworker, {"role": "privacy-officer"}), false, [flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])])
	d == {"allow": false, "flags": [], "exception": [], "review_required": false, "reasons": ["role_not_permitted"]}
}

test_agency_admin_cannot_check_even_in_emergency if {
	d := check(object.union(nav_state_caseworker, {"role": "agency-admin"}), true, [flag("f1", "police", "", "politiregl-27-2", ["nav-state"], [])])
	d.allow == false
	d.flags == []
	d.exception == []
	d.review_required == true
}

test_unauthorised_reader_gets_clear if {
	flags := [
		flag("f1", "police", "", "politiregl-27-2", ["health"], []),
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
	disclosure.decision == {"allow": false, "flags": [], "exception": [], "review_required": false, "reasons": ["role_not_permitted"]}
}

test_flags_sorted_by_id if {
	flags := [
		flag("c", "police", "", "politiregl-27-2", ["nav-state"], []),
		flag("a", "police", "", "politiregl-27-2", ["nav-state"], []),
		flag("b", "police", "", "politiregl-27-2", ["nav-state"], []),
	]
	d := check(nav_state_caseworker, false, flags)
	[f.id | some f in d.flags] == ["a", "b", "c"]
	e := check(health_worker, true, flags)
	[f.id | some f in e.exception] == ["a", "b", "c"]
}
