-- What a table's status shows besides its positions: the rows its last (or current) copy
-- wrote and when it began (for progress, rows per second and an ETA), and when a worker last
-- committed its changes to the lake.
ALTER TABLE philotes.tables
    ADD COLUMN rows_copied     bigint NOT NULL DEFAULT 0,
    ADD COLUMN copy_started_at timestamptz,
    ADD COLUMN last_commit_at  timestamptz;
