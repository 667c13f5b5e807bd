// Package audit is Varsel's append-only decision log (docs/api.md §7). Every
// decision the broker makes is an Entry; entries form a hash chain
// (hash = SHA-256(prev_hash bytes || JCS(entry without hash))), are appended
// by a group-commit Writer (one transaction per batch of concurrent
// requests), and are covered by signed checkpoints in the signed-note format
// of golang.org/x/mod/sumdb/note. Verify recomputes the chain and checks
// every checkpoint, from the database or from an export file, so tampering
// by anyone without the broker's signing key is detected.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// ZeroHash is the prev_hash of the first entry.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// TimeFormat is how ts is written: UTC with microseconds, the precision the
// database keeps, so an entry read back hashes the same.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// Entry is one audit record. Every field is always present in its
// canonical form: absent values are "" or [] (never null).
type Entry struct {
	Seq           int64    `json:"seq"`
	TS            string   `json:"ts"`
	ActorAgency   string   `json:"actor_agency"`
	Actor         string   `json:"actor"`
	Role          string   `json:"role"`
	Office        string   `json:"office"`
	Action        string   `json:"action"`
	Decision      string   `json:"decision"`
	SubjectRef    string   `json:"subject_ref"`
	FlagIDs       []string `json:"flag_ids"`
	LegalBasis    string   `json:"legal_basis"`
	Emergency     bool     `json:"emergency"`
	Justification string   `json:"justification"`
	PolicyVersion string   `json:"policy_version"`
	Reasons       []string `json:"reasons"`
	RequestJTI    string   `json:"request_jti"`
	PrevHash      string   `json:"prev_hash"`
	Hash          string   `json:"hash"`

	// TreeSize is set by the store when the entry is committed: the size of
	// the Merkle tree its batch ended at (a tree that holds it). Not part
	// of the entry's contents or hash.
	TreeSize int64 `json:"-"`
}

// Receipt tells the caller where e landed, once it is committed.
func (e *Entry) Receipt() Receipt {
	return Receipt{Seq: e.Seq, Hash: e.Hash, LeafIndex: e.Seq - 1, TreeSize: e.TreeSize}
}

// Receipt tells a request where its entry landed: its seq and hash, and
// its leaf in the Merkle tree (leaf_index = seq - 1) with the size of a
// tree that holds it, for GET /v1/audit/proof. A Receipt used as a chain
// head has only Seq and Hash.
type Receipt struct {
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	LeafIndex int64  `json:"leaf_index"`
	TreeSize  int64  `json:"tree_size"`
}

// FormatTime renders t as an entry's ts.
func FormatTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(TimeFormat) }

// Storable reports whether the log can store e: no field holds a NUL or
// another control character (tab and line feed are allowed in the
// justification), and every field is valid UTF-8. Errors: ErrRejected.
func (e *Entry) Storable() error {
	bad := func(field string) error {
		return fmt.Errorf("%w: %s holds a control character or invalid UTF-8", ErrRejected, field)
	}
	for _, f := range []struct {
		name, v string
	}{{"ts", e.TS}, {"actor_agency", e.ActorAgency}, {"actor", e.Actor}, {"role", e.Role}, {"office", e.Office},
		{"action", e.Action}, {"decision", e.Decision}, {"subject_ref", e.SubjectRef}, {"legal_basis", e.LegalBasis},
		{"policy_version", e.PolicyVersion}, {"request_jti", e.RequestJTI}} {
		if !plainText(f.v, false) {
			return bad(f.name)
		}
	}
	if !plainText(e.Justification, true) {
		return bad("justification")
	}
	for _, list := range [][]string{e.FlagIDs, e.Reasons} {
		for _, s := range list {
			if !plainText(s, false) {
				return bad("flag_ids or reasons")
			}
		}
	}
	return nil
}

// plainText reports whether s is valid UTF-8 without control characters
// (but tab and line feed when breaks is set).
func plainText(s string, breaks bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(breaks && (r == '\n' || r == '\t')) {
			return false
		}
	}
	return true
}

// normalize makes every field canonical: valid UTF-8, non-nil lists.
func (e *Entry) normalize() {
	for _, s := range []*string{&e.TS, &e.ActorAgency, &e.Actor, &e.Role, &e.Office, &e.Action, &e.Decision,
		&e.SubjectRef, &e.LegalBasis, &e.Justification, &e.PolicyVersion, &e.RequestJTI} {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	if e.FlagIDs == nil {
		e.FlagIDs = []string{}
	}
	if e.Reasons == nil {
		e.Reasons = []string{}
	}
	for i, s := range e.FlagIDs {
		e.FlagIDs[i] = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i, s := range e.Reasons {
		e.Reasons[i] = strings.ToValidUTF8(s, "\uFFFD")
	}
}

// Canonical appends the RFC 8785 (JCS) form of the entry without its hash
// to dst. The schema is fixed, so the members are written in JCS order
// directly; tests check the bytes against github.com/gowebpki/jcs, the
// reference implementation we rely on, for generated and fuzzed entries.
// (The library parses and re-serialises generic JSON, about 17 µs an entry
// on our machine; this is a tenth of that, which matters for audit verify
// and for every request's append.)
func (e *Entry) Canonical(dst []byte) []byte {
	dst = append(dst, `{"action":`...)
	dst = appendString(dst, e.Action)
	dst = append(dst, `,"actor":`...)
	dst = appendString(dst, e.Actor)
	dst = append(dst, `,"actor_agency":`...)
	dst = appendString(dst, e.ActorAgency)
	dst = append(dst, `,"decision":`...)
	dst = appendString(dst, e.Decision)
	dst = append(dst, `,"emergency":`...)
	dst = strconv.AppendBool(dst, e.Emergency)
	dst = append(dst, `,"flag_ids":`...)
	dst = appendStrings(dst, e.FlagIDs)
	dst = append(dst, `,"justification":`...)
	dst = appendString(dst, e.Justification)
	dst = append(dst, `,"legal_basis":`...)
	dst = appendString(dst, e.LegalBasis)
	dst = append(dst, `,"office":`...)
	dst = appendString(dst, e.Office)
	dst = append(dst, `,"policy_version":`...)
	dst = appendString(dst, e.PolicyVersion)
	dst = append(dst, `,"prev_hash":`...)
	dst = appendString(dst, e.PrevHash)
	dst = append(dst, `,"reasons":`...)
	dst = appendStrings(dst, e.Reasons)
	dst = append(dst, `,"request_jti":`...)
	dst = appendString(dst, e.RequestJTI)
	dst = append(dst, `,"role":`...)
	dst = appendString(dst, e.Role)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, e.Seq, 10)
	dst = append(dst, `,"subject_ref":`...)
	dst = appendString(dst, e.SubjectRef)
	dst = append(dst, `,"ts":`...)
	dst = appendString(dst, e.TS)
	return append(dst, '}')
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as RFC 8785 requires (ECMAScript JSON.stringify):
// only '"', '\\' and control characters are escaped, with the short forms
// where they exist; everything else, including U+2028 and U+2029, is literal.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ComputeHash returns the entry's hash from its prev_hash and canonical form.
// buf is scratch space that may be reused across calls.
func (e *Entry) ComputeHash(buf []byte) (string, []byte) {
	var prev [32]byte
	if _, err := hex.Decode(prev[:], []byte(e.PrevHash)); err != nil || len(e.PrevHash) != 64 {
		// A malformed prev_hash still hashes (as its text), so tampering
		// with it shows as a mismatch rather than a crash.
		buf = append(buf[:0], e.PrevHash...)
	} else {
		buf = append(buf[:0], prev[:]...)
	}
	buf = e.Canonical(buf)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:]), buf
}

// Link gives entries consecutive seqs after head and chains their hashes.
func Link(head Receipt, entries []*Entry) {
	prev, seq := head.Hash, head.Seq
	if seq == 0 {
		prev = ZeroHash
	}
	var buf []byte
	for _, e := range entries {
		seq++
		e.normalize()
		e.Seq, e.PrevHash = seq, prev
		e.Hash, buf = e.ComputeHash(buf)
		prev = e.Hash
	}
}

// DisclosureActions are the actions that, allowed, show flags to someone
// other than their issuer.
var DisclosureActions = []string{"check", "warning.inbox", "warning.push"}

// Query selects entries for a privacy officer's search.
type Query struct {
	// Scope limits the result to entries whose actor is in this agency or
	// that disclosed (allowed, a disclosure action) a flag it issued; ""
	// means every entry (the broker operator's auditors).
	Scope         string
	SubjectRefs   []string // any of them (a subject's refs across key rotations)
	ActorAgency   string
	Actor         string
	From, To      time.Time // zero: unbounded; To is exclusive
	EmergencyOnly bool
	AfterSeq      int64
	Limit         int
}
