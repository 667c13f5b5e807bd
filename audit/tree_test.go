package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/testonly"
)

// The tree over entry hashes is RFC 6962's: its root at every size is the
// root transparency-dev/merkle's reference tree gives for the same leaves
// (the 32 hash bytes), and LoadTree continues it exactly.
func TestTreeIsRFC6962(t *testing.T) {
	ref := testonly.New(Hasher)
	tree := NewTree()
	for i := range 600 {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		ref.AppendData(sum[:])
		if _, err := tree.AppendEntry(hex.EncodeToString(sum[:]), nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tree.Root(), ref.Hash()) {
			t.Fatalf("root at size %d differs from the reference", i+1)
		}
		again, err := LoadTree(tree.Size(), tree.Hashes())
		if err != nil || !bytes.Equal(again.Root(), tree.Root()) {
			t.Fatalf("reloaded tree at %d: %v", i+1, err)
		}
	}
	if _, err := tree.AppendEntry("zz", nil); err == nil {
		t.Fatal("a hash that is not hex was added")
	}
}

func BenchmarkTreeAppendEntry(b *testing.B) {
	sum := sha256.Sum256([]byte("x"))
	h := hex.EncodeToString(sum[:])
	tree := NewTree()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tree.AppendEntry(h, nil); err != nil {
			b.Fatal(err)
		}
	}
}
