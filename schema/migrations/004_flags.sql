-- Risk flags (docs/api.md §4): minimal warnings, never case files. The subject is
-- kept only as subject_ref, an HMAC of the national id under the subject key.
CREATE TABLE flags (
  id                      text PRIMARY KEY,
  subject_ref             text NOT NULL CHECK (subject_ref ~ '^[0-9a-f]{64}$'),
  issuer                  text NOT NULL REFERENCES agencies (id),
  issuer_kind             text NOT NULL,
  issuer_office           text NOT NULL DEFAULT '',
  issued_by               text NOT NULL,
  level                   text NOT NULL CHECK (level IN ('caution', 'high', 'exclusion')),
  categories              text[] NOT NULL CHECK (cardinality(categories) >= 1),
  precautions             text[] NOT NULL CHECK (cardinality(precautions) >= 1),
  valid_from              timestamptz NOT NULL,
  valid_until             timestamptz NOT NULL CHECK (valid_until > valid_from),
  audience_kinds          text[] NOT NULL,
  audience_offices        text[] NOT NULL,
  legal_basis             text NOT NULL,
  contact_unit            text NOT NULL,
  contact_phone           text NOT NULL,
  subject_informed        boolean,
  subject_informed_reason text NOT NULL DEFAULT '',
  status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
  revoked_at              timestamptz,
  revoked_by              text NOT NULL DEFAULT '',
  revoke_reason           text NOT NULL DEFAULT '',
  created_at              timestamptz NOT NULL DEFAULT now()
);

-- The hot path of every check: active flags of one subject.
CREATE INDEX flags_subject_active ON flags (subject_ref) WHERE status = 'active';
CREATE INDEX flags_issuer ON flags (issuer, created_at);

GRANT SELECT, INSERT, UPDATE ON flags TO varsel_app;
