// Package auth verifies the signed requests of docs/api.md §1: a compact JWS per
// request, signed by a key the calling agency registered, bound to the
// request's method, path and body, and used once. It also parses the JWKS
// files agencies register and makes keys for them.
package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"varsel/broker"
)

// The only signature algorithms a request may use.
const (
	AlgES256 = string(jose.ES256)
	AlgEdDSA = string(jose.EdDSA)
)

// AllowedAlgs is the explicit allow-list handed to go-jose's parser.
var AllowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// KeyAlg returns the algorithm a public key verifies, or an error when the
// key is of a type the broker does not accept (RSA, symmetric, another curve).
func KeyAlg(k *jose.JSONWebKey) (string, error) {
	var alg string
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return "", fmt.Errorf("key %q: only the P-256 curve is accepted for EC keys", k.KeyID)
		}
		alg = AlgES256
	case ed25519.PublicKey:
		alg = AlgEdDSA
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
		return "", fmt.Errorf("key %q is a private key: register public keys only", k.KeyID)
	default:
		return "", fmt.Errorf("key %q: only ES256 (P-256) and EdDSA (Ed25519) keys are accepted, not %T", k.KeyID, k.Key)
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		return "", fmt.Errorf("key %q: alg %q does not match its key type (want %s)", k.KeyID, k.Algorithm, alg)
	}
	return alg, nil
}

// ParseJWKS reads an RFC 7517 key set of public keys for an agency. It
// refuses malformed JSON, an empty set, private keys (even mixed with
// public ones), RSA and symmetric keys, curves other than P-256, missing and
// duplicate kids. The returned keys hold each key's public JWK as JSON.
func ParseJWKS(agencyID string, data []byte) ([]broker.AgencyKey, error) {
	// Look for private members before go-jose parses, so that no private key
	// material is ever held in a typed key or echoed in an error.
	var raw struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, broker.Errorf(broker.EINVALID, "JWKS is not valid JSON: %v", err)
	}
	if len(raw.Keys) == 0 {
		return nil, broker.Errorf(broker.EINVALID, "JWKS has no keys")
	}
	for i, m := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := m[private]; ok {
				return nil, broker.Errorf(broker.EINVALID, "JWKS key %d holds private key material (%q): register public keys only", i, private)
			}
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, broker.Errorf(broker.EINVALID, "JWKS is malformed: %v", err)
	}
	seen := map[string]bool{}
	keys := make([]broker.AgencyKey, 0, len(set.Keys))
	for i := range set.Keys {
		k := &set.Keys[i]
		if k.KeyID == "" {
			return nil, broker.Errorf(broker.EINVALID, "JWKS key %d has no kid", i)
		}
		if len(k.KeyID) > 128 {
			return nil, broker.Errorf(broker.EINVALID, "JWKS key %d: kid longer than 128 characters", i)
		}
		if seen[k.KeyID] {
			return nil, broker.Errorf(broker.EINVALID, "JWKS has two keys with kid %q", k.KeyID)
		}
		seen[k.KeyID] = true
		if !k.IsPublic() {
			return nil, broker.Errorf(broker.EINVALID, "key %q is a private key: register public keys only", k.KeyID)
		}
		alg, err := KeyAlg(k)
		if err != nil {
			return nil, broker.Errorf(broker.EINVALID, "%v", err)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, broker.Errorf(broker.EINVALID, "key %q: use %q, want \"sig\"", k.KeyID, k.Use)
		}
		pub := jose.JSONWebKey{Key: k.Key, KeyID: k.KeyID, Algorithm: alg, Use: "sig"}
		js, err := pub.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encode key %q: %w", k.KeyID, err)
		}
		keys = append(keys, broker.AgencyKey{AgencyID: agencyID, KID: k.KeyID, Alg: alg, JWK: js, Status: broker.StatusActive})
	}
	return keys, nil
}

// ParsePublicJWK decodes one registered public key.
func ParsePublicJWK(data []byte) (*jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("decode registered key: %w", err)
	}
	if !k.IsPublic() {
		return nil, fmt.Errorf("registered key %q is not public", k.KeyID)
	}
	return &k, nil
}

// GenerateKey makes a new signing key for alg (ES256 or EdDSA). It returns
// the private JWK and a JWKS holding only its public half.
func GenerateKey(alg, kid string) (private, publicSet []byte, err error) {
	var key any
	switch alg {
	case AlgES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, broker.Errorf(broker.EINVALID, "unsupported alg %q: use ES256 or EdDSA", alg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	if kid == "" {
		return nil, nil, broker.Errorf(broker.EINVALID, "a kid is required")
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"}
	private, err = json.MarshalIndent(jwk, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}}
	publicSet, err = json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return append(private, '\n'), append(publicSet, '\n'), nil
}
