// Package keys provides the broker's secrets: the subject key that turns a
// national id into a subject_ref (HMAC-SHA256), and the signer of audit
// checkpoints (Ed25519, in the signed-note format of
// golang.org/x/mod/sumdb/note). The embedded default keeps both in files
// under a directory, generated on first start; production takes them from
// Vault (its own implementation of Source).
package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Source gives the broker its keys.
type Source interface {
	// SubjectKey returns a version of the HMAC key for subject refs ("" for
	// the latest) and the version it returned.
	SubjectKey(ctx context.Context, version string) (key []byte, got string, err error)
	// CheckpointSigner returns the signer of audit checkpoints and its
	// verifier key in note format (name+hash+base64 public key).
	CheckpointSigner(ctx context.Context) (note.Signer, string, error)
	// Ping reports whether the source is reachable.
	Ping(ctx context.Context) error
	// Close stops what the source runs in the background (token renewal).
	Close() error
}

// Dir is a Source of key files in one directory: subject.key (32 random
// bytes) and checkpoint.key (a note signer key). Missing files are created
// with mode 0600.
type Dir struct {
	Path string
	Name string // the signer's name, the checkpoint origin's key name
}

var _ Source = (*Dir)(nil)

const subjectKeyBytes = 32

// Open creates the directory and any missing key in it.
func (d *Dir) Open() error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return fmt.Errorf("create key directory %s: %w", d.Path, err)
	}
	if _, err := os.Stat(d.subjectPath()); errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, subjectKeyBytes)
		if _, err := rand.Read(k); err != nil {
			return err
		}
		if err := writeNew(d.subjectPath(), k); err != nil {
			return err
		}
	}
	if _, err := os.Stat(d.signerPath()); errors.Is(err, fs.ErrNotExist) {
		skey, _, err := note.GenerateKey(rand.Reader, d.Name)
		if err != nil {
			return fmt.Errorf("generate checkpoint key: %w", err)
		}
		if err := writeNew(d.signerPath(), []byte(skey+"\n")); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dir) subjectPath() string { return filepath.Join(d.Path, "subject.key") }
func (d *Dir) signerPath() string  { return filepath.Join(d.Path, "checkpoint.key") }

func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return f.Close()
}

// SubjectKey reads a version of the subject key: version 1 is subject.key,
// version N > 1 is subject.N.key (written by NewSubjectKey, for rotating
// in development and tests); "" is the newest.
func (d *Dir) SubjectKey(_ context.Context, version string) ([]byte, string, error) {
	n := 0
	if version == "" {
		n = d.newestSubjectVersion()
	} else if v, err := strconv.Atoi(version); err == nil && v >= 1 && strconv.Itoa(v) == version {
		n = v
	} else {
		return nil, "", fmt.Errorf("subject key version %q: a key directory numbers its versions 1, 2, ...", version)
	}
	path := d.subjectVersionPath(n)
	k, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read subject key version %d: %w", n, err)
	}
	if len(k) != subjectKeyBytes {
		return nil, "", fmt.Errorf("subject key %s: want %d bytes, have %d", path, subjectKeyBytes, len(k))
	}
	return k, strconv.Itoa(n), nil
}

// NewSubjectKey writes a new, newest version of the subject key and
// returns it. Rotating to it is `varsel keys rotate-subject`.
func (d *Dir) NewSubjectKey() (string, error) {
	n := d.newestSubjectVersion() + 1
	k := make([]byte, subjectKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	if err := writeNew(d.subjectVersionPath(n), k); err != nil {
		return "", err
	}
	return strconv.Itoa(n), nil
}

func (d *Dir) subjectVersionPath(n int) string {
	if n == 1 {
		return d.subjectPath()
	}
	return filepath.Join(d.Path, fmt.Sprintf("subject.%d.key", n))
}

func (d *Dir) newestSubjectVersion() int {
	n := 1
	for {
		if _, err := os.Stat(d.subjectVersionPath(n + 1)); err != nil {
			return n
		}
		n++
	}
}

// Close releases nothing: a key directory holds no connections.
func (d *Dir) Close() error { return nil }

// CheckpointSigner reads checkpoint.key.
func (d *Dir) CheckpointSigner(context.Context) (note.Signer, string, error) {
	b, err := os.ReadFile(d.signerPath())
	if err != nil {
		return nil, "", fmt.Errorf("read checkpoint key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("parse checkpoint key %s: %w", d.signerPath(), err)
	}
	vkey, err := VerifierKey(skey)
	if err != nil {
		return nil, "", err
	}
	return s, vkey, nil
}

// Ping checks the key files are readable.
func (d *Dir) Ping(context.Context) error {
	for _, p := range []string{d.subjectPath(), d.signerPath()} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("key file: %w", err)
		}
	}
	return nil
}
