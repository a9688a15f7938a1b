//! Orphan cleanup: files under a table's location that nothing references.
//!
//! They come from writes that never committed (a crash mid-copy, a commit that lost its race),
//! from expiries interrupted between the commit and the deletes, and from metadata files that
//! fell off the metadata log. The location is listed *before* the table is loaded, so every
//! listed file that was committed by then is reachable from the loaded metadata. A file written
//! but not yet committed — an open Parquet file of a streaming transaction or of a copy that
//! runs for hours — looks exactly like an orphan; only its age tells them apart, hence
//! `orphan_min_age`. Metadata files older than the oldest one the metadata log names are never
//! read again and go whatever their age.

use std::collections::HashSet;

use iceberg::table::Table;
use philotes_core::Result;
use philotes_sink_iceberg::Lake;

use crate::files::{delete_all, lake_error, normalize, reach};

/// What orphan cleanup did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Orphans {
    pub files_seen: usize,
    pub orphans_deleted: usize,
    pub orphan_bytes: u64,
    pub metadata_files_deleted: usize,
    /// Unreferenced files left because they are younger than `orphan_min_age`.
    pub young_left: usize,
}

/// The version number of a `00042-<uuid>.metadata.json` file.
fn metadata_version(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    if !name.ends_with(".metadata.json") {
        return None;
    }
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || name.as_bytes().get(digits.len()) != Some(&b'-') {
        return None;
    }
    digits.parse().ok()
}

pub(crate) async fn clean(
    lake: &Lake,
    table: &Table,
    min_age_ms: i64,
    now_ms: i64,
) -> Result<Orphans> {
    let location = table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    let listed = lake.store.list(&location).await?;
    // Loaded after the listing: see the module docs.
    let table = lake
        .catalog
        .load_table(table.identifier())
        .await
        .map_err(|e| lake_error("cannot load the table", e))?;
    let md = table.metadata();
    let snapshots: Vec<_> = md.snapshots().cloned().collect();
    let r = reach(&table, &snapshots).await?;
    let mut referenced: HashSet<String> = r.all();
    let mut logged: Vec<&str> = md
        .metadata_log()
        .iter()
        .map(|m| m.metadata_file.as_str())
        .collect();
    if let Some(current) = table.metadata_location() {
        logged.push(current);
    }
    referenced.extend(logged.iter().map(|p| normalize(p)));
    referenced.extend(md.statistics_iter().map(|s| normalize(&s.statistics_path)));
    referenced.extend(
        md.partition_statistics_iter()
            .map(|s| normalize(&s.statistics_path)),
    );
    let oldest_logged = logged.iter().filter_map(|p| metadata_version(p)).min();
    // A path in a form we cannot compare with the listing could be a live file we would take
    // for an orphan: then leave the table's files alone.
    if let Some(odd) = referenced
        .iter()
        .find(|p| !(p.starts_with("file://") || p.starts_with("s3://")))
    {
        tracing::warn!(table = %table.identifier(), path = %odd, "not cleaning orphan files: the table references a location that is neither file:// nor s3://");
        return Ok(Orphans::default());
    }

    let mut report = Orphans {
        files_seen: listed.len(),
        ..Orphans::default()
    };
    let mut old_metadata = Vec::new();
    let mut orphans = Vec::new();
    for f in listed {
        let path = normalize(&f.location);
        if referenced.contains(&path) {
            continue;
        }
        let superseded = match (metadata_version(&path), oldest_logged) {
            (Some(v), Some(oldest)) => v < oldest,
            _ => false,
        };
        if superseded {
            old_metadata.push(f.location);
        } else if now_ms - f.modified_ms >= min_age_ms {
            report.orphan_bytes += f.size;
            orphans.push(f.location);
        } else {
            report.young_left += 1;
        }
    }
    report.metadata_files_deleted = delete_all(&table, old_metadata).await;
    report.orphans_deleted = delete_all(&table, orphans).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::metadata_version;

    #[test]
    fn metadata_versions() {
        assert_eq!(
            metadata_version("file:///w/t/metadata/00042-6b2c-4f.metadata.json"),
            Some(42)
        );
        assert_eq!(metadata_version("s3://b/t/metadata/snap-1-1-x.avro"), None);
        assert_eq!(
            metadata_version("s3://b/t/metadata/6b2c.metadata.json"),
            None
        );
    }
}
