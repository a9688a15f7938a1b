//! The shared vocabulary of Philotes.
//!
//! Every other crate speaks in these types: a source turns PostgreSQL's replication stream into
//! [`Change`]s, a sink turns them into lake files, and the pipeline moves them between the two
//! while tracking [`Lsn`]s. Keeping them here (and free of heavy dependencies) lets the decoder,
//! the sink and the pipeline be built, tested and fuzzed on their own.

pub mod change;
pub mod error;
pub mod lsn;
pub mod retry;
pub mod seams;
pub mod secret;
pub mod types;

pub use change::{
    AsCell, Cell, CellRef, Change, ColumnDesc, Op, RelationDesc, ReplicaIdentity, Row, TableName,
};
pub use error::{Error, ErrorKind, Result};
pub use lsn::Lsn;
pub use seams::{ChangeSource, ConvertError, Next, RowBatcher, TableProgress, TableSink};
pub use secret::Secret;
pub use types::ColumnType;
