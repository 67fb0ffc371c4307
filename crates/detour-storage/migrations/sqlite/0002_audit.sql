-- See the PostgreSQL migration: the same table, refusing updates and deletes.
CREATE TABLE audit_log (
    audit_id     TEXT PRIMARY KEY,
    at           INTEGER NOT NULL,
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

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
