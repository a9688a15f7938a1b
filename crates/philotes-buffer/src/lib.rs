//! The control database of a multi-process deployment (`--buffer-url`).
//!
//! `philotes ingest` drains the replication slot into it, so the source frees its WAL as soon as
//! a change is durable here, whatever the lake is doing; `philotes worker` replicas turn what it
//! holds into Iceberg commits. It also keeps each table's progress and the dead letters. It is a
//! plain PostgreSQL database (a schema `philotes` in any database the role may create a schema
//! in): no new system to run, and one everybody can back up and inspect.
//!
//! Schema and choices: `migrations/` and docs/decisions/011-control-database.md.

use philotes_core::{Error, ErrorKind, Result, Secret};
use philotes_source_postgres::SourceConn;

pub mod buffer;
pub mod migrate;
pub mod pool;
pub mod sealed;
pub mod specs;
pub mod tables;

pub use buffer::{BufferedChange, DEPTH_SQL, TableBatch, check_depth, decode_row, encode_row};
pub use migrate::{MIGRATIONS, Migrated, migrate};
pub use pool::Pool;
pub use tables::{DeadLetterRow, NewDeadLetter, Relation, RelationAt, TableRow};

/// An open, migrated control database.
pub struct ControlDb {
    pub conn: SourceConn,
    pub client: tokio_postgres::Client,
    pub migrated: Migrated,
}

impl ControlDb {
    /// Connect to `url` (`None`: not configured; `purpose` ends the error's sentence) and
    /// apply any pending migrations.
    pub async fn open(url: Option<&Secret>, purpose: &str) -> Result<ControlDb> {
        let url = url.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("no control database: set --buffer-url or PHILOTES_BUFFER_URL to a PostgreSQL URL {purpose}"),
            )
        })?;
        let mut conn = SourceConn::parse(url)?.named("the control database (--buffer-url)");
        let mut client = conn.connect().await?;
        conn.settle_prefer(&client).await?;
        let migrated = migrate(&mut client)
            .await
            .map_err(|e| e.with("buffer", conn.redacted()))?;
        Ok(ControlDb {
            conn,
            client,
            migrated,
        })
    }
}

/// A failed statement on the control database, with what to do about a missing privilege.
pub(crate) fn db_error(what: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let msg = format!("{what}: {} ({})", db.message(), db.code().code());
        if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
            return Error::new(
                ErrorKind::Config,
                format!(
                    "{msg}. The control database role needs its own schema: as an administrator run `CREATE SCHEMA philotes AUTHORIZATION <role>` in that database, or `GRANT CREATE ON DATABASE <database> TO <role>` so Philotes creates it"
                ),
            );
        }
        return Error::new(ErrorKind::Buffer, msg);
    }
    Error::new(
        ErrorKind::Buffer,
        format!("{what}: the control database connection failed"),
    )
    .with_source(e)
}
