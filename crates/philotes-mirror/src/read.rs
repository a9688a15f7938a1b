//! Reading: the changelog's changes after the mirror's position, and rows of the mirror's own
//! files by position.
//!
//! The changes come through the `iceberg` crate's scan (files pruned by their `_cdc_lsn`
//! bounds, so a step reads what is new, whatever compaction did to older files) and are put
//! in changelog order, (`_cdc_lsn`, `_cdc_seq`). The mirror's files are read one by one
//! *without* their deletes, so a row's place in the output is its position in the file.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::expr::Reference;
use iceberg::scan::{FileScanTask, FileScanTaskStream};
use iceberg::spec::{DataFileFormat, Datum, Schema};
use iceberg::table::Table;
use philotes_core::{Error, ErrorKind, Lsn, Result};
use philotes_query::datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch, UInt32Array};
use philotes_query::datafusion::arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use philotes_query::datafusion::arrow::datatypes::Int64Type;
use philotes_sink_iceberg::table::{LSN_COLUMN, OP_COLUMN, SEQ_COLUMN, UNCHANGED_COLUMN};

use crate::schema::FieldMap;
use crate::{Position, lake_error};

/// The changes a step applies, in changelog order.
pub(crate) struct Changes {
    pub batch: RecordBatch,
    pub rows: usize,
    /// The position of the last change, when there is one.
    pub last: Option<Position>,
    /// Columns of `batch`: the operation, the unchanged-TOAST list, the key.
    pub op: usize,
    pub unchanged: usize,
    pub key: Vec<usize>,
    /// For each mirror field id, its column in `batch`.
    pub by_mirror_id: HashMap<i32, usize>,
}

fn column(batch: &RecordBatch, name: &str) -> Result<usize> {
    batch.schema().index_of(name).map_err(|_| {
        Error::new(
            ErrorKind::Internal,
            format!("the changelog has no column {name}"),
        )
    })
}

/// Every change of `changelog` after `after` and before `watermark`.
pub(crate) async fn changes_after(
    changelog: &Table,
    after: Position,
    watermark: Lsn,
    fields: &FieldMap,
    key_ids: &[i32],
) -> Result<Changes> {
    let md = changelog.metadata();
    let schema = md.current_schema();
    let upto = i64::try_from(watermark.0).unwrap_or(i64::MAX);
    let filter = Reference::new(LSN_COLUMN)
        .greater_than_or_equal_to(Datum::long(after.lsn.max(0)))
        .and(Reference::new(LSN_COLUMN).less_than(Datum::long(upto)));
    let mut scan = changelog.scan().select_all().with_filter(filter);
    if let Some(id) = md.current_snapshot_id() {
        scan = scan.snapshot_id(id);
    }
    let batches: Vec<RecordBatch> = scan
        .build()
        .map_err(|e| lake_error("cannot plan the read of the changelog", e))?
        .to_arrow()
        .await
        .map_err(|e| lake_error("cannot read the changelog", e))?
        .try_collect()
        .await
        .map_err(|e| lake_error("cannot read the changelog", e))?;
    let arrow_schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(
            iceberg::arrow::schema_to_arrow_schema(schema)
                .map_err(|e| lake_error("cannot read the changelog's schema", e))?,
        ),
    };
    let all = concat_batches(&arrow_schema, &batches).map_err(arrow_error)?;
    let lsn = column(&all, LSN_COLUMN)?;
    let seq = column(&all, SEQ_COLUMN)?;
    // Exactly the changes after the position and before the watermark.
    let keep: BooleanArray = {
        let l = all.column(lsn).as_primitive::<Int64Type>();
        let s = all.column(seq).as_primitive::<Int64Type>();
        (0..all.num_rows())
            .map(|i| {
                let p = Position {
                    lsn: l.value(i),
                    seq: s.value(i),
                };
                Some(p > after && p.lsn < upto)
            })
            .collect()
    };
    let kept = filter_record_batch(&all, &keep).map_err(arrow_error)?;
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: kept.column(lsn).clone(),
                options: None,
            },
            SortColumn {
                values: kept.column(seq).clone(),
                options: None,
            },
        ],
        None,
    )
    .map_err(arrow_error)?;
    let batch = take_record_batch(&kept, &order).map_err(arrow_error)?;
    let rows = batch.num_rows();
    let last = (rows > 0).then(|| Position {
        lsn: batch
            .column(lsn)
            .as_primitive::<Int64Type>()
            .value(rows - 1),
        seq: batch
            .column(seq)
            .as_primitive::<Int64Type>()
            .value(rows - 1),
    });
    let mut by_mirror_id = HashMap::new();
    for (cl_id, m_id) in &fields.pairs {
        if let Some(f) = schema.field_by_id(*cl_id) {
            by_mirror_id.insert(*m_id, column(&batch, &f.name)?);
        }
    }
    let key = key_ids
        .iter()
        .map(|id| {
            let f = schema.field_by_id(*id).ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the changelog's key field {id} is not in its schema"),
                )
            })?;
            column(&batch, &f.name)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Changes {
        op: column(&batch, OP_COLUMN)?,
        unchanged: column(&batch, UNCHANGED_COLUMN)?,
        batch,
        rows,
        last,
        key,
        by_mirror_id,
    })
}

/// A data file of the mirror, as the key index knows it.
#[derive(Clone, Debug)]
pub(crate) struct FileRef {
    pub path: String,
    pub size: u64,
    pub rows: u64,
}

/// The rows of `file` (every row, deletes not applied), fields `ids` under `schema`.
pub(crate) async fn read_file(
    table: &Table,
    schema: &Arc<Schema>,
    file: &FileRef,
    ids: &[i32],
) -> Result<RecordBatch> {
    let task = FileScanTask::builder()
        .with_file_size_in_bytes(file.size)
        .with_start(0)
        .with_length(file.size)
        .with_record_count(Some(file.rows))
        .with_data_file_path(file.path.clone())
        .with_data_file_format(DataFileFormat::Parquet)
        .with_schema(schema.clone())
        .with_project_field_ids(ids.to_vec())
        .with_case_sensitive(true)
        .build();
    let tasks: FileScanTaskStream = Box::pin(futures::stream::iter([Ok(task)]));
    let batches: Vec<RecordBatch> = table
        .reader_builder()
        .with_batch_size(65_536)
        .build()
        .read(tasks)
        .map_err(|e| lake_error(format!("cannot read {}", file.path), e))?
        .stream()
        .try_collect()
        .await
        .map_err(|e| lake_error(format!("cannot read {}", file.path), e))?;
    let arrow_schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            let projected = schema.as_ref();
            let full = iceberg::arrow::schema_to_arrow_schema(projected)
                .map_err(|e| lake_error("cannot read the mirror's schema", e))?;
            let idx: Vec<usize> = ids
                .iter()
                .filter_map(|id| {
                    projected
                        .as_struct()
                        .fields()
                        .iter()
                        .position(|f| f.id == *id)
                })
                .collect();
            Arc::new(full.project(&idx).map_err(arrow_error)?)
        }
    };
    let out = concat_batches(&arrow_schema, &batches).map_err(arrow_error)?;
    if out.num_rows() as u64 != file.rows {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "{} holds {} rows, its manifest says {}",
                file.path,
                out.num_rows(),
                file.rows
            ),
        ));
    }
    Ok(out)
}

/// `positions` of `batch`.
pub(crate) fn take_rows(batch: &RecordBatch, positions: &[u32]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(positions.to_vec());
    take_record_batch(batch, &idx).map_err(arrow_error)
}

pub(crate) fn arrow_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Internal, "arrow").with_source(e)
}
