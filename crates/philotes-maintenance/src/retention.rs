//! Changelog retention: changes older than `changelog_retention` folded into a base.
//!
//! A changelog keeps every change for ever, and some teams want history for a while (to audit,
//! to time-travel, to rebuild) but not for years. Deleting old changes would lose the current
//! state — a row inserted two years ago and never touched since exists only as that change —
//! so retention replaces every change before a cut by a **base**: per key alive at the cut, its
//! last change, with every value the current-state rule gives it there (unchanged TOAST values
//! filled in from earlier changes). The base rows keep their `_cdc_op`, `_cdc_lsn`, `_cdc_seq`
//! and `_cdc_ts`, so the table stays a changelog under the same contract: the current-state
//! view, `philotes sql`, `verify` and the documented views for other engines give the same
//! answer for every position from the newest folded change on. Earlier positions are refused
//! by `philotes sql` (the table records that change's LSN and commit time in
//! `philotes.retention-cut-lsn` and `philotes.retention-cut-ts`).
//!
//! One exception: the contract takes an unchanged TOAST value of a key change's new row from
//! the old key's row, which no base holds once the old key is gone. Until a later change of the
//! new key gives that value again (or deletes the key), the cut stays before such a key change,
//! so its transaction and everything after it stay in the changelog; the pass says so.
//!
//! The base is a copy-on-write of every file holding a change before the cut (the previous
//! base included), so retention only acts once the oldest change after the previous cut is a
//! tenth of `changelog_retention` past it: with 7 days, about every 17 hours. It reads with
//! DataFusion under a memory limit (sorts and aggregations spill), writes with the sink's
//! Parquet settings and commits one `replace` snapshot through the same optimistic path as
//! compaction, which carries the watermark forward. Tables without a key keep their whole
//! changelog: "per key" has no meaning there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use iceberg::spec::{FormatVersion, ManifestEntry, PrimitiveLiteral};
use iceberg::table::Table;
use iceberg::writer::IcebergWriter;
use philotes_core::{Error, ErrorKind, Lsn, Result};
use philotes_query::TableSession;
use philotes_query::datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, ListBuilder, RecordBatch, StringBuilder, new_null_array,
};
use philotes_query::datafusion::arrow::compute::{cast, filter_record_batch, kernels::cmp};
use philotes_query::datafusion::arrow::datatypes::{DataType, SchemaRef};
use philotes_query::state::{first_unchanged_key_change_sql, resolved_column, retention_base_sql};
use philotes_sink_iceberg::table::{
    KEY_FIELDS_KEY, LSN_COLUMN, RETENTION_CUT_LSN_KEY, RETENTION_CUT_TS_KEY, UNCHANGED_COLUMN,
    data_file_writer, read_progress,
};
use philotes_sink_iceberg::{Lake, commit_refused};

use crate::files::{ManifestCache, lake_error, live, normalize};
use crate::rewrite::{Replace, commit, delete_files, read_files};

/// What DataFusion may hold while it folds changes; beyond it, sorts and aggregations spill.
const MEMORY_LIMIT: usize = 256 << 20;
/// Summary value of [`crate::MAINTENANCE_KEY`] on retention's snapshots.
const WHAT: &str = "retention";

/// What retention did to one table.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Retention {
    /// The newest change folded (its LSN in PostgreSQL's form), when changes were folded.
    pub cut_lsn: Option<String>,
    /// Changes before the cut that were read, and the base rows that replace them.
    pub changes_folded: u64,
    pub base_rows: u64,
    /// Files rewritten, and the files written (base and the later changes they also held).
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why nothing was folded although changes are old enough, if so.
    pub waiting: Option<String>,
}

fn query_error(e: Error) -> Error {
    e.with("step", "changelog retention")
}

/// Fold the changes of `table` older than `keep` (at `now_ms`) into its base, when due.
pub(crate) async fn retain(
    lake: &Lake,
    table: Table,
    keep: Duration,
    target: u64,
    now_ms: i64,
) -> Result<(Table, Retention)> {
    let mut report = Retention::default();
    let md = table.metadata();
    let Some(snapshot) = md.current_snapshot().cloned() else {
        return Ok((table, report));
    };
    if md.format_version() != FormatVersion::V2
        || md
            .properties()
            .get(KEY_FIELDS_KEY)
            .is_none_or(|k| k.is_empty())
    {
        // No key: the changelog is the only true record of a keyless table.
        return Ok((table, report));
    }
    let schema = snapshot
        .schema(md)
        .map_err(|e| lake_error("cannot read the snapshot's schema", e))?;
    if schema.schema_id() != md.current_schema_id() {
        report.waiting = Some(
            "the table's schema changed since its last commit; retention waits for the next commit"
                .into(),
        );
        return Ok((table, report));
    }
    let Some(watermark) = read_progress(&table)?.watermark else {
        return Ok((table, report));
    };
    // Changes after the newest one folded so far are not in the base.
    let previous = match md.properties().get(RETENTION_CUT_LSN_KEY) {
        Some(v) => i64::try_from(v.parse::<Lsn>()?.0)
            .unwrap_or(i64::MAX)
            .saturating_add(1),
        None => 0,
    };
    let keep_us = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    let cut_us = now_ms.saturating_mul(1000).saturating_sub(keep_us);
    let due_us = cut_us.saturating_sub(keep_us / 10);

    let session = TableSession::open(&table, snapshot.snapshot_id(), MEMORY_LIMIT)
        .await
        .map_err(query_error)?;
    let t = TableSession::NAME;
    // The first change inside the window is the cut; due once a change after the previous cut
    // is older than the window and a tenth of it.
    let found = session
        .first_row(&format!(
            "SELECT min(_cdc_lsn) FILTER (WHERE _cdc_ts >= to_timestamp_micros({cut_us})), \
             min(_cdc_lsn) FILTER (WHERE _cdc_ts < to_timestamp_micros({due_us})) \
             FROM {t} WHERE _cdc_lsn >= {previous}"
        ))
        .await
        .map_err(query_error)?;
    let (first_inside, due) = match found.as_slice() {
        [a, b] => (*a, *b),
        _ => (None, None),
    };
    if due.is_none() {
        return Ok((table, report));
    }
    let watermark = i64::try_from(watermark.0).unwrap_or(i64::MAX);
    let mut cut = first_inside.unwrap_or(watermark).min(watermark);
    let key_change = session
        .first_row(&first_unchanged_key_change_sql(
            t,
            &session.columns,
            previous,
            cut,
        ))
        .await
        .map_err(query_error)?;
    if let Some(Some(at)) = key_change.first()
        && *at < cut
    {
        cut = *at;
        report.waiting = Some(format!(
            "a key change at LSN {} left a TOAST value unchanged that only the old key's row holds: the changes from there on are kept until a later change of the new key gives the value",
            Lsn(*at as u64)
        ));
    }
    let counted = session
        .first_row(&format!(
            "SELECT count(1), count(1) FILTER (WHERE _cdc_lsn >= {previous}), max(_cdc_lsn), \
             CAST(max(_cdc_ts) AS BIGINT) FROM {t} WHERE _cdc_lsn < {cut}"
        ))
        .await
        .map_err(query_error)?;
    let (old_rows, newest_lsn, newest_us) = match counted.as_slice() {
        [Some(n), Some(new), Some(lsn), Some(ts)] if *new > 0 => (*n as u64, *lsn, *ts),
        _ => {
            tracing::info!(table = %table.identifier(), reason = report.waiting.as_deref().unwrap_or("nothing before the window"), "changelog retention waits");
            return Ok((table, report));
        }
    };

    // Every file that may hold a change before the cut; the others are left as they are.
    let mut cache = ManifestCache::new();
    let current = live(&table, &snapshot, &mut cache).await?;
    if let Some(why) = &current.not_rewritable {
        report.waiting = Some(format!("cannot rewrite the table: {why}"));
        return Ok((table, report));
    }
    let lsn_field = md
        .current_schema()
        .field_by_name(LSN_COLUMN)
        .map(|f| f.id)
        .ok_or_else(|| Error::new(ErrorKind::Internal, "the table has no _cdc_lsn column"))?;
    let inputs: Vec<&ManifestEntry> = current
        .entries
        .iter()
        .filter(|e| {
            match e
                .data_file()
                .lower_bounds()
                .get(&lsn_field)
                .map(|d| d.literal())
            {
                Some(PrimitiveLiteral::Long(low)) => *low < cut,
                _ => true,
            }
        })
        .collect();
    let rows_in: u64 = inputs.iter().map(|e| e.record_count()).sum();
    let paths: HashSet<String> = inputs.iter().map(|e| normalize(e.file_path())).collect();

    let target_schema: SchemaRef = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(md.current_schema())
            .map_err(|e| lake_error("cannot map the table's schema to Arrow", e))?,
    );
    let mut writer =
        data_file_writer(&table, usize::try_from(target).unwrap_or(usize::MAX)).await?;
    let written =
        async {
            // The base.
            let truncate = session.last_truncate_before(cut).await?;
            let sql = retention_base_sql(t, &session.columns, cut, truncate);
            let mut base = session.stream(&sql).await?;
            let names: Vec<(usize, String)> = session
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.toastable && !c.is_key)
                .map(|(i, c)| (i, c.name.clone()))
                .collect();
            let mut base_rows = 0u64;
            while let Some(b) = base.try_next().await.map_err(|e| {
                Error::new(ErrorKind::Sink, "cannot fold the changes").with_source(e)
            })? {
                base_rows += b.num_rows() as u64;
                let b = conform(&b, &target_schema, Some(&names))?;
                writer
                    .write(b)
                    .await
                    .map_err(|e| lake_error("cannot write the base", e))?;
            }
            // The later changes the same files hold, as they are.
            let mut kept_rows = 0u64;
            let mut rest = read_files(&table, snapshot.snapshot_id(), &paths).await?;
            while let Some(b) = rest
                .try_next()
                .await
                .map_err(|e| lake_error("cannot read a file to fold", e))?
            {
                let lsn = b
                    .column_by_name(LSN_COLUMN)
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .ok_or_else(|| {
                        Error::new(ErrorKind::Internal, "a data file has no _cdc_lsn column")
                    })?;
                let later = cmp::gt_eq(lsn, &Int64Array::new_scalar(cut)).map_err(|e| {
                    Error::new(ErrorKind::Internal, "cannot filter rows").with_source(e)
                })?;
                let b = filter_record_batch(&b, &later).map_err(|e| {
                    Error::new(ErrorKind::Internal, "cannot filter rows").with_source(e)
                })?;
                if b.num_rows() == 0 {
                    continue;
                }
                kept_rows += b.num_rows() as u64;
                let b = conform(&b, &target_schema, None)?;
                writer
                    .write(b)
                    .await
                    .map_err(|e| lake_error("cannot write the later changes", e))?;
            }
            Ok::<_, Error>((base_rows, kept_rows))
        }
        .await;
    let closed = writer
        .close()
        .await
        .map_err(|e| lake_error("cannot finish a data file", e));
    let (out, (base_rows, kept_rows)) = match (closed, written) {
        (Ok(out), Ok(counts)) => (out, counts),
        (Ok(out), Err(e)) => {
            delete_files(&table, &out).await;
            return Err(e.with("table", table.identifier()));
        }
        (Err(e), _) => return Err(e.with("table", table.identifier())),
    };
    if old_rows + kept_rows != rows_in {
        delete_files(&table, &out).await;
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "retention read {old_rows} changes before the cut and {kept_rows} after it from files that hold {rows_in}; nothing was committed"
            ),
        )
        .with("table", table.identifier()));
    }
    report.cut_lsn = Some(Lsn(newest_lsn as u64).to_string());
    report.changes_folded = old_rows;
    report.base_rows = base_rows;
    report.files_in = inputs.len();
    report.files_out = out.len();
    report.bytes_in = inputs.iter().map(|e| e.file_size_in_bytes()).sum();
    report.bytes_out = out.iter().map(|f| f.file_size_in_bytes()).sum();
    let removed: HashMap<String, ManifestEntry> = inputs
        .iter()
        .map(|e| (normalize(e.file_path()), (*e).clone()))
        .collect();
    let newest = chrono::DateTime::from_timestamp_micros(newest_us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default();
    let change = Replace {
        removed: &removed,
        added: &out,
        what: WHAT,
        properties: HashMap::from([
            (
                RETENTION_CUT_LSN_KEY.to_string(),
                Lsn(newest_lsn as u64).to_string(),
            ),
            (RETENTION_CUT_TS_KEY.to_string(), newest),
        ]),
    };
    match commit(lake, table.clone(), current, &mut cache, &change).await {
        Ok((t, _)) => Ok((t, report)),
        Err(e) => {
            if commit_refused(&e) {
                delete_files(&table, &out).await;
            }
            Err(e)
        }
    }
}

/// `batch` in the table's Arrow schema (field ids, exact types), by column name. With
/// `resolved`, a base: `_cdc_unchanged` lists the toastable columns (index, name) whose
/// `_philotes_resolved_<index>` count is 0 — no change ever gave them a value.
fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
    resolved: Option<&[(usize, String)]>,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let internal = |what: String| Error::new(ErrorKind::Internal, what);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if let (Some(resolved), UNCHANGED_COLUMN) = (resolved, field.name().as_str()) {
            let DataType::List(item) = field.data_type() else {
                return Err(internal(format!("{UNCHANGED_COLUMN} is not a list")));
            };
            let counts: Vec<(&Int64Array, &str)> = resolved
                .iter()
                .map(|(i, name)| {
                    batch
                        .column_by_name(&resolved_column(*i))
                        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                        .map(|c| (c, name.as_str()))
                        .ok_or_else(|| internal(format!("the base lacks {}", resolved_column(*i))))
                })
                .collect::<Result<_>>()?;
            let mut list = ListBuilder::new(StringBuilder::new()).with_field(item.clone());
            for row in 0..n {
                let mut any = false;
                for (c, name) in &counts {
                    if c.is_valid(row) && c.value(row) == 0 {
                        list.values().append_value(name);
                        any = true;
                    }
                }
                list.append(any);
            }
            columns.push(Arc::new(list.finish()));
            continue;
        }
        let column = match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => cast(c, field.data_type()).map_err(|e| {
                internal(format!(
                    "column {} cannot be written back as it was read",
                    field.name()
                ))
                .with_source(e)
            })?,
            None => new_null_array(field.data_type(), n),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
        internal("the folded rows do not fit the table's schema".into()).with_source(e)
    })
}
