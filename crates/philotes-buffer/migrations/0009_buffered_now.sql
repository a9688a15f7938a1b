-- The number of each table's changes in `philotes.changes` right now, kept by every statement
-- that adds or removes them, in the same transaction. `philotes_buffer_depth` and ingest's
-- backpressure read the sum of these instead of counting the buffer's rows: a `count(*)` scans
-- the whole buffer, every second, and made a deep buffer drain slower the deeper it was.
ALTER TABLE philotes.tables
    ADD COLUMN changes_now bigint NOT NULL DEFAULT 0;

UPDATE philotes.tables t SET changes_now = c.n
  FROM (SELECT table_id, count(*) AS n FROM philotes.changes GROUP BY table_id) c
 WHERE c.table_id = t.id;
