package broker

import (
	"context"
	"slices"
	"time"
)

// Roles an agency may vouch for (docs/api.md §1).
const (
	RoleCaseworker          = "caseworker"
	RoleReception           = "reception"
	RoleSecurityCoordinator = "security-coordinator"
	RolePoliceLiaison       = "police-liaison"
	RoleHealthWorker        = "health-worker"
	RolePrivacyOfficer      = "privacy-officer"
	RoleAgencyAdmin         = "agency-admin"
)

// Roles lists every known role.
var Roles = []string{RoleCaseworker, RoleReception, RoleSecurityCoordinator, RolePoliceLiaison,
	RoleHealthWorker, RolePrivacyOfficer, RoleAgencyAdmin}

// RoleNeedsOffice reports whether a role works at an office and so must name one.
func RoleNeedsOffice(role string) bool {
	return role == RoleCaseworker || role == RoleReception || role == RoleSecurityCoordinator
}

// ValidRole reports whether role is known.
func ValidRole(role string) bool { return slices.Contains(Roles, role) }

// Principal is the verified caller of a request: an employee its agency
// vouched for by signing the request.
type Principal struct {
	Agency     string     `json:"agency"`
	AgencyKind AgencyKind `json:"agency_kind"`
	Role       string     `json:"role"`
	Office     string     `json:"office,omitempty"`
	Sub        string     `json:"sub"`
	JTI        string     `json:"jti"`
	KID        string     `json:"kid"`
}

type principalKey struct{}

type startKey struct{}

// NewContextWithStart returns ctx carrying the time the request arrived.
func NewContextWithStart(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, startKey{}, t)
}

// StartFromContext is when the request arrived, or ok false.
func StartFromContext(ctx context.Context) (t time.Time, ok bool) {
	t, ok = ctx.Value(startKey{}).(time.Time)
	return t, ok
}

// NewContextWithPrincipal returns ctx carrying p.
func NewContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the verified principal, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// kindRoles are the roles each kind of agency may vouch for: a police
// district has no caseworkers, a health trust no police liaisons. The
// operator's own auditors are privacy officers of the broker agency.
var kindRoles = map[AgencyKind][]string{
	KindNAVState:     {RoleCaseworker, RoleReception, RoleSecurityCoordinator, RolePrivacyOfficer, RoleAgencyAdmin},
	KindNAVMunicipal: {RoleCaseworker, RoleReception, RoleSecurityCoordinator, RolePrivacyOfficer, RoleAgencyAdmin},
	KindPolice:       {RolePoliceLiaison, RolePrivacyOfficer, RoleAgencyAdmin},
	KindHealth:       {RoleHealthWorker, RolePrivacyOfficer, RoleAgencyAdmin},
	KindBroker:       {RolePrivacyOfficer, RoleAgencyAdmin},
}

// RoleFits reports whether an agency of kind may vouch for role.
func RoleFits(kind AgencyKind, role string) bool { return slices.Contains(kindRoles[kind], role) }

// KindRoles lists the roles an agency of kind may vouch for.
func KindRoles(kind AgencyKind) []string { return slices.Clone(kindRoles[kind]) }
