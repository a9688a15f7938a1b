//! Pieces of a snapshot built by hand, shared by the commits the `iceberg` crate cannot make
//! (maintenance's replace snapshots, the mirror tables' row deltas).

use iceberg::spec::{ManifestFile, ManifestListWriter};
use iceberg::table::Table;
use philotes_core::Result;

use crate::files::lake_error;

/// A snapshot id no snapshot of `table` has.
pub fn unique_snapshot_id(table: &Table) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) as i64).checked_abs().unwrap_or(1);
        if id != 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Write the manifest list of the snapshot `snapshot_id` (child of `parent`, sequence number
/// `seq`) naming `manifests`; returns its path.
pub async fn write_manifest_list(
    table: &Table,
    snapshot_id: i64,
    parent: Option<i64>,
    seq: i64,
    commit_id: uuid::Uuid,
    manifests: Vec<ManifestFile>,
) -> Result<String> {
    let location = table.metadata().location().trim_end_matches('/');
    let path = format!("{location}/metadata/snap-{snapshot_id}-1-{commit_id}.avro");
    let out = table
        .file_io()
        .new_output(&path)
        .map_err(|e| lake_error("cannot write a manifest list", e))?
        .writer()
        .await
        .map_err(|e| lake_error("cannot write a manifest list", e))?;
    let mut list = ManifestListWriter::v2(out, snapshot_id, parent, seq);
    list.add_manifests(manifests.into_iter())
        .map_err(|e| lake_error("cannot write a manifest list", e))?;
    list.close()
        .await
        .map_err(|e| lake_error("cannot write a manifest list", e))?;
    Ok(path)
}
