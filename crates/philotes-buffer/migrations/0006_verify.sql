-- Verifications asked for through the API: a managed ingest claims each, runs
-- `philotes verify` on the pipeline, and keeps the report here.
CREATE TABLE philotes.verify_runs (
    id            bigserial PRIMARY KEY,
    pipeline_id   bigint NOT NULL REFERENCES philotes.pipeline_specs (id) ON DELETE CASCADE,
    -- `schema.table`; empty: every table of the pipeline.
    tables        text[] NOT NULL DEFAULT '{}',
    requested_at  timestamptz NOT NULL DEFAULT now(),
    requested_by  text NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    -- match, different or unverifiable (as `philotes verify` exits 0, 1, 2); NULL until done.
    outcome       text,
    -- The report as `philotes verify --format json` writes it.
    report        jsonb,
    -- Why it could not run.
    error         text
);
CREATE INDEX verify_runs_pending ON philotes.verify_runs (id) WHERE started_at IS NULL;
