# METADATA
# title: Action authorisation
# description: >-
#   Decides whether a verified principal may perform an action on the broker.
#   Each known action names the checks it needs in required_checks, and every
#   one of them must be positively passed. Unknown actions, unknown roles and
#   malformed input are denied: nothing here grants by omission.
# scope: package
package authz

import data.catalogue

# METADATA
# title: Issuing roles and levels
# description: >-
#   Which role of which agency kind may issue flags, and at which levels.
#   Only a NAV security-coordinator may record an exclusion (the office head's
#   decision to keep a person off the premises).
issue_levels := {
	"police": {"police-liaison": {"caution", "high"}},
	"nav-state": {"security-coordinator": {"caution", "high", "exclusion"}},
	"nav-municipal": {"security-coordinator": {"caution", "high", "exclusion"}},
	"health": {"health-worker": {"caution", "high"}},
}

# METADATA
# title: Issuer roles
# description: Roles that issue flags and so may read or revoke their agency's flags.
issuer_roles := {"police-liaison", "security-coordinator", "health-worker"}

# METADATA
# title: Check roles
# description: Roles that may run a check before meeting a person.
check_roles := {"caseworker", "reception", "security-coordinator", "police-liaison", "health-worker"}

# METADATA
# title: Inbox roles
# description: Roles that receive police warnings sent to their office.
inbox_roles := {"security-coordinator", "caseworker"}

# METADATA
# title: Agency kinds that may follow their disclosures
# description: The broker's own auditors issue nothing, so they have no disclosures to follow.
disclosure_kinds := {"nav-state", "nav-municipal", "police", "health"}

# METADATA
# title: Webhook roles
# description: >-
#   Roles that may register their own office's webhook: a NAV office for its
#   warnings, and any issuing office for the exception-disclosure notices of
#   its flags.
webhook_roles := {"security-coordinator", "police-liaison", "health-worker"}

# METADATA
# title: Validity limits
# description: >-
#   A flag lasts at most a year, or less where its basis says so
#   (max_validity_days); an exclusion at most twelve weeks.
max_validity_days := 365

max_exclusion_days := 84

# METADATA
# title: Required checks per action
# description: >-
#   The actions the broker knows, each with the checks that must all pass.
#   An action missing here is always denied.
required_checks := {
	"flag.issue": {
		"issuer_role", "level", "validity", "validity_max", "validity_basis", "exclusion_validity",
		"basis", "audience", "subject_notice", "decision_record", "exclusion_decision", "exclusion_audience",
	},
	"warning.issue": {
		"warning_role", "level", "validity", "validity_max", "validity_basis", "exclusion_validity",
		"basis", "audience", "subject_notice", "decision_record", "exclusion_decision", "exclusion_audience",
	},
	"flag.read": {"flag_role", "issuing_agency"},
	"flag.revoke": {"flag_role", "issuing_agency"},
	"check.run": {"check_role"},
	"warning.inbox": {"inbox_role", "own_office"},
	"warning.ack": {"inbox_role", "own_office"},
	"webhook.set": {"webhook_role", "own_office"},
	"disclosures.read": {"disclosures_role", "disclosure_kind"},
	"audit.search": {"audit_role"},
	"audit.review": {"audit_role"},
	"audit.report": {"audit_role"},
	"audit.stats": {"audit_role"},
	"audit.entries": {"audit_role", "broker_kind"},
}

# METADATA
# title: Reasons for failed checks
# description: The machine-readable reason recorded when a check does not pass.
failure_reasons := {
	"issuer_role": "role_not_permitted",
	"warning_role": "role_not_permitted",
	"flag_role": "role_not_permitted",
	"check_role": "role_not_permitted",
	"inbox_role": "role_not_permitted",
	"webhook_role": "role_not_permitted",
	"disclosures_role": "role_not_permitted",
	"audit_role": "role_not_permitted",
	"level": "level_not_permitted",
	"validity": "validity_invalid",
	"validity_max": "validity_too_long",
	"validity_basis": "validity_too_long_for_basis",
	"exclusion_validity": "exclusion_too_long",
	"audience": "audience_empty",
	"subject_notice": "subject_not_informed",
	"decision_record": "decision_record_missing",
	"exclusion_decision": "exclusion_decision_incomplete",
	"exclusion_audience": "exclusion_audience",
	"issuing_agency": "not_issuing_agency",
	"own_office": "office_mismatch",
	"disclosure_kind": "agency_kind_not_permitted",
	"broker_kind": "agency_kind_not_permitted",
}

principal := input.principal

resource := input.resource

audience_kinds := object.get(resource, ["audience", "kinds"], [])

office_kinds := object.get(resource, ["audience", "office_kinds"], [])

audience_offices := object.get(resource, ["audience", "offices"], [])

requested_basis := data.legal_bases[resource.legal_basis]

# METADATA
# title: Decision day
# description: The date in Norway of input.time; undefined without a valid time.
decision_day := catalogue.day(input.time)

requested_basis_in_force if catalogue.in_force(requested_basis, decision_day)

# METADATA
# title: Passed checks
# description: >-
#   passes[check] is true when the input positively satisfies the check.
#   One rule per check (or several, any of which passes it), so that a
#   decision evaluates only the checks its action requires.
passes["issuer_role"] if issue_levels[principal.agency_kind][principal.role]

passes["warning_role"] if {
	principal.agency_kind == "police"
	principal.role == "police-liaison"
}

passes["level"] if resource.level in issue_levels[principal.agency_kind][principal.role]

passes["validity"] if {
	is_number(resource.validity_days)
	resource.validity_days > 0
}

passes["validity_max"] if {
	is_number(resource.validity_days)
	resource.validity_days <= max_validity_days
}

exclusion_requested if resource.level == "exclusion"

# Safe to pass when no level is given: the level check then fails.
passes["exclusion_validity"] if not exclusion_requested

passes["exclusion_validity"] if {
	exclusion_requested
	is_number(resource.validity_days)
	resource.validity_days <= max_exclusion_days
}

# A basis's own limit. An unknown or emergency-only basis issues no flag:
# the basis check refuses it.
passes["validity_basis"] if not requested_basis

passes["validity_basis"] if requested_basis.emergency_only == true

passes["validity_basis"] if {
	is_number(requested_basis.max_validity_days)
	is_number(resource.validity_days)
	resource.validity_days <= requested_basis.max_validity_days
}

# A basis used outside its direction, or on a day it is not in force, is
# refused: the issuer's kind must be among those it lets disclose, and every
# reader kind among those it lets receive.
passes["basis"] if {
	requested_basis_in_force
	requested_basis.emergency_only == false
	principal.agency_kind in requested_basis.from
	every kind in audience_kinds {
		kind in requested_basis.to
	}
	every kind in office_kinds {
		kind in requested_basis.to
	}
}

passes["audience"] if {
	is_array(audience_kinds)
	is_array(office_kinds)
	count(audience_kinds) + count(office_kinds) > 0
}

# METADATA
# title: Subject notice owed
# description: >-
#   The flag must record whether the person was told, or why not, when its
#   basis or the issuer's kind (health personnel: pasient- og
#   brukerrettighetsloven § 3-6) owes the person notice.
subject_notice_owed if requested_basis.obligations.subject_notice.level != "none"

subject_notice_owed if data.issuer_obligations[principal.agency_kind].subject_notice.level != "none"

passes["subject_notice"] if not subject_notice_owed

passes["subject_notice"] if resource.subject_notice_given == true

record := object.get(resource, "decision", {})

# METADATA
# title: Decision record owed by the basis
# description: >-
#   A basis whose disclosures must be decided and recorded (politiregisterloven
#   § 27 femte ledd, § 30 andre ledd) needs a decision record, taken by one of
#   the roles it names.
passes["decision_record"] if not requested_basis.obligations.decision_record.required

passes["decision_record"] if {
	requested_basis.obligations.decision_record.required
	record.given == true
	roles := object.get(requested_basis.obligations.decision_record, "decided_by_roles", [])
	decided_by_allowed(roles)
}

decided_by_allowed(roles) if count(roles) == 0

decided_by_allowed(roles) if record.decided_by_role in roles

# METADATA
# title: Exclusion decision
# description: >-
#   An exclusion is the office head's decision, and its record says so, says
#   when the person was told and could respond (or why not), and that milder
#   measures were considered.
passes["exclusion_decision"] if not exclusion_requested

passes["exclusion_decision"] if {
	exclusion_requested
	rule := data.level_obligations.exclusion.decision_record
	record.given == true
	record.decided_by_role in rule.decided_by_roles
	notice_recorded(rule)
	milder_measures_recorded(rule)
}

notice_recorded(rule) if not rule.notice

notice_recorded(rule) if {
	rule.notice
	record.notice in {"given", "explained"}
}

milder_measures_recorded(rule) if not rule.milder_measures

milder_measures_recorded(rule) if {
	rule.milder_measures
	record.milder_measures_considered == true
}

# METADATA
# title: Exclusion audience
# description: >-
#   An exclusion reaches only its own NAV office: no agency kinds, exactly the
#   issuer's office, under a same-office basis (NAV-loven § 16).
passes["exclusion_audience"] if not exclusion_requested

passes["exclusion_audience"] if {
	exclusion_requested
	principal.office != ""
	count(audience_kinds) == 0
	audience_offices == [principal.office]
	requested_basis.same_office == true
}

passes["flag_role"] if principal.role in issuer_roles

passes["flag_role"] if principal.role == "agency-admin"

passes["flag_role"] if {
	input.action == "flag.read"
	principal.role == "privacy-officer"
}

passes["issuing_agency"] if {
	principal.agency != ""
	principal.agency == resource.issuer_agency
}

passes["check_role"] if principal.role in check_roles

passes["inbox_role"] if principal.role in inbox_roles

passes["webhook_role"] if principal.role in webhook_roles

passes["own_office"] if {
	principal.office != ""
	principal.office == resource.office
}

passes["disclosures_role"] if principal.role in issuer_roles

passes["disclosures_role"] if principal.role in {"agency-admin", "privacy-officer"}

passes["disclosure_kind"] if principal.agency_kind in disclosure_kinds

passes["audit_role"] if principal.role == "privacy-officer"

# Whole entry bundles of the log (every agency's entries) are for the broker
# operator's own auditors; an agency's officer searches its own scope.
passes["broker_kind"] if principal.agency_kind == "broker"

# METADATA
# title: Why the legal basis was refused
# description: The first problem found with the requested legal basis.
basis_failure := "basis_unknown" if {
	not requested_basis
} else := "basis_retired" if {
	catalogue.ended(requested_basis, decision_day)
} else := "basis_not_in_force" if {
	not requested_basis_in_force
} else := "basis_emergency_only" if {
	requested_basis.emergency_only == true
} else := "basis_direction"

failure_reason(check) := failure_reasons[check]

failure_reason("basis") := basis_failure

# METADATA
# title: Reasons for a denial
# description: One reason for each required check that did not pass.
failures contains reason if {
	some check in required_checks[input.action]
	not passes[check]
	reason := failure_reason(check)
}

# METADATA
# title: Allow
# description: True only for a known action whose every required check passed.
default allow := false

allow if {
	checks := required_checks[input.action]
	count(checks) > 0
	every check in checks {
		passes[check]
	}
}

# METADATA
# title: Decision
# description: >-
#   The answer the broker acts on: allow, and reasons (the failed checks on
#   denial, the action that was permitted on allow).
# entrypoint: true
default decision := {"allow": false, "reasons": ["unknown_action"]}

decision := {"allow": true, "reasons": [sprintf("%s_permitted", [replace(input.action, ".", "_")])]} if allow

else := {"allow": false, "reasons": sort(failures)} if required_checks[input.action]
