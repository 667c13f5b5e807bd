package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"varsel/broker"
	"varsel/broker/strict"
)

type bodyKey struct{}

// readBody reads the whole body, at most MaxBodyBytes, once: the exact bytes
// are what the token's bsh claim covers and what handlers decode.
func readBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > MaxBodyBytes {
			return broker.Errorf(broker.ETOOLARGE, "request body over %d bytes", MaxBodyBytes)
		}
		var body []byte
		if r.Body != nil && r.Body != http.NoBody {
			var err error
			body, err = io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
			if err != nil {
				return broker.Errorf(broker.EMALFORMED, "read request body: %v", err)
			}
			if len(body) > MaxBodyBytes {
				return broker.Errorf(broker.ETOOLARGE, "request body over %d bytes", MaxBodyBytes)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), bodyKey{}, body)))
		return next(c)
	}
}

// Body returns the request body read by the server.
func Body(c echo.Context) []byte {
	b, _ := c.Request().Context().Value(bodyKey{}).([]byte)
	return b
}

// requireJSON refuses a request body that is not declared as JSON.
func requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(Body(c)) == 0 {
			return next(c)
		}
		mt, params, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
		if err != nil || mt != "application/json" {
			return broker.Errorf(broker.EUNSUPPORTED, "request body must be application/json")
		}
		if cs, ok := params["charset"]; ok && cs != "utf-8" && cs != "UTF-8" {
			return broker.Errorf(broker.EUNSUPPORTED, "request body must be UTF-8")
		}
		return next(c)
	}
}

// authenticate verifies the signed token and puts the principal in the context.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Auth == nil {
			return broker.CodeErrorf(broker.EUNAUTHORIZED, broker.CodeUnknownAgency, "no agencies can be verified")
		}
		r := c.Request()
		p, err := s.cfg.Auth.Authenticate(r.Context(), r, Body(c))
		if err != nil {
			return err
		}
		c.SetRequest(r.WithContext(broker.NewContextWithPrincipal(r.Context(), p)))
		return next(c)
	}
}

// cleanRequest refuses a path or query string that holds control
// characters or invalid UTF-8 (once percent-decoded): such text would
// otherwise reach the audit entry of the decision, and PostgreSQL cannot
// store a NUL.
func cleanRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		if !broker.CleanText(u.Path, false) {
			return broker.Errorf(broker.EMALFORMED, "the path holds control characters or invalid UTF-8")
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return broker.Errorf(broker.EMALFORMED, "malformed query string")
		}
		for k, vs := range q {
			if !broker.CleanText(k, false) {
				return broker.Errorf(broker.EMALFORMED, "a query parameter name holds control characters or invalid UTF-8")
			}
			if len(vs) > 1 {
				return broker.Errorf(broker.EMALFORMED, "query parameter %q given more than once", k)
			}
			for _, v := range vs {
				if !broker.CleanText(v, false) {
					return broker.Errorf(broker.EMALFORMED, "query parameter %q holds control characters or invalid UTF-8", k)
				}
			}
		}
		return next(c)
	}
}

// Decode reads the JSON body into v by the contract's exact rules
// (broker/strict): one value, case-sensitive member names, no duplicates,
// no unknown members, no control characters but tab and line feed.
func Decode(c echo.Context, v any) error {
	body := Body(c)
	if len(body) == 0 {
		return broker.Errorf(broker.EMALFORMED, "request body is empty")
	}
	if err := strict.Unmarshal(body, v); err != nil {
		return broker.Errorf(broker.EMALFORMED, "request body: %v", err)
	}
	return nil
}

func (s *Server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = &broker.Error{Kind: broker.EINTERNAL, Message: "internal error", Err: fmt.Errorf("panic: %v", r)}
			}
		}()
		return next(c)
	}
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "varsel_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "varsel_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 30},
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "varsel_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inflight)
	return m
}

// observe records metrics and logs one line per request. It never logs
// the token, the body or the query (which could hold a national id).
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		// The service measures the check floor from here: the request's
		// verification is part of the time a caller sees.
		r := c.Request()
		c.SetRequest(r.WithContext(broker.NewContextWithStart(r.Context(), start)))
		s.metrics.inflight.Inc()
		defer s.metrics.inflight.Dec()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = s.problemFor(err, c).Status
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(route, c.Request().Method).Observe(d.Seconds())
		if route != "/metrics" && route != "/healthz" && route != "/readyz" && s.log.Enabled(c.Request().Context(), slog.LevelDebug) {
			attrs := []any{"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "method", c.Request().Method,
				"route", route, "status", status, "duration_ms", float64(d.Microseconds()) / 1000}
			if p := broker.PrincipalFromContext(c.Request().Context()); p != nil {
				attrs = append(attrs, "agency", p.Agency, "role", p.Role)
			}
			s.log.Debug("request", attrs...)
		}
		return err
	}
}
