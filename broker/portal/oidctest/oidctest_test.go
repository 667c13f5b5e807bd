package oidctest_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"varsel/broker/portal/oidctest"
)

// varselClaims are the claims the portal maps roles from.
type varselClaims struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Agency string   `json:"agency"`
	Office *string  `json:"office"`
}

// rp is a relying party as the portal will be one: go-oidc and x/oauth2.
type rp struct {
	t        *testing.T
	issuer   string
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newRP(t *testing.T, ctx context.Context, issuer string, c oidctest.Client) *rp {
	t.Helper()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	return &rp{
		t:        t,
		issuer:   issuer,
		provider: provider,
		conf: oauth2.Config{
			ClientID:     c.ID,
			ClientSecret: c.Secret,
			Endpoint:     ep,
			RedirectURL:  c.RedirectURIs[0],
			Scopes:       []string{oidc.ScopeOpenID, "profile", "varsel"},
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: c.ID}),
	}
}

func random(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// browser is a cookie-keeping HTTP client that follows redirects, except one
// to the client's redirect URI (or post-logout URI): there it stops and
// returns that redirect, as a browser would hand it to the portal.
func browser(t *testing.T, stopAt ...string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			u := req.URL.String()
			for _, p := range stopAt {
				if strings.HasPrefix(u, p) {
					return http.ErrUseLastResponse
				}
			}
			if len(via) > 10 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var formAction = regexp.MustCompile(`<form method="post" action="([^"]+)">`)

// loginPage follows an authorization URL to the login page and returns the
// absolute URL its login form posts to.
func loginPage(t *testing.T, c *http.Client, issuer, authURL string) string {
	t.Helper()
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("authorization request: %v", err)
	}
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: status %d: %s", resp.StatusCode, page)
	}
	for _, want := range []string{
		`<html lang="nb">`, `<title>`, `<main>`, `<h1>Logg inn</h1>`,
		`<label for="username">`, `id="username"`, `<label for="password">`, `id="password"`,
		`type="password"`, `<button type="submit"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("login page has a script")
	}
	// default-src 'none' and no script-src: no script of any kind may run.
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("login page CSP = %q", csp)
	}
	m := formAction.FindStringSubmatch(page)
	if m == nil || !strings.HasSuffix(m[1], "/login") {
		t.Fatalf("no login form in:\n%s", page)
	}
	return issuer + html.UnescapeString(m[1])
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return resp
}

// signIn runs the code flow with PKCE for one user up to the verified ID
// token, and returns the token, its claims and the raw ID token.
func (r *rp) signIn(ctx context.Context, username, password string) (*oidc.IDToken, varselClaims, string) {
	t := r.t
	t.Helper()
	state, nonce, verifier := random(t), random(t), oauth2.GenerateVerifier()
	authURL := r.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	c := browser(t, r.conf.RedirectURL)

	action := loginPage(t, c, r.issuer, authURL)
	resp := postForm(t, c, action, url.Values{"username": {username}, "password": {password}})
	page := body(t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login of %s: status %d, want a redirect to the client: %s", username, resp.StatusCode, page)
	}
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(cb.String(), r.conf.RedirectURL+"?") {
		t.Fatalf("login of %s redirected to %q, want %s", username, resp.Header.Get("Location"), r.conf.RedirectURL)
	}
	q := cb.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		t.Fatalf("state = %q, want %q", q.Get("state"), state)
	}
	if q.Get("iss") != r.issuer {
		t.Errorf("iss = %q, want %q", q.Get("iss"), r.issuer)
	}

	tok, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		t.Fatal("token response has no id_token")
	}
	idt, err := r.verifier.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	if idt.Issuer != r.issuer {
		t.Errorf("ID token iss = %q, want %q", idt.Issuer, r.issuer)
	}
	if !slices.Contains(idt.Audience, r.conf.ClientID) {
		t.Errorf("ID token aud = %v, want %s", idt.Audience, r.conf.ClientID)
	}
	if idt.Nonce != nonce {
		t.Errorf("ID token nonce = %q, want %q", idt.Nonce, nonce)
	}
	if ttl := time.Until(idt.Expiry); ttl <= 0 || ttl > 10*time.Minute+time.Minute {
		t.Errorf("ID token lives %v, want at most 10 min", ttl)
	}
	var cl varselClaims
	if err := idt.Claims(&cl); err != nil {
		t.Fatalf("ID token claims: %v", err)
	}

	// The same claims come from the userinfo endpoint with the access token.
	ui, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc varselClaims
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != idt.Subject || uc.Agency != cl.Agency || !slices.Equal(uc.Groups, cl.Groups) {
		t.Errorf("userinfo %s %+v differs from the ID token %s %+v", ui.Subject, uc, idt.Subject, cl)
	}
	return idt, cl, raw
}

// portal stands in for the portal a test would start on a random port; the
// flow stops at the redirect to it, so it must not be reached.
func portal(t *testing.T) oidctest.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the portal was reached: %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return oidctest.Client{
		ID:                     "portal-test",
		Secret:                 "test-secret",
		RedirectURIs:           []string{srv.URL + "/auth/callback"},
		PostLogoutRedirectURIs: []string{srv.URL + "/"},
	}
}

func TestCodeFlowWithPKCE(t *testing.T) {
	client := portal(t)
	p := oidctest.Start(t, oidctest.Config{Clients: []oidctest.Client{client}}) // demo users
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := newRP(t, ctx, p.Issuer, client)

	t.Run("discovery", func(t *testing.T) {
		var meta struct {
			EndSession string   `json:"end_session_endpoint"`
			Methods    []string `json:"code_challenge_methods_supported"`
			Scopes     []string `json:"scopes_supported"`
			Claims     []string `json:"claims_supported"`
		}
		if err := r.provider.Claims(&meta); err != nil {
			t.Fatal(err)
		}
		if meta.EndSession != p.Issuer+"/session/end" {
			t.Errorf("end_session_endpoint = %q", meta.EndSession)
		}
		if !slices.Equal(meta.Methods, []string{"S256"}) {
			t.Errorf("code_challenge_methods_supported = %v", meta.Methods)
		}
		for _, s := range []string{"openid", "profile", "varsel"} {
			if !slices.Contains(meta.Scopes, s) {
				t.Errorf("scopes_supported %v lacks %s", meta.Scopes, s)
			}
		}
		for _, c := range []string{"name", "groups", "agency", "office"} {
			if !slices.Contains(meta.Claims, c) {
				t.Errorf("claims_supported %v lacks %s", meta.Claims, c)
			}
		}
	})

	t.Run("caseworker", func(t *testing.T) {
		r := *r
		r.t = t
		idt, cl, _ := r.signIn(ctx, "kari.grorud", oidctest.DemoPassword)
		if idt.Subject != "kari.grorud" || cl.Name == "" || cl.Agency != "nav-stat" ||
			cl.Office == nil || *cl.Office != "nav-grorud" || !slices.Equal(cl.Groups, []string{"varsel-caseworkers"}) {
			t.Errorf("claims of kari.grorud: sub %s %+v (office %v)", idt.Subject, cl, cl.Office)
		}
	})

	t.Run("privacy officer has no office", func(t *testing.T) {
		r := *r
		r.t = t
		_, cl, _ := r.signIn(ctx, "personvern.varsel", oidctest.DemoPassword)
		if cl.Agency != "varsel-ops" || cl.Office != nil || !slices.Equal(cl.Groups, []string{"varsel-privacy-officers"}) {
			t.Errorf("claims of personvern.varsel: %+v (office %v)", cl, cl.Office)
		}
	})

	t.Run("no mapped group", func(t *testing.T) {
		r := *r
		r.t = t
		_, cl, _ := r.signIn(ctx, "uten.tilgang", oidctest.DemoPassword)
		if cl.Groups == nil || len(cl.Groups) != 0 {
			t.Errorf("groups of uten.tilgang = %#v, want an empty array", cl.Groups)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		for _, user := range []string{"kari.grorud", "nobody.here"} {
			c := browser(t, client.RedirectURIs[0])
			authURL := r.conf.AuthCodeURL(random(t), oidc.Nonce(random(t)), oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			action := loginPage(t, c, p.Issuer, authURL)
			resp := postForm(t, c, action, url.Values{"username": {user}, "password": {"wrong"}})
			page := body(t, resp)
			if resp.StatusCode != http.StatusOK || strings.Contains(resp.Header.Get("Location"), "code=") {
				t.Fatalf("%s with a wrong password: status %d, Location %q", user, resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.Contains(page, `role="alert"`) || !strings.Contains(page, "Feil brukernavn eller passord") {
				t.Errorf("%s with a wrong password: no error on the page:\n%s", user, page)
			}
			if strings.Contains(page, "wrong") {
				t.Errorf("the page echoes the password")
			}
			// The form is there again, and the right password still works.
			m := formAction.FindStringSubmatch(page)
			if m == nil {
				t.Fatalf("no login form after a wrong password:\n%s", page)
			}
			if user == "kari.grorud" {
				resp := postForm(t, c, p.Issuer+html.UnescapeString(m[1]), url.Values{"username": {user}, "password": {oidctest.DemoPassword}})
				body(t, resp)
				if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "code=") {
					t.Errorf("right password after a wrong one: status %d, Location %q", resp.StatusCode, loc)
				}
			}
		}
	})

	t.Run("PKCE is required", func(t *testing.T) {
		c := browser(t, client.RedirectURIs[0])
		resp, err := c.Get(r.conf.AuthCodeURL(random(t), oidc.Nonce(random(t)))) // no code_challenge
		if err != nil {
			t.Fatal(err)
		}
		body(t, resp)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Has("code") {
			t.Errorf("without PKCE: status %d, Location %q, want error=invalid_request", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("RP-initiated logout", func(t *testing.T) {
		// Sign in with this browser, then sign out to the post-logout URI.
		c := browser(t, client.RedirectURIs[0], client.PostLogoutRedirectURIs[0])
		verifier, nonce := oauth2.GenerateVerifier(), random(t)
		action := loginPage(t, c, p.Issuer, r.conf.AuthCodeURL(random(t), oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)))
		resp := postForm(t, c, action, url.Values{"username": {"ola.politi"}, "password": {oidctest.DemoPassword}})
		body(t, resp)
		cb, _ := url.Parse(resp.Header.Get("Location"))
		tok, err := r.conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := tok.Extra("id_token").(string)

		end := p.Issuer + "/session/end?" + url.Values{
			"id_token_hint":            {raw},
			"post_logout_redirect_uri": {client.PostLogoutRedirectURIs[0]},
			"state":                    {"bye"},
		}.Encode()
		resp, err = c.Get(end)
		if err != nil {
			t.Fatal(err)
		}
		page := body(t, resp)
		m := regexp.MustCompile(`<form id="op.logoutForm" method="post" action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"/>`).FindStringSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(page, `<html lang="nb">`) {
			t.Fatalf("logout page: status %d:\n%s", resp.StatusCode, page)
		}
		resp = postForm(t, c, html.UnescapeString(m[1]), url.Values{"xsrf": {m[2]}, "logout": {"yes"}})
		body(t, resp)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, client.PostLogoutRedirectURIs[0]) || !strings.Contains(loc, "state=bye") {
			t.Fatalf("logout: status %d, Location %q", resp.StatusCode, loc)
		}
		// Signed out: a new authorization asks for the password again.
		loginPage(t, c, p.Issuer, r.conf.AuthCodeURL(random(t), oidc.Nonce(random(t)), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	})
}

// TestOwnUsers starts a second provider, with users of the test's own, next
// to the first: each Start has its own directory and port.
func TestOwnUsers(t *testing.T) {
	client := portal(t)
	p := oidctest.Start(t, oidctest.Config{
		Clients: []oidctest.Client{client},
		Users: []oidctest.User{{
			Username: "test.user", Password: "s3cret", Sub: "employee-42", Name: "Test User",
			Agency: "oslo-pd", Office: "oslo-pd-sentrum", Groups: []string{"varsel-police-liaisons", "other"},
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := newRP(t, ctx, p.Issuer, client)
	idt, cl, _ := r.signIn(ctx, "test.user", "s3cret")
	if idt.Subject != "employee-42" || cl.Name != "Test User" || cl.Agency != "oslo-pd" ||
		!slices.Equal(cl.Groups, []string{"varsel-police-liaisons", "other"}) {
		t.Errorf("sub %s, claims %+v", idt.Subject, cl)
	}
}
