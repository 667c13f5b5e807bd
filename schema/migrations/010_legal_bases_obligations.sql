-- Legal bases with their obligations (policies/data.json), and the notice to
-- an issuer when the life-and-health exception reaches its flag.
--
-- A flag keeps its decision record (required under politiregisterloven
-- § 27 femte ledd and § 30, and for every exclusion) and whether its issuer
-- chose to be represented by the duty desk.
ALTER TABLE flags
  ADD COLUMN decision jsonb,
  ADD COLUMN represented_by text NOT NULL DEFAULT 'issuer' CHECK (represented_by IN ('issuer', 'duty-desk'));

-- A webhook push is either a warning's delivery to an office, or an
-- exception-disclosure notice to the office that issued a flag the exception
-- reached (the check's audit entry seq, the flag, the route basis).
ALTER TABLE webhook_pushes
  ALTER COLUMN warning_id DROP NOT NULL,
  ADD COLUMN kind text NOT NULL DEFAULT 'warning-delivered' CHECK (kind IN ('warning-delivered', 'exception-disclosure')),
  ADD COLUMN flag_id text REFERENCES flags (id),
  ADD COLUMN check_seq bigint,
  ADD COLUMN legal_basis text NOT NULL DEFAULT '',
  ADD CONSTRAINT webhook_pushes_kind_fields CHECK (
    (kind = 'warning-delivered' AND warning_id IS NOT NULL) OR
    (kind = 'exception-disclosure' AND flag_id IS NOT NULL AND check_seq IS NOT NULL));

CREATE UNIQUE INDEX webhook_pushes_exception ON webhook_pushes (check_seq, flag_id) WHERE kind = 'exception-disclosure';
