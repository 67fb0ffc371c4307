-- See the PostgreSQL migration. SQLite cannot add a NOT NULL column without a default or a
-- table CHECK after the fact, so the same rules are enforced by triggers.
CREATE TABLE data_keys (
    tenant     TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    kek_id     TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, version)
);

ALTER TABLE cases ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE cases ADD COLUMN traveler_id TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN personal_data BLOB;
ALTER TABLE cases ADD COLUMN data_key_version INTEGER;
ALTER TABLE cases ADD COLUMN personal_data_erased_at INTEGER;

UPDATE cases
SET traveler_id = json_extract(traveler, '$.id'),
    traveler = json_remove(traveler, '$.full_name', '$.email', '$.phone'),
    personal_data_erased_at = CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER);

CREATE TRIGGER cases_personal_data_insert BEFORE INSERT ON cases
WHEN NEW.traveler_id = ''
  OR (NEW.personal_data IS NULL) <> (NEW.personal_data_erased_at IS NOT NULL)
  OR (NEW.personal_data IS NULL) <> (NEW.data_key_version IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: cases_personal_data_sealed_or_erased');
END;
CREATE TRIGGER cases_personal_data_update BEFORE UPDATE ON cases
WHEN NEW.traveler_id = ''
  OR (NEW.personal_data IS NULL) <> (NEW.personal_data_erased_at IS NOT NULL)
  OR (NEW.personal_data IS NULL) <> (NEW.data_key_version IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: cases_personal_data_sealed_or_erased');
END;
CREATE INDEX cases_traveler ON cases (traveler_id, opened_at);
