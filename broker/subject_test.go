package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// withControls completes nine digits with both control digits, or "" when
// the number admits none.
func withControls(nine string) string {
	d := make([]int, 0, 11)
	for _, c := range nine {
		d = append(d, int(c-'0'))
	}
	sum := 0
	for i, w := range weights1 {
		sum += w * d[i]
	}
	k1 := control(sum)
	if k1 < 0 {
		return ""
	}
	d = append(d, k1)
	sum = 0
	for i, w := range weights2 {
		sum += w * d[i]
	}
	k2 := control(sum)
	if k2 < 0 {
		return ""
	}
	return fmt.Sprintf("%s%d%d", nine, k1, k2)
}

func TestParseSubject(t *testing.T) {
	valid := withControls("010180123")   // 1 January 1980
	dnum := withControls("410180123")    // D-number: day + 40
	synth40 := withControls("014170123") // month + 40
	synth80 := withControls("018170123") // month + 80
	for _, n := range []string{valid, dnum, synth40, synth80} {
		if n == "" {
			t.Fatal("test number admits no control digits; pick another")
		}
	}
	if _, err := ParseSubject("01417012326", true); err != nil {
		t.Errorf("the synthetic number of the API examples: %v", err)
	}
	cases := []struct {
		n         string
		synthetic bool
		ok        bool
	}{
		{valid, false, true},
		{dnum, false, true},
		{synth40, false, false},
		{synth40, true, true},
		{synth80, false, false},
		{synth80, true, true},
		{valid[:10] + string('0'+(valid[10]-'0'+1)%10), false, false}, // second control digit off
		{valid[:9] + string('0'+(valid[9]-'0'+1)%10) + valid[10:], false, false},
		{"0101801234", false, false},   // 10 digits
		{"010180123456", false, false}, // 12 digits
		{"01018012a45", false, false},
		{withControls("320180123"), false, false}, // day 32
		{withControls("011380123"), false, false}, // month 13
		{withControls("300280123"), false, false}, // 30 February
		{"", false, false},
	}
	for _, tc := range cases {
		if tc.n == "" && tc.ok {
			continue
		}
		_, err := ParseSubject(tc.n, tc.synthetic)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSubject(%q, %v): %v, want ok=%v", tc.n, tc.synthetic, err, tc.ok)
		}
		if err != nil {
			if ErrorCode(err) != CodeInvalidSubject || ErrorKind(err) != EINVALID {
				t.Errorf("%q: code %s", tc.n, ErrorCode(err))
			}
			if tc.n != "" && strings.Contains(err.Error(), tc.n) {
				t.Errorf("error echoes the number: %v", err)
			}
		}
	}
}

func TestSubjectRef(t *testing.T) {
	h1, _ := NewSubjectHasher([]byte(strings.Repeat("k", 32)), "1")
	h2, _ := NewSubjectHasher([]byte(strings.Repeat("j", 32)), "2")
	s, err := ParseSubject("01417012326", true)
	if err != nil {
		t.Fatal(err)
	}
	r := h1.Ref(s)
	if len(r) != 64 || r != h1.Ref(s) || r == h2.Ref(s) || strings.Contains(r, "01417012326") {
		t.Fatalf("ref %s", r)
	}
	if fmt.Sprint(s) != "[subject]" || fmt.Sprintf("%v %s %+v", s, s, s) != "[subject] [subject] [subject]" {
		t.Fatal("subject prints its number")
	}
	if _, err := NewSubjectHasher([]byte("short"), ""); err == nil {
		t.Fatal("short key accepted")
	}
	// The HMAC kept for reuse gives the ref a fresh one gives, and
	// RefAndRefs the pair Ref and Refs give, along a chain and a rotation.
	m := hmac.New(sha256.New, []byte(strings.Repeat("k", 32)))
	m.Write([]byte("01417012326"))
	if want := hex.EncodeToString(m.Sum(nil)); r != want {
		t.Fatalf("ref %s, HMAC %s", r, want)
	}
	t2, err := ParseSubject(SyntheticNumber(7, 40), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*SubjectHasher{h1, h1.Extend([]byte(strings.Repeat("m", 32)), "2"),
		h1.Extend([]byte(strings.Repeat("m", 32)), "2").WithPending([]byte(strings.Repeat("p", 32)), "3")} {
		for _, subj := range []Subject{s, t2} {
			ref, refs := h.RefAndRefs(subj)
			if ref != h.Ref(subj) || !slices.Equal(refs, h.Refs(subj)) || len(refs) < 1 {
				t.Fatalf("RefAndRefs = %s %v; Ref %s, Refs %v", ref, refs, h.Ref(subj), h.Refs(subj))
			}
		}
	}
}
