//! The fold: a step's changes, in changelog order, turned into the rows to write and the rows
//! to delete.
//!
//! Per key only the last state matters: the step writes one row for every key alive after it
//! (the latest version, with every value the current-state rule of docs/changelog-tables.md
//! gives it) and deletes, by position, the row the mirror held for every key the step touched.
//! An unchanged TOAST value (a column listed in `_cdc_unchanged`) takes the key's previous
//! value — from an earlier change of the step, or else from the mirror's row — and in the `U`
//! of a key change (a `D` of another key just before it in the same transaction), the old
//! key's. A truncate (also the first row of a copy made again) drops everything before it.
//!
//! Each output value is taken, column by column, from the change that carries it or from a
//! mirror row read back; [`interleave`] assembles the columns in one pass.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::table::Table;
use philotes_core::{Error, ErrorKind, Result};
use philotes_query::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, new_null_array,
};
use philotes_query::datafusion::arrow::compute::{cast, interleave};
use philotes_query::datafusion::arrow::datatypes::{Int64Type, SchemaRef};

use crate::index::{KeyIndex, Loc, key_hashes};
use crate::read::{Changes, arrow_error, read_file, take_rows};

/// What a step writes.
pub(crate) struct Plan {
    /// The rows to append, in the mirror's current schema (none when no key is alive).
    pub batch: Option<RecordBatch>,
    /// Rows of the mirror's files to delete: (file path, position), sorted.
    pub deletes: Vec<(String, i64)>,
    /// A truncate came first: every file of the mirror goes.
    pub truncated: bool,
    /// The keys of `batch`'s rows, in order; and the keys the step deleted.
    pub written: Vec<u128>,
    pub removed: Vec<u128>,
}

/// Where one output value comes from.
#[derive(Clone, Copy, Debug)]
enum Cell {
    /// Row of the step's changes.
    Change(u32),
    /// A mirror row read back (index into the requests).
    Mirror(u32),
    Null,
}

/// A key's state before a change: a row of this step, a mirror row, or nothing.
#[derive(Clone, Copy, Debug)]
enum Prior {
    Row(usize),
    Mirror(Loc),
    None,
}

/// One row to write: the change it is, and the values it takes from elsewhere.
struct Out {
    base: u32,
    fill: Vec<(usize, Cell)>,
}

enum Slot {
    Row(usize),
    Gone,
}

struct Fold<'a> {
    index: &'a KeyIndex,
    truncated: bool,
    state: HashMap<u128, Slot>,
    order: Vec<u128>,
    rows: Vec<Out>,
    requests: Vec<Loc>,
    requested: HashMap<Loc, u32>,
}

impl Fold<'_> {
    fn prior(&self, key: u128) -> Prior {
        match self.state.get(&key) {
            Some(Slot::Row(r)) => Prior::Row(*r),
            Some(Slot::Gone) => Prior::None,
            None if self.truncated => Prior::None,
            None => self.index.get(key).map_or(Prior::None, Prior::Mirror),
        }
    }

    /// The value of output column `col` in the state `prior`, given `base_of` (the change column
    /// of an output column).
    fn cell(&mut self, prior: Prior, col: usize, has_change_col: bool) -> Cell {
        match prior {
            Prior::Row(r) => {
                let out = &self.rows[r];
                match out.fill.iter().find(|(c, _)| *c == col) {
                    Some((_, cell)) => *cell,
                    None if has_change_col => Cell::Change(out.base),
                    None => Cell::Null,
                }
            }
            Prior::Mirror(loc) => {
                let next = self.requests.len() as u32;
                let n = *self.requested.entry(loc).or_insert(next);
                if n == next {
                    self.requests.push(loc);
                }
                Cell::Mirror(n)
            }
            Prior::None => Cell::Null,
        }
    }

    fn touch(&mut self, key: u128, slot: Slot) {
        if self.state.insert(key, slot).is_none() {
            self.order.push(key);
        }
    }
}

/// Fold `changes` over the mirror `table` whose live keys `index` holds. `schema` is the
/// mirror's current Arrow schema and `mirror_ids` its fields' ids, in order.
pub(crate) async fn fold(changes: &Changes, index: &KeyIndex, table: &Table) -> Result<Plan> {
    let md = table.metadata();
    let iceberg_schema = md.current_schema().clone();
    let schema: SchemaRef = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&iceberg_schema)
            .map_err(|e| crate::lake_error("cannot read the mirror's schema", e))?,
    );
    let mirror_ids: Vec<i32> = iceberg_schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.id)
        .collect();
    // Output column → its column among the changes (none for a field the changelog lacks).
    let change_col: Vec<Option<usize>> = mirror_ids
        .iter()
        .map(|id| changes.by_mirror_id.get(id).copied())
        .collect();
    // The changelog's current column names → output column, for `_cdc_unchanged`.
    let by_name: HashMap<String, usize> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().clone(), i))
        .collect();

    let b = &changes.batch;
    let keys = if changes.rows == 0 {
        Vec::new()
    } else {
        let cols: Vec<ArrayRef> = changes.key.iter().map(|i| b.column(*i).clone()).collect();
        key_hashes(&cols)?
    };
    let ops = b.column(changes.op).as_string::<i32>();
    let unchanged = b.column(changes.unchanged).as_list::<i32>();
    let lsn = b
        .column(
            b.schema()
                .index_of(philotes_sink_iceberg::table::LSN_COLUMN)
                .map_err(arrow_error)?,
        )
        .as_primitive::<Int64Type>()
        .clone();
    let seq = b
        .column(
            b.schema()
                .index_of(philotes_sink_iceberg::table::SEQ_COLUMN)
                .map_err(arrow_error)?,
        )
        .as_primitive::<Int64Type>()
        .clone();

    let mut f = Fold {
        index,
        truncated: false,
        state: HashMap::new(),
        order: Vec::new(),
        rows: Vec::new(),
        requests: Vec::new(),
        requested: HashMap::new(),
    };
    // The `D` just before, for a key change: (lsn, seq, key, its state before the delete).
    let mut last_delete: Option<(i64, i64, u128, Prior)> = None;
    for (i, &key) in keys.iter().enumerate().take(changes.rows) {
        let op = ops.value(i);
        let at = (lsn.value(i), seq.value(i));
        match op {
            "T" => {
                f.truncated = true;
                f.state.clear();
                f.order.clear();
                last_delete = None;
            }
            "D" => {
                let before = f.prior(key);
                f.touch(key, Slot::Gone);
                last_delete = Some((at.0, at.1, key, before));
            }
            "S" | "I" | "U" => {
                let mut fill = Vec::new();
                if !unchanged.is_null(i) {
                    let names = unchanged.value(i);
                    let names = names.as_string::<i32>();
                    let prior = match last_delete {
                        Some((l, s, k, before)) if l == at.0 && s + 1 == at.1 && k != key => before,
                        _ => f.prior(key),
                    };
                    for n in 0..names.len() {
                        if names.is_null(n) {
                            continue;
                        }
                        let Some(&col) = by_name.get(names.value(n)) else {
                            continue;
                        };
                        let cell = f.cell(prior, col, change_col[col].is_some());
                        fill.push((col, cell));
                    }
                }
                f.rows.push(Out {
                    base: i as u32,
                    fill,
                });
                let r = f.rows.len() - 1;
                f.touch(key, Slot::Row(r));
                last_delete = None;
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("the changelog holds a change with _cdc_op {other:?}"),
                ));
            }
        }
    }

    // Rows of the mirror's files: to delete (every touched key that had one) and to read back.
    let mut deletes = Vec::new();
    let mut written_rows = Vec::new();
    let (mut written, mut removed) = (Vec::new(), Vec::new());
    for key in &f.order {
        if !f.truncated
            && let Some((file, pos)) = index.get(*key)
        {
            deletes.push((index.files[file as usize].path.clone(), i64::from(pos)));
        }
        match f.state.get(key) {
            Some(Slot::Row(r)) => {
                written_rows.push(*r);
                written.push(*key);
            }
            _ => removed.push(*key),
        }
    }
    deletes.sort();

    // Read back the mirror rows unchanged values come from, one file at a time.
    let mut fetched: Vec<RecordBatch> = Vec::new();
    let mut where_fetched: Vec<(usize, u32)> = vec![(0, 0); f.requests.len()];
    let mut by_file: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
    for (n, (file, pos)) in f.requests.iter().enumerate() {
        by_file.entry(*file).or_default().push((n as u32, *pos));
    }
    let all_ids = mirror_ids.clone();
    for (file, wanted) in by_file {
        let whole = read_file(
            table,
            &iceberg_schema,
            &index.files[file as usize],
            &all_ids,
        )
        .await?;
        let positions: Vec<u32> = wanted.iter().map(|(_, p)| *p).collect();
        let rows = take_rows(&whole, &positions)?;
        for (j, (n, _)) in wanted.iter().enumerate() {
            where_fetched[*n as usize] = (fetched.len(), j as u32);
        }
        fetched.push(rows);
    }

    let batch = if written_rows.is_empty() {
        None
    } else {
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (c, field) in schema.fields().iter().enumerate() {
            let ty = field.data_type();
            let mut sources: Vec<ArrayRef> = Vec::with_capacity(2 + fetched.len());
            sources.push(match change_col[c] {
                Some(cc) => cast(b.column(cc), ty).map_err(arrow_error)?,
                None => new_null_array(ty, b.num_rows().max(1)),
            });
            for fb in &fetched {
                sources.push(cast(fb.column(c), ty).map_err(arrow_error)?);
            }
            let null_src = sources.len();
            sources.push(new_null_array(ty, 1));
            let indices: Vec<(usize, usize)> = written_rows
                .iter()
                .map(|r| {
                    let out = &f.rows[*r];
                    let cell = out
                        .fill
                        .iter()
                        .find(|(cc, _)| *cc == c)
                        .map(|(_, cell)| *cell)
                        .unwrap_or(if change_col[c].is_some() {
                            Cell::Change(out.base)
                        } else {
                            Cell::Null
                        });
                    match cell {
                        Cell::Change(row) => (0, row as usize),
                        Cell::Mirror(n) => {
                            let (fb, row) = where_fetched[n as usize];
                            (1 + fb, row as usize)
                        }
                        Cell::Null => (null_src, 0),
                    }
                })
                .collect();
            let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
            columns.push(interleave(&refs, &indices).map_err(arrow_error)?);
        }
        Some(RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)?)
    };
    Ok(Plan {
        batch,
        deletes,
        truncated: f.truncated,
        written,
        removed,
    })
}
