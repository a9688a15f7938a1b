//! `philotes`: one binary, one subcommand per job.
//!
//! `philotes run` replicates a PostgreSQL publication into Iceberg changelog tables; `philotes
//! resync` copies tables again first (after a lost slot, or to mend a stopped table). Flags and
//! `PHILOTES_*` variables come from clap, the `--config` TOML file and defaults from
//! `philotes-config`; see the README's configuration reference.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use philotes_config::Layer;
use philotes_core::{Error, ErrorKind, Secret, TableName};
use philotes_pipeline::Resync;

mod dlq;
mod remote;
mod verify_runs;

#[derive(Parser)]
#[command(
    name = "philotes",
    version,
    about = "Replicate PostgreSQL into Apache Iceberg tables, exactly once."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replicate a publication into Iceberg changelog tables: initial copy, then the stream.
    Run(RunArgs),
    /// The production shape's first role: stream the publication into the control database's
    /// buffer (`--buffer-url`), copying tables into Iceberg first. One streams a pipeline; a
    /// second waits as a standby and takes over when the first stops.
    Ingest(IngestArgs),
    /// The production shape's second role (any number): write the buffered changes into the
    /// Iceberg tables, each table by one worker at a time, and maintain them.
    Worker(WorkerArgs),
    /// Copy tables again, then replicate as `run` does: after the source invalidated or dropped
    /// the slot (a new one is made), or to make a stopped table whole again.
    Resync(ResyncArgs),
    /// SQL over the lake: `<ns>.<table>` is a table's current state, `<ns>.<table>__changelog`
    /// its changes. Without a query, statements are read from standard input (ending with `;`).
    Sql(SqlArgs),
    /// Compare each table's current state in the lake with the source, both as of one source
    /// position. Exit code 0: everything matches; 1: a table differs; 2: a table (or the
    /// comparison) could not be verified.
    Verify(VerifyArgs),
    /// Ask a running role whether it is alive (or, with --ready, ready): exit 0 if so, 1 if not.
    /// For container health probes in images without a shell.
    Healthcheck(HealthcheckArgs),
    /// The control plane: the REST API (`/api/v1`, its contract at /api/v1/openapi.json) over
    /// the control database, for the dashboard, the CLI and scripts.
    Api(ApiArgs),
    /// Print the API's OpenAPI document (what docs/api/openapi.json holds).
    Openapi,
    /// API keys through the API: list, create, revoke. The first is made with `create
    /// --buffer-url`, straight in the control database (so it needs no key).
    #[command(name = "api-key")]
    ApiKey(remote::ApiKeyArgs),
    /// Sources through the API (`--api-url`, `--api-key`): list, create, test, tables, delete.
    Source(remote::SourceArgs),
    /// Pipelines through the API: list, create, update, start, pause, resume, stop, status,
    /// resync, dead letters, delete.
    Pipeline(remote::PipelineArgs),
    /// People who log in to the dashboard, through the API: list, create, update, delete. The
    /// first admin is made with `create --buffer-url`, straight in the control database.
    User(remote::UserArgs),
    /// Dead letters (changes that could not be written): list them, skip one, retry them.
    Dlq(dlq::DlqArgs),
    /// Create or upgrade the control database's schema (`--buffer-url`) and exit: for a
    /// Kubernetes hook before the roles start (they also migrate at start-up, safely at once).
    Migrate(MigrateArgs),
    /// One maintenance pass and exit (for a CronJob, or when `run` has `maintenance = false`):
    /// compact small files, rewrite manifests, expire snapshots, delete orphan files. Exit code
    /// 1 when a table could not be maintained.
    Maintain(MaintainArgs),
}

#[derive(Args, Debug)]
struct ApiArgs {
    /// Where the API listens (`host:port`).
    #[arg(long, env = "PHILOTES_API_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    #[command(flatten)]
    control: ControlArgs,
    /// A file holding the encryption key for stored secrets (32 bytes, base64 or hex), instead
    /// of PHILOTES_ENCRYPTION_KEY.
    #[arg(long, env = "PHILOTES_ENCRYPTION_KEY_FILE")]
    encryption_key_file: Option<PathBuf>,
    /// Where the API serves metrics and health for Prometheus and probes (`off`: nowhere).
    #[arg(long, env = "PHILOTES_METRICS_ADDR", default_value = philotes_config::DEFAULT_METRICS_ADDR)]
    metrics_addr: String,
    /// How often the API samples every running pipeline's throughput, buffer depth and lag
    /// into the control database (kept 7 days; GET /api/v1/pipelines/{id}/history).
    #[arg(long, env = "PHILOTES_HISTORY_INTERVAL", default_value = "1m")]
    history_interval: String,
    /// Proxies whose `X-Forwarded-For` names the client (the dashboard, an ingress):
    /// comma-separated addresses or networks, e.g. `10.0.0.0/8`. Empty: none; the peer is the
    /// client (for the audit log and the per-address login limit).
    #[arg(long, env = "PHILOTES_API_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
}

/// The control database, for the commands that need nothing else.
#[derive(Args, Debug)]
pub(crate) struct ControlArgs {
    /// PostgreSQL URL of the control database (or a file of it: PHILOTES_BUFFER_URL_FILE).
    #[arg(long, env = "PHILOTES_BUFFER_URL", hide_env_values = true)]
    buffer_url: Option<String>,
}

impl ControlArgs {
    pub(crate) fn url(&self) -> Result<Option<Secret>, Error> {
        match &self.buffer_url {
            Some(u) => Ok(Some(Secret::new(u.clone()))),
            None => secret_file("PHILOTES_BUFFER_URL_FILE"),
        }
    }
}

/// The secret in the file that the variable `var` names (Vault Agent, Kubernetes secrets).
fn secret_file(var: &str) -> Result<Option<Secret>, Error> {
    let Some(path) = std::env::var_os(var) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!(
                "cannot read {var} ({}): {e}",
                PathBuf::from(&path).display()
            ),
        )
    })?;
    Ok(Some(Secret::new(
        text.trim_end_matches(['\n', '\r']).to_string(),
    )))
}

#[derive(Args, Debug)]
struct HealthcheckArgs {
    /// Readiness (/readyz: connected to what it needs) rather than liveness (/healthz).
    #[arg(long)]
    ready: bool,
    /// Where the role serves metrics and health.
    #[arg(long, env = "PHILOTES_METRICS_ADDR", default_value = philotes_config::DEFAULT_METRICS_ADDR)]
    metrics_addr: String,
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// Run every pipeline defined through `philotes api` in the control database (started,
    /// paused, stopped and changed there, without a restart) instead of the one the flags
    /// describe. Needs PHILOTES_ENCRYPTION_KEY, the API's key.
    #[arg(long, env = "PHILOTES_MANAGED")]
    managed: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct WorkerArgs {
    /// Write every pipeline defined through `philotes api` (see `ingest --managed`).
    #[arg(long, env = "PHILOTES_MANAGED")]
    managed: bool,
    /// This worker's id in the pool, unique per pipeline, up to 34 characters (default: the
    /// host name, which is the pod name in Kubernetes).
    #[arg(long, env = "PHILOTES_WORKER_ID")]
    worker_id: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct MaintainArgs {
    /// Tables to maintain, as schema.table; every Philotes table in the catalog when none is
    /// named.
    #[arg(value_name = "TABLE")]
    tables_to_maintain: Vec<String>,
    /// Report: text (a line per table) or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Tables to verify, as schema.table; every table of the publication when none is named.
    #[arg(value_name = "TABLE")]
    tables_to_verify: Vec<String>,
    /// Report: text (a table) or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// How long to wait for `philotes run` to commit everything before the verification point.
    #[arg(long, env = "PHILOTES_VERIFY_WAIT", default_value = "120s")]
    wait: String,
    /// Keys named per kind of difference (missing, extra, different).
    #[arg(long, default_value_t = 5)]
    show: usize,
    /// Memory for the lake's query (beyond it, sorts and aggregations spill to disk) and for
    /// the rows held while comparing differing key ranges, half each.
    #[arg(long, env = "PHILOTES_VERIFY_MEMORY_LIMIT", default_value = "1GiB")]
    memory_limit: String,
    /// Rounds of row-by-row comparison at most per table; each reads both sides again (more
    /// are needed only when more rows differ than half the memory holds).
    #[arg(long, env = "PHILOTES_VERIFY_MAX_ROUNDS", default_value_t = 4)]
    max_rounds: u32,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct SqlArgs {
    /// The statement to run; none: read statements from standard input.
    query: Option<String>,
    /// Output: table (aligned), csv, or json (one object per line).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// The lake as of this source LSN (e.g. 0/16B3748): changes committed after it are left out.
    #[arg(long, conflicts_with = "as_of")]
    as_of_lsn: Option<String>,
    /// The lake as of this source commit time (e.g. 2026-11-27T08:00:00Z).
    #[arg(long)]
    as_of: Option<String>,
    /// Memory the query may hold before sorts and aggregations spill to disk (e.g. 512MiB).
    #[arg(long, env = "PHILOTES_SQL_MEMORY_LIMIT")]
    memory_limit: Option<String>,
    #[command(flatten)]
    lake: RunArgs,
}

#[derive(Args, Debug)]
struct ResyncArgs {
    /// Tables to copy again, as schema.table; every table when none is named.
    #[arg(value_name = "TABLE")]
    tables_to_copy: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
}

impl ResyncArgs {
    fn resync(&self) -> Result<Resync, Error> {
        if self.tables_to_copy.is_empty() {
            return Ok(Resync::All);
        }
        Ok(Resync::Tables(table_names("resync", &self.tables_to_copy)?))
    }
}

/// `schema.table` arguments of `command`.
fn table_names(command: &str, args: &[String]) -> Result<Vec<TableName>, Error> {
    args.iter()
        .map(|t| {
            t.split_once('.')
                .map(|(schema, name)| TableName::new(schema, name))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{command}: `{t}` is not schema.table (e.g. public.orders)"),
                    )
                })
        })
        .collect()
}

#[derive(Args, Debug, Default)]
pub(crate) struct RunArgs {
    /// TOML configuration file (flags and PHILOTES_* variables override it).
    #[arg(long, env = "PHILOTES_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL URL of the source.
    #[arg(long, env = "PHILOTES_SOURCE", hide_env_values = true)]
    source: Option<String>,
    /// Publication to replicate (created if missing).
    #[arg(long, env = "PHILOTES_PUBLICATION")]
    publication: Option<String>,
    /// Comma-separated schema.table list for a publication Philotes creates.
    #[arg(long, env = "PHILOTES_TABLES", value_delimiter = ',')]
    tables: Option<Vec<String>>,
    /// Logical replication slot (created if missing).
    #[arg(long, env = "PHILOTES_SLOT")]
    slot: Option<String>,
    /// Local state: embedded catalog, default warehouse, dead-letter file.
    #[arg(long, env = "PHILOTES_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Put every table into this namespace as <schema>__<table>__changelog.
    #[arg(long, env = "PHILOTES_NAMESPACE")]
    namespace: Option<String>,
    /// Catalog name recorded in the SQL catalog.
    #[arg(long, env = "PHILOTES_CATALOG_NAME")]
    catalog_name: Option<String>,
    /// Iceberg REST catalog URI; empty: the embedded SQLite catalog.
    #[arg(long, env = "PHILOTES_CATALOG_URI")]
    catalog_uri: Option<String>,
    /// Bearer token for the REST catalog.
    #[arg(long, env = "PHILOTES_CATALOG_TOKEN", hide_env_values = true)]
    catalog_token: Option<String>,
    /// OAuth2 client_id:client_secret for the REST catalog.
    #[arg(long, env = "PHILOTES_CATALOG_CREDENTIAL", hide_env_values = true)]
    catalog_credential: Option<String>,
    /// Warehouse name for the REST catalog.
    #[arg(long, env = "PHILOTES_CATALOG_WAREHOUSE")]
    catalog_warehouse: Option<String>,
    /// Path prefix of the REST catalog's API.
    #[arg(long, env = "PHILOTES_CATALOG_PREFIX")]
    catalog_prefix: Option<String>,
    /// Where table data goes: file:///path or s3://bucket/path.
    #[arg(long, env = "PHILOTES_WAREHOUSE")]
    warehouse: Option<String>,
    /// S3-compatible endpoint URL.
    #[arg(long, env = "PHILOTES_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "PHILOTES_S3_REGION")]
    s3_region: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "PHILOTES_S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "PHILOTES_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Use path-style S3 URLs.
    #[arg(long, env = "PHILOTES_S3_PATH_STYLE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    s3_path_style: Option<bool>,
    /// Longest wait before committed source changes are committed to Iceberg (e.g. 5s, 500ms).
    #[arg(long, env = "PHILOTES_FLUSH_INTERVAL")]
    flush_interval: Option<String>,
    /// Commit at the next transaction end once this many rows are pending.
    #[arg(long, env = "PHILOTES_FLUSH_ROWS")]
    flush_rows: Option<u64>,
    /// Rows buffered per table before they are encoded into Parquet.
    #[arg(long, env = "PHILOTES_BATCH_ROWS")]
    batch_rows: Option<usize>,
    /// Receive large transactions while they run (protocol 2, PostgreSQL 14+), spilled to disk.
    #[arg(long, env = "PHILOTES_STREAM_LARGE_TRANSACTIONS", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    stream_large_transactions: Option<bool>,
    /// Exit once everything committed on the source before the start is in Iceberg.
    #[arg(long, env = "PHILOTES_UNTIL_CAUGHT_UP", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    until_caught_up: Option<bool>,
    /// Maintain the tables in the background while running (compaction, expiry, cleanup).
    #[arg(long, env = "PHILOTES_MAINTENANCE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    maintenance: Option<bool>,
    /// Time between maintenance passes (e.g. 5m).
    #[arg(long, env = "PHILOTES_MAINTENANCE_INTERVAL")]
    maintenance_interval: Option<String>,
    /// Keep a mirror table (the current state) beside each changelog.
    #[arg(long, env = "PHILOTES_MIRROR", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    mirror: Option<bool>,
    /// Time between the mirrors' steps (e.g. 2s).
    #[arg(long, env = "PHILOTES_MIRROR_INTERVAL")]
    mirror_interval: Option<String>,
    /// Size of the files compaction writes (e.g. 128MiB).
    #[arg(long, env = "PHILOTES_COMPACTION_TARGET_SIZE")]
    compaction_target_size: Option<String>,
    /// Snapshots younger than this are kept (e.g. 10m).
    #[arg(long, env = "PHILOTES_SNAPSHOT_MAX_AGE")]
    snapshot_max_age: Option<String>,
    /// The newest this many snapshots are kept, however old.
    #[arg(long, env = "PHILOTES_SNAPSHOT_KEEP_MIN")]
    snapshot_keep_min: Option<usize>,
    /// Unreferenced files are deleted once older than this (e.g. 3d).
    #[arg(long, env = "PHILOTES_ORPHAN_MIN_AGE")]
    orphan_min_age: Option<String>,
    /// Fold changes older than this into one row per key (e.g. 30d; default off: keep all).
    #[arg(long, env = "PHILOTES_CHANGELOG_RETENTION")]
    changelog_retention: Option<String>,
    /// Serve /metrics, /healthz and /readyz here (host:port, or `off`).
    #[arg(long, env = "PHILOTES_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// PostgreSQL URL of the control database (ingest, worker, migrate).
    #[arg(long, env = "PHILOTES_BUFFER_URL", hide_env_values = true)]
    buffer_url: Option<String>,
    /// Longest graceful stop after SIGTERM before exiting anyway (e.g. 25s).
    #[arg(long, env = "PHILOTES_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<String>,
    /// Ingest stops reading the slot while the buffer holds this many changes.
    #[arg(long, env = "PHILOTES_BUFFER_HIGH_ROWS")]
    buffer_high_rows: Option<u64>,
    /// Ingest reads again once the buffer is down to this many changes.
    #[arg(long, env = "PHILOTES_BUFFER_LOW_ROWS")]
    buffer_low_rows: Option<u64>,
}

impl RunArgs {
    fn layer(self) -> (Option<PathBuf>, Layer) {
        let layer = Layer {
            source: self.source.map(Secret::new),
            publication: self.publication,
            tables: self.tables,
            slot: self.slot,
            data_dir: self.data_dir,
            namespace: self.namespace,
            catalog_name: self.catalog_name,
            catalog_uri: self.catalog_uri,
            catalog_token: self.catalog_token.map(Secret::new),
            catalog_credential: self.catalog_credential.map(Secret::new),
            catalog_warehouse: self.catalog_warehouse,
            catalog_prefix: self.catalog_prefix,
            warehouse: self.warehouse,
            s3_endpoint: self.s3_endpoint,
            s3_region: self.s3_region,
            s3_access_key_id: self.s3_access_key_id,
            s3_secret_access_key: self.s3_secret_access_key.map(Secret::new),
            s3_path_style: self.s3_path_style,
            flush_interval: self.flush_interval,
            flush_rows: self.flush_rows,
            batch_rows: self.batch_rows,
            stream_large_transactions: self.stream_large_transactions,
            until_caught_up: self.until_caught_up,
            maintenance: self.maintenance,
            maintenance_interval: self.maintenance_interval,
            mirror: self.mirror,
            mirror_interval: self.mirror_interval,
            compaction_target_size: self.compaction_target_size,
            snapshot_max_age: self.snapshot_max_age,
            snapshot_keep_min: self.snapshot_keep_min,
            orphan_min_age: self.orphan_min_age,
            changelog_retention: self.changelog_retention,
            metrics_addr: self.metrics_addr,
            buffer_url: self.buffer_url.map(Secret::new),
            shutdown_timeout: self.shutdown_timeout,
            buffer_high_rows: self.buffer_high_rows,
            buffer_low_rows: self.buffer_low_rows,
        };
        (self.config, layer)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // verify's exit codes: 1 means "differs", so its failures are 2.
    let failure_is_2 = matches!(cli.command, Command::Verify(_));
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args, Resync::None).await,
            Command::Ingest(args) => ingest(args).await,
            Command::Worker(args) => worker(args).await,
            Command::Resync(args) => match args.resync() {
                Ok(resync) => run(args.run, resync).await,
                Err(e) => Err(e),
            },
            Command::Sql(args) => sql::run(args).await,
            Command::Verify(args) => verify(args).await,
            Command::Maintain(args) => maintain(args).await,
            Command::Migrate(args) => migrate(args).await,
            Command::Dlq(args) => dlq::dlq(args).await,
            Command::Healthcheck(args) => healthcheck(args).await,
            Command::Api(args) => api(args).await,
            Command::Openapi => {
                print!("{}", philotes_api::openapi_json());
                Ok(ExitCode::SUCCESS)
            }
            Command::ApiKey(args) => remote::api_key(args).await,
            Command::User(args) => remote::user(args).await,
            Command::Source(args) => remote::source(args).await,
            Command::Pipeline(args) => remote::pipeline(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if failure_is_2 || e.kind() == ErrorKind::Config {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

mod sql {
    //! `philotes sql`: one statement, or a prompt reading statements from standard input.

    use std::io::{BufRead, IsTerminal, Write};
    use std::process::ExitCode;

    use philotes_core::{Error, ErrorKind, Lsn};
    use philotes_query::output::Format;
    use philotes_query::state::Upto;
    use philotes_query::{LakeSession, QueryOptions, parse_as_of, parse_size};

    use super::SqlArgs;

    pub async fn run(args: SqlArgs) -> Result<ExitCode, Error> {
        let format = match args.format.as_str() {
            "csv" => Format::Csv,
            "json" => Format::Json,
            _ => Format::Table,
        };
        let upto = match (&args.as_of_lsn, &args.as_of) {
            (Some(l), _) => Upto::Lsn(l.parse::<Lsn>()?.0),
            (None, Some(t)) => parse_as_of(t)?,
            (None, None) => Upto::All,
        };
        let memory_limit = args.memory_limit.as_deref().map(parse_size).transpose()?;
        let settings = super::settings(args.lake)?;
        let lake = super::open_lake(&settings).await?;
        let opts = QueryOptions {
            upto: upto.clone(),
            memory_limit,
            only: None,
        };
        let session = LakeSession::open(lake.catalog.clone(), &opts).await?;
        if let Upto::Lsn(l) = upto {
            for t in &session.tables {
                if t.watermark.is_some_and(|w| w.0 < l) {
                    tracing::warn!(table = %format!("{}.{}", t.namespace, t.changelog), watermark = ?t.watermark.map(|w| w.to_string()), "the lake has not reached the requested LSN for this table yet: it shows the table as of its watermark");
                }
            }
        }
        let stdout = std::io::stdout();
        match args.query {
            Some(q) => {
                let stream = session.query(&q).await?;
                philotes_query::output::write(stream, format, &mut stdout.lock()).await?;
                Ok(ExitCode::SUCCESS)
            }
            None => prompt(&session, format).await,
        }
    }

    /// Read statements (ending with `;`) from standard input and run each; on a terminal a
    /// failed statement is reported and the prompt goes on, otherwise it ends the run.
    async fn prompt(session: &LakeSession, format: Format) -> Result<ExitCode, Error> {
        let interactive = std::io::stdin().is_terminal();
        let mut stdout = std::io::stdout();
        if interactive {
            let names: Vec<String> = session
                .tables
                .iter()
                .filter_map(|t| t.state.as_ref().map(|s| format!("{}.{s}", t.namespace)))
                .collect();
            eprintln!(
                "philotes sql — tables: {}. End statements with ';', quit with \\q.",
                names.join(", ")
            );
        }
        let mut statement = String::new();
        let mut failed = false;
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            if interactive {
                eprint!(
                    "{}",
                    if statement.is_empty() {
                        "philotes> "
                    } else {
                        "      ... "
                    }
                );
                let _ = std::io::stderr().flush();
            }
            let Some(line) = lines.next() else { break };
            let line = line.map_err(|e| {
                Error::new(ErrorKind::Invalid, "cannot read standard input").with_source(e)
            })?;
            if statement.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                break;
            }
            statement.push_str(&line);
            statement.push('\n');
            if !line.trim_end().ends_with(';') {
                continue;
            }
            let sql = std::mem::take(&mut statement);
            let result = match session.query(sql.trim()).await {
                Ok(stream) => philotes_query::output::write(stream, format, &mut stdout).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                eprintln!("error: {e}");
                failed = true;
                if !interactive {
                    break;
                }
            }
        }
        if !statement.trim().is_empty() {
            let stream = session.query(statement.trim()).await?;
            philotes_query::output::write(stream, format, &mut stdout).await?;
        }
        Ok(if failed && !interactive {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PHILOTES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Settings from flags, `PHILOTES_*` variables, the `--config` file and defaults.
pub(crate) fn settings(args: RunArgs) -> Result<philotes_config::Settings, Error> {
    layered(args)?.resolve()
}

/// Flags over the configuration file, not resolved yet.
fn layered(args: RunArgs) -> Result<Layer, Error> {
    let (config_file, flags) = args.layer();
    let file = match config_file {
        Some(path) => Layer::from_toml_file(&path)?,
        None => Layer::default(),
    };
    let mut layer = flags.over(file);
    // Every secret also from a file (Vault Agent, a mounted Kubernetes secret), when neither a
    // flag, the environment nor the config file sets it.
    for (slot, var) in [
        (&mut layer.buffer_url, "PHILOTES_BUFFER_URL_FILE"),
        (&mut layer.source, "PHILOTES_SOURCE_FILE"),
        (
            &mut layer.s3_secret_access_key,
            "PHILOTES_S3_SECRET_ACCESS_KEY_FILE",
        ),
        (&mut layer.catalog_token, "PHILOTES_CATALOG_TOKEN_FILE"),
        (
            &mut layer.catalog_credential,
            "PHILOTES_CATALOG_CREDENTIAL_FILE",
        ),
    ] {
        if slot.is_none() {
            *slot = secret_file(var)?;
        }
    }
    if layer.s3_access_key_id.is_none() {
        layer.s3_access_key_id =
            secret_file("PHILOTES_S3_ACCESS_KEY_ID_FILE")?.map(|s| s.expose().to_string());
    }
    Ok(layer)
}

/// The encryption key of stored secrets: PHILOTES_ENCRYPTION_KEY, or the file that
/// `--encryption-key-file` / PHILOTES_ENCRYPTION_KEY_FILE names.
fn encryption_key(file: Option<&std::path::Path>) -> Result<Option<Secret>, Error> {
    match file {
        Some(path) => Ok(Some(Secret::new(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "cannot read the encryption key file {}: {e}",
                            path.display()
                        ),
                    )
                })?
                .trim()
                .to_string(),
        ))),
        None => Ok(std::env::var("PHILOTES_ENCRYPTION_KEY")
            .ok()
            .map(Secret::new)),
    }
}

/// `ingest --managed` or `worker --managed`: run the pipelines defined through `philotes api`.
async fn managed(layer: Layer, role: philotes_pipeline::ManagedRole) -> Result<ExitCode, Error> {
    let settings = layer.clone().resolve()?;
    let file = std::env::var_os("PHILOTES_ENCRYPTION_KEY_FILE").map(PathBuf::from);
    let key = encryption_key(file.as_deref())?.ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "--managed runs the pipelines defined through `philotes api` and needs the API's encryption key to open their secrets: set PHILOTES_ENCRYPTION_KEY (or PHILOTES_ENCRYPTION_KEY_FILE) to the key the API runs with",
        )
    })?;
    let cipher = philotes_api::Cipher::from_text(&key)?;
    let _telemetry = philotes_telemetry::serve(&settings.metrics_addr).await?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone(), settings.shutdown_timeout);
    if matches!(role, philotes_pipeline::ManagedRole::Ingest) {
        // A managed ingest also runs the verifications asked for through the API.
        tokio::try_join!(
            philotes_pipeline::manage(layer.clone(), role, cipher.clone(), stop.clone()),
            verify_runs::run(layer, cipher, stop)
        )?;
    } else {
        philotes_pipeline::manage(layer, role, cipher, stop).await?;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs, resync: Resync) -> Result<ExitCode, Error> {
    let settings = settings(args)?;
    let _telemetry = philotes_telemetry::serve(&settings.metrics_addr).await?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone(), settings.shutdown_timeout);
    let report = philotes_pipeline::run(&settings, stop, &resync).await?;
    tracing::info!(
        tables = report.tables,
        streamed_rows = report.streamed_rows,
        confirmed = %report.confirmed,
        "stopped"
    );
    if report.stopped.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for t in &report.stopped {
        eprintln!("error: table {} is stopped: {}", t.table, t.error);
    }
    Ok(ExitCode::FAILURE)
}

async fn ingest(args: IngestArgs) -> Result<ExitCode, Error> {
    let layer = layered(args.run)?;
    if args.managed {
        return managed(layer, philotes_pipeline::ManagedRole::Ingest).await;
    }
    let settings = layer.resolve()?;
    let _telemetry = philotes_telemetry::serve(&settings.metrics_addr).await?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone(), settings.shutdown_timeout);
    let report = philotes_pipeline::ingest(&settings, stop).await?;
    tracing::info!(tables = report.tables, streamed_rows = report.streamed_rows, confirmed = %report.confirmed, "stopped");
    for t in &report.stopped {
        eprintln!("error: table {} is stopped: {}", t.table, t.error);
    }
    Ok(if report.stopped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn worker(args: WorkerArgs) -> Result<ExitCode, Error> {
    let id = match args.worker_id.filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => host_name()?,
    };
    let layer = layered(args.run)?;
    if args.managed {
        return managed(layer, philotes_pipeline::ManagedRole::Worker(id)).await;
    }
    let settings = layer.resolve()?;
    let _telemetry = philotes_telemetry::serve(&settings.metrics_addr).await?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone(), settings.shutdown_timeout);
    philotes_pipeline::work(&settings, &id, stop).await?;
    tracing::info!(worker = %id, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// The host name (the pod name in Kubernetes), for a worker's default id.
fn host_name() -> Result<String, Error> {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    name.ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "no worker id: set --worker-id or PHILOTES_WORKER_ID (unique per worker of a pipeline)",
        )
    })
}

async fn verify(args: VerifyArgs) -> Result<ExitCode, Error> {
    let opts = philotes_verify::VerifyOptions {
        tables: table_names("verify", &args.tables_to_verify)?,
        wait: philotes_config::parse_duration(&args.wait)?,
        memory_limit: Some(philotes_query::parse_size(&args.memory_limit)?),
        show: args.show,
        max_rounds: args.max_rounds,
    };
    let settings = settings(args.run)?;
    let report = philotes_verify::verify(&settings, &opts).await?;
    let mut out = std::io::stdout().lock();
    let written = if args.format == "json" {
        report.write_json(&mut out)
    } else {
        report.write_text(&mut out)
    };
    written.map_err(|e| Error::new(ErrorKind::Disk, "cannot write the report").with_source(e))?;
    Ok(ExitCode::from(report.exit_code()))
}

/// Open an existing lake (the commands that only read or maintain one never create it).
async fn open_lake(
    settings: &philotes_config::Settings,
) -> Result<philotes_sink_iceberg::Lake, Error> {
    if !settings.data_dir.exists()
        && matches!(
            settings.catalog,
            philotes_config::CatalogSettings::Sql { .. }
        )
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "no lake at {}: point --data-dir (or the catalog options) at the lake `philotes run` writes",
                settings.data_dir.display()
            ),
        ));
    }
    philotes_sink_iceberg::open_catalog(settings).await
}

async fn healthcheck(args: HealthcheckArgs) -> Result<ExitCode, Error> {
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let (code, body) = philotes_telemetry::probe(&args.metrics_addr, path).await?;
    println!("{path}: {code} {}", body.trim());
    Ok(if code == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn api(args: ApiArgs) -> Result<ExitCode, Error> {
    let encryption_key = encryption_key(args.encryption_key_file.as_deref())?;
    let history_interval = philotes_config::parse_duration(&args.history_interval)?;
    if history_interval < std::time::Duration::from_secs(1) {
        return Err(Error::new(
            ErrorKind::Config,
            "--history-interval (PHILOTES_HISTORY_INTERVAL) must be 1s or more; the default is 1m",
        ));
    }
    let settings = philotes_api::ApiSettings {
        history_interval,
        listen: args.listen,
        buffer_url: args.control.url()?,
        encryption_key,
        trusted_proxies: philotes_api::remote::TrustedProxies::parse(&args.trusted_proxies)?,
    };
    let _telemetry = philotes_telemetry::serve(&args.metrics_addr).await?;
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone(), std::time::Duration::from_secs(30));
    philotes_api::serve(&settings, async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await?;
    tracing::info!("API stopped");
    Ok(ExitCode::SUCCESS)
}

async fn migrate(args: MigrateArgs) -> Result<ExitCode, Error> {
    let settings = settings(args.run)?;
    let db = philotes_buffer::ControlDb::open(settings.buffer_url.as_ref(), "to migrate").await?;
    let m = &db.migrated;
    if m.applied.is_empty() {
        println!(
            "control database {} is up to date (version {})",
            db.conn.redacted(),
            m.version
        );
    } else {
        let applied: Vec<String> = m.applied.iter().map(|v| v.to_string()).collect();
        println!(
            "control database {} migrated to version {} (applied {})",
            db.conn.redacted(),
            m.version,
            applied.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn maintain(args: MaintainArgs) -> Result<ExitCode, Error> {
    let named = table_names("maintain", &args.tables_to_maintain)?;
    let settings = settings(args.run)?;
    let lake = open_lake(&settings).await?;
    let tables = if named.is_empty() {
        let found = philotes_maintenance::philotes_tables(&lake).await?;
        if found.is_empty() {
            eprintln!("no Philotes tables in the catalog: nothing to maintain");
        }
        found
    } else {
        named
            .iter()
            .map(|t| philotes_sink_iceberg::table_ident(t, settings.namespace.as_deref()))
            .collect()
    };
    let results = philotes_maintenance::maintain(&lake, &tables, &settings.maintenance).await;
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    let mut json = Vec::new();
    for (ident, r) in results {
        match r {
            Ok(report) if args.format == "json" => json.push(serde_json::json!(report)),
            Ok(report) => {
                let _ = writeln!(out, "{}", maintain_line(&report));
            }
            Err(e) => {
                failed = true;
                eprintln!("error: table {ident}: {e}");
                if args.format == "json" {
                    json.push(
                        serde_json::json!({"table": ident.to_string(), "error": e.to_string()}),
                    );
                }
            }
        }
    }
    if args.format == "json" {
        let _ = writeln!(out, "{}", serde_json::json!({ "tables": json }));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn maintain_line(r: &philotes_maintenance::TableReport) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut parts = Vec::new();
    if let Some(cut) = &r.retention.cut_lsn {
        parts.push(format!(
            "folded {} changes before LSN {cut} into {} base rows",
            r.retention.changes_folded, r.retention.base_rows
        ));
    }
    if let Some(why) = &r.retention.waiting {
        parts.push(format!("retention: {why}"));
    }
    if r.rewrite.files_in > 0 {
        parts.push(format!(
            "compacted {} files ({:.1} MiB) into {} ({:.1} MiB)",
            r.rewrite.files_in,
            mib(r.rewrite.bytes_in),
            r.rewrite.files_out,
            mib(r.rewrite.bytes_out)
        ));
    }
    if r.rewrite.manifests_after != r.rewrite.manifests_before {
        parts.push(format!(
            "manifests {} -> {}",
            r.rewrite.manifests_before, r.rewrite.manifests_after
        ));
    }
    let e = &r.expiry;
    if e.snapshots_expired > 0 {
        parts.push(format!(
            "expired {} snapshots, deleting {} data files, {} manifests and {} manifest lists",
            e.snapshots_expired,
            e.data_files_deleted,
            e.manifests_deleted,
            e.manifest_lists_deleted
        ));
    }
    let o = &r.orphans;
    if o.orphans_deleted > 0 || o.metadata_files_deleted > 0 {
        parts.push(format!(
            "deleted {} orphan files ({:.1} MiB) and {} old metadata files",
            o.orphans_deleted,
            mib(o.orphan_bytes),
            o.metadata_files_deleted
        ));
    }
    if parts.is_empty() {
        parts.push("nothing to do".into());
    }
    format!(
        "{}: {}; {} snapshots, {} data files now ({:.2} s)",
        r.table,
        parts.join(", "),
        r.snapshots_after,
        r.data_files_after,
        r.seconds
    )
}

/// First Ctrl-C or SIGTERM: stop at the next transaction boundary after committing what is
/// pending, within `deadline`. Second, or past the deadline: exit at once (nothing is confirmed
/// that is not committed, so this is safe).
fn spawn_signal_handler(stop: Arc<AtomicBool>, deadline: std::time::Duration) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let got = match term.as_mut() {
                Some(t) => tokio::select! {
                    _ = tokio::signal::ctrl_c() => true,
                    _ = t.recv() => true,
                },
                None => tokio::signal::ctrl_c().await.is_ok(),
            };
            if !got {
                return;
            }
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("stopping now");
                std::process::exit(130);
            }
            eprintln!(
                "stopping after the current transaction (press Ctrl-C again to stop at once)"
            );
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                eprintln!(
                    "error: not stopped within shutdown_timeout ({deadline:?}); exiting now. Nothing uncommitted was confirmed to the source: the next start resumes where Iceberg is"
                );
                std::process::exit(1);
            });
        }
    });
}
