package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"golang.org/x/mod/sumdb/note"
)

// An export is JSON Lines: a header, then one line per entry in seq order,
// then the signed checkpoints that anchor the segment, in count order:
//
//	{"export":{"format":"varsel-audit-export/2","origin":…,"first_seq":A,"last_seq":B,"entries":N,"checkpoints":[…],"from":…,"to":…,"created_at":…}}
//	{"entry":CANONICAL,"hash":"…"}
//	{"checkpoint":{"count":N,"hash":"…","note":"…"}}
//
// CANONICAL is the entry's canonical form (Entry.Canonical: RFC 8785, without
// the hash), byte for byte the text its hash is computed over: hash =
// SHA-256(bytes(prev_hash) || CANONICAL). Every line is exactly what the
// exporter writes for what it says: a reader parses it strictly (exact,
// case-sensitive member names, no duplicates, no unknown members, valid
// UTF-8), writes it again, and refuses it unless the bytes are the same. No
// two different lines therefore stand for the same entry, and what is hashed
// is what anyone reading the file sees.
//
// The exporter widens the requested range to the checkpoints around it, so
// that the segment's first prev_hash and its last hash are both named by
// signed checkpoints: the file can be verified offline, with only the
// broker's public key, by `varsel audit verify --file` (VerifyFile).
const ExportFormat = "varsel-audit-export/2"

// ExportHeader is the first line of an export. Its statements about the
// content (the seq range, the entry count, the checkpoint counts) are
// checked against the lines that follow.
type ExportHeader struct {
	Format      string    `json:"format"`
	Origin      string    `json:"origin"`
	FirstSeq    int64     `json:"first_seq"`
	LastSeq     int64     `json:"last_seq"`
	Entries     int64     `json:"entries"`     // LastSeq-FirstSeq+1
	Checkpoints []int64   `json:"checkpoints"` // the counts of the checkpoint lines, ascending
	From        time.Time `json:"from"`        // the period asked for (informational)
	To          time.Time `json:"to"`
	CreatedAt   time.Time `json:"created_at"`
}

// exportLine is what any line may decode to; exactly one of Export, Entry
// and Checkpoint must be set, and the line must then be the encoding of it.
type exportLine struct {
	Export     *ExportHeader   `json:"export"`
	Entry      *Entry          `json:"entry"`
	Hash       *string         `json:"hash"`
	Checkpoint *checkpointLine `json:"checkpoint"`
}

type checkpointLine struct {
	Count int64  `json:"count"`
	Hash  string `json:"hash"`
	Note  string `json:"note"`
}

// appendHeaderLine writes h as its line (without the newline).
func appendHeaderLine(dst []byte, h *ExportHeader) []byte {
	dst = append(dst, `{"export":{"format":`...)
	dst = appendString(dst, h.Format)
	dst = append(dst, `,"origin":`...)
	dst = appendString(dst, h.Origin)
	dst = append(dst, `,"first_seq":`...)
	dst = strconv.AppendInt(dst, h.FirstSeq, 10)
	dst = append(dst, `,"last_seq":`...)
	dst = strconv.AppendInt(dst, h.LastSeq, 10)
	dst = append(dst, `,"entries":`...)
	dst = strconv.AppendInt(dst, h.Entries, 10)
	dst = append(dst, `,"checkpoints":[`...)
	for i, c := range h.Checkpoints {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, c, 10)
	}
	dst = append(dst, `],"from":`...)
	dst = appendString(dst, h.From.UTC().Format(time.RFC3339Nano))
	dst = append(dst, `,"to":`...)
	dst = appendString(dst, h.To.UTC().Format(time.RFC3339Nano))
	dst = append(dst, `,"created_at":`...)
	dst = appendString(dst, h.CreatedAt.UTC().Format(time.RFC3339Nano))
	return append(dst, "}}"...)
}

// appendEntryLine writes e as its line: the canonical form, then the hash.
func appendEntryLine(dst []byte, e *Entry) []byte {
	dst = append(dst, `{"entry":`...)
	dst = e.Canonical(dst)
	dst = append(dst, `,"hash":`...)
	dst = appendString(dst, e.Hash)
	return append(dst, '}')
}

func appendCheckpointLine(dst []byte, cp *checkpointLine) []byte {
	dst = append(dst, `{"checkpoint":{"count":`...)
	dst = strconv.AppendInt(dst, cp.Count, 10)
	dst = append(dst, `,"hash":`...)
	dst = appendString(dst, cp.Hash)
	dst = append(dst, `,"note":`...)
	dst = appendString(dst, cp.Note)
	return append(dst, "}}"...)
}

// ExportWriter writes an export.
type ExportWriter struct {
	bw  *bufio.Writer
	buf []byte
}

// NewExportWriter starts an export with its header. The header must already
// state what the file will hold (the range, the count, the checkpoints).
func NewExportWriter(w io.Writer, h ExportHeader) (*ExportWriter, error) {
	x := &ExportWriter{bw: bufio.NewWriterSize(w, 1<<20)}
	h.Format = ExportFormat
	if h.Checkpoints == nil {
		h.Checkpoints = []int64{}
	}
	return x, x.line(appendHeaderLine(x.buf[:0], &h))
}

func (x *ExportWriter) line(b []byte) error {
	x.buf = append(b, '\n')
	_, err := x.bw.Write(x.buf)
	return err
}

// Entry writes one entry.
func (x *ExportWriter) Entry(e *Entry) error { return x.line(appendEntryLine(x.buf[:0], e)) }

// Checkpoint writes one checkpoint.
func (x *ExportWriter) Checkpoint(cp Checkpoint) error {
	return x.line(appendCheckpointLine(x.buf[:0], &checkpointLine{Count: cp.Count, Hash: cp.Hash, Note: cp.Note}))
}

// Close flushes the export.
func (x *ExportWriter) Close() error { return x.bw.Flush() }

// File is an export read back: a Source for Verify, without a database.
// Use VerifyFile, which also checks the header against the content.
type File struct {
	Path   string
	Header ExportHeader

	// What the last full pass over the entries saw, for VerifyFile.
	seen struct {
		entries     int64
		first, last int64
	}
	cps []int64 // the checkpoint counts, in file order
}

var _ Source = (*File)(nil)

// Segment tells Verify that the file may start after seq 1.
func (f *File) Segment() bool { return true }

// LineError is a line of an export that is not valid.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Line kinds, in the order they must come in.
const (
	kindHeader = iota
	kindEntry
	kindCheckpoint
)

var kindNames = [...]string{"header", "entry", "checkpoint"}

// decodeLine parses one line strictly and checks that it is byte for byte
// the line the exporter writes for what it decoded to.
func decodeLine(b []byte, scratch []byte) (l exportLine, kind int, _ []byte, err error) {
	// Unmarshal refuses invalid UTF-8 and duplicate names; member names
	// match exactly (case-sensitively), and unknown ones are refused.
	if err := json.Unmarshal(b, &l, json.RejectUnknownMembers(true)); err != nil {
		return l, 0, scratch, lineJSONError(err)
	}
	n := 0
	if l.Export != nil {
		kind, n = kindHeader, n+1
	}
	if l.Entry != nil {
		kind, n = kindEntry, n+1
	}
	if l.Checkpoint != nil {
		kind, n = kindCheckpoint, n+1
	}
	switch {
	case n != 1:
		return l, 0, scratch, errors.New(`not one of an "export", an "entry" or a "checkpoint" line`)
	case kind == kindEntry && l.Hash == nil:
		return l, 0, scratch, errors.New(`entry line without "hash"`)
	case kind == kindEntry && l.Entry.Hash != "":
		return l, 0, scratch, errors.New(`entry line with a "hash" inside "entry"`)
	case kind != kindEntry && l.Hash != nil:
		return l, 0, scratch, fmt.Errorf(`%s line with "hash"`, kindNames[kind])
	}
	switch kind {
	case kindHeader:
		scratch = appendHeaderLine(scratch[:0], l.Export)
	case kindEntry:
		l.Entry.Hash = *l.Hash
		scratch = appendEntryLine(scratch[:0], l.Entry)
	case kindCheckpoint:
		scratch = appendCheckpointLine(scratch[:0], l.Checkpoint)
	}
	if !bytes.Equal(scratch, b) {
		return l, 0, scratch, fmt.Errorf("%s line is not in the exporter's exact form (%s)", kindNames[kind], firstDifference(b, scratch))
	}
	return l, kind, scratch, nil
}

// lineJSONError shortens the JSON package's error for one line.
func lineJSONError(err error) error {
	var se *json.SemanticError
	if errors.As(err, &se) && se.Err != nil {
		if se.JSONPointer != "" && strings.Contains(se.Err.Error(), "unknown object member") {
			return fmt.Errorf("unknown member %q in %q (member names are exact and case-sensitive)",
				se.JSONPointer.LastToken(), cmp.Or(string(se.JSONPointer.Parent()), "/"))
		}
		if se.JSONPointer != "" {
			return fmt.Errorf("at %q: %v", se.JSONPointer, se.Err)
		}
		return se.Err
	}
	return errors.New(strings.TrimPrefix(err.Error(), "jsontext: "))
}

// firstDifference describes where a line departs from its exact form.
func firstDifference(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	if i == len(got) && i < len(want) {
		return fmt.Sprintf("ends at byte %d", i)
	}
	return fmt.Sprintf("differs from byte %d", i)
}

// scan reads every line, strictly, and calls fn for those of the kinds in
// want. Lines must be the header, then entries, then checkpoints; every line
// ends with "\n" (a carriage return is a difference, not a line end).
func (f *File) scan(want func(kind int) bool, fn func(line int, l *exportLine) error) error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	sc.Split(scanLines)
	n, last := 0, -1
	var scratch []byte
	for sc.Scan() {
		n++
		b := sc.Bytes()
		if len(b) == 0 || b[len(b)-1] != '\n' {
			return &LineError{Line: n, Err: errors.New("does not end with a newline (a truncated file?)")}
		}
		b = b[:len(b)-1]
		// Entry lines are most of the file: a pass that does not want them
		// skips them here and leaves their checks to the pass that does.
		if !want(kindEntry) && n > 1 && bytes.HasPrefix(b, []byte(`{"entry":`)) && last <= kindEntry {
			last = kindEntry
			continue
		}
		var l exportLine
		var kind int
		l, kind, scratch, err = decodeLine(b, scratch)
		if err != nil {
			return &LineError{Line: n, Err: err}
		}
		switch {
		case n == 1 && kind != kindHeader:
			return &LineError{Line: 1, Err: fmt.Errorf("not a %s header", ExportFormat)}
		case n > 1 && kind == kindHeader:
			return &LineError{Line: n, Err: errors.New("a second header")}
		case kind < last:
			return &LineError{Line: n, Err: fmt.Errorf("%s line after a %s line", kindNames[kind], kindNames[last])}
		}
		last = kind
		if want(kind) {
			if err := fn(n, &l); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: empty export", f.Path)
	}
	return nil
}

// scanLines splits after each "\n", keeping it, so that a final line
// without one can be told apart and nothing (such as "\r") is dropped.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Open reads and checks the header.
func (f *File) Open() error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	sc.Split(scanLines)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return &LineError{Line: 1, Err: err}
		}
		return fmt.Errorf("%s: empty export", f.Path)
	}
	b := sc.Bytes()
	var probe struct {
		Export struct {
			Format string `json:"format"`
		} `json:"export"`
	}
	// A file of another format is named as such before any strict check.
	if json.Unmarshal(b, &probe) == nil && probe.Export.Format != ExportFormat && probe.Export.Format != "" {
		return &LineError{Line: 1, Err: fmt.Errorf("format %q, not %s: export it again with this version", probe.Export.Format, ExportFormat)}
	}
	if b[len(b)-1] != '\n' {
		return &LineError{Line: 1, Err: errors.New("does not end with a newline (a truncated file?)")}
	}
	l, kind, _, err := decodeLine(b[:len(b)-1], nil)
	if err != nil {
		return &LineError{Line: 1, Err: err}
	}
	if kind != kindHeader || l.Export.Format != ExportFormat {
		return &LineError{Line: 1, Err: fmt.Errorf("not a %s header", ExportFormat)}
	}
	f.Header = *l.Export
	return nil
}

// Entries streams the file's entries. It records what it saw for VerifyFile.
func (f *File) Entries(_ context.Context, fn func(*Entry) error) error {
	f.seen.entries, f.seen.first, f.seen.last = 0, 0, 0
	return f.scan(func(kind int) bool { return kind == kindEntry }, func(_ int, l *exportLine) error {
		e := l.Entry
		if f.seen.entries == 0 {
			f.seen.first = e.Seq
		}
		f.seen.entries++
		f.seen.last = e.Seq
		return fn(e)
	})
}

// Checkpoints returns the file's checkpoints.
func (f *File) Checkpoints(context.Context) ([]Checkpoint, error) {
	var out []Checkpoint
	f.cps = f.cps[:0]
	err := f.scan(func(kind int) bool { return kind == kindCheckpoint }, func(_ int, l *exportLine) error {
		out = append(out, Checkpoint{Count: l.Checkpoint.Count, Hash: l.Checkpoint.Hash, Note: l.Checkpoint.Note})
		f.cps = append(f.cps, l.Checkpoint.Count)
		return nil
	})
	return out, err
}

// HeaderError is an export whose header disagrees with its content or with
// what the verifier expects.
type HeaderError struct{ Problem string }

func (e *HeaderError) Error() string { return "export header: " + e.Problem }

// VerifyFile verifies an export (f opened): Verify over its lines, each of
// which must be in the exporter's exact form, then the header against the
// content (origin, first and last seq, count, checkpoint counts) and, when
// verifier is set, that signed checkpoints of origin name both the hash
// before the first entry (unless it is entry 1) and the last entry's hash.
// trusted are checkpoints kept outside the file (WithCheckpoints). An
// invalid line or a header that disagrees is the error; what is wrong with
// the chain or its checkpoints is in the report.
func VerifyFile(ctx context.Context, f *File, verifier note.Verifier, origin string, trusted []Checkpoint) (*Report, error) {
	if origin == "" {
		return nil, errors.New("no origin to expect")
	}
	var src Source = f
	if len(trusted) > 0 {
		src = WithCheckpoints(f, trusted)
	}
	rep, err := Verify(ctx, src, verifier, origin)
	if le := (*LineError)(nil); errors.As(err, &le) {
		return nil, le
	}
	if err != nil {
		return nil, err
	}
	h := &f.Header
	bad := func(format string, args ...any) (*Report, error) {
		return rep, &HeaderError{Problem: fmt.Sprintf(format, args...)}
	}
	seen := f.seen
	switch {
	case h.Origin != origin:
		return bad("origin is %q, not %q (pass --origin or --broker-id to verify another broker's export)", h.Origin, origin)
	case seen.entries == 0:
		return bad("the file has no entries")
	case h.FirstSeq < 1 || h.LastSeq < h.FirstSeq:
		return bad("first_seq %d and last_seq %d are not a range", h.FirstSeq, h.LastSeq)
	case seen.first != h.FirstSeq:
		return bad("first_seq is %d but the first entry is %d", h.FirstSeq, seen.first)
	case seen.last != h.LastSeq:
		return bad("last_seq is %d but the last entry is %d", h.LastSeq, seen.last)
	case h.Entries != h.LastSeq-h.FirstSeq+1:
		return bad("entries is %d but seqs %d..%d are %d", h.Entries, h.FirstSeq, h.LastSeq, h.LastSeq-h.FirstSeq+1)
	case seen.entries != h.Entries:
		return bad("entries is %d but the file has %d entry lines", h.Entries, seen.entries)
	case !slices.Equal(h.Checkpoints, f.cps):
		return bad("checkpoints are %v but the file's checkpoint lines are at %v", h.Checkpoints, f.cps)
	case !h.To.After(h.From):
		return bad("the period %s..%s is empty", h.From.Format(time.RFC3339), h.To.Format(time.RFC3339))
	}
	for i, c := range f.cps {
		if i > 0 && c <= f.cps[i-1] {
			return bad("checkpoint lines are not in ascending count order (%d after %d)", c, f.cps[i-1])
		}
		if c < h.FirstSeq-1 || c > h.LastSeq || c < 1 {
			return bad("the checkpoint at %d lies outside the exported seqs %d..%d", c, h.FirstSeq, h.LastSeq)
		}
	}
	if verifier != nil && rep.OK() {
		// Anchors: both ends of the segment are named by signed checkpoints
		// (the file's or trusted ones; Verify checked each that is there).
		at := map[int64]bool{}
		for _, c := range f.cps {
			at[c] = true
		}
		for _, cp := range trusted {
			at[cp.Count] = true
		}
		if h.FirstSeq > 1 && !at[h.FirstSeq-1] {
			rep.fail(h.FirstSeq, "the export's first prev_hash is not named by a signed checkpoint (none at %d)", h.FirstSeq-1)
		}
		if !at[h.LastSeq] {
			rep.fail(h.LastSeq, "the export's last entries are not covered by a signed checkpoint (none at %d)", h.LastSeq)
		}
	}
	return rep, nil
}

// EntryLine appends e as an export writes it, without the line feed:
// {"entry":CANONICAL,"hash":"…"}. Entry bundles (C2SP tlog-tiles) carry
// entries in this form.
func EntryLine(dst []byte, e *Entry) []byte { return appendEntryLine(dst, e) }

// ParseEntryLine reads one entry in the form EntryLine writes, as strictly
// as an export reader does, and checks that its contents hash to its hash
// given its prev_hash.
func ParseEntryLine(b []byte) (*Entry, error) {
	l, kind, _, err := decodeLine(b, nil)
	if err != nil {
		return nil, err
	}
	if kind != kindEntry {
		return nil, fmt.Errorf("a %s line, not an entry", kindNames[kind])
	}
	if h, _ := l.Entry.ComputeHash(nil); h != l.Entry.Hash {
		return nil, fmt.Errorf("entry %d does not hash to its hash", l.Entry.Seq)
	}
	return l.Entry, nil
}
