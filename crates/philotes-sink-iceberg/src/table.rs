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
use iceberg::spec::{
    DataFile, DataFileFormat, ListType, NestedField, PrimitiveType, Schema, StructType, Type,
};
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
use crate::catalog::{DELETE_AFTER_COMMIT, Guard, Lake, PREVIOUS_VERSIONS_MAX, sink_error};
use crate::evolve::{ATTNUMS_KEY, Attnums, format_attnums, parse_attnums, plan};

pub const OP_COLUMN: &str = "_cdc_op";
pub const LSN_COLUMN: &str = "_cdc_lsn";
pub const SEQ_COLUMN: &str = "_cdc_seq";
pub const TS_COLUMN: &str = "_cdc_ts";
pub const UNCHANGED_COLUMN: &str = "_cdc_unchanged";
pub(crate) const META_COLUMNS: [&str; 5] = [
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
/// Table property set by changelog retention: the LSN of the newest change folded into the base
/// (one row per key, its last change); the changelog answers for positions from here on.
pub const RETENTION_CUT_LSN_KEY: &str = "philotes.retention-cut-lsn";
/// Table property: the source commit time of the newest folded change (RFC 3339); time travel
/// answers for times from here on.
pub const RETENTION_CUT_TS_KEY: &str = "philotes.retention-cut-ts";
/// Table property: why the table must be copied again before it can stream (until it is).
pub const NEEDS_RESYNC_KEY: &str = "philotes.needs-resync";
/// Table property: the table's changes go through a control database (`philotes ingest` and
/// workers), named here by its pipeline. `run` must not write such a table: the changes between
/// its watermark and the slot's position are in that buffer, not in the slot.
pub const BUFFERED_BY_KEY: &str = "philotes.buffered-by";
/// Table property: the field ids of the source table's key (replica identity) columns,
/// comma-separated — what "per key" means for the current state (`philotes sql`). Field ids,
/// not names, so a renamed key column stays the key.
pub const KEY_FIELDS_KEY: &str = "philotes.key-field-ids";
/// Table property of a mirror table (crate `philotes-mirror`): the changelog it mirrors.
pub const MIRROR_OF_KEY: &str = "philotes.mirror-of";

/// How often a failed commit is tried before the pipeline gives up (and resumes after restart).
const COMMIT_ATTEMPTS: u32 = 5;

/// The wait before commit attempt `attempt` + 1: 0.4 s doubling, with jitter.
fn commit_backoff(attempt: u32) -> std::time::Duration {
    philotes_core::retry::backoff(
        attempt,
        std::time::Duration::from_millis(400),
        std::time::Duration::from_secs(10),
    )
}
/// How often a commit that lost a race (to maintenance, say) is tried again at once.
const CONFLICT_ATTEMPTS: u32 = 20;
/// Earlier metadata files a table's metadata log keeps (Iceberg's default is 100; each one
/// lists every retained snapshot, so fewer save storage and nothing needs more).
const METADATA_VERSIONS_KEPT: &str = "10";

/// Target size of one Parquet data file.
const TARGET_FILE_BYTES: usize = 128 * 1024 * 1024;

/// The writer of a table's data files.
pub type Writer =
    DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// A changelog table open for writing.
pub struct ChangelogTable {
    lake: Lake,
    table: Table,
    pub source: TableName,
    columns: Arc<[ColumnDesc]>,
    /// Per source column, the field id it is written to.
    ids: Arc<[i32]>,
    /// Field id → source attnum, as last seen.
    attnums: Attnums,
    arrow_schema: SchemaRef,
    batcher: Batcher,
    batch_rows: usize,
    writer: Option<Writer>,
    /// Files finished before a schema change, committed with the next commit.
    closed: Vec<DataFile>,
    pending: u64,
    progress: TableProgress,
    /// A schema change at open needs a new copy of the table.
    recopy: bool,
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

pub(crate) fn iceberg_type(ty: &ColumnType, next_id: &mut i32) -> Type {
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
        ColumnType::Struct(fields) => {
            // Ids for this level first, then for what is nested inside (as for top level).
            let first = *next_id + 1;
            *next_id += fields.len() as i32;
            let nested = fields
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| {
                    let ty = iceberg_type(ty, next_id);
                    NestedField::optional(first + i as i32, name.clone(), ty).into()
                })
                .collect();
            return Type::Struct(StructType::new(nested));
        }
    })
}

/// A source column may not take the name of a `_cdc_*` column.
pub(crate) fn reject_meta_name(name: &str) -> Result<()> {
    if META_COLUMNS.contains(&name) {
        return Err(Error::new(
            ErrorKind::SchemaChange,
            format!("source column {name} clashes with a Philotes metadata column; rename it"),
        ));
    }
    Ok(())
}

/// The changelog schema: the source columns, then the `_cdc_*` columns.
pub fn changelog_schema(columns: &[ColumnDesc]) -> Result<Schema> {
    let top = i32::try_from(columns.len() + META_COLUMNS.len())
        .map_err(|_| Error::new(ErrorKind::Invalid, "too many columns"))?;
    // Top-level fields are numbered first, nested ones after (as Iceberg itself assigns them).
    let mut next_id = top;
    let mut fields = Vec::with_capacity(top as usize);
    for (i, c) in columns.iter().enumerate() {
        reject_meta_name(&c.name)?;
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

/// A batcher that converts rows of the source's `columns` (as they are now) exactly as the
/// pipeline writes them into `table`, so `philotes verify` can compare the source with the lake
/// value by value. Columns the table has not seen yet get the fields the pipeline would add.
pub fn source_batcher(table: &Table, columns: &[ColumnDesc]) -> Result<Batcher> {
    let md = table.metadata();
    let known = parse_attnums(md.properties().get(ATTNUMS_KEY));
    let plan = plan(md, &known, columns, Lsn::default())?;
    let schema = plan
        .schema
        .unwrap_or_else(|| md.current_schema().as_ref().clone());
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| sink_error("cannot map the table schema to Arrow", e))?,
    );
    Batcher::new(columns.into(), &schema, arrow, &plan.ids)
}

/// The source attnums an existing changelog table knows (empty when it does not exist yet).
pub async fn stored_attnums(catalog: &dyn Catalog, ident: &TableIdent) -> Result<Attnums> {
    match catalog.load_table(ident).await {
        Ok(t) => Ok(parse_attnums(t.metadata().properties().get(ATTNUMS_KEY))),
        Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => Ok(Attnums::default()),
        Err(e) => Err(sink_error(format!("cannot load table {ident}"), e)),
    }
}

impl ChangelogTable {
    /// Load the changelog table of `source`, creating it (and its namespace) on first sight.
    pub async fn open(
        lake: &Lake,
        ident: TableIdent,
        source: &TableName,
        columns: &[ColumnDesc],
        batch_rows: usize,
    ) -> Result<ChangelogTable> {
        let catalog = lake.catalog.clone();
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
                    (DELETE_AFTER_COMMIT.to_string(), "true".to_string()),
                    (
                        PREVIOUS_VERSIONS_MAX.to_string(),
                        METADATA_VERSIONS_KEPT.to_string(),
                    ),
                    (ATTNUMS_KEY.to_string(), initial_attnums(columns)),
                ]))
                .build();
            let t = catalog
                .create_table(&ns, creation)
                .await
                .map_err(|e| sink_error(format!("cannot create table {ident}"), e))?;
            tracing::info!(table = %ident, "created changelog table");
            t
        };
        let progress = read_progress(&table)?;
        let attnums = parse_attnums(table.metadata().properties().get(ATTNUMS_KEY));
        let arrow_schema = arrow_schema_of(&table)?;
        let batcher = Batcher::empty(arrow_schema.clone());
        let mut t = ChangelogTable {
            lake: lake.clone(),
            table,
            source: source.clone(),
            columns: Arc::from(Vec::new()),
            ids: Arc::from(Vec::new()),
            attnums,
            arrow_schema,
            batcher,
            batch_rows,
            writer: None,
            closed: Vec::new(),
            pending: 0,
            progress,
            recopy: false,
        };
        // The source may have changed while Philotes was not running.
        let at = progress.watermark.unwrap_or_default();
        t.recopy = t.follow(columns, at).await? && progress.snapshot_lsn.is_some();
        Ok(t)
    }

    /// Write `columns` (the source table's shape as of `lsn`) from now on: match them to the
    /// table's fields, evolving the schema first when they do not fit (see [`crate::evolve`]).
    async fn follow(&mut self, columns: &[ColumnDesc], lsn: Lsn) -> Result<bool> {
        let plan = plan(self.table.metadata(), &self.attnums, columns, lsn)
            .map_err(|e| e.with("table", &self.source))?;
        // Rows so far belong to the old shape: encode them before anything changes.
        self.write_buffered().await?;
        if let Some(schema) = plan.schema {
            // Files are written under one schema: finish the open one.
            if let Some(mut w) = self.writer.take() {
                let files = w.close().await.map_err(|e| {
                    sink_error("cannot finish a Parquet data file", e).with("table", &self.source)
                })?;
                self.closed.extend(files);
            }
            // Maintenance may have committed since we last looked: build on the table as it is.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let md = self.table.metadata().clone();
                let location = self.table.metadata_location().map(str::to_string);
                let built = md
                    .into_builder(location)
                    .add_current_schema(schema.clone())
                    .and_then(|b| {
                        b.set_properties(HashMap::from([(
                            ATTNUMS_KEY.to_string(),
                            format_attnums(&plan.attnums),
                        )]))
                    })
                    .and_then(|b| b.build())
                    .map_err(|e| {
                        sink_error("cannot evolve the changelog schema", e)
                            .with("table", &self.source)
                    })?;
                match self
                    .lake
                    .commit_metadata(&self.table, built, Guard::Schema)
                    .await
                {
                    Ok(t) => {
                        self.table = t;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Conflict && attempt < CONFLICT_ATTEMPTS => {
                        philotes_telemetry::retry("schema-change", ErrorKind::Conflict);
                        self.reload().await?;
                    }
                    Err(e) => return Err(e.with("table", &self.source)),
                }
            }
            for note in &plan.notes {
                tracing::info!(table = %self.source, lsn = %lsn, "schema change: {note}");
            }
            self.arrow_schema = arrow_schema_of(&self.table)?;
        }
        self.attnums = plan.attnums;
        self.columns = columns.into();
        self.ids = plan.ids.into();
        self.batcher = self.new_batcher()?;
        self.record_key().await?;
        Ok(plan.recopy)
    }

    /// Keep [`KEY_FIELDS_KEY`] equal to the key of the columns written now.
    async fn record_key(&mut self) -> Result<()> {
        let key = self
            .columns
            .iter()
            .zip(self.ids.iter())
            .filter(|(c, _)| c.is_key)
            .map(|(_, id)| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let props = self.table.metadata().properties();
        if key.is_empty() || props.get(KEY_FIELDS_KEY) == Some(&key) {
            return Ok(());
        }
        self.set_property(KEY_FIELDS_KEY, Some(key)).await
    }

    /// Why the table must be copied again before it streams, if it must.
    pub fn needs_resync(&self) -> Option<&String> {
        self.table.metadata().properties().get(NEEDS_RESYNC_KEY)
    }

    /// The pipeline whose control database buffers this table's changes, if one does.
    pub fn buffered_by(&self) -> Option<&String> {
        self.table.metadata().properties().get(BUFFERED_BY_KEY)
    }

    /// Record that `pipeline`'s control database buffers this table's changes from now on.
    pub async fn set_buffered_by(&mut self, pipeline: &str) -> Result<()> {
        if self.buffered_by().map(String::as_str) == Some(pipeline) {
            return Ok(());
        }
        self.set_property(BUFFERED_BY_KEY, Some(pipeline.to_string()))
            .await
    }

    /// Record (`Some`) or clear (`None`) that the table must be copied again, so every later
    /// run knows it too.
    pub async fn set_needs_resync(&mut self, reason: Option<String>) -> Result<()> {
        self.set_property(NEEDS_RESYNC_KEY, reason).await
    }

    /// Set (`Some`) or remove (`None`) the table property `key`.
    async fn set_property(&mut self, key: &str, value: Option<String>) -> Result<()> {
        let tx = Transaction::new(&self.table);
        let action = tx.update_table_properties();
        let action = match value {
            Some(v) => action.set(key.to_string(), v),
            None => action.remove(key.to_string()),
        };
        let tx = action.apply(tx).map_err(|e| {
            sink_error("cannot prepare a table property change", e).with("table", &self.source)
        })?;
        self.table = tx.commit(self.lake.catalog.as_ref()).await.map_err(|e| {
            sink_error(format!("cannot change the table property {key}"), e)
                .with("table", &self.source)
        })?;
        Ok(())
    }

    fn new_batcher(&self) -> Result<Batcher> {
        Batcher::new(
            self.columns.clone(),
            self.table.metadata().current_schema(),
            self.arrow_schema.clone(),
            &self.ids,
        )
        .map_err(|e| e.with("table", &self.source))
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
        data_file_writer(&self.table, TARGET_FILE_BYTES)
            .await
            .map_err(|e| e.with("table", &self.source))
    }

    /// Load the table as the catalog has it now.
    async fn reload(&mut self) -> Result<()> {
        self.table = self
            .lake
            .catalog
            .load_table(self.table.identifier())
            .await
            .map_err(|e| sink_error("cannot load the table", e).with("table", &self.source))?;
        Ok(())
    }
}

/// A writer of `table`'s data files, as the pipeline writes them (compaction writes the same).
pub async fn data_file_writer(table: &Table, target_bytes: usize) -> Result<Writer> {
    let md = table.metadata();
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
    let locations =
        DefaultLocationGenerator::new(md).map_err(|e| sink_error("cannot place data files", e))?;
    // A unique prefix per writer: file names never collide with files of an earlier run.
    let names = DefaultFileNameGenerator::new(
        format!("philotes-{}", uuid::Uuid::new_v4()),
        None,
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        target_bytes,
        table.file_io().clone(),
        locations,
        names,
    );
    DataFileWriterBuilder::new(rolling)
        .build(None)
        .await
        .map_err(|e| sink_error("cannot open a Parquet data file", e))
}

impl TableSink for ChangelogTable {
    type Batcher = Batcher;

    fn batcher(&self) -> Batcher {
        // The table's own batcher was built from the same columns and schema, so this cannot
        // fail; should it ever, the error surfaces on the first append.
        self.new_batcher()
            .unwrap_or_else(|_| Batcher::empty(self.arrow_schema.clone()))
    }

    async fn adopt(&mut self, columns: &[ColumnDesc], lsn: Lsn) -> Result<bool> {
        self.follow(columns, lsn).await
    }

    fn needs_copy(&self) -> bool {
        self.recopy
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
        self.closed.clear();
        let _ = self.batcher.finish();
        self.pending = 0;
    }

    /// Commit everything appended so far as one Iceberg snapshot recording `progress`.
    async fn commit(&mut self, progress: TableProgress) -> Result<()> {
        let copied_again = progress.snapshot_lsn != self.progress.snapshot_lsn;
        if copied_again {
            self.recopy = false;
        }
        self.write_buffered().await?;
        let mut files = std::mem::take(&mut self.closed);
        if let Some(mut w) = self.writer.take() {
            files.extend(w.close().await.map_err(|e| {
                sink_error("cannot finish a Parquet data file", e).with("table", &self.source)
            })?);
        }
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
        let mut conflicts = 0u32;
        loop {
            let tx = Transaction::new(&self.table);
            let tx = tx
                .fast_append()
                // File names carry a writer's UUID, so none can be in the table already; the
                // check would read every manifest on every commit.
                .with_check_duplicate(false)
                .add_data_files(files.clone())
                .set_snapshot_properties(props.clone())
                .apply(tx)
                .map_err(|e| {
                    sink_error("cannot prepare the Iceberg commit", e).with("table", &self.source)
                })?;
            let err = match tx.commit(self.lake.catalog.as_ref()).await {
                Ok(table) => {
                    self.table = table;
                    break;
                }
                Err(e) => e,
            };
            // Lost a race (to maintenance, say): the commit certainly did not land.
            if err.kind() == iceberg::ErrorKind::CatalogCommitConflicts
                && conflicts < CONFLICT_ATTEMPTS
            {
                conflicts += 1;
                philotes_telemetry::retry("commit", ErrorKind::Conflict);
                tracing::debug!(table = %self.source, conflicts, "Iceberg commit lost a race, trying again");
                continue;
            }
            attempt += 1;
            // The commit may have landed even though we saw an error: look before retrying,
            // or the same changes would be committed twice. Never retry without that look.
            let table = loop {
                match self.lake.catalog.load_table(self.table.identifier()).await {
                    Ok(t) => break t,
                    Err(e) if attempt < COMMIT_ATTEMPTS => {
                        philotes_telemetry::retry("commit", ErrorKind::Sink);
                        tracing::warn!(table = %self.source, attempt, error = %e, "cannot load the table to see whether a failed commit landed, retrying");
                        attempt += 1;
                        tokio::time::sleep(commit_backoff(attempt)).await;
                    }
                    Err(e) => {
                        return Err(sink_error(
                            format!("cannot tell whether a commit to Iceberg landed after {attempt} attempts; the changes will be written again after a restart, where the table's watermark says what it holds"),
                            e,
                        )
                        .with("table", &self.source));
                    }
                }
            };
            let landed = progress.watermark.is_some()
                && read_progress(&table)?.watermark == progress.watermark;
            self.table = table;
            if landed {
                break;
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
            philotes_telemetry::retry("commit", ErrorKind::Sink);
            tracing::warn!(table = %self.source, attempt, error = %err, "Iceberg commit failed, retrying");
            tokio::time::sleep(commit_backoff(attempt)).await;
        }
        self.progress = progress;
        self.pending = 0;
        if copied_again && self.needs_resync().is_some() {
            self.set_needs_resync(None).await?;
        }
        Ok(())
    }
}

fn arrow_schema_of(table: &Table) -> Result<SchemaRef> {
    Ok(Arc::new(
        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(|e| sink_error("cannot map the table schema to Arrow", e))?,
    ))
}

/// The attnums of a new table's columns (field ids are 1..=n in column order).
fn initial_attnums(columns: &[ColumnDesc]) -> String {
    let map: Attnums = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i32::try_from(i + 1).ok()?, c.attnum?)))
        .collect();
    format_attnums(&map)
}
