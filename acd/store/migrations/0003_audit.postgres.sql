-- Version 3: the staff API's audit trail (hotline/auth/audit.py). One row per state-changing
-- API call, sign-in attempt and lockout: who (actor, role, how signed in), what (action, method,
-- path, a redacted summary of the body: never a password), when, from where, and the answer.
-- Append-only, like the case trail (hotline_append_only() comes from version 1).
CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL DEFAULT '',
    via TEXT NOT NULL DEFAULT '',
    session TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    method TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT '',
    data JSONB NOT NULL
);
-- Reads page newest first, all rows or one actor's, within a time range.
CREATE INDEX audit_log_at ON audit_log (at, seq);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at, seq);
CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION hotline_append_only();
