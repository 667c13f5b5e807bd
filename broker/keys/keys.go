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

// SubjectKey reads subject.key, the only version ("1") a key directory
// has; rotation needs a source with versions (Vault).
func (d *Dir) SubjectKey(_ context.Context, version string) ([]byte, string, error) {
	if version != "" && version != "1" {
		return nil, "", fmt.Errorf("subject key version %q: a key directory has only version 1", version)
	}
	k, err := os.ReadFile(d.subjectPath())
	if err != nil {
		return nil, "", fmt.Errorf("read subject key: %w", err)
	}
	if len(k) != subjectKeyBytes {
		return nil, "", fmt.Errorf("subject key %s: want %d bytes, have %d", d.subjectPath(), subjectKeyBytes, len(k))
	}
	return k, "1", nil
}

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
