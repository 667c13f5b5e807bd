package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator. Every request it sends was built (and, for the
// broker, signed) before the phase that sends it, so that during a measured
// window its CPU goes to HTTP alone: each connection writes the next
// request's ready bytes on its own keep-alive TCP connection and reads the
// answer with a small HTTP/1.1 parser (status line, Content-Length or
// chunked body), as wrk does, instead of net/http's client.

// requestPool hands out pre-built raw HTTP/1.1 requests, each at most once
// (a signed request's token id may be used once), or round robin when
// cycle is set (unsigned requests, such as the OPA reference's).
type requestPool struct {
	reqs  [][]byte
	next  atomic.Int64
	cycle bool
}

// take returns the next request, or nil when the pool is used up.
func (p *requestPool) take() []byte {
	i := p.next.Add(1) - 1
	if p.cycle {
		return p.reqs[i%int64(len(p.reqs))]
	}
	if i >= int64(len(p.reqs)) {
		return nil
	}
	return p.reqs[i]
}

func (p *requestPool) left() int {
	return max(len(p.reqs)-int(p.next.Load()), 0)
}

// rawRequest builds one HTTP/1.1 POST with a JSON body.
func rawRequest(host, path, auth string, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + len(auth) + 160)
	b.WriteString("POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\n")
	if auth != "" {
		b.WriteString("Authorization: Bearer " + auth + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// generator drives one server from a fixed number of connections, which
// stay open across its phases.
type generator struct {
	addr  string // host:port
	conns []*genConn
	// okMarker: a 200 answer counts as "ok" only when its body holds it
	// (nil: every 200); hitMarker is counted separately (precautions).
	okMarker, hitMarker []byte
	// rate, when above 0, paces the requests to that many a second in
	// all (each connection sends its share on a fixed schedule, at once
	// when it is behind, and a request's latency is taken from when it
	// was due); 0 sends as fast as the answers come.
	rate float64
}

type genConn struct {
	c net.Conn
	r *bufio.Reader
}

func newGenerator(addr string, conns int) *generator {
	return &generator{addr: addr, conns: make([]*genConn, conns)}
}

// phase is what one run of the generator saw.
type phase struct {
	Requests int64 // sent and finished (answered or failed)
	OK       int64 // answered 200 (and okMarker)
	Answered int64 // answered 200, okMarker or not
	Hits     int64 // answers with hitMarker
	Errors   map[string]int64
	Latency  []time.Duration // of every finished request
	Elapsed  time.Duration
	Drained  bool // the pool ran out before the deadline
}

// run sends requests from pool on every connection until d has passed,
// ctx ends or the pool is used up; tick (when non-nil) is called every 5 s
// with the requests finished so far.
func (g *generator) run(ctx context.Context, pool *requestPool, d time.Duration, tick func(time.Duration, int64)) *phase {
	var (
		stop     atomic.Bool
		stopped  = make(chan struct{}) // closed with stop set: wakes paced waits
		drained  atomic.Int64          // ns after start when the pool ran dry
		requests atomic.Int64
		mu       sync.Mutex
		ph       = &phase{Errors: map[string]int64{}}
		lats     = make([][]time.Duration, len(g.conns))
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i := range g.conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			var ok, answered, hits int64
			errs := map[string]int64{}
			body := make([]byte, 0, 4096)
			var timer *time.Timer
			if g.rate > 0 {
				timer = time.NewTimer(time.Hour)
				defer timer.Stop()
			}
			for k := 0; !stop.Load(); k++ {
				var due time.Time
				if g.rate > 0 {
					due = start.Add(time.Duration(float64(k*len(g.conns)+i) / g.rate * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						timer.Reset(wait)
						select {
						case <-timer.C:
						case <-stopped:
						case <-ctx.Done():
						}
					}
					if stop.Load() || ctx.Err() != nil { // the window closed while this one waited
						break
					}
				}
				req := pool.take()
				if req == nil {
					drained.CompareAndSwap(0, int64(time.Since(start)))
					if !stop.Swap(true) {
						close(stopped)
					}
					break
				}
				t0 := time.Now()
				status, b, err := g.roundTrip(i, req, body[:0])
				// Paced, a request's latency runs from when it was due:
				// a slow answer that held up this connection's next
				// request is counted in that one too (no coordinated
				// omission).
				if !due.IsZero() && due.Before(t0) {
					t0 = due
				}
				d := time.Since(t0)
				requests.Add(1)
				lat = append(lat, d)
				switch {
				case err != nil:
					errs["transport"]++
				case status == 200:
					answered++
					if g.okMarker == nil || bytes.Contains(b, g.okMarker) {
						ok++
					} else {
						errs["200 without "+string(g.okMarker)]++
					}
					if g.hitMarker != nil && bytes.Contains(b, g.hitMarker) {
						hits++
					}
				default:
					errs[strconv.Itoa(status)]++
				}
				if cap(b) > cap(body) {
					body = b
				}
			}
			mu.Lock()
			ph.OK += ok
			ph.Answered += answered
			ph.Hits += hits
			for k, v := range errs {
				ph.Errors[k] += v
			}
			mu.Unlock()
			lats[i] = lat
		}(i)
	}
	ticker := time.NewTicker(5 * time.Second)
	deadline := time.NewTimer(d)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-deadline.C:
			break loop
		case <-ctx.Done():
			break loop
		case <-done:
			break loop
		case <-ticker.C:
			if tick != nil {
				tick(time.Since(start), requests.Load())
			}
		}
	}
	ph.Elapsed = time.Since(start)
	if !stop.Swap(true) {
		close(stopped)
	}
	ticker.Stop()
	deadline.Stop()
	<-done
	if at := time.Duration(drained.Load()); at > 0 {
		// The window is the time until the first connection ran dry;
		// what was in flight then still counts, which is close enough.
		ph.Drained = true
		ph.Elapsed = min(ph.Elapsed, at)
	}
	for _, l := range lats {
		ph.Latency = append(ph.Latency, l...)
	}
	ph.Requests = requests.Load()
	return ph
}

var errProtocol = errors.New("malformed HTTP answer")

// roundTrip writes req on connection i (dialling it when needed) and reads
// the answer's status and body (into buf). Any error closes the
// connection; the next request dials again.
func (g *generator) roundTrip(i int, req, buf []byte) (int, []byte, error) {
	gc := g.conns[i]
	if gc == nil {
		c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
		if err != nil {
			return 0, buf, err
		}
		gc = &genConn{c: c, r: bufio.NewReaderSize(c, 8192)}
		g.conns[i] = gc
	}
	status, body, keep, err := gc.exchange(req, buf)
	if err != nil || !keep {
		gc.c.Close()
		g.conns[i] = nil
	}
	return status, body, err
}

func (gc *genConn) exchange(req, buf []byte) (status int, body []byte, keep bool, err error) {
	_ = gc.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := gc.c.Write(req); err != nil {
		return 0, buf, false, err
	}
	line, err := gc.r.ReadSlice('\n')
	if err != nil {
		return 0, buf, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, buf, false, errProtocol
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, buf, false, errProtocol
	}
	length, chunked, keep := -1, false, true
	for {
		h, err := gc.r.ReadSlice('\n')
		if err != nil {
			return status, buf, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return status, buf, false, errProtocol
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, buf, false, errProtocol
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			keep = !asciiEqualFold(value, "close")
		}
	}
	switch {
	case chunked:
		for {
			l, err := gc.r.ReadSlice('\n')
			if err != nil {
				return status, buf, false, err
			}
			l = bytes.TrimRight(l, "\r\n")
			if i := bytes.IndexByte(l, ';'); i >= 0 {
				l = l[:i]
			}
			n, err := strconv.ParseInt(string(l), 16, 32)
			if err != nil {
				return status, buf, false, errProtocol
			}
			if n == 0 { // trailers, then the blank line
				for {
					t, err := gc.r.ReadSlice('\n')
					if err != nil {
						return status, buf, false, err
					}
					if len(bytes.TrimRight(t, "\r\n")) == 0 {
						return status, buf, keep, nil
					}
				}
			}
			if buf, err = readN(gc.r, buf, int(n)+2); err != nil {
				return status, buf, false, err
			}
			buf = buf[:len(buf)-2]
		}
	case length >= 0:
		buf, err = readN(gc.r, buf, length)
		return status, buf, keep && err == nil, err
	default: // until close
		b, err := io.ReadAll(gc.r)
		return status, append(buf, b...), false, err
	}
}

func readN(r *bufio.Reader, buf []byte, n int) ([]byte, error) {
	if n > 16<<20 {
		return buf, fmt.Errorf("answer of %d bytes", n)
	}
	start := len(buf)
	buf = slices.Grow(buf, n)[:start+n]
	_, err := io.ReadFull(r, buf[start:])
	return buf, err
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// close closes every open connection.
func (g *generator) close() {
	for i, gc := range g.conns {
		if gc != nil {
			gc.c.Close()
			g.conns[i] = nil
		}
	}
}
