package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/mod/sumdb/note"
)

// PublicKey parses a note verifier key ("name+hash+base64(0x01||key)") into
// its Ed25519 public key and its id ("name+hash").
func PublicKey(vkey string) (ed25519.PublicKey, string, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return nil, "", fmt.Errorf("malformed verifier key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 {
		return nil, "", fmt.Errorf("verifier key is not an Ed25519 key")
	}
	return ed25519.PublicKey(raw[1:]), parts[0] + "+" + parts[1], nil
}

// noteSigner lets go-jose sign with a note.Signer: both are plain Ed25519
// over the message bytes, so one key (a local file, or Vault Transit where
// the private key never leaves Vault) signs checkpoints and JWS bodies.
type noteSigner struct {
	s   note.Signer
	pub jose.JSONWebKey
}

func (n *noteSigner) Public() *jose.JSONWebKey { return &n.pub }

func (n *noteSigner) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{jose.EdDSA} }

func (n *noteSigner) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != jose.EdDSA {
		return nil, fmt.Errorf("broker key signs EdDSA only, not %s", alg)
	}
	return n.s.Sign(payload)
}

// BrokerJWS makes a JWS signer from the checkpoint signer and its verifier
// key, and returns the public JWK that verifies its signatures.
func BrokerJWS(s note.Signer, vkey string, typ string) (jose.Signer, jose.JSONWebKey, error) {
	pub, kid, err := PublicKey(vkey)
	if err != nil {
		return nil, jose.JSONWebKey{}, err
	}
	jwk := jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}
	opaque := &noteSigner{s: s, pub: jwk}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: opaque}, opts)
	if err != nil {
		return nil, jose.JSONWebKey{}, fmt.Errorf("make broker JWS signer: %w", err)
	}
	return signer, jwk, nil
}
