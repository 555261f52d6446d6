-- Version 7: staff credentials shared by every node of a cluster (hotline/auth/staff_db.py;
-- docs/cluster.md, "Staff accounts"). One row per staff member: the argon2id hash for the
-- API's sign-in and the SIP digest HA1s ({realm: {algorithm: hex}}), as the staff file holds
-- them; never a password. `hotline passwd` upserts a row; each node keeps a copy in memory and
-- polls `count(*), sum(version)`: every write takes a new version from the sequence, so the
-- pair changes with every committed write (a max() could miss a write that commits after a
-- later one). Who is staff, and their role, stays in the configuration's [[agents]].
CREATE SEQUENCE staff_credentials_version;
CREATE TABLE staff_credentials (
    user_id TEXT PRIMARY KEY,
    web TEXT NOT NULL,
    ha1 JSONB NOT NULL DEFAULT '{}'::jsonb,
    updated TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL DEFAULT nextval('staff_credentials_version')
);
