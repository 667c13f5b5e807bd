package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"varsel/audit"
	"varsel/broker"
)

// PushStore is what the webhook pusher needs of storage.
type PushStore interface {
	ClaimPushes(ctx context.Context, limit int, lease time.Duration) ([]broker.DuePush, error)
	RecordPush(ctx context.Context, id int64, status int, errText string, delivered bool, next time.Time) error
	WarningFlag(ctx context.Context, id string) (*broker.Flag, error)
	Flag(ctx context.Context, id string) (*broker.Flag, error)
}

// WebhookType is the JWS typ of a pushed delivery.
const WebhookType = "varsel-push+jwt"

// Pusher POSTs to the webhooks offices registered, as a compact JWS (EdDSA,
// the broker's key): a warning's delivery (which warning arrived, its level,
// precautions and validity, and where the inbox is), and the notice to an
// issuing office that the life-and-health exception reached one of its
// flags (kind exception-disclosure: which flag, under which route, and where
// the disclosure feed is). Each attempt is audited before it is sent;
// failures are retried with exponential backoff and recorded. The inbox and
// the disclosure feed never wait for a webhook.
type Pusher struct {
	Store       PushStore
	Audit       AuditLog
	Signer      jose.Signer
	HTTP        *http.Client
	BrokerID    string
	Policy      func() string // the policy version to record
	Interval    time.Duration // how often to look for due pushes; default 1 s
	FirstRetry  time.Duration // default 2 s, doubling
	MaxRetry    time.Duration // default 5 min
	MaxAttempts int           // default 12
	Logger      *slog.Logger
	// AllowPrivate lets pushes reach loopback and private addresses
	// (development and tests); otherwise only public addresses are dialled.
	AllowPrivate bool

	clientOnce sync.Once
}

// PushBody is the signed payload of a webhook push.
type PushBody struct {
	Type        string    `json:"type"`
	WarningID   string    `json:"warning_id"`
	Office      string    `json:"office"`
	Level       string    `json:"level"`
	Precautions []string  `json:"precautions"`
	ValidUntil  time.Time `json:"valid_until"`
	Inbox       string    `json:"inbox"`
	SentAt      time.Time `json:"sent_at"`
	Attempt     int       `json:"attempt"`
}

// ExceptionPushBody is the signed payload of an exception-disclosure push:
// only that the exception reached the issuer's flag, when and by which
// route; who saw it is in the issuer's disclosure feed.
type ExceptionPushBody struct {
	Type       string    `json:"type"` // varsel.exception-disclosure
	Kind       string    `json:"kind"` // exception-disclosure
	FlagID     string    `json:"flag_id"`
	Office     string    `json:"office"`
	CheckSeq   int64     `json:"check_seq"`
	LegalBasis string    `json:"legal_basis"`
	Feed       string    `json:"feed"`
	SentAt     time.Time `json:"sent_at"`
	Attempt    int       `json:"attempt"`
}

// Run pushes due deliveries until ctx ends.
func (p *Pusher) Run(ctx context.Context) {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := p.PushDue(ctx); err != nil && ctx.Err() == nil && p.Logger != nil {
			p.Logger.Warn("webhook pushes", "subsystem", "webhook", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PushDue attempts the pushes that are due and returns how many it tried.
func (p *Pusher) PushDue(ctx context.Context) (int, error) {
	// The lease outlasts a whole batch (20 pushes of at most 10 s each), so
	// another replica does not claim a push this one is still sending.
	due, err := p.Store.ClaimPushes(ctx, 20, 5*time.Minute)
	if err != nil {
		return 0, err
	}
	for _, d := range due {
		p.attempt(ctx, d)
	}
	return len(due), nil
}

func (p *Pusher) attempt(ctx context.Context, d broker.DuePush) {
	status, errText := 0, ""
	delivered, giveUp := false, false
	defer func() {
		maxAttempts := p.MaxAttempts
		if maxAttempts <= 0 {
			maxAttempts = 12
		}
		var next time.Time // zero: given up
		if !delivered && !giveUp && d.Attempts+1 < maxAttempts {
			next = time.Now().Add(p.backoff(d.Attempts + 1))
		}
		if err := p.Store.RecordPush(context.WithoutCancel(ctx), d.ID, status, errText, delivered, next); err != nil && p.Logger != nil {
			p.Logger.Error("record webhook push", "subsystem", "webhook", "err", err)
		}
	}()
	exception := d.Kind == broker.PushExceptionDisclosure
	var f *broker.Flag
	var err error
	if exception {
		// The notice is of a disclosure that happened: it is sent whatever
		// the flag's state now.
		f, err = p.Store.Flag(ctx, d.FlagID)
	} else {
		f, err = p.Store.WarningFlag(ctx, d.WarningID)
	}
	if err != nil {
		errText = err.Error()
		return
	}
	if !exception && f.StatusAt(time.Now()) != broker.FlagActive {
		errText, giveUp = "flag no longer active: not pushed", true
		return
	}
	attemptAction, doneAction, failedAction := ActionPushAttempt, ActionPush, ActionPushFailed
	basis := f.LegalBasis
	if exception {
		attemptAction, doneAction, failedAction = ActionNoticeAttempt, ActionNotice, ActionNoticeFailed
		basis = d.LegalBasis
	}
	// Two entries per attempt. Before anything is sent, the attempt (with
	// everything a disclosure entry names), so that nothing leaves without
	// a committed entry; after it, the outcome: "warning.push" when the
	// request reached the receiver (a disclosure, whatever it answered),
	// "warning.push.failed" when nothing was sent (refused at dial time,
	// no such host, an inward address): not a disclosure.
	entry := func(action, decision string, reasons ...string) *audit.Entry {
		e := &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: p.BrokerID, Actor: "webhook", Role: "broker",
			Office: d.Office, Action: action, Decision: decision, SubjectRef: f.SubjectRef,
			FlagIDs: []string{f.ID}, LegalBasis: basis,
			Reasons: append([]string{fmt.Sprintf("attempt:%d", d.Attempts+1), "host:" + broker.WebhookHost(d.URL)}, reasons...)}
		if p.Policy != nil {
			e.PolicyVersion = p.Policy()
		}
		return e
	}
	if _, err := p.Audit.Append(ctx, entry(attemptAction, audit.Allow)); err != nil {
		errText = "audit unavailable: not sent"
		return
	}
	var sent atomic.Bool
	defer func() {
		outcome := entry(doneAction, audit.Allow, fmt.Sprintf("status:%d", status))
		if !sent.Load() {
			outcome = entry(failedAction, audit.Deny, "not_sent")
		}
		if _, err := p.Audit.Append(context.WithoutCancel(ctx), outcome); err != nil && p.Logger != nil {
			p.Logger.Error("audit webhook push outcome", "subsystem", "webhook", "err", err)
		}
	}()
	var payload []byte
	if exception {
		payload, _ = json.Marshal(ExceptionPushBody{Type: "varsel.exception-disclosure", Kind: broker.PushExceptionDisclosure,
			FlagID: f.ID, Office: d.Office, CheckSeq: d.CheckSeq, LegalBasis: d.LegalBasis,
			Feed:   fmt.Sprintf("/v1/flags/disclosures?after=%d", d.CheckSeq-1),
			SentAt: time.Now().UTC(), Attempt: d.Attempts + 1})
	} else {
		payload, _ = json.Marshal(PushBody{Type: "varsel.warning.delivered", WarningID: d.WarningID, Office: d.Office, Level: f.Level,
			Precautions: f.Precautions, ValidUntil: f.ValidUntil, Inbox: "/v1/warnings/inbox?office=" + d.Office,
			SentAt: time.Now().UTC(), Attempt: d.Attempts + 1})
	}
	obj, err := p.Signer.Sign(payload)
	if err != nil {
		errText = "sign: " + err.Error()
		return
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		errText = "serialize: " + err.Error()
		return
	}
	p.clientOnce.Do(func() {
		if p.HTTP == nil {
			p.HTTP = WebhookClient(p.AllowPrivate)
		}
	})
	hc := p.HTTP
	trace := &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, d.URL, bytes.NewReader([]byte(compact)))
	if err != nil {
		errText = err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/jose")
	resp, err := hc.Do(req)
	if err != nil {
		errText = err.Error()
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	status = resp.StatusCode
	delivered = status/100 == 2
	if !delivered {
		errText = fmt.Sprintf("webhook answered %d", status)
	}
}

// Audit actions of webhook pushes.
const (
	ActionPushAttempt = "warning.push.attempt" // before sending: what is about to be sent, to whom
	ActionPush        = "warning.push"         // the request reached the receiver: a disclosure
	ActionPushFailed  = "warning.push.failed"  // nothing was sent

	// An exception-disclosure notice goes to the flag's own issuer: not a
	// disclosure to anyone else, so not among audit.DisclosureActions.
	ActionNoticeAttempt = "exception.notice.attempt"
	ActionNotice        = "exception.notice"
	ActionNoticeFailed  = "exception.notice.failed"
)

func (p *Pusher) backoff(attempt int) time.Duration {
	first, maxWait := p.FirstRetry, p.MaxRetry
	if first <= 0 {
		first = 2 * time.Second
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Minute
	}
	d := first << min(attempt-1, 20)
	return min(d, maxWait)
}

// WebhookClient is the HTTP client for pushes: it never follows redirects
// (a redirect could lead to an http:// or internal address) and, unless
// allowPrivate, refuses to connect to loopback, private, link-local,
// multicast or unspecified addresses, checked on the address actually
// dialled, after DNS, so a name that resolves inward is refused too.
func WebhookClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("webhook address %q is not an IP", host)
			}
			if !PublicAddr(ip) {
				return fmt.Errorf("webhook address %s is not public: refused", ip)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 5 * time.Second, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// nonPublic are ranges IsPrivate and friends do not cover: carrier-grade
// NAT, benchmarking, and NAT64 (which can reach IPv4 addresses inside).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// PublicAddr reports whether a webhook may be sent to ip.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
