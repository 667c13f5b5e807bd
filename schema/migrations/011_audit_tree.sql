-- The Merkle tree over the audit log (RFC 6962, leaf index = seq - 1, leaf
-- data = the entry's 32 hash bytes), served as C2SP tlog-tiles.
--
-- Level-0 tiles are computed from audit_entries.hash. audit_tree_nodes keeps
-- the root of every perfect subtree of 256^k leaves (k >= 1, tree levels 8,
-- 16, ...): the hashes of the higher tiles. Both only grow, like the log.
-- audit_tree_head is the compact range at the head, which the next batch
-- extends in its own transaction; it is derived data (recomputable from the
-- entries), so the runtime role may update its one row.
--
-- A log from before this migration has no tree yet: the broker builds it
-- from the entries when it starts (and before any append), under the chain
-- lock.
CREATE TABLE audit_tree_nodes (
  level smallint NOT NULL CHECK (level > 0 AND level % 8 = 0),
  idx   bigint NOT NULL CHECK (idx >= 0),
  hash  bytea NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (level, idx)
);

CREATE TABLE audit_tree_head (
  one   boolean PRIMARY KEY DEFAULT true CHECK (one),
  size  bigint NOT NULL CHECK (size >= 0),
  root  bytea NOT NULL CHECK (length(root) = 32),
  range bytea NOT NULL CHECK (length(range) % 32 = 0)
);

CREATE TRIGGER audit_tree_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_tree_nodes_no_truncate BEFORE TRUNCATE ON audit_tree_nodes
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

GRANT SELECT, INSERT ON audit_tree_nodes TO varsel_app;
GRANT SELECT, INSERT, UPDATE ON audit_tree_head TO varsel_app;

-- Witness cosignatures (C2SP tlog-cosignature) of checkpoints: the note's
-- signature line each witness returned, served after the broker's own.
CREATE TABLE audit_cosignatures (
  count      bigint NOT NULL REFERENCES audit_checkpoints (count),
  witness    text NOT NULL,
  line       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (count, witness)
);
CREATE TRIGGER audit_cosignatures_append_only BEFORE UPDATE OR DELETE ON audit_cosignatures
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
GRANT SELECT, INSERT ON audit_cosignatures TO varsel_app;
