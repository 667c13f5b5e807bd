package service

import (
	"context"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/policies"
)

// FlagLister lists an agency's own flags; postgres.DB implements it.
type FlagLister interface {
	IssuedFlags(ctx context.Context, issuer string, activeOnly bool, t time.Time, limit int) ([]*broker.Flag, error)
}

// FlagList is the answer of GET /v1/flags.
type FlagList struct {
	Flags []*broker.Flag `json:"flags"`
	Audit audit.Receipt  `json:"audit"`
}

// FlagListQuery selects the caller's agency's flags.
type FlagListQuery struct {
	All   bool // revoked and expired too
	Limit int  // default 50, at most 200
}

// ListFlags lists the flags the caller's agency issued, for the roles that
// may read them (issuers, agency admins, privacy officers). The list is
// audited with the ids it showed.
func (s *Service) ListFlags(ctx context.Context, p *broker.Principal, q FlagListQuery) (*FlagList, error) {
	if q.Limit == 0 {
		q.Limit = DefaultSearchLimit
	}
	if q.Limit < 1 || q.Limit > MaxSearchLimit {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be 1 to %d", MaxSearchLimit)
	}
	lister, ok := s.Flags.(FlagLister)
	if !ok {
		return nil, broker.Errorf(broker.EINTERNAL, "flags cannot be listed")
	}
	if _, err := s.authorize(ctx, p, policies.ActionFlagRead, &policies.FlagResource{IssuerAgency: p.Agency}, nil); err != nil {
		return nil, err
	}
	now := s.now()
	flags, err := lister.IssuedFlags(ctx, p.Agency, !q.All, now, q.Limit)
	if err != nil {
		return nil, &broker.Error{Kind: broker.EUNAVAILABLE, Message: "flags cannot be read", Err: err}
	}
	e := s.entry(p, "flag.list", audit.Allow)
	for _, f := range flags {
		f.Status = f.StatusAt(now)
		e.FlagIDs = append(e.FlagIDs, f.ID)
	}
	r, err := s.append(ctx, e)
	if err != nil {
		return nil, err
	}
	if flags == nil {
		flags = []*broker.Flag{}
	}
	return &FlagList{Flags: flags, Audit: r}, nil
}
