//! The seams between the parts of a pipeline.
//!
//! A [`ChangeSource`] yields changes in commit order and takes confirmations; a [`TableSink`]
//! takes one table's rows and commits them with a position. Today the source is PostgreSQL's
//! replication stream and the sink an Iceberg changelog table; the Postgres buffer and the
//! workers of a later version slot in behind the same traits (a buffer is a sink for ingest and
//! a source for workers).

use std::future::Future;
use std::time::Duration;

use crate::{AsCell, Cell, Change, ColumnDesc, Lsn, Op, Result};

/// What [`ChangeSource::next`] returns.
#[derive(Debug)]
pub enum Next {
    Change(Change),
    /// Nothing arrived for a while.
    Idle,
    /// The source ended the stream.
    End,
}

/// Changes in commit order, with a position that moves only when told.
pub trait ChangeSource {
    /// The next change, or [`Next::Idle`] when nothing arrived within `idle`.
    fn next(&mut self, idle: Duration) -> impl Future<Output = Result<Next>>;
    /// Everything before `lsn` is durable downstream; the source may forget it.
    fn confirm(&mut self, lsn: Lsn);
    /// The position confirmed so far.
    fn confirmed(&self) -> Lsn;
    /// Wait (briefly) until the confirmed position has reached the source, before exiting.
    fn finish(&mut self) -> impl Future<Output = ()>;
}

/// What a table's commits say about its progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableProgress {
    /// Every source transaction that committed before this LSN is in the table.
    pub watermark: Option<Lsn>,
    /// The consistent point of the initial copy, once that copy is committed.
    pub snapshot_lsn: Option<Lsn>,
}

/// A value that could not be converted: which column, and why.
#[derive(Debug, Clone)]
pub struct ConvertError {
    pub column: String,
    pub message: String,
}

/// Turns rows into batches for a [`TableSink`], anywhere: the initial copy runs it on its own
/// task, so converting values and encoding files use both cores.
pub trait RowBatcher: Send + 'static {
    type Batch: Send + 'static;
    /// Append one change; on a conversion error nothing of the row is kept.
    fn append<C: AsCell>(
        &mut self,
        op: Op,
        row: &[C],
        lsn: Lsn,
        seq: i64,
        ts_us: i64,
    ) -> std::result::Result<(), ConvertError>;
    /// `row` owned, for the dead-letter file: values in their text form wherever the batcher
    /// can render them (a copy reads some columns in binary).
    fn owned_row<C: AsCell>(&self, row: &[C]) -> Vec<Cell> {
        row.iter().map(|c| c.as_cell().to_owned_cell()).collect()
    }
    /// Rows appended since the last [`RowBatcher::finish`].
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The rows appended so far as one batch; the batcher starts over.
    fn finish(&mut self) -> Result<Self::Batch>;
}

/// One table's destination: rows in, atomic commits out.
pub trait TableSink {
    type Batcher: RowBatcher;
    /// A new batcher for this table's rows.
    fn batcher(&self) -> Self::Batcher;
    /// Add a batch made by [`TableSink::batcher`] (not visible until the next commit).
    fn write_batch(
        &mut self,
        batch: <Self::Batcher as RowBatcher>::Batch,
    ) -> impl Future<Output = Result<()>>;
    /// Append one change; on a conversion error nothing of the row is kept.
    fn append(
        &mut self,
        op: Op,
        row: &[Cell],
        lsn: Lsn,
        seq: i64,
        ts_us: i64,
    ) -> std::result::Result<(), ConvertError>;
    /// Follow a new shape of the source table (columns added, dropped, renamed, retyped) as of
    /// the transaction at `lsn`; rows appended later use it. `Ok(true)` means rows the stream
    /// will not resend may hold values the table cannot know (a type change PostgreSQL applied
    /// by rewriting the table): the table must be copied again. An error of kind
    /// [`crate::ErrorKind::SchemaChange`] means this table cannot follow and should stop.
    fn adopt(&mut self, columns: &[ColumnDesc], lsn: Lsn) -> impl Future<Output = Result<bool>>;
    /// Whether the table must be copied again (its schema changed in a way only a copy makes
    /// whole, e.g. while Philotes was not running).
    fn needs_copy(&self) -> bool {
        false
    }
    /// Move buffered rows towards durable storage when a batch is full (not visible yet).
    fn write_if_full(&mut self) -> impl Future<Output = Result<()>>;
    /// Make everything appended so far visible at once, recording `progress`.
    fn commit(&mut self, progress: TableProgress) -> impl Future<Output = Result<()>>;
    /// Drop everything appended since the last commit.
    fn discard(&mut self);
    /// Rows appended since the last commit.
    fn pending(&self) -> u64;
    /// The progress of the last commit.
    fn progress(&self) -> TableProgress;
}
