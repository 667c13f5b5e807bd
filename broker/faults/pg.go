package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgNode is one PostgreSQL server of the pair: a primary or a streaming
// standby, run as the "postgres" system user when we are root.
type pgNode struct {
	name   string // "pg1", "pg2": the application_name it streams as
	bin    string // /usr/lib/postgresql/N/bin
	dir    string // its data directory
	run    string // its socket directory
	port   int
	owner  string // "postgres" as root, else "" (ourselves)
	walDir string // where its WAL lives (a small tmpfs when walFS is set)
	walFS  bool   // walDir is a tmpfs mounted for the WAL-full fault
}

// pgBin finds Debian's PostgreSQL server binaries (the newest version).
func pgBin() (string, error) {
	ds, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(ds, func(i, j int) bool { return versionOf(ds[i]) < versionOf(ds[j]) })
	for i := len(ds) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(ds[i], "pg_basebackup")); err == nil {
			return ds[i], nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server under /usr/lib/postgresql/*/bin: run deploy/pg.sh start once (it installs Debian's postgresql)")
}

func versionOf(d string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
	return n
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (n *pgNode) cmd(name string, args ...string) *exec.Cmd {
	p := filepath.Join(n.bin, name)
	if n.owner != "" {
		return exec.Command("runuser", append([]string{"-u", n.owner, "--", p}, args...)...)
	}
	return exec.Command(p, args...)
}

func (n *pgNode) runCmd(name string, args ...string) error {
	out, err := n.cmd(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// chown gives paths to the cluster's owner.
func (n *pgNode) chown(paths ...string) error {
	if n.owner == "" {
		return nil
	}
	u, err := user.Lookup(n.owner)
	if err != nil {
		return fmt.Errorf("user %s: %w", n.owner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// url is a single-host URL of this node.
func (n *pgNode) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", n.port, db)
}

// settings both nodes share; the primary adds synchronous replication.
// 1 MB WAL segments and a small max_wal_size keep the WAL volume small, so
// the WAL-full fault fills it in seconds.
const commonSettings = `
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 64MB
wal_level = replica
max_wal_senders = 5
hot_standby = on
min_wal_size = 2MB
max_wal_size = 8MB
fsync = on
synchronous_commit = on
wal_sender_timeout = 5s
wal_receiver_timeout = 5s
`

// initPrimary creates the primary's cluster; with a tmpfs it mounts one of
// walSize MB for its WAL.
func (n *pgNode) initPrimary(walSizeMB int, tmpfs bool) error {
	for _, d := range []string{n.dir, n.run, n.walDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if tmpfs {
		opts := fmt.Sprintf("size=%dm,mode=0700", walSizeMB)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "varsel-faults-wal", n.walDir).CombinedOutput(); err == nil {
			n.walFS = true
		} else {
			fmt.Fprintf(os.Stderr, "faults: no tmpfs for the WAL (%v: %s); the WAL-full fault is skipped\n", err, strings.TrimSpace(string(out)))
		}
	}
	if err := n.chown(n.dir, n.run, n.walDir); err != nil {
		return err
	}
	if err := n.runCmd("initdb", "-D", n.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
		"--waldir="+n.walDir, "--wal-segsize=1"); err != nil {
		return err
	}
	conf := commonSettings + fmt.Sprintf("synchronous_standby_names = 'pg2'\nport = %d\nunix_socket_directories = '%s'\n", n.port, n.run)
	return appendFile(filepath.Join(n.dir, "postgresql.conf"), conf)
}

// initStandby copies the primary with pg_basebackup and makes this node its
// streaming standby.
func (n *pgNode) initStandby(primary *pgNode) error {
	for _, d := range []string{n.run} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(n.dir), 0o755); err != nil {
		return err
	}
	if err := n.chown(n.run); err != nil {
		return err
	}
	if err := n.runCmd("pg_basebackup", "-D", n.dir, "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port),
		"-U", "postgres", "-X", "stream", "-c", "fast"); err != nil {
		return err
	}
	// postgresql.auto.conf is read after postgresql.conf: the standby has
	// no synchronous standby of its own (once promoted it commits alone).
	auto := fmt.Sprintf("synchronous_standby_names = ''\nport = %d\nunix_socket_directories = '%s'\n"+
		"primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'\n", n.port, n.run, primary.port, n.name)
	if err := appendFile(filepath.Join(n.dir, "postgresql.auto.conf"), auto); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "standby.signal"), nil, 0o600); err != nil {
		return err
	}
	return n.chown(filepath.Join(n.dir, "postgresql.auto.conf"), filepath.Join(n.dir, "standby.signal"))
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (n *pgNode) start() error {
	return n.runCmd("pg_ctl", "-D", n.dir, "-l", filepath.Join(filepath.Dir(n.dir), n.name+".log"), "-w", "-t", "60", "start")
}

func (n *pgNode) stop() {
	_ = n.runCmd("pg_ctl", "-D", n.dir, "-m", "fast", "-w", "-t", "30", "stop")
}

func (n *pgNode) promote() error {
	return n.runCmd("pg_ctl", "-D", n.dir, "-w", "-t", "60", "promote")
}

// running reports whether the postmaster runs.
func (n *pgNode) running() bool {
	pid, err := n.postmaster()
	return err == nil && syscall.Kill(pid, 0) == nil
}

// postmaster is the pid in postmaster.pid.
func (n *pgNode) postmaster() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
}

// processes are the postmaster and its children.
func (n *pgNode) processes() ([]int, error) {
	pm, err := n.postmaster()
	if err != nil {
		return nil, err
	}
	pids := []int{pm}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pm) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// signal sends sig to the postmaster and every child.
func (n *pgNode) signal(sig syscall.Signal) error {
	pids, err := n.processes()
	if err != nil {
		return err
	}
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
	return nil
}

// kill is kill -9 of the whole server, then waits until it is gone.
func (n *pgNode) kill() error {
	pids, err := n.processes()
	if err != nil {
		return err
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for syscall.Kill(p, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // a killed process is reaped by its parent in its own time
		}
	}
	return nil
}

// query runs one statement on this node alone.
func (n *pgNode) queryRow(ctx context.Context, db, q string, dst ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.url(db))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.QueryRow(ctx, q).Scan(dst...)
}

// waitSync waits until standby streams to n as its synchronous standby.
func (n *pgNode) waitSync(ctx context.Context, standby string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var state string
		err := n.queryRow(ctx, "postgres", "SELECT coalesce(max(sync_state), '') FROM pg_stat_replication WHERE application_name = '"+standby+"'", &state)
		if err == nil && state == "sync" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not a synchronous standby of %s after %v (state %q, %v)", standby, n.name, within, state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPrimary waits until n accepts writes.
func (n *pgNode) waitPrimary(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var rec bool
		err := n.queryRow(ctx, "postgres", "SELECT pg_is_in_recovery()", &rec)
		if err == nil && !rec {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept writes after %v (%v)", n.name, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fillWAL fills the WAL volume with a file until it is full, and returns
// the file's path.
func (n *pgNode) fillWAL() (string, error) {
	p := filepath.Join(n.walDir, "fault-filler")
	f, err := os.Create(p)
	if err != nil {
		return p, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if strings.Contains(err.Error(), "no space") {
				return p, nil
			}
			return p, err
		}
	}
}

func (n *pgNode) unmount() {
	if n.walFS {
		_ = exec.Command("umount", "-l", n.walDir).Run()
		n.walFS = false
	}
}
