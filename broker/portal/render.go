package portal

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"varsel/broker"
)

// view is what every page template gets.
type view struct {
	Lang    string
	Session *Session
	Path    string
	Title   string
	Nav     []navItem
	Errors  map[string]string // field → message; "" → the form's
	Form    map[string][]string
	Data    any
}

type navItem struct {
	Href, Key string
	Current   bool
}

// T is the text of key in the page's language.
func (v *view) T(key string) string { return text(v.Lang, key) }

// Value is a form field's submitted value (forms are shown again with
// what was typed, except the national id, which is never echoed).
func (v *view) Value(name string) string {
	if vs := v.Form[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Checked reports whether a checkbox or option value was submitted.
func (v *view) Checked(name, value string) bool { return slices.Contains(v.Form[name], value) }

// Other is the other language, for the switch.
func (v *view) Other() string {
	if v.Lang == langEN {
		return langNB
	}
	return langEN
}

var pageNames = []string{"welcome", "error", "check", "result", "emergency", "flag", "warning", "done", "inbox", "flags",
	"officer_reviews", "officer_report", "officer_trends", "officer_search", "officer_integrity"}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"date": func(t time.Time) string { return t.In(oslo).Format("02.01.2006") },
		"datetime": func(t time.Time) string {
			return t.In(oslo).Format("02.01.2006 15:04")
		},
		"join": strings.Join,
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		files := []string{"templates/layout.html", "templates/" + name + ".html"}
		if strings.HasPrefix(name, "officer_") {
			files = append(files, "templates/officer_common.html")
		}
		if name == "flag" || name == "warning" {
			files = append(files, "templates/flagform.html") // the form both share
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return nil, fmt.Errorf("portal template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var oslo = func() *time.Location {
	l, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		return time.UTC
	}
	return l
}()

func (p *Portal) nav(s *Session, path string) []navItem {
	if s == nil {
		return nil
	}
	var items []navItem
	add := func(href, key string, roles []string) {
		if slices.Contains(roles, s.Role) {
			items = append(items, navItem{Href: href, Key: key, Current: path == href})
		}
	}
	add("/check", "nav.check", checkRoles)
	add("/inbox", "nav.inbox", inboxRoles)
	add("/flags/new", "nav.flag", issuerRoles)
	add("/warnings/new", "nav.warn", []string{broker.RolePoliceLiaison})
	add("/flags", "nav.flags", flagListRoles)
	if slices.Contains(officerRoles, s.Role) {
		items = append(items, navItem{Href: "/officer/reviews", Key: "nav.officer", Current: strings.HasPrefix(path, "/officer/")})
	}
	return items
}

// render writes a page. The whole page is rendered before anything is
// sent, so a template error never leaves half a page.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, data any, v *view) {
	if v == nil {
		v = &view{}
	}
	v.Lang, v.Path, v.Data = p.lang(r), r.URL.Path, data
	if v.Session == nil {
		v.Session = p.session(r)
	}
	v.Nav = p.nav(v.Session, r.URL.Path)
	var buf bytes.Buffer
	if err := p.pages[page].Execute(&buf, v); err != nil {
		p.log.Error("render page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows a page with one message.
func (p *Portal) renderError(w http.ResponseWriter, r *http.Request, status int, key string) {
	p.render(w, r, status, "error", struct {
		Status int
		Key    string
	}{status, key}, nil)
}
