// Package strict decodes what callers send exactly as the contract spells
// it: one JSON value, object member names matched case-sensitively, no
// duplicate names, no unknown members, valid UTF-8, and no control
// characters in any string (tab and line feed allowed). It is used for
// request bodies, JOSE headers and token claims, so that what the broker
// checks is what the caller sent, byte for byte, and nothing reaches the
// audit log that it cannot store.
package strict

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"varsel/broker"
)

// Unmarshal decodes data into v by the rules above. The error says what is
// wrong (a member name, a type, a position) without echoing values.
func Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v, json.RejectUnknownMembers(true)); err != nil {
		return describe(err)
	}
	if plain(data) {
		// No escape and nothing but printable ASCII and JSON's
		// whitespace: no decoded string can hold a control character
		// (raw ones inside a string are malformed JSON, refused above).
		return nil
	}
	if path, ok := findControl(reflect.ValueOf(v), ""); !ok {
		return fmt.Errorf("%s contains a control character", fieldName(path))
	}
	return nil
}

// plain reports whether data is printable ASCII, tab, CR and LF, without
// a backslash.
func plain(data []byte) bool {
	for _, c := range data {
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func fieldName(path string) string {
	if path == "" {
		return "the value"
	}
	return fmt.Sprintf("field %q", strings.TrimPrefix(path, "."))
}

func describe(err error) error {
	var se *json.SemanticError
	if errors.As(err, &se) {
		where := string(se.JSONPointer)
		switch {
		case se.Err != nil && strings.Contains(se.Err.Error(), "unknown object member"):
			return fmt.Errorf("unknown member %q (names are case-sensitive)", lastToken(where))
		case se.GoType != nil:
			return fmt.Errorf("member %q: wrong type", strings.TrimPrefix(where, "/"))
		}
		return fmt.Errorf("at %q: %v", where, se.Err)
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		if strings.Contains(syn.Error(), "duplicate object member") {
			return fmt.Errorf("duplicate member %q", lastToken(string(syn.JSONPointer)))
		}
		if strings.Contains(syn.Error(), "invalid UTF-8") {
			return errors.New("invalid UTF-8")
		}
		return fmt.Errorf("malformed JSON at byte %d", syn.ByteOffset)
	}
	return errors.New("malformed JSON")
}

func lastToken(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(p)
}

// findControl walks the decoded value for strings with control characters.
func findControl(v reflect.Value, path string) (string, bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "", true
		}
		return findControl(v.Elem(), path)
	case reflect.String:
		if !broker.CleanText(v.String(), true) {
			return path, false
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if p, ok := findControl(v.Field(i), path+"."+name); !ok {
				return p, false
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "", true // raw bytes (json.RawMessage): checked where decoded
		}
		for i := range v.Len() {
			if p, ok := findControl(v.Index(i), path); !ok {
				return p, false
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if k := it.Key(); k.Kind() == reflect.String && !broker.CleanText(k.String(), false) {
				return path, false
			}
			if p, ok := findControl(it.Value(), path+"."+fmt.Sprint(it.Key())); !ok {
				return p, false
			}
		}
	}
	return "", true
}
