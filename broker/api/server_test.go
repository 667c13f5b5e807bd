package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/api"
	"varsel/broker/auth"
	"varsel/broker/client"
	"varsel/broker/postgres"
	"varsel/schema/schematest"
)

var testDB *postgres.DB

func TestMain(m *testing.M) {
	os.Exit(schematest.Main(m, "api_pkg", func(url string) (func(), error) {
		var err error
		testDB, err = postgres.Open(context.Background(), url, postgres.Options{})
		if err != nil {
			return nil, err
		}
		return testDB.Close, nil
	}))
}

// testServer serves a Server with the real verifier on a loopback port. The
// extra routes let a test decode a body or hold a request open.
type testServer struct {
	*api.Server
	url    string
	client *client.Client
	stop   context.CancelFunc
	done   chan error
}

func startServer(t *testing.T, routes func(g *echo.Group)) *testServer {
	t.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("agency-%d", time.Now().UnixNano())
	priv, pub, _ := auth.GenerateKey(auth.AlgEdDSA, "k1")
	keys, _ := auth.ParseJWKS(id, pub)
	if err := testDB.CreateAgency(ctx, &broker.Agency{ID: id, Kind: broker.KindNAVState, Name: "t", Offices: []string{"nav-t"}}, keys, &audit.Entry{
		TS: audit.FormatTime(time.Now()), ActorAgency: "varsel", Actor: "test-operator", Role: "operator",
		Action: "agency.add", Decision: audit.Allow, PolicyVersion: "test"}); err != nil {
		t.Fatal(err)
	}
	signer, _ := client.NewSigner(id, priv)

	s := api.New(api.Config{
		// The replay guard as the broker runs it: a per-replica map (across
		// replicas the audit append refuses a replay; see broker/auth).
		Auth:            &auth.Verifier{Audience: "varsel", Keys: &auth.KeyCache{Registry: testDB}, Replay: &auth.Replay{}},
		Readiness:       map[string]api.ReadinessCheck{"database": testDB.Ping},
		ShutdownTimeout: 10 * time.Second,
	})
	if routes != nil {
		routes(s.V1())
	}
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	ts := &testServer{Server: s, url: "http://" + addr.String(), stop: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(sctx) }()
	ts.client = &client.Client{BaseURL: ts.url, Signer: signer, Employee: client.Employee{Sub: "u1", Role: "caseworker", Office: "nav-t"}}
	t.Cleanup(func() {
		cancel()
		<-ts.done
	})
	return ts
}

type echoBody struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func decodeRoute(g *echo.Group) {
	g.POST("/test-echo", func(c echo.Context) error {
		var v echoBody
		if err := api.Decode(c, &v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	})
}

func assertProblem(t *testing.T, resp *client.Response, status int, code string) {
	t.Helper()
	if resp.Status != status {
		t.Fatalf("status %d, want %d: %s", resp.Status, status, resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p api.Problem
	if err := json.Unmarshal(resp.Body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, resp.Body)
	}
	if p.Status != status || p.Code != code || p.Type != api.ProblemTypeBase+code || p.Title == "" {
		t.Fatalf("problem %+v, want status %d code %q", p, status, code)
	}
}

func TestBodyRules(t *testing.T) {
	ts := startServer(t, decodeRoute)
	ctx := context.Background()

	resp, err := ts.client.Do(ctx, "POST", "/v1/test-echo", []byte(`{"name":"a","count":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || !bytes.Contains(resp.Body, []byte(`"count":2`)) {
		t.Fatalf("valid body: %d %s", resp.Status, resp.Body)
	}

	big := []byte(`{"name":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`)
	resp, _ = ts.client.Do(ctx, "POST", "/v1/test-echo", big)
	assertProblem(t, resp, 413, "too_large")

	for name, body := range map[string]string{
		"malformed":     `{"name":`,
		"unknown field": `{"name":"a","extra":1}`,
		"wrong type":    `{"count":"two"}`,
		"two values":    `{"name":"a"} {"name":"b"}`,
		"empty":         ``,
	} {
		t.Run(name, func(t *testing.T) {
			var b []byte
			if body != "" {
				b = []byte(body)
			}
			resp, err := ts.client.Do(ctx, "POST", "/v1/test-echo", b)
			if err != nil {
				t.Fatal(err)
			}
			assertProblem(t, resp, 400, "malformed")
		})
	}

	// Not JSON: 415, even when correctly signed.
	body := []byte("name=a")
	tok, _ := ts.client.Signer.Token(ts.client.Employee, "POST", "/v1/test-echo", body)
	req, _ := http.NewRequest("POST", ts.url+"/v1/test-echo", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tok)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	assertProblem(t, &client.Response{Status: hr.StatusCode, Header: hr.Header, Body: rb}, 415, "unsupported")

	// No token at all.
	resp, _ = ts.client.DoToken(ctx, "GET", "/v1/whoami", nil, "")
	assertProblem(t, resp, 401, "missing_token")
	// Unknown route.
	resp, _ = ts.client.Do(ctx, "GET", "/v1/nothing-here", nil)
	assertProblem(t, resp, 404, "not_found")
}

func TestOperationalRoutes(t *testing.T) {
	ts := startServer(t, nil)
	wr, err := ts.client.Do(context.Background(), "GET", "/v1/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	var p broker.Principal
	if err := json.Unmarshal(wr.Body, &p); err != nil || wr.Status != 200 || p.Sub != "u1" || p.Office != "nav-t" {
		t.Fatalf("whoami: %d %s", wr.Status, wr.Body)
	}
	for path, want := range map[string]string{
		"/healthz":      `"ok"`,
		"/readyz":       `"database":"ok"`,
		"/openapi.yaml": "openapi: 3.1",
		"/metrics":      "varsel_http_requests_total",
	} {
		resp, err := http.Get(ts.url + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

func TestShutdownFinishesInFlightRequest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	ts := startServer(t, func(g *echo.Group) {
		g.GET("/test-slow", func(c echo.Context) error {
			close(entered)
			<-release // held open until the test has seen the shutdown begin
			return c.JSON(200, map[string]string{"finished": "yes"})
		})
	})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // a failing test must not leave the handler blocked
	type result struct {
		resp *client.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		r, err := ts.client.Do(context.Background(), "GET", "/v1/test-slow", nil)
		got <- result{r, err}
	}()
	// An idle keep-alive connection: the server closes it when shutdown
	// begins (after closing its listener), which the test sees as EOF.
	addr := strings.TrimPrefix(ts.url, "http://")
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	hr, err := http.ReadResponse(br, nil)
	if err != nil || hr.StatusCode != 200 {
		t.Fatalf("healthz on the idle connection: %v %v", err, hr)
	}
	_, _ = io.Copy(io.Discard, hr.Body)
	hr.Body.Close()

	<-entered
	ts.stop() // as SIGTERM does
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after shutdown began: %v, want EOF", err)
	}
	// Shutdown is under way: no new connections, the request still runs.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted during shutdown")
	}
	select {
	case err := <-ts.done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case r := <-got:
		t.Fatalf("the in-flight request ended before it was released: %v %+v", r.err, r.resp)
	default:
	}
	free()
	r := <-got
	if r.err != nil || r.resp.Status != 200 || !strings.Contains(string(r.resp.Body), "yes") {
		t.Fatalf("in-flight request: %v %+v", r.err, r.resp)
	}
	if err := <-ts.done; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	ts.done <- nil // for the cleanup
	if _, err := http.Get(ts.url + "/healthz"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}
