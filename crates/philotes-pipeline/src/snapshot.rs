//! Initial copies of tables that have none committed yet.

use std::sync::Arc;

use philotes_core::{Error, ErrorKind, Op, Result, TableProgress, TableSink};
use philotes_source_postgres::snapshot::copy_table;
use philotes_source_postgres::{ExportedSnapshot, SourceConn};
use tokio::sync::mpsc;

use crate::apply::TableState;
use crate::dlq::DeadLetters;
use crate::progress::Progress;

/// Copy every table in `tables` under one exported snapshot and commit each copy with the
/// snapshot's consistent point as its watermark. A table whose copy fails is stopped; the
/// others go on.
pub async fn copy_tables<T: TableSink>(
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

async fn copy_one<T: TableSink>(
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
    let name = t.source.name.clone();
    let columns: Vec<String> = t.source.columns.iter().map(|c| c.name.clone()).collect();
    let (tx, mut rx) = mpsc::channel(4);
    let conn2 = conn.clone();
    let snap_name = Arc::new(snapshot.name.clone());
    let table_name = name.clone();
    let cols = columns.clone();
    // The copy reads from PostgreSQL while this task converts and writes: both overlap.
    let reader = {
        let snapshot_name = snap_name.clone();
        tokio::spawn(async move {
            copy_table(&conn2, &snapshot_name, &table_name, &cols, batch, tx).await
        })
    };
    let mut progress = Progress::new(format!("snapshot {name}"));
    let mut seq: i64 = 0;
    let mut failure: Option<Error> = None;
    while let Some(rows) = rx.recv().await {
        let n = rows.len() as u64;
        for row in rows {
            if let Err(ce) = lake.append(Op::Snapshot, &row, snapshot.lsn, seq, ts_us) {
                let err = Error::new(
                    ErrorKind::Conversion,
                    format!("cannot convert a value of the initial copy: {}", ce.message),
                )
                .with("table", &name)
                .with("column", &ce.column)
                .with("lsn", snapshot.lsn);
                dead_letters.record(&name, snapshot.lsn, Op::Snapshot, &columns, &row, &err)?;
                failure = Some(err);
                break;
            }
            seq += 1;
        }
        if failure.is_some() {
            break;
        }
        lake.write_if_full().await?;
        progress.add(n);
    }
    drop(rx);
    let copied = reader
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("the copy task failed: {e}")))?;
    if let Some(err) = failure {
        lake.discard();
        return Err(err);
    }
    let copied = copied?;
    lake.commit(TableProgress {
        watermark: Some(snapshot.lsn),
        snapshot_lsn: Some(snapshot.lsn),
    })
    .await?;
    progress.finish();
    tracing::info!(table = %name, rows = copied, lsn = %snapshot.lsn, "initial copy committed");
    Ok(())
}
