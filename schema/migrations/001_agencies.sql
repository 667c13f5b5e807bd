-- Agencies and the public keys they sign requests with.
-- The runtime role (varsel_app) is what `varsel serve` acts as; it gets only the
-- privileges each table needs. Roles are cluster-wide, so create it only once.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'varsel_app') THEN
    CREATE ROLE varsel_app LOGIN;
  END IF;
END
$$;

CREATE TABLE agencies (
  id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{2,63}$'),
  kind       text NOT NULL CHECK (kind IN ('nav-state', 'nav-municipal', 'police', 'health', 'broker')),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  offices    text[] NOT NULL DEFAULT '{}',
  status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agencies_offices ON agencies USING gin (offices);

CREATE TABLE agency_keys (
  agency_id  text NOT NULL REFERENCES agencies (id),
  kid        text NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
  jwk        jsonb NOT NULL,
  status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  PRIMARY KEY (agency_id, kid)
);

-- The broker only reads the registry; operators change it with `varsel agency`.
GRANT SELECT ON agencies, agency_keys TO varsel_app;
