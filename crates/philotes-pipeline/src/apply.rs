//! Applying the stream to the tables: per-table watermarks, key changes, stopped tables.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use philotes_core::{
    Cell, Change, ChangeSource, ColumnDesc, Error, ErrorKind, Lsn, Next, Op, Result, Row,
    TableProgress, TableSink,
};
use philotes_source_postgres::SourceTable;
use philotes_telemetry::TableMetrics;

use crate::dlq::{ChangeKey, DeadLetters};

/// One replicated table.
pub(crate) struct TableState<T> {
    pub source: SourceTable,
    pub lake: Option<T>,
    pub stopped: Option<Error>,
    pub progress: TableProgress,
    pub key_idx: Vec<usize>,
    /// The table must be copied again before its stream goes on (see [`TableSink::adopt`]).
    pub recopy: bool,
    /// The table left the publication (removed or dropped); it is let go once the stream has
    /// passed this position, after its last changes are committed.
    pub leaving: Option<Lsn>,
    pub metrics: TableMetrics,
}

impl<T: TableSink> TableState<T> {
    pub fn stop(&mut self, e: Error) {
        if self.stopped.is_some() {
            return;
        }
        tracing::error!(table = %self.source.name, error = %e, "table stopped; the other tables go on, and this table's position is kept");
        self.metrics.stopped(e.kind());
        if let Some(lake) = self.lake.as_mut() {
            lake.discard();
        }
        self.stopped = Some(e);
    }

    fn pending(&self) -> u64 {
        self.lake.as_ref().map_or(0, |l| l.pending())
    }

    /// Follow the source table's columns as the stream describes them now.
    pub(crate) async fn adopt(&mut self, columns: &[ColumnDesc], lsn: Lsn) -> Result<()> {
        if self.stopped.is_some() || self.source.columns == columns {
            return Ok(());
        }
        let Some(lake) = self.lake.as_mut() else {
            return Ok(());
        };
        match lake.adopt(columns, lsn).await {
            Ok(recopy) => {
                self.source.columns = columns.to_vec();
                self.key_idx = key_indexes(columns);
                if recopy {
                    tracing::info!(table = %self.source.name, lsn = %lsn, "the table is copied again: PostgreSQL changed rows without sending them (a converted type, or a new column that holds values)");
                    self.recopy = true;
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::SchemaChange => {
                self.stop(e.with("table", &self.source.name).with("lsn", lsn));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The positions of the key columns.
pub(crate) fn key_indexes(columns: &[ColumnDesc]) -> Vec<usize> {
    columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key)
        .map(|(i, _)| i)
        .collect()
}

pub(crate) struct Txn {
    commit_lsn: Lsn,
    ts_us: i64,
    seq: i64,
    /// Changes of each table so far in this transaction: a change's position among its
    /// table's changes is the same every time the stream delivers it (its dead-letter identity).
    positions: HashMap<u32, u64>,
    /// Said (at debug level) that changes of it are left out as already applied.
    told_skip: bool,
}

/// Microseconds since the Unix epoch, now.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) struct Applier<T> {
    pub tables: HashMap<u32, TableState<T>>,
    dead_letters: DeadLetters,
    pub txn: Option<Txn>,
    last_end: Option<Lsn>,
    /// What gave `last_end` (for a message when something is off).
    last_end_from: &'static str,
    warned: HashSet<u32>,
    /// A table not replicated yet sent changes: look at the publication again.
    pub unknown: bool,
    /// When the stream last committed on time (kept across [`stream_changes`] calls, which
    /// return every few seconds to look at the publication).
    last_flush: Instant,
    pub streamed_rows: u64,
    /// Source commit time of the newest transaction applied (for the lag in seconds).
    last_ts_us: Option<i64>,
    /// Changes an operator chose to leave out (`philotes dlq skip`).
    skips: HashSet<ChangeKey>,
    /// `philotes_buffer_depth` is what this applier holds (false: a buffer elsewhere).
    pub depth_in_memory: bool,
    /// While set, the stream is not read (backpressure: the buffer is full). The replication
    /// client keeps sending standby status, so the source keeps the connection.
    pub hold: Option<std::sync::Arc<AtomicBool>>,
}

impl<T: TableSink> Applier<T> {
    pub fn new(tables: HashMap<u32, TableState<T>>, dead_letters: DeadLetters) -> Self {
        Applier {
            tables,
            dead_letters,
            txn: None,
            last_end: None,
            last_end_from: "",
            warned: HashSet::new(),
            unknown: false,
            last_flush: Instant::now(),
            streamed_rows: 0,
            last_ts_us: None,
            skips: HashSet::new(),
            depth_in_memory: true,
            hold: None,
        }
    }

    pub fn pending(&self) -> u64 {
        self.tables.values().map(TableState::pending).sum()
    }

    /// Leave out these changes when they fail to convert (`philotes dlq skip`).
    pub fn skip(&mut self, skips: HashSet<ChangeKey>) {
        self.skips = skips;
    }

    /// Everything before `lsn` has been applied (a position between transactions).
    pub fn processed(&mut self, lsn: Lsn, from: &'static str) {
        if self.last_end.is_none_or(|e| lsn > e) {
            self.last_end = Some(lsn);
            self.last_end_from = from;
        }
    }

    /// The stream broke inside a transaction: drop what every table holds uncommitted (the
    /// complete transactions before it too, as they share its files) and forget the position
    /// reached, so nothing is committed or confirmed until the new stream has delivered it all
    /// again from the confirmed position. Between transactions this does nothing: what is
    /// pending is complete and can be committed.
    pub fn abandon_open_transaction(&mut self) {
        if self.txn.take().is_none() {
            return;
        }
        for t in self.tables.values_mut() {
            if let Some(lake) = t.lake.as_mut() {
                lake.discard();
            }
        }
        self.last_end = None;
        self.last_ts_us = None;
    }

    /// A new stream starts (from the confirmed position, which a stopped table may hold below
    /// the position reached): positions passed on the old one say nothing about it.
    pub fn new_stream(&mut self) {
        self.last_end = None;
        self.last_end_from = "";
    }

    /// The slot may not be confirmed past the watermark of a stopped table.
    pub fn cap(&self) -> Option<Lsn> {
        self.tables
            .values()
            .filter(|t| t.stopped.is_some())
            .filter_map(|t| t.progress.watermark)
            .min()
    }

    pub async fn apply(&mut self, change: Change) -> Result<()> {
        match change {
            Change::Begin {
                commit_lsn,
                commit_ts_us,
                ..
            } => {
                if let Some(passed) = self.last_end
                    && commit_lsn < passed
                {
                    // Every position passed in this stream came from the stream itself (a
                    // commit, a keepalive, a message), and the source delivers transactions
                    // in commit order: one below it would be taken as already applied.
                    tracing::warn!(commit_lsn = %commit_lsn, passed = %passed, from = self.last_end_from, "the stream delivered a transaction below a position it had passed already");
                }
                tracing::debug!(commit_lsn = %commit_lsn, "begin");
                self.txn = Some(Txn {
                    commit_lsn,
                    ts_us: commit_ts_us,
                    seq: 0,
                    positions: HashMap::new(),
                    told_skip: false,
                });
            }
            Change::Commit { end_lsn, .. } => {
                if let Some(t) = self.txn.take() {
                    self.last_ts_us = Some(t.ts_us);
                    tracing::debug!(commit_lsn = %t.commit_lsn, end_lsn = %end_lsn, changes = t.seq, "commit");
                }
                self.processed(end_lsn, "a commit");
            }
            Change::Relation(rel) => {
                if let Some(t) = self.tables.get_mut(&rel.oid) {
                    let lsn = self
                        .txn
                        .as_ref()
                        .map(|x| x.commit_lsn)
                        .or(self.last_end)
                        .unwrap_or_default();
                    t.adopt(&rel.columns, lsn).await?;
                } else if self.warned.insert(rel.oid) {
                    // A table that joined the publication: the caller copies it after this
                    // transaction (the copy includes these changes).
                    tracing::info!(table = %rel.table, "changes arrive for a table Philotes does not replicate yet; it is copied next");
                    self.unknown = true;
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
            if !txn.told_skip {
                txn.told_skip = true;
                tracing::debug!(table = %t.source.name, commit_lsn = %txn.commit_lsn, watermark = ?t.progress.watermark, "the table holds this transaction already; its changes are left out");
            }
            return Ok(());
        }
        let lsn = txn.commit_lsn;
        let Some(lake) = t.lake.as_mut() else {
            return Ok(());
        };
        let counter = txn.positions.entry(rel).or_insert(0);
        let position = *counter;
        *counter += 1;
        match lake.append(op, row, lsn, txn.seq, txn.ts_us) {
            Ok(()) => {
                txn.seq += 1;
                self.streamed_rows += 1;
                t.metrics.ingested(1);
                lake.write_if_full().await?;
            }
            Err(ce) => {
                let key = (t.source.name.to_string(), lsn, position);
                if self.skips.contains(&key) {
                    // A bad value leaves nothing half-written: the table goes on without it.
                    tracing::warn!(table = %t.source.name, lsn = %lsn, position, column = %ce.column, "left out a change that cannot be converted, as decided with `philotes dlq skip`; it is not in the lake");
                    t.metrics.skipped();
                    return Ok(());
                }
                let err = Error::new(
                    ErrorKind::Conversion,
                    format!("cannot convert a value: {}", ce.message),
                )
                .with("table", &t.source.name)
                .with("column", &ce.column)
                .with("lsn", lsn);
                let names: Vec<String> = t.source.columns.iter().map(|c| c.name.clone()).collect();
                self.dead_letters.record(
                    &t.source.name,
                    lsn,
                    Some(position),
                    op,
                    &names,
                    row,
                    &ce.column,
                    &err,
                )?;
                t.metrics.dead_letter();
                tracing::error!(file = %self.dead_letters.path().display(), "the change was written to the dead-letter file");
                t.stop(err);
            }
        }
        Ok(())
    }

    /// Commit every table with pending rows, then confirm the position to the slot.
    pub async fn flush<S: ChangeSource>(&mut self, stream: &mut S) -> Result<()> {
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
            let rows = t.pending();
            if let Some(lake) = t.lake.as_mut() {
                let started = Instant::now();
                lake.commit(progress).await?;
                t.metrics.committed(rows, started.elapsed());
                t.progress = progress;
            }
        }
        if self.depth_in_memory {
            philotes_telemetry::buffer_depth(self.pending());
        }
        if let Some(ts) = self.last_ts_us.take() {
            let lag = (now_us() - ts) as f64 / 1e6;
            philotes_telemetry::replication_lag(None, Some(lag));
        } else if self.txn.is_none() {
            // Nothing new since the last commit: everything received is in Iceberg.
            philotes_telemetry::replication_lag(None, Some(0.0));
        }
        self.tables.retain(|_, t| match t.leaving {
            Some(at) if at <= end => {
                tracing::info!(table = %t.source.name, "the table left the publication; its changelog stays as it is, and it no longer holds the slot");
                false
            }
            _ => true,
        });
        let confirm = self.cap().map_or(end, |c| c.min(end));
        stream.confirm(confirm);
        Ok(())
    }
}

/// How often to commit while streaming.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushPolicy {
    pub interval: Duration,
    pub rows: u64,
    /// How often to look for tables that joined or left the publication.
    pub publication_poll: Duration,
}

/// Apply `stream` until `stop` is set (at a transaction boundary), the stream ends, or the
/// `marker` message arrives (everything committed before it is then in the lake).
pub(crate) async fn stream_changes<S: ChangeSource, T: TableSink>(
    applier: &mut Applier<T>,
    stream: &mut S,
    flush: FlushPolicy,
    marker: Option<&str>,
    stop: &AtomicBool,
) -> Result<Ended> {
    let started = Instant::now();
    let idle = flush
        .interval
        .min(Duration::from_millis(500))
        .max(Duration::from_millis(50));
    let mut caught_up = false;
    loop {
        if (stop.load(Ordering::Relaxed) || caught_up) && applier.txn.is_none() {
            break;
        }
        if applier
            .hold
            .as_ref()
            .is_some_and(|h| h.load(Ordering::Relaxed))
        {
            if applier.txn.is_none() && applier.pending() > 0 {
                applier.flush(stream).await?;
                applier.last_flush = Instant::now();
            }
            tokio::time::sleep(idle).await;
            if applier.txn.is_none() && started.elapsed() >= flush.publication_poll {
                return Ok(Ended::Refresh);
            }
            continue;
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
                // Everything before the server's sent position has been delivered, and
                // between transactions it has all been applied.
                if applier.txn.is_none() {
                    applier.processed(wal_end, "a keepalive");
                    if applier.pending() == 0 {
                        applier.flush(stream).await?;
                    }
                }
            }
            Next::Change(Change::Message {
                prefix,
                content,
                lsn,
                transactional: false,
            }) => {
                if prefix == "philotes" && marker.is_some_and(|m| content.as_ref() == m.as_bytes())
                {
                    tracing::info!(lsn = %lsn, "caught up with the source");
                    caught_up = true;
                }
                // Non-transactional messages arrive after every transaction that committed
                // before them.
                if applier.txn.is_none() {
                    applier.processed(lsn, "a message");
                }
            }
            Next::Change(change) => {
                applier.apply(change).await?;
                if applier.txn.is_none()
                    && applier
                        .tables
                        .values()
                        .any(|t| t.recopy && t.stopped.is_none())
                {
                    // Commit what came before; the caller copies, then streams on.
                    applier.flush(stream).await?;
                    return Ok(Ended::Recopy);
                }
            }
        }
        if applier.txn.is_none()
            && !caught_up
            && (applier.unknown || started.elapsed() >= flush.publication_poll)
        {
            return Ok(Ended::Refresh);
        }
        let pending = applier.pending();
        let due = pending >= flush.rows
            || (pending > 0 && applier.last_flush.elapsed() >= flush.interval);
        if applier.txn.is_none() && (due || caught_up || stop.load(Ordering::Relaxed)) {
            applier.flush(stream).await?;
            applier.last_flush = Instant::now();
        }
    }
    applier.flush(stream).await?;
    Ok(Ended::Done)
}

/// Why [`stream_changes`] returned.
#[derive(Debug, PartialEq)]
pub(crate) enum Ended {
    /// Stopped, caught up, or the stream ended.
    Done,
    /// A table must be copied again first (its `recopy` is set); then call again.
    Recopy,
    /// Time to look at the publication again (or a table not replicated yet sent changes);
    /// then call again.
    Refresh,
}

#[cfg(test)]
mod tests;
