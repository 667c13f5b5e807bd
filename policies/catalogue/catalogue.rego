# METADATA
# title: The legal-basis catalogue
# description: >-
#   What authz and disclosure share about data.legal_bases: the decision day
#   (the date in Norway of the decision time) and whether a basis is in force
#   on it. A basis counts only on the days it is in force, so the day a
#   commencement date is set is a change to data.json, not to these rules.
#   Retired bases stay in the catalogue: old audit entries and flags still
#   resolve, but nothing new is decided under them.
# scope: package
package catalogue

# METADATA
# title: Decision day
# description: >-
#   The date in Norway ("YYYY-MM-DD") of an RFC 3339 time. Undefined for
#   anything else, so that a decision without a time finds no basis in force.
day(t) := sprintf("%04d-%02d-%02d", time.date([time.parse_rfc3339_ns(t), "Europe/Oslo"]))

# METADATA
# title: In force
# description: >-
#   The basis is in force on day d: it has a commencement date on or before
#   d and no end date before d. A null in_force_from means not in force.
in_force(basis, d) if {
	basis.in_force_from != null
	basis.in_force_from <= d
	not ended(basis, d)
}

# METADATA
# title: Ended
# description: The basis had an end date before day d (repealed, replaced or withdrawn).
ended(basis, d) if {
	basis.in_force_until != null
	basis.in_force_until < d
}

# METADATA
# title: Resolves
# description: >-
#   Every code in the catalogue resolves, in force or not, so that an audit
#   entry naming a retired basis can always be read.
resolves(code) := data.legal_bases[code]
