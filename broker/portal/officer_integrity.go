package portal

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
)

// integrity is the portal's own verdict on the audit log: the newest
// signed checkpoint, verified here with the broker's published key, and
// compared with the newest one the portal saw before (its state file).
type integrity struct {
	OK       bool
	Problems []string // message keys, each a reason for the red banner
	Count    int64
	Hash     string
	SeenAt   time.Time // when the portal first saw this checkpoint
	Age      string    // how long ago that was, rounded
	Key      string
	Previous int64 // the count the portal had seen before
}

// portalState is the portal's small state file.
type portalState struct {
	Key    string    `json:"checkpoint_key"`
	Count  int64     `json:"count"`
	Hash   string    `json:"hash"`
	SeenAt time.Time `json:"seen_at"`
}

var stateMu sync.Mutex

func (p *Portal) loadState() (portalState, error) {
	var st portalState
	b, err := os.ReadFile(p.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (p *Portal) saveState(st portalState) error {
	return audit.WriteStateFile(p.cfg.StateFile, st)
}

// checkIntegrity verifies the newest checkpoint. The red banner shows when
// the key or the checkpoint cannot be had, the signature or origin fails,
// the key changed, the log shrank or was rewritten since the portal last
// saw it, or entries older than the signing interval allows are unsigned.
// Only a checkpoint that passes is kept as the new last seen one.
func (p *Portal) checkIntegrity(ctx context.Context, s *Session) *integrity {
	in := &integrity{}
	bad := func(key string) *integrity { in.Problems = append(in.Problems, key); return in }
	bc, err := p.brokerClient(s)
	if err != nil {
		return bad("off.int.unavailable")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	keyResp, err := bc.Do(ctx, "GET", "/v1/audit/key", nil)
	if err != nil || keyResp.Status != 200 {
		return bad("off.int.nokey")
	}
	in.Key = strings.TrimSpace(string(keyResp.Body))
	verifier, err := note.NewVerifier(in.Key)
	if err != nil || verifier.Name() != p.cfg.BrokerID {
		return bad("off.int.nokey")
	}
	cpResp, err := bc.Do(ctx, "GET", "/v1/audit/checkpoint", nil)
	if err != nil || cpResp.Status != 200 {
		return bad("off.int.nocheckpoint")
	}
	signed, err := audit.OpenCheckpoint(string(cpResp.Body), verifier)
	if err != nil {
		return bad("off.int.signature")
	}
	head := signed.Receipt()
	if signed.Origin != audit.LogOrigin(p.cfg.BrokerID) {
		return bad("off.int.origin")
	}
	in.Count, in.Hash = head.Seq, head.Hash

	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := p.loadState()
	if err != nil {
		p.log.Error("portal state file", "err", err)
		return bad("off.int.state")
	}
	in.Previous = st.Count
	switch {
	case st.Key != "" && st.Key != in.Key:
		bad("off.int.keychanged")
	case head.Seq < st.Count:
		bad("off.int.shrunk")
	case head.Seq == st.Count && st.Hash != "" && head.Hash != st.Hash:
		bad("off.int.rewritten")
	}
	now := p.now()
	if len(in.Problems) == 0 {
		if head.Seq != st.Count || st.SeenAt.IsZero() {
			st = portalState{Key: in.Key, Count: head.Seq, Hash: head.Hash, SeenAt: now}
			if err := p.saveState(st); err != nil {
				p.log.Error("portal state file", "err", err)
				bad("off.int.state")
			}
		}
		in.SeenAt = st.SeenAt
		in.Age = now.Sub(st.SeenAt).Round(time.Second).String()
		// The broker signs every interval when entries were added: the
		// oldest entry the checkpoint does not cover must be younger.
		if oldest, ok := p.oldestUnsigned(ctx, s, head.Seq); ok && now.Sub(oldest) > p.cfg.CheckpointMaxAge {
			bad("off.int.stale")
		}
	}
	in.OK = len(in.Problems) == 0
	return in
}

// oldestUnsigned is the time of the first entry in the caller's view after
// the checkpoint's count.
func (p *Portal) oldestUnsigned(ctx context.Context, s *Session, count int64) (time.Time, bool) {
	var res struct {
		Entries []auditEntry `json:"entries"`
	}
	body := map[string]any{"after_seq": count, "limit": 1}
	if _, err := p.call(ctx, s, "POST", "/v1/audit/search", body, &res); err != nil || len(res.Entries) == 0 {
		return time.Time{}, false
	}
	return res.Entries[0].TS, true
}
