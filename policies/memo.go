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

// Checks of flagged people are decided from each flag's properties, the
// reader's and the day, never from the flags' ids, which the rules only copy
// into the answer, and each flag on its own (the rules have no rule over
// two flags). So each flag is decided alone, with its id replaced by "0":
// that decision cannot depend on the real id, and it is kept, keyed by
// everything else the rules read (the sub is never read: readsSub; the
// time only through the decision day: readsTimeOutsideDay). A check's
// answer is its flags' kept decisions with the real ids put back, sorted by
// id as the rules sort. TestFlagsMemo compares it with the policy evaluated
// over the whole input; should a rule ever decide a flag by another, that
// test fails, and so does any answer whose per-flag parts disagree on
// allow, review or reasons (then the whole input is evaluated instead).

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
	out := Disclosure{Flags: []Disclosed{}, Exception: []Excepted{}}
	for i := range in.Flags {
		d, err := e.discloseOne(ctx, memo, in, i, day)
		if err != nil {
			return Disclosure{}, err
		}
		if i == 0 {
			out.Allow, out.ReviewRequired, out.Reasons = d.Allow, d.ReviewRequired, slices.Clone(d.Reasons)
		} else if d.Allow != out.Allow || d.ReviewRequired != out.ReviewRequired || !slices.Equal(d.Reasons, out.Reasons) {
			return e.disclose(ctx, in) // not decided flag by flag: evaluate the whole
		}
		for _, f := range d.Flags {
			if f.ID != "0" {
				return e.disclose(ctx, in)
			}
			f.ID, f.Fields = in.Flags[i].ID, slices.Clone(f.Fields)
			out.Flags = append(out.Flags, f)
		}
		for _, x := range d.Exception {
			if x.ID != "0" {
				return e.disclose(ctx, in)
			}
			x.ID = in.Flags[i].ID
			out.Exception = append(out.Exception, x)
		}
	}
	slices.SortFunc(out.Flags, func(a, b Disclosed) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(out.Exception, func(a, b Excepted) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// discloseOne is the decision over in's flag i alone, under the id "0":
// kept, or evaluated and kept. The caller must not change it.
func (e *Engine) discloseOne(ctx context.Context, memo *flagsMemo, in DisclosureInput, i int, day string) (Disclosure, error) {
	one := in
	one.Flags = []FlagMeta{in.Flags[i]}
	one.Flags[0].ID = "0"
	key := flagsKey(one, day)
	if memo != nil {
		if v, ok := memo.m.Load(key); ok {
			return v.(Disclosure), nil
		}
	}
	d, err := e.disclose(ctx, one)
	if err != nil {
		return Disclosure{}, err
	}
	if memo != nil && memo.n.Add(1) <= maxFlagsMemo {
		memo.m.Store(key, d.clone())
	}
	return d, nil
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
