// Package broker holds Varsel's domain: agencies and their keys, the verified
// principal of a request, and the error codes every layer speaks. Subpackages
// implement it against one dependency each: postgres (storage), auth (signed
// requests), api (HTTP), client (signing requests as an agency), keys (key
// sources). Only cmd/varsel wires them together.
package broker

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// AgencyKind says what sort of body an agency is; legal bases are written
// in terms of kinds.
type AgencyKind string

// The agency kinds of docs/api.md §9.
const (
	KindNAVState     AgencyKind = "nav-state"
	KindNAVMunicipal AgencyKind = "nav-municipal"
	KindPolice       AgencyKind = "police"
	KindHealth       AgencyKind = "health"
	KindBroker       AgencyKind = "broker" // the operator's own auditors
)

// AgencyKinds lists every valid kind.
var AgencyKinds = []AgencyKind{KindNAVState, KindNAVMunicipal, KindPolice, KindHealth, KindBroker}

// Valid reports whether k is a known kind.
func (k AgencyKind) Valid() bool { return slices.Contains(AgencyKinds, k) }

// Status of an agency or of one of its keys.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
	StatusRetired  = "retired"
)

// idPattern is the form of agency and office ids.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{2,63}$`)

// ValidID reports whether s is a well-formed agency or office id:
// idPattern, checked by table.
func ValidID(s string) bool {
	return len(s) >= 3 && len(s) <= 64 && charClass[s[0]]&classIDStart != 0 && allIn(s[1:], classID)
}

// Agency is a body registered at the broker: it signs its employees'
// requests with one of its keys.
type Agency struct {
	ID        string     `json:"id"`
	Kind      AgencyKind `json:"kind"`
	Name      string     `json:"name"`
	Offices   []string   `json:"offices"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
}

// HasOffice reports whether office is one of the agency's offices.
func (a *Agency) HasOffice(office string) bool { return slices.Contains(a.Offices, office) }

// MaxAgencyName bounds an agency's name, in characters (as the schema does).
const MaxAgencyName = 200

// Validate checks a new agency's id, kind, name and offices, the rules the
// schema also enforces. Errors: EINVALID, with a message naming the field.
func (a *Agency) Validate() error {
	if !ValidID(a.ID) {
		return Errorf(EINVALID, "id %q must match %s", a.ID, idPattern)
	}
	if !a.Kind.Valid() {
		kinds := make([]string, len(AgencyKinds))
		for i, k := range AgencyKinds {
			kinds[i] = string(k)
		}
		return Errorf(EINVALID, "kind %q: want one of %s", a.Kind, strings.Join(kinds, ", "))
	}
	if strings.TrimSpace(a.Name) == "" || utf8.RuneCountInString(a.Name) > MaxAgencyName {
		return Errorf(EINVALID, "name is required (at most %d characters)", MaxAgencyName)
	}
	seen := make(map[string]bool, len(a.Offices))
	for _, off := range a.Offices {
		if !ValidID(off) {
			return Errorf(EINVALID, "office %q must match %s", off, idPattern)
		}
		if seen[off] {
			return Errorf(EINVALID, "office %q given twice", off)
		}
		seen[off] = true
	}
	return nil
}

// AgencyKey is one public key an agency signs requests with.
type AgencyKey struct {
	AgencyID  string     `json:"agency"`
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	JWK       []byte     `json:"-"` // the public JWK as registered (RFC 7517 JSON)
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// AgencyRegistry reads agencies and their keys. Changes to the registry
// (postgres.DB's CreateAgency, SetAgencyStatus, AddKeys and RetireKey) each
// commit with the audit entry that records them, so they take an
// *audit.Entry, which this package cannot name (package audit imports it).
type AgencyRegistry interface {
	// Agency returns one agency. Errors: ENOTFOUND.
	Agency(ctx context.Context, id string) (*Agency, error)
	// Agencies lists every agency, ordered by id.
	Agencies(ctx context.Context) ([]*Agency, error)
	// Keys lists an agency's keys, active and retired.
	Keys(ctx context.Context, agencyID string) ([]AgencyKey, error)
}
