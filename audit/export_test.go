package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "varsel/audit"

func testKey(t *testing.T, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// testLog is a chain of 30 entries with checkpoints at 10, 20 and 30.
type testLog struct {
	entries []*Entry
	cps     []Checkpoint
}

func newTestLog(t *testing.T, signer note.Signer, origin string) *testLog {
	t.Helper()
	var es []*Entry
	for i := range 30 {
		es = append(es, &Entry{TS: FormatTime(time.Date(2026, 3, 1, 9, 0, i, 0, time.UTC)), ActorAgency: "nav-a",
			Actor: "kari", Role: "caseworker", Office: "nav-grorud", Action: "check", Decision: Allow,
			FlagIDs: []string{"f1"}, Justification: "møte \"i dag\"\n", RequestJTI: "jti"})
	}
	Link(Receipt{}, es)
	l := &testLog{entries: es}
	for _, n := range []int64{10, 20, 30} {
		cp, err := SignCheckpoint(origin, mustHead(t, es[:n]), signer)
		if err != nil {
			t.Fatal(err)
		}
		l.cps = append(l.cps, cp)
	}
	return l
}

// export writes entries first..last with the checkpoints in first-1..last,
// as varsel audit export does, and returns the file's lines.
func (l *testLog) export(t *testing.T, origin string, first, last int64) []string {
	t.Helper()
	var buf bytes.Buffer
	var cps []Checkpoint
	counts := []int64{}
	for _, cp := range l.cps {
		if cp.Count >= first-1 && cp.Count <= last {
			cps, counts = append(cps, cp), append(counts, cp.Count)
		}
	}
	x, err := NewExportWriter(&buf, ExportHeader{Origin: origin, FirstSeq: first, LastSeq: last, Entries: last - first + 1,
		Checkpoints: counts, From: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		CreatedAt: time.Date(2026, 3, 2, 8, 0, 0, 123456789, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l.entries[first-1 : last] {
		if err := x.Entry(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, cp := range cps {
		if err := x.Checkpoint(cp); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "export.jsonl")
	s := strings.Join(lines, "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyLines verifies a file of lines as audit verify --file does and
// returns what failed ("" when it held).
func verifyLines(t *testing.T, lines []string, v note.Verifier, origin string) string {
	t.Helper()
	f := &File{Path: writeLines(t, lines)}
	if err := f.Open(); err != nil {
		return err.Error()
	}
	rep, err := VerifyFile(context.Background(), f, v, origin, nil)
	if err != nil {
		return err.Error()
	}
	if !rep.OK() {
		return rep.Problem
	}
	return ""
}

func TestExportRoundTrip(t *testing.T) {
	s, v := testKey(t, "varsel")
	l := newTestLog(t, s, testOrigin)
	lines := l.export(t, testOrigin, 11, 30)
	if len(lines) != 1+20+3 {
		t.Fatalf("%d lines", len(lines))
	}
	// The entry line is the canonical form, the bytes its hash covers.
	e := l.entries[14]
	if want := `{"entry":` + string(e.Canonical(nil)) + `,"hash":"` + e.Hash + `"}` + "\n"; lines[5] != want {
		t.Fatalf("entry line\n%s\nwant\n%s", lines[5], want)
	}
	if got := verifyLines(t, lines, v, testOrigin); got != "" {
		t.Fatal(got)
	}
	// From entry 1, with no checkpoint before it.
	if got := verifyLines(t, l.export(t, testOrigin, 1, 20), v, testOrigin); got != "" {
		t.Fatal(got)
	}
}

// TestExportLinesRoundTripRandomEntries: whatever an entry holds (control
// characters, U+2028, quotes, non-ASCII), its line is read back as the
// same entry and passes the exact-form check.
func TestExportLinesRoundTripRandomEntries(t *testing.T) {
	r := mrand.New(mrand.NewPCG(5, 6))
	var scratch []byte
	for i := range 3000 {
		e := randEntry(r)
		e.Hash = ZeroHash
		line := appendEntryLine(nil, e)
		l, kind, s, err := decodeLine(line, scratch)
		scratch = s
		if err != nil || kind != kindEntry {
			t.Fatalf("entry %d: %v\n%s", i, err, line)
		}
		if got := appendEntryLine(nil, l.Entry); !bytes.Equal(got, line) {
			t.Fatalf("entry %d read back differently", i)
		}
	}
}

// TestForgedExportsAreRefused: each way of making a file say something
// other than what its checked entries are, or of making the checks look at
// something else, is refused, naming what failed.
func TestForgedExportsAreRefused(t *testing.T) {
	s, v := testKey(t, "varsel")
	l := newTestLog(t, s, testOrigin)
	good := func() []string { return l.export(t, testOrigin, 11, 30) }
	edit := func(lines []string, i int, old, new string) []string {
		t.Helper()
		if !strings.Contains(lines[i], old) {
			t.Fatalf("line %d has no %q: %s", i+1, old, lines[i])
		}
		lines[i] = strings.Replace(lines[i], old, new, 1)
		return lines
	}
	const entry15 = 5 // index of entry 15's line: header, then 11, 12, ...
	cases := []struct {
		name  string
		lines func() []string
		want  []string // every one must be in the message
	}{
		// encoding/json matched names case-insensitively and let the last
		// duplicate win: the office checked was not the office shown.
		{"case-changed duplicate key", func() []string {
			return edit(good(), entry15, `"office":"nav-grorud"`, `"office":"nav-grorud","Office":"nav-elsewhere"`)
		}, []string{"line 6", `"Office"`, "unknown"}},
		{"case-changed key alone", func() []string {
			return edit(good(), entry15, `"office":`, `"OFFICE":`)
		}, []string{"line 6", `"OFFICE"`}},
		{"duplicated key", func() []string {
			return edit(good(), entry15, `"office":"nav-grorud"`, `"office":"nav-elsewhere","office":"nav-grorud"`)
		}, []string{"line 6", "duplicate", `"office"`}},
		{"unknown key", func() []string {
			return edit(good(), entry15, `"role":`, `"comment":"approved","role":`)
		}, []string{"line 6", `"comment"`, "unknown"}},
		{"unknown key at the top", func() []string {
			return edit(good(), entry15, `{"entry":`, `{"signed":true,"entry":`)
		}, []string{"line 6", `"signed"`}},
		{"hash inside the entry", func() []string {
			return edit(good(), entry15, `"justification":`, `"hash":"`+ZeroHash+`","justification":`)
		}, []string{"line 6", `"hash" inside`}},
		{"invalid UTF-8", func() []string {
			return edit(good(), entry15, "møte", "m\xf8te")
		}, []string{"line 6", "UTF-8"}},
		{"same entry, other escaping", func() []string {
			return edit(good(), entry15, `"actor":"kari"`, `"actor":"k\u0061ri"`)
		}, []string{"line 6", "exact form"}},
		{"same entry, members reordered", func() []string {
			return edit(good(), entry15, `"action":"check","actor":"kari"`, `"actor":"kari","action":"check"`)
		}, []string{"line 6", "exact form"}},
		{"same entry, a space", func() []string {
			return edit(good(), entry15, `{"entry":{`, `{"entry": {`)
		}, []string{"line 6", "exact form"}},
		{"CRLF line end", func() []string {
			return edit(good(), entry15, "}\n", "}\r\n")
		}, []string{"line 6", "exact form"}},
		{"null list", func() []string {
			return edit(good(), entry15, `"reasons":[]`, `"reasons":null`)
		}, []string{"line 6", "exact form"}},
		{"an entry after the checkpoints", func() []string {
			lines := good()
			return append(lines[:len(lines)-1], lines[entry15], lines[len(lines)-1])
		}, []string{"entry line after a checkpoint line"}},
		{"a second header", func() []string {
			lines := good()
			return append(lines[:3], append([]string{lines[0]}, lines[3:]...)...)
		}, []string{"line 4", "second header"}},
		{"header key in another case", func() []string {
			return edit(good(), 0, `"last_seq":`, `"Last_Seq":`)
		}, []string{"line 1", `"Last_Seq"`}},
		{"header with a duplicate", func() []string {
			return edit(good(), 0, `"origin":"varsel/audit"`, `"origin":"varsel/audit","origin":"varsel/audit"`)
		}, []string{"line 1", "duplicate"}},
		{"old format", func() []string {
			return edit(good(), 0, ExportFormat, "varsel-audit-export/1")
		}, []string{"line 1", "varsel-audit-export/1", "export it again"}},
		{"truncated file", func() []string {
			lines := good()
			lines[len(lines)-1] = lines[len(lines)-1][:40]
			return lines
		}, []string{"line 24"}},

		// The header's statements about the content.
		{"header last_seq beyond the lines", func() []string {
			lines := good()
			// Drop entry 30 and the checkpoint at 30; the header still says 30.
			lines = append(lines[:20], lines[21:23]...)
			return lines
		}, []string{"export header", "last_seq is 30 but the last entry is 29"}},
		{"header first_seq", func() []string {
			return edit(good(), 0, `"first_seq":11`, `"first_seq":1`)
		}, []string{"export header", "first_seq is 1 but the first entry is 11"}},
		{"header count", func() []string {
			return edit(good(), 0, `"entries":20`, `"entries":19`)
		}, []string{"export header", "entries is 19"}},
		{"a gap the header hides", func() []string {
			lines := good()
			return append(lines[:entry15], lines[entry15+1:]...) // entry 15 gone
		}, []string{"export header", "entries is 20 but the file has 19"}},
		{"header checkpoints", func() []string {
			return edit(good(), 0, `"checkpoints":[10,20,30]`, `"checkpoints":[10,30]`)
		}, []string{"export header", "checkpoints are [10 30]", "[10 20 30]"}},
		{"checkpoint outside the range", func() []string {
			lines := edit(good(), 0, `"first_seq":11,"last_seq":30,"entries":20,"checkpoints":[10,20,30]`,
				`"first_seq":12,"last_seq":30,"entries":19,"checkpoints":[10,20,30]`)
			return append(lines[:1], lines[2:]...) // entry 11 gone, checkpoint 10 kept
		}, []string{"export header", "checkpoint at 10 lies outside"}},
		{"origin in the header", func() []string {
			return edit(good(), 0, `"origin":"varsel/audit"`, `"origin":"other/audit"`)
		}, []string{"export header", `origin is "other/audit", not "varsel/audit"`}},

		// The chain and its anchors.
		{"entry changed", func() []string {
			return edit(good(), entry15, `"office":"nav-grorud"`, `"office":"nav-grorue"`)
		}, []string{"entry 15: hash does not match"}},
		{"last checkpoint removed", func() []string {
			lines := edit(good(), 0, `"checkpoints":[10,20,30]`, `"checkpoints":[10,20]`)
			return lines[:len(lines)-1]
		}, []string{"last entries are not covered", "none at 30"}},
		{"first checkpoint removed", func() []string {
			lines := edit(good(), 0, `"checkpoints":[10,20,30]`, `"checkpoints":[20,30]`)
			return append(lines[:21], lines[22:]...)
		}, []string{"first prev_hash is not named", "none at 10"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := verifyLines(t, tc.lines(), v, testOrigin)
			if got == "" {
				t.Fatal("the forged export verified")
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Fatalf("got %q, want it to name %q", got, w)
				}
			}
		})
	}
}

// TestExportOfAnotherOrigin: a sound export whose checkpoints another
// broker signed (same key, another origin) is refused unless that origin
// is asked for: the origin comes from the verifier, never from the file.
func TestExportOfAnotherOrigin(t *testing.T) {
	s, v := testKey(t, "varsel")
	l := newTestLog(t, s, "staging/audit")
	lines := l.export(t, "staging/audit", 11, 30)
	if got := verifyLines(t, lines, v, testOrigin); !strings.Contains(got, `origin is "staging/audit", not "varsel/audit"`) {
		t.Fatalf("untouched: %q", got)
	}
	// The header claims the expected origin: the checkpoints still say not.
	lines[0] = strings.Replace(lines[0], `"origin":"staging/audit"`, `"origin":"varsel/audit"`, 1)
	if got := verifyLines(t, lines, v, testOrigin); !strings.Contains(got, `checkpoint at 10: signed for origin "staging/audit", not "varsel/audit"`) {
		t.Fatalf("header edited: %q", got)
	}
	if got := verifyLines(t, l.export(t, "staging/audit", 11, 30), v, "staging/audit"); got != "" {
		t.Fatalf("asked for that origin: %q", got)
	}
}

func TestExportSignedByAnotherKey(t *testing.T) {
	s, _ := testKey(t, "varsel")
	_, other := testKey(t, "varsel")
	l := newTestLog(t, s, testOrigin)
	if got := verifyLines(t, l.export(t, testOrigin, 11, 30), other, testOrigin); !strings.Contains(got, "checkpoint at 10: checkpoint signature") {
		t.Fatalf("%q", got)
	}
}

// TestVerifyNeedsAnOrigin: with a verifier, Verify never leaves the origin
// unchecked.
func TestVerifyNeedsAnOrigin(t *testing.T) {
	s, v := testKey(t, "varsel")
	l := newTestLog(t, s, testOrigin)
	f := &File{Path: writeLines(t, l.export(t, testOrigin, 11, 30))}
	if err := f.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), f, v, ""); err == nil {
		t.Fatal("Verify with a verifier and no origin")
	}
	if _, err := VerifyFile(context.Background(), f, v, "", nil); err == nil {
		t.Fatal("VerifyFile with no origin")
	}
	// Without a verifier (--no-signatures) the chain and header are still checked.
	rep, err := VerifyFile(context.Background(), f, nil, testOrigin, nil)
	if err != nil || !rep.OK() || rep.Entries != 20 {
		t.Fatalf("no signatures: %+v %v", rep, err)
	}
	var he *HeaderError
	lines := l.export(t, testOrigin, 11, 30)
	lines[0] = strings.Replace(lines[0], `"entries":20`, `"entries":21`, 1)
	f = &File{Path: writeLines(t, lines)}
	if err := f.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFile(context.Background(), f, nil, testOrigin, nil); !errors.As(err, &he) {
		t.Fatalf("header checked without signatures: %v", err)
	}
}

// BenchmarkVerifyFile measures audit verify --file over 100,000 entries:
// strict parsing, the exact-form check and hashing.
func BenchmarkVerifyFile(b *testing.B) {
	const n = 100_000
	es := make([]*Entry, n)
	for i := range es {
		es[i] = &Entry{TS: FormatTime(time.Date(2026, 3, 1, 9, 0, 0, i*1000, time.UTC)), ActorAgency: "nav-a",
			Actor: "kari", Role: "caseworker", Office: "nav-grorud", Action: "check", Decision: Allow,
			SubjectRef: "sr-0123456789abcdef0123456789abcdef", FlagIDs: []string{"flg-1"}, LegalBasis: "navl-7",
			PolicyVersion: "p1", Reasons: []string{}, RequestJTI: "jti-0123456789"}
	}
	Link(Receipt{}, es)
	skey, vkey, _ := note.GenerateKey(rand.Reader, "varsel")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	cp, _ := SignCheckpoint(testOrigin, mustHead(b, es[:n]), s)
	p := filepath.Join(b.TempDir(), "export.jsonl")
	out, _ := os.Create(p)
	x, _ := NewExportWriter(out, ExportHeader{Origin: testOrigin, FirstSeq: 1, LastSeq: n, Entries: n, Checkpoints: []int64{n},
		From: time.Unix(0, 0), To: time.Now()})
	for _, e := range es {
		_ = x.Entry(e)
	}
	_ = x.Checkpoint(cp)
	_ = x.Close()
	out.Close()
	b.ResetTimer()
	for range b.N {
		f := &File{Path: p}
		if err := f.Open(); err != nil {
			b.Fatal(err)
		}
		rep, err := VerifyFile(context.Background(), f, v, testOrigin, nil)
		if err != nil || !rep.OK() {
			b.Fatal(err, rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func mustHead(t testing.TB, entries []*Entry) TreeHead {
	t.Helper()
	h, err := HeadOf(entries)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
