-- What compensation knows of a case from triage, kept so that an offer can be worked out when
-- the supplier answers, which may be long after (or, across streams, even before) triage.
CREATE TABLE case_contexts (
    case_id        TEXT PRIMARY KEY,
    category       TEXT NOT NULL,
    severity       TEXT NOT NULL,
    needs_supplier BOOLEAN NOT NULL,
    price_minor    BIGINT,
    price_currency TEXT,
    triaged_at     BIGINT NOT NULL,
    CHECK ((price_minor IS NULL) = (price_currency IS NULL))
);

-- Offers along the company's compensation ladder. Rung 1 is the first offer: one per case,
-- however many events would propose it.
CREATE TABLE offers (
    offer_id     TEXT PRIMARY KEY,
    case_id      TEXT NOT NULL,
    rung         INTEGER NOT NULL CHECK (rung >= 1),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('proposed', 'accepted')),
    policy_rule  TEXT NOT NULL,
    rationale    TEXT NOT NULL,
    proposed_at  BIGINT NOT NULL,
    accepted_at  BIGINT,
    UNIQUE (case_id, rung),
    CHECK ((status = 'accepted') = (accepted_at IS NOT NULL))
);
CREATE INDEX offers_case ON offers (case_id, proposed_at, offer_id);
