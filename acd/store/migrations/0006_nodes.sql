-- Version 6: several hotline nodes share one store (PostgreSQL; docs/cluster.md). A live call
-- and a queued message or callback belong to the node that holds them, so a node restarting
-- after a crash closes the calls it cut off and re-queues its own work, never a neighbour's.
-- A single node is the node '' (the default).
ALTER TABLE live_calls ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE queued_work ADD COLUMN node TEXT NOT NULL DEFAULT '';
