package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker"
	"varsel/broker/strict"
)

// Limits of docs/api.md §1.
const (
	TokenType   = "varsel-req+jwt"
	MaxLifetime = 300 * time.Second
	ClockSkew   = 30 * time.Second
	MinJTI      = 16
	MaxJTI      = 128
	// MaxTokenBytes bounds what is parsed at all.
	MaxTokenBytes = 8 << 10
)

// Claims are the claims of a request token. Any other claim is refused.
type Claims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	IssuedAt  *int64          `json:"iat"`
	Expiry    *int64          `json:"exp"`
	NotBefore *int64          `json:"nbf,omitempty"`
	JTI       string          `json:"jti"`
	Method    string          `json:"htm"`
	URI       string          `json:"htu"`
	BodyHash  string          `json:"bsh"`
	Role      string          `json:"role"`
	Office    string          `json:"office,omitempty"`
}

// Keys finds an agency and its active keys; KeyCache implements it.
type Keys interface {
	// Lookup returns the agency and its active key kid, or nil when it
	// has no such active key. Errors: ENOTFOUND for an unknown agency.
	Lookup(ctx context.Context, agencyID, kid string) (*broker.Agency, *jose.JSONWebKey, error)
}

// ReplayGuard remembers token ids.
type ReplayGuard interface {
	// Use records that agency used jti, valid until exp. It returns false
	// when the pair was used before, on this replica or any other.
	Use(ctx context.Context, agencyID, jti string, exp time.Time) (bool, error)
}

// Verifier checks signed requests. It is safe for concurrent use.
type Verifier struct {
	Audience string // the broker's id
	Keys     Keys
	Replay   ReplayGuard
	Now      func() time.Time // nil: time.Now
	Logger   *slog.Logger     // warn line per refusal: agency, kid and code, never the token
}

func unauthorized(code, format string, args ...any) error {
	return broker.CodeErrorf(broker.EUNAUTHORIZED, code, format, args...)
}

// Authenticate verifies the request's bearer token against the request and
// its exact body bytes.
func (v *Verifier) Authenticate(ctx context.Context, r *http.Request, body []byte) (*broker.Principal, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if h == "" || !ok || strings.TrimSpace(token) == "" {
		err := unauthorized(broker.CodeMissingToken, "no bearer token: every /v1/ request must be signed")
		v.logRefusal("", "", err)
		return nil, err
	}
	return v.Verify(ctx, strings.TrimSpace(token), r.Method, r.URL.RequestURI(), body)
}

// header is the whole JOSE header a request token may have: alg, kid and
// typ, spelled exactly so, each once. Any other member (b64, crit, jwk,
// x5u, a case-changed typ, ...) is refused, so no header can change how
// the token is read.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// Verify checks a compact JWS for a request with the given method, path and
// query, and body. On success it returns the principal the agency vouches for.
func (v *Verifier) Verify(ctx context.Context, token, method, uri string, body []byte) (*broker.Principal, error) {
	p, kid, iss, err := v.verify(ctx, token, method, uri, body)
	if err != nil {
		v.logRefusal(iss, kid, err)
		return nil, err
	}
	return p, nil
}

func (v *Verifier) logRefusal(iss, kid string, err error) {
	if v.Logger != nil {
		v.Logger.Warn("request refused", "subsystem", "auth", "agency", iss, "kid", kid, "code", broker.ErrorCode(err))
	}
}

// b64 decodes the parts of a token: unpadded base64url, and strictly so
// (no stray bits, no line breaks), so that one signature has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// SignatureValid is the signature check of Verify and nothing else (no
// header or claims, no replay, no registry): the load tool's stack
// reference (varsel-bench) uses it to measure what the signature costs in
// an HTTP server with none of the broker's work around it.
func SignatureValid(key *jose.JSONWebKey, alg, signingInput, rawSig string) bool {
	return verifySignature(key, alg, signingInput, rawSig)
}

// verifySignature checks a compact JWS signature (base64url rawSig) over
// signingInput with key, for alg, which the caller has already matched to
// the key's type: ES256 is the 64-byte R||S of RFC 7518 §3.4 over the
// SHA-256 digest, EdDSA the 64-byte Ed25519 signature (RFC 8037).
func verifySignature(key *jose.JSONWebKey, alg, signingInput, rawSig string) bool {
	sig, err := b64.DecodeString(rawSig)
	if err != nil || len(sig) != 64 {
		return false
	}
	switch pub := key.Key.(type) {
	case *ecdsa.PublicKey:
		if alg != AlgES256 || pub.Curve != elliptic.P256() {
			return false
		}
		digest := sha256.Sum256([]byte(signingInput))
		var der [derSigMax]byte
		return ecdsa.VerifyASN1(pub, digest[:], derSignature(der[:0], sig))
	case ed25519.PublicKey:
		return alg == AlgEdDSA && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, []byte(signingInput), sig)
	}
	return false
}

// derSigMax is the longest DER ECDSA-Sig-Value of two 32-byte integers:
// SEQUENCE header, and each INTEGER's header, a zero byte and 32 bytes.
const derSigMax = 2 + 2*(2+1+32)

// derSignature appends the DER encoding (SEQUENCE { INTEGER r, INTEGER s },
// RFC 3279 §2.2.3) of the JWS signature r || s (RFC 7518 §3.4) to dst,
// which crypto/ecdsa.VerifyASN1 takes: what ecdsa.Verify would build from
// two big.Ints, without them.
func derSignature(dst, rs []byte) []byte {
	integer := func(dst, n []byte) []byte {
		for len(n) > 1 && n[0] == 0 {
			n = n[1:] // minimal: no leading zero bytes
		}
		if n[0]&0x80 != 0 {
			return append(append(dst, 0x02, byte(len(n)+1), 0), n...) // positive: a zero byte before a high bit
		}
		return append(append(dst, 0x02, byte(len(n))), n...)
	}
	var buf [derSigMax]byte
	half := len(rs) / 2
	body := integer(integer(buf[:0], rs[:half]), rs[half:])
	return append(append(dst, 0x30, byte(len(body))), body...)
}

func (v *Verifier) verify(ctx context.Context, token, method, uri string, body []byte) (p *broker.Principal, kid, iss string, err error) {
	if len(token) > MaxTokenBytes {
		return nil, "", "", unauthorized(broker.CodeMalformedToken, "token longer than %d bytes", MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || !broker.Base64URLChars(token, true) {
		return nil, "", "", unauthorized(broker.CodeMalformedToken, "token is not a compact JWS")
	}
	rawHeader, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, "", "", unauthorized(broker.CodeMalformedToken, "token header is not base64url")
	}
	var hdr header
	if err := strict.Unmarshal(rawHeader, &hdr); err != nil {
		return nil, "", "", unauthorized(broker.CodeMalformedToken, "token header: %v (only alg, kid and typ)", err)
	}
	kid = hdr.Kid
	if hdr.Alg != AlgES256 && hdr.Alg != AlgEdDSA {
		return nil, kid, "", unauthorized(broker.CodeBadAlg, "alg %q is not allowed: use ES256 or EdDSA", truncate(hdr.Alg))
	}
	if hdr.Typ != TokenType {
		return nil, kid, "", unauthorized(broker.CodeBadTyp, "typ must be %q", TokenType)
	}
	if hdr.Kid == "" || len(hdr.Kid) > 128 {
		return nil, kid, "", unauthorized(broker.CodeUnknownKey, "the header must name a registered kid")
	}

	// The issuer picks the key set; nothing else in the payload is trusted
	// before the signature holds.
	rawPayload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, kid, "", unauthorized(broker.CodeMalformedToken, "token payload is not base64url")
	}
	var unverified Claims
	if err := strict.Unmarshal(rawPayload, &unverified); err != nil {
		return nil, kid, "", unauthorized(broker.CodeBadClaims, "claims: %v", err)
	}
	if !broker.ValidID(unverified.Issuer) {
		return nil, kid, "", unauthorized(broker.CodeMalformedToken, "token payload has no well-formed iss")
	}
	iss = truncate(unverified.Issuer)

	agency, key, err := v.Keys.Lookup(ctx, unverified.Issuer, hdr.Kid)
	switch {
	case broker.ErrorKind(err) == broker.ENOTFOUND:
		return nil, kid, iss, unauthorized(broker.CodeUnknownAgency, "agency %q is not registered", iss)
	case err != nil:
		return nil, kid, iss, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "agency keys unavailable", Err: err}
	case agency.Status != broker.StatusActive:
		return nil, kid, iss, unauthorized(broker.CodeAgencyDisabled, "agency %q is disabled", iss)
	case key == nil:
		return nil, kid, iss, unauthorized(broker.CodeUnknownKey, "agency %q has no active key %q", iss, truncate(hdr.Kid))
	}
	if keyAlg, err := KeyAlg(key); err != nil || keyAlg != hdr.Alg {
		return nil, kid, iss, unauthorized(broker.CodeBadAlg, "alg %s does not match key %q", hdr.Alg, truncate(hdr.Kid))
	}

	// The signature covers the exact bytes of the token's first two parts
	// (RFC 7515 §5.2), which were decoded above: it is checked on them
	// directly, with crypto/ecdsa or crypto/ed25519, instead of having a
	// JOSE library parse the token again. The claims decoded before are
	// then the signed ones.
	if !verifySignature(key, hdr.Alg, token[:len(parts[0])+1+len(parts[1])], parts[2]) {
		return nil, kid, iss, unauthorized(broker.CodeBadSignature, "signature does not verify with key %q", truncate(hdr.Kid))
	}
	c := &unverified
	if c.Issuer != agency.ID {
		return nil, kid, iss, unauthorized(broker.CodeBadClaims, "iss is ambiguous")
	}
	if err := v.checkClaims(c, agency, method, uri, body); err != nil {
		return nil, kid, iss, err
	}
	fresh, err := v.Replay.Use(ctx, agency.ID, c.JTI, time.Unix(*c.Expiry, 0).Add(ClockSkew))
	if err != nil {
		return nil, kid, iss, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "replay check unavailable", Err: err}
	}
	if !fresh {
		return nil, kid, iss, unauthorized(broker.CodeReplayed, "token id was already used")
	}
	return &broker.Principal{
		Agency: agency.ID, AgencyKind: agency.Kind, Role: c.Role, Office: c.Office,
		Sub: c.Subject, JTI: c.JTI, KID: hdr.Kid,
	}, kid, iss, nil
}

func (v *Verifier) checkClaims(c *Claims, agency *broker.Agency, method, uri string, body []byte) error {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if !audienceIs(c.Audience, v.Audience) {
		return unauthorized(broker.CodeBadAudience, "aud must be %q", v.Audience)
	}
	if c.IssuedAt == nil || c.Expiry == nil {
		return unauthorized(broker.CodeBadClaims, "iat and exp are required")
	}
	iat, exp := time.Unix(*c.IssuedAt, 0), time.Unix(*c.Expiry, 0)
	if !exp.After(iat) {
		return unauthorized(broker.CodeBadClaims, "exp must be after iat")
	}
	if exp.Sub(iat) > MaxLifetime {
		return unauthorized(broker.CodeBadClaims, "token lifetime over %d s", int(MaxLifetime.Seconds()))
	}
	if now.After(exp.Add(ClockSkew)) {
		return unauthorized(broker.CodeExpired, "token expired")
	}
	if iat.After(now.Add(ClockSkew)) {
		return unauthorized(broker.CodeNotYetValid, "token issued in the future")
	}
	if c.NotBefore != nil && time.Unix(*c.NotBefore, 0).After(now.Add(ClockSkew)) {
		return unauthorized(broker.CodeNotYetValid, "token not valid yet (nbf)")
	}
	if !broker.ValidJTI(c.JTI) {
		return unauthorized(broker.CodeBadClaims, "jti must be %d to %d base64url characters", MinJTI, MaxJTI)
	}
	if !broker.ValidSub(c.Subject) {
		return unauthorized(broker.CodeBadClaims, "sub must be %s", broker.SubRule)
	}
	if c.Method != method {
		return unauthorized(broker.CodeBindingMismatch, "htm does not match the request method")
	}
	if c.URI != uri {
		return unauthorized(broker.CodeBindingMismatch, "htu does not match the request path and query")
	}
	if c.BodyHash != BodyHash(body) {
		return unauthorized(broker.CodeBindingMismatch, "bsh does not match the request body")
	}
	if !broker.ValidRole(c.Role) {
		return unauthorized(broker.CodeBadClaims, "unknown role")
	}
	if !broker.RoleFits(agency.Kind, c.Role) {
		return unauthorized(broker.CodeBadClaims, "a %s agency cannot vouch for role %s", agency.Kind, c.Role)
	}
	if broker.RoleNeedsOffice(c.Role) && c.Office == "" {
		return unauthorized(broker.CodeBadClaims, "role %s requires an office", c.Role)
	}
	if c.Office != "" && !agency.HasOffice(c.Office) {
		return unauthorized(broker.CodeBadClaims, "office is not one of agency %q's offices", agency.ID)
	}
	return nil
}

// BodyHash is the bsh claim for body: base64url (no padding) SHA-256.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return b64.EncodeToString(sum[:])
}

func audienceIs(raw json.RawMessage, want string) bool {
	if len(raw) == len(want)+2 && raw[0] == '"' && raw[len(raw)-1] == '"' && string(raw[1:len(raw)-1]) == want {
		return true // the usual spelling, without a decoder
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s == want
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return len(list) == 1 && list[0] == want
	}
	return false
}

// truncate keeps attacker-chosen strings short in messages and logs.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
