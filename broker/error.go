package broker

import (
	"errors"
	"fmt"
)

// Error kinds. Exactly one place (the HTTP error handler) maps them to a
// status; the CLI prints the message. Modelled on wtf's error codes.
const (
	EINVALID      = "invalid"      // a valid JSON value that breaks a rule: 422
	EMALFORMED    = "malformed"    // unparseable input or an unknown field: 400
	EUNAUTHORIZED = "unauthorized" // authentication failed: 401
	EFORBIDDEN    = "forbidden"    // the policy or role forbids it: 403
	ENOTFOUND     = "not_found"    // nothing visible to the caller: 404
	ECONFLICT     = "conflict"     // already exists: 409
	ETOOLARGE     = "too_large"    // body over the limit: 413
	EUNSUPPORTED  = "unsupported"  // not JSON: 415
	ERATELIMITED  = "rate_limited" // 429
	EUNAVAILABLE  = "unavailable"  // a dependency (audit, database) failed: 503
	EINTERNAL     = "internal"     // a bug: 500, shown as "internal error" only
)

// Error is a domain error. Kind picks the HTTP status; Code is the
// machine-readable code of docs/api.md (for example "invalid_subject" or
// "bad_signature") and defaults to Kind; Message is safe to show the caller:
// it never contains a national id, a token or a key.
type Error struct {
	Kind    string
	Code    string
	Message string
	Err     error // the cause, for logs; never shown to the caller
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.WireCode(), e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.WireCode(), e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// WireCode is the code sent to the caller.
func (e *Error) WireCode() string {
	if e.Code != "" {
		return e.Code
	}
	return e.Kind
}

// Errorf returns an Error of kind with a formatted message.
func Errorf(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// CodeErrorf returns an Error of kind with a specific wire code.
func CodeErrorf(kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorKind returns the kind of err, or EINTERNAL when it is not an *Error.
func ErrorKind(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return EINTERNAL
}

// ErrorCode returns the wire code of err, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.WireCode()
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err, or err's text when it
// is not an *Error.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// Audit outcomes as the caller sees them. The audit package has plain
// sentinels of its own; the service (and the stores that append inside a
// change's transaction) turn them into these.
var (
	// ErrReplayed: the request's token id was used before (on any replica).
	ErrReplayed = CodeErrorf(EUNAUTHORIZED, CodeReplayed, "token id was already used")
	// ErrAuditUnavailable: the entry could not be committed.
	ErrAuditUnavailable = CodeErrorf(EUNAVAILABLE, CodeAuditUnavailable, "the audit log is unavailable: nothing was disclosed or changed")
)
