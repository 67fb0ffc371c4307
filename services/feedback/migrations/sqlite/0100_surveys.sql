-- One survey per resolved case (case_id is unique, so a repeated resolution sends no second
-- one), with the traveler's single answer.
CREATE TABLE surveys (
    survey_id   TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    score       INTEGER CHECK (score BETWEEN 1 AND 5),
    comment     TEXT,
    answered_at INTEGER
);
