-- Version 3: the staff API's audit trail (hotline/auth/audit.py). One row per state-changing
-- API call, sign-in attempt and lockout: who (actor, role, how signed in), what (action, method,
-- path, a redacted summary of the body: never a password), when, from where, and the answer.
-- Append-only, like the case trail.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
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
    data TEXT NOT NULL CHECK (json_valid(data))
);
-- Reads page newest first, all rows or one actor's, within a time range.
CREATE INDEX audit_log_at ON audit_log (at, seq);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
