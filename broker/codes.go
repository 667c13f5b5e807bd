package broker

// The wire codes: the machine-readable `code` of every RFC 9457 problem
// the broker answers with (docs/api.md; broker/api/openapi.yaml lists the
// same). A kind (EINVALID, …) picks the status; a code says which rule.
// Every code the broker can send is here, and nowhere else.
const (
	// 401: the signed request (docs/api.md §1).
	CodeMissingToken    = "missing_token"
	CodeMalformedToken  = "malformed_token"
	CodeBadSignature    = "bad_signature"
	CodeUnknownKey      = "unknown_key"
	CodeBadAlg          = "bad_alg"
	CodeBadTyp          = "bad_typ"
	CodeExpired         = "expired"
	CodeNotYetValid     = "not_yet_valid"
	CodeBadAudience     = "bad_audience"
	CodeReplayed        = "replayed"
	CodeBindingMismatch = "binding_mismatch"
	CodeUnknownAgency   = "unknown_agency"
	CodeAgencyDisabled  = "agency_disabled"
	CodeBadClaims       = "bad_claims"

	// 422: a well-formed value that breaks a rule.
	CodeInvalidSubject        = "invalid_subject"
	CodeInvalidField          = "invalid_field"
	CodeInvalidValidity       = "invalid_validity"
	CodeInvalidRange          = "invalid_range"
	CodeUnknownLegalBasis     = "unknown_legal_basis"
	CodeRetiredLegalBasis     = "retired_legal_basis"      // repealed, replaced or withdrawn: refused for new flags
	CodeLegalBasisNotInForce  = "legal_basis_not_in_force" // no commencement yet
	CodeUnknownOffice         = "unknown_office"
	CodeJustificationRequired = "justification_required"

	// 403, 404, 405, 409, 429 and the codes a kind stands for itself.
	CodeForbidden        = EFORBIDDEN
	CodeNotFound         = ENOTFOUND
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = ECONFLICT
	CodeRateLimited      = ERATELIMITED
	CodeHTTPError        = "http_error" // any other status echo itself answers

	// 503: a dependency failed; nothing was disclosed or changed.
	CodeAuditUnavailable = "audit_unavailable"
	CodeKeysUnavailable  = "keys_unavailable"
	// CodeDegraded marks a readiness check that works on what it read
	// before (/readyz answers 200 with status "degraded"). Never an answer
	// to a request.
	CodeDegraded = "degraded"
)
