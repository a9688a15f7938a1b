//! Buffered changes: what ingest writes and workers read, in the control database.
//!
//! A change is stored as one row of `philotes.changes` keyed by `(table_id, lsn, seq)`, its row
//! in a compact binary encoding ([`encode_row`]): per cell a tag byte, and for a value its length
//! and bytes as the source sent them. Rows go in with binary `COPY`, a batch and the position it
//! reaches in one transaction, so "buffered" means durable and complete up to that position.

use bytes::Bytes;
use futures::pin_mut;
use philotes_core::{Cell, Error, ErrorKind, Lsn, Result};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::{ControlDb, db_error};

/// One buffered change of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferedChange {
    /// Commit LSN of its source transaction.
    pub lsn: Lsn,
    /// Its position in the transaction.
    pub seq: i32,
    /// Source commit time, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// `I`, `U`, `D`, `T`, or `R` (the table's columns from here on).
    pub op: u8,
    /// The encoded row ([`encode_row`]), or the columns for `R`.
    pub data: Vec<u8>,
}

const NULL: u8 = 0;
const UNCHANGED: u8 = 1;
const TEXT: u8 = 2;
const BINARY: u8 = 3;

/// Append `row`'s encoding to `out`: the cell count (u16), then per cell a tag and, for a value,
/// its length (u32) and bytes.
pub fn encode_row(row: &[Cell], out: &mut Vec<u8>) -> Result<()> {
    let n = u16::try_from(row.len())
        .map_err(|_| Error::new(ErrorKind::Invalid, "a row has more than 65535 columns"))?;
    out.extend_from_slice(&n.to_be_bytes());
    for cell in row {
        let (tag, bytes) = match cell {
            Cell::Null => (NULL, None),
            Cell::Unchanged => (UNCHANGED, None),
            Cell::Text(b) => (TEXT, Some(b)),
            Cell::Binary(b) => (BINARY, Some(b)),
        };
        out.push(tag);
        if let Some(b) = bytes {
            let len = u32::try_from(b.len())
                .map_err(|_| Error::new(ErrorKind::Invalid, "a value is over 4 GiB"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

/// The row [`encode_row`] wrote; a malformed buffer row is an error, never a guess.
pub fn decode_row(data: &[u8]) -> Result<Vec<Cell>> {
    let bad = || {
        Error::new(
            ErrorKind::Buffer,
            "a buffered row is malformed (written by another version, or damaged)",
        )
    };
    let bytes = Bytes::copy_from_slice(data);
    let take = |at: &mut usize, n: usize| -> Result<std::ops::Range<usize>> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(bad)?;
        let r = *at..end;
        *at = end;
        Ok(r)
    };
    let mut at = 0;
    let r = take(&mut at, 2)?;
    let n = u16::from_be_bytes([bytes[r.start], bytes[r.start + 1]]) as usize;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let r = take(&mut at, 1)?;
        let tag = bytes[r.start];
        let cell = match tag {
            NULL => Cell::Null,
            UNCHANGED => Cell::Unchanged,
            TEXT | BINARY => {
                let r = take(&mut at, 4)?;
                let mut len = [0u8; 4];
                len.copy_from_slice(&bytes[r]);
                let r = take(&mut at, u32::from_be_bytes(len) as usize)?;
                let v = bytes.slice(r);
                if tag == TEXT {
                    Cell::Text(v)
                } else {
                    Cell::Binary(v)
                }
            }
            _ => return Err(bad()),
        };
        row.push(cell);
    }
    if at != bytes.len() {
        return Err(bad());
    }
    Ok(row)
}

impl ControlDb {
    /// Register `pipeline` for `source` (`<system identifier>/<database>`), or check that it
    /// belongs to that source: a second source must not claim a pipeline's buffer.
    pub async fn claim_pipeline(&self, pipeline: &str, source: &str) -> Result<()> {
        let row = self
            .client
            .query_one(
                "INSERT INTO philotes.pipelines (name, source) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET updated_at = now()
                 RETURNING source",
                &[&pipeline, &source],
            )
            .await
            .map_err(|e| db_error("cannot register the pipeline", e))?;
        let owner: String = row.get(0);
        if owner != source {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "pipeline {pipeline} in the control database belongs to source {owner}, not to this one ({source}): give this pipeline its own --slot, or point --buffer-url at its own control database"
                ),
            ));
        }
        Ok(())
    }

    /// The id of `table` (`schema.table`) of `pipeline`, registered on first use.
    pub async fn table_id(&self, pipeline: &str, table: &str) -> Result<i64> {
        let row = self
            .client
            .query_one(
                "INSERT INTO philotes.tables (pipeline, name) VALUES ($1, $2)
                 ON CONFLICT (pipeline, name) DO UPDATE SET updated_at = now()
                 RETURNING id",
                &[&pipeline, &table],
            )
            .await
            .map_err(|e| db_error("cannot register the table", e))?;
        Ok(row.get(0))
    }

    /// Every source transaction that committed below this position is buffered.
    pub async fn buffered_lsn(&self, pipeline: &str) -> Result<Lsn> {
        let row = self
            .client
            .query_opt(
                "SELECT buffered_lsn FROM philotes.pipelines WHERE name = $1",
                &[&pipeline],
            )
            .await
            .map_err(|e| db_error("cannot read the buffered position", e))?;
        Ok(Lsn(row.map_or(0, |r| r.get::<_, i64>(0)) as u64))
    }

    /// Buffer `changes` (table id, change) and record that everything below `upto` is buffered,
    /// in one transaction: after it returns, the slot may be confirmed up to `upto`.
    pub async fn append(
        &mut self,
        pipeline: &str,
        changes: &[(i64, BufferedChange)],
        upto: Lsn,
    ) -> Result<u64> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("cannot begin buffering", e))?;
        let n = copy_changes(&tx, changes.iter().map(|(t, c)| (*t, c))).await?;
        let mut per_table: std::collections::BTreeMap<i64, i64> = Default::default();
        for (t, _) in changes {
            *per_table.entry(*t).or_default() += 1;
        }
        for (t, added) in per_table {
            tx.execute(
                "UPDATE philotes.tables SET changes_buffered = changes_buffered + $2,
                   changes_now = changes_now + $2 WHERE id = $1",
                &[&t, &added],
            )
            .await
            .map_err(|e| db_error("cannot count buffered changes", e))?;
        }
        record_pipeline(&tx, pipeline, upto).await?;
        tx.commit()
            .await
            .map_err(|e| db_error("cannot commit buffered changes", e))?;
        Ok(n)
    }

    /// Buffer one table's changes in one transaction: first remove what an interrupted
    /// transaction left at or above `batch.clear_from`, then add the rows, then (with
    /// `batch.upto`) record that everything of the table below it is buffered.
    pub async fn write_table(&mut self, batch: TableBatch<'_>) -> Result<u64> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("cannot begin buffering", e))?;
        let mut removed = 0u64;
        if let Some(from) = batch.clear_from {
            let from = from.0 as i64;
            removed = tx
                .execute(
                    "DELETE FROM philotes.changes WHERE table_id = $1 AND lsn >= $2",
                    &[&batch.table, &from],
                )
                .await
                .map_err(|e| db_error("cannot remove an interrupted transaction's changes", e))?;
        }
        let n = copy_changes(&tx, batch.changes.iter().map(|c| (batch.table, c))).await?;
        // The table's count of buffered changes (history): rows written again after an
        // interrupted write count once. Recorded with the position, in one statement.
        let added = n as i64 - removed as i64;
        if let Some(upto) = batch.upto {
            let at = upto.0 as i64;
            tx.execute(
                "UPDATE philotes.tables SET buffered = greatest(coalesce(buffered, 0), $2),
                   changes_buffered = greatest(changes_buffered + $3, 0),
                   changes_now = changes_now + $3, updated_at = now() WHERE id = $1",
                &[&batch.table, &at, &added],
            )
            .await
            .map_err(|e| db_error("cannot record a table's buffered position", e))?;
            record_pipeline(&tx, batch.pipeline, upto).await?;
        } else if added != 0 {
            tx.execute(
                "UPDATE philotes.tables SET changes_buffered = greatest(changes_buffered + $2, 0),
                   changes_now = changes_now + $2 WHERE id = $1",
                &[&batch.table, &added],
            )
            .await
            .map_err(|e| db_error("cannot count buffered changes", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("cannot commit buffered changes", e))?;
        Ok(n)
    }

    /// Up to `limit` buffered changes of `table` from `(lsn, seq)` on and below `below`, in
    /// source order.
    pub async fn read_range(
        &mut self,
        table: i64,
        from: (Lsn, i32),
        below: Lsn,
        limit: i64,
    ) -> Result<Vec<BufferedChange>> {
        let lsn = from.0.0 as i64;
        let below = below.0 as i64;
        self.read_in_order(
            "SELECT lsn, seq, ts_us, op, data FROM philotes.changes
             WHERE table_id = $1 AND (lsn, seq) >= ($2, $3) AND lsn < $4
             ORDER BY lsn, seq LIMIT $5",
            &[&table, &lsn, &from.1, &below, &limit],
        )
        .await
    }

    /// Up to `limit` buffered changes of `table` at or after `from`, in source order.
    pub async fn read(&mut self, table: i64, from: Lsn, limit: i64) -> Result<Vec<BufferedChange>> {
        let from = from.0 as i64;
        self.read_in_order(
            "SELECT lsn, seq, ts_us, op, data FROM philotes.changes
             WHERE table_id = $1 AND lsn >= $2 ORDER BY lsn, seq LIMIT $3",
            &[&table, &from, &limit],
        )
        .await
    }

    /// Run a page read of the buffer as a walk of its primary key in order. The buffer fills
    /// and drains faster than statistics follow: with the few rows its last `ANALYZE` saw, the
    /// planner fetches *every* row of the table into a bitmap and sorts them for each page of
    /// 5,000 — 84 ms a page at 300,000 buffered rows against 1.2 ms for the index walk, and a
    /// drain slower the deeper the buffer. So the read runs with bitmap and sequential scans
    /// off, for itself only (`SET LOCAL`).
    async fn read_in_order(
        &mut self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<BufferedChange>> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("cannot read buffered changes", e))?;
        tx.batch_execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off")
            .await
            .map_err(|e| db_error("cannot read buffered changes", e))?;
        let rows = tx
            .query(sql, params)
            .await
            .map_err(|e| db_error("cannot read buffered changes", e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("cannot read buffered changes", e))?;
        Ok(rows.iter().map(change_of).collect())
    }

    /// Remove `table`'s changes below `lsn` (they are in Iceberg), counting them off the
    /// table's `changes_now` in the same statement.
    pub async fn remove_below(&self, table: i64, lsn: Lsn) -> Result<u64> {
        let lsn = lsn.0 as i64;
        let row = self
            .client
            .query_one(
                "WITH gone AS (DELETE FROM philotes.changes WHERE table_id = $1 AND lsn < $2 RETURNING 1),
                      n AS (SELECT count(*) AS n FROM gone),
                      counted AS (UPDATE philotes.tables SET changes_now = changes_now - (SELECT n FROM n)
                                   WHERE id = $1 AND (SELECT n FROM n) > 0)
                 SELECT n FROM n",
                &[&table, &lsn],
            )
            .await
            .map_err(|e| db_error("cannot remove committed changes from the buffer", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Changes buffered and not yet removed, for every table of `pipeline`
    /// (`philotes_buffer_depth`): the sum of the tables' `changes_now`, which every write and
    /// removal keeps in its own transaction (counting the rows would scan the whole buffer).
    pub async fn depth(&self, pipeline: &str) -> Result<u64> {
        let row = self
            .client
            .query_one(DEPTH_SQL, &[&pipeline])
            .await
            .map_err(|e| db_error("cannot measure the buffer", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Count `pipeline`'s buffered rows and compare with the counters [`Self::depth`] reads;
    /// see [`check_depth`].
    pub async fn check_depth(&mut self, pipeline: &str) -> Result<Option<(u64, u64)>> {
        check_depth(&mut self.client, pipeline).await
    }
}

/// `philotes_buffer_depth` of pipeline `$1`.
pub const DEPTH_SQL: &str =
    "SELECT coalesce(sum(changes_now), 0)::bigint FROM philotes.tables WHERE pipeline = $1";

/// Count `pipeline`'s buffered rows and compare with the counters [`ControlDb::depth`] reads.
/// When they differ (a buffer written by an older release, or edited by hand), set the
/// counters to the rows, holding the tables' rows so no write lands in between; returns
/// `(counted, rows)` then. A full scan of the buffer: run it rarely.
pub async fn check_depth(
    client: &mut tokio_postgres::Client,
    pipeline: &str,
) -> Result<Option<(u64, u64)>> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT sum(changes_now) FROM philotes.tables WHERE pipeline = $1), 0)::bigint,
                    (SELECT count(*) FROM philotes.changes c JOIN philotes.tables t ON t.id = c.table_id
                      WHERE t.pipeline = $1)",
            &[&pipeline],
        )
        .await
        .map_err(|e| db_error("cannot count the buffer", e))?;
    let (counted, rows): (i64, i64) = (row.get(0), row.get(1));
    if counted == rows {
        return Ok(None);
    }
    // Writers change a table's rows and its counter in one transaction, the counter last
    // or in the same statement: with every table's row locked, a write not yet committed
    // is invisible to the count and adjusts the counter after this one commits.
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot begin counting the buffer", e))?;
    tx.execute(
        "SELECT id FROM philotes.tables WHERE pipeline = $1 ORDER BY id FOR UPDATE",
        &[&pipeline],
    )
    .await
    .map_err(|e| db_error("cannot lock the tables to count the buffer", e))?;
    tx.execute(
        "UPDATE philotes.tables t SET changes_now =
             (SELECT count(*) FROM philotes.changes c WHERE c.table_id = t.id)
         WHERE t.pipeline = $1",
        &[&pipeline],
    )
    .await
    .map_err(|e| db_error("cannot correct the buffer's counters", e))?;
    let now = tx
        .query_one(DEPTH_SQL, &[&pipeline])
        .await
        .map_err(|e| db_error("cannot measure the buffer", e))?;
    tx.commit()
        .await
        .map_err(|e| db_error("cannot correct the buffer's counters", e))?;
    Ok(Some((
        counted.max(0) as u64,
        now.get::<_, i64>(0).max(0) as u64,
    )))
}

/// One table's changes for [`ControlDb::write_table`].
pub struct TableBatch<'a> {
    pub pipeline: &'a str,
    pub table: i64,
    pub changes: &'a [BufferedChange],
    /// Remove the table's rows at or above this position first.
    pub clear_from: Option<Lsn>,
    /// Everything of the table below this position is buffered once the batch commits.
    pub upto: Option<Lsn>,
}

fn change_of(r: &tokio_postgres::Row) -> BufferedChange {
    BufferedChange {
        lsn: Lsn(r.get::<_, i64>(0) as u64),
        seq: r.get(1),
        ts_us: r.get(2),
        op: r.get::<_, i8>(3) as u8,
        data: r.get(4),
    }
}

/// `COPY` `changes` into the buffer within `tx`.
async fn copy_changes<'c>(
    tx: &tokio_postgres::Transaction<'_>,
    changes: impl Iterator<Item = (i64, &'c BufferedChange)>,
) -> Result<u64> {
    let sink = tx
        .copy_in("COPY philotes.changes (table_id, lsn, seq, ts_us, op, data) FROM STDIN (FORMAT binary)")
        .await
        .map_err(|e| db_error("cannot start buffering changes", e))?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::INT8,
            Type::CHAR,
            Type::BYTEA,
        ],
    );
    pin_mut!(writer);
    for (table, c) in changes {
        let lsn = c.lsn.0 as i64;
        let op = c.op as i8;
        writer
            .as_mut()
            .write(&[&table, &lsn, &c.seq, &c.ts_us, &op, &c.data])
            .await
            .map_err(|e| db_error("cannot buffer a change", e))?;
    }
    writer
        .finish()
        .await
        .map_err(|e| db_error("cannot buffer changes", e))
}

/// Everything of `pipeline` below `upto` is buffered.
async fn record_pipeline(
    tx: &tokio_postgres::Transaction<'_>,
    pipeline: &str,
    upto: Lsn,
) -> Result<()> {
    let upto = upto.0 as i64;
    tx.execute(
        "UPDATE philotes.pipelines SET buffered_lsn = greatest(buffered_lsn, $2), updated_at = now() WHERE name = $1",
        &[&pipeline, &upto],
    )
    .await
    .map_err(|e| db_error("cannot record the buffered position", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_damage_is_an_error() {
        let row = vec![
            Cell::Null,
            Cell::Unchanged,
            Cell::Text(Bytes::from_static(b"caf\xc3\xa9")),
            Cell::Binary(Bytes::from_static(&[0, 1, 2, 255])),
            Cell::Text(Bytes::new()),
        ];
        let mut out = Vec::new();
        encode_row(&row, &mut out).unwrap();
        assert_eq!(decode_row(&out).unwrap(), row);
        for cut in 0..out.len() {
            assert!(decode_row(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(decode_row(&longer).is_err());
        let mut bad_tag = out.clone();
        bad_tag[2] = 9;
        assert!(decode_row(&bad_tag).is_err());
        let mut empty = Vec::new();
        encode_row(&[], &mut empty).unwrap();
        assert_eq!(decode_row(&empty).unwrap(), Vec::<Cell>::new());
    }
}
