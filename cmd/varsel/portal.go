package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"varsel/broker/client"
	"varsel/broker/keys"
	"varsel/broker/portal"
)

const portalUsage = `

The portal is the web application an agency runs for its own staff: staff
sign in with the agency's OpenID provider, and the portal signs each broker
request with the agency's key. Production runs one portal per agency (one
--agency); the development portal of make run serves the demo agencies
behind one login, choosing the agency from the ID token's agency claim.

Example (the development setup of make run):

  varsel portal --broker-url http://127.0.0.1:8080 \
    --oidc-issuer http://127.0.0.1:8091 --oidc-client-id varsel-portal \
    --agency nav-stat=.data/demo/nav-stat.jwk --agency oslo-pd=.data/demo/oslo-pd.jwk

The client secret comes from VARSEL_OIDC_CLIENT_SECRET (or the flag).
`

// defaultGroups maps the provider's groups to Varsel roles.
const defaultGroups = "varsel-caseworkers=caseworker,varsel-reception=reception,varsel-coordinators=security-coordinator," +
	"varsel-police-liaisons=police-liaison,varsel-health-workers=health-worker,varsel-privacy-officers=privacy-officer"

func runPortal(ctx context.Context, args []string, o cmdIO) error {
	fs := flagSet("portal", "portal [flags]", o)
	base := fs.Usage
	fs.Usage = func() { base(); fmt.Fprint(o.stdout, portalUsage) }
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve the portal on")
	public := fs.String("public-url", "", "the URL staff use (default http://LISTEN); https unless on loopback")
	brokerURL := fs.String("broker-url", "http://127.0.0.1:8080", "the broker's URL")
	brokerID := fs.String("broker-id", "varsel", "the broker's id (the tokens' aud)")
	var agencies stringList
	fs.Var(&agencies, "agency", "ID=PRIVATE.jwk, or ID=vault:MOUNT/keys/NAME#KID (a Vault Transit key, VAULT_ADDR and VAULT_TOKEN or AppRole from the environment): an agency and its signing key (repeatable; one in production)")
	issuer := fs.String("oidc-issuer", "", "the staff login's OpenID provider (issuer URL)")
	clientID := fs.String("oidc-client-id", "varsel-portal", "the portal's client id at the provider")
	clientSecret := fs.String("oidc-client-secret", "", "the portal's client secret (secret: prefer VARSEL_OIDC_CLIENT_SECRET)")
	groups := fs.String("groups", defaultGroups, "GROUP=ROLE,...: which provider group gives which role")
	groupsClaim := fs.String("groups-claim", "groups", "the ID-token claim holding the groups")
	officeClaim := fs.String("office-claim", "office", "the ID-token claim holding the office id")
	agencyClaim := fs.String("agency-claim", "agency", "the ID-token claim naming the agency (when several are served)")
	keyFile := fs.String("session-key-file", ".data/portal/session.key", "32-byte key that seals session cookies (made on first start, mode 0600)")
	idle := fs.Duration("idle-timeout", 30*time.Minute, "a session unused this long ends")
	maxSession := fs.Duration("max-session", 10*time.Hour, "a session this old ends")
	stateFile := fs.String("state-file", ".data/portal/state.json", "the portal's own state: the newest audit checkpoint it verified")
	cpMaxAge := fs.Duration("checkpoint-max-age", 35*time.Second, "how old an entry no signed checkpoint covers may be (the broker's --checkpoint-interval and a margin)")
	testSubjects := fs.Bool("test-subjects", false, "accept synthetic national ids (development)")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if *issuer == "" {
		return errors.New("portal: --oidc-issuer is required")
	}
	if len(agencies) == 0 {
		return errors.New("portal: at least one --agency ID=PRIVATE.jwk is required")
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg := portal.Config{PublicURL: *public, BrokerURL: *brokerURL, BrokerID: *brokerID,
		OIDC:        portal.OIDC{Issuer: *issuer, ClientID: *clientID, ClientSecret: *clientSecret},
		Claims:      portal.Claims{Groups: map[string]string{}, GroupsClaim: *groupsClaim, OfficeClaim: *officeClaim, AgencyClaim: *agencyClaim},
		IdleTimeout: *idle, MaxSession: *maxSession, TestSubjects: *testSubjects, Logger: log,
		StateFile: *stateFile, CheckpointMaxAge: *cpMaxAge}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + *listen
	}
	for _, pair := range strings.Split(*groups, ",") {
		g, role, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || g == "" || role == "" {
			return fmt.Errorf("portal: --groups %q: want GROUP=ROLE,...", pair)
		}
		cfg.Claims.Groups[g] = role
	}
	var vault *keys.Vault
	defer func() {
		if vault != nil {
			vault.Close()
		}
	}()
	for _, a := range agencies {
		id, where, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("portal: --agency %q: want ID=PRIVATE.jwk or ID=vault:MOUNT/keys/NAME#KID", a)
		}
		var s *client.Signer
		if spec, ok := strings.CutPrefix(where, "vault:"); ok {
			path, kid, ok := strings.Cut(spec, "#")
			if !ok || kid == "" {
				return fmt.Errorf("portal: --agency %s: want vault:MOUNT/keys/NAME#KID", id)
			}
			if vault == nil {
				if vault, err = keys.OpenVault(ctx, keys.VaultConfigFromEnv(o.getenv)); err != nil {
					return fmt.Errorf("portal: %w", err)
				}
			}
			op, err := vault.TransitAgencySigner(ctx, path, kid)
			if err != nil {
				return fmt.Errorf("portal: agency %s: %w", id, err)
			}
			if s, err = client.NewOpaqueSigner(id, op); err != nil {
				return fmt.Errorf("portal: agency %s: %w", id, err)
			}
		} else if s, err = client.LoadSigner(id, where); err != nil {
			return fmt.Errorf("portal: agency %s: %w", id, err)
		}
		cfg.Agencies = append(cfg.Agencies, portal.Agency{ID: id, Signer: s})
	}
	if cfg.SessionKey, err = sessionKey(*keyFile); err != nil {
		return err
	}
	p, err := portal.New(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("portal: listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 32 << 10}
	log.Info("varsel portal serving", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "agencies", len(cfg.Agencies))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("portal: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// sessionKey reads the cookie-sealing key, making it on first start.
func sessionKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := writeExclusive(path, b, 0o600); err != nil {
			return nil, err
		}
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("portal: session key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("portal: session key %s: want 32 bytes, have %d", path, len(b))
	}
	return b, nil
}
