-- Version 1: the schema of hotline 0.1.0, exactly (stores created by that release have no
-- version and are baselined at 1 without running this). Never edit an applied migration.
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    caller_number TEXT NOT NULL,
    caller_name TEXT NOT NULL DEFAULT '',
    dialled TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    case_type TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    workgroup TEXT NOT NULL DEFAULT '',
    due_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_caller ON cases (caller_number, created_at);
CREATE INDEX IF NOT EXISTS cases_status ON cases (status, due_at);
CREATE INDEX IF NOT EXISTS cases_owner ON cases (owner);
CREATE INDEX IF NOT EXISTS cases_workgroup ON cases (workgroup);
CREATE INDEX IF NOT EXISTS cases_call ON cases (call_id);
CREATE TABLE IF NOT EXISTS case_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, seq);
CREATE TABLE IF NOT EXISTS acd_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE TRIGGER IF NOT EXISTS case_events_no_update BEFORE UPDATE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS case_events_no_delete BEFORE DELETE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS acd_log_no_update BEFORE UPDATE ON acd_log
BEGIN SELECT RAISE(ABORT, 'acd_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS acd_log_no_delete BEFORE DELETE ON acd_log
BEGIN SELECT RAISE(ABORT, 'acd_log is append-only'); END;
