package portal

// The privacy officer's dashboard: the review queue with verdicts, a
// person's disclosures (an access request under the GDPR), trends, a
// search of the audit log and the log's integrity, verified in the portal.
// Every page is for the privacy-officer role; what an officer sees is what
// the broker's projection gives their agency (the operator's auditors, of
// an agency of kind broker, see every agency). The portal decides nothing
// about scope: it only shows what the broker answers the signed request.

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"varsel/broker"
)

var officerRoles = []string{broker.RolePrivacyOfficer}

// officerRoutes registers the dashboard's pages on mux.
func (p *Portal) officerRoutes(mux *http.ServeMux) {
	mux.Handle("GET /officer/reviews", p.staff(p.reviewsPage, officerRoles...))
	mux.Handle("POST /officer/reviews/{seq}", p.staff(p.verdictPost, officerRoles...))
	mux.Handle("GET /officer/report", p.staff(p.reportForm, officerRoles...))
	mux.Handle("POST /officer/report", p.staff(p.reportPost, officerRoles...))
	mux.Handle("GET /officer/trends", p.staff(p.trendsPage, officerRoles...))
	mux.Handle("GET /officer/trends.csv", p.staff(p.trendsCSV, officerRoles...))
	mux.Handle("GET /officer/search", p.staff(p.searchForm, officerRoles...))
	mux.Handle("POST /officer/search", p.staff(p.searchPost, officerRoles...))
	mux.Handle("GET /officer/integrity", p.staff(p.integrityPage, officerRoles...))
}

// review is a review of GET /v1/audit/reviews.
type review struct {
	Seq          int64     `json:"seq"`
	Kind         string    `json:"kind"`
	Reason       string    `json:"reason"`
	ActorAgency  string    `json:"actor_agency"`
	Actor        string    `json:"actor"`
	At           time.Time `json:"at"`
	CreatedAt    time.Time `json:"created_at"`
	Status       string    `json:"status"`
	Overdue      bool      `json:"overdue"`
	Note         string    `json:"note"`
	JudgedBy     string    `json:"judged_by"`
	JudgedAgency string    `json:"judged_agency"`
	JudgedAt     time.Time `json:"judged_at"`
	VerdictSeq   int64     `json:"verdict_seq"`
	Action       string    `json:"action"`
	Office       string    `json:"office"`
	Role         string    `json:"role"`
	LegalBasis   string    `json:"legal_basis"`
	FlagIDs      []string  `json:"flag_ids"`
	Justif       string    `json:"justification"`
	Projected    bool      `json:"projected"`
}

// officerPage is what every dashboard page shows above its own content.
type officerPage struct {
	Pending, Overdue int
	Integrity        *integrity
	Body             any
}

// officerView gathers the header of the dashboard: the review counts and
// the integrity verdict. A failure of either shows as unknown, not as a
// failed page.
func (p *Portal) officerView(r *http.Request, s *Session, body any) *officerPage {
	op := &officerPage{Body: body, Pending: -1, Overdue: -1}
	if rs, err := p.reviews(r, s, "pending"); err == nil {
		op.Pending, op.Overdue = len(rs), 0
		for _, rv := range rs {
			if rv.Overdue {
				op.Overdue++
			}
		}
	}
	op.Integrity = p.checkIntegrity(r.Context(), s)
	return op
}

func (p *Portal) reviews(r *http.Request, s *Session, status string) ([]review, error) {
	var all []review
	after := int64(0)
	for range 20 { // up to 20 000 reviews
		var res struct {
			Reviews []review `json:"reviews"`
		}
		q := url.Values{"status": {status}, "limit": {"1000"}}
		if after > 0 {
			q.Set("after_seq", strconv.FormatInt(after, 10))
		}
		if _, err := p.call(r.Context(), s, "GET", "/v1/audit/reviews?"+q.Encode(), nil, &res); err != nil {
			return nil, err
		}
		all = append(all, res.Reviews...)
		if len(res.Reviews) < 1000 {
			break
		}
		after = res.Reviews[len(res.Reviews)-1].Seq
	}
	return all, nil
}

func (p *Portal) reviewsPage(w http.ResponseWriter, r *http.Request, s *Session) {
	p.showReviews(w, r, s, http.StatusOK, nil)
}

func (p *Portal) showReviews(w http.ResponseWriter, r *http.Request, s *Session, status int, errs map[string]string) {
	all, err := p.reviews(r, s, "all")
	if err != nil {
		p.brokerFailed(w, r, nil, err)
		return
	}
	var data struct{ Pending, Judged []review }
	for _, rv := range all { // ordered by seq: oldest first
		if rv.Status == "pending" {
			data.Pending = append(data.Pending, rv)
		} else {
			data.Judged = append(data.Judged, rv)
		}
	}
	op := &officerPage{Body: data, Integrity: p.checkIntegrity(r.Context(), s)}
	op.Pending = len(data.Pending)
	for _, rv := range data.Pending {
		if rv.Overdue {
			op.Overdue++
		}
	}
	p.render(w, r, status, "officer_reviews", op, &view{Session: s, Errors: errs})
}

func (p *Portal) verdictPost(w http.ResponseWriter, r *http.Request, s *Session) {
	lang := p.lang(r)
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq <= 0 || r.ParseForm() != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	verdict := r.PostForm.Get("verdict")
	note := strings.TrimSpace(r.PostForm.Get("note"))
	key := "review-" + r.PathValue("seq")
	if verdict != "justified" && verdict != "unjustified" {
		p.showReviews(w, r, s, http.StatusUnprocessableEntity, map[string]string{key: text(lang, "off.err.verdict")})
		return
	}
	if verdict == "unjustified" && note == "" {
		p.showReviews(w, r, s, http.StatusUnprocessableEntity, map[string]string{key: text(lang, "off.err.note")})
		return
	}
	body := map[string]any{"verdict": verdict, "note": note}
	if k := r.PostForm.Get("kind"); k == "emergency" || k == "anomaly" {
		body["kind"] = k
	}
	resp, err := p.call(r.Context(), s, "POST", "/v1/audit/reviews/"+strconv.FormatInt(seq, 10), body, nil)
	if err != nil {
		msg := ""
		switch {
		case resp != nil && resp.Status == http.StatusConflict:
			msg = text(lang, "off.err.judged")
		case resp != nil && resp.Status == http.StatusNotFound:
			msg = text(lang, "off.err.noreview")
		case resp != nil && resp.Status == http.StatusUnprocessableEntity:
			if pr := resp.Problem(); pr != nil {
				msg = pr.Detail
			}
		}
		if msg != "" {
			p.showReviews(w, r, s, resp.Status, map[string]string{key: msg})
			return
		}
		p.brokerFailed(w, r, resp, err)
		return
	}
	http.Redirect(w, r, "/officer/reviews#"+key, http.StatusSeeOther)
}

// reportItem is an item of POST /v1/audit/subject-report.
type reportItem struct {
	Seq        int64     `json:"seq"`
	At         time.Time `json:"at"`
	Agency     string    `json:"agency"`
	Office     string    `json:"office"`
	Role       string    `json:"role"`
	Action     string    `json:"action"`
	FlagIDs    []string  `json:"flag_ids"`
	LegalBasis string    `json:"legal_basis"`
	Emergency  bool      `json:"emergency"`
	Verdict    string    `json:"verdict"`
	Projected  bool      `json:"projected"`
}

func (p *Portal) reportForm(w http.ResponseWriter, r *http.Request, s *Session) {
	p.render(w, r, http.StatusOK, "officer_report", p.officerView(r, s, nil), &view{Session: s})
}

// reportPost answers an access request. The number is posted, sent to the
// broker and forgotten: the answer page does not show it.
func (p *Portal) reportPost(w http.ResponseWriter, r *http.Request, s *Session) {
	lang := p.lang(r)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	subject := strings.TrimSpace(r.PostForm.Get("subject"))
	if _, err := broker.ParseSubject(subject, p.cfg.TestSubjects); err != nil {
		p.render(w, r, http.StatusUnprocessableEntity, "officer_report", p.officerView(r, s, nil),
			&view{Session: s, Errors: map[string]string{"subject": text(lang, "err.subject")}})
		return
	}
	var res struct {
		Disclosures []reportItem `json:"disclosures"`
	}
	resp, err := p.call(r.Context(), s, "POST", "/v1/audit/subject-report", map[string]any{"subject": subject}, &res)
	if err != nil {
		if fe := p.fieldErrors(lang, resp, err); fe != nil {
			p.render(w, r, http.StatusUnprocessableEntity, "officer_report", p.officerView(r, s, nil), &view{Session: s, Errors: fe})
			return
		}
		p.brokerFailed(w, r, resp, err)
		return
	}
	data := struct {
		Done        bool
		Disclosures []reportItem
		Made        time.Time
		Agency      string
	}{true, res.Disclosures, p.now(), s.Agency}
	if a := p.agencies[s.Agency]; a != nil && a.Name != "" {
		data.Agency = a.Name
	}
	if r.PostForm.Get("format") == "download" {
		// The printable page as a file to send: the same page, whose print
		// style leaves out the portal's menus and forms.
		w.Header().Set("Content-Disposition", `attachment; filename="varsel-innsyn-`+p.now().In(oslo).Format("2006-01-02")+`.html"`)
	}
	p.render(w, r, http.StatusOK, "officer_report", &officerPage{Body: data}, &view{Session: s})
}

// auditEntry is an entry of POST /v1/audit/search, as projected.
type auditEntry struct {
	Seq           int64     `json:"seq"`
	TS            time.Time `json:"ts"`
	ActorAgency   string    `json:"actor_agency"`
	Actor         string    `json:"actor"`
	Role          string    `json:"role"`
	Office        string    `json:"office"`
	Action        string    `json:"action"`
	Decision      string    `json:"decision"`
	FlagIDs       []string  `json:"flag_ids"`
	LegalBasis    string    `json:"legal_basis"`
	Emergency     bool      `json:"emergency"`
	Justification string    `json:"justification"`
	Reasons       []string  `json:"reasons"`
	Projected     bool      `json:"projected"`
}

const searchPageSize = 50

// searchSubjectCookie names the sealed value that carries a searched
// national id from one result page to the next: sealed, so the number is
// in neither the page nor a URL.
const searchSubjectSeal = "varsel_search_subject"

func (p *Portal) searchForm(w http.ResponseWriter, r *http.Request, s *Session) {
	p.render(w, r, http.StatusOK, "officer_search", p.officerView(r, s, nil), &view{Session: s})
}

func (p *Portal) searchPost(w http.ResponseWriter, r *http.Request, s *Session) {
	lang := p.lang(r)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	f := r.PostForm
	form := url.Values{"actor": {f.Get("actor")}, "actor_agency": {f.Get("actor_agency")}, "from": {f.Get("from")},
		"to": {f.Get("to")}, "emergency_only": {f.Get("emergency_only")}}
	errs := map[string]string{}
	body := map[string]any{"limit": searchPageSize}
	subject := strings.TrimSpace(f.Get("subject"))
	if subject == "" && f.Get("sealed_subject") != "" {
		if p.sealer.open(searchSubjectSeal, f.Get("sealed_subject"), &subject) != nil {
			subject = ""
		}
	}
	if subject != "" {
		if _, err := broker.ParseSubject(subject, p.cfg.TestSubjects); err != nil {
			errs["subject"] = text(lang, "err.subject")
		}
		body["subject"] = subject
	}
	if v := strings.TrimSpace(f.Get("actor")); v != "" {
		body["actor"] = v
	}
	if v := strings.TrimSpace(f.Get("actor_agency")); v != "" {
		body["actor_agency"] = v
	}
	from, to, perr := periodOf(f.Get("from"), f.Get("to"), time.Time{})
	if perr != "" {
		errs["period"] = text(lang, perr)
	}
	if !from.IsZero() {
		body["from"] = from.UTC().Format(time.RFC3339)
	}
	if !to.IsZero() {
		body["to"] = to.UTC().Format(time.RFC3339)
	}
	if f.Get("emergency_only") == "yes" {
		body["emergency_only"] = true
	}
	if n, err := strconv.ParseInt(f.Get("after_seq"), 10, 64); err == nil && n > 0 {
		body["after_seq"] = n
	}
	if len(errs) > 0 {
		p.render(w, r, http.StatusUnprocessableEntity, "officer_search", p.officerView(r, s, nil), &view{Session: s, Errors: errs, Form: form})
		return
	}
	var res struct {
		Entries []auditEntry `json:"entries"`
		Next    int64        `json:"next_after_seq"`
	}
	resp, err := p.call(r.Context(), s, "POST", "/v1/audit/search", body, &res)
	if err != nil {
		if fe := p.fieldErrors(lang, resp, err); fe != nil {
			p.render(w, r, http.StatusUnprocessableEntity, "officer_search", p.officerView(r, s, nil), &view{Session: s, Errors: fe, Form: form})
			return
		}
		p.brokerFailed(w, r, resp, err)
		return
	}
	data := struct {
		Done          bool
		Entries       []auditEntry
		Next          int64
		SealedSubject string
		BySubject     bool
	}{Done: true, Entries: res.Entries, Next: res.Next, BySubject: subject != ""}
	if subject != "" && res.Next > 0 {
		if data.SealedSubject, err = p.sealer.seal(searchSubjectSeal, subject); err != nil {
			p.fail(w, r, err)
			return
		}
	}
	p.render(w, r, http.StatusOK, "officer_search", p.officerView(r, s, data), &view{Session: s, Form: form})
}

// periodOf reads a period of dates (YYYY-MM-DD, UTC days as the broker counts them, both days
// included) as [from, to). Empty ends stay zero unless def is set: then
// the period defaults to the 30 days up to def.
func periodOf(fromS, toS string, def time.Time) (from, to time.Time, errKey string) {
	var err error
	if fromS != "" {
		if from, err = time.ParseInLocation("2006-01-02", fromS, time.UTC); err != nil {
			return from, to, "off.err.period"
		}
	}
	if toS != "" {
		if to, err = time.ParseInLocation("2006-01-02", toS, time.UTC); err != nil {
			return from, to, "off.err.period"
		}
		to = to.AddDate(0, 0, 1)
	}
	if !def.IsZero() {
		if to.IsZero() {
			d := def.UTC()
			to = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1)
		}
		if from.IsZero() {
			from = to.AddDate(0, 0, -30)
		}
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return from, to, "off.err.period"
	}
	return from, to, ""
}

// statGroup is a group of GET /v1/audit/stats.
type statGroup struct {
	Key         string `json:"key"`
	Checks      int    `json:"checks"`
	Disclosures int    `json:"disclosures"`
	Denials     int    `json:"denials"`
	Emergencies int    `json:"emergencies"`
	Anomalies   int    `json:"anomalies"`
	// Label is what the page shows for Key: a group without a key (no
	// legal basis) gets words, since an empty row header says nothing.
	Label string `json:"-"`
}

func (g statGroup) values() []int {
	return []int{g.Checks, g.Disclosures, g.Denials, g.Emergencies, g.Anomalies}
}

// statMetrics name statGroup's values, in order.
var statMetrics = []string{"checks", "disclosures", "denials", "emergencies", "anomalies"}

// trendGroups are the charts of the trends page.
var trendGroups = []string{"day", "legal_basis", "agency"}

func (p *Portal) stats(r *http.Request, s *Session, groupBy string, from, to time.Time) ([]statGroup, error) {
	q := url.Values{"group_by": {groupBy}, "from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	var res struct {
		Groups []statGroup `json:"groups"`
	}
	if _, err := p.call(r.Context(), s, "GET", "/v1/audit/stats?"+q.Encode(), nil, &res); err != nil {
		return nil, err
	}
	return res.Groups, nil
}

func (p *Portal) trendsPage(w http.ResponseWriter, r *http.Request, s *Session) {
	q := r.URL.Query()
	from, to, perr := periodOf(q.Get("from"), q.Get("to"), p.now())
	form := url.Values{"from": {from.Format("2006-01-02")}, "to": {to.AddDate(0, 0, -1).Format("2006-01-02")}}
	if perr != "" {
		p.render(w, r, http.StatusUnprocessableEntity, "officer_trends", p.officerView(r, s, nil),
			&view{Session: s, Form: url.Values{"from": {q.Get("from")}, "to": {q.Get("to")}}, Errors: map[string]string{"period": text(p.lang(r), perr)}})
		return
	}
	lang := p.lang(r)
	var data struct{ Charts []chart }
	for _, g := range trendGroups {
		groups, err := p.stats(r, s, g, from, to)
		if err != nil {
			p.brokerFailed(w, r, nil, err)
			return
		}
		c := newChart(lang, g, groups)
		c.CSV = "/officer/trends.csv?" + url.Values{"group_by": {g}, "from": form["from"], "to": form["to"]}.Encode()
		data.Charts = append(data.Charts, c)
	}
	p.render(w, r, http.StatusOK, "officer_trends", p.officerView(r, s, data), &view{Session: s, Form: form})
}

// trendsCSV downloads one chart's numbers.
func (p *Portal) trendsCSV(w http.ResponseWriter, r *http.Request, s *Session) {
	q := r.URL.Query()
	g := q.Get("group_by")
	if g != "day" && g != "legal_basis" && g != "agency" {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	from, to, perr := periodOf(q.Get("from"), q.Get("to"), p.now())
	if perr != "" {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	groups, err := p.stats(r, s, g, from, to)
	if err != nil {
		p.brokerFailed(w, r, nil, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="varsel-%s-%s-%s.csv"`, g,
		from.Format("2006-01-02"), to.AddDate(0, 0, -1).Format("2006-01-02")))
	cw := csv.NewWriter(w)
	_ = cw.Write(append([]string{g}, statMetrics...))
	for _, gr := range groups {
		row := []string{csvSafe(gr.Key)}
		for _, v := range gr.values() {
			row = append(row, strconv.Itoa(v))
		}
		_ = cw.Write(row)
	}
	cw.Flush()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (p *Portal) integrityPage(w http.ResponseWriter, r *http.Request, s *Session) {
	p.render(w, r, http.StatusOK, "officer_integrity", p.officerView(r, s, nil), &view{Session: s})
}
