package service

import (
	"context"
	"slices"
	"strings"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// The privacy officers' projection (docs/api.md §7, "What an officer sees of
// an entry").
//
// Which entries an officer sees is decided in SQL (their agency's own, and
// the allowed disclosures of flags their agency issued). What they see of
// each is decided here, once, for every view: the search, the review list
// and verdicts, and the subject report go through project, and the figures
// count what it shows (postgres.Stats mirrors its legal-basis rule, and the
// end-to-end tests hold the two together). The rule is what the officer's
// agency may know:
//
//   - Its own staff's entries are shown whole, except the ids of other
//     agencies' flags that the staff member never had: those the
//     life-and-health exception revealed without their id (their
//     emergency_flag:<id> reason reads emergency_flag:withheld), and those
//     an entry names without having shown them (a warning's flag on an
//     acknowledgement, a reviewed entry's flags on a verdict; a flag.read or
//     flag.revoke keeps the id the employee asked for when it is the
//     agency's own flag, and a refused one of any other reads as one of a
//     flag that does not exist). The subject_ref is
//     withheld when it came from another agency's flag rather than from the
//     request.
//   - Another agency's entry (there only because it disclosed the viewer's
//     flag) shows when, which agency, office and role, the action and
//     decision, whether the exception was invoked, the viewer's flags and the
//     bases they were disclosed under, and the policy version: nothing of
//     the other agency's own (its employee, the subject_ref, the
//     justification, the request id, other agencies' flags, their bases, or
//     reasons other than the disclosure rule and the viewer's own
//     emergency_flag:<id>). It is built from allow-lists, so a member or
//     reason added to the log later stays out until someone decides.
//
// The operator's auditors (an agency of kind broker) see every entry whole.
// A projected entry is a view: it need not hash to its hash, and is marked
// projected (every entry shown to an agency's officer is, so that the mark
// itself tells nothing). The log is verified by the operator (audit verify,
// or an export), whole. The search's filters match only what the view shows
// (SearchAudit).

// withheldFlagReason stands, in an own entry's reasons, for the
// emergency_flag:<id> of another agency's flag whose id the reader never saw.
const withheldFlagReason = "emergency_flag:withheld"

const emergencyFlagPrefix = "emergency_flag:"

var (
	// disclosesByID are the actions that, allowed, show the reader each
	// normally disclosed flag with its id.
	disclosesByID = []string{"check", policies.ActionWarningInbox}
	// namesFlag are the actions whose request names the flag by its id.
	namesFlag = []string{policies.ActionFlagRead, policies.ActionFlagRevoke}
	// namesSubject are the actions whose subject_ref is of a number the
	// actor gave.
	namesSubject = []string{"check", policies.ActionFlagIssue, policies.ActionWarningIssue,
		policies.ActionAuditSearch, policies.ActionAuditReport}
	// foreignReasons are the reasons another agency's disclosure shows
	// (which rule disclosed; the exception is shown by emergency anyway),
	// besides emergency_flag:<id> of the viewer's own flags.
	foreignReasons = []string{"audience_and_basis", "life_and_health_exception"}
)

// EntryView is an audit entry as the caller may see it.
type EntryView struct {
	audit.Entry
	// Projected: this is the caller's view of the entry, not the entry; it
	// need not hash to Hash. False only for the operator's auditors.
	Projected bool `json:"projected"`
}

// FlagOriginReader looks up many flags' origins in one go; the postgres
// flag store has it. Without it the projection asks FlagStore.Flag per id.
type FlagOriginReader interface {
	FlagOrigins(ctx context.Context, ids []string) (map[string]broker.FlagOrigin, error)
}

// projection is one viewer's projection, with the origins of the flags of
// the entries it is to project.
type projection struct {
	viewer  string // "": the operator's auditors, who see all
	origins map[string]broker.FlagOrigin
}

// newProjection prepares p's projection of entries naming the flags ids.
func (s *Service) newProjection(ctx context.Context, p *broker.Principal, ids []string) (*projection, error) {
	pr := &projection{viewer: scope(p), origins: map[string]broker.FlagOrigin{}}
	if len(ids) == 0 {
		return pr, nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if r, ok := s.Flags.(FlagOriginReader); ok {
		o, err := r.FlagOrigins(ctx, ids)
		if err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
		}
		pr.origins = o
		return pr, nil
	}
	for _, id := range ids {
		f, err := s.Flags.Flag(ctx, id)
		if broker.ErrorKind(err) == broker.ENOTFOUND {
			continue // unknown: treated as another agency's
		} else if err != nil {
			return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "the audit log cannot be read", Err: err}
		}
		pr.origins[id] = broker.FlagOrigin{Issuer: f.Issuer, LegalBasis: f.LegalBasis, SubjectRef: f.SubjectRef}
	}
	return pr, nil
}

// own reports whether the viewer's agency issued the flag. A flag the
// broker does not know is nobody's.
func (pr *projection) own(id string) bool {
	o, ok := pr.origins[id]
	return ok && o.Issuer == pr.viewer
}

// byException reports whether the entry saw the flag only through the
// life-and-health exception (without its id).
func byException(e *audit.Entry, id string) bool {
	return slices.Contains(e.Reasons, emergencyFlagPrefix+id)
}

// flagBasis is the basis a disclosure entry disclosed one flag under: the
// exception's for a flag it revealed, the flag's own otherwise (the same
// rule as the disclosure feed and the figures, postgres.flagBasisSQL).
func (pr *projection) flagBasis(e *audit.Entry, id string) string {
	if byException(e, id) {
		// The route recorded per flag (emergency_basis:<id>:<basis>);
		// entries from before routes were recorded used the one basis.
		prefix := "emergency_basis:" + id + ":"
		for _, r := range e.Reasons {
			if b, ok := strings.CutPrefix(r, prefix); ok && b != "" {
				return b
			}
		}
		return legacyEmergencyBasis
	}
	return pr.origins[id].LegalBasis
}

// bases lists the sorted distinct bases the entry disclosed ids under.
func (pr *projection) bases(e *audit.Entry, ids []string) string {
	var out []string
	for _, id := range ids {
		if b := pr.flagBasis(e, id); b != "" && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// project returns what the viewer may see of e (which must be within the
// viewer's scope). e is not changed.
func (pr *projection) project(e *audit.Entry) EntryView {
	if pr.viewer == "" {
		return EntryView{Entry: *e}
	}
	if e.ActorAgency == pr.viewer {
		return EntryView{Entry: pr.projectOwn(e), Projected: true}
	}
	return EntryView{Entry: pr.projectForeign(e), Projected: true}
}

// projectOwn is an entry of the viewer's own staff.
func (pr *projection) projectOwn(e *audit.Entry) audit.Entry {
	v := *e
	shownByID := e.Decision == audit.Allow && slices.Contains(disclosesByID, e.Action)
	named := slices.Contains(namesFlag, e.Action)
	if named && e.Decision == audit.Deny && !slices.ContainsFunc(e.FlagIDs, pr.own) {
		// A refused read or revocation of another agency's flag reads as
		// one of a flag that does not exist (no id is recorded for that):
		// its id and the policy's reason would tell the officer that
		// another agency holds a flag under that id.
		v.FlagIDs, v.Reasons = []string{}, []string{noSuchFlagReason}
		return v
	}
	v.FlagIDs = []string{}
	foreign := false
	for _, id := range e.FlagIDs {
		if !pr.own(id) {
			foreign = true
			if !named && !(shownByID && !byException(e, id)) {
				continue
			}
		}
		v.FlagIDs = append(v.FlagIDs, id)
	}
	v.Reasons = make([]string, 0, len(e.Reasons))
	var exceptionRoutes []string
	for _, r := range e.Reasons {
		if id, ok := strings.CutPrefix(r, emergencyFlagPrefix); ok && !pr.own(id) {
			r = withheldFlagReason
		}
		if id, basis, ok := emergencyRoute(r); ok && !pr.own(id) {
			// The route names the issuer's sector (politiregl-* is the
			// police's): the reader's side learns neither flag nor source.
			exceptionRoutes = append(exceptionRoutes, basis)
			continue
		}
		v.Reasons = append(v.Reasons, r)
	}
	switch {
	case len(exceptionRoutes) > 0:
		v.LegalBasis = ownBases(e, exceptionRoutes)
	case foreign && !shownByID:
		// Flags copied from another entry (a verdict's, an ack's) were
		// withheld: so are their bases, which could name their sector.
		v.LegalBasis = pr.bases(e, v.FlagIDs)
	}
	if foreign && !slices.Contains(namesSubject, e.Action) {
		v.SubjectRef = "" // another agency's flag's subject, not one the actor named
	}
	return v
}

// projectForeign is another agency's entry that disclosed the viewer's
// flags: an allow-list of what the viewer's agency may know of it.
func (pr *projection) projectForeign(e *audit.Entry) audit.Entry {
	v := audit.Entry{
		Seq: e.Seq, TS: e.TS, ActorAgency: e.ActorAgency, Role: e.Role, Office: e.Office,
		Action: e.Action, Decision: e.Decision, Emergency: e.Emergency, PolicyVersion: e.PolicyVersion,
		PrevHash: e.PrevHash, Hash: e.Hash,
		FlagIDs: []string{}, Reasons: []string{},
	}
	for _, id := range e.FlagIDs {
		if pr.own(id) {
			v.FlagIDs = append(v.FlagIDs, id)
		}
	}
	v.LegalBasis = pr.bases(e, v.FlagIDs)
	for _, r := range e.Reasons {
		if id, ok := strings.CutPrefix(r, emergencyFlagPrefix); ok {
			if pr.own(id) {
				v.Reasons = append(v.Reasons, r)
			}
		} else if id, _, ok := emergencyRoute(r); ok {
			if pr.own(id) {
				v.Reasons = append(v.Reasons, r)
			}
		} else if slices.Contains(foreignReasons, r) {
			v.Reasons = append(v.Reasons, r)
		}
	}
	return v
}

// about reports whether any of the flags is about the subject (one of its refs).
func (pr *projection) about(ids, refs []string) bool {
	for _, id := range ids {
		if o, ok := pr.origins[id]; ok && slices.Contains(refs, o.SubjectRef) {
			return true
		}
	}
	return false
}

// flagIDsOf collects the flag ids of entries, for newProjection.
func flagIDsOf[T any](items []T, ids func(*T) []string) []string {
	var out []string
	for i := range items {
		out = append(out, ids(&items[i])...)
	}
	return out
}

// reviewEntry is the reviewed entry a review carries, for projecting.
func reviewEntry(r *broker.Review) audit.Entry {
	return audit.Entry{Seq: r.Seq, ActorAgency: r.ActorAgency, Actor: r.Actor, Role: r.Role, Office: r.Office,
		Action: r.Action, Decision: r.Decision, SubjectRef: r.SubjectRef, FlagIDs: r.FlagIDs,
		LegalBasis: r.LegalBasis, Justification: r.Justification, Reasons: r.Reasons}
}

// projectReview returns the review with its entry as the viewer may see it.
// Reviews are of the viewer's own staff (or, for the operator, anyone's).
func (pr *projection) projectReview(r *broker.Review) *broker.Review {
	e := reviewEntry(r)
	v := pr.project(&e)
	out := *r
	out.ActorAgency, out.Actor, out.Role, out.Office, out.Action = v.ActorAgency, v.Actor, v.Role, v.Office, v.Action
	out.FlagIDs, out.LegalBasis, out.Justification, out.Projected = v.FlagIDs, v.LegalBasis, v.Justification, v.Projected
	return &out
}

// reportItem projects one disclosure for a subject report about the person
// with refs, keeping only the flags about them (an inbox page may carry
// warnings about several people). It reports false when nothing the viewer
// may see ties the entry to the person.
func (pr *projection) reportItem(it *broker.ReportItem, refs []string) (broker.ReportItem, bool) {
	e := audit.Entry{Seq: it.Seq, ActorAgency: it.Agency, Actor: it.Actor, Role: it.Role, Office: it.Office,
		Action: it.Action, Decision: it.Decision, SubjectRef: it.SubjectRef, FlagIDs: it.FlagIDs,
		LegalBasis: it.LegalBasis, Emergency: it.Emergency, Reasons: it.Reasons}
	v := pr.project(&e)
	kept := []string{}
	for _, id := range v.FlagIDs {
		if pr.about([]string{id}, refs) {
			kept = append(kept, id)
		}
	}
	named := v.SubjectRef != "" && slices.Contains(refs, v.SubjectRef) // an entry about the person alone
	if len(kept) == 0 && !named {
		return broker.ReportItem{}, false
	}
	basis := v.LegalBasis
	if !named {
		basis = pr.bases(&e, kept)
	}
	return broker.ReportItem{Seq: it.Seq, At: it.At, Agency: v.ActorAgency, Office: v.Office, Role: v.Role,
		Action: v.Action, FlagIDs: kept, LegalBasis: basis, Emergency: v.Emergency, Verdict: it.Verdict,
		Projected: v.Projected}, true
}

// legacyEmergencyBasis is the basis of the exception in entries written
// before each flag's route was recorded (emergency_basis:<id>:<basis>).
const legacyEmergencyBasis = "fvl-13b-7"

// emergencyBasisPrefix marks the route the exception took for one flag:
// emergency_basis:<flag id>:<basis>.
const emergencyBasisPrefix = "emergency_basis:"

// emergencyRoute splits an emergency_basis reason.
func emergencyRoute(r string) (id, basis string, ok bool) {
	rest, ok := strings.CutPrefix(r, emergencyBasisPrefix)
	if !ok {
		return "", "", false
	}
	id, basis, ok = strings.Cut(rest, ":")
	return id, basis, ok
}

// ExceptionBasis stands, in the reader's side of the log, for the bases
// under which the life-and-health exception revealed other agencies'
// flags: the reader and its privacy officer know the exception was used,
// not which sector's rule carried it.
const ExceptionBasis = "life-and-health-exception"

// ownBases is the entry's legal_basis with the exception's routes for
// withheld flags replaced by ExceptionBasis (as ownBasisSQL does for the
// figures). Routes are exception-only bases, so none is also the basis of
// a flag the reader saw normally.
func ownBases(e *audit.Entry, routes []string) string {
	var out []string
	for _, b := range strings.Split(e.LegalBasis, ",") {
		if b == "" {
			continue
		}
		if slices.Contains(routes, b) {
			continue
		}
		out = append(out, b)
	}
	out = append(out, ExceptionBasis)
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}
