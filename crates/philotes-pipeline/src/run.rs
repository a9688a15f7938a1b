//! `philotes run`: preflight, initial copies, then the stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use philotes_config::Settings;
use philotes_core::{Cell, Change, Error, ErrorKind, Lsn, Op, Result, Row, TableName};
use philotes_sink_iceberg::{
    ChangelogTable, TableProgress, open_catalog, stored_progress, table_ident,
};
use philotes_source_postgres::catalog::publication_tables;
use philotes_source_postgres::{
    Next, ReplicationStream, SourceConn, SourceTable, TypeResolver, preflight,
};

use crate::dlq::DeadLetters;
use crate::snapshot::copy_tables;

/// A table stopped by an error.
#[derive(Clone, Debug)]
pub struct TableError {
    pub table: TableName,
    pub error: String,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub tables: usize,
    pub stopped: Vec<TableError>,
    /// The position confirmed to the slot at the end.
    pub confirmed: Lsn,
    /// Changelog rows written while streaming.
    pub streamed_rows: u64,
}

/// One replicated table.
pub(crate) struct TableState {
    pub source: SourceTable,
    pub lake: Option<ChangelogTable>,
    pub stopped: Option<Error>,
    pub progress: TableProgress,
    /// Whether the stream's latest description of the table matches its changelog schema.
    shape_ok: bool,
    key_idx: Vec<usize>,
}

impl TableState {
    pub fn stop(&mut self, e: Error) {
        if self.stopped.is_some() {
            return;
        }
        tracing::error!(table = %self.source.name, error = %e, "table stopped; the other tables go on, and this table's position is kept");
        if let Some(lake) = self.lake.as_mut() {
            lake.discard();
        }
        self.stopped = Some(e);
    }

    fn pending(&self) -> u64 {
        self.lake.as_ref().map_or(0, |l| l.pending())
    }
}

struct Txn {
    commit_lsn: Lsn,
    ts_us: i64,
    seq: i64,
}

/// Run the pipeline until `stop` is set (at a transaction boundary), the stream ends, or with
/// `until_caught_up`, everything committed on the source before the start is in Iceberg.
pub async fn run(settings: &Settings, stop: Arc<AtomicBool>) -> Result<RunReport> {
    let source = settings.source.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "no source: set --source or PHILOTES_SOURCE to the PostgreSQL URL to replicate",
        )
    })?;
    let mut conn = SourceConn::parse(source)?;
    let client = conn.connect().await?;
    conn.settle_prefer(&client).await?;
    preflight::check_server(&client, &settings.slot).await?;
    preflight::ensure_publication(&client, &settings.publication, &settings.tables).await?;
    let slot = preflight::ensure_slot(&client, &settings.slot).await?;
    let catalog = open_catalog(settings).await?;
    let dead_letters = DeadLetters::new(&settings.data_dir);

    let mut resolver = TypeResolver::default();
    let found = publication_tables(&client, &mut resolver, &settings.publication).await?;
    if found.is_empty() {
        tracing::warn!(publication = %settings.publication, "the publication has no tables yet");
    }
    let mut tables: HashMap<u32, TableState> = HashMap::new();
    for st in found {
        let state = open_table(st, &catalog, settings, slot.created).await;
        tables.insert(state.source.oid, state);
    }
    tracing::info!(tables = tables.len(), slot = %settings.slot, confirmed = %slot.confirmed_flush, "source ready");

    // Initial copies of every table that has none committed.
    {
        let mut to_copy: Vec<&mut TableState> = tables
            .values_mut()
            .filter(|t| {
                t.stopped.is_none() && t.lake.is_some() && t.progress.snapshot_lsn.is_none()
            })
            .collect();
        to_copy.sort_by(|a, b| a.source.name.cmp(&b.source.name));
        copy_tables(
            &conn,
            &settings.publication,
            &mut to_copy,
            settings.batch_rows,
            &dead_letters,
        )
        .await?;
        for t in to_copy {
            if let Some(lake) = &t.lake {
                t.progress = lake.progress();
            }
        }
    }

    let marker = if settings.until_caught_up {
        let content = format!("caught-up {}", uuid_like());
        let lsn = preflight::emit_marker(&client, &content).await?;
        tracing::info!(target_lsn = %lsn, "will exit once everything before this position is in Iceberg");
        Some(content)
    } else {
        None
    };

    let mut stream = ReplicationStream::start(
        &conn,
        &settings.slot,
        &settings.publication,
        slot.confirmed_flush,
    )
    .await?;
    let mut applier = Applier {
        tables,
        dead_letters,
        txn: None,
        last_end: None,
        warned: HashSet::new(),
        streamed_rows: 0,
    };
    let idle = settings
        .flush_interval
        .min(Duration::from_millis(500))
        .max(Duration::from_millis(50));
    let mut last_flush = Instant::now();
    let mut caught_up = false;
    loop {
        if (stop.load(Ordering::Relaxed) || caught_up) && applier.txn.is_none() {
            break;
        }
        match stream.next(idle).await? {
            Next::End => {
                if applier.txn.is_some() {
                    return Err(Error::new(
                        ErrorKind::Source,
                        "the source ended the stream inside a transaction; restart to resume",
                    ));
                }
                break;
            }
            Next::Idle => {}
            Next::Change(Change::KeepAlive { wal_end }) => {
                if applier.txn.is_none() && applier.pending() == 0 {
                    let cap = applier.cap();
                    stream.confirm(cap.map_or(wal_end, |c| c.min(wal_end)));
                }
            }
            Next::Change(Change::Message {
                prefix,
                content,
                lsn,
                transactional: false,
            }) => {
                if prefix == "philotes"
                    && marker
                        .as_deref()
                        .is_some_and(|m| content.as_ref() == m.as_bytes())
                {
                    tracing::info!(lsn = %lsn, "caught up with the source");
                    caught_up = true;
                }
            }
            Next::Change(change) => applier.apply(change).await?,
        }
        let pending = applier.pending();
        let due = pending >= settings.flush_rows
            || (pending > 0 && last_flush.elapsed() >= settings.flush_interval);
        if applier.txn.is_none() && (due || caught_up || stop.load(Ordering::Relaxed)) {
            applier.flush(&mut stream).await?;
            last_flush = Instant::now();
        }
    }
    applier.flush(&mut stream).await?;
    // Give the stream a moment to send the final standby status update.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut stopped: Vec<TableError> = applier
        .tables
        .values()
        .filter_map(|t| {
            t.stopped.as_ref().map(|e| TableError {
                table: t.source.name.clone(),
                error: e.to_string(),
            })
        })
        .collect();
    stopped.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(RunReport {
        tables: applier.tables.len(),
        stopped,
        confirmed: stream.confirmed(),
        streamed_rows: applier.streamed_rows,
    })
}

async fn open_table(
    st: SourceTable,
    catalog: &Arc<dyn iceberg::Catalog>,
    settings: &Settings,
    slot_is_new: bool,
) -> TableState {
    let key_idx = st
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key)
        .map(|(i, _)| i)
        .collect();
    let mut state = TableState {
        lake: None,
        stopped: None,
        progress: TableProgress::default(),
        shape_ok: true,
        key_idx,
        source: st,
    };
    if let Some(problem) = preflight::table_problem(&state.source) {
        state.stop(problem);
        return state;
    }
    let ident = table_ident(&state.source.name, settings.namespace.as_deref());
    match ChangelogTable::open(
        catalog.clone(),
        ident.clone(),
        &state.source.name,
        &state.source.columns,
        settings.batch_rows,
    )
    .await
    {
        Ok(lake) => {
            state.progress = lake.progress();
            state.lake = Some(lake);
        }
        Err(e) => {
            // A stopped table keeps its position: its watermark holds the slot.
            match stored_progress(catalog.as_ref(), &ident).await {
                Ok(p) => state.progress = p,
                Err(pe) => {
                    tracing::warn!(table = %state.source.name, error = %pe, "cannot read the table's position")
                }
            }
            state.stop(e);
            return state;
        }
    }
    if slot_is_new && state.progress.watermark.is_some() {
        let e = Error::new(
            ErrorKind::SourceSetup,
            format!(
                "the replication slot {} was created anew, but this table's changelog already holds changes up to {}: changes made in between were not captured. Drop the changelog table to copy the table again",
                settings.slot,
                state.progress.watermark.map(|w| w.to_string()).unwrap_or_default()
            ),
        )
        .with("table", &state.source.name);
        state.stop(e);
        // This table's position belongs to a slot that no longer exists: it must not hold the new one.
        state.progress.watermark = None;
    }
    state
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

struct Applier {
    tables: HashMap<u32, TableState>,
    dead_letters: DeadLetters,
    txn: Option<Txn>,
    last_end: Option<Lsn>,
    warned: HashSet<u32>,
    streamed_rows: u64,
}

impl Applier {
    fn pending(&self) -> u64 {
        self.tables.values().map(TableState::pending).sum()
    }

    /// The slot may not be confirmed past the watermark of a stopped table.
    fn cap(&self) -> Option<Lsn> {
        self.tables
            .values()
            .filter(|t| t.stopped.is_some())
            .filter_map(|t| t.progress.watermark)
            .min()
    }

    async fn apply(&mut self, change: Change) -> Result<()> {
        match change {
            Change::Begin {
                commit_lsn,
                commit_ts_us,
                ..
            } => {
                self.txn = Some(Txn {
                    commit_lsn,
                    ts_us: commit_ts_us,
                    seq: 0,
                });
            }
            Change::Commit { end_lsn, .. } => {
                self.txn = None;
                self.last_end = Some(end_lsn);
            }
            Change::Relation(rel) => {
                if let Some(t) = self.tables.get_mut(&rel.oid) {
                    t.shape_ok = rel.same_shape(&t.source.columns);
                } else if self.warned.insert(rel.oid) {
                    tracing::warn!(table = %rel.table, "changes arrive for a table that was not in the publication when Philotes started; restart Philotes to copy it (its initial copy will include these changes)");
                }
            }
            Change::Insert { rel, new } => self.write(rel, Op::Insert, &new).await?,
            Change::Update { rel, old, mut new } => {
                let mut key_changed = false;
                if let (Some(old), Some(t)) = (&old, self.tables.get(&rel)) {
                    // Under REPLICA IDENTITY FULL the old row carries unchanged TOAST values.
                    for (i, cell) in new.iter_mut().enumerate() {
                        if let (Cell::Unchanged, Some(Cell::Text(b))) = (&*cell, old.get(i)) {
                            *cell = Cell::Text(b.clone());
                        }
                    }
                    key_changed = t.key_idx.iter().any(|&i| match (old.get(i), new.get(i)) {
                        (Some(a @ Cell::Text(_)), Some(b @ Cell::Text(_))) => a != b,
                        (Some(Cell::Null), Some(Cell::Text(_)))
                        | (Some(Cell::Text(_)), Some(Cell::Null)) => true,
                        _ => false,
                    });
                }
                if let (true, Some(old)) = (key_changed, &old) {
                    self.write(rel, Op::Delete, old).await?;
                }
                self.write(rel, Op::Update, &new).await?;
            }
            Change::Delete { rel, old } => self.write(rel, Op::Delete, &old).await?,
            Change::Truncate { rels } => {
                for rel in rels {
                    let n = self.tables.get(&rel).map_or(0, |t| t.source.columns.len());
                    self.write(rel, Op::Truncate, &vec![Cell::Null; n]).await?;
                }
            }
            Change::Message { .. } | Change::KeepAlive { .. } => {}
        }
        Ok(())
    }

    async fn write(&mut self, rel: u32, op: Op, row: &Row) -> Result<()> {
        let Some(txn) = self.txn.as_mut() else {
            return Err(Error::new(
                ErrorKind::Protocol,
                "a row change arrived outside a transaction",
            ));
        };
        let Some(t) = self.tables.get_mut(&rel) else {
            return Ok(()); // not replicated (warned on its Relation message)
        };
        if t.stopped.is_some() {
            return Ok(());
        }
        // Already in the table (an initial copy at a later point, or a replay after a crash).
        if t.progress.watermark.is_some_and(|w| txn.commit_lsn < w) {
            return Ok(());
        }
        let lsn = txn.commit_lsn;
        if !t.shape_ok {
            t.stop(
                Error::new(
                    ErrorKind::SchemaChange,
                    "the table's columns changed on the source; until schema evolution lands this table is stopped at its last committed position. Revert the change, or drop the changelog table and restart to copy the table again",
                )
                .with("table", &t.source.name)
                .with("lsn", lsn),
            );
            return Ok(());
        }
        let Some(lake) = t.lake.as_mut() else {
            return Ok(());
        };
        match lake.append(op, row, lsn, txn.seq, txn.ts_us) {
            Ok(()) => {
                txn.seq += 1;
                self.streamed_rows += 1;
                lake.write_if_full().await?;
            }
            Err(ce) => {
                let err = Error::new(
                    ErrorKind::Conversion,
                    format!("cannot convert a value: {}", ce.message),
                )
                .with("table", &t.source.name)
                .with("column", &ce.column)
                .with("lsn", lsn);
                let names: Vec<String> = t.source.columns.iter().map(|c| c.name.clone()).collect();
                self.dead_letters
                    .record(&t.source.name, lsn, op, &names, row, &err)?;
                tracing::error!(file = %self.dead_letters.path().display(), "the change was written to the dead-letter file");
                t.stop(err);
            }
        }
        Ok(())
    }

    /// Commit every table with pending rows, then confirm the position to the slot.
    async fn flush(&mut self, stream: &mut ReplicationStream) -> Result<()> {
        let Some(end) = self.last_end else {
            return Ok(());
        };
        for t in self.tables.values_mut() {
            if t.stopped.is_some() || t.pending() == 0 {
                continue;
            }
            let progress = TableProgress {
                watermark: Some(end),
                snapshot_lsn: t.progress.snapshot_lsn,
            };
            if let Some(lake) = t.lake.as_mut() {
                lake.commit(progress).await?;
                t.progress = progress;
            }
        }
        let confirm = self.cap().map_or(end, |c| c.min(end));
        stream.confirm(confirm);
        Ok(())
    }
}
