//! Versioned migrations of the control database.
//!
//! Every role migrates at start-up, and `philotes migrate` does it alone (a Kubernetes hook
//! before the pods roll). Several processes may start at once, so all pending migrations are
//! applied in one transaction that first takes a transaction-scoped advisory lock: the others
//! wait on the lock, then find nothing left to do. PostgreSQL's DDL is transactional, so a
//! failed migration leaves the database exactly as it was.
//!
//! Each applied migration is recorded with a checksum of its SQL. A database migrated by a
//! newer Philotes, or a migration whose text changed after it was applied, is refused with a
//! message saying which: running on a schema this binary does not know would corrupt it.

use philotes_core::{Error, ErrorKind, Result};

use crate::db_error;

/// One migration: applied in `version` order, never edited once released.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "control",
        sql: include_str!("../migrations/0001_control.sql"),
    },
    Migration {
        version: 2,
        name: "roles",
        sql: include_str!("../migrations/0002_roles.sql"),
    },
    Migration {
        version: 3,
        name: "api",
        sql: include_str!("../migrations/0003_api.sql"),
    },
    Migration {
        version: 4,
        name: "pipelines",
        sql: include_str!("../migrations/0004_pipelines.sql"),
    },
    Migration {
        version: 5,
        name: "users",
        sql: include_str!("../migrations/0005_users.sql"),
    },
    Migration {
        version: 6,
        name: "verify",
        sql: include_str!("../migrations/0006_verify.sql"),
    },
    Migration {
        version: 7,
        name: "history",
        sql: include_str!("../migrations/0007_history.sql"),
    },
    Migration {
        version: 8,
        name: "table_progress",
        sql: include_str!("../migrations/0008_table_progress.sql"),
    },
    Migration {
        version: 9,
        name: "buffered_now",
        sql: include_str!("../migrations/0009_buffered_now.sql"),
    },
    Migration {
        version: 10,
        name: "commits",
        sql: include_str!("../migrations/0010_commits.sql"),
    },
];

/// The key of the advisory lock migrations hold (`philotes` in ASCII).
const LOCK_KEY: i64 = 0x7068_696c_6f74_6573;

/// What a migration run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The database's version afterwards.
    pub version: i32,
    /// Versions applied by this run (empty: it was up to date).
    pub applied: Vec<i32>,
}

/// FNV-1a of the migration's text: enough to notice an edit.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Bring the control database to the newest version this binary knows.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Migrated> {
    migrate_to(client, MIGRATIONS).await
}

pub(crate) async fn migrate_to(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<Migrated> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot begin the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| db_error("cannot take the migration lock", e))?;
    // CREATE SCHEMA checks the database privilege even when the schema exists: look first, so
    // a role given its own schema by an administrator needs nothing more.
    let has_schema = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = 'philotes'", &[])
        .await
        .map_err(|e| db_error("cannot look for the philotes schema", e))?
        .is_some();
    if !has_schema {
        tx.batch_execute("CREATE SCHEMA philotes")
            .await
            .map_err(|e| db_error("cannot create the philotes schema", e))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS philotes.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| db_error("cannot create philotes.schema_migrations", e))?;
    let rows = tx
        .query(
            "SELECT version, name, checksum FROM philotes.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| db_error("cannot read philotes.schema_migrations", e))?;
    let newest_known = migrations.last().map_or(0, |m| m.version);
    let mut version = 0;
    for row in &rows {
        let v: i32 = row.get(0);
        let name: String = row.get(1);
        let sum: String = row.get(2);
        version = version.max(v);
        match migrations.iter().find(|m| m.version == v) {
            None if v > newest_known => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "the control database is at version {v} ({name}), newer than this Philotes knows (up to {newest_known}): it was migrated by a newer release. Run that release or a newer one; an older one would misread the buffer"
                    ),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the control database records migration {v} ({name}), which this Philotes does not have"
                    ),
                ));
            }
            Some(m) if checksum(m.sql) != sum => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "migration {v} ({name}) applied to the control database differs from this Philotes' copy of it (checksum {sum}, expected {}): the database was migrated by a different build. Use the release that migrated it",
                        checksum(m.sql)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let mut applied = Vec::new();
    let current = version;
    for m in migrations.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| db_error(&format!("migration {} ({}) failed", m.version, m.name), e))?;
        tx.execute(
            "INSERT INTO philotes.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await
        .map_err(|e| db_error("cannot record a migration", e))?;
        applied.push(m.version);
        version = m.version;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit the migration", e))?;
    for v in &applied {
        tracing::info!(version = v, "control database migrated");
    }
    Ok(Migrated { version, applied })
}
