-- Emergency (life-and-health) uses per employee: the rate limit counts
-- them, and privacy officers list them for review.
CREATE INDEX audit_entries_emergency ON audit_entries (actor_agency, actor, ts) WHERE emergency;
