package policies

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Checks of flagged people are decided from the flags' properties, the
// reader's and the day, never from the flags' ids, which the rules only
// copy into the answer. So the policy is evaluated with each flag's id
// replaced by its position in the input ("0", "1", …): the decision cannot
// depend on the real ids, and is kept, keyed by everything else the rules
// read (the sub is never read: readsSub; the time only through the
// decision day: readsTimeOutsideDay). A kept decision is answered by putting
// the real ids back and sorting by them, as the rules sort.

// flagsMemo is one day's kept decisions for checks with flags.
type flagsMemo struct {
	day string
	m   sync.Map // flagsKey string → Disclosure with position ids
	n   atomic.Int64
}

// maxFlagsMemo bounds one day's kept decisions. Past it, decisions are
// evaluated every time until the day changes.
const maxFlagsMemo = 50_000

var oslo = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		return nil
	}
	return loc
}()

// decisionDay is the policy's decision_day (catalogue.day) computed in Go:
// the date in Norway of t.
func decisionDay(t time.Time) string {
	return t.In(oslo).Format(time.DateOnly)
}

// discloseFlags decides a check with flags through the memo.
func (e *Engine) discloseFlags(ctx context.Context, in DisclosureInput) (Disclosure, error) {
	day := decisionDay(in.Time)
	memo := e.flagsMemo.Load()
	if memo == nil || memo.day != day {
		fresh := &flagsMemo{day: day}
		if e.flagsMemo.CompareAndSwap(memo, fresh) {
			memo = fresh
		} else if memo = e.flagsMemo.Load(); memo.day != day {
			memo = nil // another day's check raced this one: no memo
		}
	}
	key := flagsKey(in, day)
	if memo != nil {
		if v, ok := memo.m.Load(key); ok {
			return withIDs(v.(Disclosure), in.Flags), nil
		}
	}
	anon := in
	anon.Flags = slices.Clone(in.Flags)
	for i := range anon.Flags {
		anon.Flags[i].ID = strconv.Itoa(i)
	}
	d, err := e.disclose(ctx, anon)
	if err != nil {
		return Disclosure{}, err
	}
	if memo != nil && memo.n.Add(1) <= maxFlagsMemo {
		memo.m.Store(key, d.clone())
	}
	return withIDs(d, in.Flags), nil
}

// withIDs returns d, decided over position ids, with the flags' real ids,
// each list sorted by id.
func withIDs(d Disclosure, flags []FlagMeta) Disclosure {
	d = d.clone()
	real := func(pos string) string {
		i, err := strconv.Atoi(pos)
		if err != nil || i < 0 || i >= len(flags) {
			// Not a position the input held: the rules made an id up.
			// Answer nothing rather than guess.
			return ""
		}
		return flags[i].ID
	}
	for i := range d.Flags {
		d.Flags[i].ID = real(d.Flags[i].ID)
		d.Flags[i].Fields = slices.Clone(d.Flags[i].Fields)
	}
	for i := range d.Exception {
		d.Exception[i].ID = real(d.Exception[i].ID)
	}
	if slices.ContainsFunc(d.Flags, func(f Disclosed) bool { return f.ID == "" }) ||
		slices.ContainsFunc(d.Exception, func(f Excepted) bool { return f.ID == "" }) {
		return Disclosure{Flags: []Disclosed{}, Exception: []Excepted{}, ReviewRequired: d.ReviewRequired, Reasons: []string{reasonUndefined}}
	}
	slices.SortFunc(d.Flags, func(a, b Disclosed) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(d.Exception, func(a, b Excepted) int { return cmp.Compare(a.ID, b.ID) })
	return d
}

// flagsKey is every input field the rules read, but the flags' ids and
// the time (for which the day stands), length-prefixed so that no two
// inputs share a key.
func flagsKey(in DisclosureInput, day string) string {
	var b strings.Builder
	b.Grow(64 + 96*len(in.Flags))
	put := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	putAll := func(ss []string) {
		b.WriteString(strconv.Itoa(len(ss)))
		b.WriteByte('[')
		for _, s := range ss {
			put(s)
		}
	}
	p := in.Principal
	put(p.Agency)
	put(p.AgencyKind)
	put(p.Role)
	put(p.Office)
	put(in.Purpose)
	put(strconv.FormatBool(in.Emergency))
	put(day)
	b.WriteString(strconv.Itoa(len(in.Flags)))
	for i := range in.Flags {
		f := &in.Flags[i]
		b.WriteByte('{')
		put(f.Level)
		put(f.IssuerAgency)
		put(f.IssuerKind)
		put(f.IssuerOffice)
		put(f.LegalBasis)
		putAll(f.Audience.Kinds)
		putAll(f.Audience.Offices)
		put(strconv.FormatBool(f.DutyDesk))
	}
	return b.String()
}

// readsTimeOutsideDay reports whether any rule the disclosure query may
// reach reads input.time other than the disclosure package's decision_day
// (or reads input in a way that could reach the time).
func readsTimeOutsideDay(modules map[string]*ast.Module) bool {
	found := false
	timeKey := ast.StringTerm("time")
	for _, m := range modules {
		pkg := m.Package.Path.String()
		if pkg == "data.authz" {
			continue // not part of the disclosure query
		}
		for _, r := range m.Rules {
			if pkg == "data.disclosure" && r.Head.Ref().String() == "decision_day" {
				continue
			}
			ast.WalkRefs(r, func(ref ast.Ref) bool {
				if !ref[0].Equal(ast.InputRootDocument) {
					return false
				}
				if len(ref) == 1 || !ast.IsConstant(ref[1].Value) || ref[1].Equal(timeKey) {
					found = true
				}
				return false
			})
		}
	}
	return found
}
