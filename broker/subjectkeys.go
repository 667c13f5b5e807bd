package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
)

// SubjectKeys holds the subject key chain the broker uses now, swapped
// atomically when a rotation is seen. A subject's ref is
// HMAC(k_n, … HMAC(k_2, HMAC(k_1, number))): rotating re-keys every stored
// ref with the newest key alone, without ever needing the numbers.
type SubjectKeys struct {
	p     atomic.Pointer[SubjectHasher]
	stale atomic.Pointer[Error]
}

// Set installs a hasher.
func (k *SubjectKeys) Set(h *SubjectHasher) { k.p.Store(h) }

// SetStale marks the chain in use as possibly out of date (the chain in
// the database changed and could not be loaded, or could not be read for
// too long); nil clears the mark. While it is set, Current fails, so that
// no check answers "clear" from refs that may match no flag.
func (k *SubjectKeys) SetStale(cause error) {
	if cause == nil {
		k.stale.Store(nil)
		return
	}
	k.stale.Store(&Error{Kind: EUNAVAILABLE, Code: CodeKeysUnavailable,
		Message: "the subject key chain is out of date on this replica: nothing was disclosed", Err: cause})
}

// Err is the stale mark (an EUNAVAILABLE *Error), or nil.
func (k *SubjectKeys) Err() error {
	if e := k.stale.Load(); e != nil {
		return e
	}
	return nil
}

// Current returns the hasher in use. Errors: EUNAVAILABLE when it is stale.
func (k *SubjectKeys) Current() (*SubjectHasher, error) {
	if e := k.stale.Load(); e != nil {
		return nil, e
	}
	return k.p.Load(), nil
}

// Hasher returns the hasher in use.
func (k *SubjectKeys) Hasher() *SubjectHasher { return k.p.Load() }

// Ref is the subject's canonical ref under the active chain.
func (k *SubjectKeys) Ref(s Subject) string { return k.p.Load().Ref(s) }

// Refs are every ref the subject may be stored under: one per prefix of the
// active chain (entries and flags written before a rotation reached every
// replica), and the pending rotation's.
func (k *SubjectKeys) Refs(s Subject) []string { return k.p.Load().Refs(s) }

// WithPending returns a hasher that also knows a rotation in progress.
func (h *SubjectHasher) WithPending(key []byte, version string) *SubjectHasher {
	n := *h
	n.pending = append([]byte(nil), key...)
	n.PendingVersion = version
	return &n
}

// Extend returns a hasher whose active chain ends with key.
func (h *SubjectHasher) Extend(key []byte, version string) *SubjectHasher {
	n := &SubjectHasher{key: h.key, macs: h.macs, Version: version, Position: h.Position, chain: append(append([][]byte(nil), h.chain...), append([]byte(nil), key...))}
	return n
}

// Rekey applies the key after the chain: the ref under chain+key.
func Rekey(key []byte, ref string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ref))
	return hex.EncodeToString(m.Sum(nil))
}

// RefAndRefs returns Ref(s) and Refs(s), with one HMAC of the number.
func (h *SubjectHasher) RefAndRefs(s Subject) (string, []string) {
	refs := h.Refs(s)
	return refs[len(h.chain)], refs
}

// Refs returns the ref at every prefix of the chain, and the pending one.
func (h *SubjectHasher) Refs(s Subject) []string {
	ref := h.first(s)
	out := []string{ref}
	for _, k := range h.chain {
		ref = Rekey(k, ref)
		out = append(out, ref)
	}
	if h.pending != nil {
		out = append(out, Rekey(h.pending, ref))
	}
	return out
}

// SubjectKeyLink is one version of the subject key in the chain.
type SubjectKeyLink struct {
	Position int
	Version  string
	State    string // LinkActive or LinkPending
}

// States of a subject key chain link.
const (
	LinkActive  = "active"
	LinkPending = "pending"
)
