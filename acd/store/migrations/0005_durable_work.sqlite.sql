-- Version 5: nothing lost on a crash (hotline/center/recovery.py). Queued work (a voicemail
-- message, a callback request) is a row here from the moment it is queued until an agent has
-- had it; a restart puts every row back into the engine's queue with its original arrival
-- time. A call is a row in live_calls from its case's opening to its end; a restart finds the
-- calls a crash cut off here and closes them (a hung_up event, cause service_restart).
CREATE TABLE queued_work (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    call_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    caller TEXT NOT NULL DEFAULT '',
    recording TEXT NOT NULL DEFAULT '',
    callback TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX queued_work_order ON queued_work (enqueued_at, id);
CREATE TABLE live_calls (
    case_id INTEGER PRIMARY KEY REFERENCES cases (id),
    call_id TEXT NOT NULL DEFAULT '',
    opened_at REAL NOT NULL
);
