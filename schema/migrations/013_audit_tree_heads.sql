-- The tree head was one row (audit_tree_head) that every append updated.
-- While any transaction older than those updates is open (varsel audit
-- verify reads the whole log in one snapshot, pg_dump does, a standby's
-- long query does with hot_standby_feedback), PostgreSQL can remove none
-- of the row's old versions, so every append's read of the head, and its
-- update, walked all versions written since that transaction began: the
-- longer it ran, the slower every append became, holding the chain lock.
--
-- Now each append inserts the new head as a row of its own and deletes the
-- one it extended, by its size. The head is the row with the largest size
-- (the right end of the primary key): finding it, or the previous one by
-- its size, does not pass the versions a long transaction keeps.
CREATE TABLE audit_tree_heads (
  size  bigint PRIMARY KEY CHECK (size >= 0),
  root  bytea NOT NULL CHECK (length(root) = 32),
  range bytea NOT NULL CHECK (length(range) % 32 = 0)
);

INSERT INTO audit_tree_heads (size, root, range) SELECT size, root, range FROM audit_tree_head;
DROP TABLE audit_tree_head;

-- UPDATE only for a head written again at the same size (an empty log
-- when the broker starts).
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_tree_heads TO varsel_app;
