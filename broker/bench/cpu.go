package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// Where the CPU of a window went: this process (the load generator), the
// server under test, PostgreSQL (every process of its cluster), and the
// whole machine (so that what others ran meanwhile shows too).

// clockTicks is USER_HZ, the unit of /proc's CPU times on Linux.
const clockTicks = 100

// selfCPU is this process's user+system CPU in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// statFields returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is index 0).
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func fieldTicks(f []string, idx ...int) float64 {
	var t float64
	for _, i := range idx {
		if i < len(f) {
			v, _ := strconv.ParseFloat(f[i], 64)
			t += v
		}
	}
	return t / clockTicks
}

// parentOf returns a process's parent pid, or 0.
func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// treeCPU is the CPU of a process, its reaped children (cutime, cstime)
// and its live children: for a PostgreSQL postmaster, the whole cluster,
// backends that came and went included.
func treeCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	f := statFields(pid)
	if f == nil {
		return 0
	}
	// utime, stime, cutime, cstime are fields 14-17 (indexes 11-14 here).
	cpu := fieldTicks(f, 11, 12, 13, 14)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	want := strconv.Itoa(pid)
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil || child == pid {
			continue
		}
		cf := statFields(child)
		if len(cf) > 12 && cf[1] == want {
			cpu += fieldTicks(cf, 11, 12)
		}
	}
	return cpu
}

// machineCPU returns the busy and total CPU seconds of the machine since
// boot, over all cores (/proc/stat).
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy / clockTicks, total / clockTicks
}

// cpuSnap is one reading of every CPU figure of a window.
type cpuSnap struct {
	gen, server, pg, busy, total float64
	rss                          float64
}

// cpuMeter reads the figures of one window: the generator is this process
// unless genPID is set (wrk).
type cpuMeter struct {
	serverPID, pgPID, genPID int
}

func (m cpuMeter) read() cpuSnap {
	var s cpuSnap
	if m.genPID > 0 {
		s.gen = fieldTicks(statFields(m.genPID), 11, 12)
	} else {
		s.gen = selfCPU()
	}
	s.server, s.rss = procCPU(m.serverPID)
	s.pg = treeCPU(m.pgPID)
	s.busy, s.total = machineCPU()
	return s
}

// CPUShare is where the CPU of a window went, in CPU milliseconds per
// request (answered or not) and in seconds in all.
type CPUShare struct {
	GeneratorMs float64 `json:"generator_cpu_ms_per_request"`
	ServerMs    float64 `json:"server_cpu_ms_per_request"`
	PostgresMs  float64 `json:"postgres_cpu_ms_per_request,omitempty"`
	OtherMs     float64 `json:"other_cpu_ms_per_request"` // the machine's busy CPU not in the three above
	Generator   float64 `json:"generator_cpu_seconds"`
	Server      float64 `json:"server_cpu_seconds"`
	Postgres    float64 `json:"postgres_cpu_seconds,omitempty"`
	MachineBusy float64 `json:"machine_busy_cpu_seconds"`
	MachineCPUs float64 `json:"machine_cpu_seconds"` // wall time × cores
}

func share(a, b cpuSnap, requests int64, pg bool) CPUShare {
	s := CPUShare{Generator: b.gen - a.gen, Server: b.server - a.server, MachineBusy: b.busy - a.busy, MachineCPUs: b.total - a.total}
	if pg {
		s.Postgres = b.pg - a.pg
	}
	if requests > 0 {
		n := float64(requests) / 1000
		s.GeneratorMs, s.ServerMs, s.PostgresMs = s.Generator/n, s.Server/n, s.Postgres/n
		s.OtherMs = max(s.MachineBusy-s.Generator-s.Server-s.Postgres, 0) / n
	}
	return s
}

// postmasterPID returns the pid of the local PostgreSQL postmaster serving
// dbURL (the parent of this connection's backend), or 0 when the server
// is not a process on this machine.
func postmasterPID(ctx context.Context, dbURL string) int {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0
	}
	defer c.Close(ctx)
	var backend int
	if c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend) != nil {
		return 0
	}
	isPG := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && strings.HasPrefix(string(b), "postgres")
	}
	pm := parentOf(backend)
	if !isPG(backend) || pm <= 1 || !isPG(pm) {
		return 0
	}
	return pm
}

// pgSettings are the server settings a report names: what decides the
// cost of the log's inserts at full size.
var pgSettings = []string{"shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression", "synchronous_commit", "fsync"}

// postgresSettings describes the server: its version and pgSettings
// ("" when it cannot be asked).
func postgresSettings(ctx context.Context, dbURL string) string {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return ""
	}
	defer c.Close(ctx)
	var version, settings string
	if c.QueryRow(ctx, `SELECT current_setting('server_version'),
			(SELECT string_agg(n || ' ' || current_setting(n), ', ' ORDER BY o) FROM unnest($1::text[]) WITH ORDINALITY AS t(n, o))`,
		pgSettings).Scan(&version, &settings) != nil {
		return ""
	}
	return "PostgreSQL " + strings.Fields(version)[0] + ", " + settings
}
