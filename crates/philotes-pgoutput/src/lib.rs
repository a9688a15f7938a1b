//! A decoder for PostgreSQL's `pgoutput` logical replication messages (protocol versions 1
//! and 2).
//!
//! Why our own: the replication transport we use (`pgwire-replication`) hands over raw
//! `XLogData` payloads, and the crates that decode them drop information a CDC pipeline must
//! keep (an unchanged TOAST value and a NULL look the same in their row helpers). This decoder
//! keeps every byte the server sent, and returns an error — never a panic — on malformed input,
//! so it can be fuzzed (`fuzz/`) and trusted with whatever arrives on the wire.
//!
//! Protocol version 2 adds streaming of transactions still in progress: a block of changes
//! opens with Stream Start and closes with Stream Stop, and each change inside carries the id
//! of the (sub)transaction that made it — [`decode_streamed`] reads those, [`decode`] the rest.
//! Which one applies depends on where the message stands in the stream, so the caller (who
//! saw the Stream Start) chooses.
//!
//! The format is documented in PostgreSQL's "Logical Replication Message Formats". Values are
//! kept as [`bytes::Bytes`] slices of the message (no copy).

use bytes::Bytes;
use philotes_core::{Cell, Error, ErrorKind, Lsn, Result};

/// One column of a `Relation` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 1: part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// A decoded pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 (PostgreSQL's epoch).
        timestamp: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        timestamp: i64,
    },
    Origin {
        lsn: Lsn,
        name: String,
    },
    Relation {
        oid: u32,
        /// Empty for `pg_catalog`.
        namespace: String,
        name: String,
        replica_identity: u8,
        columns: Vec<RelationColumn>,
    },
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        oid: u32,
        new: Vec<Cell>,
    },
    Update {
        oid: u32,
        /// `b'K'` (old key) or `b'O'` (old row) with its tuple, when sent.
        old: Option<(u8, Vec<Cell>)>,
        new: Vec<Cell>,
    },
    Delete {
        oid: u32,
        /// `b'K'` (old key) or `b'O'` (old row).
        kind: u8,
        old: Vec<Cell>,
    },
    Truncate {
        /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
        options: u8,
        oids: Vec<u32>,
    },
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
    /// Protocol 2: a block of changes of in-progress transaction `xid` follows.
    StreamStart {
        xid: u32,
        /// The transaction's first block.
        first_segment: bool,
    },
    /// Protocol 2: the end of a block.
    StreamStop,
    /// Protocol 2: streamed transaction `xid` committed.
    StreamCommit {
        xid: u32,
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        timestamp: i64,
    },
    /// Protocol 2: subtransaction `subxid` of `xid` (or `xid` itself, when equal) rolled back.
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
}

/// Tags of the messages that carry a transaction id inside a stream block.
const STREAMED_TAGS: &[u8] = b"RYIUDTM";

/// Whether a payload received inside a stream block carries a transaction id (a change,
/// relation, type, truncate or transactional message), rather than being a stream control
/// message or an origin.
pub fn is_streamed_change(data: &[u8]) -> bool {
    data.first().is_some_and(|t| STREAMED_TAGS.contains(t))
}

/// The (sub)transaction id of a message received inside a stream block, without decoding the
/// rest.
pub fn streamed_xid(data: &Bytes) -> Result<u32> {
    let mut r = Reader { data, pos: 0 };
    r.streamed_prefix().map(|(_, xid)| xid)
}

/// Decode one message received inside a stream block: its (sub)transaction id and the
/// message.
pub fn decode_streamed(data: &Bytes) -> Result<(u32, Message)> {
    let mut r = Reader { data, pos: 0 };
    let (tag, xid) = r.streamed_prefix()?;
    let msg = body(&mut r, tag)?;
    r.finish()?;
    Ok((xid, msg))
}

/// Decode one pgoutput message (the payload of an `XLogData`) received outside a stream block.
pub fn decode(data: &Bytes) -> Result<Message> {
    let mut r = Reader { data, pos: 0 };
    let tag = r.u8()?;
    let msg = body(&mut r, tag)?;
    r.finish()?;
    Ok(msg)
}

/// Decode the rest of a message whose tag has been read.
fn body(r: &mut Reader<'_>, tag: u8) -> Result<Message> {
    Ok(match tag {
        b'B' => Message::Begin {
            final_lsn: Lsn(r.u64()?),
            timestamp: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => Message::Commit {
            flags: r.u8()?,
            commit_lsn: Lsn(r.u64()?),
            end_lsn: Lsn(r.u64()?),
            timestamp: r.i64()?,
        },
        b'O' => Message::Origin {
            lsn: Lsn(r.u64()?),
            name: r.cstr()?,
        },
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.u16()?;
            let mut columns = Vec::with_capacity(usize::from(n).min(r.remaining()));
            for _ in 0..n {
                columns.push(RelationColumn {
                    flags: r.u8()?,
                    name: r.cstr()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            }
        }
        b'Y' => Message::Type {
            oid: r.u32()?,
            namespace: r.cstr()?,
            name: r.cstr()?,
        },
        b'I' => {
            let oid = r.u32()?;
            r.expect(b'N', "Insert")?;
            Message::Insert {
                oid,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let oid = r.u32()?;
            let mut old = None;
            let mut marker = r.u8()?;
            if marker == b'K' || marker == b'O' {
                old = Some((marker, r.tuple()?));
                marker = r.u8()?;
            }
            if marker != b'N' {
                return Err(r.error(format!(
                    "Update: expected new tuple marker 'N', found byte {marker}"
                )));
            }
            Message::Update {
                oid,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let oid = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err(r.error(format!(
                    "Delete: expected old tuple marker 'K' or 'O', found byte {kind}"
                )));
            }
            Message::Delete {
                oid,
                kind,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32()?;
            let options = r.u8()?;
            let count = usize::try_from(n).unwrap_or(usize::MAX);
            let mut oids = Vec::with_capacity(count.min(r.remaining() / 4));
            for _ in 0..n {
                oids.push(r.u32()?);
            }
            Message::Truncate { options, oids }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = Lsn(r.u64()?);
            let prefix = r.cstr()?;
            let len = r.len32()?;
            Message::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.bytes(len)?,
            }
        }
        b'S' => Message::StreamStart {
            xid: r.u32()?,
            first_segment: r.u8()? == 1,
        },
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit {
            xid: r.u32()?,
            flags: r.u8()?,
            commit_lsn: Lsn(r.u64()?),
            end_lsn: Lsn(r.u64()?),
            timestamp: r.i64()?,
        },
        b'A' => Message::StreamAbort {
            xid: r.u32()?,
            subxid: r.u32()?,
        },
        other => {
            return Err(r.error(format!(
                "unknown pgoutput message type {:?} (byte {other}); Philotes speaks protocol versions 1 and 2",
                char::from(other)
            )));
        }
    })
}

struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    /// The tag and transaction id that open a message inside a stream block.
    fn streamed_prefix(&mut self) -> Result<(u8, u32)> {
        let tag = self.u8()?;
        if !STREAMED_TAGS.contains(&tag) {
            return Err(self.error(format!(
                "message type {:?} does not belong inside a stream block",
                char::from(tag)
            )));
        }
        Ok((tag, self.u32()?))
    }

    fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!(
                "{} trailing bytes after a complete message",
                self.remaining()
            )));
        }
        Ok(())
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn error(&self, what: String) -> Error {
        Error::new(
            ErrorKind::Protocol,
            format!("malformed pgoutput message: {what}"),
        )
        .with("offset", self.pos)
        .with("length", self.data.len())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.data.len());
        match end.and_then(|e| self.data.get(self.pos..e)) {
            Some(slice) => {
                let mut out = [0u8; N];
                out.copy_from_slice(slice);
                self.pos += N;
                Ok(out)
            }
            None => Err(self.error(format!("message ends early, needed {N} more bytes"))),
        }
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn len32(&mut self) -> Result<usize> {
        let len = self.i32()?;
        usize::try_from(len).map_err(|_| self.error(format!("negative length {len}")))
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<()> {
        let got = self.u8()?;
        if got == want {
            Ok(())
        } else {
            Err(self.error(format!(
                "{what}: expected marker {:?}, found byte {got}",
                char::from(want)
            )))
        }
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes> {
        if len > self.remaining() {
            return Err(self.error(format!(
                "a value of {len} bytes is longer than the {} bytes left",
                self.remaining()
            )));
        }
        let out = self.data.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    fn cstr(&mut self) -> Result<String> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error("a string is not NUL-terminated".into()));
        };
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| self.error("a name is not valid UTF-8".into()))?
            .to_owned();
        self.pos += nul + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Cell>> {
        let n = self.u16()?;
        let mut cells = Vec::with_capacity(usize::from(n).min(self.remaining()));
        for _ in 0..n {
            let kind = self.u8()?;
            cells.push(match kind {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' => {
                    let len = self.len32()?;
                    Cell::Text(self.bytes(len)?)
                }
                b'b' => {
                    return Err(self.error(
                        "binary column values are not supported; Philotes asks for text format"
                            .into(),
                    ));
                }
                other => {
                    return Err(self.error(format!("unknown column value kind byte {other}")));
                }
            });
        }
        Ok(cells)
    }
}

#[cfg(test)]
mod tests;
