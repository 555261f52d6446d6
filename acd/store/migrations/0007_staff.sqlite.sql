-- Version 7: staff credentials in the database (PostgreSQL: 0007_staff.postgres.sql). A single
-- node on SQLite keeps them in the staff file (hotline/auth/credentials.py) and never reads
-- this table; it exists so both dialects stay at one schema version and one shape.
CREATE TABLE staff_credentials (
    user_id TEXT PRIMARY KEY,
    web TEXT NOT NULL,
    ha1 TEXT NOT NULL DEFAULT '{}',
    updated TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0
);
