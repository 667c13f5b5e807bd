package audit

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

// reference is the canonical form by the JCS library: marshal, drop hash, transform.
func reference(t testing.TB, e *Entry) []byte {
	t.Helper()
	m := map[string]any{}
	b, _ := json.Marshal(e)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "hash")
	b, _ = json.Marshal(m)
	out, err := jcs.Transform(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var alphabet = []string{"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\r", "\b", "\f", "\x00", "\x1f", "\x7f",
	"<", ">", "&", "é", "ø", "Å", "\u2028", "\u2029", "€", "😀", "\uFFFD", "\u00ad", "\ufeff"}

func randString(r *rand.Rand) string {
	var sb strings.Builder
	for n := r.IntN(12); n > 0; n-- {
		sb.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return sb.String()
}

func randEntry(r *rand.Rand) *Entry {
	e := &Entry{
		Seq: r.Int64N(1 << 52), TS: randString(r), ActorAgency: randString(r), Actor: randString(r),
		Role: randString(r), Office: randString(r), Action: randString(r), Decision: randString(r),
		SubjectRef: randString(r), LegalBasis: randString(r), Emergency: r.IntN(2) == 1,
		Justification: randString(r), PolicyVersion: randString(r), RequestJTI: randString(r), PrevHash: randString(r),
	}
	for n := r.IntN(4); n > 0; n-- {
		e.FlagIDs = append(e.FlagIDs, randString(r))
	}
	for n := r.IntN(3); n > 0; n-- {
		e.Reasons = append(e.Reasons, randString(r))
	}
	e.normalize()
	return e
}

func TestCanonicalMatchesJCSLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		e := randEntry(r)
		got, want := e.Canonical(nil), reference(t, e)
		if string(got) != string(want) {
			t.Fatalf("entry %d:\n got  %s\n want %s", i, got, want)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("kari", "caseworker\n", "\u2028<&>", int64(7), true)
	f.Fuzz(func(t *testing.T, a, b, c string, seq int64, em bool) {
		if seq < 0 || seq > 1<<53 {
			return
		}
		e := &Entry{Seq: seq, Actor: a, Role: b, Justification: c, Emergency: em, FlagIDs: []string{a, c}}
		e.normalize()
		if got, want := e.Canonical(nil), reference(t, e); string(got) != string(want) {
			t.Fatalf("got %s want %s", got, want)
		}
	})
}

func TestLinkChains(t *testing.T) {
	es := []*Entry{{Action: "a"}, {Action: "b"}, {Action: "c"}}
	Link(Receipt{}, es)
	if es[0].Seq != 1 || es[0].PrevHash != ZeroHash || es[1].PrevHash != es[0].Hash || es[2].Seq != 3 {
		t.Fatalf("chain %+v %+v %+v", es[0], es[1], es[2])
	}
	if es[0].FlagIDs == nil || es[0].Reasons == nil {
		t.Fatal("lists not normalised")
	}
	// The hash covers every field: changing any one changes it.
	h, _ := es[1].ComputeHash(nil)
	if h != es[1].Hash {
		t.Fatal("recomputed hash differs")
	}
	es[1].Office = "x"
	if h2, _ := es[1].ComputeHash(nil); h2 == h {
		t.Fatal("hash ignores office")
	}
	more := []*Entry{{Action: "d"}}
	Link(Receipt{Seq: 3, Hash: es[2].Hash}, more)
	if more[0].Seq != 4 || more[0].PrevHash != es[2].Hash {
		t.Fatalf("continued chain %+v", more[0])
	}
}

func BenchmarkEntryHash(b *testing.B) {
	e := randEntry(rand.New(rand.NewPCG(3, 4)))
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_, buf = e.ComputeHash(buf)
	}
}
