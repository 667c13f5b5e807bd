# METADATA
# title: Disclosure
# description: >-
#   Decides which of a subject's active flags a check reveals to the reader,
#   which fields of each, and under which legal basis. A flag is disclosed only
#   when the reader is in its audience and a legal basis in force at the
#   decision time covers the direction from the issuer's kind to the reader's
#   kind. Under the life-and-health exception the other flags an emergency
#   route reaches are named, each with its route, only so that the caller can
#   answer one aggregate of them (highest level, union of precautions) and tell
#   their issuers. Everything else stays hidden, and a reader who sees nothing
#   gets the same answer as one asking about a subject without flags.
#
#   This runs on every check, so the per-flag work is written inline, with the
#   reader's properties bound once to local variables: helper functions and
#   rule lookups inside the loop cost more than the checks themselves.
#
#   Each flag is decided on its own, from its properties, never from its id
#   or another flag: the engine decides one flag at a time under the id "0"
#   and keeps the decision for the day (policies/memo.go). A rule over two
#   flags would break that; TestFlagsMemo compares the two.
# scope: package
package disclosure

import data.catalogue

# METADATA
# title: Check roles
# description: Roles that may run a check at all (the same as check.run in authz).
check_roles := {"caseworker", "reception", "security-coordinator", "police-liaison", "health-worker"}

# METADATA
# title: Fields of a normal disclosure
# description: Sorted; what a reader in the audience under a covering basis sees.
normal_fields := ["categories", "contact", "id", "issuer", "legal_basis", "level", "precautions", "valid_until"]

# METADATA
# title: Duty-desk basis
# description: >-
#   What a reader sees as the legal basis of a flag shown through the duty
#   desk. It names no provision, so that a health source cannot be told from a
#   police or NAV issuer that chose the desk.
duty_desk_basis := "via-duty-desk"

# METADATA
# title: Decision day
# description: The date in Norway of input.time; no basis is in force without one.
decision_day := catalogue.day(input.time)

# METADATA
# title: Allow
# description: Whether the reader's role may run a check at all.
default allow := false

allow if input.principal.role in check_roles

# METADATA
# title: Review required
# description: Every check that invokes the life-and-health exception is reviewed afterwards.
default review_required := false

review_required if input.emergency == true

# METADATA
# title: Reader's office
# description: >-
#   The reader's office, or null when the reader has none, so that an empty
#   office never matches an audience office or an issuing office.
reader_office := object.get({"": null}, input.principal.office, input.principal.office)

# METADATA
# title: Through the duty desk
# description: >-
#   A flag is shown through the broker's duty desk (its issuer and contact
#   replaced, its basis shown as duty_desk_basis) when its issuer chose the
#   desk, and always when a health agency issued it and the reader is outside
#   the health sector: nothing a non-health reader sees may show that a flag
#   came from health.
default via_duty_desk(_, _) := false

via_duty_desk(flag, _) if flag.duty_desk == true

via_duty_desk(flag, outside_health) if {
	outside_health
	flag.issuer_kind == "health"
}

# METADATA
# title: Flags addressed to the reader
# description: >-
#   Indexes into input.flags of the flags whose audience names the reader's
#   agency kind or office.
addressed := by_kind | by_office if {
	kind := input.principal.agency_kind
	office := reader_office
	by_kind := {i | some i, flag in input.flags; kind in flag.audience.kinds}
	by_office := {i | some i, flag in input.flags; office in flag.audience.offices}
}

# METADATA
# title: Normally visible flags
# description: >-
#   Indexes of the addressed flags whose legal basis is in force on the
#   decision day and lets the issuer's kind disclose to the reader's kind
#   outside emergencies and, for a same-office basis (NAV-loven § 16), whose
#   issuing office is the reader's.
default visible := set()

visible := {i |
	some i in addressed
	flag := input.flags[i]
	basis := bases[flag.legal_basis]
	basis.emergency_only == false
	flag.issuer_kind in basis.from
	kind in basis.to
	catalogue.in_force(basis, day)

	# Either the basis has no same-office restriction or the reader is at the issuing office.
	count([true | basis.same_office; office != flag.issuer_office]) == 0
} if {
	allow
	bases := data.legal_bases
	kind := input.principal.agency_kind
	office := reader_office
	day := decision_day
}

# METADATA
# title: Normal disclosures
# description: >-
#   The normally visible flags, with all fields, as [id, disclosure] pairs:
#   the basis they are disclosed under, and the basis the reader is shown.
normal_disclosures := [[flag.id, {
	"id": flag.id,
	"fields": fields,
	"legal_basis": flag.legal_basis,
	"shown_basis": {true: duty_desk_basis, false: flag.legal_basis}[desk],
	"duty_desk": desk,
}] |
	some i in visible
	flag := input.flags[i]
	desk := via_duty_desk(flag, outside_health)
] if {
	fields := normal_fields
	outside_health := input.principal.agency_kind != "health"
}

# METADATA
# title: Emergency routes
# description: >-
#   [issuer kind, basis] for each emergency-only basis in force on the
#   decision day that reaches the reader's kind: the route by which the
#   life-and-health exception may reach a flag of that issuer kind
#   (forvaltningsloven § 13 b nr. 7 for NAV, politiregisterloven § 27 første
#   ledd for the police). Health personnel have none: their flags are
#   disclosed only under the health bases. The catalogue lint keeps it to one
#   route per issuer kind on any day.
default emergency_routes := set()

emergency_routes := {[issuer_kind, code] |
	some code, basis in data.legal_bases
	basis.emergency_only == true
	catalogue.in_force(basis, day)
	kind in basis.to
	some issuer_kind in basis.from
} if {
	kind := input.principal.agency_kind
	day := decision_day
}

# METADATA
# title: Flags the exception reaches
# description: >-
#   When the reader invokes the life-and-health exception, every flag that is
#   not normally visible, is not an exclusion (whose audience is its office
#   alone) and whose issuer kind has an emergency route, as [id, {id, route}]
#   pairs. The caller answers one aggregate of them and never a flag.
default exception_pairs := []

exception_pairs := [[flag.id, {"id": flag.id, "legal_basis": route}] |
	some i, flag in input.flags
	not i in seen
	flag.level != "exclusion"
	route := min({code | some [k, code] in routes; k == flag.issuer_kind})
] if {
	allow
	review_required
	seen := visible
	routes := emergency_routes
}

# METADATA
# title: Excepted flags in order
# description: Sorted by flag id.
exception := [pair[1] | some pair in sort(exception_pairs)]

# METADATA
# title: Disclosed flags in order
# description: Sorted by flag id so that equal inputs give equal answers.
flags := [pair[1] | some pair in sort(normal_disclosures)]

# METADATA
# title: Reasons
# description: >-
#   The rule applied: role_not_permitted (nothing is disclosed),
#   life_and_health_exception (the exception was invoked and the check is
#   queued for review), or audience_and_basis (the normal rule alone).
reasons := ["role_not_permitted"] if not allow

reasons := ["life_and_health_exception"] if {
	allow
	review_required
}

reasons := ["audience_and_basis"] if {
	allow
	not review_required
}

# METADATA
# title: Decision
# description: >-
#   allow (the role may run a check), the flags disclosed in full with their
#   fields, bases and duty-desk marks, the flags the exception reaches with
#   their routes, review_required and reasons. When allow is false, flags and
#   exception are empty.
# entrypoint: true
decision := {
	"allow": allow,
	"flags": flags,
	"exception": exception,
	"review_required": review_required,
	"reasons": reasons,
}
