//! The Iceberg sink of Philotes.
//!
//! - [`catalog`]: the embedded SQL catalog or a REST catalog, with a local or S3 warehouse.
//! - [`table`]: changelog tables (schema, Parquet files, commits that record a watermark).
//! - [`storage`]: listing the files under a table's location (for orphan cleanup).
//! - [`convert`], [`parse`] and [`binary`]: PostgreSQL values (text form from the stream,
//!   binary form from initial copies) into Arrow arrays, exactly.

pub mod batch;
pub mod binary;
pub mod catalog;
pub mod convert;
pub mod evolve;
pub mod parse;
pub mod storage;
pub mod table;

pub use batch::Batcher;
pub use catalog::{Guard, Lake, commit_refused, open_catalog};
pub use table::{ChangelogTable, source_batcher, stored_attnums, stored_progress, table_ident};
