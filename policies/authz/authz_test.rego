# METADATA
# title: Tests for action authorisation
# description: Every action, every check, every basis in and out of force, every obligation.
package authz_test

import data.authz
import data.catalogue

police := {"agency": "oslo-pd", "agency_kind": "police", "role": "police-liaison", "office": "", "sub": "p1"}

nav_state := {"agency": "nav-state", "agency_kind": "nav-state", "role": "security-coordinator", "office": "nav-grorud", "sub": "s1"}

nav_municipal := {"agency": "oslo-kommune", "agency_kind": "nav-municipal", "role": "security-coordinator", "office": "nav-grorud", "sub": "m1"}

health := {"agency": "ous", "agency_kind": "health", "role": "health-worker", "office": "", "sub": "h1"}

broker_auditor := {"agency": "varsel", "agency_kind": "broker", "role": "privacy-officer", "office": "", "sub": "b1"}

# The decision time of most tests: every current basis is in force then.
now := "2026-12-15T10:00:00Z"

as_role(principal, role) := object.union(principal, {"role": role})

# A decision record by the police's controller.
controller := {"given": true, "decided_by_role": "controller", "notice": "", "milder_measures_considered": false}

# The office head's complete exclusion decision.
office_head := {"given": true, "decided_by_role": "office-head", "notice": "given", "milder_measures_considered": true}

no_record := {"given": false, "decided_by_role": "", "notice": "", "milder_measures_considered": false}

# issue is a flag with every record given: the tests of one obligation take one away.
issue(level, basis, kinds, office_kinds, days, informed) := {
	"level": level,
	"legal_basis": basis,
	"audience": {"kinds": kinds, "offices": [], "office_kinds": office_kinds},
	"validity_days": days,
	"subject_notice_given": informed,
	"decision": controller,
}

exclusion(basis, offices, record) := {
	"level": "exclusion",
	"legal_basis": basis,
	"audience": {"kinds": [], "offices": offices, "office_kinds": ["nav-state", "nav-municipal"]},
	"validity_days": 84,
	"subject_notice_given": false,
	"decision": record,
}

decide_at(action, principal, resource, t) := d if {
	d := authz.decision with input as {"action": action, "principal": principal, "resource": resource, "time": t}
}

decide(action, principal, resource) := decide_at(action, principal, resource, now)

allowed(action, principal, resource) if {
	d := decide(action, principal, resource)
	d.allow == true
}

denied_for(action, principal, resource, reason) if {
	d := decide(action, principal, resource)
	d.allow == false
	reason in d.reasons
}

# flag.issue: issuers and levels

test_police_issues_high_to_nav_under_politiregl_27_2 if {
	d := decide("flag.issue", police, issue("high", "politiregl-27-2", ["nav-state", "nav-municipal"], [], 90, true))
	d == {"allow": true, "reasons": ["flag_issue_permitted"]}
}

test_police_exclusion_refused if {
	denied_for("flag.issue", police, issue("exclusion", "politiregl-27-2", ["nav-state"], [], 30, true), "level_not_permitted")
}

test_nav_state_exclusion_ok if {
	allowed("flag.issue", nav_state, exclusion("navl-16", ["nav-grorud"], office_head))
}

test_nav_municipal_exclusion_ok if {
	allowed("flag.issue", nav_municipal, exclusion("navl-16", ["nav-grorud"], office_head))
}

test_exclusion_longer_than_84_days_refused if {
	d := decide("flag.issue", nav_state, object.union(exclusion("navl-16", ["nav-grorud"], office_head), {"validity_days": 85}))
	d == {"allow": false, "reasons": ["exclusion_too_long"]}
}

test_validity_longer_than_a_year_refused if {
	d := decide("flag.issue", nav_state, issue("high", "fvl-13b-6-navl", ["police"], [], 366, false))
	d == {"allow": false, "reasons": ["validity_too_long", "validity_too_long_for_basis"]}
}

test_validity_of_a_year_ok if {
	allowed("flag.issue", nav_state, issue("high", "fvl-13b-6-navl", ["police"], [], 365, false))
}

test_validity_zero_refused if {
	denied_for("flag.issue", nav_state, issue("high", "fvl-13b-6-navl", ["police"], [], 0, false), "validity_invalid")
}

test_validity_not_a_number_refused if {
	d := decide("flag.issue", nav_state, issue("high", "fvl-13b-6-navl", ["police"], [], "90", false))
	d.allow == false
	"validity_invalid" in d.reasons
	"validity_too_long" in d.reasons
	"validity_too_long_for_basis" in d.reasons
}

test_unknown_level_refused if {
	denied_for("flag.issue", nav_state, issue("extreme", "fvl-13b-6-navl", ["police"], [], 30, false), "level_not_permitted")
}

test_missing_level_refused if {
	d := decide("flag.issue", nav_state, {"legal_basis": "fvl-13b-6-navl", "audience": {"kinds": ["police"]}, "validity_days": 30})
	d.allow == false
	d.reasons == ["level_not_permitted"]
}

test_health_exclusion_refused if {
	denied_for("flag.issue", health, issue("exclusion", "hpl-23-4", ["nav-state"], [], 30, true), "level_not_permitted")
}

test_caseworker_cannot_issue if {
	d := decide("flag.issue", as_role(nav_state, "caseworker"), issue("high", "fvl-13b-6-navl", ["police"], [], 30, false))
	d.allow == false
	"role_not_permitted" in d.reasons
}

test_nav_role_at_police_agency_cannot_issue if {
	denied_for("flag.issue", as_role(police, "security-coordinator"), issue("high", "politiregl-27-2", ["nav-state"], [], 30, true), "role_not_permitted")
}

test_broker_cannot_issue if {
	denied_for("flag.issue", as_role(broker_auditor, "security-coordinator"), issue("high", "fvl-13b-6-navl", ["police"], [], 30, false), "role_not_permitted")
}

# flag.issue: legal basis

test_unknown_basis_refused if {
	d := decide("flag.issue", nav_state, issue("high", "gdpr-6", ["police"], [], 30, false))
	d == {"allow": false, "reasons": ["basis_unknown"]}
}

test_missing_basis_refused if {
	denied_for("flag.issue", nav_state, {"level": "high", "audience": {"kinds": ["police"]}, "validity_days": 30}, "basis_unknown")
}

test_emergency_only_bases_refused_for_issue if {
	every c in [["fvl-13b-7", nav_state, ["police"]], ["politiregl-27-1", police, ["nav-state"]]] {
		d := decide("flag.issue", c[1], issue("high", c[0], c[2], [], 30, true))
		d.allow == false
		"basis_emergency_only" in d.reasons
	}
}

# Each basis used in its own direction is accepted: every issuer kind with
# every reader kind a current basis lets it reach.
basis_ok_cases := [
	["fvl-13b-6-navl", nav_state, ["police"]],
	["fvl-13b-6-sotjl", nav_municipal, ["police"]],
	["navl-16", nav_state, ["nav-state", "nav-municipal"]],
	["navl-16", nav_municipal, ["nav-state", "nav-municipal"]],
	["hpl-23-4", health, ["nav-state", "nav-municipal", "police", "health"]],
	["hpl-31", health, ["police"]],
	["strl-196", nav_state, ["police"]],
	["strl-196", nav_municipal, ["police"]],
	["strl-196", health, ["police"]],
	["politiregl-27-2", police, ["nav-state", "nav-municipal", "health"]],
	["politiregl-30", police, ["nav-state", "nav-municipal", "health"]],
]

test_each_basis_direction_ok if {
	every c in basis_ok_cases {
		allowed("flag.issue", c[1], issue("caution", c[0], c[2], [], 14, true))
	}
}

# Each basis used outside its direction is refused: wrong issuer kind or wrong reader kind.
basis_refused_cases := [
	["fvl-13b-6-navl", nav_municipal, ["police"]],
	["fvl-13b-6-navl", nav_state, ["nav-municipal"]],
	["fvl-13b-6-sotjl", nav_state, ["police"]],
	["fvl-13b-6-sotjl", nav_municipal, ["health"]],
	["navl-16", police, ["nav-state"]],
	["navl-16", nav_state, ["police"]],
	["navl-16", nav_state, ["health"]],
	["hpl-23-4", nav_state, ["health"]],
	["hpl-31", health, ["nav-state"]],
	["hpl-31", police, ["police"]],
	["strl-196", police, ["police"]],
	["strl-196", nav_state, ["nav-municipal"]],
	["strl-196", health, ["health"]],
	["politiregl-27-2", nav_state, ["police"]],
	["politiregl-27-2", police, ["police"]],
	["politiregl-30", health, ["nav-state"]],
	["politiregl-30", police, ["broker"]],
]

test_each_basis_outside_direction_refused if {
	every c in basis_refused_cases {
		denied_for("flag.issue", c[1], issue("caution", c[0], c[2], [], 14, true), "basis_direction")
	}
}

test_office_kind_outside_direction_refused if {
	d := decide("flag.issue", health, issue("high", "hpl-31", ["police"], ["nav-state"], 10, true))
	d == {"allow": false, "reasons": ["basis_direction"]}
}

test_office_kind_inside_direction_ok if {
	allowed("flag.issue", police, issue("high", "politiregl-27-2", [], ["nav-municipal", "nav-state"], 30, true))
}

test_empty_audience_refused if {
	d := decide("flag.issue", police, issue("high", "politiregl-27-2", [], [], 30, true))
	d == {"allow": false, "reasons": ["audience_empty"]}
}

test_missing_audience_refused if {
	denied_for("flag.issue", police, {"level": "high", "legal_basis": "politiregl-27-2", "validity_days": 30}, "audience_empty")
}

test_malformed_audience_refused if {
	denied_for("flag.issue", police, issue("high", "politiregl-27-2", "nav-state", [], 30, true), "audience_empty")
}

# flag.issue: in force at the decision time

test_repealed_bases_refused_for_new_flags if {
	every c in [["navl-7", nav_state, ["police"]], ["sotjl-44", nav_municipal, ["police"]], ["politiregl-27", police, ["nav-state"]]] {
		d := decide("flag.issue", c[1], issue("high", c[0], c[2], [], 30, true))
		d == {"allow": false, "reasons": ["basis_retired"]}
	}
}

test_repealed_basis_was_accepted_while_in_force if {
	d := decide_at("flag.issue", nav_state, issue("high", "navl-7", ["police"], [], 30, false), "2020-06-01T10:00:00Z")
	d.allow == true
}

test_basis_not_yet_in_force_refused if {
	# In 2020 the 2021 wording of NAV-loven § 7 tredje ledd did not exist.
	d := decide_at("flag.issue", nav_state, issue("high", "fvl-13b-6-navl", ["police"], [], 30, false), "2020-06-01T10:00:00Z")
	d == {"allow": false, "reasons": ["basis_not_in_force"]}
}

test_basis_without_commencement_refused if {
	d := decide("flag.issue", nav_state, issue("high", "fvl2025-34-1-m", ["police"], [], 30, false))
	d == {"allow": false, "reasons": ["basis_not_in_force"]}
}

test_decision_without_time_finds_no_basis if {
	d := authz.decision with input as {"action": "flag.issue", "principal": police, "resource": issue("high", "politiregl-27-2", ["nav-state"], [], 30, true)}
	d == {"allow": false, "reasons": ["basis_not_in_force"]}
	d2 := decide_at("flag.issue", police, issue("high", "politiregl-27-2", ["nav-state"], [], 30, true), "yesterday")
	d2 == d
}

# A commencement date set in data takes effect on that day in Norway: at
# 23:30 UTC on 31 December it is already 1 January in Oslo.
future_bases := object.union(data.legal_bases, {"fvl-13b-6-navl": object.union(data.legal_bases["fvl-13b-6-navl"], {"in_force_from": "2027-01-01"})})

test_commencement_is_a_data_change_on_the_norwegian_day if {
	res := issue("high", "fvl-13b-6-navl", ["police"], [], 30, false)
	before := decide_at("flag.issue", nav_state, res, "2026-12-31T22:59:59Z") with data.legal_bases as future_bases
	before == {"allow": false, "reasons": ["basis_not_in_force"]}
	after := decide_at("flag.issue", nav_state, res, "2026-12-31T23:00:00Z") with data.legal_bases as future_bases
	after.allow == true
}

test_the_last_day_of_a_basis_still_counts if {
	res := issue("high", "navl-7", ["police"], [], 30, false)
	decide_at("flag.issue", nav_state, res, "2021-06-30T21:59:59Z").allow == true
	decide_at("flag.issue", nav_state, res, "2021-06-30T22:00:00Z") == {"allow": false, "reasons": ["basis_retired"]}
}

test_retired_bases_still_resolve if {
	every code in ["navl-7", "sotjl-44", "politiregl-27"] {
		b := catalogue.resolves(code)
		b.in_force_until != null
		count(b.retired.replaced_by) > 0
		catalogue.ended(b, "2026-12-01")
	}
}

# Every basis in the catalogue carries its evidence (the Go lint checks the same at start).
test_every_basis_carries_its_evidence if {
	every _, b in data.legal_bases {
		b.provision.lov_id != ""
		b.provision.citation != ""
		b.wording != ""
		b.source != ""
		"in_force_from" in object.keys(b)
		"in_force_until" in object.keys(b)
		b.verified.checked != ""
		b.verified.not_checked != ""
		b.obligations.subject_notice.level in {"none", "if_possible", "required"}
		is_boolean(b.obligations.decision_record.required)
		is_boolean(b.obligations.issuer_told_at_disclosure.required)
	}
}

# flag.issue: a basis's own maximum validity

test_situational_duties_are_short if {
	every c in [["hpl-31", health], ["strl-196", health], ["strl-196", nav_state]] {
		allowed("flag.issue", c[1], issue("high", c[0], ["police"], [], 14, true))
		d := decide("flag.issue", c[1], issue("high", c[0], ["police"], [], 15, true))
		d == {"allow": false, "reasons": ["validity_too_long_for_basis"]}
	}
}

# flag.issue: subject notice

test_subject_notice_owed_under_police_bases if {
	every basis in ["politiregl-27-2", "politiregl-30"] {
		d := decide("flag.issue", police, issue("high", basis, ["nav-state"], [], 30, false))
		d == {"allow": false, "reasons": ["subject_not_informed"]}
	}
}

test_subject_notice_owed_by_health_whatever_the_basis if {
	every basis in ["hpl-23-4", "hpl-31", "strl-196"] {
		d := decide("flag.issue", health, issue("high", basis, ["police"], [], 10, false))
		d == {"allow": false, "reasons": ["subject_not_informed"]}
	}
}

test_no_subject_notice_owed_by_nav_reports if {
	every c in [["strl-196", nav_state], ["fvl-13b-6-navl", nav_state], ["fvl-13b-6-sotjl", nav_municipal]] {
		allowed("flag.issue", c[1], issue("high", c[0], ["police"], [], 10, false))
	}
}

test_subject_notice_missing_refused if {
	denied_for("flag.issue", health, {"level": "caution", "legal_basis": "hpl-31", "audience": {"kinds": ["police"]}, "validity_days": 10}, "subject_not_informed")
}

# flag.issue: decision record

test_decision_record_owed_under_police_bases if {
	every basis in ["politiregl-27-2", "politiregl-30"] {
		d := decide("flag.issue", police, object.union(issue("high", basis, ["nav-state"], [], 30, true), {"decision": no_record}))
		d == {"allow": false, "reasons": ["decision_record_missing"]}
	}
}

test_decision_record_by_the_controller_or_delegate if {
	every role in ["controller", "controller-delegate"] {
		rec := object.union(controller, {"decided_by_role": role})
		allowed("flag.issue", police, object.union(issue("high", "politiregl-30", ["nav-state"], [], 30, true), {"decision": rec}))
	}
	rec := object.union(controller, {"decided_by_role": "office-head"})
	denied_for("flag.issue", police, object.union(issue("high", "politiregl-30", ["nav-state"], [], 30, true), {"decision": rec}), "decision_record_missing")
}

test_no_decision_record_owed_by_health if {
	allowed("flag.issue", health, object.union(issue("high", "hpl-23-4", ["nav-state"], [], 30, true), {"decision": no_record}))
}

# flag.issue: exclusion decision and audience

exclusion_incomplete_cases := [
	no_record,
	object.union(office_head, {"decided_by_role": "controller"}),
	object.union(office_head, {"notice": ""}),
	object.union(office_head, {"milder_measures_considered": false}),
]

test_exclusion_without_its_decision_refused if {
	every rec in exclusion_incomplete_cases {
		d := decide("flag.issue", nav_state, exclusion("navl-16", ["nav-grorud"], rec))
		d == {"allow": false, "reasons": ["exclusion_decision_incomplete"]}
	}
}

test_exclusion_notice_may_be_explained if {
	allowed("flag.issue", nav_state, exclusion("navl-16", ["nav-grorud"], object.union(office_head, {"notice": "explained"})))
}

test_exclusion_reaches_only_its_office if {
	cases := [
		object.union(exclusion("navl-16", ["nav-grorud"], office_head), {"audience": {"kinds": ["nav-state"], "offices": ["nav-grorud"], "office_kinds": ["nav-state"]}}),
		exclusion("navl-16", ["nav-arstad"], office_head),
		exclusion("navl-16", ["nav-grorud", "nav-arstad"], office_head),
		exclusion("navl-16", [], office_head),
	]
	every res in cases {
		denied_for("flag.issue", nav_state, res, "exclusion_audience")
	}
	denied_for("flag.issue", object.union(nav_state, {"office": ""}), exclusion("navl-16", [""], office_head), "exclusion_audience")
	denied_for("flag.issue", nav_state, exclusion("fvl-13b-6-navl", ["nav-grorud"], office_head), "exclusion_audience")
}

# warning.issue

test_police_liaison_issues_warning if {
	d := decide("warning.issue", police, issue("high", "politiregl-27-2", [], ["nav-state", "nav-municipal"], 30, true))
	d == {"allow": true, "reasons": ["warning_issue_permitted"]}
}

test_nav_coordinator_cannot_issue_warning if {
	denied_for("warning.issue", nav_state, issue("high", "fvl-13b-6-navl", ["police"], [], 30, false), "role_not_permitted")
}

test_warning_basis_outside_direction_refused if {
	denied_for("warning.issue", police, issue("high", "hpl-31", ["police"], [], 10, true), "basis_direction")
}

test_warning_emergency_only_basis_refused if {
	denied_for("warning.issue", police, issue("high", "politiregl-27-1", ["nav-state"], [], 30, true), "basis_emergency_only")
}

test_warning_too_long_refused if {
	denied_for("warning.issue", police, issue("caution", "politiregl-27-2", ["nav-state"], [], 400, true), "validity_too_long")
}

test_warning_owes_the_same_obligations if {
	d := decide("warning.issue", police, object.union(issue("high", "politiregl-30", [], ["nav-state"], 30, false), {"decision": no_record}))
	d == {"allow": false, "reasons": ["decision_record_missing", "subject_not_informed"]}
}

# flag.read and flag.revoke

test_issuing_agency_roles_read_and_revoke if {
	every action in ["flag.read", "flag.revoke"] {
		every role in ["police-liaison", "security-coordinator", "health-worker", "agency-admin"] {
			allowed(action, as_role(police, role), {"issuer_agency": "oslo-pd"})
		}
	}
}

test_other_agency_cannot_read_or_revoke if {
	every action in ["flag.read", "flag.revoke"] {
		d := decide(action, nav_state, {"issuer_agency": "oslo-pd"})
		d == {"allow": false, "reasons": ["not_issuing_agency"]}
	}
}

test_empty_agency_cannot_read if {
	denied_for("flag.read", object.union(police, {"agency": ""}), {"issuer_agency": ""}, "not_issuing_agency")
}

test_caseworker_cannot_read_own_agency_flag if {
	d := decide("flag.read", as_role(nav_state, "caseworker"), {"issuer_agency": "nav-state"})
	d == {"allow": false, "reasons": ["role_not_permitted"]}
}

test_privacy_officer_reads_own_agency_flag if {
	allowed("flag.read", as_role(police, "privacy-officer"), {"issuer_agency": "oslo-pd"})
}

test_privacy_officer_cannot_read_other_agency_flag if {
	denied_for("flag.read", as_role(police, "privacy-officer"), {"issuer_agency": "nav-state"}, "not_issuing_agency")
}

test_privacy_officer_cannot_revoke if {
	denied_for("flag.revoke", as_role(police, "privacy-officer"), {"issuer_agency": "oslo-pd"}, "role_not_permitted")
}

# check.run

test_check_roles_may_check if {
	every role in ["caseworker", "reception", "security-coordinator", "police-liaison", "health-worker"] {
		allowed("check.run", as_role(nav_state, role), {})
	}
}

test_privacy_officer_cannot_check if {
	d := decide("check.run", as_role(nav_state, "privacy-officer"), {})
	d == {"allow": false, "reasons": ["role_not_permitted"]}
}

test_agency_admin_cannot_check if {
	denied_for("check.run", as_role(nav_state, "agency-admin"), {}, "role_not_permitted")
}

# warning.inbox and warning.ack

test_own_office_reads_inbox_and_acks if {
	every action in ["warning.inbox", "warning.ack"] {
		every role in ["security-coordinator", "caseworker"] {
			allowed(action, as_role(nav_state, role), {"office": "nav-grorud"})
		}
	}
}

test_other_office_cannot_read_inbox if {
	d := decide("warning.inbox", nav_state, {"office": "nav-arstad"})
	d == {"allow": false, "reasons": ["office_mismatch"]}
}

test_no_office_cannot_ack if {
	denied_for("warning.ack", object.union(nav_state, {"office": ""}), {"office": ""}, "office_mismatch")
}

test_reception_cannot_read_inbox if {
	denied_for("warning.inbox", as_role(nav_state, "reception"), {"office": "nav-grorud"}, "role_not_permitted")
}

# webhook.set

test_issuing_offices_set_their_own_webhook if {
	allowed("webhook.set", nav_state, {"office": "nav-grorud"})
	allowed("webhook.set", object.union(police, {"office": "oslo-pd-sentrum"}), {"office": "oslo-pd-sentrum"})
	allowed("webhook.set", object.union(health, {"office": "ous-psyk"}), {"office": "ous-psyk"})
}

test_caseworker_cannot_set_webhook if {
	denied_for("webhook.set", as_role(nav_state, "caseworker"), {"office": "nav-grorud"}, "role_not_permitted")
}

test_coordinator_cannot_set_other_office_webhook if {
	denied_for("webhook.set", nav_state, {"office": "nav-arstad"}, "office_mismatch")
	denied_for("webhook.set", police, {"office": ""}, "office_mismatch")
}

# disclosures.read

test_disclosures_readers if {
	every role in ["police-liaison", "security-coordinator", "health-worker", "agency-admin", "privacy-officer"] {
		every p in [police, nav_state, nav_municipal, health] {
			allowed("disclosures.read", as_role(p, role), {})
		}
	}
}

test_caseworker_cannot_read_disclosures if {
	denied_for("disclosures.read", as_role(nav_state, "caseworker"), {}, "role_not_permitted")
}

test_broker_cannot_read_disclosures if {
	d := decide("disclosures.read", broker_auditor, {})
	d == {"allow": false, "reasons": ["agency_kind_not_permitted"]}
}

# audit

test_privacy_officers_audit if {
	every action in ["audit.search", "audit.review", "audit.report", "audit.stats"] {
		every p in [broker_auditor, as_role(nav_state, "privacy-officer"), as_role(health, "privacy-officer")] {
			allowed(action, p, {})
		}
	}
}

test_others_cannot_audit if {
	every action in ["audit.search", "audit.review", "audit.report", "audit.stats"] {
		every p in [police, nav_state, as_role(police, "agency-admin")] {
			denied_for(action, p, {}, "role_not_permitted")
		}
	}
}

test_only_broker_auditors_read_entry_bundles if {
	allowed("audit.entries", broker_auditor, {})
	every p in [as_role(nav_state, "privacy-officer"), as_role(health, "privacy-officer"), as_role(police, "privacy-officer")] {
		denied_for("audit.entries", p, {}, "agency_kind_not_permitted")
	}
	denied_for("audit.entries", as_role(broker_auditor, "agency-admin"), {}, "role_not_permitted")
}

# anything else

test_unknown_action_denied if {
	d := decide("flag.delete", police, {"issuer_agency": "oslo-pd"})
	d == {"allow": false, "reasons": ["unknown_action"]}
}

test_missing_input_denied if {
	authz.decision == {"allow": false, "reasons": ["unknown_action"]}
	not authz.allow
}

test_missing_principal_denied if {
	d := authz.decision with input as {"action": "check.run"}
	d == {"allow": false, "reasons": ["role_not_permitted"]}
}
