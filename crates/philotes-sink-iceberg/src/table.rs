//! One changelog table: its schema, its open Parquet files, and exactly-once commits.
//!
//! Rows are converted into Arrow builders; every `batch_rows` rows the builders are encoded into
//! the table's open (rolling) Parquet file, so a large transaction streams to disk instead of
//! memory. Nothing becomes visible until [`ChangelogTable::commit`], which appends the files in
//! one Iceberg snapshot whose summary records the table's watermark: every source transaction
//! that committed before the watermark LSN is in the table, none after. After a crash the
//! pipeline reads the watermark back and skips what the table already holds.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use iceberg::spec::{DataFileFormat, ListType, NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use philotes_core::{
    Cell, ColumnDesc, ColumnType, ConvertError, Error, ErrorKind, Lsn, Op, Result, RowBatcher,
    TableName, TableProgress, TableSink,
};

use crate::batch::Batcher;
use crate::catalog::sink_error;

pub const OP_COLUMN: &str = "_cdc_op";
pub const LSN_COLUMN: &str = "_cdc_lsn";
pub const SEQ_COLUMN: &str = "_cdc_seq";
pub const TS_COLUMN: &str = "_cdc_ts";
pub const UNCHANGED_COLUMN: &str = "_cdc_unchanged";
const META_COLUMNS: [&str; 5] = [
    OP_COLUMN,
    LSN_COLUMN,
    SEQ_COLUMN,
    TS_COLUMN,
    UNCHANGED_COLUMN,
];

/// Snapshot summary keys Philotes writes on every commit.
pub const WATERMARK_KEY: &str = "philotes.watermark-lsn";
pub const SNAPSHOT_KEY: &str = "philotes.snapshot-lsn";
pub const SOURCE_KEY: &str = "philotes.source-table";

/// How often a failed commit is tried before the pipeline gives up (and resumes after restart).
const COMMIT_ATTEMPTS: u32 = 5;

/// Target size of one Parquet data file.
const TARGET_FILE_BYTES: usize = 128 * 1024 * 1024;

type Writer =
    DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// A changelog table open for writing.
pub struct ChangelogTable {
    catalog: Arc<dyn Catalog>,
    table: Table,
    pub source: TableName,
    columns: Arc<[ColumnDesc]>,
    arrow_schema: SchemaRef,
    batcher: Batcher,
    batch_rows: usize,
    writer: Option<Writer>,
    pending: u64,
    progress: TableProgress,
}

/// The Iceberg table name for a source table.
pub fn table_ident(source: &TableName, namespace: Option<&str>) -> TableIdent {
    match namespace {
        Some(ns) => TableIdent::new(
            NamespaceIdent::new(ns.to_string()),
            format!("{}__{}__changelog", source.schema, source.name),
        ),
        None => TableIdent::new(
            NamespaceIdent::new(source.schema.clone()),
            format!("{}__changelog", source.name),
        ),
    }
}

fn iceberg_type(ty: &ColumnType, next_id: &mut i32) -> Type {
    Type::Primitive(match ty {
        ColumnType::Int32 => PrimitiveType::Int,
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float32 => PrimitiveType::Float,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::Decimal { precision, scale } => PrimitiveType::Decimal {
            precision: u32::from(*precision),
            scale: u32::from(*scale),
        },
        ColumnType::Bool => PrimitiveType::Boolean,
        ColumnType::Text => PrimitiveType::String,
        ColumnType::Bytea => PrimitiveType::Binary,
        ColumnType::Date => PrimitiveType::Date,
        ColumnType::Time => PrimitiveType::Time,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
        ColumnType::Timestamptz => PrimitiveType::Timestamptz,
        ColumnType::Uuid => PrimitiveType::Uuid,
        ColumnType::List(elem) => {
            *next_id += 1;
            let id = *next_id;
            let elem_ty = iceberg_type(elem, next_id);
            return Type::List(ListType::new(
                NestedField::list_element(id, elem_ty, false).into(),
            ));
        }
    })
}

/// The changelog schema: the source columns, then the `_cdc_*` columns.
pub fn changelog_schema(columns: &[ColumnDesc]) -> Result<Schema> {
    let top = i32::try_from(columns.len() + META_COLUMNS.len())
        .map_err(|_| Error::new(ErrorKind::Invalid, "too many columns"))?;
    // Top-level fields are numbered first, nested ones after (as Iceberg itself assigns them).
    let mut next_id = top;
    let mut fields = Vec::with_capacity(top as usize);
    for (i, c) in columns.iter().enumerate() {
        if META_COLUMNS.contains(&c.name.as_str()) {
            return Err(Error::new(
                ErrorKind::SchemaChange,
                format!(
                    "source column {} clashes with a Philotes metadata column; rename it",
                    c.name
                ),
            ));
        }
        let ty = iceberg_type(&c.ty, &mut next_id);
        fields.push(NestedField::optional(i as i32 + 1, c.name.clone(), ty).into());
    }
    let base = columns.len() as i32;
    fields.push(
        NestedField::required(base + 1, OP_COLUMN, Type::Primitive(PrimitiveType::String)).into(),
    );
    fields.push(
        NestedField::required(base + 2, LSN_COLUMN, Type::Primitive(PrimitiveType::Long)).into(),
    );
    fields.push(
        NestedField::required(base + 3, SEQ_COLUMN, Type::Primitive(PrimitiveType::Long)).into(),
    );
    fields.push(
        NestedField::required(
            base + 4,
            TS_COLUMN,
            Type::Primitive(PrimitiveType::Timestamptz),
        )
        .into(),
    );
    next_id += 1;
    let elem = NestedField::list_element(next_id, Type::Primitive(PrimitiveType::String), true);
    fields.push(
        NestedField::optional(
            base + 5,
            UNCHANGED_COLUMN,
            Type::List(ListType::new(elem.into())),
        )
        .into(),
    );
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| sink_error("cannot build the changelog schema", e))
}

/// Read the newest Philotes progress from a table's snapshot history (other writers may have
/// committed after us without our summary keys).
pub fn read_progress(table: &Table) -> Result<TableProgress> {
    let md = table.metadata();
    let mut snap = md.current_snapshot().cloned();
    while let Some(s) = snap {
        let props = &s.summary().additional_properties;
        if let Some(w) = props.get(WATERMARK_KEY) {
            let watermark = Some(w.parse::<Lsn>()?);
            let snapshot_lsn = match props.get(SNAPSHOT_KEY) {
                Some(v) if !v.is_empty() => Some(v.parse::<Lsn>()?),
                _ => None,
            };
            return Ok(TableProgress {
                watermark,
                snapshot_lsn,
            });
        }
        snap = s
            .parent_snapshot_id()
            .and_then(|id| md.snapshot_by_id(id).cloned());
    }
    Ok(TableProgress::default())
}

/// The progress recorded in an existing changelog table; the default when it does not exist.
pub async fn stored_progress(catalog: &dyn Catalog, ident: &TableIdent) -> Result<TableProgress> {
    match catalog.load_table(ident).await {
        Ok(t) => read_progress(&t),
        Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => Ok(TableProgress::default()),
        Err(e) => Err(sink_error(format!("cannot load table {ident}"), e)),
    }
}

impl ChangelogTable {
    /// Load the changelog table of `source`, creating it (and its namespace) on first sight.
    pub async fn open(
        catalog: Arc<dyn Catalog>,
        ident: TableIdent,
        source: &TableName,
        columns: &[ColumnDesc],
        batch_rows: usize,
    ) -> Result<ChangelogTable> {
        let schema = changelog_schema(columns)?;
        let ns = ident.namespace().clone();
        // load first (some REST catalogs do not answer HEAD, which `table_exists` uses)
        let loaded = match catalog.load_table(&ident).await {
            Ok(t) => Some(t),
            Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => None,
            Err(e) => return Err(sink_error(format!("cannot load table {ident}"), e)),
        };
        let table = if let Some(t) = loaded {
            t
        } else {
            let exists = match catalog.get_namespace(&ns).await {
                Ok(_) => true,
                Err(e) if e.kind() == iceberg::ErrorKind::NamespaceNotFound => false,
                Err(e) => return Err(sink_error(format!("cannot look up namespace {ns:?}"), e)),
            };
            if !exists {
                match catalog.create_namespace(&ns, HashMap::new()).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == iceberg::ErrorKind::NamespaceAlreadyExists => {}
                    Err(e) => return Err(sink_error(format!("cannot create namespace {ns:?}"), e)),
                }
            }
            let creation = TableCreation::builder()
                .name(ident.name().to_string())
                .schema(schema.clone())
                .properties(HashMap::from([
                    (
                        "write.parquet.compression-codec".to_string(),
                        "zstd".to_string(),
                    ),
                    (SOURCE_KEY.to_string(), source.to_string()),
                    // Iceberg's own retry re-applies a commit without checking whether an
                    // uncertain attempt landed; `commit` retries itself, watermark first.
                    ("commit.retry.num-retries".to_string(), "0".to_string()),
                ]))
                .build();
            let t = catalog
                .create_table(&ns, creation)
                .await
                .map_err(|e| sink_error(format!("cannot create table {ident}"), e))?;
            tracing::info!(table = %ident, "created changelog table");
            t
        };
        let current = table.metadata().current_schema().clone();
        check_schema(&current, &schema, source)?;
        let arrow_schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&current)
                .map_err(|e| sink_error("cannot map the table schema to Arrow", e))?,
        );
        let columns: Arc<[ColumnDesc]> = columns.into();
        let batcher = Batcher::new(columns.clone(), arrow_schema.clone())
            .map_err(|e| e.with("table", source))?;
        let progress = read_progress(&table)?;
        Ok(ChangelogTable {
            catalog,
            table,
            source: source.clone(),
            columns,
            arrow_schema,
            batcher,
            batch_rows,
            writer: None,
            pending: 0,
            progress,
        })
    }

    pub fn ident(&self) -> &TableIdent {
        self.table.identifier()
    }

    pub fn columns(&self) -> &[ColumnDesc] {
        &self.columns
    }

    async fn write_buffered(&mut self) -> Result<()> {
        if self.batcher.is_empty() {
            return Ok(());
        }
        let batch = self
            .batcher
            .finish()
            .map_err(|e| e.with("table", &self.source))?;
        self.encode(batch).await
    }

    async fn encode(&mut self, batch: RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            self.writer = Some(self.new_writer().await?);
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(batch).await.map_err(|e| {
                sink_error("cannot write a Parquet data file", e).with("table", &self.source)
            })?;
        }
        Ok(())
    }

    async fn new_writer(&self) -> Result<Writer> {
        let md = self.table.metadata();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(|e| {
                Error::new(ErrorKind::Internal, "bad zstd level").with_source(e)
            })?))
            .set_max_row_group_row_count(Some(131_072))
            // Always unique: a dictionary only costs time and is then dropped.
            .set_column_dictionary_enabled(ColumnPath::from(SEQ_COLUMN), false)
            // High-cardinality columns give up on their dictionary sooner.
            .set_dictionary_page_size_limit(256 * 1024)
            .build();
        let parquet = ParquetWriterBuilder::new(props, md.current_schema().clone());
        let locations = DefaultLocationGenerator::new(md)
            .map_err(|e| sink_error("cannot place data files", e).with("table", &self.source))?;
        // A unique prefix per writer: file names never collide with files of an earlier run.
        let names = DefaultFileNameGenerator::new(
            format!("philotes-{}", uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        );
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            TARGET_FILE_BYTES,
            self.table.file_io().clone(),
            locations,
            names,
        );
        DataFileWriterBuilder::new(rolling)
            .build(None)
            .await
            .map_err(|e| {
                sink_error("cannot open a Parquet data file", e).with("table", &self.source)
            })
    }
}

impl TableSink for ChangelogTable {
    type Batcher = Batcher;

    fn batcher(&self) -> Batcher {
        // The table's own batcher was built from the same columns and schema, so this cannot
        // fail; should it ever, the error surfaces on the first append.
        Batcher::new(self.columns.clone(), self.arrow_schema.clone())
            .unwrap_or_else(|_| Batcher::empty(self.arrow_schema.clone()))
    }

    async fn write_batch(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending += batch.num_rows() as u64;
        self.encode(batch).await
    }

    fn progress(&self) -> TableProgress {
        self.progress
    }

    /// Rows appended since the last commit.
    fn pending(&self) -> u64 {
        self.pending
    }

    /// Append one change. `row` holds the source columns in order; `unchanged` lists the
    /// columns whose values the stream did not resend (TOAST).
    fn append(
        &mut self,
        op: Op,
        row: &[Cell],
        lsn: Lsn,
        seq: i64,
        ts_us: i64,
    ) -> std::result::Result<(), ConvertError> {
        self.batcher.append(op, row, lsn, seq, ts_us)?;
        self.pending += 1;
        Ok(())
    }

    /// Encode buffered rows into the open Parquet file once a batch is full.
    async fn write_if_full(&mut self) -> Result<()> {
        if self.batcher.len() >= self.batch_rows {
            self.write_buffered().await?;
        }
        Ok(())
    }

    /// Drop everything appended since the last commit (its files are never committed).
    fn discard(&mut self) {
        self.writer = None;
        let _ = self.batcher.finish();
        self.pending = 0;
    }

    /// Commit everything appended so far as one Iceberg snapshot recording `progress`.
    async fn commit(&mut self, progress: TableProgress) -> Result<()> {
        self.write_buffered().await?;
        let files = match self.writer.take() {
            Some(mut w) => w.close().await.map_err(|e| {
                sink_error("cannot finish a Parquet data file", e).with("table", &self.source)
            })?,
            None => Vec::new(),
        };
        let mut props = HashMap::new();
        if let Some(w) = progress.watermark {
            props.insert(WATERMARK_KEY.to_string(), w.to_string());
        }
        props.insert(
            SNAPSHOT_KEY.to_string(),
            progress
                .snapshot_lsn
                .map(|l| l.to_string())
                .unwrap_or_default(),
        );
        let mut attempt = 0u32;
        loop {
            let tx = Transaction::new(&self.table);
            let tx = tx
                .fast_append()
                .add_data_files(files.clone())
                .set_snapshot_properties(props.clone())
                .apply(tx)
                .map_err(|e| {
                    sink_error("cannot prepare the Iceberg commit", e).with("table", &self.source)
                })?;
            let err = match tx.commit(self.catalog.as_ref()).await {
                Ok(table) => {
                    self.table = table;
                    break;
                }
                Err(e) => e,
            };
            attempt += 1;
            // The commit may have landed even though we saw an error: look before retrying,
            // or the same changes would be committed twice.
            if let Ok(table) = self.catalog.load_table(self.table.identifier()).await {
                let landed = progress.watermark.is_some()
                    && read_progress(&table)?.watermark == progress.watermark;
                self.table = table;
                if landed {
                    break;
                }
            }
            if attempt >= COMMIT_ATTEMPTS {
                return Err(sink_error(
                    format!(
                        "cannot commit to Iceberg after {attempt} attempts; the changes will be written again after a restart"
                    ),
                    err,
                )
                .with("table", &self.source));
            }
            tracing::warn!(table = %self.source, attempt, error = %err, "Iceberg commit failed, retrying");
            tokio::time::sleep(std::time::Duration::from_millis(200 * 2u64.pow(attempt))).await;
        }
        self.progress = progress;
        self.pending = 0;
        Ok(())
    }
}

/// The existing table must have the columns the source has now, with the same types.
fn check_schema(current: &Schema, wanted: &Schema, source: &TableName) -> Result<()> {
    let have: Vec<(String, String)> = current
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), type_shape(&f.field_type)))
        .collect();
    let want: Vec<(String, String)> = wanted
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), type_shape(&f.field_type)))
        .collect();
    if have != want {
        return Err(Error::new(
            ErrorKind::SchemaChange,
            "the source table's columns differ from its changelog table's (the source schema changed while Philotes was not running); schema evolution comes in a later version: until then restore the old schema or drop the changelog table to copy the table again",
        )
        .with("table", source));
    }
    Ok(())
}

fn type_shape(t: &Type) -> String {
    match t {
        Type::List(l) => format!("list<{}>", type_shape(&l.element_field.field_type)),
        other => other.to_string(),
    }
}
