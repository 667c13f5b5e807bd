package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/labstack/echo/v4"

	"varsel/broker/auth"
)

// The stack reference: how much CPU a request costs in an HTTP server
// built like the broker (echo on net/http with the broker's server
// timeouts, HTTP/1.1 keep-alive, the same requests from the same
// generator) that does none of the broker's work. It answers at once
// ("echo alone"), or after the one thing no check can do without, the
// token's signature verified by the broker's own code ("echo and the
// signature"); each way twice: as fast as it answers (as the broker is
// driven in its window) and paced to the rate of the broker's paced run
// at comparedShare of its window's rate (the same rate, so the same
// share of idle wake-ups). What the broker spends per check beyond echo
// and the signature is what Varsel adds: its middleware (request id,
// panic recovery, metrics, the body read whole, the query and media type
// checked), the token's header and claims parsed strictly, the key found
// by issuer and key id, the replay check, the flag lookup, the policy,
// the answer encoded (larger for the tenth of checks with precautions),
// the audit entry and its group commit, the checkpointer.

// StackReference is the stack reference's runs.
type StackReference struct {
	Bare        *StackRun `json:"echo"`               // as fast as it answers
	Signed      *StackRun `json:"echo_and_signature"` // as fast as it answers
	PacedBare   *StackRun `json:"echo_paced,omitempty"`
	PacedSigned *StackRun `json:"echo_and_signature_paced,omitempty"`
}

// StackRun is one run of the stack reference.
type StackRun struct {
	Verify     bool    `json:"verify_signature"`
	Paced      float64 `json:"paced_requests_per_second,omitempty"` // 0: as fast as it answers
	FloorRatio float64 `json:"server_cpu_per_request_over_p256_verify"`
	Window
}

// stackAnswer is what the reference answers: the size and shape of the
// broker's answer to a check of a person without flags.
var stackAnswer = []byte(`{"check_id":"chk-10654321","result":"clear","flags":[],"emergency":false,` +
	`"policy_version":"3f0c5e1d2b7a9c8e4f6d1a0b2c3d4e5f","audit":{"seq":10654321,` +
	`"hash":"9b1d0c6e3f2a4b5c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c","leaf_index":10654320,"tree_size":10654321}}`)

// stackKey is an agency's public key as the reference server is given it.
type stackKey struct {
	KID string          `json:"kid"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

// stackPublicKey is a parsed key and the one algorithm it signs with.
type stackPublicKey struct {
	jwk *jose.JSONWebKey
	alg string
}

// StackServer is the reference server's handler set: POST /v1/checks
// reads the body and, when verify is set, checks the bearer token's
// signature with the key its kid names (401 when it fails), then answers
// stackAnswer.
func StackServer(keys []byte, verify bool) (http.Handler, error) {
	var ks []stackKey
	if err := json.Unmarshal(keys, &ks); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	byKID := map[string]stackPublicKey{}
	for _, k := range ks {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k.JWK); err != nil {
			return nil, fmt.Errorf("key %q: %w", k.KID, err)
		}
		byKID[k.KID] = stackPublicKey{&jwk, k.Alg}
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/v1/checks", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, io.LimitReader(c.Request().Body, 1<<16)); err != nil {
			return c.NoContent(http.StatusBadRequest)
		}
		if verify {
			tok, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			if !ok || !stackVerify(tok, byKID) {
				return c.NoContent(http.StatusUnauthorized)
			}
		}
		return c.JSONBlob(http.StatusOK, stackAnswer)
	})
	return e, nil
}

// stackVerify checks a compact JWS's signature: the kid from its header,
// then auth.SignatureValid over the signing input.
func stackVerify(tok string, keys map[string]stackPublicKey) bool {
	h, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return false
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &hdr) != nil {
		return false
	}
	key, ok := keys[hdr.Kid]
	if !ok || key.alg != hdr.Alg {
		return false
	}
	return auth.SignatureValid(key.jwk, hdr.Alg, tok[:len(h)+1+len(payload)], sig)
}

// ServeStack runs the reference server on listen until ctx ends, printing
// "listening ADDR" on out once it accepts connections.
func ServeStack(ctx context.Context, listen, keysFile string, verify bool, out io.Writer) error {
	keys, err := os.ReadFile(keysFile)
	if err != nil {
		return err
	}
	h, err := StackServer(keys, verify)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	// The broker's server settings (broker/api), so that the reference
	// pays for what they cost.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 90 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(out, "listening %s\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stackReference runs the reference server (self, a varsel-bench binary,
// as "varsel-bench stack-server", a process of its own) without and with
// the signature, each driven by the same generator and connections as the
// broker: as fast as it answers, then paced to the broker's paced run at
// comparedShare of its window's rate (when there was one), so that each
// can be set against the broker driven the same way.
func stackReference(ctx context.Context, cfg Config, w *world, res *Result, logf func(string, ...any)) error {
	dir, err := os.MkdirTemp("", "varsel-bench-stack")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keysFile := filepath.Join(dir, "keys.json")
	data, err := json.Marshal(w.keys)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keysFile, data, 0o600); err != nil {
		return err
	}
	res.Stack = &StackReference{}
	type plan struct {
		verify bool
		rate   float64 // 0: as fast as it answers
		into   **StackRun
	}
	runs := []plan{{false, 0, &res.Stack.Bare}, {true, 0, &res.Stack.Signed}}
	if p := res.pacedAt(comparedShare); p != nil {
		runs = append(runs, plan{false, p.Paced, &res.Stack.PacedBare}, plan{true, p.Paced, &res.Stack.PacedSigned})
	}
	for _, r := range runs {
		run, err := stackRun(ctx, cfg, w, keysFile, r.verify, r.rate)
		if err != nil {
			return err
		}
		if res.Floor.P256VerifyUs > 0 {
			run.FloorRatio = run.CPU.ServerMs * 1000 / res.Floor.P256VerifyUs
		}
		*r.into = run
		name := "echo alone"
		if r.verify {
			name = "echo and the signature"
		}
		how := "as fast as it answers"
		if r.rate > 0 {
			how = fmt.Sprintf("paced to %.0f/s", r.rate)
		}
		logf("stack reference (%s, %s): %.0f requests/s, p99 %.2f ms, errors %s; CPU ms per request: generator %.3f, server %.3f (%.2f × one P-256 verification)",
			name, how, run.RPS, run.Latency["p99"], errorsText(run.Errors), run.CPU.GeneratorMs, run.CPU.ServerMs, run.FloorRatio)
	}
	return nil
}

func stackRun(ctx context.Context, cfg Config, w *world, keysFile string, verify bool, rate float64) (*StackRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := []string{"stack-server", "--listen", "127.0.0.1:0", "--keys", keysFile}
	if verify {
		args = append(args, "--verify")
	}
	cmd := exec.CommandContext(ctx, cfg.Self, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the stack reference: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	type started struct {
		line string
		err  error
	}
	first := make(chan started, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		first <- started{line, err}
	}()
	var addr string
	select {
	case st := <-first:
		var ok bool
		if addr, ok = strings.CutPrefix(strings.TrimSpace(st.line), "listening "); st.err != nil || !ok {
			return nil, fmt.Errorf("the stack reference did not start: %q %v", st.line, st.err)
		}
	case <-time.After(60 * time.Second):
		return nil, errors.New("the stack reference did not start within 60 s")
	}

	g := newGenerator(addr, cfg.Connections)
	g.okMarker = []byte(`"result":"clear"`)
	defer g.close()
	reqs, err := presign(ctx, w, addr, 10_000, cfg.FlaggedShare, 3)
	if err != nil {
		return nil, err
	}
	pool := &requestPool{reqs: reqs, cycle: true}
	if wp := g.run(ctx, pool, time.Second, nil); wp.OK == 0 {
		return nil, fmt.Errorf("stack reference: no request answered in the warm-up (%s)", errorsText(wp.Errors))
	}
	meter := cpuMeter{serverPID: cmd.Process.Pid}
	c0 := meter.read()
	g.rate = rate
	ph := g.run(ctx, pool, cfg.StackDuration, nil)
	c1 := meter.read()
	return &StackRun{Verify: verify, Paced: rate, Window: window(ph, share(c0, c1, ph.Requests, false))}, nil
}
