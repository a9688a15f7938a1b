-- The control database of a Philotes deployment: buffered changes between ingest and the
-- workers, each table's progress, and dead letters. Everything lives in the `philotes` schema.
-- docs/decisions/011-control-database.md explains the choices.

-- One row per pipeline (a source database's publication and slot).
CREATE TABLE philotes.pipelines (
    name          text PRIMARY KEY,
    -- The source as `<system identifier>/<database>`: a second source cannot claim the pipeline.
    source        text NOT NULL,
    -- Every source transaction that committed below this position is in `changes`.
    buffered_lsn  bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per replicated table.
CREATE TABLE philotes.tables (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline      text NOT NULL REFERENCES philotes.pipelines ON DELETE CASCADE,
    -- `schema.table` on the source.
    name          text NOT NULL,
    -- The lake table's watermark as last committed by a worker (its summary is the truth).
    watermark     bigint,
    -- Why the table is stopped; NULL while it is not.
    stopped       text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pipeline, name)
);

-- Changes received from the source and not yet committed to Iceberg, in source order per table.
-- A worker deletes a table's rows below its watermark once the Iceberg commit has landed.
CREATE TABLE philotes.changes (
    table_id      bigint NOT NULL,
    -- Commit LSN of the source transaction.
    lsn           bigint NOT NULL,
    -- Position of the change in its transaction.
    seq           integer NOT NULL,
    -- Source commit time, microseconds since the Unix epoch.
    ts_us         bigint NOT NULL,
    -- I insert, U update, D delete, T truncate, R the table's columns from here on.
    op            "char" NOT NULL,
    -- The row (or the columns) in Philotes' compact binary encoding, not JSON text.
    data          bytea NOT NULL,
    PRIMARY KEY (table_id, lsn, seq)
);

-- Changes that could not be written, kept whole for an operator (`philotes dlq`).
CREATE TABLE philotes.dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline      text NOT NULL,
    table_name    text NOT NULL,
    lsn           bigint NOT NULL,
    op            text NOT NULL,
    column_name   text,
    error         text NOT NULL,
    -- Column name to value, as the dead-letter file writes it.
    row           jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'retried', 'skipped')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_note text
);
CREATE INDEX dead_letters_open ON philotes.dead_letters (pipeline, table_name) WHERE state = 'open';
