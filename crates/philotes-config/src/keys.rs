//! The documentation of every configuration key, in one place.

/// One configuration key: TOML name, flag, environment variable, default and meaning.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    pub key: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

macro_rules! key {
    ($key:literal, $flag:literal, $env:literal, $default:literal, $doc:literal) => {
        KeyDoc {
            key: $key,
            flag: $flag,
            env: $env,
            default: $default,
            doc: $doc,
        }
    };
}

/// Every key `philotes run` understands.
pub const KEYS: &[KeyDoc] = &[
    key!(
        "source",
        "--source",
        "PHILOTES_SOURCE",
        "(required for run)",
        "PostgreSQL URL of the source, e.g. `postgres://user:pw@host:5432/db?sslmode=verify-full`. `sslmode` is disable, prefer, require, verify-ca or verify-full; `sslrootcert` names a CA file."
    ),
    key!(
        "publication",
        "--publication",
        "PHILOTES_PUBLICATION",
        "philotes",
        "Publication to replicate. Created if missing: FOR ALL TABLES, or for `tables`."
    ),
    key!(
        "tables",
        "--tables",
        "PHILOTES_TABLES",
        "(all tables)",
        "Comma-separated `schema.table` list for a publication Philotes creates."
    ),
    key!(
        "slot",
        "--slot",
        "PHILOTES_SLOT",
        "philotes",
        "Logical replication slot; created if missing. Its confirmed position only moves past changes committed in Iceberg."
    ),
    key!(
        "data_dir",
        "--data-dir",
        "PHILOTES_DATA_DIR",
        "./philotes-data",
        "Local state: the embedded catalog (`catalog.db`), the default warehouse (`warehouse/`) and the dead-letter file."
    ),
    key!(
        "namespace",
        "--namespace",
        "PHILOTES_NAMESPACE",
        "(the source schema)",
        "Put every table into this Iceberg namespace as `<schema>__<table>__changelog`."
    ),
    key!(
        "catalog_name",
        "--catalog-name",
        "PHILOTES_CATALOG_NAME",
        "philotes",
        "Catalog name recorded in the SQL catalog (pyiceberg's `SqlCatalog(name, …)`)."
    ),
    key!(
        "catalog_uri",
        "--catalog-uri",
        "PHILOTES_CATALOG_URI",
        "(embedded SQLite)",
        "Iceberg REST catalog URI (Lakekeeper). Empty: the embedded SQL catalog in `DATA_DIR/catalog.db`."
    ),
    key!(
        "catalog_token",
        "--catalog-token",
        "PHILOTES_CATALOG_TOKEN",
        "(none)",
        "Bearer token for the REST catalog. Never printed."
    ),
    key!(
        "catalog_credential",
        "--catalog-credential",
        "PHILOTES_CATALOG_CREDENTIAL",
        "(none)",
        "OAuth2 `client_id:client_secret` for the REST catalog. Never printed."
    ),
    key!(
        "catalog_warehouse",
        "--catalog-warehouse",
        "PHILOTES_CATALOG_WAREHOUSE",
        "(none)",
        "Warehouse name the REST catalog should use."
    ),
    key!(
        "catalog_prefix",
        "--catalog-prefix",
        "PHILOTES_CATALOG_PREFIX",
        "(none)",
        "Path prefix of the REST catalog's API."
    ),
    key!(
        "warehouse",
        "--warehouse",
        "PHILOTES_WAREHOUSE",
        "file://DATA_DIR/warehouse",
        "Where table data goes: `file:///path` or `s3://bucket/path`."
    ),
    key!(
        "s3_endpoint",
        "--s3-endpoint",
        "PHILOTES_S3_ENDPOINT",
        "(AWS)",
        "S3-compatible endpoint URL (MinIO, Hetzner, OVHcloud, Scaleway, Exoscale)."
    ),
    key!(
        "s3_region",
        "--s3-region",
        "PHILOTES_S3_REGION",
        "us-east-1",
        "S3 region."
    ),
    key!(
        "s3_access_key_id",
        "--s3-access-key-id",
        "PHILOTES_S3_ACCESS_KEY_ID",
        "(none)",
        "S3 access key id."
    ),
    key!(
        "s3_secret_access_key",
        "--s3-secret-access-key",
        "PHILOTES_S3_SECRET_ACCESS_KEY",
        "(none)",
        "S3 secret access key. Never printed."
    ),
    key!(
        "s3_path_style",
        "--s3-path-style",
        "PHILOTES_S3_PATH_STYLE",
        "false",
        "Use path-style S3 URLs (needed by most self-hosted S3 servers)."
    ),
    key!(
        "flush_interval",
        "--flush-interval",
        "PHILOTES_FLUSH_INTERVAL",
        "1s",
        "Longest time a committed source transaction waits before it is committed to Iceberg."
    ),
    key!(
        "flush_rows",
        "--flush-rows",
        "PHILOTES_FLUSH_ROWS",
        "1000000",
        "Commit to Iceberg at the next transaction end once this many rows are pending."
    ),
    key!(
        "batch_rows",
        "--batch-rows",
        "PHILOTES_BATCH_ROWS",
        "16384",
        "Rows buffered in memory per table before they are encoded into the open Parquet file."
    ),
    key!(
        "stream_large_transactions",
        "--stream-large-transactions",
        "PHILOTES_STREAM_LARGE_TRANSACTIONS",
        "true",
        "Receive a transaction larger than the source's `logical_decoding_work_mem` while it still runs (pgoutput protocol 2, PostgreSQL 14+), kept in `DATA_DIR/spill` until it commits. Off: the source sends it whole at commit, after spilling it to its own disk."
    ),
    key!(
        "until_caught_up",
        "--until-caught-up",
        "PHILOTES_UNTIL_CAUGHT_UP",
        "false",
        "Exit 0 once everything committed on the source before the start is committed in Iceberg; non-zero if a table was stopped by an error."
    ),
    key!(
        "maintenance",
        "--maintenance",
        "PHILOTES_MAINTENANCE",
        "true",
        "Maintain the tables while `run` streams: compaction, manifest rewrite, snapshot expiry, orphan cleanup (docs/maintenance.md). Off: run `philotes maintain` yourself, e.g. from a CronJob."
    ),
    key!(
        "maintenance_interval",
        "--maintenance-interval",
        "PHILOTES_MAINTENANCE_INTERVAL",
        "5m",
        "Time between maintenance passes over the tables."
    ),
    key!(
        "mirror",
        "--mirror",
        "PHILOTES_MIRROR",
        "false",
        "Keep a mirror table `<schema>.<table>` beside each changelog: the source table's current state as a plain Iceberg table any engine reads (decision 020). Tables without a key have none. Off for now: a mirror step holds every change since its position in memory (a large initial copy at once)."
    ),
    key!(
        "mirror_interval",
        "--mirror-interval",
        "PHILOTES_MIRROR_INTERVAL",
        "2s",
        "Time between the mirrors' steps: a mirror trails its changelog by about this plus the time of one step."
    ),
    key!(
        "compaction_target_size",
        "--compaction-target-size",
        "PHILOTES_COMPACTION_TARGET_SIZE",
        "128MiB",
        "Size of the data files compaction writes; files under three quarters of it are merged."
    ),
    key!(
        "snapshot_max_age",
        "--snapshot-max-age",
        "PHILOTES_SNAPSHOT_MAX_AGE",
        "10m",
        "Snapshots younger than this are kept (other engines' snapshot time travel reaches this far back; `philotes sql --as-of` needs none)."
    ),
    key!(
        "snapshot_keep_min",
        "--snapshot-keep-min",
        "PHILOTES_SNAPSHOT_KEEP_MIN",
        "10",
        "The newest this many snapshots of a table are kept, however old (at least 2)."
    ),
    key!(
        "orphan_min_age",
        "--orphan-min-age",
        "PHILOTES_ORPHAN_MIN_AGE",
        "3d",
        "Files under a table's location that no snapshot references are deleted once older than this (younger ones may belong to a write still under way)."
    ),
    key!(
        "metrics_addr",
        "--metrics-addr",
        "PHILOTES_METRICS_ADDR",
        "0.0.0.0:9090",
        "Where `run` serves `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (connected to what it needs; 503 with the reasons otherwise): `host:port`, port 0 for any free one, or `off` (docs/metrics.md)."
    ),
    key!(
        "buffer_url",
        "--buffer-url",
        "PHILOTES_BUFFER_URL",
        "(none)",
        "PostgreSQL URL of the control database of `ingest`, `worker` and `migrate` (buffered changes, table progress, dead letters; a `philotes` schema in it). Same form and `sslmode` values as `source`. Never printed."
    ),
    key!(
        "shutdown_timeout",
        "--shutdown-timeout",
        "PHILOTES_SHUTDOWN_TIMEOUT",
        "25s",
        "After SIGTERM (or Ctrl-C), `run` stops at the next transaction boundary once what it holds is committed; if that takes longer than this it exits at once with code 1 (safe: nothing uncommitted was confirmed, the next start resumes). Keep it under Kubernetes' `terminationGracePeriodSeconds`."
    ),
    key!(
        "buffer_high_rows",
        "--buffer-high-rows",
        "PHILOTES_BUFFER_HIGH_ROWS",
        "2000000",
        "Backpressure: `ingest` stops reading the slot while the control database's buffer holds this many changes or more (the workers are behind or stopped), still answering the source's keepalives; the source keeps the WAL meanwhile."
    ),
    key!(
        "buffer_low_rows",
        "--buffer-low-rows",
        "PHILOTES_BUFFER_LOW_ROWS",
        "half of buffer_high_rows",
        "`ingest` reads the slot again once the buffer is down to this many changes."
    ),
];
