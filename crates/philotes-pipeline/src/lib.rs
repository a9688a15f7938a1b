//! The Philotes pipeline: from a publication to changelog tables, exactly once.
//!
//! How positions work (the heart of "no change lost or doubled"):
//!
//! - Each changelog table records a *watermark* `W` in the summary of every Iceberg commit:
//!   every source transaction whose commit LSN is below `W` is in the table, none at or above.
//!   An initial copy sets `W` to its snapshot's consistent point; a streaming commit sets it to
//!   the end LSN of the last transaction it includes.
//! - The stream starts from the slot's confirmed position, which may be older than a table's
//!   `W`; a transaction is applied to a table only if its commit LSN is at or above that
//!   table's `W`. Replays after a crash are therefore skipped per table.
//! - The slot is confirmed only up to positions whose changes are committed in every table (and
//!   never past the watermark of a table stopped by an error, so its changes stay in the WAL).

mod apply;
pub mod dlq;
mod ingest;
pub mod lease;
mod managed;
mod progress;
mod run;
mod sink;
mod snapshot;
mod worker;

pub use dlq::{DeadLetter, DeadLetters, Decision};
pub use ingest::{ingest, lake_identity};
pub use managed::{ManagedRole, manage, pipeline_dir, settings_for};
pub use run::{Resync, RunReport, TableError, run};
pub use worker::work;
