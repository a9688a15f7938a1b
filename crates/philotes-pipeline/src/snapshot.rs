//! Initial copies of tables that have none committed yet.

use philotes_core::{
    Cell, ConvertError, Error, ErrorKind, Lsn, Op, Result, Row, RowBatcher, TableProgress,
};
use std::ops::ControlFlow;

use philotes_source_postgres::snapshot::{CopyChunk, copy_table};
use philotes_source_postgres::{ExportedSnapshot, SourceConn};
use tokio::sync::mpsc;

use crate::apply::TableState;
use crate::dlq::DeadLetters;
use crate::progress::Progress;

/// Copy every table in `tables` under one exported snapshot and commit each copy with the
/// snapshot's consistent point as its watermark. A table whose copy fails is stopped; the
/// others go on.
pub async fn copy_tables<T: crate::sink::Sink>(
    conn: &SourceConn,
    publication: &str,
    tables: &mut [&mut TableState<T>],
    batch: usize,
    dead_letters: &DeadLetters,
) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let snapshot = ExportedSnapshot::open(conn, publication).await?;
    let ts_us = chrono::Utc::now().timestamp_micros();
    for t in tables.iter_mut() {
        if let Err(e) = copy_one(conn, &snapshot, t, batch, ts_us, dead_letters).await {
            if e.kind() == ErrorKind::Source || e.kind() == ErrorKind::Sink {
                return Err(e);
            }
            t.stop(e);
        }
    }
    Ok(())
}

/// What the conversion task hands the writer.
enum Converted<B> {
    Batch(B, u64),
    Failed(ConvertError, Row),
    Broken(Error),
}

fn take_batch<B: RowBatcher>(batcher: &mut B) -> Converted<B::Batch> {
    let n = batcher.len() as u64;
    match batcher.finish() {
        Ok(b) => Converted::Batch(b, n),
        Err(e) => Converted::Broken(e),
    }
}

async fn copy_one<T: crate::sink::Sink>(
    conn: &SourceConn,
    snapshot: &ExportedSnapshot,
    t: &mut TableState<T>,
    batch: usize,
    ts_us: i64,
    dead_letters: &DeadLetters,
) -> Result<()> {
    let Some(lake) = t.lake.as_mut() else {
        return Ok(());
    };
    let metrics = Copying::start(&t.metrics);
    let name = t.source.name.clone();
    let columns: Vec<String> = t.source.columns.iter().map(|c| c.name.clone()).collect();
    let descs = t.source.columns.clone();
    let partitioned = t.source.partitioned;
    let lsn = snapshot.lsn;
    // The copy holds every transaction that committed before `lsn`; the stream delivers those
    // whose commit record starts at `lsn` or later. Its rows carry the position just before,
    // so they sort before a streamed transaction committed exactly at `lsn` (records start on
    // 8-byte boundaries: none starts at `lsn - 1`).
    let row_lsn = Lsn(lsn.0.saturating_sub(1));
    // Three stages on their own tasks, so both cores work: PostgreSQL's COPY stream is read
    // into chunks of whole tuples, the tuples are parsed in place and converted into Arrow
    // batches, and this task encodes the batches into Parquet.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<CopyChunk>(4);
    let reader = {
        let conn = conn.clone();
        let snapshot_name = snapshot.name.clone();
        let table = name.clone();
        tokio::spawn(async move {
            copy_table(&conn, &snapshot_name, &table, &descs, partitioned, chunk_tx).await
        })
    };
    let (batch_tx, mut batch_rx) = mpsc::channel(2);
    let mut batcher = lake.batcher();
    // A table copied again starts over: a truncate marker ends its earlier history's current
    // state (rows deleted since are gone from the copy), then the copy follows.
    let again = t.progress.watermark.is_some();
    if again {
        let nulls = vec![Cell::Null; columns.len()];
        batcher
            .append(Op::Truncate, &nulls, row_lsn, 0, ts_us)
            .map_err(|ce| Error::new(ErrorKind::Internal, ce.message).with("table", &name))?;
    }
    let converter = tokio::spawn(async move {
        let mut seq: i64 = i64::from(again);
        while let Some(chunk) = chunk_rx.recv().await {
            let mut failed = None;
            let parsed = chunk.for_each_row(|row| {
                match batcher.append(Op::Snapshot, row, row_lsn, seq, ts_us) {
                    Ok(()) => {
                        seq += 1;
                        ControlFlow::Continue(())
                    }
                    Err(ce) => {
                        failed = Some((ce, batcher.owned_row(row)));
                        ControlFlow::Break(())
                    }
                }
            });
            let stop = match (parsed, failed) {
                (Err(e), _) => Some(Converted::Broken(e)),
                (Ok(_), Some((ce, row))) => Some(Converted::Failed(ce, row)),
                (Ok(_), None) => None,
            };
            if let Some(msg) = stop {
                let _ = batch_tx.send(msg).await;
                return seq - i64::from(again);
            }
            if batcher.len() >= batch && batch_tx.send(take_batch(&mut batcher)).await.is_err() {
                return seq - i64::from(again);
            }
        }
        if !batcher.is_empty() {
            let _ = batch_tx.send(take_batch(&mut batcher)).await;
        }
        seq - i64::from(again)
    });
    let mut progress = Progress::new(format!("snapshot {name}"));
    let mut written: u64 = 0;
    let mut failure: Option<Error> = None;
    // The first batch of a copy made again holds the truncate marker: not a row of the table.
    let mut marker = u64::from(again);
    while let Some(msg) = batch_rx.recv().await {
        match msg {
            Converted::Batch(b, n) => {
                lake.write_batch(b).await?;
                let n = n.saturating_sub(std::mem::take(&mut marker));
                progress.add(n);
                metrics.0.copied(n);
                written += n;
                lake.copy_progress(written).await?;
            }
            Converted::Failed(ce, row) => {
                let err = Error::new(
                    ErrorKind::Conversion,
                    format!("cannot convert a value of the initial copy: {}", ce.message),
                )
                .with("table", &name)
                .with("column", &ce.column)
                .with("lsn", lsn);
                dead_letters.record(
                    &name,
                    lsn,
                    None,
                    Op::Snapshot,
                    &columns,
                    &row,
                    &ce.column,
                    &err,
                )?;
                metrics.0.dead_letter();
                failure = Some(err);
                break;
            }
            Converted::Broken(e) => return Err(e.with("table", &name)),
        }
    }
    drop(batch_rx);
    let joined = |e: tokio::task::JoinError| {
        Error::new(ErrorKind::Internal, format!("a copy task failed: {e}"))
    };
    let copied = converter.await.map_err(joined)?;
    let read = reader.await.map_err(joined)?;
    if let Some(err) = failure {
        lake.discard();
        return Err(err);
    }
    let bytes = read?;
    let started = std::time::Instant::now();
    lake.commit(TableProgress {
        watermark: Some(lsn),
        snapshot_lsn: Some(lsn),
    })
    .await?;
    metrics.0.committed(
        u64::try_from(copied).unwrap_or(0) + u64::from(again),
        started.elapsed(),
    );
    progress.finish();
    tracing::info!(table = %name, rows = copied, bytes, lsn = %lsn, "initial copy committed");
    Ok(())
}

/// A table's copy is in progress while this lives (the gauge falls back however the copy ends).
struct Copying(philotes_telemetry::TableMetrics);

impl Copying {
    fn start(m: &philotes_telemetry::TableMetrics) -> Copying {
        m.copying(true);
        Copying(m.clone())
    }
}

impl Drop for Copying {
    fn drop(&mut self) {
        self.0.copying(false);
    }
}
