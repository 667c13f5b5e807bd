package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// vaultServer is a Vault with file storage on loopback: unlike a -dev
// server it keeps its keys across a restart (and comes back sealed, as a
// production Vault does), so the broker's Transit key survives the fault.
type vaultServer struct {
	binary, dir string
	port        int
	unsealKey   string
	rootToken   string
	cmd         *exec.Cmd
	exited      chan struct{}
}

func (v *vaultServer) addr() string { return fmt.Sprintf("http://127.0.0.1:%d", v.port) }

func (v *vaultServer) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(v.dir, "data"), 0o700); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address = "127.0.0.1:%d"
  tls_disable = 1
}
disable_mlock = true
api_addr = %q
ui = false
`, filepath.Join(v.dir, "data"), v.port, v.addr())
	cfgPath := filepath.Join(v.dir, "vault.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(v.dir, "vault.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(v.binary, "server", "-config="+cfgPath)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start vault: %w", err)
	}
	v.cmd, v.exited = cmd, make(chan struct{})
	exited := v.exited
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	// Wait for it to answer at all (501 uninitialised, 503 sealed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := v.call(ctx, "GET", "/v1/sys/health", nil, nil)
		if code != 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault did not start within 30 s (see %s)", filepath.Join(v.dir, "vault.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v.unsealKey == "" {
		var init struct {
			Keys      []string `json:"keys_base64"`
			RootToken string   `json:"root_token"`
		}
		if code, err := v.call(ctx, "PUT", "/v1/sys/init", map[string]any{"secret_shares": 1, "secret_threshold": 1}, &init); code != 200 || err != nil || len(init.Keys) != 1 {
			return fmt.Errorf("vault init: %d %v", code, err)
		}
		v.unsealKey, v.rootToken = init.Keys[0], init.RootToken
	}
	if code, err := v.call(ctx, "PUT", "/v1/sys/unseal", map[string]any{"key": v.unsealKey}, nil); code != 200 || err != nil {
		return fmt.Errorf("vault unseal: %d %v", code, err)
	}
	for {
		if code, _ := v.call(ctx, "GET", "/v1/sys/health", nil, nil); code == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault not active within 30 s of unsealing")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (v *vaultServer) stop() {
	if v.cmd == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.exited:
	case <-time.After(20 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.exited
	}
	v.cmd = nil
}

// brokerToken runs deploy/vault/setup.sh (engines, Transit key, subject
// key, least-privilege policy) and returns the broker's token.
func (v *vaultServer) brokerToken(repo string) (string, error) {
	cmd := exec.Command(filepath.Join(repo, "deploy", "vault", "setup.sh"), "--period", "1h")
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.addr(), "VAULT_TOKEN="+v.rootToken)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("deploy/vault/setup.sh: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (v *vaultServer) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body bytes.Buffer
	if in != nil {
		_ = json.NewEncoder(&body).Encode(in)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, v.addr()+path, &body)
	if err != nil {
		return 0, err
	}
	if v.rootToken != "" {
		req.Header.Set("X-Vault-Token", v.rootToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}
