//! The PostgreSQL source of Philotes.
//!
//! - [`connect`]: one connection string, SQL and replication connections, libpq's `sslmode`.
//! - [`preflight`]: checks with actionable errors; publication and slot set-up.
//! - [`catalog`]: tables, columns, keys and types from the system catalog.
//! - [`snapshot`]: consistent initial copies under an exported snapshot.
//! - [`stream`]: the pgoutput stream as [`philotes_core::Change`]s.
//!
//! The replication client is `pgwire-replication` (see `docs/decisions/001-replication-client.md`);
//! nothing outside this crate sees it.

pub mod catalog;
pub mod connect;
pub mod preflight;
pub mod snapshot;
mod spill;
pub mod stream;

pub use catalog::{SourceTable, TypeResolver};
pub use connect::SourceConn;
pub use snapshot::ExportedSnapshot;
pub use stream::ReplicationStream;
