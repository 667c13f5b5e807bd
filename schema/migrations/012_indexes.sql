-- The GIN index over audit_entries.flag_ids held an entry for every row,
-- the empty array included: most rows are checks of people without flags,
-- so most of the index (and a share of every append's cost) was entries no
-- query reads. Every query that uses it also says flag_ids <> '{}', which
-- lets the planner use this partial index instead.
DROP INDEX audit_entries_flags;
CREATE INDEX audit_entries_flags ON audit_entries USING gin (flag_ids) WHERE flag_ids <> '{}';

-- A person's report (every disclosure about them) looks up all their flags,
-- revoked and expired ones too; the partial index over active flags could
-- not answer that, so the report read the whole flags table. One index over
-- every flag's subject serves both it and the checks (a person has few
-- flags).
DROP INDEX flags_subject_active;
CREATE INDEX flags_subject ON flags (subject_ref);
