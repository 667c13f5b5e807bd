package faults

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"varsel/broker"
	"varsel/broker/client"
)

// Request kinds of the load.
const (
	kindCheck   = "check"
	kindFlag    = "flag"
	kindWarning = "warning"
	kindAck     = "ack"
	kindReplay  = "replay"
)

// outcome is one request the load sent and what came back.
type outcome struct {
	kind    string
	replica int
	at      time.Time // when the answer (or the error) came
	status  int       // 0: no answer (connection error, timeout)
	code    string    // problem+json code of an error answer
	seq     int64     // the receipt of a 2xx
	hash    string
	jti     string
	noEntry bool // a 2xx without a receipt
}

// people are the load's synthetic national ids (month + 40).
func person(i int) string { return broker.SyntheticNumber(i+1, 40) }

const people = 400

// load drives signed checks, flag writes, warnings and their acks, and
// replays of accepted tokens, round robin over the replicas, at a steady
// rate.
type load struct {
	replicas []string
	police   *client.Signer
	nav      *client.Signer
	rate     int // requests per second, over all replicas
	workers  int
	hc       *http.Client

	rr   atomic.Int64
	acks chan [2]string // (warning id, office) still to acknowledge

	mu       sync.Mutex
	outcomes []outcome
	accepted []replayable // recent 2xx, to replay on another replica

	stop chan struct{}
	done chan struct{}
}

// replayable is an accepted request: its token sent again must be refused.
type replayable struct {
	method, path string
	body         []byte
	token        string
	replica      int
}

func newLoad(replicas []string, police, nav *client.Signer, rate, workers int) *load {
	return &load{replicas: replicas, police: police, nav: nav, rate: rate, workers: workers,
		acks: make(chan [2]string, 1<<16),
		hc: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: workers, IdleConnTimeout: 30 * time.Second,
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		}}}
}

// start begins a phase of load; finish ends it and returns its outcomes.
func (l *load) start() {
	l.mu.Lock()
	l.outcomes = nil
	l.mu.Unlock()
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	ticks := make(chan struct{}, l.workers)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second / time.Duration(l.rate))
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				close(ticks)
				return
			case <-t.C:
				select {
				case ticks <- struct{}{}:
				default: // every worker is waiting on an answer: this request is not sent
				}
			}
		}
	}()
	for w := 0; w < l.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for range ticks {
				l.one(r, w)
			}
		}(w)
	}
	go func() { wg.Wait(); close(l.done) }()
}

func (l *load) finish() []outcome {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.outcomes
	l.outcomes = nil
	return out
}

// one sends one request of a random kind.
func (l *load) one(r *mrand.Rand, w int) {
	replica := int(l.rr.Add(1) % int64(len(l.replicas)))
	x := r.Float64()
	var (
		signer *client.Signer
		emp    client.Employee
		method = "POST"
		path   string
		body   []byte
		kind   string
	)
	switch {
	case x < 0.04:
		l.mu.Lock()
		n := len(l.accepted)
		var a replayable
		if n > 0 {
			a = l.accepted[r.IntN(n)]
		}
		l.mu.Unlock()
		if n > 0 {
			l.send(kindReplay, (a.replica+1)%len(l.replicas), a.method, a.path, a.body, a.token, nil)
			return
		}
		fallthrough
	case x < 0.74:
		kind, signer, path = kindCheck, l.nav, "/v1/checks"
		emp = client.Employee{Sub: fmt.Sprintf("cw-%d", r.IntN(50)), Role: "caseworker", Office: "nav-a"}
		body, _ = json.Marshal(map[string]any{"subject": person(r.IntN(people)), "purpose": "meeting"})
	case x < 0.86:
		kind, signer, path = kindFlag, l.police, "/v1/flags"
		emp = client.Employee{Sub: fmt.Sprintf("liaison-%d", r.IntN(5)), Role: "police-liaison"}
		body, _ = json.Marshal(flagBody(person(r.IntN(people))))
	case x < 0.91:
		kind, signer, path = kindWarning, l.police, "/v1/warnings"
		emp = client.Employee{Sub: fmt.Sprintf("liaison-%d", r.IntN(5)), Role: "police-liaison"}
		b := flagBody(person(r.IntN(people)))
		b["audience"] = map[string]any{"kinds": []string{}}
		b["targets"] = map[string]any{"offices": []string{"nav-a", "nav-b"}}
		body, _ = json.Marshal(b)
	default:
		select {
		case a := <-l.acks:
			kind, signer, path = kindAck, l.nav, "/v1/warnings/"+a[0]+"/ack"
			emp = client.Employee{Sub: "sec-" + a[1], Role: "security-coordinator", Office: a[1]}
		default: // nothing to acknowledge yet: a check instead
			kind, signer, path = kindCheck, l.nav, "/v1/checks"
			emp = client.Employee{Sub: fmt.Sprintf("cw-%d", r.IntN(50)), Role: "caseworker", Office: "nav-a"}
			body, _ = json.Marshal(map[string]any{"subject": person(r.IntN(people)), "purpose": "meeting"})
		}
	}
	tok, err := signer.Token(emp, method, path, body)
	if err != nil {
		panic(err)
	}
	l.send(kind, replica, method, path, body, tok, &replayable{method: method, path: path, body: body, token: tok, replica: replica})
}

// send sends one request and records what came back.
func (l *load) send(kind string, replica int, method, path string, body []byte, tok string, keep *replayable) {
	c := &client.Client{BaseURL: l.replicas[replica], HTTP: l.hc}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	resp, err := c.DoToken(ctx, method, path, body, tok)
	cancel()
	o := outcome{kind: kind, replica: replica, at: time.Now(), jti: jtiOf(tok)}
	if err == nil {
		o.status = resp.Status
		if resp.Status >= 200 && resp.Status < 300 {
			var rec struct {
				ID      string `json:"id"`
				Targets []struct {
					Office string `json:"office"`
				} `json:"targets"`
				Audit struct {
					Seq  int64  `json:"seq"`
					Hash string `json:"hash"`
				} `json:"audit"`
			}
			_ = json.Unmarshal(resp.Body, &rec)
			o.seq, o.hash = rec.Audit.Seq, rec.Audit.Hash
			o.noEntry = rec.Audit.Seq == 0 || rec.Audit.Hash == ""
			if kind == kindWarning {
				for _, t := range rec.Targets {
					select {
					case l.acks <- [2]string{rec.ID, t.Office}:
					default:
					}
				}
			}
		} else if p := resp.Problem(); p != nil {
			o.code = p.Code
		}
	}
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	if keep != nil && o.status >= 200 && o.status < 300 {
		if len(l.accepted) >= 512 {
			l.accepted = l.accepted[1:]
		}
		l.accepted = append(l.accepted, *keep)
	}
	l.mu.Unlock()
}

// jtiOf reads the token id from a compact JWS.
func jtiOf(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		JTI string `json:"jti"`
	}
	_ = json.Unmarshal(b, &c)
	return c.JTI
}

// flagBody is a valid police flag for NAV (politiregisterloven § 27 andre
// ledd, the person informed, the controller's decision recorded).
func flagBody(subject string) map[string]any {
	return map[string]any{
		"subject":          subject,
		"level":            "high",
		"categories":       []string{"threats"},
		"precautions":      []string{"two-staff", "consult-issuer-first"},
		"valid_until":      time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"legal_basis":      "politiregl-27-2",
		"audience":         map[string]any{"kinds": []string{"nav-state"}},
		"contact":          map[string]any{"unit": "Politiet, operasjonssentralen", "phone": "+47 22 66 90 50"},
		"subject_informed": map[string]any{"informed": true},
		"decision": map[string]any{"decided_by": "Seksjonsleder", "decided_by_role": "controller-delegate",
			"decided_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "reference": "FAULT 1"},
	}
}
