//! The commit of a step: a data file of new rows, a position-delete file, one snapshot.
//!
//! The `iceberg` crate cannot commit delete files (its fast append refuses them), so the
//! snapshot is built here as maintenance builds its replace snapshots: the current snapshot's
//! manifests are kept as they are (none after a truncate), a data manifest and a delete
//! manifest list the new files, and the summary records the changelog position and watermark
//! the mirror reached. It is committed through the guarded metadata commit: another commit in
//! between makes it fail, and the next step starts again from what the table records.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::ManifestContentType;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, MAIN_BRANCH, ManifestFile, ManifestWriterBuilder,
    Operation, Snapshot, Summary,
};
use iceberg::table::Table;
use iceberg::writer::IcebergWriter;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use philotes_core::{Lsn, Result};
use philotes_maintenance::snapshot::{unique_snapshot_id, write_manifest_list};
use philotes_query::datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use philotes_sink_iceberg::table::{WATERMARK_KEY, data_file_writer};
use philotes_sink_iceberg::{Guard, Lake, commit_refused};

use crate::apply::Plan;
use crate::index::delete_schema;
use crate::read::{FileRef, arrow_error};
use crate::{POSITION_KEY, Position, lake_error};

/// Data files of a step are rolled at this size.
const TARGET_FILE_BYTES: usize = 256 << 20;

/// Write and commit `plan`; the table as it is after, and the data files added (in write
/// order).
pub(crate) async fn commit(
    lake: &Lake,
    table: Table,
    plan: &Plan,
    position: Position,
    watermark: Lsn,
    changelog: &Table,
) -> Result<(Table, Vec<FileRef>)> {
    let mut written: Vec<String> = Vec::new();
    let result = write_and_commit(lake, &table, plan, position, watermark, &mut written).await;
    match result {
        Ok(out) => Ok(out),
        Err(e) => {
            if commit_refused(&e) {
                for p in &written {
                    let _ = table.file_io().delete(p).await;
                }
            }
            Err(e
                .with("table", table.identifier())
                .with("changelog", changelog.identifier()))
        }
    }
}

async fn write_and_commit(
    lake: &Lake,
    table: &Table,
    plan: &Plan,
    position: Position,
    watermark: Lsn,
    written: &mut Vec<String>,
) -> Result<(Table, Vec<FileRef>)> {
    let md = table.metadata();
    let mut data_files: Vec<DataFile> = Vec::new();
    if let Some(batch) = &plan.batch {
        let mut w = data_file_writer(table, TARGET_FILE_BYTES).await?;
        w.write(batch.clone())
            .await
            .map_err(|e| lake_error("cannot write a mirror data file", e))?;
        data_files = w
            .close()
            .await
            .map_err(|e| lake_error("cannot finish a mirror data file", e))?;
        written.extend(data_files.iter().map(|f| f.file_path().to_string()));
    }
    let mut delete_files: Vec<DataFile> = Vec::new();
    if !plan.deletes.is_empty() {
        delete_files = write_deletes(table, &plan.deletes).await?;
        written.extend(delete_files.iter().map(|f| f.file_path().to_string()));
    }

    let snapshot_id = unique_snapshot_id(table);
    let seq = md.next_sequence_number();
    let io = table.file_io();
    let location = md.location().trim_end_matches('/');
    let commit_id = uuid::Uuid::new_v4();
    let spec = md.default_partition_spec().as_ref().clone();
    let schema = md.current_schema().clone();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let parent = md.current_snapshot().cloned();
    if let Some(p) = &parent
        && !plan.truncated
    {
        let list = table
            .manifest_list_reader(p)
            .load()
            .await
            .map_err(|e| lake_error("cannot read the mirror's manifest list", e))?;
        manifests.extend(list.consume_entries());
    }
    for (n, (files, content)) in [
        (&data_files, ManifestContentType::Data),
        (&delete_files, ManifestContentType::Deletes),
    ]
    .into_iter()
    .enumerate()
    {
        if files.is_empty() {
            continue;
        }
        let path = format!("{location}/metadata/{commit_id}-m{n}.avro");
        let out = io
            .new_output(&path)
            .map_err(|e| lake_error("cannot write a manifest", e))?;
        let builder =
            ManifestWriterBuilder::new(out, Some(snapshot_id), schema.clone(), spec.clone());
        let mut w = match content {
            ManifestContentType::Data => builder.build_v2_data(),
            ManifestContentType::Deletes => builder.build_v2_deletes(),
        };
        for f in files {
            // Inherits the new snapshot's sequence number.
            w.add_file(f.clone(), -1)
                .map_err(|e| lake_error("cannot write a manifest entry", e))?;
        }
        written.push(path);
        manifests.push(
            w.write_manifest_file()
                .await
                .map_err(|e| lake_error("cannot write a manifest", e))?,
        );
    }
    let list_path = write_manifest_list(
        table,
        snapshot_id,
        parent.as_ref().map(|p| p.snapshot_id()),
        seq,
        commit_id,
        manifests,
    )
    .await?;
    written.push(list_path.clone());

    let added_rows: u64 = data_files.iter().map(|f| f.record_count()).sum();
    let mut props = HashMap::from([
        (POSITION_KEY.to_string(), position.render()),
        (WATERMARK_KEY.to_string(), watermark.to_string()),
        ("added-data-files".to_string(), data_files.len().to_string()),
        ("added-records".to_string(), added_rows.to_string()),
        (
            "added-delete-files".to_string(),
            delete_files.len().to_string(),
        ),
        (
            "added-position-deletes".to_string(),
            plan.deletes.len().to_string(),
        ),
    ]);
    if plan.truncated {
        props.insert("philotes.mirror-truncated".to_string(), "true".to_string());
    }
    let operation = if plan.truncated || !delete_files.is_empty() {
        if data_files.is_empty() {
            Operation::Delete
        } else {
            Operation::Overwrite
        }
    } else {
        Operation::Append
    };
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.as_ref().map(|p| p.snapshot_id()))
        .with_sequence_number(seq)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation,
            additional_properties: props,
        })
        .with_schema_id(md.current_schema_id())
        .build();
    let built = md
        .clone()
        .into_builder(table.metadata_location().map(str::to_string))
        .set_branch_snapshot(snapshot, MAIN_BRANCH)
        .and_then(|b| b.build())
        .map_err(|e| lake_error("cannot build the mirror's snapshot", e))?;
    let after = lake
        .commit_metadata(table, built, Guard::MainSnapshot)
        .await?;
    let added = data_files
        .iter()
        .map(|f| FileRef {
            path: f.file_path().to_string(),
            size: f.file_size_in_bytes(),
            rows: f.record_count(),
        })
        .collect();
    Ok((after, added))
}

/// A position-delete file (sorted by path, then position, as the spec asks) naming `deletes`.
async fn write_deletes(table: &Table, deletes: &[(String, i64)]) -> Result<Vec<DataFile>> {
    let md = table.metadata();
    let schema = Arc::new(delete_schema()?);
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| lake_error("cannot build the position-delete schema", e))?,
    );
    let batch = RecordBatch::try_new(
        arrow,
        vec![
            Arc::new(StringArray::from_iter_values(
                deletes.iter().map(|(p, _)| p.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                deletes.iter().map(|(_, n)| *n),
            )),
        ],
    )
    .map_err(arrow_error)?;
    let parquet = ParquetWriterBuilder::new(Default::default(), schema);
    let locations = DefaultLocationGenerator::new(md)
        .map_err(|e| lake_error("cannot place delete files", e))?;
    let names = DefaultFileNameGenerator::new(
        format!("philotes-{}-deletes", uuid::Uuid::new_v4()),
        None,
        DataFileFormat::Parquet,
    );
    let mut w = RollingFileWriterBuilder::new(
        parquet,
        TARGET_FILE_BYTES,
        table.file_io().clone(),
        locations,
        names,
    )
    .build();
    w.write(&None, &batch)
        .await
        .map_err(|e| lake_error("cannot write a position-delete file", e))?;
    let built = w
        .close()
        .await
        .map_err(|e| lake_error("cannot finish a position-delete file", e))?;
    built
        .into_iter()
        .map(|mut b| {
            b.content(DataContentType::PositionDeletes);
            b.build().map_err(|e| {
                philotes_core::Error::new(
                    philotes_core::ErrorKind::Internal,
                    format!("cannot describe a position-delete file: {e}"),
                )
            })
        })
        .collect()
}
