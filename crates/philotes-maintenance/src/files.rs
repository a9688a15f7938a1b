//! What a table's snapshots reference: manifest lists, manifests and data files.
//!
//! Iceberg keeps no index of which files are in use; it has to be read from the snapshots.
//! Every maintenance step starts here: compaction needs the live data files of the current
//! snapshot, expiry and orphan cleanup need every file any retained snapshot can reach.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{ManifestContentType, ManifestEntry, ManifestFile, SnapshotRef};
use iceberg::table::Table;
use philotes_core::{Error, ErrorKind, Result};

/// Manifests and manifest lists read at once.
pub(crate) const READ_CONCURRENCY: usize = 16;

pub(crate) fn lake_error(what: impl Into<String>, e: iceberg::Error) -> Error {
    Error::new(ErrorKind::Sink, what).with_source(e)
}

/// A location as one string per file: one spelling per scheme (`file:/x`, `file:///x` and a
/// bare `/x` are the same file; `s3a://` and `s3n://` are `s3://`), repeated slashes after it
/// collapsed (a table location with a trailing slash makes `…//data/…` paths). Referenced and
/// listed files are compared in this form, so two spellings of one file never make a live file
/// look like an orphan.
pub(crate) fn normalize(path: &str) -> String {
    let (scheme, rest) = if let Some(r) = path.strip_prefix("file:") {
        ("file://", format!("/{}", r.trim_start_matches('/')))
    } else if path.starts_with('/') {
        ("file://", path.to_string())
    } else if let Some(i) = path.find("://") {
        let scheme = match &path[..i] {
            "s3a" | "s3n" => "s3://",
            _ => &path[..i + 3],
        };
        (scheme, path[i + 3..].to_string())
    } else {
        ("", path.to_string())
    };
    let mut out = String::with_capacity(path.len() + 8);
    out.push_str(scheme);
    let mut last_slash = false;
    for c in rest.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    out
}

/// Why maintenance leaves a mirror table's files alone (an expected skip, not news).
pub(crate) const MIRROR_NOT_REWRITABLE: &str = "a mirror table is compacted by its own writer";

/// The data files alive in one snapshot, with the manifests that list them.
pub(crate) struct Live {
    pub manifests: Vec<ManifestFile>,
    /// Alive (added or existing) data file entries, with their inherited sequence numbers.
    pub entries: Vec<ManifestEntry>,
    /// Why the snapshot cannot be rewritten by Philotes, if it cannot (delete files, another
    /// partition spec): maintenance then only expires and cleans.
    pub not_rewritable: Option<String>,
}

pub(crate) async fn manifests_of(
    table: &Table,
    snapshot: &SnapshotRef,
) -> Result<Vec<ManifestFile>> {
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| {
            lake_error(
                format!("cannot read the manifest list {}", snapshot.manifest_list()),
                e,
            )
        })?;
    Ok(list.consume_entries().into_iter().collect())
}

async fn entries_of(table: &Table, manifest: &ManifestFile) -> Result<Vec<ManifestEntry>> {
    let m = manifest.load_manifest(table.file_io()).await.map_err(|e| {
        lake_error(
            format!("cannot read the manifest {}", manifest.manifest_path),
            e,
        )
    })?;
    Ok(m.entries().iter().map(|e| e.as_ref().clone()).collect())
}

/// Manifests read so far, by path: a manifest never changes once written, so a rewrite that
/// lost a race reads only the manifests the winning commit added.
pub(crate) type ManifestCache = HashMap<String, Vec<ManifestEntry>>;

/// The live data files of `snapshot`.
pub(crate) async fn live(
    table: &Table,
    snapshot: &SnapshotRef,
    cache: &mut ManifestCache,
) -> Result<Live> {
    let manifests = manifests_of(table, snapshot).await?;
    let default_spec = table.metadata().default_partition_spec_id();
    let mut not_rewritable = None;
    if table
        .metadata()
        .properties()
        .contains_key(philotes_sink_iceberg::table::MIRROR_OF_KEY)
    {
        // Its writer's key index names rows by position: only it may move them.
        not_rewritable = Some(MIRROR_NOT_REWRITABLE.to_string());
    } else if manifests
        .iter()
        .any(|m| m.content == ManifestContentType::Deletes)
    {
        not_rewritable = Some("the table has delete files (written by another engine)".to_string());
    } else if manifests
        .iter()
        .any(|m| m.partition_spec_id != default_spec)
    {
        not_rewritable = Some("the table has files of more than one partition spec".to_string());
    }
    let unread: Vec<ManifestFile> = manifests
        .iter()
        .filter(|m| !cache.contains_key(&m.manifest_path))
        .cloned()
        .collect();
    let read: Vec<(String, Vec<ManifestEntry>)> = futures::stream::iter(unread)
        .map(|m| {
            let t = table.clone();
            async move { Ok::<_, Error>((m.manifest_path.clone(), entries_of(&t, &m).await?)) }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    cache.extend(read);
    let mut entries = Vec::new();
    for m in &manifests {
        if let Some(list) = cache.get(&m.manifest_path) {
            entries.extend(list.iter().filter(|e| e.is_alive()).cloned());
        }
    }
    Ok(Live {
        manifests,
        entries,
        not_rewritable,
    })
}

/// Every file the given snapshots reach, by [`normalize`]d path, each with the path as the
/// metadata spells it (what deletes use).
#[derive(Default)]
pub(crate) struct Reach {
    pub manifest_lists: HashMap<String, String>,
    pub manifests: HashMap<String, String>,
    /// Data (and delete) files alive in at least one of the snapshots.
    pub alive: HashMap<String, String>,
    /// Data files any of their manifests names, alive or not.
    pub named: HashMap<String, String>,
}

impl Reach {
    /// Every path, normalized.
    pub(crate) fn all(&self) -> HashSet<String> {
        self.manifest_lists
            .keys()
            .chain(self.manifests.keys())
            .chain(self.named.keys())
            .cloned()
            .collect()
    }
}

/// What `snapshots` reach (each distinct manifest read once).
pub(crate) async fn reach(table: &Table, snapshots: &[SnapshotRef]) -> Result<Reach> {
    let mut r = Reach::default();
    let lists: Vec<Vec<ManifestFile>> = futures::stream::iter(snapshots.to_vec())
        .map(|s| {
            let t = table.clone();
            async move { manifests_of(&t, &s).await }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut distinct: HashMap<String, ManifestFile> = HashMap::new();
    for s in snapshots {
        r.manifest_lists
            .insert(normalize(s.manifest_list()), s.manifest_list().to_string());
    }
    for m in lists.into_iter().flatten() {
        distinct.entry(normalize(&m.manifest_path)).or_insert(m);
    }
    let read: Vec<Vec<ManifestEntry>> =
        futures::stream::iter(distinct.values().cloned().collect::<Vec<_>>())
            .map(|m| {
                let t = table.clone();
                async move { entries_of(&t, &m).await }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
    for e in read.into_iter().flatten() {
        let p = normalize(e.file_path());
        if e.is_alive() {
            r.alive.insert(p.clone(), e.file_path().to_string());
        }
        r.named.insert(p, e.file_path().to_string());
    }
    r.manifests = distinct
        .into_iter()
        .map(|(k, m)| (k, m.manifest_path))
        .collect();
    Ok(r)
}

/// A short random pause before rebuilding a commit that lost its race, growing with each
/// attempt, so maintenance falls between two streaming commits instead of chasing them.
pub(crate) async fn jitter(attempt: u32) {
    let (a, _) = uuid::Uuid::new_v4().as_u64_pair();
    let ms = a % (10 * u64::from(attempt.min(10)) + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Delete `paths` through the table's file IO, a few at a time; returns how many went.
/// A file already gone counts as deleted; other failures are logged and left for the next
/// pass's orphan cleanup.
pub(crate) async fn delete_all(table: &Table, paths: Vec<String>) -> usize {
    let io = table.file_io().clone();
    futures::stream::iter(paths)
        .map(|p| {
            let io = io.clone();
            async move {
                match io.delete(&p).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(file = %p, error = %e, "cannot delete a file; the next maintenance pass tries again");
                        false
                    }
                }
            }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_compare_after_normalizing() {
        assert_eq!(normalize("file:///a//b/c"), "file:///a/b/c");
        assert_eq!(normalize("file:/a/b/c"), "file:///a/b/c");
        assert_eq!(normalize("/a//b"), "file:///a/b");
        assert_eq!(normalize("s3://bucket/x//data/f"), "s3://bucket/x/data/f");
        assert_eq!(normalize("s3a://bucket/x/f"), "s3://bucket/x/f");
    }
}
