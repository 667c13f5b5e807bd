package witness

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

const origin = "varsel/audit"

// logKey is a log's note key pair.
type logKey struct {
	signer note.Signer
	vkey   string
}

func newLogKey(t *testing.T, name string) logKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return logKey{signer: s, vkey: vkey}
}

// tree is a log of n leaves ("leaf i", prefixed to make forks).
func tree(n int, prefix string) *testonly.Tree {
	t := testonly.New(rfc6962.DefaultHasher)
	for i := 0; i < n; i++ {
		t.AppendData([]byte(fmt.Sprintf("%sleaf %d", prefix, i)))
	}
	return t
}

// checkpoint signs the tree at size with k, with Varsel's extension line.
func checkpoint(t *testing.T, k logKey, origin string, size uint64, root []byte) []byte {
	t.Helper()
	text := fmt.Sprintf("%s\n%d\n%s\nvarsel-chain %064x\n", origin, size, base64.StdEncoding.EncodeToString(root), size)
	b, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	t      *testing.T
	url    string
	state  string
	log    logKey
	vkey   string // the witness's
	server *Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	skey, vkey, err := GenerateKey("witness.example/w1")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, state: filepath.Join(t.TempDir(), "state.json"), log: newLogKey(t, "varsel"), vkey: vkey}
	f.start(skey)
	return f
}

func (f *fixture) start(skey string) {
	signer, err := NewSigner(skey)
	if err != nil {
		f.t.Fatal(err)
	}
	lv, err := note.NewVerifier(f.log.vkey)
	if err != nil {
		f.t.Fatal(err)
	}
	f.server, err = New(Config{Signer: signer, StatePath: f.state, Logs: []Log{{Origin: origin, Verifiers: []note.Verifier{lv}}}})
	if err != nil {
		f.t.Fatal(err)
	}
	srv := httptest.NewServer(f.server)
	f.t.Cleanup(srv.Close)
	f.url = srv.URL
}

// submit sends a checkpoint and returns the cosignature lines or the error.
func (f *fixture) submit(old uint64, proof [][]byte, cp []byte) ([]byte, error) {
	return Submit(context.Background(), f.url, old, proof, cp)
}

// cosign submits and requires a cosignature that verifies.
func (f *fixture) cosign(old uint64, proof [][]byte, cp []byte) {
	f.t.Helper()
	lines, err := f.submit(old, proof, cp)
	if err != nil {
		f.t.Fatalf("submit old %d: %v", old, err)
	}
	if n, err := VerifyCosignatures(string(cp)+string(lines), []string{f.vkey}, 1); err != nil || n != 1 {
		f.t.Fatalf("cosignature %q: %d, %v", lines, n, err)
	}
}

// refused requires a refusal with status naming want.
func (f *fixture) refused(name string, status int, want string, old uint64, proof [][]byte, cp []byte) {
	f.t.Helper()
	_, err := f.submit(old, proof, cp)
	var r *RefusedError
	if !errors.As(err, &r) || r.Status != status || !strings.Contains(r.Message, want) {
		f.t.Errorf("%s: got %v, want %d naming %q", name, err, status, want)
	}
}

func (f *fixture) conflict(name string, want uint64, old uint64, proof [][]byte, cp []byte) {
	f.t.Helper()
	_, err := f.submit(old, proof, cp)
	var c *ConflictError
	if !errors.As(err, &c) || c.Size != want {
		f.t.Errorf("%s: got %v, want 409 with size %d", name, err, want)
	}
}

func mustProof(t *testing.T, tr *testonly.Tree, from, to uint64) [][]byte {
	t.Helper()
	p, err := tr.ConsistencyProof(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWitnessCosignsConsistentCheckpoints(t *testing.T) {
	f := newFixture(t)
	tr := tree(20, "")
	f.cosign(0, nil, checkpoint(t, f.log, origin, 7, tr.HashAt(7)))
	// The same checkpoint again, and an extension with its proof.
	f.cosign(7, nil, checkpoint(t, f.log, origin, 7, tr.HashAt(7)))
	f.cosign(7, mustProof(t, tr, 7, 20), checkpoint(t, f.log, origin, 20, tr.HashAt(20)))
	if size, root, ok := f.server.Latest(origin); !ok || size != 20 || string(root) != string(tr.HashAt(20)) {
		t.Fatalf("latest %d %x %v", size, root, ok)
	}
	// A client that does not know the witness's size learns it from 409.
	f.conflict("old 0 after 20", 20, 0, nil, checkpoint(t, f.log, origin, 20, tr.HashAt(20)))

	// The state survives a restart: the file was written before answering.
	skey, _, _ := GenerateKey("witness.example/w1")
	f.start(skey)
	f.conflict("after restart", 20, 7, mustProof(t, tr, 7, 20), checkpoint(t, f.log, origin, 20, tr.HashAt(20)))

	// Monitors read the latest cosigned checkpoint by the origin's hash.
	resp, err := http.Get(f.url + "/" + originHash(origin) + "/checkpoint")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("monitor checkpoint: %v %v", err, resp)
	}
	resp.Body.Close()
}

func originHash(o string) string {
	h := sha256.Sum256([]byte(o))
	return fmt.Sprintf("%x", h)
}

// TestWitnessRefusesMaliciousInput: each way a log (or anyone) may try to
// get a cosignature on an inconsistent or unauthentic checkpoint is refused
// with the status tlog-witness gives it, naming what failed, and nothing
// changes in the witness's state.
func TestWitnessRefusesMaliciousInput(t *testing.T) {
	f := newFixture(t)
	tr := tree(40, "")
	fork := tree(40, "forged ")
	f.cosign(0, nil, checkpoint(t, f.log, origin, 10, tr.HashAt(10)))

	good := checkpoint(t, f.log, origin, 20, tr.HashAt(20))
	goodProof := mustProof(t, tr, 10, 20)

	// Bad signature: the text changed after signing (a known key's
	// signature that does not verify), or signed by a key it does not trust.
	tampered := []byte(strings.Replace(string(good), "\n20\n", "\n21\n", 1))
	f.refused("tampered checkpoint", 403, "does not verify", 10, goodProof, tampered)
	other := newLogKey(t, "varsel")
	f.refused("unknown key", 403, "not signed by a key this witness trusts", 10, goodProof, checkpoint(t, other, origin, 20, tr.HashAt(20)))
	f.refused("unknown origin", 404, `unknown log origin "elsewhere/audit"`, 10, goodProof, checkpoint(t, f.log, "elsewhere/audit", 20, tr.HashAt(20)))

	// A tree that shrinks: with the witness's size as old size it is a bad
	// request (old > new); with a smaller old size a conflict naming 10.
	smaller := checkpoint(t, f.log, origin, 5, tr.HashAt(5))
	f.refused("shrink, old 10", 400, "old size 10 is larger than the checkpoint's size 5", 10, nil, smaller)
	f.conflict("shrink, old 5", 10, 5, nil, smaller)
	f.conflict("stale old size", 10, 3, mustProof(t, tr, 3, 20), good)

	// A fork: the same size with another root, validly signed.
	f.refused("fork", 422, "fork: the checkpoint at size 10 has another root", 10, nil, checkpoint(t, f.log, origin, 10, fork.HashAt(10)))
	// A proof that does not link: tampered, from the wrong size, or a
	// correct proof for a forked tree.
	bad := append([][]byte{}, goodProof...)
	bad[0] = tr.HashAt(3)
	f.refused("tampered proof", 422, "consistency proof from 10 to 20 does not verify", 10, bad, good)
	f.refused("proof for other sizes", 422, "does not verify", 10, mustProof(t, tr, 11, 20), good)
	f.refused("forked history", 422, "does not verify", 10, mustProof(t, fork, 10, 20), checkpoint(t, f.log, origin, 20, fork.HashAt(20)))
	f.refused("no proof", 422, "does not verify", 10, nil, good)

	// Malformed requests.
	post := func(name, body string, want int, sub string) {
		t.Helper()
		resp, err := http.Post(f.url+"/add-checkpoint", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(b[:n]), sub) {
			t.Errorf("%s: %d %q, want %d naming %q", name, resp.StatusCode, b[:n], want, sub)
		}
	}
	post("no old line", string(good), 400, "old size line")
	post("leading zero", "old 010\n\n"+string(good), 400, "not a decimal size")
	post("proof not base64", "old 10\nnot-base64!\n\n"+string(good), 400, "proof line 1 is not a base64 hash")
	post("no empty line", "old 10\n", 400, "no empty line")
	many := strings.Repeat(base64.StdEncoding.EncodeToString(tr.HashAt(1))+"\n", 64)
	post("64 proof lines", "old 10\n"+many+"\n"+string(good), 400, "more than 63")
	post("not a note", "old 10\n\nvarsel/audit\n20\n", 400, "not a signed note")
	post("bad root", "old 10\n\n"+string(checkpoint(t, f.log, origin, 20, []byte("short"))), 400, "is not a base64 SHA-256 hash")

	// After all that the witness still stands at 10 with the true root,
	// and cosigns the honest extension.
	if size, root, _ := f.server.Latest(origin); size != 10 || string(root) != string(tr.HashAt(10)) {
		t.Fatalf("state moved to %d", size)
	}
	f.cosign(10, goodProof, good)
}

func TestWitnessFreshLogChecks(t *testing.T) {
	f := newFixture(t)
	tr := tree(4, "")
	f.refused("size 0, wrong root", 422, "empty tree's root", 0, nil, checkpoint(t, f.log, origin, 0, tr.HashAt(4)))
	f.refused("old 0 with a proof", 422, "takes no consistency proof", 0, mustProof(t, tr, 2, 4), checkpoint(t, f.log, origin, 4, tr.HashAt(4)))
	f.cosign(0, nil, checkpoint(t, f.log, origin, 0, rfc6962.DefaultHasher.EmptyRoot()))
	f.cosign(0, nil, checkpoint(t, f.log, origin, 4, tr.HashAt(4)))
}

func TestWitnessStateNotWrittenMeansNoCosignature(t *testing.T) {
	f := newFixture(t)
	tr := tree(4, "")
	os.MkdirAll(f.state, 0o700) // the state path is now a directory: rename fails
	f.refused("unwritable state", 500, "could not record", 0, nil, checkpoint(t, f.log, origin, 4, tr.HashAt(4)))
	if _, _, ok := f.server.Latest(origin); ok {
		t.Fatal("state changed without being written")
	}
}

func TestVerifyCosignaturesNamesWhatFailed(t *testing.T) {
	f := newFixture(t)
	tr := tree(4, "")
	cp := checkpoint(t, f.log, origin, 4, tr.HashAt(4))
	lines, err := f.submit(0, nil, cp)
	if err != nil {
		t.Fatal(err)
	}
	_, missing, _ := GenerateKey("witness.example/w2")
	full := string(cp) + string(lines)
	if n, err := VerifyCosignatures(full, []string{f.vkey, missing, f.vkey}, 1); n != 1 || err != nil {
		t.Fatalf("one of two: %d %v", n, err)
	}
	if _, err := VerifyCosignatures(full, []string{f.vkey, missing}, 2); err == nil ||
		err.Error() != "1 of 2 required witness cosignatures on the checkpoint (witness.example/w2: no cosignature)" {
		t.Fatalf("two required: %v", err)
	}
	// A cosignature over another checkpoint does not count.
	other := strings.Replace(full, "varsel-chain 0000", "varsel-chain 1111", 1)
	if _, err := VerifyCosignatures(other, []string{f.vkey}, 1); err == nil || !strings.Contains(err.Error(), "witness.example/w1: cosignature does not verify") {
		t.Fatalf("moved cosignature: %v", err)
	}
	if _, err := VerifyCosignatures(full, []string{f.vkey}, 2); err == nil {
		t.Fatal("more required than keys")
	}
	// Cosignature picks the witness's line out of an answer.
	v, _ := NewVerifier(f.vkey)
	line, err := Cosignature(cp, lines, v)
	if err != nil || line != string(lines) {
		t.Fatalf("cosignature line %q: %v", line, err)
	}
}
