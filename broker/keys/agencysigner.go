package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TransitAgencySigner signs an agency's broker requests with a Vault
// Transit key (ecdsa-p256 for ES256, ed25519 for EdDSA): the private key
// never leaves Vault. It is a go-jose opaque signer, so the request tokens
// are made exactly as with a key file. path is MOUNT/keys/NAME; kid is the
// key id the agency registered the public key under at the broker.
//
// The Vault token needs only "read" on MOUNT/keys/NAME and "update" on
// MOUNT/sign/NAME (deploy/vault/portal-policy.hcl).
func (v *Vault) TransitAgencySigner(ctx context.Context, path, kid string) (jose.OpaqueSigner, error) {
	mount, name, ok := strings.Cut(path, "/keys/")
	if !ok || mount == "" || name == "" {
		return nil, fmt.Errorf("vault: transit key path %q is not MOUNT/keys/NAME", path)
	}
	s, err := v.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("vault: read transit key %s: %w", path, shortVaultErr(err))
	}
	if s == nil {
		return nil, fmt.Errorf("vault: no transit key at %s", path)
	}
	typ, _ := s.Data["type"].(string)
	latest := fmt.Sprint(s.Data["latest_version"])
	versions, _ := s.Data["keys"].(map[string]any)
	kv, _ := versions[latest].(map[string]any)
	pubText, _ := kv["public_key"].(string)
	t := &transitJOSE{v: v, signPath: mount + "/sign/" + name}
	switch typ {
	case "ed25519":
		pub, err := base64.StdEncoding.DecodeString(pubText)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("vault: transit key %s has no ed25519 public key", path)
		}
		t.alg, t.pub = jose.EdDSA, jose.JSONWebKey{Key: ed25519.PublicKey(pub), KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}
	case "ecdsa-p256":
		block, _ := pem.Decode([]byte(pubText))
		if block == nil {
			return nil, fmt.Errorf("vault: transit key %s has no PEM public key", path)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		ek, ok := k.(*ecdsa.PublicKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("vault: transit key %s: not an ECDSA public key", path)
		}
		t.alg, t.pub = jose.ES256, jose.JSONWebKey{Key: ek, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
	default:
		return nil, fmt.Errorf("vault: transit key %s is %q: want ecdsa-p256 or ed25519", path, typ)
	}
	return t, nil
}

type transitJOSE struct {
	v        *Vault
	signPath string
	alg      jose.SignatureAlgorithm
	pub      jose.JSONWebKey
}

var _ jose.OpaqueSigner = (*transitJOSE)(nil)

func (t *transitJOSE) Public() *jose.JSONWebKey        { k := t.pub; return &k }
func (t *transitJOSE) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{t.alg} }
func (t *transitJOSE) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != t.alg {
		return nil, fmt.Errorf("vault: transit key signs %s, not %s", t.alg, alg)
	}
	body := map[string]any{"input": base64.StdEncoding.EncodeToString(payload)}
	if t.alg == jose.ES256 {
		// JWS marshaling gives the raw r||s that ES256 wants, base64url.
		body["hash_algorithm"], body["marshaling_algorithm"] = "sha2-256", "jws"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := t.v.client.Logical().WriteWithContext(ctx, t.signPath, body)
	if err != nil {
		t.v.fail(err)
		return nil, fmt.Errorf("vault: transit sign: %w", shortVaultErr(err))
	}
	if s == nil {
		return nil, errors.New("vault: transit sign gave no answer")
	}
	sig, _ := s.Data["signature"].(string)
	parts := strings.Split(sig, ":")
	if len(parts) != 3 || parts[0] != "vault" {
		return nil, fmt.Errorf("vault: transit sign gave %q", sig)
	}
	var raw []byte
	if t.alg == jose.ES256 {
		raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "="))
		if err == nil && len(raw) != 64 {
			err = errors.New("not 64 bytes")
		}
	} else {
		raw, err = base64.StdEncoding.DecodeString(parts[2])
		if err == nil && len(raw) != ed25519.SignatureSize {
			err = errors.New("not an ed25519 signature")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vault: transit signature: %w", err)
	}
	t.v.ok()
	return raw, nil
}
