-- Personal data is sealed (AES-256-GCM) with a per-tenant data key; the data key is stored only
-- wrapped by a key-encryption key from configuration. `traveler` keeps the id and the language.
CREATE TABLE data_keys (
    tenant     TEXT NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 1),
    kek_id     TEXT NOT NULL,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, version)
);

ALTER TABLE cases ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE cases ADD COLUMN traveler_id TEXT;
ALTER TABLE cases ADD COLUMN personal_data BYTEA;
ALTER TABLE cases ADD COLUMN data_key_version BIGINT;
ALTER TABLE cases ADD COLUMN personal_data_erased_at BIGINT;

-- Cases opened before encryption kept contact details in the clear; they cannot be sealed here
-- (SQL has no key), so their contact details are dropped and the cases count as erased.
UPDATE cases
SET traveler_id = traveler::jsonb ->> 'id',
    traveler = (traveler::jsonb - 'full_name' - 'email' - 'phone')::text,
    personal_data_erased_at = (EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT;

ALTER TABLE cases ALTER COLUMN traveler_id SET NOT NULL;
ALTER TABLE cases ADD CONSTRAINT cases_personal_data_sealed_or_erased
    CHECK ((personal_data IS NULL) = (personal_data_erased_at IS NOT NULL)
           AND (personal_data IS NULL) = (data_key_version IS NULL));
CREATE INDEX cases_traveler ON cases (traveler_id, opened_at);
