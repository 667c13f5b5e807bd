# METADATA
# title: Tests for action authorisation
# description: Every action, every check, allowed and denied.
package authz_test

import data.authz

police := {"agency": "oslo-pd", "agency_kind": "police", "role": "police-liaison", "office": "", "sub": "p1"}

nav_state := {"agency": "nav-state", "agency_kind": "nav-state", "role": "security-coordinator", "office": "nav-grorud", "sub": "s1"}

nav_municipal := {"agency": "oslo-kommune", "agency_kind": "nav-municipal", "role": "security-coordinator", "office": "nav-grorud", "sub": "m1"}

health := {"agency": "ous", "agency_kind": "health", "role": "health-worker", "office": "", "sub": "h1"}

broker_auditor := {"agency": "varsel", "agency_kind": "broker", "role": "privacy-officer", "office": "", "sub": "b1"}

as_role(principal, role) := object.union(principal, {"role": role})

issue(level, basis, kinds, office_kinds, days, informed) := {
	"level": level,
	"legal_basis": basis,
	"audience": {"kinds": kinds, "office_kinds": office_kinds},
	"validity_days": days,
	"subject_informed_given": informed,
}

decide(action, principal, resource) := d if {
	d := authz.decision with input as {"action": action, "principal": principal, "resource": resource}
}

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

test_police_issues_high_to_nav_under_politiregl_27 if {
	d := decide("flag.issue", police, issue("high", "politiregl-27", ["nav-state", "nav-municipal"], [], 90, false))
	d == {"allow": true, "reasons": ["flag_issue_permitted"]}
}

test_police_issues_caution_to_police_under_strl_196 if {
	allowed("flag.issue", police, issue("caution", "strl-196", ["police"], [], 30, false))
}

test_police_exclusion_refused if {
	denied_for("flag.issue", police, issue("exclusion", "politiregl-27", ["nav-state"], [], 30, false), "level_not_permitted")
}

test_nav_state_exclusion_ok if {
	allowed("flag.issue", nav_state, issue("exclusion", "navl-16", ["nav-municipal"], ["nav-state"], 84, false))
}

test_nav_municipal_exclusion_ok if {
	allowed("flag.issue", nav_municipal, issue("exclusion", "navl-16", ["nav-state"], [], 14, false))
}

test_exclusion_longer_than_84_days_refused if {
	d := decide("flag.issue", nav_state, issue("exclusion", "navl-16", ["nav-municipal"], [], 85, false))
	d == {"allow": false, "reasons": ["exclusion_too_long"]}
}

test_validity_longer_than_a_year_refused if {
	d := decide("flag.issue", nav_state, issue("high", "navl-7", ["police"], [], 366, false))
	d == {"allow": false, "reasons": ["validity_too_long"]}
}

test_validity_of_a_year_ok if {
	allowed("flag.issue", nav_state, issue("high", "navl-7", ["police"], [], 365, false))
}

test_validity_zero_refused if {
	denied_for("flag.issue", nav_state, issue("high", "navl-7", ["police"], [], 0, false), "validity_invalid")
}

test_validity_not_a_number_refused if {
	d := decide("flag.issue", nav_state, issue("high", "navl-7", ["police"], [], "90", false))
	d.allow == false
	"validity_invalid" in d.reasons
	"validity_too_long" in d.reasons
}

test_unknown_level_refused if {
	denied_for("flag.issue", nav_state, issue("extreme", "navl-7", ["police"], [], 30, false), "level_not_permitted")
}

test_missing_level_refused if {
	d := decide("flag.issue", nav_state, {"legal_basis": "navl-7", "audience": {"kinds": ["police"]}, "validity_days": 30})
	d.allow == false
	d.reasons == ["level_not_permitted"]
}

test_health_issues_when_subject_informed if {
	allowed("flag.issue", health, issue("high", "hpl-23-4", ["nav-state", "police"], [], 180, true))
}

test_health_without_subject_informed_refused if {
	d := decide("flag.issue", health, issue("high", "hpl-23-4", ["nav-state"], [], 180, false))
	d == {"allow": false, "reasons": ["subject_not_informed"]}
}

test_health_subject_informed_missing_refused if {
	denied_for("flag.issue", health, {"level": "caution", "legal_basis": "hpl-31", "audience": {"kinds": ["police"]}, "validity_days": 10}, "subject_not_informed")
}

test_health_exclusion_refused if {
	denied_for("flag.issue", health, issue("exclusion", "hpl-23-4", ["nav-state"], [], 30, true), "level_not_permitted")
}

test_caseworker_cannot_issue if {
	d := decide("flag.issue", as_role(nav_state, "caseworker"), issue("high", "navl-7", ["police"], [], 30, false))
	d.allow == false
	"role_not_permitted" in d.reasons
}

test_nav_role_at_police_agency_cannot_issue if {
	denied_for("flag.issue", as_role(police, "security-coordinator"), issue("high", "politiregl-27", ["nav-state"], [], 30, false), "role_not_permitted")
}

test_broker_cannot_issue if {
	denied_for("flag.issue", as_role(broker_auditor, "security-coordinator"), issue("high", "navl-7", ["police"], [], 30, false), "role_not_permitted")
}

# flag.issue: legal basis

test_unknown_basis_refused if {
	d := decide("flag.issue", nav_state, issue("high", "gdpr-6", ["police"], [], 30, false))
	d == {"allow": false, "reasons": ["basis_unknown"]}
}

test_missing_basis_refused if {
	denied_for("flag.issue", nav_state, {"level": "high", "audience": {"kinds": ["police"]}, "validity_days": 30}, "basis_unknown")
}

test_emergency_only_basis_refused_for_issue if {
	d := decide("flag.issue", nav_state, issue("high", "fvl-13b-7", ["police"], [], 30, false))
	d == {"allow": false, "reasons": ["basis_emergency_only"]}
}

# Each basis used in its own direction is accepted.
basis_ok_cases := [
	["navl-7", nav_state, ["nav-municipal", "police", "health"]],
	["sotjl-44", nav_municipal, ["nav-state", "police", "health"]],
	["navl-16", nav_state, ["nav-state", "nav-municipal"]],
	["navl-16", nav_municipal, ["nav-state", "nav-municipal"]],
	["hpl-23-4", health, ["nav-state", "nav-municipal", "police", "health"]],
	["hpl-31", health, ["police"]],
	["strl-196", nav_state, ["police"]],
	["strl-196", nav_municipal, ["police"]],
	["strl-196", police, ["police"]],
	["strl-196", health, ["police"]],
	["politiregl-27", police, ["nav-state", "nav-municipal", "health"]],
]

test_each_basis_direction_ok if {
	every c in basis_ok_cases {
		allowed("flag.issue", c[1], issue("caution", c[0], c[2], [], 30, true))
	}
}

# Each basis used outside its direction is refused: wrong issuer kind or wrong reader kind.
basis_refused_cases := [
	["navl-7", nav_municipal, ["police"]],
	["navl-7", nav_state, ["nav-state"]],
	["sotjl-44", nav_state, ["police"]],
	["sotjl-44", nav_municipal, ["nav-municipal"]],
	["navl-16", police, ["nav-state"]],
	["navl-16", nav_state, ["police"]],
	["navl-16", nav_state, ["health"]],
	["hpl-23-4", nav_state, ["health"]],
	["hpl-31", health, ["nav-state"]],
	["hpl-31", police, ["police"]],
	["strl-196", nav_state, ["nav-municipal"]],
	["strl-196", health, ["health"]],
	["politiregl-27", nav_state, ["police"]],
	["politiregl-27", police, ["police"]],
	["politiregl-27", police, ["broker"]],
]

test_each_basis_outside_direction_refused if {
	every c in basis_refused_cases {
		denied_for("flag.issue", c[1], issue("caution", c[0], c[2], [], 30, true), "basis_direction")
	}
}

test_office_kind_outside_direction_refused if {
	d := decide("flag.issue", health, issue("high", "hpl-31", ["police"], ["nav-state"], 30, true))
	d == {"allow": false, "reasons": ["basis_direction"]}
}

test_office_kind_inside_direction_ok if {
	allowed("flag.issue", police, issue("high", "politiregl-27", [], ["nav-municipal", "nav-state"], 30, false))
}

test_empty_audience_refused if {
	d := decide("flag.issue", police, issue("high", "politiregl-27", [], [], 30, false))
	d == {"allow": false, "reasons": ["audience_empty"]}
}

test_missing_audience_refused if {
	denied_for("flag.issue", police, {"level": "high", "legal_basis": "politiregl-27", "validity_days": 30}, "audience_empty")
}

test_malformed_audience_refused if {
	denied_for("flag.issue", police, issue("high", "politiregl-27", "nav-state", [], 30, false), "audience_empty")
}

# warning.issue

test_police_liaison_issues_warning if {
	d := decide("warning.issue", police, issue("high", "politiregl-27", [], ["nav-state", "nav-municipal"], 30, false))
	d == {"allow": true, "reasons": ["warning_issue_permitted"]}
}

test_nav_coordinator_cannot_issue_warning if {
	denied_for("warning.issue", nav_state, issue("high", "navl-7", ["police"], [], 30, false), "role_not_permitted")
}

test_warning_basis_outside_direction_refused if {
	denied_for("warning.issue", police, issue("high", "hpl-31", ["police"], [], 30, false), "basis_direction")
}

test_warning_emergency_only_basis_refused if {
	denied_for("warning.issue", police, issue("high", "fvl-13b-7", ["nav-state"], [], 30, false), "basis_emergency_only")
}

test_warning_too_long_refused if {
	denied_for("warning.issue", police, issue("caution", "politiregl-27", ["nav-state"], [], 400, false), "validity_too_long")
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

test_coordinator_sets_own_office_webhook if {
	allowed("webhook.set", nav_state, {"office": "nav-grorud"})
}

test_caseworker_cannot_set_webhook if {
	denied_for("webhook.set", as_role(nav_state, "caseworker"), {"office": "nav-grorud"}, "role_not_permitted")
}

test_coordinator_cannot_set_other_office_webhook if {
	denied_for("webhook.set", nav_state, {"office": "nav-arstad"}, "office_mismatch")
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
