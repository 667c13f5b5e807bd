package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExportFile feeds the export reader (varsel audit verify --file)
// arbitrary files, seeded with a valid export and near misses of it. It
// must never panic, and since only this test's key signs, a file it
// accepts can hold nothing but entry lines of the log that key signed.
func FuzzExportFile(f *testing.F) {
	signer, verifier := testKey(&testing.T{}, "varsel/audit")
	l := newTestLog(&testing.T{}, signer, "varsel/audit")
	valid := l.export(&testing.T{}, "varsel/audit", 11, 30)
	known := map[string]bool{}
	for _, line := range l.export(&testing.T{}, "varsel/audit", 1, 30) {
		known[line] = true
	}
	whole := strings.Join(valid, "")
	f.Add([]byte(whole))
	f.Add([]byte(strings.Join(valid[:len(valid)-1], "")))                         // a checkpoint missing
	f.Add([]byte(strings.Join(append([]string{valid[0]}, valid[2:]...), "")))     // an entry missing
	f.Add([]byte(strings.Replace(whole, `"actor":"kari"`, `"actor":"kari2"`, 1))) // an entry changed
	f.Add([]byte(strings.Replace(whole, `"actor":"kari"`, `"ACTOR":"kari"`, 1)))  // a name misspelt
	f.Add([]byte(strings.Replace(whole, `{"entry":`, `{"entry":{},"entry":`, 1))) // a name twice
	f.Add([]byte(strings.TrimSuffix(whole, "\n")))                                // truncated
	f.Add([]byte("{}\n"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		tmp, err := os.CreateTemp(dir, "export-*.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		path := tmp.Name()
		defer os.Remove(path)
		if _, err := tmp.Write(data); err != nil {
			t.Fatal(err)
		}
		tmp.Close()
		file := &File{Path: filepath.Clean(path)}
		if err := file.Open(); err != nil {
			return
		}
		rep, err := VerifyFile(context.Background(), file, verifier, "varsel/audit", nil)
		if err != nil || !rep.OK() {
			return
		}
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if strings.HasPrefix(line, `{"entry":`) && !known[line] {
				t.Fatalf("accepted an entry line the log never had: %q", line)
			}
		}
	})
}
