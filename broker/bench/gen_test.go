package bench

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestGenerator drives a server that answers with a Content-Length body,
// a chunked one, an error status and a closed connection, and checks what
// the generator counts; every pre-built request is sent once.
func TestGenerator(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.Add(1)
		switch string(b) {
		case "hit":
			io.WriteString(w, `{"result":"precautions"}`)
		case "chunked":
			w.Write([]byte(`{"result":`))
			w.(http.Flusher).Flush()
			w.Write([]byte(`"clear"}`))
		case "close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, `{"result":"clear"}`)
		default:
			http.Error(w, "no", http.StatusTeapot)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var reqs [][]byte
	for i := range 40 {
		body := []string{"hit", "chunked", "close", "teapot"}[i%4]
		reqs = append(reqs, rawRequest(host, "/v1/checks", "tok", []byte(body)))
	}
	g := newGenerator(host, 3)
	g.hitMarker = []byte(`"result":"precautions"`)
	defer g.close()
	ph := g.run(context.Background(), &requestPool{reqs: reqs}, 10*time.Second, nil)
	if !ph.Drained || ph.Requests != 40 || seen.Load() != 40 {
		t.Fatalf("drained %v, %d requests, server saw %d", ph.Drained, ph.Requests, seen.Load())
	}
	if ph.OK != 30 || ph.Answered != 30 || ph.Hits != 10 || ph.Errors["418"] != 10 || len(ph.Errors) != 1 || len(ph.Latency) != 40 {
		t.Fatalf("%+v", ph)
	}

	// A cycling pool never runs dry; an okMarker decides what is ok.
	g.okMarker = []byte(`"result":"precautions"`)
	ph = g.run(context.Background(), &requestPool{reqs: reqs[:1], cycle: true}, 200*time.Millisecond, nil)
	if ph.Drained || ph.OK == 0 || ph.OK != ph.Requests {
		t.Fatalf("%+v", ph)
	}
}

// TestGeneratorPaced: a paced generator keeps to its rate: no request
// before its turn and none once the window has closed (the k-th request
// of connection i is due (k × connections + i) ÷ rate after the start, so
// at most rate × elapsed + 1 are due within it), and no fewer than the
// schedule allows when the server keeps up.
func TestGeneratorPaced(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"result":"clear"}`)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	pool := &requestPool{reqs: [][]byte{rawRequest(host, "/v1/checks", "tok", []byte("x"))}, cycle: true}
	g := newGenerator(host, 8)
	defer g.close()
	g.rate = 100
	ph := g.run(context.Background(), pool, 500*time.Millisecond, nil)
	limit := int64(g.rate*ph.Elapsed.Seconds()) + 1
	if ph.Requests > limit || ph.Requests < limit*7/10 || ph.OK != ph.Requests {
		t.Fatalf("paced to 100/s: %d requests (%d ok) in %s, between %d and %d expected", ph.Requests, ph.OK, ph.Elapsed, limit*7/10, limit)
	}
}

// TestGeneratorPacedLatency: paced, a request held up by a slow answer
// before it on its connection has that wait in its latency.
func TestGeneratorPacedLatency(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1) == 1 {
			time.Sleep(200 * time.Millisecond) // the first answer is slow
		}
		io.WriteString(w, `{"result":"clear"}`)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	pool := &requestPool{reqs: [][]byte{rawRequest(host, "/v1/checks", "tok", []byte("x"))}, cycle: true}
	g := newGenerator(host, 1)
	defer g.close()
	g.rate = 100 // one every 10 ms, on one connection
	ph := g.run(context.Background(), pool, 400*time.Millisecond, nil)
	// The requests due while the first waited were sent late: taken from
	// when they were due, the second is about 190 ms, not a fraction of one.
	slow := 0
	for _, d := range ph.Latency {
		if d >= 100*time.Millisecond {
			slow++
		}
	}
	if slow < 5 {
		t.Fatalf("%d of %d latencies at 100 ms or more; the wait behind the slow answer was not counted", slow, len(ph.Latency))
	}
}

func TestWrkFiles(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "reqs")
	reqs := [][]byte{[]byte("a\r\n\r\n"), []byte("bb"), []byte("ccc\n")}
	if err := writeWrkFiles(prefix, 2, reqs); err != nil {
		t.Fatal(err)
	}
	// What the Lua script reads: a length line, then that many bytes.
	read := func(name string) []string {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := bufio.NewReader(f)
		var out []string
		for {
			l, err := r.ReadString('\n')
			if err == io.EOF {
				return out
			}
			n, _ := strconv.Atoi(strings.TrimSpace(l))
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	if got := read(prefix + ".0"); len(got) != 2 || got[0] != "a\r\n\r\n" || got[1] != "ccc\n" {
		t.Fatalf("thread 0: %q", got)
	}
	if got := read(prefix + ".1"); len(got) != 1 || got[0] != "bb" {
		t.Fatalf("thread 1: %q", got)
	}
}

func TestFloor(t *testing.T) {
	f := measureFloor(20*time.Millisecond, 3)
	if f.P256VerifyUs <= 0 || f.Ed25519VerifyUs <= 0 || f.Rounds != 3 {
		t.Fatalf("%+v", f)
	}
}
