// Package api is Varsel's HTTP interface (docs/api.md): an echo server with the
// request limits of the contract, signed-request authentication on every /v1/
// route, and one error handler that turns domain errors into RFC 9457
// problem+json bodies.
package api

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/service"
)

//go:embed openapi.yaml
var openAPISpec []byte

// OpenAPISpec returns the project's OpenAPI document, as served at /openapi.yaml.
func OpenAPISpec() []byte { return openAPISpec }

// MaxBodyBytes is the largest request body accepted (docs/api.md: 64 KiB).
const MaxBodyBytes = 64 << 10

// Authenticator verifies a request's signed token against its exact body.
// Errors: EUNAUTHORIZED with one of the codes of docs/api.md §1.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, body []byte) (*broker.Principal, error)
}

// ReadinessCheck reports whether one dependency is usable. A check that
// returns a *broker.Error of code "degraded" marks the broker degraded but ready.
type ReadinessCheck func(ctx context.Context) error

// Config holds what the server needs besides its dependencies.
type Config struct {
	Logger          *slog.Logger
	Registry        *prometheus.Registry // nil: a new one
	Auth            Authenticator        // nil: every /v1/ request is refused
	Readiness       map[string]ReadinessCheck
	ShutdownTimeout time.Duration // how long in-flight requests may take to finish

	Service       *service.Service // the /v1 operations; nil: only whoami's principal echo
	Checkpoints   CheckpointReader
	CheckpointKey string     // the note verifier key of the checkpoint signer
	Tree          TreeReader // the audit log's Merkle tree; nil: no tiles or proofs
	// BrokerJWKS is the broker's public signing key set, served at
	// GET /jwks.json: it verifies webhook bodies (and checkpoints).
	BrokerJWKS []byte
}

// CheckpointReader reads the newest signed checkpoint.
type CheckpointReader interface {
	LatestCheckpoint(ctx context.Context) (*audit.Checkpoint, error)
}

// Server is the broker's HTTP server.
type Server struct {
	echo     *echo.Echo
	v1       *echo.Group
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *httpMetrics

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// New builds a server with the operational routes and the /v1 group.
// Register the /v1 routes with Handle before Serve.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	s := &Server{echo: echo.New(), cfg: cfg, log: cfg.Logger.With("subsystem", "http"), registry: cfg.Registry}
	s.metrics = newHTTPMetrics(cfg.Registry)

	e := s.echo
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{TargetHeader: echo.HeaderXRequestID}))
	e.Use(s.recoverPanic)
	e.Use(s.observe)
	e.Use(readBody)

	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})))
	if cfg.BrokerJWKS != nil {
		e.GET("/jwks.json", func(c echo.Context) error {
			return c.Blob(http.StatusOK, "application/jwk-set+json", cfg.BrokerJWKS)
		})
	}
	e.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openAPISpec)
	})

	s.tlogRoutes(e)
	s.v1 = e.Group("/v1", cleanRequest, requireJSON, s.authenticate)
	s.v1.GET("/whoami", s.whoami)
	if cfg.Service != nil {
		s.routes(s.v1)
	}
	return s
}

// Registry is where the server and its dependencies register metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// V1 is the authenticated route group; handlers read the principal with
// broker.PrincipalFromContext(c.Request().Context()).
func (s *Server) V1() *echo.Group { return s.v1 }

// ServeHTTP lets tests drive the server without a listener.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Listen binds addr (":0" picks a free port) without serving yet.
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return ln.Addr(), nil
}

// Serve answers requests on the bound listener until ctx ends, then stops
// taking new connections and waits up to ShutdownTimeout for in-flight
// requests to finish.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.srv = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second, // long-polls wait up to 30 s
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv := s.srv
	s.mu.Unlock()
	if ln == nil {
		return errors.New("serve: Listen was not called")
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down: finishing in-flight requests", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

func (s *Server) readyz(c echo.Context) error {
	// Every check runs at once with its own deadline, so one dependency
	// that hangs (Vault away) cannot use up another's time.
	type outcome struct {
		name string
		err  error
	}
	results := make(chan outcome, len(s.cfg.Readiness))
	for name, check := range s.cfg.Readiness {
		go func() {
			ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
			defer cancel()
			results <- outcome{name, check(ctx)}
		}()
	}
	status, code := "ok", http.StatusOK
	checks := map[string]string{}
	for range s.cfg.Readiness {
		r := <-results
		name, err := r.name, r.err
		switch {
		case err == nil:
			checks[name] = "ok"
		case broker.ErrorCode(err) == broker.CodeDegraded:
			checks[name] = "degraded"
			if status == "ok" {
				status = "degraded"
			}
		default:
			checks[name] = "unavailable"
			status, code = "unavailable", http.StatusServiceUnavailable
			s.log.Warn("readiness check failed", "check", name, "err", err)
		}
	}
	return c.JSON(code, map[string]any{"status": status, "checks": checks})
}
