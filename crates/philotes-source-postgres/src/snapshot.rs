//! Consistent initial copies.
//!
//! A temporary replication slot is created with an exported snapshot; every table is then read
//! with `COPY … TO STDOUT (FORMAT binary)` inside a transaction that adopts that snapshot. The slot's consistent
//! point `C` is exact: the copy holds every transaction that committed before `C` and none after,
//! and the stream delivers every transaction that commits at or after `C`. A table's changelog
//! records `C` as its watermark, so the pipeline skips streamed transactions before `C` for that
//! table — nothing lost, nothing doubled, even when the pipeline's own slot is older than `C`.
//!
//! The temporary slot disappears with its session, so a crash leaves nothing behind on the
//! source; an interrupted copy is simply started again under a new snapshot.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use pgwire_replication::ReplicationClient;
use philotes_core::types::binary_decodable;
use philotes_core::{CellRef, ColumnDesc, Error, ErrorKind, Lsn, Result, TableName};
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

/// How much COPY output the reader gathers before handing it on: big enough that per-chunk
/// costs vanish, small enough that a few chunks in flight stay well under a megabyte each.
const CHUNK_BYTES: usize = 256 * 1024;

/// `COPY … (FORMAT binary)` starts with this signature, then flags and a header extension.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Whole tuples of `COPY … TO STDOUT (FORMAT binary)` output, parsed by whoever receives them.
pub struct CopyChunk {
    data: Bytes,
    /// Per column: read in its binary send format (else as text, cast in the query).
    binary: Arc<[bool]>,
}

impl CopyChunk {
    /// Call `f` with the cells of every row, in order, until it breaks. Cells are borrowed from
    /// the chunk: a row costs no allocation.
    pub fn for_each_row<F>(&self, mut f: F) -> Result<ControlFlow<()>>
    where
        F: FnMut(&[CellRef<'_>]) -> ControlFlow<()>,
    {
        let data: &[u8] = &self.data;
        let mut cells: Vec<CellRef<'_>> = Vec::with_capacity(self.binary.len());
        let mut pos = 0;
        while pos < data.len() {
            let n = i16::from_be_bytes(take(data, &mut pos)?);
            check_width(n, self.binary.len())?;
            cells.clear();
            for &binary in self.binary.iter() {
                let len = i32::from_be_bytes(take(data, &mut pos)?);
                cells.push(match field(data, &mut pos, len)? {
                    None => CellRef::Null,
                    Some(v) if binary => CellRef::Binary(v),
                    Some(v) => CellRef::Text(v),
                });
            }
            let flow = f(&cells);
            if flow.is_break() {
                return Ok(flow);
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

fn malformed(what: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("malformed COPY binary output: {what}"),
    )
}

/// The next `N` bytes at `pos`, if there are as many.
fn read<const N: usize>(data: &[u8], pos: &mut usize) -> Option<[u8; N]> {
    let bytes = data
        .get(*pos..*pos + N)
        .and_then(|b| <[u8; N]>::try_from(b).ok())?;
    *pos += N;
    Some(bytes)
}

/// The next `N` bytes at `pos`, which must be there.
fn take<const N: usize>(data: &[u8], pos: &mut usize) -> Result<[u8; N]> {
    read(data, pos).ok_or_else(|| malformed("a tuple is cut short"))
}

/// A field of length `len` at `pos` (`None` for NULL).
fn field<'a>(data: &'a [u8], pos: &mut usize, len: i32) -> Result<Option<&'a [u8]>> {
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| malformed("a negative field length"))?;
    let v = data
        .get(*pos..*pos + len)
        .ok_or_else(|| malformed("a field is cut short"))?;
    *pos += len;
    Ok(Some(v))
}

fn check_width(found: i16, ncols: usize) -> Result<()> {
    if usize::try_from(found).ok() == Some(ncols) {
        Ok(())
    } else {
        Err(malformed(&format!(
            "a tuple has {found} fields, expected {ncols}"
        )))
    }
}

/// Finds where complete tuples end in the reader's buffer, so chunks never split a tuple.
struct Framer {
    ncols: usize,
    header_done: bool,
    /// Bytes of complete tuples at the front of the buffer.
    complete: usize,
    /// The trailer (a field count of -1) was seen right after `complete`.
    ended: bool,
}

impl Framer {
    /// Skip the header once it is complete, then move `complete` over every whole tuple.
    fn scan(&mut self, buf: &mut BytesMut) -> Result<()> {
        if !self.header_done {
            if buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(malformed("the signature is missing"));
            }
            let mut pos = SIGNATURE.len();
            let flags = u32::from_be_bytes(take(buf, &mut pos)?);
            if flags & (1 << 16) != 0 {
                return Err(malformed("rows carry OIDs"));
            }
            let ext = u32::from_be_bytes(take(buf, &mut pos)?) as usize;
            if buf.len() < pos + ext {
                return Ok(());
            }
            buf.advance(pos + ext);
            self.header_done = true;
        }
        while !self.ended {
            match tuple_len(&buf[self.complete..], self.ncols)? {
                Some(0) => self.ended = true,
                Some(n) => self.complete += n,
                None => break,
            }
        }
        Ok(())
    }
}

/// The length of the tuple at the start of `data`: `None` when incomplete, `Some(0)` for the
/// trailer.
fn tuple_len(data: &[u8], ncols: usize) -> Result<Option<usize>> {
    let mut pos = 0;
    let Some(n) = read::<2>(data, &mut pos) else {
        return Ok(None);
    };
    let n = i16::from_be_bytes(n);
    if n == -1 {
        return Ok(Some(0));
    }
    check_width(n, ncols)?;
    for _ in 0..ncols {
        let Some(len) = read::<4>(data, &mut pos) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes(len);
        if len == -1 {
            continue;
        }
        pos += usize::try_from(len).map_err(|_| malformed("a negative field length"))?;
        if pos > data.len() {
            return Ok(None);
        }
    }
    Ok(Some(pos))
}

/// The select list of a copy: columns whose binary form the sink decodes as they are, every
/// other column cast to text (whose binary form is its text), so PostgreSQL formats only what
/// needs its text form.
fn select_list(columns: &[ColumnDesc]) -> (String, Arc<[bool]>) {
    let binary: Arc<[bool]> = columns
        .iter()
        .map(|c| binary_decodable(c.type_oid, &c.ty))
        .collect();
    let list: Vec<String> = columns
        .iter()
        .zip(binary.iter())
        .map(|(c, &b)| {
            let q = philotes_core::change::quote_ident(&c.name);
            if b { q } else { format!("{q}::text") }
        })
        .collect();
    (list.join(", "), binary)
}

/// Copy `table`'s `columns` as of the exported snapshot `snapshot_name`, sending whole tuples
/// in chunks on `tx`. Returns the number of bytes copied.
pub async fn copy_table(
    conn: &SourceConn,
    snapshot_name: &str,
    table: &TableName,
    columns: &[ColumnDesc],
    partitioned: bool,
    tx: mpsc::Sender<CopyChunk>,
) -> Result<u64> {
    let client = conn.connect().await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot_name.replace('\'', "''")
        ))
        .await
        .map_err(|e| source_error("adopting the exported snapshot", e))?;
    let (list, binary) = select_list(columns);
    // `ONLY` keeps inheritance children out; a partitioned table's rows are all in its
    // partitions.
    let only = if partitioned { "" } else { "ONLY " };
    let sql = format!(
        "COPY (SELECT {list} FROM {only}{}) TO STDOUT (FORMAT binary)",
        table.quoted()
    );
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| source_error("starting the table copy", e).with("table", table))?;
    let mut stream = std::pin::pin!(stream);
    let mut pending = BytesMut::with_capacity(2 * CHUNK_BYTES);
    let mut framer = Framer {
        ncols: columns.len(),
        header_done: false,
        complete: 0,
        ended: false,
    };
    let mut bytes = 0u64;
    let send = |data: Bytes| {
        let chunk = CopyChunk {
            data,
            binary: binary.clone(),
        };
        let tx = tx.clone();
        async move {
            tx.send(chunk)
                .await
                .map_err(|_| Error::new(ErrorKind::Cancelled, "the snapshot writer stopped"))
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| source_error("reading the table copy", e).with("table", table))?;
        bytes += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        framer
            .scan(&mut pending)
            .map_err(|e| e.with("table", table))?;
        if framer.complete >= CHUNK_BYTES {
            let whole = pending.split_to(framer.complete).freeze();
            framer.complete = 0;
            pending.reserve(2 * CHUNK_BYTES);
            send(whole).await?;
        }
    }
    if !framer.ended || pending.len() != framer.complete + 2 {
        return Err(
            malformed("the output does not end with exactly one trailer").with("table", table),
        );
    }
    if framer.complete > 0 {
        send(pending.split_to(framer.complete).freeze()).await?;
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| source_error("ending the snapshot transaction", e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use philotes_core::types::oid;
    use philotes_core::{Cell, ColumnType};

    /// COPY binary output of `rows` (`None` = NULL), with header and trailer.
    fn copy_output(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(b"ext");
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn framer(ncols: usize) -> Framer {
        Framer {
            ncols,
            header_done: false,
            complete: 0,
            ended: false,
        }
    }

    #[test]
    fn tuples_are_framed_whatever_the_message_boundaries() {
        let rows = vec![
            vec![Some(&[0, 0, 0, 1][..]), Some(&b"ab"[..])],
            vec![Some(&[0, 0, 0, 2][..]), None],
            vec![Some(&[0, 0, 0, 3][..]), Some(&b""[..])],
        ];
        let all = copy_output(&rows);
        // Feed the output in pieces of every size: the framer only ever counts whole tuples.
        for step in 1..all.len() {
            let mut f = framer(2);
            let mut buf = BytesMut::new();
            for piece in all.chunks(step) {
                buf.extend_from_slice(piece);
                f.scan(&mut buf).unwrap();
            }
            assert!(f.ended, "step {step}");
            assert_eq!(buf.len(), f.complete + 2, "step {step}");
            let chunk = CopyChunk {
                data: buf.split_to(f.complete).freeze(),
                binary: Arc::from(vec![true, false]),
            };
            let mut seen = Vec::new();
            let flow = chunk
                .for_each_row(|row| {
                    seen.push(row.iter().map(|c| c.to_owned_cell()).collect::<Vec<_>>());
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert!(flow.is_continue());
            assert_eq!(seen.len(), 3);
            assert_eq!(seen[0][1], Cell::Text(Bytes::from_static(b"ab")));
            assert_eq!(seen[1][0], Cell::Binary(Bytes::from_static(&[0, 0, 0, 2])));
            assert_eq!(seen[1][1], Cell::Null);
        }
    }

    #[test]
    fn malformed_output_is_an_error() {
        let all = copy_output(&[vec![Some(&b"x"[..])]]);
        let mut buf = BytesMut::from(&all[..]);
        assert!(framer(2).scan(&mut buf).is_err(), "wrong field count");
        let mut bad = all.clone();
        bad[0] = b'X';
        assert!(
            framer(1).scan(&mut BytesMut::from(&bad[..])).is_err(),
            "signature"
        );
        let mut neg = copy_output(&[]);
        let trailer = neg.len() - 2;
        neg.truncate(trailer);
        neg.extend_from_slice(&1i16.to_be_bytes());
        neg.extend_from_slice(&(-7i32).to_be_bytes());
        assert!(
            framer(1).scan(&mut BytesMut::from(&neg[..])).is_err(),
            "length -7"
        );
        let chunk = CopyChunk {
            data: Bytes::from_static(&[0, 1, 0, 0, 0, 9, b'a']),
            binary: Arc::from(vec![false]),
        };
        assert!(chunk.for_each_row(|_| ControlFlow::Continue(())).is_err());
    }

    #[test]
    fn only_decodable_types_are_read_in_binary() {
        let col = |name: &str, type_oid: u32, ty: ColumnType| ColumnDesc {
            name: name.into(),
            type_oid,
            type_modifier: -1,
            is_key: false,
            ty,
            attnum: None,
            filled_on_add: false,
        };
        let (list, binary) = select_list(&[
            col("id", oid::INT8, ColumnType::Int64),
            col("n", oid::NUMERIC, ColumnType::Text),
            col("Odd \"name\"", oid::TIMESTAMPTZ, ColumnType::Timestamptz),
        ]);
        assert_eq!(list, r#""id", "n"::text, "Odd ""name""""#);
        assert_eq!(&binary[..], &[true, false, true]);
    }
}
