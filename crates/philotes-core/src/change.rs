//! Changes as they leave the source: transactions, relations, rows.
//!
//! Values stay in PostgreSQL's own encodings until the sink converts them to the lake type, so
//! the source never interprets (and never alters) a value: the text form ([`Cell::Text`]) from
//! the stream, and the binary send format ([`Cell::Binary`]) from initial copies of the types
//! whose binary form the sink decodes (see [`crate::types::binary_decodable`]).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::types::ColumnType;

/// A source table's schema-qualified name.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The name quoted for use in SQL (`"public"."Orders"`).
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Quote an SQL identifier the way PostgreSQL's `quote_ident` does (always quoted).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// How a table identifies the old row of updates and deletes (`pg_class.relreplident`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key (nothing when there is none).
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: the whole old row.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

/// One column of a source table.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnDesc {
    pub name: String,
    /// PostgreSQL type OID.
    pub type_oid: u32,
    /// PostgreSQL type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
    /// Part of the replica identity (the key of updates and deletes).
    pub is_key: bool,
    /// The lake type this column maps to.
    pub ty: ColumnType,
    /// `pg_attribute.attnum`, when the source could look it up: it survives renames, so the
    /// sink can tell a renamed column from a dropped one and a new one.
    pub attnum: Option<i16>,
    /// Added with a default PostgreSQL stored without rewriting the table (`atthasmissing`):
    /// rows older than the column hold the default although no change for them was sent.
    pub filled_on_add: bool,
}

/// A source table as the stream describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RelationDesc {
    pub oid: u32,
    pub table: TableName,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<ColumnDesc>,
}

impl RelationDesc {
    pub fn key_columns(&self) -> impl Iterator<Item = (usize, &ColumnDesc)> {
        self.columns.iter().enumerate().filter(|(_, c)| c.is_key)
    }

    /// Same column names and types, in the same order, as `columns`.
    pub fn same_shape(&self, columns: &[ColumnDesc]) -> bool {
        self.columns.len() == columns.len()
            && self.columns.iter().zip(columns).all(|(a, b)| {
                a.name == b.name && a.type_oid == b.type_oid && a.type_modifier == b.type_modifier
            })
    }
}

/// One column value of a row, in PostgreSQL's text form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// An unchanged TOASTed value that the stream did not resend.
    Unchanged,
    Text(Bytes),
    /// The value in its type's binary send format.
    Binary(Bytes),
}

pub type Row = Vec<Cell>;

/// A borrowed [`Cell`]: what converters read, so a row parsed straight out of a network buffer
/// needs no allocation of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellRef<'a> {
    Null,
    Unchanged,
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

impl CellRef<'_> {
    pub fn to_owned_cell(self) -> Cell {
        match self {
            CellRef::Null => Cell::Null,
            CellRef::Unchanged => Cell::Unchanged,
            CellRef::Text(b) => Cell::Text(Bytes::copy_from_slice(b)),
            CellRef::Binary(b) => Cell::Binary(Bytes::copy_from_slice(b)),
        }
    }
}

/// Anything a row can be made of: owned [`Cell`]s from the stream, [`CellRef`]s from a copy.
pub trait AsCell {
    fn as_cell(&self) -> CellRef<'_>;
}

impl AsCell for Cell {
    fn as_cell(&self) -> CellRef<'_> {
        match self {
            Cell::Null => CellRef::Null,
            Cell::Unchanged => CellRef::Unchanged,
            Cell::Text(b) => CellRef::Text(b),
            Cell::Binary(b) => CellRef::Binary(b),
        }
    }
}

impl AsCell for CellRef<'_> {
    fn as_cell(&self) -> CellRef<'_> {
        *self
    }
}

/// The change kind written to `_cdc_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Snapshot,
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Snapshot => "S",
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
            Op::Truncate => "T",
        }
    }
}

/// What the source hands the pipeline, in stream order.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Begin {
        /// LSN of the transaction's commit record.
        commit_lsn: Lsn,
        /// Commit time, microseconds since the Unix epoch.
        commit_ts_us: i64,
        xid: u32,
    },
    Relation(Arc<RelationDesc>),
    Insert {
        rel: u32,
        new: Row,
    },
    Update {
        rel: u32,
        /// The old key (`K`) or old row (`O`), when the stream sent one.
        old: Option<Row>,
        new: Row,
    },
    Delete {
        rel: u32,
        old: Row,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// A logical decoding message (`pg_logical_emit_message`).
    Message {
        lsn: Lsn,
        transactional: bool,
        prefix: String,
        content: Bytes,
    },
    Commit {
        commit_lsn: Lsn,
        /// End of the commit record: confirming this LSN means the transaction is done.
        end_lsn: Lsn,
        commit_ts_us: i64,
    },
    /// The server's current WAL end, sent while nothing else is.
    KeepAlive {
        wal_end: Lsn,
    },
}
