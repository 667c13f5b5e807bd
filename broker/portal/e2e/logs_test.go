package e2e_test

import (
	"regexp"
	"strings"
	"testing"

	"varsel/broker/portal/oidctest"
)

// jws is what a compact JWS or JWT looks like: a base64url JSON header
// (`{"` is "eyJ") starting a base64url run, then a dot and the payload.
// Without the start and the dot, a random id or hash that merely holds
// "eyJ" matched now and then (one CI run in many).
var jws = regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}`)

// checkLogs greps the portal's, the broker's and the provider's logs of
// the whole run for what must never be in them.
func checkLogs(t *testing.T, e *env, ids []string) {
	logs := map[string]string{
		"portal":   e.portalLog.String(),
		"broker":   e.brokerLog.String(),
		"provider": e.providerLog(t),
	}
	if !strings.Contains(logs["portal"], "signed in") {
		t.Errorf("the portal's log has no sign-in: is it captured?\n%s", logs["portal"])
	}
	if strings.TrimSpace(logs["provider"]) == "" {
		t.Error("the provider's log is empty: is it captured?")
	}
	forbidden := map[string]string{
		"the demo password": oidctest.DemoPassword,
		"the client secret": e.clientSecret,
		"a bearer token":    "Bearer ",
		"a private key":     `"d":`,
		"a PEM key":         "PRIVATE KEY",
	}
	for i, id := range ids {
		forbidden["national id "+string(rune('1'+i))] = id
	}
	for _, k := range e.privateKeys {
		if d := privateScalar(k); d != "" {
			forbidden["an agency's private key"] = d
		}
	}
	for name, log := range logs {
		for what, s := range forbidden {
			if strings.Contains(log, s) {
				t.Errorf("the %s log contains %s", name, what)
			}
		}
		if m := jws.FindString(log); m != "" {
			t.Errorf("the %s log contains a JWS-looking string %.16s…", name, m)
		}
	}
	t.Logf("log lines: portal %d, broker %d, provider %d",
		strings.Count(logs["portal"], "\n"), strings.Count(logs["broker"], "\n"), strings.Count(logs["provider"], "\n"))
}

// privateScalar is the "d" member of a private JWK.
func privateScalar(jwk []byte) string {
	m := regexp.MustCompile(`"d"\s*:\s*"([^"]+)"`).FindSubmatch(jwk)
	if m == nil {
		return ""
	}
	return string(m[1])
}
