//! The key index: for every live key of the mirror, the file and row that hold it.
//!
//! A position delete must name the row it deletes, and only the mirror's files know where a
//! key's row is. The index is built by reading the key columns of every live data file (rows in
//! file order, so a row's number is its position) minus the rows its position-delete files
//! name, and then kept up to date by each commit of this writer. It describes one snapshot:
//! when the mirror's current snapshot is another (another writer, a failed step), it is built
//! again.
//!
//! Keys are held as a 128-bit hash of their Arrow row encoding (one fixed size for every key
//! type, 24 bytes an entry with the location): two different keys share a hash with a
//! probability of about n²/2¹²⁹ — for 10⁹ keys, 10⁻²¹. A build that finds two live rows with
//! the same hash stops with an error rather than guess.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, ManifestContentType, NestedField, PrimitiveType, Schema, Type,
};
use iceberg::table::Table;
use philotes_core::{Error, ErrorKind, Result};
use philotes_query::datafusion::arrow::array::{ArrayRef, AsArray};
use philotes_query::datafusion::arrow::datatypes::Int64Type;
use philotes_query::datafusion::arrow::row::{RowConverter, SortField};

use crate::apply::Plan;
use crate::lake_error;
use crate::read::{FileRef, arrow_error, read_file};

/// Field ids of a position-delete file's columns (the Iceberg spec's reserved ids).
pub(crate) const DELETE_PATH_ID: i32 = 2_147_483_546;
pub(crate) const DELETE_POS_ID: i32 = 2_147_483_545;

/// The schema of a position-delete file.
pub(crate) fn delete_schema() -> Result<Schema> {
    Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::required(
                DELETE_PATH_ID,
                "file_path",
                Type::Primitive(PrimitiveType::String),
            )),
            Arc::new(NestedField::required(
                DELETE_POS_ID,
                "pos",
                Type::Primitive(PrimitiveType::Long),
            )),
        ])
        .build()
        .map_err(|e| lake_error("cannot build the position-delete schema", e))
}

/// Where a key's row is: (file number in [`KeyIndex::files`], row).
pub(crate) type Loc = (u32, u32);

/// Every live key of the mirror, as of one snapshot.
pub struct KeyIndex {
    pub(crate) snapshot_id: Option<i64>,
    pub(crate) files: Vec<FileRef>,
    map: HashMap<u128, Loc>,
    /// The mirror's key fields.
    pub(crate) key_ids: Vec<i32>,
}

impl KeyIndex {
    pub(crate) fn get(&self, key: u128) -> Option<Loc> {
        self.map.get(&key).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bring the index to the snapshot `snapshot_id` the commit of `plan` made, which added
    /// `added` (files in write order, the plan's rows split over them in that order).
    pub(crate) fn after_commit(
        &mut self,
        plan: &Plan,
        added: Vec<FileRef>,
        snapshot_id: Option<i64>,
    ) {
        if plan.truncated {
            self.map.clear();
            self.files.clear();
        }
        for k in &plan.removed {
            self.map.remove(k);
        }
        let mut keys = plan.written.iter();
        for f in added {
            let id = self.files.len() as u32;
            for pos in 0..f.rows {
                if let Some(k) = keys.next() {
                    self.map.insert(*k, (id, pos as u32));
                }
            }
            self.files.push(f);
        }
        self.snapshot_id = snapshot_id;
    }
}

/// The 128-bit hashes of the keys in `columns` (one per row).
pub(crate) fn key_hashes(columns: &[ArrayRef]) -> Result<Vec<u128>> {
    let fields = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(arrow_error)?;
    let rows = converter.convert_columns(columns).map_err(arrow_error)?;
    Ok(rows
        .iter()
        .map(|r| twox_hash::XxHash3_128::oneshot(r.as_ref()))
        .collect())
}

/// The live data and position-delete files of the mirror's current snapshot.
pub(crate) async fn live_files(table: &Table) -> Result<(Vec<FileRef>, Vec<FileRef>)> {
    let (mut data, mut deletes) = (Vec::new(), Vec::new());
    let Some(snapshot) = table.metadata().current_snapshot().cloned() else {
        return Ok((data, deletes));
    };
    let list = table
        .manifest_list_reader(&snapshot)
        .load()
        .await
        .map_err(|e| lake_error("cannot read the mirror's manifest list", e))?;
    for m in list.entries() {
        let manifest = m
            .load_manifest(table.file_io())
            .await
            .map_err(|e| lake_error(format!("cannot read the manifest {}", m.manifest_path), e))?;
        for e in manifest.entries().iter().filter(|e| e.is_alive()) {
            let f = FileRef {
                path: e.file_path().to_string(),
                size: e.file_size_in_bytes(),
                rows: e.record_count(),
            };
            match (m.content, e.content_type()) {
                (ManifestContentType::Data, DataContentType::Data) => data.push(f),
                (ManifestContentType::Deletes, DataContentType::PositionDeletes) => deletes.push(f),
                (_, other) => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "the mirror {} holds a {other:?} file ({}) another writer added: Philotes writes position deletes only; drop the mirror to have it rebuilt",
                            table.identifier(),
                            e.file_path()
                        ),
                    ));
                }
            }
        }
    }
    Ok((data, deletes))
}

/// Build the index of `table`'s current snapshot over the key fields `key_ids`.
pub(crate) async fn build(table: &Table, key_ids: &[i32]) -> Result<KeyIndex> {
    let (data, deletes) = live_files(table).await?;
    // The rows the delete files name.
    let del_schema = Arc::new(delete_schema()?);
    let mut deleted: HashSet<(String, u32)> = HashSet::new();
    for f in &deletes {
        let b = read_file(table, &del_schema, f, &[DELETE_PATH_ID, DELETE_POS_ID]).await?;
        let paths = b.column(0).as_string::<i32>();
        let pos = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            deleted.insert((paths.value(i).to_string(), pos.value(i) as u32));
        }
    }
    let schema = table.metadata().current_schema().clone();
    let mut map = HashMap::new();
    for (n, f) in data.iter().enumerate() {
        let b = read_file(table, &schema, f, key_ids).await?;
        let hashes = key_hashes(b.columns())?;
        for (pos, h) in hashes.into_iter().enumerate() {
            if deleted.contains(&(f.path.clone(), pos as u32)) {
                continue;
            }
            if let Some(other) = map.insert(h, (n as u32, pos as u32)) {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the mirror {} holds two live rows with the same key hash ({} row {} and {} row {pos}): drop the mirror to have it rebuilt",
                        table.identifier(),
                        data[other.0 as usize].path,
                        other.1,
                        f.path
                    ),
                ));
            }
        }
    }
    tracing::debug!(mirror = %table.identifier(), keys = map.len(), files = data.len(), "built the mirror's key index");
    Ok(KeyIndex {
        snapshot_id: table.metadata().current_snapshot_id(),
        files: data,
        map,
        key_ids: key_ids.to_vec(),
    })
}
