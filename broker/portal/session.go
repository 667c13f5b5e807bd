package portal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Session is what the portal remembers of a signed-in employee, sealed in
// a cookie: who they are as their agency vouches for them, and when the
// session started and was last used. No token is kept: the portal signs
// each broker request itself, and logout needs only the client id.
type Session struct {
	Sub     string    `json:"sub"`
	Name    string    `json:"name"`
	Agency  string    `json:"agency"`
	Role    string    `json:"role"`
	Office  string    `json:"office,omitempty"`
	Created time.Time `json:"created"`
	Seen    time.Time `json:"seen"`
}

// loginState is the sealed state of one login round trip to the provider.
type loginState struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Created  time.Time `json:"created"`
}

// sealer seals and opens cookie values with AES-256-GCM. The cookie name is
// bound as additional data, so a value cannot be moved to another cookie.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("session key: want 32 bytes, have %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

var errBadCookie = errors.New("cookie does not open")

func (s *sealer) open(name, value string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return errBadCookie
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(name))
	if err != nil {
		return errBadCookie
	}
	if json.Unmarshal(plain, v) != nil {
		return errBadCookie
	}
	return nil
}

const (
	sessionCookie = "varsel_session"
	loginCookie   = "varsel_login"
	langCookie    = "varsel_lang"
)

// setCookie writes a sealed cookie: HttpOnly, SameSite=Lax, Secure unless
// the portal is served on loopback over plain HTTP (development).
func (p *Portal) setCookie(w http.ResponseWriter, name string, v any, maxAge time.Duration) error {
	val, err := p.sealer.seal(name, v)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: "/", HttpOnly: true, Secure: p.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge.Seconds())})
	return nil
}

func (p *Portal) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: p.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// session returns the request's live session, or nil: none, sealed by
// another key, idle too long or too old.
func (p *Portal) session(r *http.Request) *Session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var s Session
	if p.sealer.open(sessionCookie, c.Value, &s) != nil {
		return nil
	}
	now := p.now()
	if now.Sub(s.Seen) > p.cfg.IdleTimeout || now.Sub(s.Created) > p.cfg.MaxSession || s.Sub == "" {
		return nil
	}
	return &s
}
