-- Police warnings to named offices (docs/api.md §6), their per-office delivery,
-- and optional signed webhook pushes to offices.
CREATE TABLE warnings (
  id         text PRIMARY KEY,
  flag_id    text NOT NULL UNIQUE REFERENCES flags (id),
  issuer     text NOT NULL REFERENCES agencies (id),
  issued_by  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per target office. pos orders every office's inbox: it is taken
-- under a lock, so positions commit in order and a cursor never skips one.
CREATE TABLE warning_deliveries (
  pos          bigserial PRIMARY KEY,
  warning_id   text NOT NULL REFERENCES warnings (id),
  office       text NOT NULL,
  delivered_at timestamptz NOT NULL DEFAULT now(),
  read_at      timestamptz,
  acked_at     timestamptz,
  acked_by     text NOT NULL DEFAULT '',
  UNIQUE (warning_id, office)
);

CREATE INDEX warning_deliveries_inbox ON warning_deliveries (office, pos);

-- Webhook an office registered for pushed deliveries.
CREATE TABLE office_webhooks (
  office     text PRIMARY KEY,
  url        text NOT NULL,
  set_by     text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each push to a webhook, retried with backoff until delivered or given up.
CREATE TABLE webhook_pushes (
  id              bigserial PRIMARY KEY,
  warning_id      text NOT NULL REFERENCES warnings (id),
  office          text NOT NULL,
  url             text NOT NULL,
  attempts        int NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_status     int,
  last_error      text NOT NULL DEFAULT '',
  delivered_at    timestamptz,
  gave_up_at      timestamptz,
  UNIQUE (warning_id, office)
);

CREATE INDEX webhook_pushes_due ON webhook_pushes (next_attempt_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;

GRANT SELECT, INSERT ON warnings TO varsel_app;
GRANT SELECT, INSERT, UPDATE ON warning_deliveries, office_webhooks, webhook_pushes TO varsel_app;
GRANT USAGE ON SEQUENCE warning_deliveries_pos_seq, webhook_pushes_id_seq TO varsel_app;
