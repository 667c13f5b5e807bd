package portal

import (
	"net/http"
	"strings"
)

// Languages: Norwegian bokmål by default, English by Accept-Language or
// the switch in the page header (a cookie).
const (
	langNB = "nb"
	langEN = "en"
)

// lang picks the page language: the switch's cookie, else the first of
// Accept-Language that the portal speaks, else bokmål.
func (p *Portal) lang(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == langNB || c.Value == langEN) {
		return c.Value
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.SplitN(tag, "-", 2)[0]) {
		case "nb", "no", "nn":
			return langNB
		case "en":
			return langEN
		}
	}
	return langNB
}

func (p *Portal) setLang(w http.ResponseWriter, r *http.Request) {
	l := r.PathValue("lang")
	if l != langNB && l != langEN {
		l = langNB
	}
	http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", HttpOnly: true, Secure: p.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
	back := "/"
	if ref := r.URL.Query().Get("back"); localPath(ref) {
		back = ref
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// localPath reports whether ref is a path on this site, safe to redirect
// to. Browsers read "//host", "/\host" and "/<tab>/host" as another host.
func localPath(ref string) bool {
	return strings.HasPrefix(ref, "/") && !strings.HasPrefix(ref, "//") &&
		!strings.ContainsFunc(ref, func(c rune) bool { return c == '\\' || c < 0x20 || c == 0x7f })
}

// messages holds every text of the pages, in both languages.
var messages = map[string][2]string{ // [nb, en]
	"app":                       {"Varsel", "Varsel"},
	"skip":                      {"Hopp til innholdet", "Skip to content"},
	"signin":                    {"Logg inn", "Sign in"},
	"signout":                   {"Logg ut", "Sign out"},
	"welcome.title":             {"Varsel for ansatte", "Varsel for staff"},
	"welcome.body":              {"Sjekk om du bør ta forholdsregler før et møte, registrer risikoflagg og følg kontorets varsler. Logg inn med virksomhetens innlogging.", "Check whether to take precautions before a meeting, register risk flags and follow your office's warnings. Sign in with your agency's login."},
	"nav.check":                 {"Sjekk før møte", "Check before a meeting"},
	"nav.flag":                  {"Registrer flagg", "Register a flag"},
	"nav.warn":                  {"Varsle kontorer", "Warn offices"},
	"nav.inbox":                 {"Innboks", "Inbox"},
	"nav.flags":                 {"Våre flagg", "Our flags"},
	"nav.main":                  {"Hovedmeny", "Main menu"},
	"lang.switch":               {"English", "Norsk"},
	"you":                       {"Innlogget som", "Signed in as"},
	"role.caseworker":           {"saksbehandler", "caseworker"},
	"role.reception":            {"resepsjon", "reception"},
	"role.security-coordinator": {"sikkerhetskoordinator", "security coordinator"},
	"role.police-liaison":       {"politikontakt", "police liaison"},
	"role.health-worker":        {"helsepersonell", "health worker"},
	"role.privacy-officer":      {"personvernombud", "privacy officer"},
	"role.agency-admin":         {"administrator", "administrator"},

	"check.title":             {"Sjekk før et møte", "Check before a meeting"},
	"check.intro":             {"Skriv inn fødselsnummeret til personen du skal møte. Nummeret lagres ikke, og vises ikke etter svaret.", "Enter the national identity number of the person you will meet. The number is not stored and is not shown after the answer."},
	"subject":                 {"Fødselsnummer eller D-nummer (11 siffer)", "National identity or D number (11 digits)"},
	"purpose":                 {"Formål", "Purpose"},
	"purpose.meeting":         {"Møte", "Meeting"},
	"purpose.home-visit":      {"Hjemmebesøk", "Home visit"},
	"purpose.phone-call":      {"Telefonsamtale", "Phone call"},
	"purpose.case-processing": {"Saksbehandling", "Case processing"},
	"meeting":                 {"Møtetidspunkt (valgfritt)", "Meeting time (optional)"},
	"check.submit":            {"Sjekk", "Check"},
	"check.clear":             {"Ingen forholdsregler registrert", "No precautions registered"},
	"check.clear.body":        {"Varsel har ingen forholdsregler du kan se for denne personen. Følg vanlige rutiner.", "Varsel has no precautions you may see for this person. Follow your usual routines."},
	"check.precautions":       {"Ta disse forholdsreglene", "Take these precautions"},
	"check.level":             {"Nivå", "Level"},
	"check.valid":             {"Gjelder til", "Valid until"},
	"check.contact":           {"Kontakt", "Contact"},
	"check.from":              {"Fra", "From"},
	"check.again":             {"Ny sjekk", "Check someone else"},
	"check.receipt":           {"Kvittering", "Receipt"},
	"emergency.link":          {"Fare for liv eller helse? Bruk unntaket", "Danger to life or health? Use the exception"},
	"emergency.title":         {"Unntak: fare for liv eller helse", "Exception: danger to life or health"},
	"emergency.intro":         {"Bruk dette bare når det er nødvendig for å avverge fare for noens liv eller helse. Du får se nivå og forholdsregler også fra flagg som ellers ikke er til deg. Hver bruk blir gjennomgått av personvernombudet etterpå, og den som registrerte flagget får beskjed.", "Use this only when it is necessary to avert a danger to someone's life or health. You will see the level and precautions also of flags not meant for you. Every use is reviewed by a privacy officer afterwards, and the issuer is told."},
	"justification":           {"Begrunnelse (minst 20 synlige tegn)", "Justification (at least 20 visible characters)"},
	"emergency.confirm":       {"Jeg bekrefter at det er fare for liv eller helse, og at bruken blir gjennomgått", "I confirm that life or health is in danger, and that this use will be reviewed"},
	"emergency.submit":        {"Sjekk med unntaket", "Check under the exception"},
	"emergency.aggregate":     {"Unntaket viser bare det høyeste nivået og alle forholdsreglene fra flagg som ellers ikke er til deg, med vaktsentralen som kontakt.", "The exception shows only the highest level and every precaution of flags not otherwise meant for you, with the duty desk as contact."},
	"emergency.used":          {"Unntaket ble brukt. Bruken blir gjennomgått.", "The exception was used. This use will be reviewed."},

	"level":           {"Nivå", "Level"},
	"level.caution":   {"Forsiktighet", "Caution"},
	"level.high":      {"Høy risiko", "High risk"},
	"level.exclusion": {"Utestengt fra kontoret", "Excluded from the office"},

	"cat.threats":    {"Trusler", "Threats"},
	"cat.violence":   {"Vold", "Violence"},
	"cat.weapons":    {"Våpen", "Weapons"},
	"cat.harassment": {"Trakassering", "Harassment"},
	"cat.stalking":   {"Forfølgelse", "Stalking"},

	"pre.two-staff":                 {"To ansatte til stede", "Two staff present"},
	"pre.two-staff.help":            {"Ha aldri møtet alene: en kollega skal være i rommet.", "Never meet alone: a colleague stays in the room."},
	"pre.room-near-exit":            {"Rom nær utgang", "Room near an exit"},
	"pre.room-near-exit.help":       {"Bruk et møterom med fri vei ut for deg.", "Use a meeting room with a clear way out for you."},
	"pre.secure-zone-only":          {"Bare i sikret sone", "Secure zone only"},
	"pre.secure-zone-only.help":     {"Møt personen bare i kontorets sikrede møterom.", "Meet the person only in the office's secured meeting rooms."},
	"pre.alarm-ready":               {"Alarm klar", "Alarm ready"},
	"pre.alarm-ready.help":          {"Ha personalarmen på deg og sjekk at den virker.", "Carry your personal alarm and check that it works."},
	"pre.no-home-visits":            {"Ingen hjemmebesøk", "No home visits"},
	"pre.no-home-visits.help":       {"Ikke besøk personen hjemme.", "Do not visit the person at home."},
	"pre.police-present":            {"Politi til stede", "Police present"},
	"pre.police-present.help":       {"Avtal med politiet før møtet; møt ikke uten dem.", "Arrange with the police before the meeting; do not meet without them."},
	"pre.remote-contact-only":       {"Bare kontakt på avstand", "Remote contact only"},
	"pre.remote-contact-only.help":  {"Bruk telefon, video eller brev, ikke fysisk møte.", "Use phone, video or letters, not a meeting in person."},
	"pre.consult-issuer-first":      {"Kontakt avsender først", "Consult the issuer first"},
	"pre.consult-issuer-first.help": {"Ring kontakten under før du møter personen.", "Call the contact below before you meet the person."},

	"kind.nav-state":                    {"NAV (statlig)", "NAV (state)"},
	"kind.nav-municipal":                {"NAV (kommunal)", "NAV (municipal)"},
	"kind.police":                       {"Politiet", "Police"},
	"kind.health":                       {"Helsetjenesten", "Health services"},
	"categories":                        {"Kategorier", "Categories"},
	"precautions":                       {"Forholdsregler", "Precautions"},
	"valid_until":                       {"Gyldig til (dato)", "Valid until (date)"},
	"legal_basis":                       {"Rettsgrunnlag", "Legal basis"},
	"audience.kinds":                    {"Hvem kan se flagget", "Who may see the flag"},
	"audience.offices":                  {"Bare disse kontorene (kommaseparert, valgfritt)", "Only these offices (comma-separated, optional)"},
	"contact.unit":                      {"Kontaktenhet", "Contact unit"},
	"contact.phone":                     {"Kontakttelefon", "Contact phone"},
	"informed":                          {"Er personen informert?", "Was the person told?"},
	"informed.yes":                      {"Ja", "Yes"},
	"informed.no":                       {"Nei", "No"},
	"informed.reason":                   {"Hvorfor ikke (hvis nei)", "Why not (if no)"},
	"targets":                           {"Kontorer som skal varsles (kommaseparert)", "Offices to warn (comma-separated)"},
	"flag.title":                        {"Registrer et risikoflagg", "Register a risk flag"},
	"flag.intro":                        {"Registrer bare det kontorene trenger for å beskytte ansatte: nivå, forholdsregler og kontakt. Ingen diagnoser eller saksopplysninger.", "Register only what the offices need to protect staff: level, precautions and contact. No diagnoses or case details."},
	"flag.submit":                       {"Registrer flagget", "Register the flag"},
	"flag.done":                         {"Flagget er registrert", "The flag is registered"},
	"warn.title":                        {"Varsle kontorer", "Warn offices"},
	"warn.intro":                        {"Varselet går til innboksen til kontorene du nevner, og til kontorets webhook hvis det har en.", "The warning goes to the inbox of the offices you name, and to each office's webhook if it has one."},
	"warn.submit":                       {"Send varselet", "Send the warning"},
	"warn.done":                         {"Varselet er sendt", "The warning is sent"},
	"basis.limits":                      {"Grenser og plikter", "Limits and obligations"},
	"decision":                          {"Vedtak (kreves for utestenging og for noen rettsgrunnlag)", "Decision record (required for exclusions and some legal bases)"},
	"decision.help":                     {"Fyll ut når grunnlaget eller nivået krever et dokumentert vedtak.", "Fill in when the basis or the level requires a recorded decision."},
	"decision.by":                       {"Besluttet av (navn)", "Decided by (name)"},
	"decision.role":                     {"Beslutningstakers rolle", "Decision-maker's role"},
	"decision.role.office-head":         {"Kontorleder", "Office head"},
	"decision.role.controller":          {"Behandlingsansvarlig", "Controller"},
	"decision.role.controller-delegate": {"Den behandlingsansvarlige har delegert", "Controller's delegate"},
	"decision.at":                       {"Vedtaksdato", "Date of the decision"},
	"decision.ref":                      {"Arkivreferanse", "Archive reference"},
	"decision.notice":                   {"Forhåndsvarsel gitt (dato)", "Advance notice given (date)"},
	"decision.respond":                  {"Personen fikk uttale seg", "The person could respond"},
	"decision.nonotice":                 {"Hvorfor ikke varslet (hvis ikke)", "Why no notice (if none)"},
	"decision.milder":                   {"Mildere tiltak er vurdert", "Milder measures were considered"},
	"dutydesk":                          {"Vis vaktsentralen som avsender og kontakt", "Show the duty desk as issuer and contact"},
	"errors":                            {"Skjemaet har feil", "The form has errors"},

	"inbox.title":    {"Innboks", "Inbox"},
	"inbox.office":   {"Kontor", "Office"},
	"inbox.empty":    {"Ingen varsler.", "No warnings."},
	"inbox.unread":   {"uleste", "unread"},
	"inbox.received": {"Mottatt", "Received"},
	"inbox.ack":      {"Bekreft", "Acknowledge"},
	"inbox.acked":    {"Bekreftet", "Acknowledged"},
	"inbox.live":     {"Oppdateres automatisk.", "Updates by itself."},
	"inbox.new":      {"Nytt varsel", "New warning"},

	"flags.title":         {"Våre flagg", "Our flags"},
	"flags.empty":         {"Ingen flagg.", "No flags."},
	"flags.status":        {"Status", "Status"},
	"flags.revoke":        {"Trekk tilbake", "Revoke"},
	"flags.reason":        {"Grunn", "Reason"},
	"flags.disclosures":   {"Hvem har sett flaggene", "Who saw the flags"},
	"flags.when":          {"Når", "When"},
	"flags.agency":        {"Virksomhet", "Agency"},
	"flags.office":        {"Kontor", "Office"},
	"flags.role":          {"Rolle", "Role"},
	"flags.action":        {"Handling", "Action"},
	"flags.emergency":     {"Unntak", "Exception"},
	"flags.nodisclosures": {"Ingen har sett flaggene ennå.", "Nobody has seen the flags yet."},
	"yes":                 {"Ja", "Yes"},
	"no":                  {"Nei", "No"},

	"err.title":         {"Noe gikk galt", "Something went wrong"},
	"err.role":          {"Du har ikke tilgang til Varsel med rollen din. Kontakt lederen din eller virksomhetens tilgangsstyring.", "Your role gives you no access to Varsel. Ask your manager or your agency's access management."},
	"err.agency":        {"Virksomheten din er ikke koblet til denne portalen.", "Your agency is not connected to this portal."},
	"err.office":        {"Innloggingen din sier ikke hvilket kontor du jobber ved.", "Your login does not say which office you work at."},
	"err.sub":           {"Bruker-id-en fra innloggingen kan ikke brukes i Varsel.", "The user id from your login cannot be used in Varsel."},
	"err.login":         {"Innloggingen ble ikke fullført. Prøv igjen.", "The sign-in did not complete. Try again."},
	"err.signedout":     {"Du er logget ut. Logg inn igjen.", "You are signed out. Sign in again."},
	"err.crossorigin":   {"Skjemaet kom ikke fra denne portalen, og ble avvist.", "The form did not come from this portal and was refused."},
	"err.internal":      {"Noe gikk galt. Ingenting ble endret. Prøv igjen, eller kontakt brukerstøtte.", "Something went wrong. Nothing was changed. Try again, or contact support."},
	"err.broker":        {"Varsel svarer ikke akkurat nå. Ingenting ble vist eller endret. Prøv igjen om litt.", "Varsel is not answering right now. Nothing was shown or changed. Try again shortly."},
	"err.subject":       {"Fødselsnummeret er ikke gyldig: sjekk sifrene.", "The national identity number is not valid: check the digits."},
	"err.justification": {"Skriv en begrunnelse på minst 20 synlige tegn, og bekreft.", "Write a justification of at least 20 visible characters, and confirm."},
	"err.ratelimited":   {"Du har brukt unntaket for mange ganger den siste timen.", "You have used the exception too often in the last hour."},
	"err.forbidden":     {"Rollen din kan ikke gjøre dette.", "Your role cannot do this."},
	"back":              {"Tilbake", "Back"},
}

// text returns the message for key in lang (the key itself when missing).
func text(lang, key string) string {
	m, ok := messages[key]
	if !ok {
		m, ok = officerMessages[key]
	}
	if !ok {
		return key
	}
	if lang == langEN {
		return m[1]
	}
	return m[0]
}
