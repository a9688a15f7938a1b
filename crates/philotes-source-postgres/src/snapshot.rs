//! Consistent initial copies.
//!
//! A temporary replication slot is created with an exported snapshot; every table is then read
//! with `COPY … TO STDOUT` inside a transaction that adopts that snapshot. The slot's consistent
//! point `C` is exact: the copy holds every transaction that committed before `C` and none after,
//! and the stream delivers every transaction that commits at or after `C`. A table's changelog
//! records `C` as its watermark, so the pipeline skips streamed transactions before `C` for that
//! table — nothing lost, nothing doubled, even when the pipeline's own slot is older than `C`.
//!
//! The temporary slot disappears with its session, so a crash leaves nothing behind on the
//! source; an interrupted copy is simply started again under a new snapshot.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pgwire_replication::ReplicationClient;
use philotes_core::{Cell, Error, ErrorKind, Lsn, Result, Row, TableName};
use tokio::sync::mpsc;

use crate::catalog::source_error;
use crate::connect::SourceConn;

/// An open exported snapshot; dropping it releases the snapshot and its temporary slot.
pub struct ExportedSnapshot {
    _session: ReplicationClient,
    /// The slot's consistent point.
    pub lsn: Lsn,
    /// The snapshot name for `SET TRANSACTION SNAPSHOT`.
    pub name: String,
}

impl ExportedSnapshot {
    pub async fn open(conn: &SourceConn, publication: &str) -> Result<ExportedSnapshot> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let temp_slot = format!("philotes_snapshot_{}_{nanos}", std::process::id());
        let cfg = conn.replication_config(&temp_slot, publication);
        let mut session = ReplicationClient::connect_gated(cfg)
            .await
            .map_err(repl_error)?;
        let rows = session
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {temp_slot} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
            ))
            .await
            .map_err(repl_error)?;
        let row = rows.into_iter().next().ok_or_else(|| {
            Error::new(ErrorKind::Source, "CREATE_REPLICATION_SLOT returned no row")
        })?;
        let text = |i: usize| -> Result<String> {
            row.get(i)
                .and_then(|v| v.as_ref())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Source,
                        format!("CREATE_REPLICATION_SLOT returned no column {i}"),
                    )
                })
        };
        let lsn: Lsn = text(1)?.parse()?;
        let name = text(2)?;
        tracing::info!(consistent_point = %lsn, snapshot = %name, "exported a consistent snapshot");
        Ok(ExportedSnapshot {
            _session: session,
            lsn,
            name,
        })
    }
}

pub(crate) fn repl_error(e: pgwire_replication::PgWireError) -> Error {
    Error::new(
        ErrorKind::Source,
        format!(
            "replication connection failed: {e}; check that the user has the REPLICATION attribute and that pg_hba.conf allows replication connections"
        ),
    )
}

/// Copy `table`'s `columns` as of the exported snapshot `snapshot_name`, sending rows in batches of `batch` on `tx`.
/// Returns the number of rows copied.
pub async fn copy_table(
    conn: &SourceConn,
    snapshot_name: &str,
    table: &TableName,
    columns: &[String],
    batch: usize,
    tx: mpsc::Sender<Vec<Row>>,
) -> Result<u64> {
    let client = conn.connect().await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot_name.replace('\'', "''")
        ))
        .await
        .map_err(|e| source_error("adopting the exported snapshot", e))?;
    let cols: Vec<String> = columns
        .iter()
        .map(|c| philotes_core::change::quote_ident(c))
        .collect();
    let sql = format!(
        "COPY (SELECT {} FROM ONLY {}) TO STDOUT",
        cols.join(", "),
        table.quoted()
    );
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| source_error("starting the table copy", e).with("table", table))?;
    let mut stream = std::pin::pin!(stream);
    let mut pending = BytesMut::new();
    let mut rows: Vec<Row> = Vec::with_capacity(batch);
    let mut count = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| source_error("reading the table copy", e).with("table", table))?;
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line = pending.split_to(nl + 1).freeze();
            rows.push(
                parse_copy_line(&line.slice(..nl), columns.len())
                    .map_err(|e| e.with("table", table))?,
            );
            count += 1;
            if rows.len() >= batch {
                let full = std::mem::replace(&mut rows, Vec::with_capacity(batch));
                if tx.send(full).await.is_err() {
                    return Err(Error::new(
                        ErrorKind::Cancelled,
                        "the snapshot writer stopped",
                    ));
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err(Error::new(
            ErrorKind::Protocol,
            "COPY output ended in the middle of a row",
        )
        .with("table", table));
    }
    if !rows.is_empty() && tx.send(rows).await.is_err() {
        return Err(Error::new(
            ErrorKind::Cancelled,
            "the snapshot writer stopped",
        ));
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| source_error("ending the snapshot transaction", e))?;
    Ok(count)
}

/// Split one line of `COPY … TO STDOUT` text format into cells, undoing its escapes.
pub fn parse_copy_line(line: &Bytes, ncols: usize) -> Result<Row> {
    let mut cells = Vec::with_capacity(ncols);
    for field in line.split(|&b| b == b'\t') {
        if field == b"\\N" {
            cells.push(Cell::Null);
        } else if !field.contains(&b'\\') {
            // No escapes: share the buffer instead of copying.
            let start = field.as_ptr() as usize - line.as_ptr() as usize;
            cells.push(Cell::Text(line.slice(start..start + field.len())));
        } else {
            cells.push(Cell::Text(Bytes::from(unescape(field)?)));
        }
    }
    if cells.len() != ncols {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("a COPY row has {} fields, expected {ncols}", cells.len()),
        ));
    }
    Ok(cells)
}

fn unescape(field: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&next) = field.get(i + 1) else {
            return Err(Error::new(
                ErrorKind::Protocol,
                "COPY field ends in a lone backslash",
            ));
        };
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(next - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xFF) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match field.get(i).and_then(|&d| char::from(d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Cell {
        Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn copy_text_format() {
        let line = Bytes::from_static(b"1\t\\N\ta\\tb\\nc\\\\d\t\t\\x41\\101");
        let row = parse_copy_line(&line, 5).unwrap();
        assert_eq!(
            row,
            vec![
                text("1"),
                Cell::Null,
                text("a\tb\nc\\d"),
                text(""),
                text("AA")
            ]
        );
        assert!(parse_copy_line(&line, 6).is_err());
        assert!(parse_copy_line(&Bytes::from_static(b"a\\"), 1).is_err());
    }

    #[test]
    fn bytea_hex_survives_copy_escaping() {
        // bytea '\x00ff' prints as \x00ff; COPY doubles the backslash.
        let row = parse_copy_line(&Bytes::from_static(b"\\\\x00ff"), 1).unwrap();
        assert_eq!(row, vec![text("\\x00ff")]);
    }
}
