package strict_test

import (
	"encoding/json"
	"strings"
	"testing"

	"varsel/broker/strict"
)

type body struct {
	Typ   string           `json:"typ"`
	Role  string           `json:"role"`
	Notes []string         `json:"notes,omitempty"`
	Inner *struct{ X int } `json:"inner,omitempty"`
	Raw   json.RawMessage  `json:"raw,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"exact", `{"typ":"a","role":"b"}`, ""},
		{"raw message kept", `{"typ":"a","raw":["x",1]}`, ""},
		{"line feed in text", `{"typ":"a\nb"}`, ""},
		{"case-changed duplicate", `{"typ":"a","TYP":"b"}`, `unknown member "TYP"`},
		{"case-changed only", `{"Typ":"a"}`, `unknown member "Typ"`},
		{"duplicate", `{"role":"a","role":"b"}`, `duplicate member "role"`},
		{"unknown", `{"typ":"a","b64":false}`, `unknown member "b64"`},
		{"NUL", `{"typ":"a\u0000"}`, `field "typ" contains a control character`},
		{"escape in list", `{"notes":["ok","\u001b[31m"]}`, `field "notes" contains a control character`},
		{"C1 control", `{"role":"\u0085"}`, `field "role" contains a control character`},
		{"DEL", `{"role":"\u007f"}`, `control character`},
		{"raw DEL", "{\"role\":\"a\x7f\"}", `control character`},
		{"raw C1 control", "{\"role\":\"\u0085\"}", `field "role" contains a control character`},
		{"raw tab", "{\"typ\":\"a\tb\"}", "malformed JSON"},
		{"invalid UTF-8", "{\"typ\":\"\xff\"}", "invalid UTF-8"},
		{"wrong type", `{"typ":1}`, `member "typ": wrong type`},
		{"trailing value", `{"typ":"a"} {}`, "malformed JSON"},
		{"not JSON", `{typ:1}`, "malformed JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b body
			err := strict.Unmarshal([]byte(tc.in), &b)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
