-- Version 4: the staff API's case search (GET /api/cases) and its pages; SQLite's version of
-- 0004_case_search.postgres.sql (the backfill reads JSON differently). Every filter pages by
-- (sort key, id) off one index range scan: 0002 covered the created_at order; this adds the
-- updated_at order and a caller's history in page order.
CREATE INDEX cases_updated ON cases (updated_at, id);
CREATE INDEX cases_status_updated ON cases (status, updated_at, id);
CREATE INDEX cases_owner_updated ON cases (owner, updated_at, id);
CREATE INDEX cases_queue_updated ON cases (queue, updated_at, id);
-- Replaces cases_caller (caller_number, created_at): the same lookups, plus ties broken by id.
DROP INDEX cases_caller;
CREATE INDEX cases_caller_created ON cases (caller_number, created_at, id);
-- Cases written before the center filed each case under its queue (0002 added the column,
-- empty): the queue of the trail's last `queued` event, or of an overflow after it.
UPDATE cases SET queue = coalesce((
    SELECT coalesce(json_extract(e.data, '$.to_queue'), json_extract(e.data, '$.queue'))
    FROM case_events e
    WHERE e.case_id = cases.id
      AND (e.kind = 'queued'
           OR (e.kind = 'transferred' AND json_extract(e.data, '$.to_queue') IS NOT NULL))
    ORDER BY e.seq DESC
    LIMIT 1
), '')
WHERE queue = '';
