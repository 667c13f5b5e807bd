# METADATA
# title: Disclosure
# description: >-
#   Decides which of a subject's active flags a check reveals to the reader,
#   which fields of each, and under which legal basis. A flag is disclosed only
#   when the reader is in its audience and its legal basis covers the direction
#   from the issuer's kind to the reader's kind, or under the life-and-health
#   exception, which reveals only what averts the danger. Everything else stays
#   hidden, and a reader who sees nothing gets the same answer as one asking
#   about a subject without flags.
#
#   This runs on every check, so the per-flag work is written inline, with the
#   reader's properties bound once to local variables: helper functions and
#   rule lookups inside the loop cost more than the checks themselves.
# scope: package
package disclosure

# METADATA
# title: Check roles
# description: Roles that may run a check at all (the same as check.run in authz).
check_roles := {"caseworker", "reception", "security-coordinator", "police-liaison", "health-worker"}

# METADATA
# title: Fields of a normal disclosure
# description: Sorted; what a reader in the audience under a covering basis sees.
normal_fields := ["categories", "contact", "id", "issuer", "legal_basis", "level", "precautions", "valid_until"]

# METADATA
# title: Fields of an emergency disclosure
# description: >-
#   Sorted; only what a reader needs to avert the danger: no categories,
#   no issuer, no contact, no id.
emergency_fields := ["level", "precautions", "valid_until"]

# METADATA
# title: Emergency legal basis
# description: The basis recorded for every disclosure under the life-and-health exception.
emergency_basis := "fvl-13b-7"

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
# title: Duty-desk issuer kinds
# description: >-
#   Health-sourced flags never show their source unit or sector to non-health
#   readers: the broker puts its duty desk in place of issuer and contact.
default duty_desk_kinds := set()

duty_desk_kinds := {"health"} if input.principal.agency_kind != "health"

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
#   Indexes of the addressed flags whose legal basis lets the issuer's kind
#   disclose to the reader's kind outside emergencies and, for a same-office
#   basis (NAV-loven § 16), whose issuing office is the reader's.
default visible := set()

visible := {i |
	some i in addressed
	flag := input.flags[i]
	basis := bases[flag.legal_basis]
	basis.emergency_only == false
	flag.issuer_kind in basis.from
	kind in basis.to

	# Either the basis has no same-office restriction or the reader is at the issuing office.
	count([true | basis.same_office; office != flag.issuer_office]) == 0
} if {
	allow
	bases := data.legal_bases
	kind := input.principal.agency_kind
	office := reader_office
}

# METADATA
# title: Normal disclosures
# description: The normally visible flags, with all fields, as [id, disclosure] pairs.
normal_disclosures := [[flag.id, {
	"id": flag.id,
	"fields": fields,
	"legal_basis": flag.legal_basis,
	"emergency": false,
	"duty_desk": flag.issuer_kind in duty_desk,
}] |
	some i in visible
	flag := input.flags[i]
] if {
	fields := normal_fields
	duty_desk := duty_desk_kinds
}

# METADATA
# title: Emergency disclosures
# description: >-
#   When the reader invokes the life-and-health exception, every flag that is
#   not normally visible, with only the fields that avert the danger, as
#   [id, disclosure] pairs. The exception's basis must cover the direction
#   like any other: it reaches only reader kinds in its "to", and only flags
#   whose issuer kind is in its "from" (health personnel are bound by their
#   own duty of confidentiality and are not among them).
default emergency_disclosures := []

emergency_disclosures := [[flag.id, {
	"id": flag.id,
	"fields": fields,
	"legal_basis": emergency_basis,
	"emergency": true,
	"duty_desk": false,
}] |
	some i, flag in input.flags
	not i in seen
	flag.issuer_kind in from
] if {
	allow
	review_required
	input.principal.agency_kind in data.legal_bases[emergency_basis].to
	from := data.legal_bases[emergency_basis].from
	seen := visible
	fields := emergency_fields
}

# METADATA
# title: Disclosed flags in order
# description: Sorted by flag id so that equal inputs give equal answers.
flags := [pair[1] | some pair in sort(array.concat(normal_disclosures, emergency_disclosures))]

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
#   allow (the role may run a check), the disclosed flags with their fields,
#   legal basis, emergency and duty-desk marks, review_required and reasons.
#   When allow is false, flags is empty.
# entrypoint: true
decision := {
	"allow": allow,
	"flags": flags,
	"review_required": review_required,
	"reasons": reasons,
}
