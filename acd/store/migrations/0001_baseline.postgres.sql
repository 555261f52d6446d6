-- Version 1: the schema of hotline 0.1.0, exactly (stores created by that release have no
-- version and are baselined at 1 without running this). Never edit an applied migration.
CREATE TABLE IF NOT EXISTS cases (
    id BIGSERIAL PRIMARY KEY,
    caller_number TEXT NOT NULL,
    caller_name TEXT NOT NULL DEFAULT '',
    dialled TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    case_type TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    workgroup TEXT NOT NULL DEFAULT '',
    due_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_caller ON cases (caller_number, created_at);
CREATE INDEX IF NOT EXISTS cases_status ON cases (status, due_at);
CREATE INDEX IF NOT EXISTS cases_owner ON cases (owner);
CREATE INDEX IF NOT EXISTS cases_workgroup ON cases (workgroup);
CREATE INDEX IF NOT EXISTS cases_call ON cases (call_id);
CREATE TABLE IF NOT EXISTS case_events (
    seq BIGSERIAL PRIMARY KEY,
    case_id BIGINT NOT NULL REFERENCES cases (id),
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    data JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, seq);
CREATE TABLE IF NOT EXISTS acd_log (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    data JSONB NOT NULL
);
CREATE OR REPLACE FUNCTION hotline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER acd_log_append_only BEFORE UPDATE OR DELETE ON acd_log
    FOR EACH ROW EXECUTE FUNCTION hotline_append_only();
CREATE OR REPLACE TRIGGER acd_log_no_truncate BEFORE TRUNCATE ON acd_log
    FOR EACH STATEMENT EXECUTE FUNCTION hotline_append_only();
