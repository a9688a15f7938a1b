//! Writing query results: an aligned table, CSV or JSON lines — batch by batch, so a result
//! larger than memory streams through.
//!
//! Values are shown as Philotes' users know them from PostgreSQL: a uuid (Iceberg keeps it as
//! 16 bytes) is written in its dashed form, lists and structs as text in CSV (which has no
//! nesting) and as JSON arrays/objects in JSON.

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches_with_options;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use philotes_core::{Error, ErrorKind, Result};

/// Output format of `philotes sql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned table; long results are printed in blocks of [`TABLE_BLOCK_ROWS`] rows.
    Table,
    Csv,
    /// One JSON object per row.
    Json,
}

/// Rows per block of the aligned table (a block's columns are aligned among themselves).
pub const TABLE_BLOCK_ROWS: usize = 10_000;

fn write_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::Disk,
        "cannot write the result (is the output closed?)",
    )
    .with_source(e)
}

fn options() -> FormatOptions<'static> {
    FormatOptions::new().with_null("NULL")
}

/// Write every batch of `stream` to `out`; returns the number of rows.
pub async fn write(
    mut stream: SendableRecordBatchStream,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let schema = display_schema(&stream.schema(), format);
    let mut rows = 0u64;
    let mut block: Vec<RecordBatch> = Vec::new();
    let mut block_rows = 0usize;
    let mut buf = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch =
            batch.map_err(|e| Error::new(ErrorKind::Invalid, "the query failed").with_source(e))?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        let batch = for_display(&batch, &schema, format)?;
        match format {
            Format::Csv => {
                // The header once, before the first rows.
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(rows == batch.num_rows() as u64)
                    .with_null(String::new())
                    .build(&mut buf);
                w.write(&batch).map_err(write_error)?;
            }
            Format::Json => {
                let mut w = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .with_encoder_factory(Arc::new(NonFiniteFloats))
                    .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut buf);
                w.write(&batch).map_err(write_error)?;
                w.finish().map_err(write_error)?;
            }
            Format::Table => {
                block_rows += batch.num_rows();
                block.push(batch);
                if block_rows >= TABLE_BLOCK_ROWS {
                    print_block(&block, &mut *out)?;
                    block.clear();
                    block_rows = 0;
                }
            }
        }
        out.write_all(&buf).map_err(write_error)?;
        buf.clear();
    }
    match format {
        Format::Table => {
            if !block.is_empty() || rows == 0 {
                if block.is_empty() {
                    block.push(RecordBatch::new_empty(schema.clone()));
                }
                print_block(&block, &mut *out)?;
            }
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })
                .map_err(write_error)?;
        }
        Format::Csv if rows == 0 => {
            // The header alone, so an empty result is still a valid CSV file.
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            writeln!(out, "{}", names.join(",")).map_err(write_error)?;
        }
        _ => {}
    }
    out.flush().map_err(write_error)?;
    Ok(rows)
}

/// JSON has no NaN or infinities (arrow-json writes them as `null`, which would turn a value
/// into a missing one): they are written as the strings PostgreSQL uses, `"NaN"`,
/// `"Infinity"` and `"-Infinity"`; finite floats stay numbers.
#[derive(Debug)]
struct NonFiniteFloats;

struct FloatEncoder<'a>(&'a dyn Array);

impl datafusion::arrow::json::writer::Encoder for FloatEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        use datafusion::arrow::array::{Float32Array, Float64Array};
        let any = self.0.as_any();
        let v = if let Some(a) = any.downcast_ref::<Float64Array>() {
            a.value(idx)
        } else if let Some(a) = any.downcast_ref::<Float32Array>() {
            // Through its shortest text, so 0.1f32 stays 0.1, not 0.10000000149011612.
            a.value(idx).to_string().parse().unwrap_or(f64::NAN)
        } else {
            f64::NAN
        };
        let text = if v.is_nan() {
            "\"NaN\"".to_string()
        } else if v.is_infinite() {
            if v > 0.0 {
                "\"Infinity\""
            } else {
                "\"-Infinity\""
            }
            .to_string()
        } else {
            format!("{v}")
        };
        out.extend_from_slice(text.as_bytes());
    }
}

impl datafusion::arrow::json::writer::EncoderFactory for NonFiniteFloats {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a datafusion::arrow::datatypes::FieldRef,
        array: &'a dyn Array,
        _options: &'a datafusion::arrow::json::writer::EncoderOptions,
    ) -> std::result::Result<
        Option<datafusion::arrow::json::writer::NullableEncoder<'a>>,
        datafusion::arrow::error::ArrowError,
    > {
        if !matches!(array.data_type(), DataType::Float32 | DataType::Float64) {
            return Ok(None);
        }
        Ok(Some(datafusion::arrow::json::writer::NullableEncoder::new(
            Box::new(FloatEncoder(array)),
            array.logical_nulls(),
        )))
    }
}

fn print_block(block: &[RecordBatch], out: &mut dyn Write) -> Result<()> {
    let table = pretty_format_batches_with_options(block, &options())
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot format the result").with_source(e))?;
    writeln!(out, "{table}").map_err(write_error)
}

/// The schema rows are written with: uuids as text; in CSV every nested value as text.
fn display_schema(schema: &SchemaRef, format: Format) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if needs_text(f.data_type(), format) {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn needs_text(t: &DataType, format: Format) -> bool {
    match t {
        DataType::FixedSizeBinary(16) => true,
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::Struct(_)
        | DataType::Map(_, _)
        | DataType::FixedSizeList(_, _) => format == Format::Csv,
        _ => false,
    }
}

fn for_display(batch: &RecordBatch, schema: &SchemaRef, format: Format) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for col in batch.columns() {
        columns.push(if needs_text(col.data_type(), format) {
            as_text(col.as_ref())?
        } else {
            col.clone()
        });
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot prepare the result").with_source(e))
}

fn as_text(col: &dyn Array) -> Result<ArrayRef> {
    if let Some(b) = col.as_any().downcast_ref::<FixedSizeBinaryArray>() {
        let values: StringArray = (0..b.len())
            .map(|i| b.is_valid(i).then(|| uuid_text(b.value(i))))
            .collect();
        return Ok(Arc::new(values));
    }
    let fmt = ArrayFormatter::try_new(col, &options())
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot format a value").with_source(e))?;
    let values: StringArray = (0..col.len())
        .map(|i| col.is_valid(i).then(|| fmt.value(i).to_string()))
        .collect();
    Ok(Arc::new(values))
}

/// 16 bytes as a uuid's text form.
fn uuid_text(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_dashed() {
        let b = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(uuid_text(&b), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }
}
