package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"varsel/broker"
	"varsel/broker/client"
)

// purposes offered in the check form (the broker's list).
var purposes = []string{"meeting", "home-visit", "phone-call", "case-processing"}

// checkAnswer is what the result page shows of the broker's answer.
type checkAnswer struct {
	CheckID   string      `json:"check_id"`
	Result    string      `json:"result"`
	Emergency bool        `json:"emergency"`
	Flags     []shownFlag `json:"flags"`
	// Exception is the life-and-health exception's one aggregate for the
	// flags the employee could not otherwise see (no issuer, no count).
	Exception *shownFlag `json:"exception"`
	Clear     bool       `json:"-"`
}

type shownFlag struct {
	Level       string          `json:"level"`
	Categories  []string        `json:"categories"`
	Precautions []string        `json:"precautions"`
	ValidUntil  time.Time       `json:"valid_until"`
	Issuer      string          `json:"issuer"`
	Contact     *broker.Contact `json:"contact"`
}

func (p *Portal) checkForm(w http.ResponseWriter, r *http.Request, s *Session) {
	p.render(w, r, http.StatusOK, "check", struct{ Purposes []string }{purposes}, &view{Session: s, Form: url.Values{"purpose": {"meeting"}}})
}

func (p *Portal) emergencyForm(w http.ResponseWriter, r *http.Request, s *Session) {
	p.render(w, r, http.StatusOK, "emergency", struct{ Purposes []string }{purposes}, &view{Session: s, Form: url.Values{"purpose": {"meeting"}}})
}

func (p *Portal) checkPost(w http.ResponseWriter, r *http.Request, s *Session) {
	p.runCheck(w, r, s, false)
}

func (p *Portal) emergencyPost(w http.ResponseWriter, r *http.Request, s *Session) {
	p.runCheck(w, r, s, true)
}

// runCheck sends the check and shows the answer on the page that answers
// the POST: the number is in no URL, and the answer page does not show it.
func (p *Portal) runCheck(w http.ResponseWriter, r *http.Request, s *Session, emergency bool) {
	lang := p.lang(r)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	page := "check"
	if emergency {
		page = "emergency"
	}
	form := url.Values{"purpose": {r.PostForm.Get("purpose")}, "justification": {r.PostForm.Get("justification")}}
	errs := map[string]string{}
	subject := strings.TrimSpace(r.PostForm.Get("subject"))
	if _, err := broker.ParseSubject(subject, p.cfg.TestSubjects); err != nil {
		errs["subject"] = text(lang, "err.subject")
	}
	purpose := r.PostForm.Get("purpose")
	if !slices.Contains(purposes, purpose) {
		purpose = "meeting"
	}
	body := map[string]any{"subject": subject, "purpose": purpose}
	if emergency {
		j := strings.TrimSpace(r.PostForm.Get("justification"))
		if r.PostForm.Get("confirm") != "yes" || broker.VisibleLen(j) < 20 {
			errs["justification"] = text(lang, "err.justification")
		}
		body["emergency"] = map[string]any{"justification": j}
	}
	data := struct{ Purposes []string }{purposes}
	if len(errs) > 0 {
		p.render(w, r, http.StatusUnprocessableEntity, page, data, &view{Session: s, Errors: errs, Form: form})
		return
	}
	var ans checkAnswer
	resp, err := p.call(r.Context(), s, "POST", "/v1/checks", body, &ans)
	if err != nil {
		if fe := p.fieldErrors(lang, resp, err); fe != nil {
			p.render(w, r, http.StatusUnprocessableEntity, page, data, &view{Session: s, Errors: fe, Form: form})
			return
		}
		p.brokerFailed(w, r, resp, err)
		return
	}
	ans.Clear = ans.Result != "precautions" && ans.Exception == nil
	p.render(w, r, http.StatusOK, "result", ans, &view{Session: s})
}

// call sends one signed request as the session's employee.
func (p *Portal) call(ctx context.Context, s *Session, method, path string, body, out any) (*client.Response, error) {
	bc, err := p.brokerClient(s)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	return bc.JSON(ctx, method, path, body, out)
}

// fieldErrors turns the broker's validation problems into messages beside
// the fields they are about, or nil when the error is not one.
func (p *Portal) fieldErrors(lang string, resp *client.Response, err error) map[string]string {
	var se *client.StatusError
	if !errors.As(err, &se) || resp == nil {
		return nil
	}
	pr := resp.Problem()
	if pr == nil || (resp.Status != http.StatusUnprocessableEntity && resp.Status != http.StatusTooManyRequests && resp.Status != http.StatusForbidden) {
		return nil
	}
	field := ""
	switch pr.Code {
	case broker.CodeInvalidSubject:
		return map[string]string{"subject": text(lang, "err.subject")}
	case broker.CodeJustificationRequired:
		return map[string]string{"justification": text(lang, "err.justification")}
	case broker.CodeRateLimited:
		return map[string]string{"": text(lang, "err.ratelimited")}
	case broker.CodeForbidden:
		return map[string]string{"": text(lang, "err.forbidden")}
	case broker.CodeInvalidValidity:
		field = "valid_until"
	case broker.CodeUnknownLegalBasis:
		field = "legal_basis"
	case broker.CodeUnknownOffice:
		field = "offices"
	default:
		// "field X: ..." or "X must ..." name the field in the detail.
		for _, f := range []string{"decision", "level", "categories", "precautions", "valid_until", "legal_basis", "audience", "contact", "subject_informed", "targets", "reason"} {
			if strings.Contains(pr.Detail, f) {
				field = f
				break
			}
		}
	}
	return map[string]string{field: pr.Detail}
}

// brokerFailed answers when the broker could not be asked or refused.
func (p *Portal) brokerFailed(w http.ResponseWriter, r *http.Request, resp *client.Response, err error) {
	switch {
	case resp == nil || resp.Status >= 500:
		p.log.Error("broker request failed", "path", r.URL.Path, "err", err)
		p.renderError(w, r, http.StatusBadGateway, "err.broker")
	case resp.Status == http.StatusUnauthorized:
		p.log.Warn("broker refused the portal's request", "path", r.URL.Path, "code", problemCode(resp))
		p.renderError(w, r, http.StatusForbidden, "err.role")
	case resp.Status == http.StatusForbidden:
		p.renderError(w, r, http.StatusForbidden, "err.forbidden")
	default:
		p.log.Warn("broker answered", "path", r.URL.Path, "status", resp.Status, "code", problemCode(resp))
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
	}
}

// legalBasis is an entry of GET /v1/legal-bases, as the forms need it.
type legalBasis struct {
	Code          string   `json:"code"`
	Title         string   `json:"title"`
	From          []string `json:"from"`
	To            []string `json:"to"`
	EmergencyOnly bool     `json:"emergency_only"`
	Conditions    string   `json:"conditions"`
	MaxValidity   int      `json:"max_validity_days"`
	Obligations   any      `json:"obligations"`
}

// basesFor lists the bases an agency of kind may issue under, outside the
// emergency exception.
func (p *Portal) basesFor(ctx context.Context, s *Session, kind string) ([]legalBasis, error) {
	var res struct {
		LegalBases []legalBasis `json:"legal_bases"`
	}
	if _, err := p.call(ctx, s, "GET", "/v1/legal-bases", nil, &res); err != nil {
		return nil, err
	}
	var out []legalBasis
	for _, b := range res.LegalBases {
		if !b.EmergencyOnly && slices.Contains(b.From, kind) {
			out = append(out, b)
		}
	}
	return out, nil
}

// flagPage is what the flag and warning forms show.
type flagPage struct {
	Levels, Categories, Precautions, Kinds []string
	Bases                                  []legalBasis
	Warning                                bool
	DecisionRoles                          []string
}

// agencyKind asks the broker who the employee is (the kind picks the bases).
func (p *Portal) agencyKind(ctx context.Context, s *Session) (string, error) {
	var who struct {
		AgencyKind string `json:"agency_kind"`
	}
	_, err := p.call(ctx, s, "GET", "/v1/whoami", nil, &who)
	return who.AgencyKind, err
}

func (p *Portal) flagPageData(ctx context.Context, s *Session, warning bool) (*flagPage, error) {
	kind, err := p.agencyKind(ctx, s)
	if err != nil {
		return nil, err
	}
	bases, err := p.basesFor(ctx, s, kind)
	if err != nil {
		return nil, err
	}
	levels := broker.Levels
	if s.Role != broker.RoleSecurityCoordinator {
		levels = slices.DeleteFunc(slices.Clone(levels), func(l string) bool { return l == broker.LevelExclusion })
	}
	return &flagPage{Levels: levels, Categories: broker.Categories, Precautions: broker.Precautions,
		Kinds: broker.AudienceKinds, Bases: bases, Warning: warning, DecisionRoles: broker.DecidedByRoles}, nil
}

func (p *Portal) flagForm(w http.ResponseWriter, r *http.Request, s *Session) {
	p.showFlagForm(w, r, s, false)
}
func (p *Portal) warningForm(w http.ResponseWriter, r *http.Request, s *Session) {
	p.showFlagForm(w, r, s, true)
}

func (p *Portal) showFlagForm(w http.ResponseWriter, r *http.Request, s *Session, warning bool) {
	data, err := p.flagPageData(r.Context(), s, warning)
	if err != nil {
		p.brokerFailed(w, r, nil, err)
		return
	}
	page := "flag"
	if warning {
		page = "warning"
	}
	until := p.now().AddDate(0, 0, 30).In(oslo).Format("2006-01-02")
	p.render(w, r, http.StatusOK, page, data, &view{Session: s, Form: url.Values{"valid_until": {until}, "level": {broker.LevelHigh}}})
}

func (p *Portal) flagPost(w http.ResponseWriter, r *http.Request, s *Session) {
	p.postFlag(w, r, s, false)
}
func (p *Portal) warningPost(w http.ResponseWriter, r *http.Request, s *Session) {
	p.postFlag(w, r, s, true)
}

// postFlag sends a flag (or a warning: a flag with target offices) built
// from the form; the broker's validation errors are shown beside the fields.
func (p *Portal) postFlag(w http.ResponseWriter, r *http.Request, s *Session, warning bool) {
	lang := p.lang(r)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	f := r.PostForm
	page, path := "flag", "/v1/flags"
	if warning {
		page, path = "warning", "/v1/warnings"
	}
	data, err := p.flagPageData(r.Context(), s, warning)
	if err != nil {
		p.brokerFailed(w, r, nil, err)
		return
	}
	kept := url.Values{}
	for k, v := range f {
		if k != "subject" {
			kept[k] = v
		}
	}
	errs := map[string]string{}
	subject := strings.TrimSpace(f.Get("subject"))
	if _, err := broker.ParseSubject(subject, p.cfg.TestSubjects); err != nil {
		errs["subject"] = text(lang, "err.subject")
	}
	body := map[string]any{
		"subject": subject, "level": f.Get("level"), "categories": nonNil(f["categories"]), "precautions": nonNil(f["precautions"]),
		"legal_basis": f.Get("legal_basis"),
		"audience":    map[string]any{"kinds": nonNil(f["kinds"]), "offices": splitList(f.Get("offices"))},
		"contact":     map[string]any{"unit": strings.TrimSpace(f.Get("contact_unit")), "phone": strings.TrimSpace(f.Get("contact_phone"))},
	}
	if d, err := time.ParseInLocation("2006-01-02", f.Get("valid_until"), oslo); err == nil {
		body["valid_until"] = d.Add(24*time.Hour - time.Second).UTC().Format(time.RFC3339)
	} else {
		errs["valid_until"] = text(lang, "valid_until")
	}
	switch f.Get("informed") {
	case "yes":
		body["subject_informed"] = map[string]any{"informed": true}
	case "no":
		body["subject_informed"] = map[string]any{"informed": false, "reason": strings.TrimSpace(f.Get("informed_reason"))}
	}
	if f.Get("duty_desk") == "yes" {
		body["represented_by"] = "duty-desk"
	}
	if by := strings.TrimSpace(f.Get("decided_by")); by != "" {
		dec := map[string]any{"decided_by": by, "decided_by_role": f.Get("decided_by_role"),
			"reference": strings.TrimSpace(f.Get("decision_ref"))}
		if f.Get("milder") == "yes" {
			dec["milder_measures_considered"] = true
		}
		now := p.now()
		if d, err := time.ParseInLocation("2006-01-02", f.Get("decided_at"), oslo); err == nil {
			dec["decided_at"] = dayTime(d, now).UTC().Format(time.RFC3339)
		}
		if d, err := time.ParseInLocation("2006-01-02", f.Get("notice_at"), oslo); err == nil {
			dec["notice_given_at"] = dayTime(d, now).UTC().Format(time.RFC3339)
			dec["could_respond"] = f.Get("could_respond") == "yes"
		}
		if r := strings.TrimSpace(f.Get("no_notice_reason")); r != "" {
			dec["no_notice_reason"] = r
		}
		body["decision"] = dec
	}
	if warning {
		body["targets"] = map[string]any{"offices": splitList(f.Get("targets"))}
	}
	if len(errs) > 0 {
		p.render(w, r, http.StatusUnprocessableEntity, page, data, &view{Session: s, Errors: errs, Form: kept})
		return
	}
	var res struct {
		ID     string `json:"id"`
		FlagID string `json:"flag_id"`
	}
	resp, err := p.call(r.Context(), s, "POST", path, body, &res)
	if err != nil {
		if fe := p.fieldErrors(lang, resp, err); fe != nil {
			p.render(w, r, http.StatusUnprocessableEntity, page, data, &view{Session: s, Errors: fe, Form: kept})
			return
		}
		p.brokerFailed(w, r, resp, err)
		return
	}
	key := "flag.done"
	if warning {
		key = "warn.done"
	}
	p.render(w, r, http.StatusOK, "done", struct{ Key, ID string }{key, res.ID}, &view{Session: s})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// splitList reads "a, b c" as [a b c].
func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		out = append(out, f)
	}
	return out
}

// inboxItem is one warning in the inbox page.
type inboxItem struct {
	ID          string     `json:"id"`
	Cursor      string     `json:"cursor"`
	Office      string     `json:"office"`
	DeliveredAt time.Time  `json:"delivered_at"`
	ReadAt      *time.Time `json:"read_at"`
	AckedAt     *time.Time `json:"acked_at"`
	Flag        shownFlag  `json:"flag"`
}

type inboxPage struct {
	Warnings []inboxItem `json:"warnings"`
	Next     string      `json:"next"`
}

// readInbox reads the office's whole inbox (pages of 200).
func (p *Portal) readInbox(ctx context.Context, s *Session, after string, wait time.Duration) (*inboxPage, error) {
	q := url.Values{"office": {s.Office}, "limit": {"200"}}
	if after != "" {
		q.Set("after", after)
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var page inboxPage
	_, err := p.call(ctx, s, "GET", "/v1/warnings/inbox?"+q.Encode(), nil, &page)
	return &page, err
}

func (p *Portal) inboxPage(w http.ResponseWriter, r *http.Request, s *Session) {
	page, err := p.readInbox(r.Context(), s, "", 0)
	if err != nil {
		p.brokerFailed(w, r, nil, err)
		return
	}
	unread := 0
	for _, it := range page.Warnings {
		if it.AckedAt == nil {
			unread++
		}
	}
	p.render(w, r, http.StatusOK, "inbox", struct {
		Office string
		Items  []inboxItem
		Unread int
		Next   string
	}{s.Office, page.Warnings, unread, page.Next}, &view{Session: s})
}

func (p *Portal) inboxAck(w http.ResponseWriter, r *http.Request, s *Session) {
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	id := r.PostForm.Get("id")
	if id == "" || !broker.CleanText(id, false) || len(id) > 64 {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	if resp, err := p.call(r.Context(), s, "POST", "/v1/warnings/"+url.PathEscape(id)+"/ack", nil, nil); err != nil {
		p.brokerFailed(w, r, resp, err)
		return
	}
	http.Redirect(w, r, "/inbox", http.StatusSeeOther)
}

// flagsView is the issuer's list of flags and who saw them.
type flagsView struct {
	Flags       []listedFlag
	Disclosures []disclosure
	CanRevoke   bool
}

type listedFlag struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"`
	Level       string    `json:"level"`
	Precautions []string  `json:"precautions"`
	ValidUntil  time.Time `json:"valid_until"`
	LegalBasis  string    `json:"legal_basis"`
	CreatedAt   time.Time `json:"created_at"`
}

type disclosure struct {
	Seq        int64     `json:"seq"`
	FlagID     string    `json:"flag_id"`
	At         time.Time `json:"at"`
	Agency     string    `json:"agency"`
	Office     string    `json:"office"`
	Role       string    `json:"role"`
	Action     string    `json:"action"`
	LegalBasis string    `json:"legal_basis"`
	Emergency  bool      `json:"emergency"`
}

func (p *Portal) flagsPage(w http.ResponseWriter, r *http.Request, s *Session) {
	ctx := r.Context()
	var list struct {
		Flags []listedFlag `json:"flags"`
	}
	if resp, err := p.call(ctx, s, "GET", "/v1/flags?status=all&limit=200", nil, &list); err != nil {
		p.brokerFailed(w, r, resp, err)
		return
	}
	var feed struct {
		Disclosures []disclosure `json:"disclosures"`
	}
	if resp, err := p.call(ctx, s, "GET", "/v1/flags/disclosures?limit=200", nil, &feed); err != nil {
		p.brokerFailed(w, r, resp, err)
		return
	}
	slices.Reverse(feed.Disclosures) // newest first
	p.render(w, r, http.StatusOK, "flags", flagsView{Flags: list.Flags, Disclosures: feed.Disclosures,
		CanRevoke: slices.Contains(issuerRoles, s.Role)}, &view{Session: s})
}

func (p *Portal) revokePost(w http.ResponseWriter, r *http.Request, s *Session) {
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	id, reason := r.PostForm.Get("id"), strings.TrimSpace(r.PostForm.Get("reason"))
	if id == "" || !broker.CleanText(id, false) || len(id) > 64 {
		p.renderError(w, r, http.StatusBadRequest, "err.internal")
		return
	}
	if resp, err := p.call(r.Context(), s, "POST", "/v1/flags/"+url.PathEscape(id)+"/revoke", map[string]any{"reason": reason}, nil); err != nil {
		if resp != nil && resp.Status == http.StatusUnprocessableEntity {
			p.renderError(w, r, http.StatusUnprocessableEntity, "flags.reason")
			return
		}
		p.brokerFailed(w, r, resp, err)
		return
	}
	http.Redirect(w, r, "/flags", http.StatusSeeOther)
}

// dayTime is the time a form's date (midnight in Oslo) stands for: noon
// of that day, but never later than now when the day is today, so that a
// decision taken this morning is not sent as one in the future (which the
// broker refuses). A day still to come stays in the future.
func dayTime(day, now time.Time) time.Time {
	t := day.Add(12 * time.Hour)
	if t.After(now) && !day.After(now) {
		return now
	}
	return t
}
