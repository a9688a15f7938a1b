//! Snapshot expiry, and the files only expired snapshots reached.
//!
//! Every commit adds a snapshot to the table's metadata file, which every later commit reads
//! and writes again: without expiry a table's commit cost grows with its age. A snapshot is
//! kept when it is younger than `snapshot_max_age`, among the newest `snapshot_keep_min`
//! ancestors of the current one, named by a branch or tag, or the newest one that records the
//! table's watermark (so the exactly-once position can never be lost, even if another engine
//! committed after Philotes). `philotes sql --as-of` filters rows by LSN and needs no old
//! snapshot; other engines' snapshot time travel reaches back `snapshot_max_age`.
//!
//! Files are deleted only after the expiry is committed, and only those no retained snapshot
//! reaches. A new commit landing meanwhile only adds files, so it cannot make a deleted file
//! live again. A crash in between leaves unreferenced files for orphan cleanup.

use std::collections::{HashMap, HashSet};

use iceberg::spec::SnapshotRef;
use iceberg::table::Table;
use philotes_config::MaintenanceSettings;
use philotes_core::{Error, ErrorKind, Result};
use philotes_sink_iceberg::table::WATERMARK_KEY;
use philotes_sink_iceberg::{Guard, Lake};

use crate::files::{delete_all, lake_error, reach};

const ATTEMPTS: u32 = 20;

/// What an expiry did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Expiry {
    pub snapshots_before: usize,
    pub snapshots_expired: usize,
    pub data_files_deleted: usize,
    pub manifests_deleted: usize,
    pub manifest_lists_deleted: usize,
    /// The catalog does not let Philotes remove snapshots (some REST catalogs expire them
    /// themselves): what it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_by_catalog: Option<String>,
}

/// Snapshot ids named by a branch or tag (the crate has no accessor for the refs).
fn ref_targets(table: &Table) -> Result<HashSet<i64>> {
    let json = serde_json::to_value(table.metadata()).map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot read the table's refs").with_source(e)
    })?;
    let mut ids = HashSet::new();
    if let Some(refs) = json.get("refs").and_then(|r| r.as_object()) {
        for r in refs.values() {
            if let Some(id) = r.get("snapshot-id").and_then(|v| v.as_i64()) {
                ids.insert(id);
            }
        }
    }
    Ok(ids)
}

/// The snapshots to expire now.
pub(crate) fn choose(
    table: &Table,
    opts: &MaintenanceSettings,
    now_ms: i64,
    refs: &HashSet<i64>,
) -> Vec<i64> {
    let md = table.metadata();
    let mut keep: HashSet<i64> = refs.clone();
    let cutoff = now_ms - i64::try_from(opts.snapshot_max_age.as_millis()).unwrap_or(i64::MAX);
    // The newest ancestors of the current snapshot, and the newest with a watermark.
    let mut at = md.current_snapshot().cloned();
    let mut n = 0usize;
    let mut watermark_kept = false;
    while let Some(s) = at {
        // Every ancestor down to the newest watermark snapshot: `read_progress` walks that
        // chain, so a gap in it would lose the table's position.
        if n < opts.snapshot_keep_min || !watermark_kept {
            keep.insert(s.snapshot_id());
        }
        if !watermark_kept
            && s.summary()
                .additional_properties
                .contains_key(WATERMARK_KEY)
        {
            keep.insert(s.snapshot_id());
            watermark_kept = true;
        }
        n += 1;
        if n >= opts.snapshot_keep_min && watermark_kept {
            break;
        }
        at = s
            .parent_snapshot_id()
            .and_then(|id| md.snapshot_by_id(id).cloned());
    }
    if let Some(id) = md.current_snapshot_id() {
        keep.insert(id);
    }
    let mut expire: Vec<i64> = md
        .snapshots()
        .filter(|s| !keep.contains(&s.snapshot_id()) && s.timestamp_ms() < cutoff)
        .map(|s| s.snapshot_id())
        .collect();
    expire.sort_unstable();
    expire
}

/// Expire what `opts` says may go and delete the files only those snapshots reached.
pub(crate) async fn expire(
    lake: &Lake,
    mut table: Table,
    opts: &MaintenanceSettings,
    now_ms: i64,
) -> Result<(Table, Expiry)> {
    let mut report = Expiry {
        snapshots_before: table.metadata().snapshots().len(),
        ..Expiry::default()
    };
    let mut attempt = 0;
    let (committed, gone) = loop {
        attempt += 1;
        let refs = ref_targets(&table)?;
        let ids = choose(&table, opts, now_ms, &refs);
        if ids.is_empty() {
            return Ok((table, report));
        }
        let gone: Vec<SnapshotRef> = ids
            .iter()
            .filter_map(|id| table.metadata().snapshot_by_id(*id).cloned())
            .collect();
        let mut builder = table
            .metadata()
            .clone()
            .into_builder(table.metadata_location().map(str::to_string))
            .remove_snapshots(&ids);
        for id in &ids {
            builder = builder
                .remove_statistics(*id)
                .remove_partition_statistics(*id);
        }
        let built = builder
            .build()
            .map_err(|e| lake_error("cannot build the snapshot expiry", e))?;
        match lake
            .commit_metadata(&table, built, Guard::MainSnapshot)
            .await
        {
            Ok(t) => break (t, gone),
            Err(e)
                if matches!(
                    e.context("http_status"),
                    Some("403") | Some("405") | Some("501")
                ) =>
            {
                tracing::warn!(table = %table.identifier(), error = %e, "the catalog does not let Philotes expire snapshots; expire them with the catalog's own tool (the rest of maintenance goes on)");
                report.refused_by_catalog = Some(e.to_string());
                return Ok((table, report));
            }
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < ATTEMPTS => {
                crate::files::jitter(attempt).await;
                table = lake
                    .catalog
                    .load_table(table.identifier())
                    .await
                    .map_err(|e| lake_error("cannot load the table", e))?;
            }
            Err(e) => return Err(e),
        }
    };
    report.snapshots_expired = gone.len();

    let retained: Vec<SnapshotRef> = committed.metadata().snapshots().cloned().collect();
    let keep = reach(&committed, &retained).await?;
    let lost = reach(&committed, &gone).await?;
    // A file a retained manifest lists as deleted is alive in no retained snapshot: it goes.
    let only_lost = |lost: &HashMap<String, String>, kept: &HashMap<String, String>| {
        lost.iter()
            .filter(|(k, _)| !kept.contains_key(*k))
            .map(|(_, raw)| raw.clone())
            .collect::<Vec<String>>()
    };
    let data = only_lost(&lost.named, &keep.alive);
    let manifests = only_lost(&lost.manifests, &keep.manifests);
    let lists = only_lost(&lost.manifest_lists, &keep.manifest_lists);
    report.data_files_deleted = delete_all(&committed, data).await;
    report.manifests_deleted = delete_all(&committed, manifests).await;
    report.manifest_lists_deleted = delete_all(&committed, lists).await;
    Ok((committed, report))
}
