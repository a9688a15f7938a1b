//! Table maintenance, without Spark.
//!
//! A pipeline commits to every changed table each flush interval: 86,400 commits a day at 1 s.
//! Each commit adds a data file, a manifest and a snapshot, and Iceberg's metadata file lists
//! every snapshot, so without maintenance every commit costs more than the one before and
//! readers plan over ever more files. This crate does what Iceberg users run from Spark
//! (`rewrite_data_files`, `rewrite_manifests`, `expire_snapshots`, `remove_orphan_files`), in
//! one pass per table:
//!
//! 0. [`retention`] (when `changelog_retention` is set): changes older than it folded into one
//!    row per key, so history is bounded without losing the current state;
//! 1. [`rewrite`]: small data files merged into files of `compaction_target_size`, and all
//!    manifests rewritten into one, as a `replace` snapshot that carries the watermark forward;
//! 2. [`expire`]: snapshots past `snapshot_max_age` (beyond the newest `snapshot_keep_min`)
//!    removed, and the files only they reached deleted;
//! 3. [`orphans`]: files under the table's location that nothing references, older than
//!    `orphan_min_age`, deleted (old metadata files whatever their age).
//!
//! Every commit here is optimistic: built on the current snapshot and committed only if it is
//! still current, rebuilt otherwise. Streaming commits only add files, so they always win and
//! are never lost; maintenance yields. `philotes run` runs a pass every `maintenance_interval`
//! on its own task; `philotes maintain` runs one pass and exits. See
//! `docs/decisions/009-maintenance.md`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use iceberg::{NamespaceIdent, TableIdent};
use philotes_config::MaintenanceSettings;
use philotes_core::Result;
use philotes_sink_iceberg::Lake;
use philotes_sink_iceberg::catalog::{DELETE_AFTER_COMMIT, PREVIOUS_VERSIONS_MAX};
use philotes_sink_iceberg::table::SOURCE_KEY;

mod expire;
mod files;
mod orphans;
mod retention;
mod rewrite;
pub mod snapshot;

pub use expire::Expiry;
pub use orphans::Orphans;
pub use retention::Retention;
pub use rewrite::{MAINTENANCE_KEY, Rewrite};

use files::lake_error;

/// What one pass did to one table.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    pub retention: Retention,
    pub rewrite: Rewrite,
    pub expiry: Expiry,
    pub orphans: Orphans,
    /// Snapshots, and live data files of the current snapshot, after the pass.
    pub snapshots_after: usize,
    pub data_files_after: usize,
    pub seconds: f64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One maintenance pass over one table.
pub async fn maintain_table(
    lake: &Lake,
    ident: &TableIdent,
    opts: &MaintenanceSettings,
) -> Result<TableReport> {
    let started = Instant::now();
    let table = lake
        .catalog
        .load_table(ident)
        .await
        .map_err(|e| lake_error(format!("cannot load table {ident}"), e))?;
    let table = ensure_properties(lake, table).await?;
    let (table, retention) = match opts.changelog_retention {
        Some(keep) => retention::retain(lake, table, keep, opts.target_file_size, now_ms())
            .await
            .map_err(|e| e.with("step", "changelog retention"))?,
        None => (table, Retention::default()),
    };
    let step = Instant::now();
    let (table, mut rewrite) = rewrite::rewrite(lake, table, opts.target_file_size)
        .await
        .map_err(|e| e.with("step", "compaction"))?;
    rewrite.seconds = step.elapsed().as_secs_f64();
    let (table, expiry) = expire::expire(lake, table, opts, now_ms())
        .await
        .map_err(|e| e.with("step", "snapshot expiry"))?;
    let min_age = i64::try_from(opts.orphan_min_age.as_millis()).unwrap_or(i64::MAX);
    let orphans = orphans::clean(lake, &table, min_age, now_ms())
        .await
        .map_err(|e| e.with("step", "orphan cleanup"))?;
    let data_files_after = table
        .metadata()
        .current_snapshot()
        .and_then(|s| s.summary().additional_properties.get("total-data-files"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let report = TableReport {
        table: ident.to_string(),
        retention,
        rewrite,
        expiry,
        orphans,
        snapshots_after: table.metadata().snapshots().len(),
        data_files_after,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        table = %ident,
        compacted_files_in = report.rewrite.files_in,
        compacted_files_out = report.rewrite.files_out,
        compacted_bytes_in = report.rewrite.bytes_in,
        compacted_bytes_out = report.rewrite.bytes_out,
        manifests_before = report.rewrite.manifests_before,
        manifests_after = report.rewrite.manifests_after,
        snapshots_expired = report.expiry.snapshots_expired,
        snapshots_after = report.snapshots_after,
        expired_files_deleted = report.expiry.data_files_deleted
            + report.expiry.manifests_deleted
            + report.expiry.manifest_lists_deleted,
        orphans_deleted = report.orphans.orphans_deleted,
        orphan_bytes = report.orphans.orphan_bytes,
        old_metadata_deleted = report.orphans.metadata_files_deleted,
        seconds = format!("{:.2}", report.seconds),
        "maintenance pass"
    );
    if let Some(cut) = &report.retention.cut_lsn {
        tracing::info!(
            table = %ident,
            cut_lsn = %cut,
            changes_folded = report.retention.changes_folded,
            base_rows = report.retention.base_rows,
            files_in = report.retention.files_in,
            files_out = report.retention.files_out,
            bytes_in = report.retention.bytes_in,
            bytes_out = report.retention.bytes_out,
            "changelog retention folded the changes before the cut into the base"
        );
    }
    Ok(report)
}

/// Philotes tables keep a short metadata log and drop what falls off it (tables created before
/// this version lack these properties).
async fn ensure_properties(
    lake: &Lake,
    table: iceberg::table::Table,
) -> Result<iceberg::table::Table> {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let props = table.metadata().properties();
    if !props.contains_key(SOURCE_KEY)
        || (props.contains_key(DELETE_AFTER_COMMIT) && props.contains_key(PREVIOUS_VERSIONS_MAX))
    {
        return Ok(table);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = Transaction::new(&table);
        let tx = tx
            .update_table_properties()
            .set(DELETE_AFTER_COMMIT.to_string(), "true".to_string())
            .set(PREVIOUS_VERSIONS_MAX.to_string(), "10".to_string())
            .apply(tx)
            .map_err(|e| lake_error("cannot prepare a table property change", e))?;
        match tx.commit(lake.catalog.as_ref()).await {
            Ok(t) => return Ok(t),
            // Lost a race to a streaming commit: the transaction re-reads the table.
            Err(e) if e.kind() == iceberg::ErrorKind::CatalogCommitConflicts && attempt < 20 => {}
            Err(e) => return Err(lake_error("cannot set the table's metadata properties", e)),
        }
    }
}

/// Every Philotes changelog table in the catalog (tables with `philotes.source-table`), in
/// name order. Other tables in a shared catalog are never touched.
pub async fn philotes_tables(lake: &Lake) -> Result<Vec<TableIdent>> {
    let mut found: Vec<TableIdent> = Vec::new();
    let mut namespaces: Vec<NamespaceIdent> = lake
        .catalog
        .list_namespaces(None)
        .await
        .map_err(|e| lake_error("cannot list the catalog's namespaces", e))?;
    while let Some(ns) = namespaces.pop() {
        if let Ok(children) = lake.catalog.list_namespaces(Some(&ns)).await {
            namespaces.extend(children.into_iter().filter(|c| c != &ns));
        }
        let tables = lake
            .catalog
            .list_tables(&ns)
            .await
            .map_err(|e| lake_error(format!("cannot list the tables of {ns:?}"), e))?;
        for ident in tables {
            match lake.catalog.load_table(&ident).await {
                Ok(t) if t.metadata().properties().contains_key(SOURCE_KEY) => {
                    if !found.contains(&ident) {
                        found.push(ident);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(table = %ident, error = %e, "cannot load a table to see whether it is Philotes'");
                }
            }
        }
    }
    found.sort_by_key(|i| i.to_string());
    Ok(found)
}

/// One pass over `tables`, one after the other; a table that fails is reported and the others
/// go on.
pub async fn maintain(
    lake: &Lake,
    tables: &[TableIdent],
    opts: &MaintenanceSettings,
) -> Vec<(TableIdent, Result<TableReport>)> {
    let mut out = Vec::with_capacity(tables.len());
    for ident in tables {
        let started = Instant::now();
        let r = maintain_table(lake, ident, opts).await;
        let mut pass = philotes_telemetry::MaintenancePass {
            ok: r.is_ok(),
            took: started.elapsed(),
            ..Default::default()
        };
        match &r {
            Ok(report) => {
                pass.files_compacted = report.rewrite.files_in as u64;
                pass.snapshots_expired = report.expiry.snapshots_expired as u64;
                pass.files_deleted = (report.expiry.data_files_deleted
                    + report.expiry.manifests_deleted
                    + report.expiry.manifest_lists_deleted
                    + report.orphans.orphans_deleted
                    + report.orphans.metadata_files_deleted)
                    as u64;
                pass.changes_folded = report.retention.changes_folded;
            }
            Err(e) => {
                tracing::warn!(table = %ident, error = %e, "maintenance pass failed; the next pass tries again");
            }
        }
        philotes_telemetry::maintained(&ident.to_string(), pass);
        out.push((ident.clone(), r));
    }
    out
}

/// The tables a running pipeline writes, which its maintenance task maintains.
#[derive(Clone, Default)]
pub struct Maintained {
    tables: Arc<Mutex<Vec<TableIdent>>>,
}

impl Maintained {
    pub fn add(&self, ident: &TableIdent) {
        if let Ok(mut t) = self.tables.lock()
            && !t.contains(ident)
        {
            t.push(ident.clone());
        }
    }

    /// The tables handed in so far.
    pub fn tables(&self) -> Vec<TableIdent> {
        self.tables.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Maintain `tables` every `opts.interval` until the returned handle is dropped or aborted.
/// Runs on its own task, so streaming never waits for it.
pub fn spawn(lake: Lake, tables: Maintained, opts: MaintenanceSettings) -> Background {
    warn_if_risky(&opts);
    let handle = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + opts.interval, opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let list = tables.tables();
            let _ = maintain(&lake, &list, &opts).await;
        }
    });
    Background { handle }
}

/// A short `orphan_min_age` next to a running pipeline deletes files it has written but not
/// committed yet; say so.
pub fn warn_if_risky(opts: &MaintenanceSettings) {
    if opts.orphan_min_age < std::time::Duration::from_secs(3600) {
        tracing::warn!(
            orphan_min_age = ?opts.orphan_min_age,
            "orphan_min_age is under an hour: while a pipeline writes to these tables, maintenance may delete files of a transaction or copy not committed yet, and the table then references a missing file. Keep it above the longest write (the default is 3d)"
        );
    }
}

/// The background maintenance task; stops when dropped.
pub struct Background {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
