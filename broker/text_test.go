package broker

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The table-driven validators must answer as their patterns do: every
// length around each bound, every byte in every position class, and
// random strings of the bytes the classes tell apart.
func TestValidatorsMatchPatterns(t *testing.T) {
	checks := []struct {
		name string
		fn   func(string) bool
		re   *regexp.Regexp
	}{
		{"ValidSub", ValidSub, subPattern},
		{"ValidJTI", ValidJTI, jtiPattern},
		{"ValidID", ValidID, idPattern},
		{"Base64URLChars", func(s string) bool { return Base64URLChars(s, false) }, regexp.MustCompile(`^[A-Za-z0-9_-]*$`)},
		{"Base64URLChars with dots", func(s string) bool { return Base64URLChars(s, true) }, regexp.MustCompile(`^[A-Za-z0-9_.-]*$`)},
	}
	var inputs []string
	for n := 0; n <= 130; n++ {
		inputs = append(inputs, strings.Repeat("a", n), strings.Repeat("A", n), "-"+strings.Repeat("a", n))
	}
	for c := 0; c < 256; c++ {
		b := string([]byte{byte(c)})
		inputs = append(inputs, b, b+"abc", "abc"+b, "ab"+b+"cdefghijklmnopqrstu", "abcdefghijklmnopq"+b+"\n")
	}
	inputs = append(inputs, "abc\n", "ABCDEFGHIJKLMNOP\n", "æøå", "nav-grorud", "kari.nordmann@nav.no")
	const alphabet = "azAZ09-._@+ \n\x00\xff\xc3"
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(140))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, c := range checks {
		for _, s := range inputs {
			if got, want := c.fn(s), c.re.MatchString(s); got != want {
				t.Fatalf("%s(%q) = %v, the pattern says %v", c.name, s, got, want)
			}
		}
	}
}

func FuzzValidators(f *testing.F) {
	f.Add("kari")
	f.Add("nav-grorud")
	f.Add("abcdefghijklmnop")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidSub(s) != subPattern.MatchString(s) || ValidJTI(s) != jtiPattern.MatchString(s) || ValidID(s) != idPattern.MatchString(s) {
			t.Fatalf("%q: a validator and its pattern disagree", s)
		}
	})
}
