-- Each table's recent commits to the lake, for the dashboard's "recent commits" and the API: a
-- streaming commit of a worker (its changes, the watermark it carries, how long it took), or a
-- copy (its rows, its point). `philotes api` keeps 7 days, as it does for its history.
CREATE TABLE philotes.commits (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_id    bigint NOT NULL REFERENCES philotes.tables ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('stream', 'copy')),
    -- Changes (stream) or rows (copy) the commit added.
    rows        bigint NOT NULL,
    -- Everything of the table below this position is in the lake after the commit.
    watermark   bigint NOT NULL,
    seconds     double precision
);
CREATE INDEX commits_table_at ON philotes.commits (table_id, at DESC);
-- The API removes commits older than 7 days at each history sample.
CREATE INDEX commits_at ON philotes.commits (at);
