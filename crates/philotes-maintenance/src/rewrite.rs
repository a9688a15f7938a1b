//! Compaction and manifest rewrite, committed as one Iceberg `replace` snapshot.
//!
//! The `iceberg` crate has no rewrite action, so the snapshot is built here: one manifest
//! (a few for very large tables) lists every live file — the compacted outputs as added, the
//! inputs as deleted, everything else as existing with its original snapshot and sequence
//! numbers — and a manifest list names it. A streaming commit only ever adds files, so when one
//! lands first the commit is simply rebuilt on the new current snapshot: the inputs are still
//! live, the outputs are still right, only the manifest is written again. The snapshot carries
//! the table's watermark forward (decision 002), because expiry later removes the snapshots that
//! recorded it.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, ManifestEntry, ManifestWriterBuilder, Operation,
    Snapshot, Summary,
};
use iceberg::table::Table;
use iceberg::writer::IcebergWriter;
use philotes_core::{Error, ErrorKind, Result};
use philotes_sink_iceberg::table::{SNAPSHOT_KEY, WATERMARK_KEY, data_file_writer, read_progress};
use philotes_sink_iceberg::{Guard, Lake, commit_refused};

use crate::files::{Live, ManifestCache, delete_all, lake_error, live, normalize};
use crate::snapshot::{unique_snapshot_id, write_manifest_list};

/// Files under this share of the target size are compacted.
const SMALL_SHARE: f64 = 0.75;
/// Compaction waits for this many small files (fewer are not worth a rewrite).
pub(crate) const MIN_INPUT_FILES: usize = 5;
/// Above this many manifests, the manifests are rewritten even when no file is compacted.
pub(crate) const MAX_MANIFESTS: usize = 8;
/// Entries per manifest the rewrite writes.
const ENTRIES_PER_MANIFEST: usize = 50_000;
/// How often a rewrite that lost a race to another commit is rebuilt.
const ATTEMPTS: u32 = 20;
/// Summary key naming what a maintenance snapshot did.
pub const MAINTENANCE_KEY: &str = "philotes.maintenance";

/// What a rewrite did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Rewrite {
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    pub manifests_before: usize,
    pub manifests_after: usize,
    /// Time of this step: reading the manifests, the rewrite and its commit.
    pub seconds: f64,
}

/// Groups of small files to merge, each about `target` bytes, in commit order.
pub(crate) fn plan_bins(entries: &[ManifestEntry], target: u64) -> Vec<Vec<&ManifestEntry>> {
    let limit = (target as f64 * SMALL_SHARE) as u64;
    let mut small: Vec<&ManifestEntry> = entries
        .iter()
        .filter(|e| e.file_size_in_bytes() < limit)
        .collect();
    if small.len() < MIN_INPUT_FILES {
        return Vec::new();
    }
    small.sort_by(|a, b| {
        (a.sequence_number(), a.file_path()).cmp(&(b.sequence_number(), b.file_path()))
    });
    let mut bins: Vec<Vec<&ManifestEntry>> = Vec::new();
    let mut bin: Vec<&ManifestEntry> = Vec::new();
    let mut size = 0u64;
    for e in small {
        if !bin.is_empty() && size + e.file_size_in_bytes() > target {
            bins.push(std::mem::take(&mut bin));
            size = 0;
        }
        size += e.file_size_in_bytes();
        bin.push(e);
    }
    bins.push(bin);
    bins.retain(|b| b.len() >= 2);
    bins
}

/// Compact the small files of `table`'s current snapshot and rewrite its manifests, when either
/// is due. Returns the table as it is afterwards.
pub(crate) async fn rewrite(lake: &Lake, table: Table, target: u64) -> Result<(Table, Rewrite)> {
    let Some(snapshot) = table.metadata().current_snapshot().cloned() else {
        return Ok((table, Rewrite::default()));
    };
    if table.metadata().format_version() != FormatVersion::V2 {
        return Ok((table, Rewrite::default()));
    }
    let mut cache = ManifestCache::new();
    let current = live(&table, &snapshot, &mut cache).await?;
    if let Some(why) = &current.not_rewritable {
        if why == crate::files::MIRROR_NOT_REWRITABLE {
            tracing::debug!(table = %table.identifier(), "not compacting: {why}");
        } else {
            tracing::info!(table = %table.identifier(), "not compacting: {why}");
        }
        return Ok((table, Rewrite::default()));
    }
    let bins = plan_bins(&current.entries, target);
    let mut report = Rewrite {
        manifests_before: current.manifests.len(),
        ..Rewrite::default()
    };
    if bins.is_empty() && current.manifests.len() <= MAX_MANIFESTS {
        report.manifests_after = report.manifests_before;
        return Ok((table, report));
    }
    let mut removed: HashMap<String, ManifestEntry> = HashMap::new();
    let mut added: Vec<DataFile> = Vec::new();
    for bin in &bins {
        let paths: HashSet<String> = bin.iter().map(|e| normalize(e.file_path())).collect();
        let out = match compact(&table, snapshot.snapshot_id(), &paths, target).await {
            Ok(out) => out,
            Err(e) => {
                delete_files(&table, &added).await;
                return Err(e);
            }
        };
        let rows_in: u64 = bin.iter().map(|e| e.record_count()).sum();
        let rows_out: u64 = out.iter().map(|f| f.record_count()).sum();
        if rows_in != rows_out {
            delete_files(&table, &added).await;
            delete_files(&table, &out).await;
            return Err(Error::new(
                ErrorKind::Internal,
                format!("compaction read {rows_out} rows from files that hold {rows_in}; nothing was committed"),
            )
            .with("table", table.identifier()));
        }
        report.files_in += bin.len();
        report.bytes_in += bin.iter().map(|e| e.file_size_in_bytes()).sum::<u64>();
        report.rows += rows_in;
        report.files_out += out.len();
        report.bytes_out += out.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
        for e in bin {
            removed.insert(normalize(e.file_path()), (*e).clone());
        }
        added.extend(out);
    }
    let what = if removed.is_empty() {
        "rewrite-manifests"
    } else {
        "compaction"
    };
    let change = Replace {
        removed: &removed,
        added: &added,
        what,
        properties: HashMap::new(),
    };
    match commit(lake, table.clone(), current, &mut cache, &change).await {
        Ok((t, manifests)) => {
            report.manifests_after = manifests;
            Ok((t, report))
        }
        Err(e) => {
            // Certainly not committed: nothing references the outputs. Otherwise the commit
            // may have landed, and orphan cleanup removes them later if it did not.
            if commit_refused(&e) {
                delete_files(&table, &added).await;
            }
            Err(e)
        }
    }
}

pub(crate) async fn delete_files(table: &Table, files: &[DataFile]) {
    let paths = files.iter().map(|f| f.file_path().to_string()).collect();
    delete_all(table, paths).await;
}

/// Read the files `paths` of `snapshot_id` (in the table's current schema) and write them
/// again as files of about `target` bytes.
async fn compact(
    table: &Table,
    snapshot_id: i64,
    paths: &HashSet<String>,
    target: u64,
) -> Result<Vec<DataFile>> {
    let mut batches = read_files(table, snapshot_id, paths).await?;
    let target = usize::try_from(target).unwrap_or(usize::MAX);
    let mut writer = data_file_writer(table, target).await?;
    // Decoding on a task of its own, so it runs on one core while this one encodes: a rewrite
    // is half reading, half writing. A few batches in flight keep the memory small.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let reader = tokio::spawn(async move {
        while let Some(batch) = batches.next().await {
            let failed = batch.is_err();
            if tx.send(batch).await.is_err() || failed {
                break;
            }
        }
    });
    let written = async {
        while let Some(batch) = rx.recv().await {
            let batch = batch.map_err(|e| lake_error("cannot read a file to compact", e))?;
            writer
                .write(batch)
                .await
                .map_err(|e| lake_error("cannot write a compacted file", e))?;
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(rx);
    reader.abort();
    let closed = writer
        .close()
        .await
        .map_err(|e| lake_error("cannot finish a compacted file", e));
    match (written, closed) {
        (Ok(()), closed) => closed,
        (Err(e), Ok(out)) => {
            delete_files(table, &out).await;
            Err(e)
        }
        (Err(e), Err(_)) => Err(e),
    }
}

/// The rows of the data files `paths` of `snapshot_id`, one file after the other (memory
/// stays at one row group, order stays commit order).
pub(crate) async fn read_files(
    table: &Table,
    snapshot_id: i64,
    paths: &HashSet<String>,
) -> Result<iceberg::scan::ArrowRecordBatchStream> {
    let scan = table
        .scan()
        .snapshot_id(snapshot_id)
        .select_all()
        .build()
        .map_err(|e| lake_error("cannot plan the compaction's read", e))?;
    let tasks = scan
        .plan_files()
        .await
        .map_err(|e| lake_error("cannot plan the compaction's read", e))?;
    let wanted = paths.clone();
    let tasks = tasks.try_filter(move |t| {
        futures::future::ready(wanted.contains(&normalize(&t.data_file_path)))
    });
    Ok(table
        .reader_builder()
        .with_batch_size(8192)
        .with_data_file_concurrency_limit(1)
        .build()
        .read(Box::pin(tasks))
        .map_err(|e| lake_error("cannot read the files to compact", e))?
        .stream())
}

/// What a replace snapshot does: files out, files in, and why.
pub(crate) struct Replace<'a> {
    /// The data files it removes, by normalized path.
    pub removed: &'a HashMap<String, ManifestEntry>,
    pub added: &'a [DataFile],
    /// The snapshot summary's [`MAINTENANCE_KEY`].
    pub what: &'static str,
    /// Table properties set in the same commit.
    pub properties: HashMap<String, String>,
}

/// Commit the replace snapshot: every live file of the current snapshot but `removed`, plus
/// `added`. Rebuilt on the newest snapshot as long as streaming commits land first.
pub(crate) async fn commit(
    lake: &Lake,
    mut table: Table,
    mut current: Live,
    cache: &mut ManifestCache,
    change: &Replace<'_>,
) -> Result<(Table, usize)> {
    let removed = change.removed;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(base) = table.metadata().current_snapshot().cloned() else {
            return Err(Error::new(
                ErrorKind::Conflict,
                "the table lost its snapshots",
            ));
        };
        let alive: HashSet<String> = current
            .entries
            .iter()
            .map(|e| normalize(e.file_path()))
            .collect();
        if let Some(gone) = removed.keys().find(|p| !alive.contains(*p)) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{gone} was removed by another commit (a second maintenance job?); this pass leaves the table as it is"),
            )
            .with("table", table.identifier()));
        }
        if let Some(why) = &current.not_rewritable {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("cannot rewrite: {why}"),
            ));
        }
        let (built, written, manifests) = build_snapshot(&table, &base, &current, change).await?;
        match lake
            .commit_metadata(&table, built, Guard::MainSnapshot)
            .await
        {
            Ok(t) => return Ok((t, manifests)),
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < ATTEMPTS => {
                philotes_telemetry::retry("maintenance", ErrorKind::Conflict);
                crate::files::jitter(attempt).await;
                delete_all(&table, written).await;
                table = lake
                    .catalog
                    .load_table(table.identifier())
                    .await
                    .map_err(|e| lake_error("cannot load the table", e))?;
                let Some(s) = table.metadata().current_snapshot().cloned() else {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "the table lost its snapshots",
                    ));
                };
                current = live(&table, &s, cache).await?;
            }
            Err(e) => {
                if commit_refused(&e) {
                    delete_all(&table, written).await;
                }
                return Err(e);
            }
        }
    }
}

/// The metadata of the replace snapshot, the files written for it, and its manifest count.
async fn build_snapshot(
    table: &Table,
    base: &iceberg::spec::SnapshotRef,
    current: &Live,
    change: &Replace<'_>,
) -> Result<(iceberg::spec::TableMetadataBuildResult, Vec<String>, usize)> {
    let (removed, added) = (change.removed, change.added);
    let md = table.metadata();
    let snapshot_id = unique_snapshot_id(table);
    let seq = md.next_sequence_number();
    let io = table.file_io();
    let location = md.location().trim_end_matches('/');
    let commit_id = uuid::Uuid::new_v4();
    let spec = md.default_partition_spec().as_ref().clone();
    let schema = md.current_schema().clone();
    let mut written = Vec::new();
    let mut manifests = Vec::new();

    // Existing files first (commit order), then the deleted inputs, then the outputs.
    let kept: Vec<&ManifestEntry> = current
        .entries
        .iter()
        .filter(|e| !removed.contains_key(&normalize(e.file_path())))
        .collect();
    enum Item<'a> {
        Existing(&'a ManifestEntry),
        Deleted(&'a ManifestEntry),
        Added(&'a DataFile),
    }
    let items: Vec<Item> = kept
        .iter()
        .map(|e| Item::Existing(e))
        .chain(removed.values().map(Item::Deleted))
        .chain(added.iter().map(Item::Added))
        .collect();
    let missing_seq = || {
        Error::new(
            ErrorKind::Internal,
            "a manifest entry has no sequence number; not rewriting",
        )
    };
    for (n, chunk) in items.chunks(ENTRIES_PER_MANIFEST).enumerate() {
        let path = format!("{location}/metadata/{commit_id}-m{n}.avro");
        let out = io
            .new_output(&path)
            .map_err(|e| lake_error("cannot write a manifest", e))?;
        let mut w =
            ManifestWriterBuilder::new(out, Some(snapshot_id), schema.clone(), spec.clone())
                .build_v2_data();
        for item in chunk {
            let r = match item {
                Item::Existing(e) => w.add_existing_file(
                    e.data_file().clone(),
                    e.snapshot_id().ok_or_else(missing_seq)?,
                    e.sequence_number().ok_or_else(missing_seq)?,
                    Some(e.file_sequence_number.ok_or_else(missing_seq)?),
                ),
                Item::Deleted(e) => w.add_delete_file(
                    e.data_file().clone(),
                    e.sequence_number().ok_or_else(missing_seq)?,
                    Some(e.file_sequence_number.ok_or_else(missing_seq)?),
                ),
                // Inherits the new snapshot's sequence number.
                Item::Added(f) => w.add_file((*f).clone(), -1),
            };
            r.map_err(|e| lake_error("cannot write a manifest entry", e))?;
        }
        written.push(path);
        manifests.push(
            w.write_manifest_file()
                .await
                .map_err(|e| lake_error("cannot write a manifest", e))?,
        );
    }
    let count = manifests.len();
    let list_path = write_manifest_list(
        table,
        snapshot_id,
        Some(base.snapshot_id()),
        seq,
        commit_id,
        manifests,
    )
    .await?;
    written.push(list_path.clone());

    let summary = Summary {
        operation: Operation::Replace,
        additional_properties: summary_properties(table, &kept, change)?,
    };
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(base.snapshot_id()))
        .with_sequence_number(seq)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(list_path)
        .with_summary(summary)
        .with_schema_id(md.current_schema_id())
        .build();
    let mut builder = md
        .clone()
        .into_builder(table.metadata_location().map(str::to_string))
        // Keeps the retention settings of `main`.
        .set_branch_snapshot(snapshot, MAIN_BRANCH)
        .map_err(|e| lake_error("cannot build the replace snapshot", e))?;
    if !change.properties.is_empty() {
        builder = builder
            .set_properties(change.properties.clone())
            .map_err(|e| lake_error("cannot set the table's properties", e))?;
    }
    let built = builder
        .build()
        .map_err(|e| lake_error("cannot build the replace snapshot", e))?;
    Ok((built, written, count))
}

/// Iceberg's summary fields for the replace snapshot, and the table's progress carried forward.
fn summary_properties(
    table: &Table,
    kept: &[&ManifestEntry],
    change: &Replace<'_>,
) -> Result<HashMap<String, String>> {
    let (removed, added) = (change.removed, change.added);
    let mut p = HashMap::new();
    let progress = read_progress(table)?;
    if let Some(w) = progress.watermark {
        p.insert(WATERMARK_KEY.to_string(), w.to_string());
        p.insert(
            SNAPSHOT_KEY.to_string(),
            progress
                .snapshot_lsn
                .map(|l| l.to_string())
                .unwrap_or_default(),
        );
    }
    p.insert(MAINTENANCE_KEY.to_string(), change.what.to_string());
    let sum = |it: &mut dyn Iterator<Item = (u64, u64)>| {
        it.fold((0u64, 0u64), |(r, b), (r2, b2)| (r + r2, b + b2))
    };
    let (added_rows, added_bytes) = sum(&mut added
        .iter()
        .map(|f| (f.record_count(), f.file_size_in_bytes())));
    let (removed_rows, removed_bytes) = sum(&mut removed
        .values()
        .map(|e| (e.record_count(), e.file_size_in_bytes())));
    let (kept_rows, kept_bytes) = sum(&mut kept
        .iter()
        .map(|e| (e.record_count(), e.file_size_in_bytes())));
    for (k, v) in [
        ("added-data-files", added.len() as u64),
        ("deleted-data-files", removed.len() as u64),
        ("added-records", added_rows),
        ("deleted-records", removed_rows),
        ("added-files-size", added_bytes),
        ("removed-files-size", removed_bytes),
        ("total-records", kept_rows + added_rows),
        ("total-files-size", kept_bytes + added_bytes),
        ("total-data-files", (kept.len() + added.len()) as u64),
        ("total-delete-files", 0),
        ("total-position-deletes", 0),
        ("total-equality-deletes", 0),
    ] {
        if v > 0 || k.starts_with("total-") {
            p.insert(k.to_string(), v.to_string());
        }
    }
    Ok(p)
}
