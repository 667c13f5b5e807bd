package bench

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"varsel/audit"
	auditpg "varsel/audit/postgres"
	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/client"
	"varsel/broker/keys"
	"varsel/broker/postgres"
)

type agencySpec struct {
	id      string
	kind    broker.AgencyKind
	offices []string
}

// agencies are 10 agencies: three NAV offices' worth of state and municipal
// parts sharing 50 office ids, two police districts, two health trusts.
func agencies() []agencySpec {
	var out []agencySpec
	group := func(g int) []string {
		var offs []string
		for i := 1; i <= 50; i++ {
			if (i-1)%3 == g {
				offs = append(offs, fmt.Sprintf("nav-office-%02d", i))
			}
		}
		return offs
	}
	for g := 0; g < 3; g++ {
		out = append(out, agencySpec{fmt.Sprintf("nav-state-%d", g+1), broker.KindNAVState, group(g)})
		out = append(out, agencySpec{fmt.Sprintf("nav-mun-%d", g+1), broker.KindNAVMunicipal, group(g)})
	}
	for i := 1; i <= 2; i++ {
		out = append(out, agencySpec{fmt.Sprintf("police-%d", i), broker.KindPolice, []string{fmt.Sprintf("police-%d-hq", i)}})
		out = append(out, agencySpec{fmt.Sprintf("health-%d", i), broker.KindHealth, []string{fmt.Sprintf("health-%d-ward", i)}})
	}
	return out
}

func seed(ctx context.Context, dbURL string, cfg Config, logf func(string, ...any)) (*world, error) {
	keyDir, err := os.MkdirTemp("", "varsel-bench-keys")
	if err != nil {
		return nil, err
	}
	kd := &keys.Dir{Path: keyDir, Name: "varsel"}
	if err := kd.Open(); err != nil {
		return nil, err
	}
	sk, ver, err := kd.SubjectKey(ctx, "")
	if err != nil {
		return nil, err
	}
	hasher, err := broker.NewSubjectHasher(sk, ver)
	if err != nil {
		return nil, err
	}
	w := &world{keyDir: keyDir, subjects: hasher}

	db, err := postgres.Open(ctx, dbURL, postgres.Options{MaxConns: 4})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for _, a := range agencies() {
		priv, pub, err := auth.GenerateKey(cfg.Alg, a.id+"-1")
		if err != nil {
			return nil, err
		}
		ks, err := auth.ParseJWKS(a.id, pub)
		if err != nil {
			return nil, err
		}
		e := &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "varsel", Actor: "bench-seed", Role: "operator",
			Action: "agency.add", Decision: audit.Allow, PolicyVersion: "seed",
			Reasons: []string{"agency:" + a.id, "kind:" + string(a.kind), "kid:" + a.id + "-1"}}
		if err := db.CreateAgency(ctx, &broker.Agency{ID: a.id, Kind: a.kind, Name: a.id, Offices: a.offices}, ks, e); err != nil {
			return nil, err
		}
		for _, k := range ks {
			w.keys = append(w.keys, stackKey{KID: k.KID, Alg: k.Alg, JWK: k.JWK})
		}
		s, err := client.NewSigner(a.id, priv)
		if err != nil {
			return nil, err
		}
		if a.kind == broker.KindNAVState || a.kind == broker.KindNAVMunicipal {
			for i, off := range a.offices {
				w.caseworker = append(w.caseworker, employee{signer: s, kind: string(a.kind),
					emp: client.Employee{Sub: fmt.Sprintf("cw-%s-%d", a.id, i), Role: "caseworker", Office: off}})
			}
		}
	}

	var ppl people
	nPeople := max(cfg.Flags*4/5, 1)
	w.flagged = make([]string, nPeople)
	for i := range w.flagged {
		w.flagged[i] = ppl.take(40)
	}
	w.unflagged = make([]string, 100_000)
	for i := range w.unflagged {
		w.unflagged[i] = ppl.take(80)
	}
	logf("generated %d flagged and %d unflagged people", len(w.flagged), len(w.unflagged))

	if err := seedFlags(ctx, db.Pool, w, cfg.Flags); err != nil {
		return nil, err
	}
	logf("seeded %d flags", cfg.Flags)
	if err := seedEntries(ctx, db.Pool, cfg.Entries, logf); err != nil {
		return nil, err
	}
	// A broker that had appended these entries would have signed a
	// checkpoint over them every few seconds; without one, the measured
	// broker's checkpointer would check the whole log from entry 1 (10
	// million entries at full size, most of a minute of its CPU) inside the
	// measured window. The seed signs it with the broker's own key, as the
	// broker would have.
	if err := seedCheckpoint(ctx, db.Pool, kd); err != nil {
		return nil, err
	}
	// Fresh statistics for the planner after the bulk load, and the
	// vacuum that autovacuum would otherwise start on the loaded tables
	// in the first window (its CPU counts as PostgreSQL's there).
	if _, err := db.Pool.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return nil, err
	}
	// And a checkpoint, so that the first window does not pay for the
	// load's (its writes, and the full-page images of every page it then
	// touches first). It needs a superuser or pg_checkpoint.
	if _, err := db.Pool.Exec(ctx, "CHECKPOINT"); err != nil {
		logf("no checkpoint after the seed (%v): the first window may pay for the load's", err)
	}
	return w, nil
}

// seedCheckpoint signs and stores a checkpoint of the seeded log with the
// broker's checkpoint key, under the origin a default broker uses.
func seedCheckpoint(ctx context.Context, pool *pgxpool.Pool, kd *keys.Dir) error {
	signer, _, err := kd.CheckpointSigner(ctx)
	if err != nil {
		return err
	}
	store := &auditpg.Store{Pool: pool}
	th, err := store.Head(ctx)
	if err != nil {
		return fmt.Errorf("read the seeded log's head: %w", err)
	}
	cp, err := audit.SignCheckpoint(audit.LogOrigin(seedBrokerID), th, signer)
	if err != nil {
		return err
	}
	if err := store.InsertCheckpoint(ctx, cp); err != nil {
		return fmt.Errorf("checkpoint the seeded log: %w", err)
	}
	return nil
}

// seedBrokerID is the default --broker-id of the broker the bench runs.
const seedBrokerID = "varsel"

var flagColumns = []string{"id", "subject_ref", "issuer", "issuer_kind", "issuer_office", "issued_by", "level",
	"categories", "precautions", "valid_from", "valid_until", "audience_kinds", "audience_offices", "legal_basis",
	"contact_unit", "contact_phone", "subject_informed"}

func seedFlags(ctx context.Context, pool *pgxpool.Pool, w *world, n int) error {
	r := mrand.New(mrand.NewPCG(1, 2))
	now := time.Now()
	categories := [][]string{{"threats"}, {"violence", "weapons"}, {"harassment", "stalking"}}
	precautions := [][]string{{"two-staff"}, {"room-near-exit", "alarm-ready"}, {"police-present", "secure-zone-only"}}
	informed := true
	const sample = 10_000
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		person := i % len(w.flagged)
		subj, _ := broker.ParseSubject(w.flagged[person], true)
		ref := w.subjects.Ref(subj)
		var issuer, kind, basis string
		var audience []string
		var inf *bool
		switch x := r.IntN(100); {
		case x < 70:
			issuer, kind, basis, audience = fmt.Sprintf("police-%d", 1+r.IntN(2)), "police", "politiregl-27-2", []string{"nav-state", "nav-municipal"}
		case x < 85:
			issuer, kind, basis, audience = fmt.Sprintf("nav-mun-%d", 1+r.IntN(3)), "nav-municipal", "fvl-13b-6-sotjl", []string{"police"}
		default:
			issuer, kind, basis, audience = fmt.Sprintf("health-%d", 1+r.IntN(2)), "health", "hpl-23-4", []string{"nav-state"}
			inf = &informed
		}
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, r.Uint64()&0xffffffffffff)
		if person < sample {
			for len(w.flagMeta) <= person {
				w.flagMeta = append(w.flagMeta, nil)
			}
			w.flagMeta[person] = append(w.flagMeta[person], map[string]any{"id": id, "level": "high", "issuer_agency": issuer,
				"issuer_kind": kind, "issuer_office": "", "legal_basis": basis, "audience": map[string]any{"kinds": audience, "offices": []string{}},
				"duty_desk": false})
		}
		i++
		return []any{id, ref, issuer, kind, "", "officer", []string{"caution", "high"}[r.IntN(2)], pick(r, categories),
			pick(r, precautions), now.Add(-time.Hour), now.Add(time.Duration(30+r.IntN(300)) * 24 * time.Hour), audience, []string{},
			basis, "Seksjon for trusselvurdering", "+47 22 00 00 00", inf}, nil
	})
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"flags"}, flagColumns, src)
	if err != nil {
		return fmt.Errorf("seed flags: %w", err)
	}
	return nil
}

// auditColumns are audit_entries' columns, in the order of auditRow.
var auditColumns = []string{"seq", "ts", "actor_agency", "actor", "role", "office", "action", "decision",
	"subject_ref", "flag_ids", "legal_basis", "emergency", "justification", "policy_version",
	"reasons", "request_jti", "prev_hash", "hash"}

func auditRow(e *audit.Entry, ts time.Time) []any {
	return []any{e.Seq, ts, e.ActorAgency, e.Actor, e.Role, e.Office, e.Action, e.Decision,
		e.SubjectRef, e.FlagIDs, e.LegalBasis, e.Emergency, e.Justification, e.PolicyVersion,
		e.Reasons, e.RequestJTI, e.PrevHash, e.Hash}
}

// seedEntries appends n synthetic check entries after the chain head with
// COPY, 50,000 to a statement, linked as the audit writer links them, so
// that the seeded log verifies. It bypasses the writer (and its replay
// table) for speed, and takes no chain lock: the database is this run's
// own, and the broker starts only after the seed.
func seedEntries(ctx context.Context, pool *pgxpool.Pool, n int, logf func(string, ...any)) error {
	if n == 0 {
		return nil
	}
	r := mrand.New(mrand.NewPCG(3, 4))
	if _, err := auditpg.CatchUpTree(ctx, pool, 0); err != nil {
		return fmt.Errorf("audit tree: %w", err)
	}
	th, err := (&auditpg.Store{Pool: pool}).Head(ctx)
	if err != nil {
		return fmt.Errorf("read audit chain head: %w", err)
	}
	head := th.Receipt()
	start := time.Now()
	base := time.Now().Add(-366 * 24 * time.Hour)
	step := 365 * 24 * time.Hour / time.Duration(n)
	const batch, progress = 50_000, 1_000_000
	for done := 0; done < n; {
		size := min(batch, n-done)
		entries := make([]*audit.Entry, size)
		for i := range entries {
			k := done + i + 1
			e := &audit.Entry{}
			e.TS = audit.FormatTime(base.Add(time.Duration(k) * step))
			e.ActorAgency = fmt.Sprintf("nav-state-%d", 1+r.IntN(3))
			e.Actor = fmt.Sprintf("cw-%d", r.IntN(500))
			e.Role, e.Office, e.Action, e.Decision = "caseworker", fmt.Sprintf("nav-office-%02d", 1+r.IntN(50)), "check", audit.Allow
			e.SubjectRef = fmt.Sprintf("%064x", r.Uint64())
			e.PolicyVersion = "seed"
			e.RequestJTI = fmt.Sprintf("seed-%d", k)
			if r.IntN(10) == 0 {
				e.FlagIDs = []string{fmt.Sprintf("%08x-0000-4000-8000-000000000000", r.IntN(1000))}
				e.LegalBasis = "politiregl-27-2"
			}
			entries[i] = e
		}
		audit.Link(head, entries)
		rows := make([][]any, size)
		for i, e := range entries {
			ts, err := time.Parse(audit.TimeFormat, e.TS)
			if err != nil {
				return fmt.Errorf("seed audit entries: entry ts %q: %w", e.TS, err)
			}
			rows[i] = auditRow(e, ts)
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"audit_entries"}, auditColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("seed audit entries %d..%d: %w", done+1, done+size, err)
		}
		head = audit.Receipt{Seq: entries[size-1].Seq, Hash: entries[size-1].Hash}
		done += size
		if done%progress == 0 || done == n {
			logf("seeded %d/%d audit entries (%.0f/s)", done, n, float64(done)/time.Since(start).Seconds())
		}
	}
	// The Merkle tree over the seeded entries, as the broker would have
	// grown it.
	treeStart := time.Now()
	if _, err := auditpg.CatchUpTree(ctx, pool, 0); err != nil {
		return fmt.Errorf("audit tree over the seeded entries: %w", err)
	}
	logf("built the audit tree over %d entries in %s", n, time.Since(treeStart).Round(time.Millisecond))
	return nil
}
