package witness

import (
	"crypto/rand"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"varsel/audit"
)

// A witness counts once however often (and in whichever key form) its key
// is given, and a cosignature counts only for the checkpoint it signed.
func TestCosignersCountsEachWitnessOnce(t *testing.T) {
	logKey, _, _ := note.GenerateKey(rand.Reader, "varsel")
	logSigner, _ := note.NewSigner(logKey)
	wKey, wVkey, _ := note.GenerateKey(rand.Reader, "witness.example")
	cosigner, err := fnote.NewSignerForCosignatureV1(wKey)
	if err != nil {
		t.Fatal(err)
	}
	cosigVkey, err := fnote.VKeyToCosignatureV1(wVkey)
	if err != nil {
		t.Fatal(err)
	}
	head := audit.TreeHead{Size: 3, Root: make([]byte, 32), Chain: "0000000000000000000000000000000000000000000000000000000000000003"}
	text, err := audit.CheckpointText("varsel/audit", head)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: text}, logSigner, cosigner)
	if err != nil {
		t.Fatal(err)
	}
	n, err := VerifyCosignatures(string(signed), []string{cosigVkey, cosigVkey, wVkey}, 0)
	if err != nil || n != 1 {
		t.Fatalf("one witness given three times counted %d (%v)", n, err)
	}
	other, err := note.Sign(&note.Note{Text: text + "x\n"}, logSigner)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := VerifyCosignatures(string(other), []string{cosigVkey}, 0); n != 0 {
		t.Fatalf("a checkpoint the witness did not sign counted %d", n)
	}
}
