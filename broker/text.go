package broker

import (
	"regexp"
	"unicode"
	"unicode/utf8"
)

// The accepted form of what callers send: identifiers are exact ASCII
// words (one spelling per identity), free text is valid UTF-8 without
// control characters. These rules are checked before anything is queued
// for the audit log, so no caller can put text in an entry that the log
// cannot store (PostgreSQL refuses NUL) or that reads differently from
// what was checked.

// subPattern is the form of an employee id (the token's sub): lower-case
// ASCII letters and digits, then also '.', '_', '@' and '-', at most 64.
// There is no case folding or trimming: an agency sends each employee's
// id in exactly one spelling.
var subPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// ValidSub reports whether s is a well-formed employee id: subPattern,
// checked by table (it is on every request's path; the tests hold the two
// to the same answers).
func ValidSub(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && charClass[s[0]]&classIDStart != 0 && allIn(s[1:], classSub)
}

// SubRule says the rule in words, for error messages and docs.
const SubRule = "1 to 64 characters: lower-case a-z, 0-9, then also . _ @ -"

// jtiPattern is the form of a token id: base64url characters, 16 to 128.
var jtiPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// ValidJTI reports whether s is a well-formed token id: jtiPattern,
// checked by table.
func ValidJTI(s string) bool { return len(s) >= 16 && len(s) <= 128 && allIn(s, classB64) }

// Base64URLChars reports whether s holds only base64url characters (RFC
// 4648 §5), and dots too where dots is set (the alphabet of a compact JWS).
func Base64URLChars(s string, dots bool) bool {
	class := uint8(classB64)
	if dots {
		class |= classDot
	}
	return allIn(s, class)
}

// Character classes of the identifier patterns, one bit each.
const (
	classIDStart = 1 << iota // [a-z0-9]: the first character of an id or a sub
	classID                  // [a-z0-9-]: the rest of an agency or office id
	classSub                 // [a-z0-9._@-]: the rest of a sub
	classB64                 // [A-Za-z0-9_-]: base64url, a token id
	classDot                 // '.': between a compact JWS's parts
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		lowerOrDigit := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if lowerOrDigit {
			t[c] |= classIDStart | classID | classSub | classB64
		}
		switch {
		case c == '-':
			t[c] |= classID | classSub | classB64
		case c == '.':
			t[c] |= classSub | classDot
		case c == '@':
			t[c] |= classSub
		case c == '_':
			t[c] |= classSub | classB64
		case 'A' <= c && c <= 'Z':
			t[c] |= classB64
		}
	}
	return t
}()

// allIn reports whether every byte of s is in one of the classes in class.
func allIn(s string, class uint8) bool {
	for i := 0; i < len(s); i++ {
		if charClass[s[i]]&class == 0 {
			return false
		}
	}
	return true
}

// CleanText reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1). Tab and line feed are allowed where allowBreaks is set.
func CleanText(s string, allowBreaks bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(allowBreaks && (r == '\n' || r == '\t')) {
			return false
		}
	}
	return true
}

// VisibleLen counts the characters a reader sees: letters, marks,
// numbers, punctuation and symbols. Spaces, control and format characters
// (such as zero-width spaces and joiners) and unassigned code points do
// not count, so a justification cannot be padded with invisible text.
func VisibleLen(s string) int {
	n := 0
	for _, r := range s {
		if unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S) {
			n++
		}
	}
	return n
}
