// Package portal is the agency portal: the web pages an agency runs for its
// own staff, so that a caseworker can check a person before a meeting, a
// police liaison can flag a person and warn offices, and a security
// coordinator can follow the office's inbox, in a browser.
//
// The trust model of the API is kept. Staff sign in with the agency's own
// OpenID provider (authorization code + PKCE, state and nonce); the portal
// maps their ID-token claims to a role and an office, and vouches for them
// by signing each broker request with the agency's key (a private JWK file
// or Vault Transit). The broker never sees a password, and the portal never
// touches the broker's database. The portal keeps no state of its own: the
// session is a sealed cookie, and every answer comes from the broker.
//
// Pages are server-rendered HTML forms that work without JavaScript; one
// small script (no inline script: the Content-Security-Policy forbids it)
// updates the inbox live from server-sent events. A national id is only
// ever posted in a form body: it never appears in a URL, a log line, the
// browser history, or the page after the answer.
package portal

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"varsel/broker"
	"varsel/broker/client"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Agency is one agency the portal signs in staff of and signs requests
// for. Production runs one portal per agency; the development portal may
// serve the demo agencies behind one login.
type Agency struct {
	ID     string
	Name   string
	Signer *client.Signer
}

// OIDC says where staff sign in.
type OIDC struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string // besides openid; default profile and varsel
}

// Claims maps ID-token claims to what the broker needs.
type Claims struct {
	// Groups maps a group name (in the GroupsClaim array) to a role; the
	// first role in broker.Roles order that a user's groups give wins.
	Groups      map[string]string
	GroupsClaim string // default "groups"
	OfficeClaim string // default "office"
	// AgencyClaim names the agency (the dev portal serves several); with
	// one agency configured it may be absent.
	AgencyClaim string // default "agency"
}

// Config is the portal's configuration.
type Config struct {
	PublicURL  string // where staff reach it, e.g. http://127.0.0.1:8090
	BrokerURL  string
	BrokerID   string // the broker's id, the tokens' aud; default "varsel"
	Agencies   []Agency
	OIDC       OIDC
	Claims     Claims
	SessionKey []byte // 32 bytes, from the key source
	// IdleTimeout ends a session not used for that long (default 30 min);
	// MaxSession ends any session that old (default 10 h, a working day).
	IdleTimeout time.Duration
	MaxSession  time.Duration
	// TestSubjects accepts synthetic national ids in the pages' own check
	// (the broker decides for itself).
	TestSubjects bool
	// StateFile is the portal's own small state: the newest audit
	// checkpoint it saw (default .data/portal/state.json).
	StateFile string
	// CheckpointMaxAge is how old the oldest entry no checkpoint covers may
	// be: the broker's signing interval and a margin (default 5 s + 30 s).
	CheckpointMaxAge time.Duration
	HTTPClient       *http.Client // for the broker and the provider; nil: a default with timeouts
	Logger           *slog.Logger
	Now              func() time.Time
}

// Portal is the portal's HTTP handler.
type Portal struct {
	cfg      Config
	log      *slog.Logger
	sealer   *sealer
	secure   bool
	agencies map[string]*Agency
	pages    map[string]*template.Template
	handler  http.Handler

	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
	endURL   string // the provider's end_session_endpoint, if any
}

// New connects to the provider (discovery) and builds the portal.
func New(ctx context.Context, cfg Config) (*Portal, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxSession <= 0 {
		cfg.MaxSession = 10 * time.Hour
	}
	if cfg.StateFile == "" {
		cfg.StateFile = ".data/portal/state.json"
	}
	if cfg.CheckpointMaxAge <= 0 {
		cfg.CheckpointMaxAge = 35 * time.Second
	}
	if cfg.BrokerID == "" {
		cfg.BrokerID = "varsel"
	}
	if cfg.Claims.GroupsClaim == "" {
		cfg.Claims.GroupsClaim = "groups"
	}
	if cfg.Claims.OfficeClaim == "" {
		cfg.Claims.OfficeClaim = "office"
	}
	if cfg.Claims.AgencyClaim == "" {
		cfg.Claims.AgencyClaim = "agency"
	}
	if len(cfg.OIDC.Scopes) == 0 {
		cfg.OIDC.Scopes = []string{"profile", "varsel"}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 45 * time.Second}
	}
	if len(cfg.Agencies) == 0 {
		return nil, errors.New("portal: no agency configured")
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || pub.Host == "" || (pub.Scheme != "https" && pub.Scheme != "http") {
		return nil, fmt.Errorf("portal: public URL %q is not an http(s) URL", cfg.PublicURL)
	}
	loopback := isLoopback(pub.Hostname())
	if pub.Scheme == "http" && !loopback {
		return nil, fmt.Errorf("portal: public URL %q: plain http only on loopback (development)", cfg.PublicURL)
	}
	s, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	p := &Portal{cfg: cfg, log: cfg.Logger.With("subsystem", "portal"), sealer: s, secure: pub.Scheme == "https",
		agencies: map[string]*Agency{}}
	for i := range cfg.Agencies {
		a := &cfg.Agencies[i]
		if a.Signer == nil || !broker.ValidID(a.ID) {
			return nil, fmt.Errorf("portal: agency %q needs a valid id and a signing key", a.ID)
		}
		a.Signer.Audience = cfg.BrokerID
		p.agencies[a.ID] = a
	}
	if p.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	octx := oidc.ClientContext(ctx, cfg.HTTPClient)
	if p.provider, err = oidc.NewProvider(octx, cfg.OIDC.Issuer); err != nil {
		return nil, fmt.Errorf("portal: OpenID provider %s: %w", cfg.OIDC.Issuer, err)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if p.provider.Claims(&meta) == nil {
		p.endURL = meta.EndSession
	}
	p.verifier = p.provider.Verifier(&oidc.Config{ClientID: cfg.OIDC.ClientID, Now: cfg.Now})
	p.oauth = oauth2.Config{ClientID: cfg.OIDC.ClientID, ClientSecret: cfg.OIDC.ClientSecret,
		Endpoint: p.provider.Endpoint(), RedirectURL: strings.TrimRight(cfg.PublicURL, "/") + "/auth/callback",
		Scopes: append([]string{oidc.ScopeOpenID}, cfg.OIDC.Scopes...)}
	p.handler = p.routes()
	return p, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServeHTTP serves the portal.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

func (p *Portal) now() time.Time { return p.cfg.Now() }

func (p *Portal) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", p.home)
	mux.HandleFunc("GET /auth/login", p.login)
	mux.HandleFunc("GET /auth/callback", p.callback)
	mux.HandleFunc("POST /auth/logout", p.logout)
	mux.HandleFunc("GET /lang/{lang}", p.setLang)

	mux.Handle("GET /check", p.staff(p.checkForm, checkRoles...))
	mux.Handle("POST /check", p.staff(p.checkPost, checkRoles...))
	mux.Handle("GET /check/emergency", p.staff(p.emergencyForm, checkRoles...))
	mux.Handle("POST /check/emergency", p.staff(p.emergencyPost, checkRoles...))
	mux.Handle("GET /flags/new", p.staff(p.flagForm, issuerRoles...))
	mux.Handle("POST /flags/new", p.staff(p.flagPost, issuerRoles...))
	mux.Handle("GET /warnings/new", p.staff(p.warningForm, broker.RolePoliceLiaison))
	mux.Handle("POST /warnings/new", p.staff(p.warningPost, broker.RolePoliceLiaison))
	mux.Handle("GET /inbox", p.staff(p.inboxPage, inboxRoles...))
	mux.Handle("POST /inbox/ack", p.staff(p.inboxAck, inboxRoles...))
	mux.Handle("GET /inbox/events", p.staff(p.inboxEvents, inboxRoles...))
	mux.Handle("GET /flags", p.staff(p.flagsPage, flagListRoles...))
	mux.Handle("POST /flags/revoke", p.staff(p.revokePost, issuerRoles...))
	p.officerRoutes(mux)

	// Every state-changing request must come from the portal's own pages.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path)
		p.renderError(w, r, http.StatusForbidden, "err.crossorigin")
	}))
	return p.secureHeaders(cop.Handler(mux))
}

// Roles that may use each page (the broker decides again).
var (
	checkRoles    = []string{broker.RoleCaseworker, broker.RoleReception, broker.RoleSecurityCoordinator, broker.RolePoliceLiaison, broker.RoleHealthWorker}
	issuerRoles   = []string{broker.RolePoliceLiaison, broker.RoleSecurityCoordinator, broker.RoleHealthWorker}
	inboxRoles    = []string{broker.RoleSecurityCoordinator, broker.RoleCaseworker}
	flagListRoles = []string{broker.RolePoliceLiaison, broker.RoleSecurityCoordinator, broker.RoleHealthWorker, broker.RolePrivacyOfficer}
)

// secureHeaders sets the headers every answer carries: a strict CSP (no
// inline script or style, forms only to the portal and the provider), no
// framing, no sniffing, no referrer, and no caching (every page may show
// flag data).
func (p *Portal) secureHeaders(next http.Handler) http.Handler {
	formTargets := "'self'"
	if u, err := url.Parse(p.cfg.OIDC.Issuer); err == nil && u.Host != "" {
		formTargets += " " + u.Scheme + "://" + u.Host
	}
	csp := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
		"form-action " + formTargets + "; base-uri 'none'; frame-ancestors 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// staff serves a page to a signed-in employee whose role is one of roles;
// others get the sign-in page or a 403. It slides the idle timeout.
func (p *Portal) staff(h func(http.ResponseWriter, *http.Request, *Session), roles ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := p.session(r)
		if s == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/inbox/events" {
				http.Redirect(w, r, "/auth/login", http.StatusSeeOther)
				return
			}
			p.renderError(w, r, http.StatusUnauthorized, "err.signedout")
			return
		}
		if !slices.Contains(roles, s.Role) {
			p.renderError(w, r, http.StatusForbidden, "err.role")
			return
		}
		s.Seen = p.now()
		if err := p.setCookie(w, sessionCookie, s, p.cfg.MaxSession); err != nil {
			p.fail(w, r, err)
			return
		}
		h(w, r, s)
	})
}

// brokerClient signs requests to the broker as the session's employee.
func (p *Portal) brokerClient(s *Session) (*client.Client, error) {
	a := p.agencies[s.Agency]
	if a == nil {
		return nil, fmt.Errorf("agency %q is not served by this portal", s.Agency)
	}
	return &client.Client{BaseURL: p.cfg.BrokerURL, HTTP: p.cfg.HTTPClient, Signer: a.Signer,
		Employee: client.Employee{Sub: s.Sub, Role: s.Role, Office: s.Office}}, nil
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request) {
	s := p.session(r)
	if s == nil {
		p.render(w, r, http.StatusOK, "welcome", nil, nil)
		return
	}
	switch {
	case slices.Contains(inboxRoles, s.Role) && s.Role == broker.RoleSecurityCoordinator:
		http.Redirect(w, r, "/inbox", http.StatusSeeOther)
	case slices.Contains(checkRoles, s.Role) && s.Role != broker.RolePoliceLiaison:
		http.Redirect(w, r, "/check", http.StatusSeeOther)
	case s.Role == broker.RolePoliceLiaison:
		http.Redirect(w, r, "/warnings/new", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/flags", http.StatusSeeOther)
	}
}

// fail answers an unexpected error: logged (never with request values),
// shown as a plain "something went wrong".
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, err error) {
	p.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	p.renderError(w, r, http.StatusInternalServerError, "err.internal")
}
