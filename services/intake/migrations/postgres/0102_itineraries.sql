-- The itinerary registry, disruptions and their incidents, notifications, and contacts merged
-- into open cases.

-- A traveler as the booking systems know them. Name and contact details are sealed like a
-- case's (AAD: tenant and traveler id); e-mail and phone are also kept as keyed hashes so a
-- contact can be matched to its traveler without storing the address in the clear.
CREATE TABLE travelers (
    traveler_id             TEXT PRIMARY KEY,
    tenant                  TEXT NOT NULL,
    preferred_language      TEXT,
    contact_channels        TEXT NOT NULL,
    personal_data           BYTEA,
    data_key_version        BIGINT,
    email_index             TEXT,
    phone_index             TEXT,
    personal_data_erased_at BIGINT,
    updated_at              BIGINT NOT NULL,
    CHECK ((personal_data IS NULL) = (personal_data_erased_at IS NOT NULL))
);
CREATE INDEX travelers_email ON travelers (email_index);
CREATE INDEX travelers_phone ON travelers (phone_index);

CREATE TABLE trips (
    booking_reference TEXT PRIMARY KEY,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE trip_travelers (
    booking_reference TEXT NOT NULL REFERENCES trips (booking_reference),
    traveler_id       TEXT NOT NULL REFERENCES travelers (traveler_id),
    PRIMARY KEY (booking_reference, traveler_id)
);
CREATE INDEX trip_travelers_traveler ON trip_travelers (traveler_id);

-- One row per booked segment; `segment` is the whole segment as cases store it, the other
-- columns are what disruptions and searches match on.
CREATE TABLE segments (
    booking_reference TEXT NOT NULL REFERENCES trips (booking_reference),
    position          INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    supplier_code     TEXT NOT NULL,
    service_reference TEXT NOT NULL,
    origin            TEXT,
    destination       TEXT,
    local_date        TEXT NOT NULL,
    starts_at         BIGINT NOT NULL,
    ends_at           BIGINT,
    segment           TEXT NOT NULL,
    PRIMARY KEY (booking_reference, position)
);
CREATE INDEX segments_service ON segments (service_reference, local_date);
CREATE INDEX segments_origin ON segments (origin, starts_at);
CREATE INDEX segments_destination ON segments (destination, ends_at);
CREATE INDEX segments_supplier ON segments (supplier_code, starts_at);

-- A disruption, identified by what it covers: the same scope reported again is the same
-- incident. `revision` counts the changes travelers must hear about; the fan-out has told
-- everyone up to `fanout_revision`. A replica working the fan-out holds `fanout_lease_until`
-- and moves `fanout_cursor` (a traveler id) batch by batch, so another resumes after a crash.
CREATE TABLE incidents (
    incident_id        TEXT PRIMARY KEY,
    scope_key          TEXT NOT NULL UNIQUE,
    kind               TEXT NOT NULL,
    scope              TEXT NOT NULL,
    reason             TEXT NOT NULL,
    delay_minutes      INTEGER NOT NULL,
    diverted_to        TEXT,
    declared_at        BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    revision           INTEGER NOT NULL,
    fanout_revision    INTEGER NOT NULL,
    targets_revision   INTEGER NOT NULL,
    fanout_cursor      TEXT,
    fanout_lease_until BIGINT,
    fanout_done_at     BIGINT
);

-- The travelers an incident's scope covered when its fan-out pass began (one segment each),
-- walked in traveler id order so a pass can stop and resume anywhere.
CREATE TABLE incident_targets (
    incident_id       TEXT NOT NULL REFERENCES incidents (incident_id),
    traveler_id       TEXT NOT NULL,
    booking_reference TEXT NOT NULL,
    position          INTEGER NOT NULL,
    PRIMARY KEY (incident_id, traveler_id)
);

-- One case per traveler per incident, whatever the number of reports.
CREATE TABLE incident_cases (
    incident_id       TEXT NOT NULL REFERENCES incidents (incident_id),
    traveler_id       TEXT NOT NULL,
    -- No foreign key: the fan-out claims the traveler's place before its case row exists.
    case_id           TEXT NOT NULL,
    notified_revision INTEGER NOT NULL,
    PRIMARY KEY (incident_id, traveler_id)
);

ALTER TABLE cases ADD COLUMN incident_id TEXT;
ALTER TABLE cases ADD COLUMN language TEXT;
ALTER TABLE cases ADD COLUMN acknowledgement_id TEXT;
-- Set while the case is open: a traveler has at most one open case per segment, so a second
-- contact about it (on any channel, even racing the first) is merged instead of opening another.
ALTER TABLE cases ADD COLUMN open_segment_key TEXT;
CREATE UNIQUE INDEX cases_open_segment ON cases (traveler_id, open_segment_key);

-- Later contacts about an open case.
CREATE TABLE case_interactions (
    case_id             TEXT NOT NULL REFERENCES cases (case_id),
    seq                 BIGSERIAL,
    at                  BIGINT NOT NULL,
    channel             TEXT NOT NULL,
    description         TEXT NOT NULL,
    requested_outcomes  TEXT NOT NULL,
    idempotency_key     TEXT UNIQUE,
    request_fingerprint TEXT,
    acknowledgement_id  TEXT,
    PRIMARY KEY (case_id, seq)
);

-- A message to a traveler. The address is not stored: it is opened from the case's sealed
-- personal data when sent. `channels` lists the channels to try, in order; `channel_index`
-- and `attempts_on_channel` say where the dispatcher is. `next_attempt_at` is NULL once the
-- notification is final (delivered, acknowledged or undeliverable).
CREATE TABLE notifications (
    notification_id     TEXT PRIMARY KEY,
    case_id             TEXT NOT NULL REFERENCES cases (case_id),
    incident_id         TEXT,
    traveler_id         TEXT NOT NULL,
    purpose             TEXT NOT NULL,
    status              TEXT NOT NULL,
    channels            TEXT NOT NULL,
    channel_index       INTEGER NOT NULL,
    attempts_on_channel INTEGER NOT NULL,
    language            TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    next_attempt_at     BIGINT,
    lease_until         BIGINT,
    delivered_at        BIGINT,
    acknowledged_at     BIGINT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX notifications_case ON notifications (case_id, created_at);
CREATE INDEX notifications_incident ON notifications (incident_id, status);

CREATE TABLE notification_attempts (
    notification_id TEXT NOT NULL REFERENCES notifications (notification_id),
    seq             BIGSERIAL,
    at              BIGINT NOT NULL,
    channel         TEXT NOT NULL,
    accepted        BOOLEAN NOT NULL,
    detail          TEXT NOT NULL,
    PRIMARY KEY (notification_id, seq)
);
