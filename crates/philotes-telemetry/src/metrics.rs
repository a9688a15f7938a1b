//! Every metric Philotes exports, with its unit and help text, and the calls that record them.
//!
//! Names follow Prometheus' conventions: a `philotes_` prefix, base units as a suffix
//! (`_seconds`, `_bytes`, `_rows`), `_total` on counters. `docs/metrics.md` lists each one; a
//! test fails when a metric here is missing there.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use philotes_core::ErrorKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    pipeline: String,
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    pipeline: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    pipeline: String,
    operation: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    pipeline: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    pipeline: String,
    table: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Commit and maintenance durations: 10 ms to about 80 s.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Rows per commit: 1 to about 4 million.
fn rows_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 12))
}

/// The `wal_status` values PostgreSQL reports for a slot.
const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

/// One declared metric, as Prometheus names it.
#[derive(Clone, Debug)]
pub struct Declared {
    pub name: String,
    pub kind: &'static str,
    pub help: &'static str,
}

/// The registry, and what was registered (it leaves a family out until it has a sample).
struct Declare {
    registry: Registry,
    declared: Vec<Declared>,
}

impl Declare {
    fn add<M: prometheus_client::registry::Metric + Clone>(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<Unit>,
        metric: M,
    ) {
        let kind = match prometheus_client::encoding::EncodeMetric::metric_type(&metric) {
            prometheus_client::metrics::MetricType::Counter => "counter",
            prometheus_client::metrics::MetricType::Histogram => "histogram",
            _ => "gauge",
        };
        let mut full = format!("philotes_{name}");
        if let Some(u) = &unit {
            full = format!("{full}_{}", u.as_str());
        }
        if kind == "counter" {
            full.push_str("_total");
        }
        self.declared.push(Declared {
            name: full,
            kind,
            help,
        });
        match unit {
            Some(u) => self.registry.register_with_unit(name, help, u, metric),
            None => self.registry.register(name, help, metric),
        }
    }
}

struct Metrics {
    registry: Registry,
    declared: Vec<Declared>,
    buffer_depth: Family<PipelineLabels, Gauge>,
    lag_bytes: Family<PipelineLabels, Gauge>,
    lag_seconds: Family<PipelineLabels, FloatGauge>,
    retained_wal: Family<PipelineLabels, Gauge>,
    safe_wal: Family<PipelineLabels, Gauge>,
    wal_status: Family<StatusLabels, Gauge>,
    source_connected: Family<PipelineLabels, Gauge>,
    worker_leases: Family<PipelineLabels, Gauge>,
    rows_ingested: Family<TableLabels, Counter>,
    rows_committed: Family<TableLabels, Counter>,
    commits: Family<TableLabels, Counter>,
    commit_duration: HistogramFamily<TableLabels>,
    commit_rows: HistogramFamily<TableLabels>,
    snapshot_rows: Family<TableLabels, Counter>,
    snapshot_running: Family<TableLabels, Gauge>,
    dead_letters: Family<TableLabels, Counter>,
    skipped: Family<TableLabels, Counter>,
    table_stopped: Family<TableLabels, Gauge>,
    retries: Family<RetryLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    maintenance_passes: Family<OutcomeLabels, Counter>,
    maintenance_duration: HistogramFamily<TableLabels>,
    maintenance_compacted: Family<TableLabels, Counter>,
    maintenance_expired: Family<TableLabels, Counter>,
    maintenance_deleted: Family<TableLabels, Counter>,
    maintenance_folded: Family<TableLabels, Counter>,
    mirror_steps: Family<OutcomeLabels, Counter>,
    mirror_changes: Family<TableLabels, Counter>,
    mirror_lag: Family<TableLabels, FloatGauge>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut d = Declare {
            registry: Registry::with_prefix("philotes"),
            declared: Vec::new(),
        };
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        d.add(
            "build_info",
            "Always 1; the version label is the running Philotes version",
            None,
            build,
        );
        let m = Metrics {
            buffer_depth: Family::default(),
            lag_bytes: Family::default(),
            lag_seconds: Family::default(),
            retained_wal: Family::default(),
            safe_wal: Family::default(),
            wal_status: Family::default(),
            source_connected: Family::default(),
            worker_leases: Family::default(),
            rows_ingested: Family::default(),
            rows_committed: Family::default(),
            commits: Family::default(),
            commit_duration: Family::new_with_constructor(duration_buckets),
            commit_rows: Family::new_with_constructor(rows_buckets),
            snapshot_rows: Family::default(),
            snapshot_running: Family::default(),
            dead_letters: Family::default(),
            skipped: Family::default(),
            table_stopped: Family::default(),
            retries: Family::default(),
            errors: Family::default(),
            maintenance_passes: Family::default(),
            maintenance_duration: Family::new_with_constructor(duration_buckets),
            maintenance_compacted: Family::default(),
            maintenance_expired: Family::default(),
            maintenance_deleted: Family::default(),
            maintenance_folded: Family::default(),
            mirror_steps: Family::default(),
            mirror_changes: Family::default(),
            mirror_lag: Family::default(),
            registry: Registry::default(),
            declared: Vec::new(),
        };
        let rows = || Unit::Other("rows".into());
        d.add(
            "buffer_depth",
            "Changes received from the source and not yet committed to Iceberg, in rows (held in memory by run; in the control database's buffer for ingest and workers)",
            None,
            m.buffer_depth.clone(),
        );
        d.add(
            "replication_lag",
            "WAL between the source's current position and the slot's confirmed position",
            Some(Unit::Bytes),
            m.lag_bytes.clone(),
        );
        d.add(
            "replication_lag",
            "Time between the source commit of the newest transaction committed to Iceberg and that Iceberg commit; 0 once everything received is committed",
            Some(Unit::Seconds),
            m.lag_seconds.clone(),
        );
        d.add(
            "slot_retained_wal",
            "WAL the source keeps for the replication slot (from its restart position)",
            Some(Unit::Bytes),
            m.retained_wal.clone(),
        );
        d.add(
            "slot_safe_wal",
            "WAL the source may still write before the slot is past max_slot_wal_keep_size and about to be invalidated (absent when the source keeps WAL without a limit)",
            Some(Unit::Bytes),
            m.safe_wal.clone(),
        );
        d.add(
            "slot_wal_status",
            "1 for the slot's current wal_status (reserved, extended, unreserved, lost), 0 for the others",
            None,
            m.wal_status.clone(),
        );
        d.add(
            "source_connected",
            "1 while the replication stream from the source is connected, 0 while reconnecting",
            None,
            m.source_connected.clone(),
        );
        d.add(
            "worker_leases",
            "Tables this worker holds the lease of (writes) now",
            None,
            m.worker_leases.clone(),
        );
        d.add(
            "ingested",
            "Changes received from the source (streamed and copied) per table",
            Some(rows()),
            m.rows_ingested.clone(),
        );
        d.add(
            "committed",
            "Changelog rows committed to Iceberg per table",
            Some(rows()),
            m.rows_committed.clone(),
        );
        d.add(
            "commits",
            "Iceberg commits per table",
            None,
            m.commits.clone(),
        );
        d.add(
            "commit_duration",
            "Time to write and commit one Iceberg commit of a table (closing its files, the catalog update, retries)",
            Some(Unit::Seconds),
            m.commit_duration.clone(),
        );
        d.add(
            "commit_size",
            "Changelog rows in one Iceberg commit",
            Some(rows()),
            m.commit_rows.clone(),
        );
        d.add(
            "snapshot_copied",
            "Rows copied by initial copies (and resyncs) per table",
            Some(rows()),
            m.snapshot_rows.clone(),
        );
        d.add(
            "snapshot_in_progress",
            "1 while the table's initial copy (or resync) runs",
            None,
            m.snapshot_running.clone(),
        );
        d.add(
            "dead_letters",
            "Changes that could not be converted and were kept as dead letters, per table",
            None,
            m.dead_letters.clone(),
        );
        d.add(
            "dead_letters_skipped",
            "Changes left out of the lake because an operator chose to skip them (`philotes dlq skip`), per table",
            None,
            m.skipped.clone(),
        );
        d.add(
            "table_stopped",
            "1 while the table is stopped by an error (its position is kept; the other tables go on)",
            None,
            m.table_stopped.clone(),
        );
        d.add(
            "retries",
            "Operations retried after a transient fault, by operation and error kind",
            None,
            m.retries.clone(),
        );
        d.add(
            "errors",
            "Errors that stopped a table or the role, by error kind",
            None,
            m.errors.clone(),
        );
        d.add(
            "maintenance_passes",
            "Maintenance passes over a table, by outcome (ok, failed)",
            None,
            m.maintenance_passes.clone(),
        );
        d.add(
            "maintenance_duration",
            "Time of one maintenance pass over a table",
            Some(Unit::Seconds),
            m.maintenance_duration.clone(),
        );
        d.add(
            "maintenance_files_compacted",
            "Small data files merged by compaction, per table",
            None,
            m.maintenance_compacted.clone(),
        );
        d.add(
            "maintenance_snapshots_expired",
            "Snapshots removed by expiry, per table",
            None,
            m.maintenance_expired.clone(),
        );
        d.add(
            "maintenance_files_deleted",
            "Files deleted by maintenance (of expired snapshots, and orphans), per table",
            None,
            m.maintenance_deleted.clone(),
        );
        d.add(
            "maintenance_changes_folded",
            "Changes older than changelog_retention folded into the table's base (one row per key), per table",
            None,
            m.maintenance_folded.clone(),
        );
        d.add(
            "mirror_steps",
            "Steps of a mirror table (the changelog's new changes applied in one commit), by outcome (ok, failed)",
            None,
            m.mirror_steps.clone(),
        );
        d.add(
            "mirror_changes_applied",
            "Changes of the changelog applied to its mirror table",
            None,
            m.mirror_changes.clone(),
        );
        d.add(
            "mirror_lag",
            "How long after the changelog committed its newest changes the mirror table had them too (at the mirror's last commit)",
            Some(Unit::Seconds),
            m.mirror_lag.clone(),
        );
        Metrics {
            registry: d.registry,
            declared: d.declared,
            ..m
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
static PIPELINE: OnceLock<String> = OnceLock::new();
/// The tables each pipeline has reported, so [`forget_pipeline`] can remove their gauges.
static TABLES: LazyLock<std::sync::Mutex<HashMap<String, BTreeSet<String>>>> =
    LazyLock::new(Default::default);

thread_local! {
    /// The pipeline of the threads that run it, in a process that runs several
    /// (`--managed`): it overrides the process's own.
    static THREAD_PIPELINE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Name the pipeline this process serves (the `pipeline` label of every metric). The first call
/// wins; until then the label is `philotes`. On a thread given its own pipeline
/// ([`set_thread_pipeline`]) only that pipeline's series are started.
pub fn set_pipeline(name: &str) {
    if THREAD_PIPELINE.with(|p| p.borrow().is_none()) {
        let _ = PIPELINE.set(name.to_string());
    }
    // Present from the start, so a scaler or an alert sees 0 rather than no series.
    buffer_depth(0);
    source_connected(false);
}

/// Label what this thread records with `name`: a managed role runs each pipeline on its own
/// threads (its runtime's, set with `on_thread_start`), so several pipelines in one process
/// each keep their own series.
pub fn set_thread_pipeline(name: &str) {
    THREAD_PIPELINE.with(|p| *p.borrow_mut() = Some(name.to_string()));
}

/// Remove the gauges of a pipeline this process no longer runs (stopped, deleted or moved to
/// another process), so a scaler summing `philotes_buffer_depth` or an alert on a stopped table
/// does not go on seeing its last values. Counters stay (they only stop rising).
pub fn forget_pipeline(name: &str) {
    let m = &*METRICS;
    let l = PipelineLabels {
        pipeline: name.to_string(),
    };
    m.buffer_depth.remove(&l);
    m.lag_bytes.remove(&l);
    m.lag_seconds.remove(&l);
    m.retained_wal.remove(&l);
    m.safe_wal.remove(&l);
    m.source_connected.remove(&l);
    m.worker_leases.remove(&l);
    for s in WAL_STATUSES {
        m.wal_status.remove(&StatusLabels {
            pipeline: name.to_string(),
            status: s.to_string(),
        });
    }
    let tables = TABLES
        .lock()
        .map(|mut t| t.remove(name).unwrap_or_default())
        .unwrap_or_default();
    for table in tables {
        let l = TableLabels {
            pipeline: name.to_string(),
            table,
        };
        m.snapshot_running.remove(&l);
        m.table_stopped.remove(&l);
    }
}

fn pipeline() -> String {
    THREAD_PIPELINE
        .with(|p| p.borrow().clone())
        .or_else(|| PIPELINE.get().cloned())
        .unwrap_or_else(|| "philotes".into())
}

fn p() -> PipelineLabels {
    PipelineLabels {
        pipeline: pipeline(),
    }
}

fn t(table: &str) -> TableLabels {
    TableLabels {
        pipeline: pipeline(),
        table: table.to_string(),
    }
}

/// Every metric in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &METRICS.registry);
    out
}

/// Every metric declared, whether it has a sample yet or not.
pub fn declared() -> Vec<Declared> {
    METRICS.declared.clone()
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics of one table, looked up once and kept by the code that writes the table (the
/// per-row calls are then one atomic add).
#[derive(Clone, Debug)]
pub struct TableMetrics {
    ingested: Counter,
    committed: Counter,
    commits: Counter,
    commit_duration: Histogram,
    commit_rows: Histogram,
    snapshot_rows: Counter,
    snapshot_running: Gauge,
    dead_letters: Counter,
    skipped: Counter,
    stopped: Gauge,
}

impl TableMetrics {
    /// `table` as `schema.table` (the source's name: low in cardinality, stable across runs).
    pub fn new(table: &str) -> TableMetrics {
        let m = &*METRICS;
        let l = t(table);
        if let Ok(mut t) = TABLES.lock() {
            t.entry(l.pipeline.clone())
                .or_default()
                .insert(table.to_string());
        }
        TableMetrics {
            ingested: m.rows_ingested.get_or_create_owned(&l),
            committed: m.rows_committed.get_or_create_owned(&l),
            commits: m.commits.get_or_create_owned(&l),
            commit_duration: m.commit_duration.get_or_create_owned(&l),
            commit_rows: m.commit_rows.get_or_create_owned(&l),
            snapshot_rows: m.snapshot_rows.get_or_create_owned(&l),
            snapshot_running: m.snapshot_running.get_or_create_owned(&l),
            dead_letters: m.dead_letters.get_or_create_owned(&l),
            skipped: m.skipped.get_or_create_owned(&l),
            stopped: m.table_stopped.get_or_create_owned(&l),
        }
    }

    /// `rows` more changes received from the source.
    pub fn ingested(&self, rows: u64) {
        self.ingested.inc_by(rows);
    }

    /// One Iceberg commit of `rows` changelog rows took `took`.
    pub fn committed(&self, rows: u64, took: Duration) {
        self.committed.inc_by(rows);
        self.commits.inc();
        self.commit_duration.observe(took.as_secs_f64());
        self.commit_rows.observe(rows as f64);
    }

    /// An initial copy started (true) or ended (false).
    pub fn copying(&self, running: bool) {
        self.snapshot_running.set(i64::from(running));
    }

    /// `rows` more rows copied.
    pub fn copied(&self, rows: u64) {
        self.snapshot_rows.inc_by(rows);
        self.ingested.inc_by(rows);
    }

    /// A change of this table was kept as a dead letter.
    pub fn dead_letter(&self) {
        self.dead_letters.inc();
    }

    /// A change of this table was left out, as an operator decided (`philotes dlq skip`).
    pub fn skipped(&self) {
        self.skipped.inc();
    }

    /// The table was stopped by an error of `kind`.
    pub fn stopped(&self, kind: ErrorKind) {
        self.stopped.set(1);
        error(kind);
    }
}

/// Rows received and not yet committed to Iceberg.
pub fn buffer_depth(rows: u64) {
    METRICS
        .buffer_depth
        .get_or_create(&p())
        .set(i64::try_from(rows).unwrap_or(i64::MAX));
}

/// The tables this worker writes now.
pub fn worker_leases(tables: usize) {
    METRICS
        .worker_leases
        .get_or_create(&p())
        .set(i64::try_from(tables).unwrap_or(i64::MAX));
}

/// The replication lag: WAL bytes behind the source's position, and seconds between the newest
/// committed transaction's source commit and now (0 when caught up). `None` leaves one as it is.
pub fn replication_lag(bytes: Option<i64>, seconds: Option<f64>) {
    if let Some(b) = bytes {
        METRICS.lag_bytes.get_or_create(&p()).set(b.max(0));
    }
    if let Some(s) = seconds {
        METRICS.lag_seconds.get_or_create(&p()).set(s.max(0.0));
    }
}

/// The slot's retained WAL, `wal_status` and the WAL it may still take before the source's
/// `max_slot_wal_keep_size` (`safe_bytes`; `None`: no limit), as the source reports them.
pub fn slot_status(retained_bytes: Option<i64>, wal_status: &str, safe_bytes: Option<i64>) {
    if let Some(b) = retained_bytes {
        METRICS.retained_wal.get_or_create(&p()).set(b.max(0));
    }
    match safe_bytes {
        Some(b) => {
            METRICS.safe_wal.get_or_create(&p()).set(b);
        }
        None => {
            METRICS.safe_wal.remove(&p());
        }
    }
    for s in WAL_STATUSES {
        let l = StatusLabels {
            pipeline: pipeline(),
            status: s.to_string(),
        };
        METRICS
            .wal_status
            .get_or_create(&l)
            .set(i64::from(s == wal_status));
    }
}

/// Whether the replication stream is connected.
pub fn source_connected(connected: bool) {
    METRICS
        .source_connected
        .get_or_create(&p())
        .set(i64::from(connected));
}

/// `operation` (a fixed word: `commit`, `schema-change`, `maintenance`, `source`) is tried again
/// after a fault of `kind`.
pub fn retry(operation: &'static str, kind: ErrorKind) {
    let l = RetryLabels {
        pipeline: pipeline(),
        operation: operation.to_string(),
        kind: kind.as_str().to_string(),
    };
    METRICS.retries.get_or_create(&l).inc();
}

/// An error of `kind` stopped a table or the role.
pub fn error(kind: ErrorKind) {
    let l = KindLabels {
        pipeline: pipeline(),
        kind: kind.as_str().to_string(),
    };
    METRICS.errors.get_or_create(&l).inc();
}

/// What one maintenance pass over a table did.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaintenancePass {
    pub ok: bool,
    pub took: Duration,
    pub files_compacted: u64,
    pub snapshots_expired: u64,
    pub files_deleted: u64,
    pub changes_folded: u64,
}

/// One maintenance pass over `table` (`namespace.table` in the lake) ended.
pub fn maintained(table: &str, pass: MaintenancePass) {
    let m = &*METRICS;
    let l = t(table);
    let outcome = OutcomeLabels {
        pipeline: pipeline(),
        table: table.to_string(),
        outcome: if pass.ok { "ok" } else { "failed" }.to_string(),
    };
    m.maintenance_passes.get_or_create(&outcome).inc();
    m.maintenance_duration
        .get_or_create(&l)
        .observe(pass.took.as_secs_f64());
    m.maintenance_compacted
        .get_or_create(&l)
        .inc_by(pass.files_compacted);
    m.maintenance_expired
        .get_or_create(&l)
        .inc_by(pass.snapshots_expired);
    m.maintenance_deleted
        .get_or_create(&l)
        .inc_by(pass.files_deleted);
    m.maintenance_folded
        .get_or_create(&l)
        .inc_by(pass.changes_folded);
}

/// A step of the mirror table `table` applied `changes` and committed `lag` after the
/// changelog had them.
pub fn mirrored(table: &str, changes: u64, lag: Duration) {
    let m = &*METRICS;
    let l = t(table);
    m.mirror_steps
        .get_or_create(&OutcomeLabels {
            pipeline: pipeline(),
            table: table.to_string(),
            outcome: "ok".to_string(),
        })
        .inc();
    m.mirror_changes.get_or_create(&l).inc_by(changes);
    m.mirror_lag.get_or_create(&l).set(lag.as_secs_f64());
}

/// A step of the mirror table `table` failed (the next one tries again).
pub fn mirror_failed(table: &str) {
    METRICS
        .mirror_steps
        .get_or_create(&OutcomeLabels {
            pipeline: pipeline(),
            table: table.to_string(),
            outcome: "failed".to_string(),
        })
        .inc();
}

#[cfg(test)]
mod tests;
