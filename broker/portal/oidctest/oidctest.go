// Package oidctest starts the dev OpenID provider (deploy/oidc, a real
// oidc-provider on loopback) for tests: each Start gets its own provider, with
// the clients and users the test gives, on a free port, stopped when the test
// ends. It is for tests only; see deploy/oidc/README.md.
package oidctest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// DemoPassword is the password of every demo user of the default config.
// A public, dev-only value.
const DemoPassword = "varsel-demo"

// Client is a registered OpenID client (a relying party such as the portal).
// It authenticates at the token endpoint with client_secret_basic, uses the
// authorization code flow with PKCE (S256) and may ask for the scopes openid,
// profile and varsel.
type Client struct {
	ID                     string   `json:"client_id"`
	Secret                 string   `json:"client_secret"`
	Name                   string   `json:"client_name,omitempty"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
}

// User is a member of staff who can sign in. The ID token (scope varsel)
// carries Groups as "groups", Agency as "agency" and Office, when not empty,
// as "office"; scope profile carries Name as "name". Sub defaults to
// Username.
type User struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	Sub      string   `json:"sub,omitempty"`
	Name     string   `json:"name,omitempty"`
	Agency   string   `json:"agency"`
	Office   string   `json:"office,omitempty"`
	Groups   []string `json:"groups"`
}

// Config is what a provider knows. A nil Clients or Users takes the ones of
// deploy/oidc/default-config.json (the portal of `make run` on
// 127.0.0.1:8090; the demo staff, password DemoPassword).
type Config struct {
	Clients []Client
	Users   []User
}

// Provider is a running dev provider.
type Provider struct {
	// Issuer is the issuer URL, http://127.0.0.1:PORT, for oidc.NewProvider.
	Issuer string
	// Dir holds its config.json, jwks.json and oidc.log.
	Dir string
}

// RepoRoot is the repository's top directory, found from this file's path.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

type fileConfig struct {
	Clients []Client `json:"clients"`
	Users   []User   `json:"users"`
}

// Defaults returns the clients and users of deploy/oidc/default-config.json.
func Defaults() (Config, error) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "deploy", "oidc", "default-config.json"))
	if err != nil {
		return Config{}, err
	}
	var fc fileConfig
	if err := json.Unmarshal(b, &fc); err != nil {
		return Config{}, fmt.Errorf("deploy/oidc/default-config.json: %w", err)
	}
	return Config{Clients: fc.Clients, Users: fc.Users}, nil
}

// Start starts a provider with cfg in a fresh temporary directory, with
// deploy/oidc/oidc.sh (which installs Node.js and the npm packages when they
// are missing and returns once discovery answers), and stops it when the
// test ends. It fails the test when the provider does not start.
func Start(t testing.TB, cfg Config) *Provider {
	t.Helper()
	if cfg.Clients == nil || cfg.Users == nil {
		def, err := Defaults()
		if err != nil {
			t.Fatalf("oidctest: %v", err)
		}
		if cfg.Clients == nil {
			cfg.Clients = def.Clients
		}
		if cfg.Users == nil {
			cfg.Users = def.Users
		}
	}
	fc := fileConfig{Clients: cfg.Clients, Users: cfg.Users}
	for i := range fc.Clients {
		if fc.Clients[i].PostLogoutRedirectURIs == nil {
			fc.Clients[i].PostLogoutRedirectURIs = []string{}
		}
	}
	for i := range fc.Users {
		if fc.Users[i].Groups == nil {
			fc.Users[i].Groups = []string{}
		}
	}
	b, err := json.MarshalIndent(fc, "", "  ")
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatalf("oidctest: %v", err)
	}

	p := &Provider{Dir: dir}
	script := filepath.Join(RepoRoot(), "deploy", "oidc", "oidc.sh")
	out, err := p.run(script, "start")
	if err != nil {
		t.Fatalf("oidctest: start the dev OpenID provider: %v\n%s", err, p.logTail())
	}
	p.Issuer = strings.TrimSpace(out)
	// Registered after t.TempDir, so it runs before the directory goes.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("oidctest: %s", p.logTail())
		}
		if _, err := p.run(script, "stop"); err != nil {
			t.Errorf("oidctest: stop the dev OpenID provider: %v", err)
		}
	})
	return p
}

// run runs oidc.sh with a subcommand on p's directory and returns its
// standard output; its standard error is in the error.
func (p *Provider) run(script, sub string) (string, error) {
	cmd := exec.Command(script, sub, p.Dir)
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		// The test's own config and port, never a developer's settings.
		if strings.HasPrefix(kv, "VARSEL_OIDC_") {
			continue
		}
		env = append(env, kv)
	}
	// The provider stops by itself should this process die without cleanup.
	cmd.Env = append(env, "VARSEL_OIDC_WATCH_PID="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", script, sub, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// logTail returns the end of the provider's log, for a failing test.
func (p *Provider) logTail() string {
	b, err := os.ReadFile(filepath.Join(p.Dir, "oidc.log"))
	if err != nil {
		return "no oidc.log"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "oidc.log:\n" + string(b)
}
