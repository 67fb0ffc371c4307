-- The case each outbox row is about, so that erasing a traveler's personal data can also drop
-- the published copies of their events (which carry the case's free text).
ALTER TABLE outbox ADD COLUMN case_id TEXT;
CREATE INDEX outbox_case ON outbox (case_id) WHERE case_id IS NOT NULL;
