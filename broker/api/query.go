package api

import (
	"net/url"
	"strconv"
	"time"

	"varsel/broker"
	"varsel/broker/service"
)

// Query parameters are parsed here, into the domain's filter types:
// nothing below the HTTP layer sees url.Values.

// parseInboxQuery reads the query of GET /v1/warnings/inbox.
func parseInboxQuery(q url.Values) (service.InboxQuery, error) {
	in := service.InboxQuery{Office: q.Get("office"), After: q.Get("after"), Limit: service.DefaultInboxLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > service.MaxInboxLimit {
			return in, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be 1 to %d", service.MaxInboxLimit)
		}
		in.Limit = n
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > service.MaxInboxWait {
			return in, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "wait must be a duration up to 30s, e.g. 30s")
		}
		in.Wait = d
	}
	if in.After != "" {
		if n, err := strconv.ParseInt(in.After, 10, 64); err != nil || n < 0 {
			return in, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "after is not a cursor from this inbox")
		}
	}
	return in, nil
}

// parseReviewFilter reads the query of GET /v1/audit/reviews; the service
// checks the values.
func parseReviewFilter(q url.Values) (broker.ReviewFilter, error) {
	f := broker.ReviewFilter{Status: q.Get("status"), Kind: q.Get("kind")}
	if f.Status == "all" {
		f.Status = ""
	}
	if v := q.Get("after_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "after_seq must be a seq")
		}
		f.AfterSeq = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return f, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be 1 to %d", service.MaxSearchLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// parseStatsFilter reads the query of GET /v1/audit/stats.
func parseStatsFilter(q url.Values) (broker.StatsFilter, error) {
	f := broker.StatsFilter{GroupBy: q.Get("group_by")}
	var err error
	if v := q.Get("to"); v != "" {
		if f.To, err = time.Parse(time.RFC3339, v); err != nil {
			return f, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "to must be an RFC 3339 time")
		}
	}
	if v := q.Get("from"); v != "" {
		if f.From, err = time.Parse(time.RFC3339, v); err != nil {
			return f, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "from must be an RFC 3339 time")
		}
	}
	return f, nil
}
