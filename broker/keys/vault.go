package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"

	"varsel/broker"
)

// VaultConfig says where the broker's secrets are in Vault and how to log in.
type VaultConfig struct {
	Address string // VAULT_ADDR
	// One of: Token; RoleID and SecretID (AppRole); K8sRole (Kubernetes,
	// with the service account token at K8sTokenPath).
	Token        string
	RoleID       string
	SecretID     string
	K8sRole      string
	K8sTokenPath string
	AuthMount    string // default "approle" or "kubernetes"

	// SubjectKeyPath is the KV v2 secret holding the subject key, as the
	// API path (default secret/data/varsel/subject-key); its field "key" is
	// 32 or more random bytes, base64.
	SubjectKeyPath string
	// TransitKeyPath is the ed25519 Transit key that signs checkpoints and
	// webhook bodies (default transit/keys/varsel-checkpoint).
	TransitKeyPath string
	Name           string // the signer's name (the broker id)
	Logger         *slog.Logger
}

// Vault is a Source backed by HashiCorp Vault: the subject key from KV v2
// (read at start and kept in memory, so checks go on when Vault is away)
// and signing by Transit (the private key never leaves Vault).
type Vault struct {
	cfg     VaultConfig
	client  *vault.Client
	kvMount string
	kvPath  string
	trMount string
	trKey   string

	mu      sync.Mutex
	lastErr error

	// life bounds the token renewers; Close ends it and waits for them.
	life    context.Context
	stop    context.CancelFunc
	renewer sync.WaitGroup
}

var _ Source = (*Vault)(nil)

// VaultConfigFromEnv reads the standard Vault variables (VAULT_ADDR,
// VAULT_TOKEN) and Varsel's own (VARSEL_VAULT_ROLE_ID, VARSEL_VAULT_SECRET_ID,
// VARSEL_VAULT_K8S_ROLE, VARSEL_VAULT_SUBJECT_KEY, VARSEL_VAULT_TRANSIT_KEY).
// Only cmd/ calls it: libraries never read the environment.
func VaultConfigFromEnv(getenv func(string) string) VaultConfig {
	return VaultConfig{
		Address: getenv("VAULT_ADDR"), Token: getenv("VAULT_TOKEN"),
		RoleID: getenv("VARSEL_VAULT_ROLE_ID"), SecretID: getenv("VARSEL_VAULT_SECRET_ID"),
		K8sRole: getenv("VARSEL_VAULT_K8S_ROLE"), K8sTokenPath: getenv("VARSEL_VAULT_K8S_TOKEN_PATH"),
		AuthMount:      getenv("VARSEL_VAULT_AUTH_MOUNT"),
		SubjectKeyPath: getenv("VARSEL_VAULT_SUBJECT_KEY"), TransitKeyPath: getenv("VARSEL_VAULT_TRANSIT_KEY"),
	}
}

// OpenVault connects and logs in. It fails when Vault cannot be reached or
// the credentials are refused.
func OpenVault(ctx context.Context, cfg VaultConfig) (*Vault, error) {
	if cfg.Address == "" {
		return nil, errors.New("vault: VAULT_ADDR is not set")
	}
	if cfg.SubjectKeyPath == "" {
		cfg.SubjectKeyPath = "secret/data/varsel/subject-key"
	}
	if cfg.TransitKeyPath == "" {
		cfg.TransitKeyPath = "transit/keys/varsel-checkpoint"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Vault{cfg: cfg}
	v.life, v.stop = context.WithCancel(context.Background())
	var ok bool
	if v.kvMount, v.kvPath, ok = strings.Cut(cfg.SubjectKeyPath, "/data/"); !ok {
		return nil, fmt.Errorf("vault: subject key path %q is not a KV v2 path (MOUNT/data/PATH)", cfg.SubjectKeyPath)
	}
	if v.trMount, v.trKey, ok = strings.Cut(cfg.TransitKeyPath, "/keys/"); !ok {
		return nil, fmt.Errorf("vault: transit key path %q is not MOUNT/keys/NAME", cfg.TransitKeyPath)
	}
	vc := vault.DefaultConfig()
	vc.Address = cfg.Address
	vc.Timeout = 10 * time.Second
	vc.MaxRetries = 1
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	client.ClearToken()
	v.client = client
	if err := v.login(ctx); err != nil {
		v.stop()
		return nil, err
	}
	return v, nil
}

// Close stops renewing the token and waits for the renewers to end.
func (v *Vault) Close() error {
	v.stop()
	v.renewer.Wait()
	return nil
}

// goRenew runs fn as a renewer bound to the source's life.
func (v *Vault) goRenew(fn func(ctx context.Context)) {
	v.renewer.Add(1)
	go func() {
		defer v.renewer.Done()
		fn(v.life)
	}()
}

// pause waits d unless ctx ends first; it reports whether to go on.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (v *Vault) login(ctx context.Context) error {
	c := v.cfg
	switch {
	case c.Token != "":
		v.client.SetToken(c.Token)
		s, err := v.client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return fmt.Errorf("vault: token refused at %s: %w", c.Address, shortVaultErr(err))
		}
		if renewable, _ := s.TokenIsRenewable(); renewable {
			v.goRenew(func(ctx context.Context) { v.renewToken(ctx, s) })
		}
		return nil
	case c.RoleID != "":
		mount := c.AuthMount
		if mount == "" {
			mount = "approle"
		}
		return v.loginWith(ctx, "auth/"+mount+"/login", func() (map[string]any, error) {
			return map[string]any{"role_id": c.RoleID, "secret_id": c.SecretID}, nil
		})
	case c.K8sRole != "":
		mount := c.AuthMount
		if mount == "" {
			mount = "kubernetes"
		}
		path := c.K8sTokenPath
		if path == "" {
			path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
		}
		// The projected token on disk is rotated by the kubelet: read it
		// afresh for every login, never reuse an old copy.
		return v.loginWith(ctx, "auth/"+mount+"/login", func() (map[string]any, error) {
			jwt, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("vault: kubernetes service account token: %w", err)
			}
			return map[string]any{"role": c.K8sRole, "jwt": strings.TrimSpace(string(jwt))}, nil
		})
	}
	return errors.New("vault: no credentials: set VAULT_TOKEN, or VARSEL_VAULT_ROLE_ID and VARSEL_VAULT_SECRET_ID, or VARSEL_VAULT_K8S_ROLE")
}

func (v *Vault) loginWith(ctx context.Context, path string, credentials func() (map[string]any, error)) error {
	body, err := credentials()
	if err != nil {
		return err
	}
	s, err := v.client.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return fmt.Errorf("vault: login at %s refused: %w", path, shortVaultErr(err))
	}
	if s == nil || s.Auth == nil {
		return fmt.Errorf("vault: login at %s gave no token", path)
	}
	v.client.SetToken(s.Auth.ClientToken)
	w, err := v.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: s})
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	v.goRenew(func(ctx context.Context) { v.watch(ctx, w, path, credentials) })
	return nil
}

// watch renews a login's token and logs in again when it cannot be renewed.
func (v *Vault) watch(ctx context.Context, w *vault.LifetimeWatcher, path string, credentials func() (map[string]any, error)) {
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-w.DoneCh():
			if err != nil {
				v.cfg.Logger.Warn("vault token renewal ended; logging in again", "subsystem", "keys", "err", shortVaultErr(err))
			}
			for {
				if err := v.loginWith(ctx, path, credentials); err == nil || ctx.Err() != nil {
					return
				}
				if !pause(ctx, 5*time.Second) {
					return
				}
			}
		case <-w.RenewCh():
		}
	}
}

// renewToken renews a renewable VAULT_TOKEN at half its TTL.
func (v *Vault) renewToken(ctx context.Context, s *vault.Secret) {
	for {
		ttl, err := s.TokenTTL()
		if err != nil || ttl <= 0 {
			return // not expiring
		}
		if !pause(ctx, ttl/2) {
			return
		}
		ns, err := v.client.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			v.cfg.Logger.Warn("vault token renewal failed; retrying", "subsystem", "keys", "err", shortVaultErr(err))
			if !pause(ctx, 10*time.Second) {
				return
			}
			continue
		}
		if ns != nil && ns.Auth != nil {
			s = &vault.Secret{Data: map[string]any{"ttl": json.Number(strconv.Itoa(ns.Auth.LeaseDuration))}}
		}
	}
}

// shortVaultErr keeps Vault's errors to one line without request dumps.
func shortVaultErr(err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("%d %s", re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return err
}

// SubjectKey reads a version of the subject key ("" for the latest).
func (v *Vault) SubjectKey(ctx context.Context, version string) ([]byte, string, error) {
	kv := v.client.KVv2(v.kvMount)
	var s *vault.KVSecret
	var err error
	if version == "" {
		s, err = kv.Get(ctx, v.kvPath)
	} else {
		n, perr := strconv.Atoi(version)
		if perr != nil {
			return nil, "", fmt.Errorf("vault: subject key version %q is not a number", version)
		}
		s, err = kv.GetVersion(ctx, v.kvPath, n)
	}
	if err != nil {
		return nil, "", fmt.Errorf("vault: read subject key %s: %w", v.cfg.SubjectKeyPath, shortVaultErr(err))
	}
	raw, _ := s.Data["key"].(string)
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 32 {
		return nil, "", fmt.Errorf("vault: %s: field \"key\" must be at least 32 bytes, base64", v.cfg.SubjectKeyPath)
	}
	ver := ""
	if s.VersionMetadata != nil {
		ver = strconv.Itoa(s.VersionMetadata.Version)
	}
	v.ok()
	return key, ver, nil
}

// CheckpointSigner returns a note signer that signs through Transit.
func (v *Vault) CheckpointSigner(ctx context.Context) (note.Signer, string, error) {
	s, err := v.client.Logical().ReadWithContext(ctx, v.cfg.TransitKeyPath)
	if err != nil {
		return nil, "", fmt.Errorf("vault: read transit key %s: %w", v.cfg.TransitKeyPath, shortVaultErr(err))
	}
	if s == nil {
		return nil, "", fmt.Errorf("vault: no transit key at %s", v.cfg.TransitKeyPath)
	}
	if t, _ := s.Data["type"].(string); t != "ed25519" {
		return nil, "", fmt.Errorf("vault: transit key %s is %q, want ed25519", v.cfg.TransitKeyPath, t)
	}
	latest := fmt.Sprint(s.Data["latest_version"])
	versions, _ := s.Data["keys"].(map[string]any)
	kv, _ := versions[latest].(map[string]any)
	pubB64, _ := kv["public_key"].(string)
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, "", fmt.Errorf("vault: transit key %s has no ed25519 public key", v.cfg.TransitKeyPath)
	}
	vkey, err := note.NewEd25519VerifierKey(v.cfg.Name, ed25519.PublicKey(pub))
	if err != nil {
		return nil, "", err
	}
	ver, err := strconv.Atoi(latest)
	if err != nil {
		return nil, "", fmt.Errorf("vault: transit key version %q", latest)
	}
	v.ok()
	return &transitSigner{v: v, name: v.cfg.Name, hash: keyHash(v.cfg.Name, pub), version: ver}, vkey, nil
}

// keyHash is the note key hash: the first 4 bytes of SHA-256(name, "\n", 0x01, key).
func keyHash(name string, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write([]byte{1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// transitSigner signs with a Transit ed25519 key version.
type transitSigner struct {
	v       *Vault
	name    string
	hash    uint32
	version int
}

func (t *transitSigner) Name() string    { return t.name }
func (t *transitSigner) KeyHash() uint32 { return t.hash }

func (t *transitSigner) Sign(msg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := t.v.client.Logical().WriteWithContext(ctx, t.v.trMount+"/sign/"+t.v.trKey, map[string]any{
		"input": base64.StdEncoding.EncodeToString(msg), "key_version": t.version,
	})
	if err != nil {
		t.v.fail(err)
		return nil, fmt.Errorf("vault: transit sign: %w", shortVaultErr(err))
	}
	sig, _ := s.Data["signature"].(string)
	parts := strings.Split(sig, ":")
	if len(parts) != 3 || parts[0] != "vault" {
		return nil, fmt.Errorf("vault: transit sign gave %q", sig)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("vault: transit signature is not ed25519")
	}
	t.v.ok()
	return raw, nil
}

func (v *Vault) ok() {
	v.mu.Lock()
	v.lastErr = nil
	v.mu.Unlock()
}

func (v *Vault) fail(err error) {
	v.mu.Lock()
	v.lastErr = err
	v.mu.Unlock()
}

// Ping checks that Vault answers and the token is valid. A failure is
// "degraded", not unavailable: checks go on with the subject key in memory;
// only checkpoint signing waits for Vault.
func (v *Vault) Ping(ctx context.Context) error {
	if _, err := v.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		v.fail(err)
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeDegraded, Message: "vault unreachable: checkpoint signing paused", Err: shortVaultErr(err)}
	}
	v.ok()
	return nil
}
