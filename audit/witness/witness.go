// Package witness is a C2SP tlog-witness: it cosigns a log's checkpoints
// (C2SP tlog-cosignature, Ed25519 cosignature/v1) only when each one is
// consistent with the last one it cosigned for that log, so that a log
// operator who rewrites history, or shows different histories to different
// people, is caught by anyone who checks for the witness's cosignature.
//
// The package has the witness's HTTP server (POST /add-checkpoint, and
// GET /<origin hash>/checkpoint for monitors), the client a log uses to
// submit checkpoints, and VerifyCosignatures for verifiers.
package witness

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
)

// Limits of a request (tlog-witness: at most 63 proof lines).
const (
	maxProofLines = 63
	maxBody       = 64 << 10
	hashSize      = 32
)

// SizeContentType is the type of a 409 answer's body: the witness's size.
const SizeContentType = "text/x.tlog.size"

// Log is a log the witness cosigns: its origin line and the key(s) its
// checkpoints must be signed with.
type Log struct {
	Origin    string
	Verifiers []note.Verifier
}

// Config is a witness's configuration.
type Config struct {
	// Signer makes the cosignatures (NewSigner).
	Signer note.Signer
	Logs   []Log
	// StatePath is the file holding the latest cosigned checkpoint of
	// each log; it is replaced atomically before each answer.
	StatePath string
	Logger    *slog.Logger
}

// logState is what the witness keeps of one log.
type logState struct {
	Size uint64 `json:"size"`
	Root []byte `json:"root"`
	// Checkpoint is the latest cosigned checkpoint: the log's signature
	// lines the witness verified, and its own cosignature.
	Checkpoint string `json:"checkpoint"`
}

type stateFile struct {
	Logs map[string]logState `json:"logs"`
}

// Server is the witness's HTTP interface.
type Server struct {
	signer note.Signer
	logs   map[string]note.Verifiers
	path   string
	log    *slog.Logger

	mu    sync.Mutex // check-and-persist is one step (the spec's race)
	state map[string]logState
}

// New reads the state file (a missing one is an empty state) and returns
// the witness.
func New(cfg Config) (*Server, error) {
	if cfg.Signer == nil {
		return nil, errors.New("witness: no cosigner key")
	}
	if cfg.StatePath == "" {
		return nil, errors.New("witness: no state file")
	}
	s := &Server{signer: cfg.Signer, logs: map[string]note.Verifiers{}, path: cfg.StatePath,
		log: cfg.Logger, state: map[string]logState{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	byOrigin := map[string][]note.Verifier{}
	for _, l := range cfg.Logs {
		if l.Origin == "" || strings.ContainsAny(l.Origin, "\n") || len(l.Verifiers) == 0 {
			return nil, fmt.Errorf("witness: log %q needs an origin line and a key", l.Origin)
		}
		byOrigin[l.Origin] = append(byOrigin[l.Origin], l.Verifiers...)
	}
	for o, vs := range byOrigin {
		s.logs[o] = note.VerifierList(vs...)
	}
	b, err := os.ReadFile(cfg.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("witness: read state: %w", err)
	default:
		var f stateFile
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("witness: state file %s: %w", cfg.StatePath, err)
		}
		for o, st := range f.Logs {
			if len(st.Root) != hashSize {
				return nil, fmt.Errorf("witness: state file %s: log %q has a root of %d bytes", cfg.StatePath, o, len(st.Root))
			}
			s.state[o] = st
		}
	}
	return s, nil
}

// Latest returns the size and root of the latest checkpoint cosigned for
// origin (ok false: none).
func (s *Server) Latest(origin string) (size uint64, root []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[origin]
	return st.Size, st.Root, ok
}

// ServeHTTP serves POST /add-checkpoint and GET /<origin hash>/checkpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/add-checkpoint" {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "add-checkpoint takes a POST", http.StatusMethodNotAllowed)
			return
		}
		s.addCheckpoint(w, r)
		return
	}
	if h, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/checkpoint"); ok && r.Method == http.MethodGet {
		s.checkpoint(w, h)
		return
	}
	http.NotFound(w, r)
}

// fail is a refusal: its status and the sentence naming what failed.
type fail struct {
	status int
	msg    string
}

func refuse(status int, format string, args ...any) *fail {
	return &fail{status: status, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) addCheckpoint(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "request body too large or unreadable", http.StatusBadRequest)
		return
	}
	lines, conflict, f := s.add(body)
	switch {
	case f != nil:
		http.Error(w, f.msg, f.status)
	case conflict != nil:
		w.Header().Set("Content-Type", SizeContentType)
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, "%d\n", *conflict)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(lines)
	}
}

// add checks a request body and cosigns its checkpoint. It returns the
// cosignature lines, or the witness's size on a conflict, or a refusal.
func (s *Server) add(body []byte) ([]byte, *uint64, *fail) {
	old, proofHashes, msg, f := parseRequest(body)
	if f != nil {
		return nil, nil, f
	}
	origin, _, _ := strings.Cut(string(msg), "\n")
	verifiers, ok := s.logs[origin]
	if !ok {
		return nil, nil, refuse(http.StatusNotFound, "unknown log origin %q", origin)
	}
	n, err := note.Open(msg, verifiers)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return nil, nil, refuse(http.StatusForbidden, "the checkpoint's signature by %s does not verify", invalid.Name)
		case errors.As(err, &unverified):
			return nil, nil, refuse(http.StatusForbidden, "the checkpoint is not signed by a key this witness trusts for %q", origin)
		}
		return nil, nil, refuse(http.StatusBadRequest, "the checkpoint is not a signed note: %v", err)
	}
	size, root, f := parseCheckpoint(n.Text)
	if f != nil {
		return nil, nil, f
	}
	if old > size {
		return nil, nil, refuse(http.StatusBadRequest, "old size %d is larger than the checkpoint's size %d", old, size)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	st, seen := s.state[origin]
	if old != st.Size {
		return nil, &st.Size, nil
	}
	bad := func(format string, args ...any) *fail {
		f := refuse(http.StatusUnprocessableEntity, format, args...)
		// A validly signed checkpoint that fails the checks may be evidence
		// of the log's misbehaviour: it is logged (hashes only).
		s.log.Warn("witness refused a signed checkpoint: possible log misbehaviour",
			"origin", origin, "size", size, "old", old, "witness_size", st.Size, "reason", f.msg, "checkpoint", string(msg))
		return f
	}
	switch {
	case size == 0 && !bytes.Equal(root, rfc6962.DefaultHasher.EmptyRoot()):
		return nil, nil, bad("a checkpoint of size 0 must have the empty tree's root")
	case old == 0 && len(proofHashes) > 0:
		return nil, nil, bad("old size 0 takes no consistency proof, got %d lines", len(proofHashes))
	case seen && old == size && !bytes.Equal(root, st.Root):
		return nil, nil, bad("fork: the checkpoint at size %d has another root than the one cosigned at that size", size)
	case old > 0:
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, size, proofHashes, st.Root, root); err != nil {
			why := strings.Join(strings.Fields(err.Error()), " ")
			var mismatch proof.RootMismatchError
			if errors.As(err, &mismatch) {
				why = "it leads to another root"
			}
			return nil, nil, bad("the consistency proof from %d to %d does not verify against the root cosigned at %d: %s", old, size, old, why)
		}
	}
	signed, err := note.Sign(&note.Note{Text: n.Text}, s.signer)
	if err != nil {
		return nil, nil, refuse(http.StatusInternalServerError, "cosign: %v", err)
	}
	cosig := signed[len(n.Text)+1:]
	var kept strings.Builder
	kept.WriteString(n.Text + "\n")
	for _, sig := range n.Sigs {
		fmt.Fprintf(&kept, "— %s %s\n", sig.Name, sig.Base64)
	}
	kept.Write(cosig)
	next := logState{Size: size, Root: root, Checkpoint: kept.String()}
	if err := s.persist(origin, next); err != nil {
		s.log.Error("witness state not written; nothing cosigned", "err", err)
		return nil, nil, refuse(http.StatusInternalServerError, "the witness could not record the checkpoint")
	}
	s.state[origin] = next
	s.log.Info("cosigned", "origin", origin, "size", size, "old", old)
	return cosig, nil, nil
}

// parseRequest reads "old N\n", the proof lines, an empty line, then the
// checkpoint.
func parseRequest(body []byte) (old uint64, hashes [][]byte, msg []byte, f *fail) {
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	sizeText, isOld := strings.CutPrefix(string(line), "old ")
	if !ok || !isOld {
		return 0, nil, nil, refuse(http.StatusBadRequest, "the request does not start with an old size line")
	}
	old, err := parseSize(sizeText)
	if err != nil {
		return 0, nil, nil, refuse(http.StatusBadRequest, "old size %q is not a decimal size", sizeText)
	}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return 0, nil, nil, refuse(http.StatusBadRequest, "the request has no empty line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(hashes) == maxProofLines {
			return 0, nil, nil, refuse(http.StatusBadRequest, "more than %d consistency proof lines", maxProofLines)
		}
		h, err := base64.StdEncoding.DecodeString(string(line))
		if err != nil || len(h) != hashSize {
			return 0, nil, nil, refuse(http.StatusBadRequest, "consistency proof line %d is not a base64 hash", len(hashes)+1)
		}
		hashes = append(hashes, h)
	}
	return old, hashes, rest, nil
}

// parseCheckpoint reads the size and root of a checkpoint body (C2SP
// tlog-checkpoint: origin, size, base64 root, then any extension lines).
func parseCheckpoint(text string) (uint64, []byte, *fail) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return 0, nil, refuse(http.StatusBadRequest, "the checkpoint is not origin, size and root hash lines")
	}
	size, err := parseSize(lines[1])
	if err != nil {
		return 0, nil, refuse(http.StatusBadRequest, "checkpoint size %q is not a decimal size", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != hashSize {
		return 0, nil, refuse(http.StatusBadRequest, "checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	return size, root, nil
}

// parseSize reads a decimal size without leading zeroes.
func parseSize(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s || n > 1<<63-1 {
		return 0, fmt.Errorf("size %q", s)
	}
	return n, nil
}

// persist writes the state with origin at next to a new file, syncs it and
// renames it over the old one.
func (s *Server) persist(origin string, next logState) error {
	f := stateFile{Logs: map[string]logState{}}
	for o, st := range s.state {
		f.Logs[o] = st
	}
	f.Logs[origin] = next
	return audit.WriteStateFile(s.path, f)
}

// checkpoint serves the latest cosigned checkpoint of the log whose
// origin's SHA-256 is hexOrigin (the tlog-witness monitor retrieval).
func (s *Server) checkpoint(w http.ResponseWriter, hexOrigin string) {
	s.mu.Lock()
	var body string
	for o, st := range s.state {
		if h := sha256.Sum256([]byte(o)); hex.EncodeToString(h[:]) == hexOrigin {
			body = st.Checkpoint
		}
	}
	s.mu.Unlock()
	if body == "" {
		http.Error(w, "this witness has cosigned no checkpoint of that log", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, body)
}

// NewSigner reads a witness key (as GenerateKey writes it) into a
// cosignature/v1 signer.
func NewSigner(skey string) (note.Signer, error) {
	s, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	return s, nil
}

// GenerateKey makes an Ed25519 witness key named name: the private key
// (a note signer key) and its cosignature/v1 verifier key (vkey), which
// logs and verifiers configure.
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, v, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", err
	}
	vkey, err = fnote.VKeyToCosignatureV1(v)
	if err != nil {
		return "", "", err
	}
	return skey, vkey, nil
}

// NewVerifier reads a witness's vkey.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("witness key %q: %w", strings.TrimSpace(vkey), err)
	}
	return v, nil
}
