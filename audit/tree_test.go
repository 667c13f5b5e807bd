package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func testHashes(n int) []string {
	out := make([]string, n)
	for i := range out {
		h := sha256.Sum256([]byte(fmt.Sprint("entry ", i)))
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

// The root builder Verify uses gives Tree's root at every size, and
// refuses what Tree.AppendEntry refuses.
func TestRootBuilderMatchesTree(t *testing.T) {
	var b rootBuilder
	if !bytes.Equal(b.root(), NewTree().Root()) {
		t.Fatal("empty root")
	}
	tree := NewTree()
	for i, h := range testHashes(1100) {
		if i%7 == 3 {
			h = strings.ToUpper(h) // hex.DecodeString takes either case
		}
		if _, err := tree.AppendEntry(h, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.appendEntry(h); err != nil {
			t.Fatal(err)
		}
		if b.size != tree.Size() || !bytes.Equal(b.root(), tree.Root()) {
			t.Fatalf("size %d: root %x, Tree's %x", tree.Size(), b.root(), tree.Root())
		}
	}
	good := testHashes(1)[0]
	for _, bad := range []string{"", good[:62], good + "00", good[:63] + "g", "zz" + good[2:], good[:10] + " " + good[11:]} {
		_, errTree := NewTree().AppendEntry(bad, nil)
		var nb rootBuilder
		err := nb.appendEntry(bad)
		if err == nil || errTree == nil || err.Error() != errTree.Error() || nb.size != 0 {
			t.Errorf("%q: %v, Tree: %v", bad, err, errTree)
		}
	}
}

func BenchmarkTreeAppendEntry(b *testing.B) {
	hs := testHashes(1 << 16)
	b.ReportAllocs()
	b.Run("Tree", func(b *testing.B) {
		tree := NewTree()
		for i := 0; i < b.N; i++ {
			if _, err := tree.AppendEntry(hs[i&(len(hs)-1)], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rootBuilder", func(b *testing.B) {
		var rb rootBuilder
		for i := 0; i < b.N; i++ {
			if err := rb.appendEntry(hs[i&(len(hs)-1)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
