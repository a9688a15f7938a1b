-- History for the dashboard's charts without Prometheus: every table counts the changes
-- ingest buffered and the changes workers committed to the lake, and `philotes api` keeps a
-- sample of each running pipeline per interval (a minute by default) for 7 days.
ALTER TABLE philotes.tables
    ADD COLUMN changes_buffered bigint NOT NULL DEFAULT 0,
    ADD COLUMN changes_in_lake  bigint NOT NULL DEFAULT 0;

CREATE TABLE philotes.pipeline_history (
    pipeline_id       bigint NOT NULL REFERENCES philotes.pipeline_specs (id) ON DELETE CASCADE,
    -- The start of the interval the sample stands for (API replicas sampling the same
    -- interval keep the first sample).
    at                timestamptz NOT NULL,
    -- The pipeline's counters at the sample (the rates are differences of two samples).
    changes_buffered  bigint NOT NULL,
    changes_in_lake   bigint NOT NULL,
    -- Changes buffered and not yet in the lake.
    buffer_depth      bigint NOT NULL,
    -- Age of the oldest change not yet in the lake (source commit time to the sample);
    -- 0 when the lake holds everything buffered.
    lag_seconds       double precision NOT NULL,
    PRIMARY KEY (pipeline_id, at)
);
