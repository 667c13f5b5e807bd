package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"varsel/audit"
	"varsel/broker"
)

// sweepLock keeps two replicas from raising the same anomaly at once.
const sweepLock = 0x7661_7273_0002

// SyncEmergencyReviews makes a pending review of every emergency decision
// in the log (allowed, or refused as over the limit) that has none yet.
func (db *DB) SyncEmergencyReviews(ctx context.Context) (int64, error) {
	tag, err := db.Pool.Exec(ctx, `
		INSERT INTO reviews (seq, kind, actor_agency, actor, ts)
		SELECT e.seq, 'emergency', e.actor_agency, e.actor, e.ts FROM audit_entries e
		WHERE e.emergency AND e.decision = 'allow'
		  AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.seq = e.seq AND r.kind = 'emergency')
		ON CONFLICT DO NOTHING`)
	if err != nil {
		return 0, fmt.Errorf("sync emergency reviews: %w", err)
	}
	// Refused emergency attempts (over the limit) are reviewed too, but at
	// most one per employee per hour, so a client retrying in a loop does
	// not flood the queue.
	refused, err := db.Pool.Exec(ctx, `
		INSERT INTO reviews (seq, kind, reason, actor_agency, actor, ts)
		SELECT DISTINCT ON (e.actor_agency, e.actor, date_trunc('hour', e.ts))
		       e.seq, 'emergency', 'refused', e.actor_agency, e.actor, e.ts
		FROM audit_entries e
		WHERE e.emergency AND e.decision = 'deny'
		  AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.kind = 'emergency' AND r.reason = 'refused'
		        AND r.actor_agency = e.actor_agency AND r.actor = e.actor
		        AND date_trunc('hour', r.ts) = date_trunc('hour', e.ts))
		ORDER BY e.actor_agency, e.actor, date_trunc('hour', e.ts), e.seq
		ON CONFLICT DO NOTHING`)
	if err != nil {
		return 0, fmt.Errorf("sync refused emergency reviews: %w", err)
	}
	return tag.RowsAffected() + refused.RowsAffected(), nil
}

// sweepChunk is how many log entries one anomaly transaction looks at. A
// sweep behind by more (a busy half minute, a replica that took the sweep
// over) goes through the backlog in several short transactions: one long
// transaction would hold back PostgreSQL's cleanup of every row updated
// meanwhile (the audit tree's head row among them, once per append) and
// so slow every append until it ends.
var sweepChunk int64 = 10_000

// betweenChunks, when set (tests), runs after each chunk DetectAnomalies
// committed and before the next, with the seq it got to.
var betweenChunks func(upTo int64)

// DetectAnomalies raises anomaly reviews for employees who checked since seq
// after: more than MaxSubjects different people within Window (one review
// per employee per window), the same person more than MaxRepeats times
// within Window (one review per employee and person per window), or checks
// outside office hours (one per employee per day). It returns the seq it
// scanned up to and how many reviews it raised. It goes as far as the log
// reached when it began (entries appended meanwhile wait for the next
// sweep, so that a sweep slower than the appends still ends), and stops
// early, at a chunk boundary, when another replica is sweeping.
func (db *DB) DetectAnomalies(ctx context.Context, after int64, rules broker.AnomalyRules) (int64, int64, error) {
	if rules.Window <= 0 {
		rules.Window = time.Hour
	}
	if rules.MaxSubjects <= 0 {
		rules.MaxSubjects = 30
	}
	if rules.MaxRepeats <= 0 {
		rules.MaxRepeats = 10
	}
	var raised, end int64
	for {
		upTo, last, n, err := db.detectChunk(ctx, after, end, rules)
		raised += n
		if end == 0 {
			end = last
		}
		if err != nil || upTo >= end || upTo == after {
			return upTo, raised, err
		}
		if betweenChunks != nil {
			betweenChunks(upTo)
		}
		after = upTo
	}
}

// detectChunk is one transaction of DetectAnomalies over at most
// sweepChunk entries after seq after, and none after end (0: the log's
// end). It returns the seq it got to and the log's last seq as it read it.
func (db *DB) detectChunk(ctx context.Context, after, end int64, rules broker.AnomalyRules) (upTo, last int64, raised int64, err error) {
	err = db.auditedTx(ctx, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(sweepLock)).Scan(&locked); err != nil {
			return err
		}
		if !locked {
			upTo = after // another replica is sweeping
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), $1) FROM audit_entries`, after).Scan(&last); err != nil {
			return err
		}
		upTo = min(last, after+sweepChunk)
		if end > 0 {
			upTo = min(upTo, end)
		}
		if upTo <= after {
			upTo = after
			return nil
		}
		// The window's first seq, with a minute's margin for entries
		// committed out of time order (the writer's queue, replicas'
		// clocks), so that the per-person count below is a range of the
		// (subject_ref, seq) index rather than the employee's whole hour.
		var lo int64
		err := tx.QueryRow(ctx, seqBeforeSQL, time.Now().Add(-rules.Window-time.Minute)).Scan(&lo)
		if err != nil {
			return fmt.Errorf("find the anomaly window: %w", err)
		}
		// Each query first drops the candidates that already have a
		// review in the window (MATERIALIZED: before the count, not after
		// it), so an employee who keeps checking costs one count per
		// window, not one per sweep; under load that count was most of
		// PostgreSQL's work.
		tag, err := tx.Exec(ctx, `
			WITH cand AS MATERIALIZED (
				SELECT c.actor_agency, c.actor FROM (SELECT DISTINCT actor_agency, actor FROM audit_entries
				              WHERE seq > $1 AND seq <= $2 AND action = 'check') c
				WHERE NOT EXISTS (
					SELECT 1 FROM reviews r WHERE r.kind = 'anomaly' AND r.reason = 'many_subjects'
					  AND r.actor_agency = c.actor_agency AND r.actor = c.actor AND r.ts > now() - make_interval(secs => $3)))
			INSERT INTO reviews (seq, kind, reason, actor_agency, actor, ts)
			SELECT s.last_seq, 'anomaly', 'many_subjects', c.actor_agency, c.actor, s.last_ts
			FROM cand c CROSS JOIN LATERAL (
				SELECT max(e.seq) AS last_seq, max(e.ts) AS last_ts, count(DISTINCT e.subject_ref) AS n
				FROM audit_entries e
				WHERE e.actor_agency = c.actor_agency AND e.actor = c.actor AND e.action = 'check'
				  AND e.subject_ref <> '' AND e.ts > now() - make_interval(secs => $3)) s
			WHERE s.n > $4
			ON CONFLICT DO NOTHING`, after, upTo, rules.Window.Seconds(), rules.MaxSubjects)
		if err != nil {
			return fmt.Errorf("detect many subjects: %w", err)
		}
		raised += tag.RowsAffected()
		// The count per person reads that person's entries in the window
		// and nothing else: the inner SELECT (kept apart by OFFSET 0)
		// gives the planner only the person and the seq range, which
		// only the (subject_ref, seq) index answers. Given the employee
		// too, PostgreSQL may instead read the employee's whole hour for
		// every person they checked (the (actor_agency, actor, ts) index),
		// when its statistics have not seen the last hour's entries yet:
		// thousands of times the work under load.
		tag, err = tx.Exec(ctx, `
			WITH cand AS MATERIALIZED (
				SELECT c.actor_agency, c.actor, c.subject_ref
				FROM (SELECT DISTINCT actor_agency, actor, subject_ref FROM audit_entries
				      WHERE seq > $1 AND seq <= $2 AND action = 'check' AND subject_ref <> '') c
				WHERE NOT EXISTS (
					SELECT 1 FROM reviews r JOIN audit_entries re ON re.seq = r.seq
					WHERE r.kind = 'anomaly' AND r.reason = 'repeated_subject'
					  AND r.actor_agency = c.actor_agency AND r.actor = c.actor AND re.subject_ref = c.subject_ref
					  AND r.ts > now() - make_interval(secs => $3)))
			INSERT INTO reviews (seq, kind, reason, actor_agency, actor, ts)
			SELECT s.last_seq, 'anomaly', 'repeated_subject', c.actor_agency, c.actor, s.last_ts
			FROM cand c CROSS JOIN LATERAL (
				SELECT max(e.seq) AS last_seq, max(e.ts) AS last_ts, count(*) AS n
				FROM (SELECT seq, ts, actor_agency, actor, action FROM audit_entries
				      WHERE subject_ref = c.subject_ref AND subject_ref <> '' AND seq > $5 OFFSET 0) e
				WHERE e.actor_agency = c.actor_agency AND e.actor = c.actor AND e.action = 'check'
				  AND e.ts > now() - make_interval(secs => $3)) s
			WHERE s.n > $4
			ON CONFLICT DO NOTHING`, after, upTo, rules.Window.Seconds(), rules.MaxRepeats, lo)
		if err != nil {
			return fmt.Errorf("detect repeated checks of one person: %w", err)
		}
		raised += tag.RowsAffected()
		if h := rules.Hours; h.Enabled {
			tz := h.TimeZone
			if tz == "" {
				tz = "Europe/Oslo"
			}
			tag, err := tx.Exec(ctx, `
				INSERT INTO reviews (seq, kind, reason, actor_agency, actor, ts)
				SELECT DISTINCT ON (actor_agency, actor, day) seq, 'anomaly', 'off_hours', actor_agency, actor, ts
				FROM (SELECT seq, actor_agency, actor, ts, (ts AT TIME ZONE $3)::date AS day,
				             extract(hour FROM ts AT TIME ZONE $3) AS hour, extract(isodow FROM ts AT TIME ZONE $3) AS dow
				      FROM audit_entries WHERE seq > $1 AND seq <= $2 AND action = 'check') x
				WHERE (x.hour < $4 OR x.hour >= $5 OR ($6 AND x.dow > 5))
				  AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.kind = 'anomaly' AND r.reason = 'off_hours'
				        AND r.actor_agency = x.actor_agency AND r.actor = x.actor AND (r.ts AT TIME ZONE $3)::date = x.day)
				ORDER BY actor_agency, actor, day, seq
				ON CONFLICT DO NOTHING`, after, upTo, tz, h.Start, h.End, h.Weekdays)
			if err != nil {
				return fmt.Errorf("detect off-hours checks: %w", err)
			}
			raised += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return after, last, 0, err
	}
	return upTo, last, raised, nil
}

const reviewColumns = `r.seq, r.kind, r.reason, r.actor_agency, r.actor, r.ts, r.created_at, r.status, r.note,
	r.judged_by, r.judged_agency, r.judged_at, r.verdict_seq,
	r.status = 'pending' AND r.created_at < now() - make_interval(secs => $1),
	e.action, e.office, e.role, e.legal_basis, e.flag_ids, e.justification, e.decision, e.reasons, e.subject_ref`

func scanReview(row pgx.Row) (*broker.Review, error) {
	var r broker.Review
	err := row.Scan(&r.Seq, &r.Kind, &r.Reason, &r.ActorAgency, &r.Actor, &r.At, &r.CreatedAt, &r.Status, &r.Note,
		&r.JudgedBy, &r.JudgedAgency, &r.JudgedAt, &r.VerdictSeq, &r.Overdue,
		&r.Action, &r.Office, &r.Role, &r.LegalBasis, &r.FlagIDs, &r.Justification, &r.Decision, &r.Reasons, &r.SubjectRef)
	if err != nil {
		return nil, err
	}
	r.At, r.CreatedAt = r.At.UTC(), r.CreatedAt.UTC()
	return &r, nil
}

// Reviews lists reviews, oldest first.
func (db *DB) Reviews(ctx context.Context, q broker.ReviewFilter) ([]*broker.Review, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+reviewColumns+`
		FROM reviews r JOIN audit_entries e ON e.seq = r.seq
		WHERE ($2 = '' OR r.actor_agency = $2)
		  AND ($3 = '' OR r.kind = $3)
		  AND ($4 = '' OR ($4 = 'overdue' AND r.status = 'pending' AND r.created_at < now() - make_interval(secs => $1))
		                OR r.status = $4)
		  AND r.seq > $5
		ORDER BY r.seq, r.kind LIMIT $6`, q.OverdueAge.Seconds(), q.Scope, q.Kind, q.Status, q.AfterSeq, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list reviews: %w", err)
	}
	return collectReviews(rows)
}

func collectReviews(rows pgx.Rows) ([]*broker.Review, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*broker.Review, error) { return scanReview(r) })
	if out == nil {
		out = []*broker.Review{}
	}
	return out, err
}

// ReviewsAt returns the reviews of one audit entry (an emergency and an
// anomaly review may share one).
func (db *DB) ReviewsAt(ctx context.Context, seq int64, overdueAge time.Duration) ([]*broker.Review, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+reviewColumns+`
		FROM reviews r JOIN audit_entries e ON e.seq = r.seq WHERE r.seq = $2 ORDER BY r.kind`, overdueAge.Seconds(), seq)
	if err != nil {
		return nil, fmt.Errorf("select reviews at %d: %w", seq, err)
	}
	return collectReviews(rows)
}

// Judge records a verdict on a pending review with its audit entry, in one
// transaction. Errors: ENOTFOUND, ECONFLICT when it was already judged.
func (db *DB) Judge(ctx context.Context, seq int64, kind, verdict, note, by, agency string, e *audit.Entry) error {
	return db.auditedTx(ctx, func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM reviews WHERE seq = $1 AND kind = $2 FOR UPDATE`, seq, kind).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return broker.Errorf(broker.ENOTFOUND, "no such review")
		} else if err != nil {
			return fmt.Errorf("select review: %w", err)
		}
		if status != broker.ReviewPending {
			return broker.Errorf(broker.ECONFLICT, "review %d was already judged %s", seq, status)
		}
		if err := appendAudit(ctx, tx, e); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE reviews SET status = $3, note = $4, judged_by = $5, judged_agency = $6,
			judged_at = now(), verdict_seq = $7 WHERE seq = $1 AND kind = $2`, seq, kind, verdict, note, by, agency, e.Seq)
		return err
	})
}

// scopeClause limits audit entries to an agency's view: its own actors'
// entries, and entries that disclosed a flag it issued. $1 is the agency
// ("" for all).
const scopeClause = `($1 = '' OR e.actor_agency = $1 OR (e.decision = 'allow' AND e.action IN ('check', 'warning.inbox', 'warning.push')
	AND e.flag_ids <> '{}' AND e.flag_ids && ARRAY(SELECT id FROM flags WHERE issuer = $1)))`

// SubjectReport lists every disclosure about a person (by subject ref)
// within scope: checks that disclosed flags, and inbox reads and pushes of
// warnings about them, with the verdict of any emergency review. The items
// are the entries as logged, for the caller to project.
func (db *DB) SubjectReport(ctx context.Context, scope string, subjectRefs []string) ([]broker.ReportItem, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT e.seq, e.ts, e.actor_agency, e.office, e.role, e.action, e.flag_ids, e.legal_basis, e.emergency,
		       coalesce(r.status, ''), e.actor, e.decision, e.reasons, e.subject_ref
		FROM audit_entries e LEFT JOIN reviews r ON r.seq = e.seq AND r.kind = 'emergency'
		WHERE `+scopeClause+` AND e.decision = 'allow' AND e.action = ANY($3) AND cardinality(e.flag_ids) > 0
		  AND (e.subject_ref = ANY($2) OR e.flag_ids <> '{}' AND e.flag_ids && ARRAY(SELECT id FROM flags WHERE subject_ref = ANY($2)))
		ORDER BY e.seq`, scope, subjectRefs, DisclosureActions)
	if err != nil {
		return nil, fmt.Errorf("subject report: %w", err)
	}
	defer rows.Close()
	out := []broker.ReportItem{}
	for rows.Next() {
		var it broker.ReportItem
		if err := rows.Scan(&it.Seq, &it.At, &it.Agency, &it.Office, &it.Role, &it.Action, &it.FlagIDs, &it.LegalBasis,
			&it.Emergency, &it.Verdict, &it.Actor, &it.Decision, &it.Reasons, &it.SubjectRef); err != nil {
			return nil, err
		}
		it.At = it.At.UTC()
		out = append(out, it)
	}
	return out, rows.Err()
}

// statGroups are the SQL of each of broker.StatGroups, over the projected
// entries v of Stats.
var statGroups = map[string]string{
	"agency":      `v.actor_agency`,
	"action":      `v.action`,
	"day":         `to_char(v.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
	"legal_basis": `unnest(CASE WHEN v.legal_basis = '' THEN ARRAY[''] ELSE string_to_array(v.legal_basis, ',') END)`,
}

// flagBasisSQL is the basis entry e disclosed flag f under: the
// life-and-health exception's for a flag only the exception revealed
// (marked in the entry's reasons), the flag's own otherwise. The same rule
// as service's projection (flagBasis).
const flagBasisSQL = `CASE WHEN ('emergency_flag:' || f.id) = ANY(e.reasons)
	THEN coalesce((SELECT substr(r, length('emergency_basis:' || f.id || ':') + 1) FROM unnest(e.reasons) r
	               WHERE starts_with(r, 'emergency_basis:' || f.id || ':') LIMIT 1), 'fvl-13b-7')
	ELSE f.legal_basis END`

// ownBasisSQL is the legal_basis of an entry of scope $1's own staff as
// its privacy officers see it (service's projection, ownBases): the routes
// by which the life-and-health exception revealed other agencies' flags
// (emergency_basis:<flag>:<basis>) read as life-and-health-exception, and
// the bases copied into a verdict or an acknowledgement keep only those of
// the scope's own flags.
const ownBasisSQL = `CASE
	WHEN e.action IN ('review.verdict', 'warning.ack') THEN coalesce((SELECT string_agg(DISTINCT f.legal_basis, ',')
		FROM flags f WHERE f.id = ANY(e.flag_ids) AND f.issuer = $1), '')
	WHEN EXISTS (SELECT 1 FROM unnest(e.reasons) r JOIN flags f ON starts_with(r, 'emergency_basis:' || f.id || ':') WHERE f.issuer <> $1)
	THEN (SELECT string_agg(DISTINCT b, ',' ORDER BY b) FROM (
		SELECT b FROM unnest(string_to_array(e.legal_basis, ',')) b
		WHERE b NOT IN (SELECT substr(r, length('emergency_basis:' || f.id || ':') + 1) FROM unnest(e.reasons) r
		                JOIN flags f ON starts_with(r, 'emergency_basis:' || f.id || ':') WHERE f.issuer <> $1)
		UNION SELECT 'life-and-health-exception') x)
	ELSE e.legal_basis END`

// Stats counts checks, disclosures, denials, emergency uses and anomalies
// in [from, to) within scope, grouped, over the entries as the scope's
// privacy officers see them (service's projection): another agency's
// entry, in scope because it disclosed the scope's flags, counts under the
// bases of those flags only, and its anomaly reviews (about that agency's
// employee) do not count.
func (db *DB) Stats(ctx context.Context, scope string, from, to time.Time, groupBy string) ([]broker.StatRow, error) {
	key, ok := statGroups[groupBy]
	if !ok {
		return nil, broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "group_by must be agency, legal_basis, action or day")
	}
	rows, err := db.Pool.Query(ctx, `
		WITH v AS (
			SELECT e.ts, e.actor_agency, e.action, e.decision, e.flag_ids, e.emergency,
			       CASE WHEN $1 = '' THEN e.legal_basis
			            WHEN e.actor_agency = $1 THEN `+ownBasisSQL+`
			            ELSE coalesce((SELECT string_agg(DISTINCT `+flagBasisSQL+`, ',')
			                           FROM flags f WHERE f.id = ANY(e.flag_ids) AND f.issuer = $1), '') END AS legal_basis,
			       ($1 = '' OR e.actor_agency = $1)
			         AND EXISTS (SELECT 1 FROM reviews r WHERE r.seq = e.seq AND r.kind = 'anomaly') AS anomaly
			FROM audit_entries e WHERE `+scopeClause+` AND e.ts >= $2 AND e.ts < $3)
		SELECT k, count(*) FILTER (WHERE action = 'check'),
		       count(*) FILTER (WHERE decision = 'allow' AND action = ANY($4) AND cardinality(flag_ids) > 0),
		       count(*) FILTER (WHERE decision = 'deny'),
		       count(*) FILTER (WHERE emergency AND decision = 'allow'),
		       count(*) FILTER (WHERE anomaly)
		FROM (SELECT `+key+` AS k, v.action, v.decision, v.flag_ids, v.emergency, v.anomaly FROM v) x
		GROUP BY k ORDER BY k`, scope, from, to, DisclosureActions)
	if err != nil {
		return nil, fmt.Errorf("audit stats: %w", err)
	}
	defer rows.Close()
	out := []broker.StatRow{}
	for rows.Next() {
		var r broker.StatRow
		if err := rows.Scan(&r.Key, &r.Checks, &r.Disclosures, &r.Denials, &r.Emergencies, &r.Anomalies); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SeqBefore returns the seq of the newest entry older than t (0 when none).
func (db *DB) SeqBefore(ctx context.Context, t time.Time) (int64, error) {
	var seq int64
	err := db.Pool.QueryRow(ctx, seqBeforeSQL, t).Scan(&seq)
	return seq, err
}

// seqBeforeSQL finds the seq of the newest entry older than $1 by one step
// down the ts index. Entries can commit a little out of time order, so
// callers leave a margin (a minute).
const seqBeforeSQL = `SELECT coalesce((SELECT seq FROM audit_entries WHERE ts < $1 ORDER BY ts DESC LIMIT 1), 0)`

// EmergencyUses counts the allowed emergency decisions by one employee since t.
func (db *DB) EmergencyUses(ctx context.Context, agency, actor string, since time.Time) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_entries
		WHERE emergency AND actor_agency = $1 AND actor = $2 AND ts >= $3 AND decision = 'allow'`,
		agency, actor, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count emergency uses: %w", err)
	}
	return n, nil
}
