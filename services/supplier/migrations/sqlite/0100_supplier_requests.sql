-- One request per case: a case's supplier is asked once, however often the case is triaged.
CREATE TABLE supplier_requests (
    request_id    TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL UNIQUE,
    supplier_code TEXT NOT NULL,
    segment       TEXT NOT NULL,
    category      TEXT NOT NULL,
    severity      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'answered')),
    opened_at     INTEGER NOT NULL,
    response_due  INTEGER NOT NULL,
    outcome       TEXT,
    details       TEXT,
    responded_at  INTEGER,
    -- An answered request always says what the supplier answered and when.
    CHECK ((status = 'answered') = (outcome IS NOT NULL AND responded_at IS NOT NULL))
);
CREATE INDEX supplier_requests_opened ON supplier_requests (opened_at DESC, request_id DESC);
CREATE INDEX supplier_requests_supplier ON supplier_requests (supplier_code, opened_at DESC, request_id DESC);
CREATE INDEX supplier_requests_status ON supplier_requests (status, opened_at DESC, request_id DESC);
