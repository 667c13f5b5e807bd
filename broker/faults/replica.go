package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// replica is one `varsel serve` process on a fixed loopback port, so that
// a restarted replica comes back at the same address, as behind a
// Kubernetes Service.
type replica struct {
	i       int
	binary  string
	port    int
	args    []string // serve flags shared by every replica
	env     []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (r *replica) url() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }

// start runs the process (with extra flags for this start only) and waits
// until /readyz answers 200.
func (r *replica) start(ctx context.Context, extra ...string) error {
	args := append([]string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(r.port)}, r.args...)
	args = append(args, extra...)
	cmd := exec.Command(r.binary, args...)
	cmd.Env = append(os.Environ(), r.env...)
	f, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== %s start %v\n", time.Now().UTC().Format(time.RFC3339Nano), extra)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start replica %d: %w", r.i, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	return r.waitReady(ctx, 60*time.Second, exited)
}

// waitReady polls /readyz until it answers 200 (even "degraded").
func (r *replica) waitReady(ctx context.Context, within time.Duration, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := hc.Get(r.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("replica %d exited while starting (see %s)", r.i, r.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %d not ready within %v (see %s)", r.i, within, r.logPath)
		}
	}
}

// signal sends sig and, unless it is SIGKILL's immediate end, waits for
// the process to exit (at most within).
func (r *replica) signal(sig syscall.Signal, within time.Duration) error {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("replica %d did not exit within %v of %v: killed", r.i, within, sig)
	}
}

func (r *replica) stop() { _ = r.signal(syscall.SIGTERM, 30*time.Second) }

// keyDir is where file keys shared by every replica live.
func keyDir(base string) string { return filepath.Join(base, "keys") }
