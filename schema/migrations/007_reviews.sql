-- After-the-fact review of emergency disclosures and of snooping signals
-- (docs/api.md §7). Emergency reviews are derived from the audit log, so none can
-- be missing; anomaly reviews are raised by the broker's sweeper.
CREATE TABLE reviews (
  seq           bigint NOT NULL,
  kind          text NOT NULL CHECK (kind IN ('emergency', 'anomaly')),
  reason        text NOT NULL DEFAULT '',
  actor_agency  text NOT NULL,
  actor         text NOT NULL,
  ts            timestamptz NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'justified', 'unjustified')),
  note          text NOT NULL DEFAULT '',
  judged_by     text NOT NULL DEFAULT '',
  judged_agency text NOT NULL DEFAULT '',
  judged_at     timestamptz,
  verdict_seq   bigint,
  PRIMARY KEY (seq, kind)
);

CREATE INDEX reviews_agency ON reviews (actor_agency, status, created_at);
CREATE INDEX reviews_anomaly ON reviews (actor_agency, actor, reason, ts) WHERE kind = 'anomaly';
-- Per-employee activity: snooping signals and the subject report.
CREATE INDEX audit_entries_actor_ts ON audit_entries (actor_agency, actor, ts);

GRANT SELECT, INSERT, UPDATE ON reviews TO varsel_app;
