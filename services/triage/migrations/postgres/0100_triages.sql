-- One verdict per case: the classification, its deadlines and the queue it waits in.
CREATE TABLE triages (
    case_id            TEXT PRIMARY KEY,
    category           TEXT NOT NULL,
    severity           TEXT NOT NULL,
    queue              TEXT NOT NULL,
    needs_supplier     BOOLEAN NOT NULL,
    rationale          TEXT NOT NULL,
    received_at        BIGINT NOT NULL,
    first_response_due BIGINT NOT NULL,
    resolution_due     BIGINT NOT NULL,
    triaged_at         BIGINT NOT NULL,
    resolved_at        BIGINT
);
-- The desks' work lists: open cases of a queue, most urgent first.
CREATE INDEX triages_open_by_queue ON triages (queue, first_response_due, case_id) WHERE resolved_at IS NULL;
