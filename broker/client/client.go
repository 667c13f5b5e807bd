// Package client signs requests to a Varsel broker the way docs/api.md §1
// demands (a fresh ES256 or EdDSA JWS per request, bound to its method,
// path, query and body) and sends them. The CLI, the tests and the load
// tool all use it; an agency's own integration can too.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker/auth"
)

// Employee is who the agency vouches for in a request.
type Employee struct {
	Sub    string
	Role   string
	Office string
}

// Signer makes request tokens for one agency with one private key.
type Signer struct {
	Agency   string
	Audience string        // the broker id; "varsel" when empty
	Lifetime time.Duration // default 60 s; the broker refuses more than 300 s
	Now      func() time.Time

	kid    string
	signer jose.Signer
}

// NewSigner makes a Signer from a private JWK (as written by varsel keygen).
func NewSigner(agency string, privateJWK []byte) (*Signer, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(privateJWK); err != nil {
		return nil, fmt.Errorf("decode private key: %w", err)
	}
	if k.IsPublic() {
		return nil, fmt.Errorf("key %q is public: signing needs the private JWK", k.KeyID)
	}
	alg, err := auth.KeyAlg(&jose.JSONWebKey{Key: k.Public().Key, KeyID: k.KeyID})
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType(auth.TokenType).WithHeader("kid", k.KeyID)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: k.Key}, opts)
	if err != nil {
		return nil, fmt.Errorf("make signer: %w", err)
	}
	return &Signer{Agency: agency, kid: k.KeyID, signer: s}, nil
}

// LoadSigner reads a private JWK file.
func LoadSigner(agency, path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return NewSigner(agency, b)
}

// KID is the key id the signer puts in its headers.
func (s *Signer) KID() string { return s.kid }

// Token signs a token for one request: method, path with query, exact body.
func (s *Signer) Token(e Employee, method, pathQuery string, body []byte) (string, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	life := s.Lifetime
	if life == 0 {
		life = 60 * time.Second
	}
	aud := s.Audience
	if aud == "" {
		aud = "varsel"
	}
	var id [18]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	t := now()
	claims := map[string]any{
		"iss": s.Agency, "sub": e.Sub, "aud": aud,
		"iat": t.Unix(), "exp": t.Add(life).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(id[:]),
		"htm": method, "htu": pathQuery, "bsh": auth.BodyHash(body),
		"role": e.Role,
	}
	if e.Office != "" {
		claims["office"] = e.Office
	}
	return s.SignClaims(claims)
}

// SignClaims signs arbitrary claims; tests use it to make malformed tokens.
func (s *Signer) SignClaims(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign request: %w", err)
	}
	return obj.CompactSerialize()
}

// Client sends signed requests for one employee.
type Client struct {
	BaseURL  string // e.g. http://127.0.0.1:8080
	HTTP     *http.Client
	Signer   *Signer
	Employee Employee
}

// Response is a broker answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Problem is an RFC 9457 error body from the broker.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// Problem decodes the body as a problem, or returns nil when it is not one.
func (r *Response) Problem() *Problem {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		return nil
	}
	var p Problem
	if json.Unmarshal(r.Body, &p) != nil {
		return nil
	}
	return &p
}

// Do signs and sends one request. body may be nil.
func (c *Client) Do(ctx context.Context, method, pathQuery string, body []byte) (*Response, error) {
	token, err := c.Signer.Token(c.Employee, method, pathQuery, body)
	if err != nil {
		return nil, err
	}
	return c.DoToken(ctx, method, pathQuery, body, token)
}

// DoToken sends a request with the given token (or none when empty).
func (c *Client) DoToken(ctx context.Context, method, pathQuery string, body []byte, token string) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+pathQuery, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// JSON sends v as the JSON body and decodes a 2xx answer into out (when
// non-nil). A non-2xx answer is returned as an error holding the problem.
func (c *Client) JSON(ctx context.Context, method, pathQuery string, v, out any) (*Response, error) {
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	resp, err := c.Do(ctx, method, pathQuery, body)
	if err != nil {
		return nil, err
	}
	if resp.Status/100 != 2 {
		return resp, &StatusError{Response: resp}
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp, fmt.Errorf("decode %s %s answer: %w", method, pathQuery, err)
		}
	}
	return resp, nil
}

// StatusError is a non-2xx answer.
type StatusError struct{ Response *Response }

func (e *StatusError) Error() string {
	if p := e.Response.Problem(); p != nil {
		return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail)
	}
	return fmt.Sprintf("status %d", e.Response.Status)
}

// NewOpaqueSigner makes a Signer whose key is held elsewhere (Vault
// Transit): op signs, and its public key carries the registered kid.
func NewOpaqueSigner(agency string, op jose.OpaqueSigner) (*Signer, error) {
	pub := op.Public()
	algs := op.Algs()
	if pub == nil || pub.KeyID == "" || len(algs) != 1 {
		return nil, fmt.Errorf("opaque signer: need one algorithm and a public key with a kid")
	}
	opts := (&jose.SignerOptions{}).WithType(auth.TokenType).WithHeader("kid", pub.KeyID)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: algs[0], Key: op}, opts)
	if err != nil {
		return nil, fmt.Errorf("make signer: %w", err)
	}
	return &Signer{Agency: agency, kid: pub.KeyID, signer: s}, nil
}
