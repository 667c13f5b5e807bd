package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Subject is a validated national identity number (fødselsnummer) or
// D-number. It is never stored or logged: only its Ref is. Its String
// method hides it, so a stray log line cannot leak it.
type Subject struct{ number string }

func (Subject) String() string { return "[subject]" }

// LogValue keeps the number out of structured logs too.
func (Subject) LogValue() string { return "[subject]" }

var (
	weights1 = [9]int{3, 7, 6, 1, 8, 9, 4, 5, 2}
	weights2 = [10]int{5, 4, 3, 2, 7, 6, 5, 4, 3, 2}
)

// ParseSubject checks an 11-digit fødselsnummer or D-number: digits only, a
// plausible date of birth, and both mod-11 control digits. Synthetic test
// numbers (month + 40, as NAV's test data uses, or month + 80, as
// Skatteetaten's synthetic population uses) are accepted only when
// allowSynthetic is set. The error never contains the number.
func ParseSubject(s string, allowSynthetic bool) (Subject, error) {
	invalid := func(why string) (Subject, error) {
		return Subject{}, CodeErrorf(EINVALID, CodeInvalidSubject, "subject is not a valid national identity number: %s", why)
	}
	if len(s) != 11 {
		return invalid("it must be 11 digits")
	}
	var d [11]int
	for i := 0; i < 11; i++ {
		if s[i] < '0' || s[i] > '9' {
			return invalid("it must be 11 digits")
		}
		d[i] = int(s[i] - '0')
	}
	day := d[0]*10 + d[1]
	month := d[2]*10 + d[3]
	if day > 40 { // D-number: the first digit is raised by 4
		day -= 40
	}
	switch {
	case month > 80:
		if !allowSynthetic {
			return invalid("synthetic test numbers are not accepted here")
		}
		month -= 80
	case month > 40:
		if !allowSynthetic {
			return invalid("synthetic test numbers are not accepted here")
		}
		month -= 40
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn[month] {
		return invalid("the date of birth is not a date")
	}
	sum := 0
	for i, w := range weights1 {
		sum += w * d[i]
	}
	if k := control(sum); k != d[9] {
		return invalid("a control digit does not match")
	}
	sum = 0
	for i, w := range weights2 {
		sum += w * d[i]
	}
	if k := control(sum); k != d[10] {
		return invalid("a control digit does not match")
	}
	return Subject{number: s}, nil
}

var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// control is the mod-11 control digit for a weighted sum, or -1 when the
// sum admits none (a remainder of 1 gives 10, which no number may carry).
func control(sum int) int {
	k := 11 - sum%11
	switch k {
	case 11:
		return 0
	case 10:
		return -1
	}
	return k
}

// SubjectHasher turns subjects into subject refs: hex HMAC-SHA256 under
// the subject key, so that the same person has the same ref everywhere and
// the number cannot be recovered without the key.
type SubjectHasher struct {
	key     []byte   // the first key: HMAC of the number
	chain   [][]byte // later keys, each applied to the ref before it
	Version string   // the newest active key's version
	// Position is the newest active link's position in the chain: a flag
	// records it, so that a ref written under an older chain is caught.
	Position int

	pending        []byte // a rotation in progress: refs may be stored under it too
	PendingVersion string

	// macs holds HMACs under key, reset between uses: one is keyed once,
	// not on every check. Shared by the hashers derived from this one,
	// which have the same first key.
	macs *sync.Pool
}

// NewSubjectHasher makes a hasher with key (at least 32 bytes).
func NewSubjectHasher(key []byte, version string) (*SubjectHasher, error) {
	if len(key) < 32 {
		return nil, Errorf(EINTERNAL, "subject key must be at least 32 bytes")
	}
	key = append([]byte(nil), key...)
	return &SubjectHasher{key: key, Version: version, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}, nil
}

// Ref returns the subject ref of s under the active chain.
func (h *SubjectHasher) Ref(s Subject) string {
	ref := h.first(s)
	for _, k := range h.chain {
		ref = Rekey(k, ref)
	}
	return ref
}

func (h *SubjectHasher) first(s Subject) string {
	m := h.macs.Get().(hash.Hash)
	defer h.macs.Put(m)
	m.Reset()
	m.Write([]byte(s.number))
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0]))
}

// SyntheticNumber returns the i-th synthetic national id (for tests, demos
// and load runs): a valid date with the month raised by plus (40 or 80) and
// both control digits right, so it passes ParseSubject only with synthetic
// numbers allowed. Distinct i below 2^24 give distinct numbers.
func SyntheticNumber(i, plus int) string {
	for ; ; i += 1 << 24 { // skip numbers that admit no control digit
		var d [11]int
		day, month, year, ind := 1+i%28, plus+1+(i/28)%12, (i/336)%100, (i/33600)%1000
		for k, v := range []int{day / 10, day % 10, month / 10, month % 10, year / 10, year % 10, ind / 100, ind / 10 % 10, ind % 10} {
			d[k] = v
		}
		sum := 0
		for k, w := range weights1 {
			sum += w * d[k]
		}
		if d[9] = control(sum); d[9] < 0 {
			continue
		}
		sum = 0
		for k, w := range weights2 {
			sum += w * d[k]
		}
		if d[10] = control(sum); d[10] < 0 {
			continue
		}
		b := make([]byte, 11)
		for k, v := range d {
			b[k] = byte('0' + v)
		}
		return string(b)
	}
}
