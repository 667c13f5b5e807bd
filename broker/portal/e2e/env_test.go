package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/broker"
	"varsel/broker/app"
	"varsel/broker/auth"
	"varsel/broker/client"
	"varsel/broker/portal"
	"varsel/broker/portal/oidctest"
	"varsel/schema/schematest"
)

// syncBuffer is a log sink the servers write to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is everything a browser test talks to: Postgres, the broker, the dev
// OpenID provider and the portal, all on loopback.
type env struct {
	dbURL        string
	brokerURL    string
	portalURL    string
	provider     *oidctest.Provider
	clientSecret string
	portalLog    *syncBuffer
	brokerLog    *syncBuffer
	privateKeys  [][]byte // the agencies' private JWKs, never to be logged
	signers      map[string]*client.Signer
	app          *app.App // the broker, for its exported triggers (Checkpointer.Checkpoint)
}

// The demo agencies of deploy/demo.sh, as the dev provider's users name them.
var demoAgencies = []struct {
	id      string
	kind    broker.AgencyKind
	name    string
	offices []string
}{
	{"nav-stat", "nav-state", "NAV (statlig del)", []string{"nav-grorud", "nav-arstad"}},
	{"oslo-kommune", "nav-municipal", "Oslo kommune", []string{"nav-grorud", "nav-arstad"}},
	{"oslo-pd", "police", "Oslo politidistrikt", []string{"oslo-pd-sentrum"}},
	{"ous", "health", "Oslo universitetssykehus", []string{"ous-psykiatri"}},
	{"varsel-ops", "broker", "Varsel operatørens revisorer", nil},
}

func startEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{portalLog: &syncBuffer{}, brokerLog: &syncBuffer{}, signers: map[string]*client.Signer{}}

	dbURL, err := schematest.NewDatabase(ctx, "portal_e2e", false)
	if err != nil {
		t.Fatal(err)
	}
	e.dbURL = dbURL
	t.Cleanup(func() { _ = schematest.DropDatabase(context.Background(), dbURL) })

	var agencies []portal.Agency
	for _, a := range demoAgencies {
		s, priv := registerAgency(t, dbURL, a.id, a.kind, a.name, a.offices)
		e.privateKeys = append(e.privateKeys, priv)
		e.signers[a.id] = s
		agencies = append(agencies, portal.Agency{ID: a.id, Name: a.name, Signer: s})
	}

	// The broker.
	b := app.New(app.Config{
		DatabaseURL: dbURL, DatabaseRole: "varsel_app", Listen: "127.0.0.1:0", BrokerID: "varsel",
		Keys: "file:" + t.TempDir(), TestSubjects: true, CheckFloor: 0,
		KeyReloadInterval: time.Hour, CheckpointInterval: time.Hour, ReviewSweepInterval: time.Hour,
		DutyDesk: broker.Contact{Unit: "Varsel duty desk"},
	}, slog.New(slog.NewJSONHandler(e.brokerLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	bctx, bcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		bcancel()
		t.Fatalf("broker did not start: %v", err)
	case <-time.After(30 * time.Second):
		bcancel()
		t.Fatal("broker did not start within 30 s")
	}
	t.Cleanup(func() {
		bcancel()
		if err := <-done; err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	})
	e.brokerURL = "http://" + b.Addr().String()
	e.app = b

	// The portal's listener first, so its URL is known to the provider.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.portalURL = "http://" + ln.Addr().String()

	e.clientSecret = "e2e-" + randomHex(t)
	e.provider = oidctest.Start(t, oidctest.Config{Clients: []oidctest.Client{{
		ID: "varsel-portal-e2e", Secret: e.clientSecret, Name: "Varsel (e2e)",
		RedirectURIs:           []string{e.portalURL + "/auth/callback"},
		PostLogoutRedirectURIs: []string{e.portalURL + "/"},
	}}})

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	p, err := portal.New(ctx, portal.Config{
		PublicURL: e.portalURL, BrokerURL: e.brokerURL, BrokerID: "varsel", Agencies: agencies,
		OIDC: portal.OIDC{Issuer: e.provider.Issuer, ClientID: "varsel-portal-e2e", ClientSecret: e.clientSecret},
		Claims: portal.Claims{Groups: map[string]string{
			"varsel-caseworkers":      broker.RoleCaseworker,
			"varsel-coordinators":     broker.RoleSecurityCoordinator,
			"varsel-police-liaisons":  broker.RolePoliceLiaison,
			"varsel-health-workers":   broker.RoleHealthWorker,
			"varsel-privacy-officers": broker.RolePrivacyOfficer,
		}},
		SessionKey:   key,
		TestSubjects: true,
		// The checkpoint last seen, for this run only: a state file shared
		// between runs would hold another run's broker key.
		StateFile: filepath.Join(t.TempDir(), "state.json"),
		Logger:    slog.New(slog.NewJSONHandler(e.portalLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.NewJSONHandler(e.portalLog, nil).WithAttrs([]slog.Attr{slog.String("subsystem", "http")}), slog.LevelError)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // the live inbox's event streams end with the browser
		_ = srv.Close()
	})
	return e
}

// providerLog is the dev provider's request log.
func (e *env) providerLog(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(e.provider.Dir, "oidc.log"))
	if err != nil {
		t.Errorf("the provider's log: %v", err)
	}
	return string(b)
}

// call is a signed broker request as emp of the agency.
func (e *env) call(t *testing.T, agency string, emp client.Employee, method, path string, body, out any) {
	t.Helper()
	c := &client.Client{BaseURL: e.brokerURL, Signer: e.signers[agency], Employee: emp}
	resp, err := c.JSON(context.Background(), method, path, body, out)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("%s %s as %s: status %d: %v", method, path, agency, status, err)
	}
}

// checkpoint has the broker sign a checkpoint of the log now (the trigger
// its background signer uses; the test's interval is an hour), and returns
// the newest count.
func (e *env) checkpoint(t *testing.T) int {
	t.Helper()
	if _, err := e.app.Checkpointer.Checkpoint(context.Background()); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	return e.count(t, `SELECT coalesce(max(count), 0) FROM audit_checkpoints`)
}

// registerAgency puts an agency with a fresh ES256 key straight in the
// registry and returns its signer and private JWK.
func registerAgency(t *testing.T, dbURL, id string, kind broker.AgencyKind, name string, offices []string) (*client.Signer, []byte) {
	t.Helper()
	ctx := context.Background()
	priv, pub, err := auth.GenerateKey(auth.AlgES256, id+"-1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(pub, &set); err != nil {
		t.Fatal(err)
	}
	if offices == nil {
		offices = []string{}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO agencies (id, kind, name, offices) VALUES ($1, $2, $3, $4)`, id, string(kind), name, offices); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO agency_keys (agency_id, kid, jwk) VALUES ($1, $2, $3)`, id, id+"-1", string(set.Keys[0])); err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSigner(id, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// count runs a counting query on the test's database.
func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	const hex = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

// browserPath is the Chromium to drive: VARSEL_CHROMIUM, or what
// deploy/browser.sh finds or installs.
func browserPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VARSEL_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			unavailable(t, "VARSEL_CHROMIUM: "+err.Error())
		}
		return p
	}
	return script(t, "chromium")
}

// axeSource is axe-core's axe.min.js, from deploy/browser.sh.
func axeSource(t *testing.T) string {
	b, err := os.ReadFile(script(t, "axe"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func script(t *testing.T, what string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(oidctest.RepoRoot(), "deploy", "browser.sh"), what)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		unavailable(t, "deploy/browser.sh "+what+": "+err.Error()+": "+strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out))
}

// unavailable fails the test when the browser or axe-core cannot be had,
// so that CI never passes without running it; -short skips instead.
func unavailable(t *testing.T, msg string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the portal's browser tests need a browser and axe-core: " + msg)
	}
	t.Fatal("the portal's browser tests need a browser and axe-core (run deploy/browser.sh, or go test -short to skip them): " + msg)
}
