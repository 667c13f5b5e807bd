package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"varsel/broker"
)

// statusOf maps error kinds to HTTP status codes: the only such mapping.
var statusOf = map[string]int{
	broker.EINVALID:      http.StatusUnprocessableEntity,
	broker.EMALFORMED:    http.StatusBadRequest,
	broker.EUNAUTHORIZED: http.StatusUnauthorized,
	broker.EFORBIDDEN:    http.StatusForbidden,
	broker.ENOTFOUND:     http.StatusNotFound,
	broker.ECONFLICT:     http.StatusConflict,
	broker.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	broker.EUNSUPPORTED:  http.StatusUnsupportedMediaType,
	broker.ERATELIMITED:  http.StatusTooManyRequests,
	broker.EUNAVAILABLE:  http.StatusServiceUnavailable,
	broker.EINTERNAL:     http.StatusInternalServerError,
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
}

// ProblemTypeBase prefixes a problem's code to make its type URI.
const ProblemTypeBase = "urn:varsel:problem:"

// retryAfter is an error that says how long to wait (sets Retry-After).
type retryAfter interface {
	RetryAfterSeconds() int
}

func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := s.problemFor(err, c)
	if p.Status >= 500 {
		s.log.Error("request failed", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", c.Request().Method, "route", c.Path(), "code", p.Code, "err", err)
	}
	if p.Code == broker.CodeReplayed {
		// Caught by the audit append (a token first used on another
		// replica): log it as the verifier logs its own refusals.
		if pr := broker.PrincipalFromContext(c.Request().Context()); pr != nil {
			s.log.Warn("request refused", "subsystem", "auth", "agency", pr.Agency, "kid", pr.KID, "code", p.Code)
		}
	}
	var ra retryAfter
	if errors.As(err, &ra) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(max(ra.RetryAfterSeconds(), 1)))
	}
	body, _ := json.Marshal(p)
	_ = c.Blob(p.Status, "application/problem+json", body)
}

func (s *Server) problemFor(err error, _ echo.Context) Problem {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		// Routing errors from echo itself (404 no route, 405 method).
		code := broker.CodeNotFound
		switch he.Code {
		case http.StatusMethodNotAllowed:
			code = broker.CodeMethodNotAllowed
		case http.StatusRequestEntityTooLarge:
			code = broker.ETOOLARGE
		case http.StatusNotFound:
		default:
			code = broker.CodeHTTPError
		}
		msg, _ := he.Message.(string)
		return Problem{Type: ProblemTypeBase + code, Title: http.StatusText(he.Code), Status: he.Code, Detail: msg, Code: code}
	}
	kind := broker.ErrorKind(err)
	status := statusOf[kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	p := Problem{Type: ProblemTypeBase + broker.ErrorCode(err), Title: http.StatusText(status), Status: status, Code: broker.ErrorCode(err)}
	var de *broker.Error
	if errors.As(err, &de) && kind != broker.EINTERNAL {
		p.Detail = de.Message
	} else {
		p.Type, p.Code, p.Detail = ProblemTypeBase+broker.EINTERNAL, broker.EINTERNAL, "internal error"
	}
	return p
}
