package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// An export is JSON Lines: a header, then one line per entry in seq order,
// then the signed checkpoints that anchor the segment:
//
//	{"export": {"format": "varsel-audit-export/1", "origin": ..., "first_seq": A, "last_seq": B, ...}}
//	{"entry": {...}}
//	{"checkpoint": {"count": N, "hash": "...", "note": "..."}}
//
// The exporter widens the requested range to the checkpoints around it, so
// that the segment's first prev_hash and its last hash are both named by
// signed checkpoints: the file can be verified offline, with only the
// broker's public key, by `varsel audit verify --file`.
const ExportFormat = "varsel-audit-export/1"

// ExportHeader is the first line of an export.
type ExportHeader struct {
	Format    string    `json:"format"`
	Origin    string    `json:"origin"`
	FirstSeq  int64     `json:"first_seq"`
	LastSeq   int64     `json:"last_seq"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	CreatedAt time.Time `json:"created_at"`
}

type exportLine struct {
	Export     *ExportHeader   `json:"export,omitempty"`
	Entry      *Entry          `json:"entry,omitempty"`
	Checkpoint *checkpointLine `json:"checkpoint,omitempty"`
}

type checkpointLine struct {
	Count int64  `json:"count"`
	Hash  string `json:"hash"`
	Note  string `json:"note"`
}

// ExportWriter writes an export.
type ExportWriter struct {
	enc *json.Encoder
	bw  *bufio.Writer
}

// NewExportWriter starts an export with its header.
func NewExportWriter(w io.Writer, h ExportHeader) (*ExportWriter, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	h.Format = ExportFormat
	if err := enc.Encode(exportLine{Export: &h}); err != nil {
		return nil, err
	}
	return &ExportWriter{enc: enc, bw: bw}, nil
}

// Entry writes one entry.
func (x *ExportWriter) Entry(e *Entry) error { return x.enc.Encode(exportLine{Entry: e}) }

// Checkpoint writes one checkpoint.
func (x *ExportWriter) Checkpoint(cp Checkpoint) error {
	return x.enc.Encode(exportLine{Checkpoint: &checkpointLine{Count: cp.Count, Hash: cp.Hash, Note: cp.Note}})
}

// Close flushes the export.
func (x *ExportWriter) Close() error { return x.bw.Flush() }

// File is an export read back: a Source for Verify, without a database.
type File struct {
	Path   string
	Header ExportHeader
}

var _ Source = (*File)(nil)

// Segment tells Verify that the file may start after seq 1.
func (f *File) Segment() bool { return true }

func (f *File) scan(fn func(line int, l *exportLine) error) error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		var l exportLine
		dec := json.NewDecoder(bytesReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return &LineError{Line: n, Err: err}
		}
		if err := fn(n, &l); err != nil {
			return err
		}
	}
	return sc.Err()
}

// LineError is a line of an export that is not valid.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Open reads and checks the header.
func (f *File) Open() error {
	found := false
	err := f.scan(func(line int, l *exportLine) error {
		if line == 1 {
			if l.Export == nil || l.Export.Format != ExportFormat {
				return &LineError{Line: 1, Err: fmt.Errorf("not a %s file", ExportFormat)}
			}
			f.Header, found = *l.Export, true
		}
		return errStop
	})
	if err == errStop && found {
		return nil
	}
	if err == nil || err == errStop {
		return fmt.Errorf("%s: empty export", f.Path)
	}
	return err
}

var errStop = fmt.Errorf("stop")

// Entries streams the file's entries.
func (f *File) Entries(_ context.Context, fn func(*Entry) error) error {
	return f.scan(func(_ int, l *exportLine) error {
		if l.Entry == nil {
			return nil
		}
		if l.Entry.FlagIDs == nil {
			l.Entry.FlagIDs = []string{}
		}
		if l.Entry.Reasons == nil {
			l.Entry.Reasons = []string{}
		}
		return fn(l.Entry)
	})
}

// Checkpoints returns the file's checkpoints.
func (f *File) Checkpoints(context.Context) ([]Checkpoint, error) {
	var out []Checkpoint
	err := f.scan(func(_ int, l *exportLine) error {
		if l.Checkpoint != nil {
			out = append(out, Checkpoint{Count: l.Checkpoint.Count, Hash: l.Checkpoint.Hash, Note: l.Checkpoint.Note})
		}
		return nil
	})
	return out, err
}
