//! Rows into Arrow record batches of a changelog table's schema.
//!
//! A [`Batcher`] owns nothing but the table's column types and Arrow builders, so it can run on
//! any task: the streaming path keeps one inside the table, the initial copy runs one next to
//! the COPY reader while the table's own task encodes Parquet.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use philotes_core::{
    AsCell, Cell, CellRef, ColumnDesc, ColumnType, ConvertError, Error, ErrorKind, Lsn, Op, Result,
    RowBatcher,
};

use crate::binary::{binary_as_text, decode_binary};
use crate::convert::{ColumnBuilder, Value, parse_value};

/// Converts rows of one table into record batches.
pub struct Batcher {
    columns: Arc<[ColumnDesc]>,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    len: usize,
    /// The allocation of `append`'s parsed values, kept between rows.
    scratch: Vec<Value<'static>>,
}

/// The lake types of the `_cdc_*` columns, in order.
fn meta_types() -> [ColumnType; 5] {
    [
        ColumnType::Text,
        ColumnType::Int64,
        ColumnType::Int64,
        ColumnType::Timestamptz,
        ColumnType::List(Box::new(ColumnType::Text)),
    ]
}

impl Batcher {
    pub fn new(columns: Arc<[ColumnDesc]>, schema: SchemaRef) -> Result<Batcher> {
        let meta = meta_types();
        let types = columns.iter().map(|c| &c.ty).chain(meta.iter());
        let mut builders = Vec::with_capacity(schema.fields().len());
        for (ty, field) in types.zip(schema.fields()) {
            builders
                .push(ColumnBuilder::new(ty, field.data_type()).map_err(|m| {
                    Error::new(ErrorKind::Internal, m).with("column", field.name())
                })?);
        }
        Ok(Batcher {
            columns,
            schema,
            builders,
            len: 0,
            scratch: Vec::new(),
        })
    }
}

impl Batcher {
    /// A batcher that refuses every row (for a table whose schema could not be mapped).
    pub(crate) fn empty(schema: SchemaRef) -> Batcher {
        Batcher {
            columns: Arc::from(Vec::new()),
            schema,
            builders: Vec::new(),
            len: 0,
            scratch: Vec::new(),
        }
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
        let mut unchanged: Vec<Value<'_>> = Vec::new();
        for (cell, col) in row.iter().zip(self.columns.iter()) {
            let parsed = match cell.as_cell() {
                CellRef::Null => Ok(Value::Null),
                CellRef::Unchanged => {
                    unchanged.push(Value::Str(col.name.as_str()));
                    Ok(Value::Null)
                }
                CellRef::Text(b) => parse_value(&col.ty, b),
                CellRef::Binary(b) => decode_binary(col.type_oid, &col.ty, b),
            };
            match parsed {
                Ok(v) => values.push(v),
                Err(message) => {
                    self.scratch = reuse(values);
                    return Err(ConvertError {
                        column: col.name.clone(),
                        message,
                    });
                }
            }
        }
        values.push(Value::Str(op.code()));
        values.push(Value::I64(lsn.as_i64()));
        values.push(Value::I64(seq));
        values.push(Value::I64(ts_us));
        values.push(if unchanged.is_empty() {
            Value::Null
        } else {
            Value::List(unchanged)
        });
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
