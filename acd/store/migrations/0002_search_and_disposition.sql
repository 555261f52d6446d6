-- Version 2: what the staff API's case search and dispositions need (same SQL in both dialects).
-- `queue` is the ACD queue the call waited in; `disposition` is the wrap-up outcome an agent
-- records. Both default to '' so rows written before this migration stay valid.
ALTER TABLE cases ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN disposition TEXT NOT NULL DEFAULT '';
-- Search filters one field and pages newest first (ORDER BY created_at DESC, id DESC), so each
-- index ends with (created_at, id): the filter plus the page boundary is one index range scan.
CREATE INDEX cases_created ON cases (created_at, id);
CREATE INDEX cases_status_created ON cases (status, created_at, id);
CREATE INDEX cases_type_created ON cases (case_type, created_at, id);
CREATE INDEX cases_queue_created ON cases (queue, created_at, id);
CREATE INDEX cases_disposition_created ON cases (disposition, created_at, id);
-- Replaces cases_owner (owner): the same lookups, plus the owner's newest cases first.
DROP INDEX cases_owner;
CREATE INDEX cases_owner_created ON cases (owner, created_at, id);
