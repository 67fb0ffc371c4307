-- Who changed what, when, from which trace, and how it ended. Written in the transaction of the
-- change it records; never updated or deleted (the triggers refuse it, whoever asks). Holds
-- identifiers only, so erasing a traveler's personal data never needs to touch it.
CREATE TABLE audit_log (
    audit_id     TEXT PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor_kind   TEXT NOT NULL CHECK (actor_kind IN ('user', 'service')),
    actor_id     TEXT NOT NULL,
    actor_roles  TEXT NOT NULL,
    on_behalf_of TEXT,
    action       TEXT NOT NULL,
    case_id      TEXT,
    targets      TEXT NOT NULL,
    trace_id     TEXT,
    outcome      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at DESC, audit_id DESC);
CREATE INDEX audit_log_case ON audit_log (case_id, at DESC, audit_id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at DESC, audit_id DESC);
CREATE INDEX audit_log_on_behalf_of ON audit_log (on_behalf_of, at DESC, audit_id DESC);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
