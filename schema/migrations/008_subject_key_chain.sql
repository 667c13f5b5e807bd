-- The subject key chain: which versions of the subject key (in Vault KV, or
-- the local file) make up subject refs, in order. A ref is
-- HMAC(k_n, ... HMAC(k_1, number)). `varsel keys rotate-subject` adds a
-- pending link (every replica then also looks refs up under it), re-keys
-- every flag with the new key in one transaction, and activates the link.
CREATE TABLE subject_key_chain (
  position     int PRIMARY KEY CHECK (position >= 1),
  version      text NOT NULL,
  state        text NOT NULL CHECK (state IN ('active', 'pending')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  activated_at timestamptz
);

-- The broker records the first link itself on its first start.
GRANT SELECT, INSERT ON subject_key_chain TO varsel_app;
