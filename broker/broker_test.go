package broker_test

import (
	"strings"
	"testing"

	"varsel/broker"
)

func TestAgencyValidate(t *testing.T) {
	ok := func() broker.Agency {
		return broker.Agency{ID: "oslo-pd", Kind: broker.KindPolice, Name: "Oslo politidistrikt", Offices: []string{"oslo-pd-sentrum", "oslo-pd-vest"}}
	}
	cases := []struct {
		name string
		mod  func(a *broker.Agency)
		want string // "" for valid; else a part of the message
	}{
		{"valid", func(*broker.Agency) {}, ""},
		{"no offices", func(a *broker.Agency) { a.Offices = nil }, ""},
		{"every kind", func(a *broker.Agency) { a.Kind = broker.KindBroker }, ""},
		{"name of 200 characters", func(a *broker.Agency) { a.Name = strings.Repeat("ø", 200) }, ""},
		{"id shortest", func(a *broker.Agency) { a.ID = "abc" }, ""},
		{"id longest", func(a *broker.Agency) { a.ID = "a" + strings.Repeat("b", 63) }, ""},
		{"id empty", func(a *broker.Agency) { a.ID = "" }, `id "" must match ^[a-z0-9][a-z0-9-]{2,63}$`},
		{"id too short", func(a *broker.Agency) { a.ID = "ab" }, `id "ab" must match`},
		{"id too long", func(a *broker.Agency) { a.ID = "a" + strings.Repeat("b", 64) }, "must match"},
		{"id upper case", func(a *broker.Agency) { a.ID = "Oslo-pd" }, `id "Oslo-pd" must match`},
		{"id leading hyphen", func(a *broker.Agency) { a.ID = "-oslo" }, "must match"},
		{"id underscore", func(a *broker.Agency) { a.ID = "oslo_pd" }, "must match"},
		{"kind empty", func(a *broker.Agency) { a.Kind = "" }, `kind "": want one of nav-state, nav-municipal, police, health, broker`},
		{"kind unknown", func(a *broker.Agency) { a.Kind = "army" }, `kind "army"`},
		{"name empty", func(a *broker.Agency) { a.Name = "" }, "name is required (at most 200 characters)"},
		{"name blank", func(a *broker.Agency) { a.Name = "  \t" }, "name is required"},
		{"name too long", func(a *broker.Agency) { a.Name = strings.Repeat("x", 201) }, "name is required"},
		{"office malformed", func(a *broker.Agency) { a.Offices = []string{"oslo-pd-sentrum", "Bad Office"} }, `office "Bad Office" must match`},
		{"office twice", func(a *broker.Agency) { a.Offices = []string{"oslo-pd-vest", "oslo-pd-vest"} }, `office "oslo-pd-vest" given twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := ok()
			tc.mod(&a)
			err := a.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid agency refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error mentioning %q", tc.want)
			}
			if broker.ErrorKind(err) != broker.EINVALID {
				t.Errorf("kind %q, want %q", broker.ErrorKind(err), broker.EINVALID)
			}
			if msg := broker.ErrorMessage(err); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("message %q, want one line mentioning %q", msg, tc.want)
			}
		})
	}
}
