package strict_test

import (
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json"

	"varsel/broker"
	"varsel/broker/service"
	"varsel/broker/strict"
)

// The API decodes every request body with strict.Unmarshal into its
// request type (broker/api.Decode). Each fuzz target below feeds one of
// those types arbitrary bytes, on top of a seed corpus of valid and
// almost-valid bodies. Whatever is accepted must be valid UTF-8 JSON, and
// must encode to a body that decodes to the same value again:
// one body, one meaning.
func fuzzBody[T any](f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// Near misses every body type must refuse.
	for _, s := range []string{``, `null`, `[]`, `{}{}`, `{"a":1,"a":2}`, "{\"x\":\"\x00\"}", "\xff", `{"subject":"a\u0000b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v T
		if err := strict.Unmarshal(data, &v); err != nil {
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("accepted invalid UTF-8: %q", data)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", data, err)
		}
		var w T
		if err := strict.Unmarshal(again, &w); err != nil {
			t.Fatalf("accepted %q, encoded as %s, refused: %v", data, again, err)
		}
		// nil and empty lists read alike, so compare encodings: the value
		// decoded from the encoding encodes the same again.
		if twice, _ := json.Marshal(w); string(twice) != string(again) {
			t.Fatalf("%q decodes to %s, which decodes to %s", data, again, twice)
		}
	})
}

const flagSeed = `{"subject":"01417012326","level":"high","categories":["threats","weapons"],"precautions":["two-staff","police-present"],` +
	`"valid_until":"2027-01-31T00:00:00Z","legal_basis":"politiregl-27-2","audience":{"kinds":["nav-state","nav-municipal"]},` +
	`"contact":{"unit":"Oslo PD","phone":"+47 22 66 90 50"},"subject_informed":{"informed":true},` +
	`"decision":{"decided_by":"Seksjonsleder","decided_by_role":"controller-delegate","decided_at":"2026-12-01T09:00:00Z","reference":"OPD 26/1"}}`

func FuzzFlagBody(f *testing.F) {
	fuzzBody[broker.FlagRequest](f, flagSeed,
		`{"subject":"01417012326","level":"exclusion","categories":["violence"],"precautions":["no-meeting"],"valid_until":"2027-01-01T00:00:00+01:00",`+
			`"legal_basis":"navl-16","audience":{"offices":["nav-grorud"]},"contact":{"unit":"NAV","phone":"1"},"represented_by":"duty-desk"}`,
		`{"subject":"01417012326","SUBJECT":"x"}`)
}

func FuzzCheckBody(f *testing.F) {
	fuzzBody[service.CheckRequest](f, `{"subject":"01417012326","purpose":"meeting"}`,
		`{"subject":"01417012326","purpose":"meeting","meeting_at":"2026-12-02T10:00:00Z"}`,
		`{"subject":"01417012326","purpose":"meeting","emergency":{"justification":"Pasienten truer med kniv i akuttmottaket nå"}}`,
		`{"subject":"01417012326","purpose":"meeting","Purpose":"x"}`)
}

func FuzzWarningBody(f *testing.F) {
	fuzzBody[service.WarningRequest](f, flagSeed[:len(flagSeed)-1]+`,"targets":{"offices":["nav-grorud","nav-arstad"]}}`,
		`{"targets":{"offices":[]}}`)
}

func FuzzVerdictBody(f *testing.F) {
	fuzzBody[service.VerdictRequest](f, `{"verdict":"justified","note":"Akutt fare, dokumentert."}`,
		`{"verdict":"unjustified","note":"","kind":"anomaly"}`, `{"verdict":"justified","note":"a\tb\nc"}`)
}

func FuzzSearchBody(f *testing.F) {
	fuzzBody[service.AuditSearch](f, `{"subject":"01417012326"}`,
		`{"actor_agency":"nav-stat","actor":"kari","from":"2026-01-01T00:00:00Z","to":"2026-12-31T23:59:59.999Z","emergency_only":true,"after_seq":10,"limit":50}`)
}

func FuzzSubjectReportBody(f *testing.F) {
	fuzzBody[service.SubjectReportRequest](f, `{"subject":"01417012326"}`)
}

func FuzzRevokeBody(f *testing.F) {
	fuzzBody[service.RevokeRequest](f, `{"reason":"no longer a risk"}`)
}

func FuzzWebhookBody(f *testing.F) {
	fuzzBody[service.WebhookRequest](f, `{"url":"https://nav.example/varsel/hook"}`, `{"url":"http://10.0.0.1:8080/x"}`, `{"URL":"https://x"}`)
}
