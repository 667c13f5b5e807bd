package portal

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestLanguageSwitchStaysHere: the language switch goes back only to a
// path of the portal, never to another host however the path is written.
func TestLanguageSwitchStaysHere(t *testing.T) {
	p := &Portal{}
	for back, want := range map[string]string{
		"/check":               "/check",
		"/inbox?x=1":           "/inbox?x=1",
		"//evil.example/":      "/",
		`/\evil.example/`:      "/",
		"/\t/evil.example/":    "/",
		"/\n/evil.example/":    "/",
		"https://evil.example": "/",
		"evil.example":         "/",
		"":                     "/",
	} {
		r := httptest.NewRequest("GET", "/lang/en?back="+url.QueryEscape(back), nil)
		r.SetPathValue("lang", "en")
		w := httptest.NewRecorder()
		p.setLang(w, r)
		if got := w.Header().Get("Location"); got != want {
			t.Errorf("back=%q: redirected to %q, want %q", back, got, want)
		}
	}
}
