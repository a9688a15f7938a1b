//! Rows into Arrow record batches of a changelog table's schema.
//!
//! A [`Batcher`] owns nothing but the table's column types and Arrow builders, so it can run on
//! any task: the streaming path keeps one inside the table, the initial copy runs one next to
//! the COPY reader while the table's own task encodes Parquet.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use philotes_core::{
    Cell, ColumnDesc, ColumnType, ConvertError, Error, ErrorKind, Lsn, Op, Result, RowBatcher,
};

use crate::convert::{ColumnBuilder, Value, parse_value};

/// Converts rows of one table into record batches.
pub struct Batcher {
    columns: Arc<[ColumnDesc]>,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    len: usize,
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
        }
    }
}

impl RowBatcher for Batcher {
    type Batch = RecordBatch;

    fn append(
        &mut self,
        op: Op,
        row: &[Cell],
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
        let mut values: Vec<Value<'_>> = Vec::with_capacity(row.len() + 5);
        let mut unchanged: Vec<Value<'_>> = Vec::new();
        for (cell, col) in row.iter().zip(self.columns.iter()) {
            values.push(match cell {
                Cell::Null => Value::Null,
                Cell::Unchanged => {
                    unchanged.push(Value::Str(col.name.as_str()));
                    Value::Null
                }
                Cell::Text(b) => parse_value(&col.ty, b).map_err(|message| ConvertError {
                    column: col.name.clone(),
                    message,
                })?,
            });
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
        for (b, v) in self.builders.iter_mut().zip(&values) {
            b.append(v).map_err(|message| ConvertError {
                column: String::new(),
                message,
            })?;
        }
        self.len += 1;
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
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
