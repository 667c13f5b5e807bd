package portal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"varsel/broker"
	"varsel/broker/client"
)

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// login starts the code flow: state, nonce and the PKCE verifier are kept
// in a sealed, short-lived cookie, and the browser goes to the provider.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	st := loginState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Created: p.now()}
	if err := p.setCookie(w, loginCookie, st, 10*time.Minute); err != nil {
		p.fail(w, r, err)
		return
	}
	u := p.oauth.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), oauth2.SetAuthURLParam("nonce", st.Nonce),
		oauth2.SetAuthURLParam("ui_locales", p.lang(r)))
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// callback finishes the code flow: the state must match the sealed one,
// the code is exchanged with the PKCE verifier, and the ID token must be
// signed by the provider for this client with the nonce sent. The claims
// then give the role, office and agency; the broker confirms it accepts
// the employee before a session starts.
func (p *Portal) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := r.Cookie(loginCookie)
	var st loginState
	if err != nil || p.sealer.open(loginCookie, c.Value, &st) != nil || p.now().Sub(st.Created) > 10*time.Minute {
		p.renderError(w, r, http.StatusBadRequest, "err.login")
		return
	}
	p.clearCookie(w, loginCookie)
	q := r.URL.Query()
	if q.Get("error") != "" || q.Get("state") != st.State || q.Get("code") == "" {
		p.renderError(w, r, http.StatusBadRequest, "err.login")
		return
	}
	tok, err := p.oauth.Exchange(oidcContext(ctx, p.cfg.HTTPClient), q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		p.log.Warn("code exchange failed", "err", err)
		p.renderError(w, r, http.StatusBadGateway, "err.login")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.verifier.Verify(oidcContext(ctx, p.cfg.HTTPClient), raw)
	if err != nil || idt.Nonce != st.Nonce {
		p.log.Warn("ID token refused", "err", err)
		p.renderError(w, r, http.StatusBadRequest, "err.login")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.login")
		return
	}
	s, code := p.mapClaims(idt.Subject, claims)
	if s == nil {
		p.log.Info("sign-in refused", "reason", code)
		p.renderError(w, r, http.StatusForbidden, code)
		return
	}
	// The broker must accept what the portal is about to vouch for.
	bc, err := p.brokerClient(s)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	var who struct {
		AgencyKind string `json:"agency_kind"`
	}
	if resp, err := bc.JSON(ctx, "GET", "/v1/whoami", nil, &who); err != nil {
		if resp != nil && resp.Status == http.StatusUnauthorized {
			p.log.Warn("broker refused the employee", "agency", s.Agency, "role", s.Role, "code", problemCode(resp))
			p.renderError(w, r, http.StatusForbidden, "err.role")
			return
		}
		p.fail(w, r, err)
		return
	}
	s.Created, s.Seen = p.now(), p.now()
	if err := p.setCookie(w, sessionCookie, s, p.cfg.MaxSession); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("signed in", "agency", s.Agency, "role", s.Role, "office", s.Office)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// mapClaims turns ID-token claims into a session, or says why not.
func (p *Portal) mapClaims(sub string, claims map[string]any) (*Session, string) {
	c := p.cfg.Claims
	s := &Session{Sub: sub}
	s.Name, _ = claims["name"].(string)
	if len(p.agencies) == 1 {
		for id := range p.agencies {
			s.Agency = id
		}
	}
	if a, ok := claims[c.AgencyClaim].(string); ok && a != "" {
		if p.agencies[a] == nil {
			return nil, "err.agency"
		}
		s.Agency = a
	}
	if s.Agency == "" {
		return nil, "err.agency"
	}
	var groups []string
	if list, ok := claims[c.GroupsClaim].([]any); ok {
		for _, g := range list {
			if gs, ok := g.(string); ok {
				groups = append(groups, gs)
			}
		}
	}
	for _, role := range broker.Roles {
		for _, g := range groups {
			if c.Groups[g] == role {
				s.Role = role
				break
			}
		}
		if s.Role != "" {
			break
		}
	}
	if s.Role == "" {
		return nil, "err.role"
	}
	// Office roles act for their office; a health worker may name one.
	if broker.RoleNeedsOffice(s.Role) || s.Role == broker.RoleHealthWorker {
		s.Office, _ = claims[c.OfficeClaim].(string)
	}
	if broker.RoleNeedsOffice(s.Role) && s.Office == "" {
		return nil, "err.office"
	}
	if !broker.ValidSub(s.Sub) {
		return nil, "err.sub"
	}
	return s, ""
}

// logout ends the session here and, when the provider offers it, there.
func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	p.clearCookie(w, sessionCookie)
	if p.endURL == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	u, err := url.Parse(p.endURL)
	if err != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	q := u.Query()
	q.Set("client_id", p.cfg.OIDC.ClientID)
	q.Set("post_logout_redirect_uri", p.cfg.PublicURL+"/")
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func problemCode(r *client.Response) string {
	if pr := r.Problem(); pr != nil {
		return pr.Code
	}
	return ""
}

// oidcContext makes the OpenID and OAuth libraries use the portal's client.
func oidcContext(ctx context.Context, hc *http.Client) context.Context {
	return oidc.ClientContext(ctx, hc)
}
