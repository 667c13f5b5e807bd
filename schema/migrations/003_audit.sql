-- The append-only audit log (docs/api.md §7) and its signed checkpoints.
-- Append-only three ways: the runtime role may only INSERT and SELECT; the
-- triggers below refuse UPDATE, DELETE and TRUNCATE for everyone (a superuser
-- must disable them first); and the hash chain with signed checkpoints makes
-- any change that gets past both visible to `varsel audit verify`.
CREATE TABLE audit_entries (
  seq            bigint PRIMARY KEY CHECK (seq > 0),
  ts             timestamptz NOT NULL,
  actor_agency   text NOT NULL,
  actor          text NOT NULL,
  role           text NOT NULL,
  office         text NOT NULL,
  action         text NOT NULL,
  decision       text NOT NULL,
  subject_ref    text NOT NULL,
  flag_ids       text[] NOT NULL,
  legal_basis    text NOT NULL,
  emergency      boolean NOT NULL,
  justification  text NOT NULL,
  policy_version text NOT NULL,
  reasons        text[] NOT NULL,
  request_jti    text NOT NULL,
  prev_hash      text NOT NULL,
  hash           text NOT NULL
);

CREATE INDEX audit_entries_subject ON audit_entries (subject_ref, seq) WHERE subject_ref <> '';
CREATE INDEX audit_entries_actor ON audit_entries (actor_agency, seq);
CREATE INDEX audit_entries_ts ON audit_entries (ts);
CREATE INDEX audit_entries_flags ON audit_entries USING gin (flag_ids);

CREATE TABLE audit_checkpoints (
  count      bigint PRIMARY KEY,
  hash       text NOT NULL,
  note       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

GRANT SELECT, INSERT ON audit_entries, audit_checkpoints TO varsel_app;
