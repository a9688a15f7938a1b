-- What `philotes ingest` and `philotes worker` share beyond the buffered changes
-- (docs/decisions/012-ingest-and-workers.md).

-- The lake a pipeline writes (catalog, warehouse, namespace), as ingest describes it: a worker
-- configured for another lake is refused instead of writing tables nobody copied.
ALTER TABLE philotes.pipelines ADD COLUMN lake text;

ALTER TABLE philotes.tables
    -- Every transaction of this table that committed below this position is in `changes`
    -- (or in the lake); a worker applies changes below it, never above.
    ADD COLUMN buffered      bigint,
    -- The consistent point of the table's last copy into the lake.
    ADD COLUMN snapshot_lsn  bigint,
    -- Ingest is copying the table into the lake: workers let go of its lease meanwhile.
    ADD COLUMN copying       boolean NOT NULL DEFAULT false,
    -- Why a worker asks ingest to copy the table again (a type change PostgreSQL applied by
    -- rewriting the table, say); NULL when it does not.
    ADD COLUMN recopy        text;

-- The table's columns from a position on: a change at (lsn, seq) is written with the newest
-- relation at or before (lsn, seq). Ingest records one when a table starts streaming or is
-- copied (seq -1: before every change of that transaction) and whenever the stream describes
-- the table anew. `changes` keeps only rows, so its key stays (table, lsn, seq).
CREATE TABLE philotes.relations (
    table_id      bigint NOT NULL,
    lsn           bigint NOT NULL,
    seq           integer NOT NULL,
    -- {"table": {"schema", "name"}, "columns": [...]} as Philotes describes a source table.
    relation      jsonb NOT NULL,
    PRIMARY KEY (table_id, lsn, seq)
);

-- A dead letter's place among its table's changes in its transaction (with the table and the
-- LSN, what `philotes dlq skip` names).
ALTER TABLE philotes.dead_letters ADD COLUMN position bigint;
