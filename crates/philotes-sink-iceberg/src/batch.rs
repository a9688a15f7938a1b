//! Rows into Arrow record batches of a changelog table's schema.
//!
//! A [`Batcher`] owns nothing but the table's column types and Arrow builders, so it can run on
//! any task: the streaming path keeps one inside the table, the initial copy runs one next to
//! the COPY reader while the table's own task encodes Parquet.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use iceberg::spec::Schema;
use philotes_core::{
    AsCell, Cell, CellRef, ColumnDesc, ColumnType, ConvertError, Error, ErrorKind, Lsn, Op, Result,
    RowBatcher,
};

use crate::binary::{binary_as_text, decode_binary};
use crate::convert::{ColumnBuilder, Value, parse_value};
use crate::evolve::lake_type;
use crate::table::META_COLUMNS;

/// Converts rows of one table into record batches.
pub struct Batcher {
    columns: Arc<[ColumnDesc]>,
    /// Per source column: the index of its field (and builder) in the schema.
    targets: Vec<usize>,
    /// Per source column: the lake type its values are written as (its field's type, which
    /// may be wider than the column's own after a type change).
    types: Vec<ColumnType>,
    /// The builder indexes of `_cdc_op`, `_cdc_lsn`, `_cdc_seq`, `_cdc_ts`, `_cdc_unchanged`.
    meta: [usize; 5],
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    len: usize,
    /// The allocation of `append`'s parsed values, kept between rows.
    scratch: Vec<Value<'static>>,
}

impl Batcher {
    /// A batcher writing source `columns` into the fields `ids` of `schema` (its Arrow form:
    /// `arrow`); fields no column is written to (dropped columns) get NULLs.
    pub fn new(
        columns: Arc<[ColumnDesc]>,
        schema: &Schema,
        arrow: SchemaRef,
        ids: &[i32],
    ) -> Result<Batcher> {
        let fields = schema.as_struct().fields();
        let internal = |m: String| Error::new(ErrorKind::Internal, m);
        let index_of = |id: i32| {
            fields
                .iter()
                .position(|f| f.id == id)
                .ok_or_else(|| internal(format!("field {id} is not in the table schema")))
        };
        let mut builders = Vec::with_capacity(fields.len());
        let mut field_types = Vec::with_capacity(fields.len());
        for (f, af) in fields.iter().zip(arrow.fields()) {
            let ty = lake_type(&f.field_type).ok_or_else(|| {
                internal(format!(
                    "column {} has a type Philotes does not write",
                    f.name
                ))
            })?;
            builders.push(
                ColumnBuilder::new(&ty, af.data_type())
                    .map_err(|m| internal(m).with("column", &f.name))?,
            );
            field_types.push(ty);
        }
        let targets = ids
            .iter()
            .map(|&id| index_of(id))
            .collect::<Result<Vec<_>>>()?;
        let types = targets.iter().map(|&i| field_types[i].clone()).collect();
        let mut meta = [0; 5];
        for (slot, name) in meta.iter_mut().zip(META_COLUMNS) {
            *slot = fields
                .iter()
                .position(|f| f.name == name)
                .ok_or_else(|| internal(format!("the table has no {name} column")))?;
        }
        Ok(Batcher {
            columns,
            targets,
            types,
            meta,
            schema: arrow,
            builders,
            len: 0,
            scratch: Vec::new(),
        })
    }

    /// A batcher that refuses every row (for a table whose schema could not be mapped).
    pub(crate) fn empty(schema: SchemaRef) -> Batcher {
        Batcher {
            columns: Arc::from(Vec::new()),
            targets: Vec::new(),
            types: Vec::new(),
            meta: [0; 5],
            schema,
            builders: Vec::new(),
            len: 0,
            scratch: Vec::new(),
        }
    }
}

/// A value decoded as its column's own type, in the (wider) type of the field it goes to.
fn widen<'a>(v: Value<'a>, to: &ColumnType) -> Value<'a> {
    match (v, to) {
        (Value::I32(x), ColumnType::Int64) => Value::I64(i64::from(x)),
        (Value::F32(x), ColumnType::Float64) => Value::F64(f64::from(x)),
        (v, _) => v,
    }
}

/// An empty vector of values with another lifetime, keeping the allocation (the in-place
/// `collect` of an emptied vector reuses its buffer), so rows cost no allocation of their own.
fn reuse<'b>(mut values: Vec<Value<'_>>) -> Vec<Value<'b>> {
    values.clear();
    values.into_iter().map(|_| Value::Null).collect()
}

impl RowBatcher for Batcher {
    type Batch = RecordBatch;

    fn append<C: AsCell>(
        &mut self,
        op: Op,
        row: &[C],
        lsn: Lsn,
        seq: i64,
        ts_us: i64,
    ) -> std::result::Result<(), ConvertError> {
        if row.len() != self.columns.len() {
            return Err(ConvertError {
                column: String::new(),
                message: format!(
                    "the change has {} columns, the table has {}",
                    row.len(),
                    self.columns.len()
                ),
            });
        }
        // Parse everything first, so a bad value leaves no half-written row.
        let mut values = reuse(std::mem::take(&mut self.scratch));
        values.resize_with(self.builders.len(), || Value::Null);
        let mut unchanged: Vec<Value<'_>> = Vec::new();
        for (i, (cell, col)) in row.iter().zip(self.columns.iter()).enumerate() {
            let ty = &self.types[i];
            let parsed = match cell.as_cell() {
                CellRef::Null => Ok(Value::Null),
                CellRef::Unchanged => {
                    unchanged.push(Value::Str(self.schema.field(self.targets[i]).name()));
                    Ok(Value::Null)
                }
                CellRef::Text(b) => parse_value(ty, b),
                CellRef::Binary(b) => decode_binary(col.type_oid, &col.ty, b).map(|v| widen(v, ty)),
            };
            match parsed {
                Ok(v) => values[self.targets[i]] = v,
                Err(message) => {
                    self.scratch = reuse(values);
                    return Err(ConvertError {
                        column: col.name.clone(),
                        message,
                    });
                }
            }
        }
        let [op_i, lsn_i, seq_i, ts_i, unchanged_i] = self.meta;
        values[op_i] = Value::Str(op.code());
        values[lsn_i] = Value::I64(lsn.as_i64());
        values[seq_i] = Value::I64(seq);
        values[ts_i] = Value::I64(ts_us);
        values[unchanged_i] = if unchanged.is_empty() {
            Value::Null
        } else {
            Value::List(unchanged)
        };
        let appended = self
            .builders
            .iter_mut()
            .zip(&values)
            .try_for_each(|(b, v)| b.append(v));
        self.scratch = reuse(values);
        appended.map_err(|message| ConvertError {
            column: String::new(),
            message,
        })?;
        self.len += 1;
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }

    fn owned_row<C: AsCell>(&self, row: &[C]) -> Vec<Cell> {
        row.iter()
            .zip(self.columns.iter())
            .map(|(c, col)| match c.as_cell() {
                CellRef::Binary(b) => binary_as_text(col.type_oid, &col.ty, b)
                    .map(|t| Cell::Text(t.into()))
                    .unwrap_or_else(|| Cell::Binary(Bytes::copy_from_slice(b))),
                other => other.to_owned_cell(),
            })
            .collect()
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays = Vec::with_capacity(self.builders.len());
        for b in &mut self.builders {
            arrays.push(b.finish().map_err(|m| Error::new(ErrorKind::Internal, m))?);
        }
        self.len = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot assemble a record batch").with_source(e)
        })
    }
}
