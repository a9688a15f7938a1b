//! `philotes ingest`: the stream of `run`, written into the control database's buffer.
//!
//! Everything `run` does with the source stays as it is (preflight, slot, protocol 2, schema
//! changes, heartbeats, reconnects, tables joining and leaving): ingest is the same loop with
//! another sink per table, [`IngestTable`]. Its changes go into `philotes.changes` and its
//! position into `philotes.tables.buffered`, one transaction per table and flush, and the slot
//! is confirmed only after that commit — so the source frees its WAL as soon as a change is in
//! the buffer, whatever the lake is doing. Initial copies (and copies again) still go straight
//! into the lake, as fast as `run`'s, while ingest holds the table's worker lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use philotes_buffer::{BufferedChange, ControlDb, Relation, TableBatch, encode_row};
use philotes_config::{CatalogSettings, Settings};
use philotes_core::{
    Cell, ColumnDesc, ConvertError, Error, ErrorKind, Lsn, Op, Result, TableName, TableProgress,
    TableSink,
};
use philotes_sink_iceberg::{ChangelogTable, open_catalog, table_ident};
use tokio::sync::Mutex;

use crate::apply::TableState;
use crate::run::{Resync, RunReport, replicate};
use crate::sink::{Opener, Sink};

/// Buffered bytes of one table past which its rows are written out before the flush (a large
/// transaction), so memory stays bounded whatever the transaction's size.
const WRITE_OUT_BYTES: usize = 16 << 20;

/// The longest ingest holds changes before writing them to the buffer.
const INGEST_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// How often a copy waits for the worker holding a table to let go of it.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Run ingest until `stop` is set: the pipeline's stream into the buffer at `buffer_url`.
pub async fn ingest(settings: &Settings, stop: Arc<AtomicBool>) -> Result<RunReport> {
    let db = ControlDb::open(settings.buffer_url.as_ref(), "for ingest").await?;
    let health = philotes_telemetry::health();
    health.ready("buffer");
    let source = source_identity(settings).await?;
    db.claim_pipeline(&settings.slot, &source).await?;
    db.claim_lake(&settings.slot, &lake_identity(settings), true)
        .await?;
    let lake = open_catalog(settings).await?;
    let hold = Arc::new(AtomicBool::new(false));
    let _watch = backpressure(&db, settings, hold.clone()).await?;
    let opener = Buffered {
        hold,
        shared: Arc::new(Shared {
            db: Mutex::new(db),
            pipeline: settings.slot.clone(),
            url: settings.buffer_url.clone(),
        }),
        lake,
        namespace: settings.namespace.clone(),
        batch_rows: settings.batch_rows,
    };
    replicate(settings, stop, &Resync::None, &opener).await
}

/// The source as `<system identifier>/<database>` (a second source must not claim the
/// pipeline's buffer).
async fn source_identity(settings: &Settings) -> Result<String> {
    let (_, client) =
        philotes_source_postgres::SourceConn::open(settings.source.as_ref(), "to replicate")
            .await?;
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Source,
                format!("cannot read the source's name: {e}"),
            )
        })?
        .get(0);
    // pg_control_system() may need pg_monitor; without it the database name alone identifies.
    let system = match client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
    {
        Ok(r) => r.get::<_, String>(0),
        Err(_) => "unknown".to_string(),
    };
    Ok(format!("{system}/{db}"))
}

/// Catalog, warehouse and namespace, without credentials: what every role must agree on.
pub fn lake_identity(settings: &Settings) -> String {
    let catalog = match &settings.catalog {
        CatalogSettings::Sql { uri } => format!("sql {}", without_userinfo(uri)),
        CatalogSettings::Rest {
            uri,
            warehouse,
            prefix,
            ..
        } => format!(
            "rest {} warehouse={} prefix={}",
            without_userinfo(uri),
            warehouse.as_deref().unwrap_or(""),
            prefix.as_deref().unwrap_or("")
        ),
    };
    format!(
        "{catalog} {} namespace={}",
        without_userinfo(&settings.warehouse),
        settings.namespace.as_deref().unwrap_or("")
    )
}

/// `scheme://user:password@host/…` without `user:password@`.
fn without_userinfo(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => uri.to_string(),
    }
}

/// What every table's sink shares: the control database connection.
pub(crate) struct Shared {
    pub db: Mutex<ControlDb>,
    pub pipeline: String,
    /// To connect again.
    pub url: Option<philotes_core::Secret>,
}

/// Attempts of one buffer write across control database outages (about 14 minutes with the
/// backoff capped at 30 s).
const BUFFER_ATTEMPTS: u32 = 30;

/// How often ingest counts the buffer's rows to check the counters its depth is read from (a
/// scan of the whole buffer: rare).
const CHECK_DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Measure the buffer every second (`philotes_buffer_depth`) on a connection of its own, and
/// hold the stream while it is at `buffer_high_rows` or more, until it is down to
/// `buffer_low_rows`. Ends when the returned handle is dropped.
async fn backpressure(
    db: &ControlDb,
    settings: &Settings,
    hold: Arc<AtomicBool>,
) -> Result<AbortOnDrop> {
    let conn = db.conn.clone();
    let mut client = conn.connect().await?;
    let pipeline = settings.slot.clone();
    let (high, low) = (settings.buffer_high_rows, settings.buffer_low_rows);
    let task = tokio::spawn(async move {
        let mut failing = false;
        // Held for a full buffer, and held because an operator paused the pipeline.
        let (mut full, mut paused) = (false, false);
        let mut checked: Option<std::time::Instant> = None;
        loop {
            if client.is_closed()
                && let Ok(c) = conn.connect().await
            {
                client = c;
            }
            if checked.is_none_or(|t| t.elapsed() >= CHECK_DEPTH_EVERY) {
                checked = Some(std::time::Instant::now());
                match philotes_buffer::check_depth(&mut client, &pipeline).await {
                    Ok(None) => {}
                    Ok(Some((counted, rows))) => tracing::warn!(
                        counted,
                        rows,
                        "the buffer's counters disagreed with its rows (was it written by an older release, or edited by hand?): they are set to the rows now"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot count the buffer's rows"),
                }
            }
            let depth = client
                .query_one(
                    "SELECT (SELECT coalesce(sum(changes_now), 0)::bigint FROM philotes.tables WHERE pipeline = $1),
                            coalesce((SELECT desired = 'paused' FROM philotes.pipeline_specs WHERE slot = $1), false)",
                    &[&pipeline],
                )
                .await;
            match depth {
                Ok(row) => {
                    failing = false;
                    let d = row.get::<_, i64>(0).max(0) as u64;
                    philotes_telemetry::buffer_depth(d);
                    if !full && d >= high {
                        tracing::warn!(
                            buffered = d,
                            high,
                            low,
                            "the buffer is full: ingest stops reading the slot until the workers bring it down (are workers running? `philotes_worker_leases`); the source keeps the WAL meanwhile"
                        );
                        full = true;
                    } else if full && d <= low {
                        tracing::info!(
                            buffered = d,
                            low,
                            "the buffer has room again: ingest reads the slot again"
                        );
                        full = false;
                    }
                    let now_paused: bool = row.get(1);
                    if now_paused != paused {
                        paused = now_paused;
                        if paused {
                            tracing::info!(
                                "the pipeline is paused: ingest stops reading the slot (the source keeps the WAL) until it is resumed"
                            );
                        } else {
                            tracing::info!("the pipeline is resumed: ingest reads the slot again");
                        }
                    }
                    hold.store(full || paused, Ordering::Relaxed);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot measure the buffer's depth");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Ok(AbortOnDrop(task))
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens [`IngestTable`]s.
pub(crate) struct Buffered {
    hold: Arc<AtomicBool>,
    shared: Arc<Shared>,
    lake: philotes_sink_iceberg::Lake,
    namespace: Option<String>,
    batch_rows: usize,
}

impl Opener for Buffered {
    type Sink = IngestTable;

    fn maintains(&self) -> bool {
        false // the workers maintain the tables they write
    }

    fn waits_for_lease(&self) -> bool {
        true
    }

    fn depth_in_memory(&self) -> bool {
        false
    }

    fn flush_interval(&self, configured: std::time::Duration) -> std::time::Duration {
        // A buffer commit is cheap: commit often, so the slot is confirmed and the workers see
        // changes soon (`flush_interval` paces the workers' Iceberg commits).
        configured.min(INGEST_FLUSH)
    }

    fn hold(&self) -> Option<Arc<AtomicBool>> {
        Some(self.hold.clone())
    }

    async fn refresh(
        &self,
        tables: &mut std::collections::HashMap<u32, TableState<IngestTable>>,
    ) -> Result<()> {
        let db = self.shared.db.lock().await;
        let rows = db.tables(&self.shared.pipeline).await?;
        drop(db);
        for t in tables.values_mut() {
            let Some(sink) = t.lake.as_ref() else {
                continue;
            };
            if let Some(row) = rows.iter().find(|r| r.id == sink.id)
                && let Some(why) = &row.recopy
                && !t.recopy
                && t.stopped.is_none()
            {
                tracing::info!(table = %t.source.name, reason = %why, "a worker asked for a copy of the table; copying it");
                t.recopy = true;
            }
        }
        Ok(())
    }

    async fn wrap(&self, state: TableState<ChangelogTable>) -> Result<TableState<IngestTable>> {
        let name = state.source.name.clone();
        let id = {
            let db = self.shared.db.lock().await;
            db.table_id(&self.shared.pipeline, &name.to_string())
                .await?
        };
        let row = {
            let db = self.shared.db.lock().await;
            db.tables(&self.shared.pipeline)
                .await?
                .into_iter()
                .find(|r| r.id == id)
        };
        let buffered = row.as_ref().and_then(|r| r.buffered);
        let mut state = state;
        let lake_progress = state.progress;
        let Some(mut lake) = state.lake.take() else {
            return Ok(state.with_sink(None));
        };
        // From now on `run` leaves the table alone: its changes are in the buffer.
        lake.set_buffered_by(&self.shared.pipeline).await?;
        let sink = IngestTable {
            lake,
            catalog: self.lake.clone(),
            ident: table_ident(&name, self.namespace.as_deref()),
            batch_rows: self.batch_rows,
            shared: self.shared.clone(),
            id,
            name: name.clone(),
            rows: Vec::new(),
            bytes: 0,
            // Rows an interrupted run left above the buffered position go first.
            dirty: true,
            unpositioned: false,
            buffered,
            last: None,
            relations: Vec::new(),
            columns: state.source.columns.clone(),
            copy_committed: None,
            leased: false,
            copy_rows: 0,
            copy_reported: None,
        };
        // Changes from here on are written with the table as it is now (the stream describes
        // it anew where it differs).
        let from = sink.progress().watermark;
        if let Some(at) = from
            && let Some(copied) = lake_progress.snapshot_lsn
        {
            let db = self.shared.db.lock().await;
            db.set_relation(id, at, -1, &sink.relation(&sink.columns))
                .await?;
            // A lake `run` wrote before, or a copy that committed just before a crash: the
            // workers compare their lake with this.
            if row.as_ref().and_then(|r| r.snapshot_lsn) != Some(copied) {
                db.set_snapshot_lsn(id, copied).await?;
            }
        }
        if state.stopped.is_none() {
            // (A stopped table keeps the position `run` chose for it: it may hold the slot.)
            state.progress = sink.progress();
        }
        Ok(state.with_sink(Some(sink)))
    }
}

/// One table of ingest: streamed changes into the buffer, copies into the lake.
pub(crate) struct IngestTable {
    /// The lake table, for copies (streamed changes never touch it here).
    lake: ChangelogTable,
    catalog: philotes_sink_iceberg::Lake,
    ident: iceberg::TableIdent,
    batch_rows: usize,
    shared: Arc<Shared>,
    id: i64,
    name: TableName,
    /// Changes since the last write.
    rows: Vec<BufferedChange>,
    bytes: usize,
    /// Rows of an abandoned transaction (or of an earlier process) may be in the buffer at or
    /// above `buffered`: the next write removes them first.
    dirty: bool,
    /// Rows were written out early (a large transaction) and wait for their position.
    unpositioned: bool,
    /// Everything of the table below this is buffered.
    buffered: Option<Lsn>,
    /// The last change appended (its LSN and seq), to place a new description after it.
    last: Option<(Lsn, i64)>,
    /// Descriptions to record with the next write: (lsn, seq, columns).
    relations: Vec<(Lsn, i32, Vec<ColumnDesc>)>,
    columns: Vec<ColumnDesc>,
    /// A copy committed at this point, to record once the copy is over.
    copy_committed: Option<Lsn>,
    /// Ingest holds the table's worker lease (during a copy).
    leased: bool,
    /// Rows the current copy wrote, and when they were last recorded (at most once a second).
    copy_rows: u64,
    copy_reported: Option<std::time::Instant>,
}

fn op_code(op: Op) -> u8 {
    op.code().as_bytes().first().copied().unwrap_or(b'?')
}

impl IngestTable {
    fn relation(&self, columns: &[ColumnDesc]) -> Relation {
        Relation {
            table: self.name.clone(),
            columns: columns.to_vec(),
        }
    }

    /// Write what is held, recording `upto` as the table's buffered position when given.
    /// [`IngestTable::try_write`], again after a lost control database connection (a restart
    /// or failover of the control database): the stream is not read meanwhile. A write whose
    /// outcome is unknown is made again whole (its rows at or above the old position are
    /// removed first), unless part of the transaction was written out earlier: then the error
    /// ends ingest, and the next start (or the standby) resumes from the slot.
    async fn write(&mut self, upto: Option<Lsn>) -> Result<()> {
        let mut attempt = 0u32;
        loop {
            let err = match self.try_write(upto).await {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::info!(table = %self.name, "the control database is back; buffering again");
                        philotes_telemetry::health().ready("buffer");
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            if err.kind() != ErrorKind::Buffer || self.unpositioned || attempt >= BUFFER_ATTEMPTS {
                return Err(err);
            }
            attempt += 1;
            philotes_telemetry::retry("buffer", ErrorKind::Buffer);
            philotes_telemetry::health().not_ready("buffer", format!("reconnecting: {err}"));
            tracing::warn!(table = %self.name, attempt, error = %err, "cannot write to the control database; trying again (the stream waits)");
            tokio::time::sleep(philotes_core::retry::backoff(
                attempt,
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(30),
            ))
            .await;
            let mut db = self.shared.db.lock().await;
            if db.client.is_closed() {
                match ControlDb::open(self.shared.url.as_ref(), "for ingest").await {
                    Ok(fresh) => *db = fresh,
                    Err(e) => {
                        tracing::warn!(attempt, error = %e, "the control database is not back yet")
                    }
                }
            }
            drop(db);
            // The failed attempt may have committed: write it again whole.
            self.dirty = true;
        }
    }

    async fn try_write(&mut self, upto: Option<Lsn>) -> Result<()> {
        if self.rows.is_empty() && self.relations.is_empty() && upto.is_none() {
            return Ok(());
        }
        let clear_from = if self.dirty {
            Some(self.buffered.unwrap_or_default())
        } else {
            None
        };
        let mut db = self.shared.db.lock().await;
        for (lsn, seq, columns) in &self.relations {
            db.set_relation(self.id, *lsn, *seq, &self.relation(columns))
                .await?;
        }
        db.write_table(TableBatch {
            pipeline: &self.shared.pipeline,
            table: self.id,
            changes: &self.rows,
            clear_from,
            upto,
        })
        .await
        .map_err(|e| e.with("table", &self.name))?;
        drop(db);
        self.dirty = false;
        // Rows written without a position belong to no position yet: if their transaction is
        // abandoned, they are garbage.
        self.unpositioned = upto.is_none();
        self.relations.clear();
        self.rows.clear();
        self.bytes = 0;
        if let Some(u) = upto {
            self.buffered = Some(self.buffered.map_or(u, |b| b.max(u)));
        }
        Ok(())
    }
}

impl TableSink for IngestTable {
    type Batcher = <ChangelogTable as TableSink>::Batcher;

    fn batcher(&self) -> Self::Batcher {
        self.lake.batcher()
    }

    async fn write_batch(
        &mut self,
        batch: <Self::Batcher as philotes_core::RowBatcher>::Batch,
    ) -> Result<()> {
        self.lake.write_batch(batch).await
    }

    fn append(
        &mut self,
        op: Op,
        row: &[Cell],
        lsn: Lsn,
        seq: i64,
        ts_us: i64,
    ) -> std::result::Result<(), ConvertError> {
        let too_long = |message: String| ConvertError {
            column: String::new(),
            message,
        };
        let seq32 = i32::try_from(seq)
            .map_err(|_| too_long("a transaction has more than 2^31 changes".into()))?;
        let mut data = Vec::new();
        encode_row(row, &mut data).map_err(|e| too_long(e.to_string()))?;
        self.bytes += data.len() + 32;
        self.rows.push(BufferedChange {
            lsn,
            seq: seq32,
            ts_us,
            op: op_code(op),
            data,
        });
        self.last = Some((lsn, seq));
        Ok(())
    }

    async fn adopt(&mut self, columns: &[ColumnDesc], lsn: Lsn) -> Result<bool> {
        // Placed after this table's last change of the transaction: the worker writes the
        // changes that follow with these columns. Whether the change needs a copy, the worker
        // decides when it follows it (and asks ingest for one).
        let seq = match self.last {
            Some((l, s)) if l == lsn => s + 1,
            _ => 0,
        };
        let seq = i32::try_from(seq).map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "a transaction has more than 2^31 changes",
            )
        })?;
        self.relations.push((lsn, seq, columns.to_vec()));
        self.columns = columns.to_vec();
        Ok(false)
    }

    fn needs_copy(&self) -> bool {
        self.lake.needs_copy()
    }

    async fn write_if_full(&mut self) -> Result<()> {
        if self.bytes >= WRITE_OUT_BYTES {
            // Not a position: a worker never reads above the buffered position, and a restart
            // removes these rows before writing again.
            self.write(None).await?;
        }
        self.lake.write_if_full().await
    }

    async fn commit(&mut self, progress: TableProgress) -> Result<()> {
        if progress.snapshot_lsn != self.lake.progress().snapshot_lsn || self.lake.pending() > 0 {
            // The end of a copy.
            self.lake.commit(progress).await?;
            self.copy_committed = progress.snapshot_lsn;
            return Ok(());
        }
        self.write(progress.watermark).await
    }

    fn discard(&mut self) {
        self.lake.discard();
        if self.unpositioned {
            self.dirty = true;
            self.unpositioned = false;
        }
        self.rows.clear();
        self.relations.clear();
        self.bytes = 0;
        self.last = None;
    }

    fn pending(&self) -> u64 {
        self.rows.len() as u64 + self.lake.pending() + u64::from(self.unpositioned)
    }

    fn progress(&self) -> TableProgress {
        let lake = self.lake.progress();
        let watermark = match (lake.watermark, self.buffered) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        TableProgress {
            watermark,
            snapshot_lsn: lake.snapshot_lsn,
        }
    }
}

impl Sink for IngestTable {
    fn maintained(&self) -> Option<&iceberg::TableIdent> {
        None
    }

    async fn before_copy(&mut self, columns: &[ColumnDesc]) -> Result<()> {
        {
            let db = self.shared.db.lock().await;
            db.set_copying(self.id, true).await?;
        }
        // The worker writing the table lets go of it within a pass.
        let mut waited = std::time::Instant::now();
        loop {
            let got = {
                let db = self.shared.db.lock().await;
                db.try_table_lease(self.id).await?
            };
            if got {
                break;
            }
            if waited.elapsed() >= std::time::Duration::from_secs(30) {
                tracing::warn!(table = %self.name, "waiting for the worker writing this table to let go of it before copying it (is a worker stuck?)");
                waited = std::time::Instant::now();
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        self.leased = true;
        // The lake table as the workers left it, with the columns the copy reads.
        self.lake = ChangelogTable::open(
            &self.catalog,
            self.ident.clone(),
            &self.name,
            columns,
            self.batch_rows,
        )
        .await?;
        self.columns = columns.to_vec();
        self.copy_committed = None;
        Ok(())
    }

    async fn copy_progress(&mut self, rows: u64) -> Result<()> {
        self.copy_rows = rows;
        if self
            .copy_reported
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1))
        {
            self.copy_reported = Some(std::time::Instant::now());
            let db = self.shared.db.lock().await;
            db.copy_progress(self.id, rows).await?;
        }
        Ok(())
    }

    async fn after_copy(&mut self) -> Result<()> {
        let db = self.shared.db.lock().await;
        db.copy_progress(self.id, self.copy_rows).await?;
        let rows = self.copy_rows;
        self.copy_rows = 0;
        self.copy_reported = None;
        if let Some(at) = self.copy_committed.take() {
            // Changes from the copy's point on are written with the columns it read.
            db.set_relation(self.id, at, -1, &self.relation(&self.columns))
                .await?;
            db.copied(self.id, at).await?;
            if let Err(e) = db.record_commit(self.id, "copy", rows, at, None).await {
                tracing::warn!(error = %e, "cannot record the copy in the control database");
            }
            self.buffered = Some(self.buffered.map_or(at, |b| b.max(at)));
        }
        db.set_copying(self.id, false).await?;
        if self.leased {
            db.release_table_lease(self.id).await?;
            self.leased = false;
        }
        Ok(())
    }
}
