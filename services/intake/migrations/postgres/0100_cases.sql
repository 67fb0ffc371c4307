-- Case numbers people read out on the phone: short, sequential, never reused.
CREATE TABLE case_numbers (
    number  BIGSERIAL PRIMARY KEY,
    case_id TEXT NOT NULL UNIQUE
);

CREATE TABLE cases (
    case_id             TEXT PRIMARY KEY,
    case_number         TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    traveler            TEXT NOT NULL,
    segment             TEXT NOT NULL,
    channel             TEXT NOT NULL,
    description         TEXT NOT NULL,
    requested_outcomes  TEXT NOT NULL,
    category            TEXT,
    severity            TEXT,
    queue               TEXT,
    opened_at           BIGINT NOT NULL,
    first_response_due  BIGINT NOT NULL,
    resolution_due      BIGINT,
    resolved_at         BIGINT,
    resolution          TEXT,
    idempotency_key     TEXT UNIQUE,
    request_fingerprint TEXT
);
CREATE INDEX cases_opened ON cases (opened_at DESC, case_id DESC);
CREATE INDEX cases_status_opened ON cases (status, opened_at DESC);

CREATE TABLE case_timeline (
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    seq     BIGSERIAL,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
);
