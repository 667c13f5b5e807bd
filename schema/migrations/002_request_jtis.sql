-- Token ids seen per agency, so that a token is used once on every replica.
-- Rows are kept until the token expires (at most 300 s + 30 s skew) and then
-- removed by the broker's sweeper.
CREATE TABLE request_jtis (
  agency_id  text NOT NULL,
  jti        text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (agency_id, jti)
);

CREATE INDEX request_jtis_expiry ON request_jtis (expires_at);

GRANT SELECT, INSERT, DELETE ON request_jtis TO varsel_app;
