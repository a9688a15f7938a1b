-- Pipelines defined through `philotes api` (docs/decisions/013-control-plane-api.md): ingest and
-- workers started without --source run every pipeline defined here whose state is not
-- `stopped`, and follow changes within seconds.
CREATE TABLE philotes.pipeline_specs (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    source_id     bigint NOT NULL REFERENCES philotes.sources (id),
    -- The replication slot on the source; also the pipeline's key in `pipelines` and `tables`.
    slot          text NOT NULL UNIQUE,
    publication   text NOT NULL,
    -- `schema.table` for a publication Philotes creates; empty: all tables.
    tables        text[] NOT NULL DEFAULT '{}',
    namespace     text,
    -- Where the tables go, without secrets: warehouse, catalog_uri, catalog_warehouse,
    -- catalog_prefix, s3_endpoint, s3_region, s3_access_key_id, s3_path_style.
    destination   jsonb NOT NULL DEFAULT '{}',
    -- The destination's secrets (s3_secret_access_key, catalog_token, catalog_credential) as
    -- JSON, sealed with the encryption key like source passwords.
    secrets_enc   bytea,
    -- Which of those are set (what the API shows of them).
    secret_names  text[] NOT NULL DEFAULT '{}',
    flush_interval text,
    flush_rows    bigint,
    -- What the operator asked for: running, paused (ingest stops reading the slot; the
    -- workers drain the buffer) or stopped (no role runs it; the slot is kept).
    desired       text NOT NULL DEFAULT 'stopped' CHECK (desired IN ('running', 'paused', 'stopped')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
