//! Checks the source before anything is created, with an error that says how to fix each
//! problem, and sets up the publication and the slot.

use philotes_core::{Error, ErrorKind, Lsn, ReplicaIdentity, Result};

use crate::catalog::{SourceTable, source_error};

fn setup(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::SourceSetup, msg)
}

/// Server-wide checks: version, `wal_level`, the replication privilege and free slots. The
/// first problem found, with its fix.
pub async fn check_server(client: &tokio_postgres::Client, slot: &str) -> Result<()> {
    match server_checks(client, slot)
        .await?
        .into_iter()
        .find_map(|c| c.problem)
    {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// One server-wide check and, when it fails, the problem with its fix.
#[derive(Debug)]
pub struct ServerCheck {
    /// A short, stable name: `version`, `wal_level`, `replication_privilege`,
    /// `replication_slots`, `wal_senders`.
    pub name: &'static str,
    pub problem: Option<Error>,
    /// For a failed check that a statement fixes: that statement, to run as a superuser on the
    /// source (the problem's words say what else it needs, such as a restart).
    pub fix: Option<String>,
}

/// Every server-wide check `run` makes before it starts, each with its outcome (the same
/// words as `run`'s errors), for `philotes api`'s source test.
pub async fn server_checks(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<Vec<ServerCheck>> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('wal_level'),
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                    current_user::text,
                    current_setting('max_replication_slots')::int
                      - (SELECT count(*) FROM pg_replication_slots)::int,
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
                    current_setting('max_wal_senders')::int
                      - (SELECT count(*) FROM pg_stat_replication)::int,
                    current_setting('max_replication_slots')::int,
                    current_setting('max_wal_senders')::int",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("running the preflight checks", e))?;
    let version: i32 = row.get(0);
    let wal_level: String = row.get(1);
    let can_replicate: Option<bool> = row.get(2);
    let user: String = row.get(3);
    let free_slots: i32 = row.get(4);
    let slot_exists: bool = row.get(5);
    let free_senders: i32 = row.get(6);
    let (max_slots, max_senders): (i32, i32) = (row.get(7), row.get(8));
    let check =
        |name, failed: bool, problem: &dyn Fn() -> String, fix: Option<String>| ServerCheck {
            name,
            problem: failed.then(|| setup(problem())),
            fix: fix.filter(|_| failed),
        };
    // One temporary slot for the consistent snapshot, plus the pipeline's own if it is new.
    let needed = if slot_exists { 1 } else { 2 };
    Ok(vec![
        check(
            "version",
            version < 140000,
            &|| {
                format!(
                    "the source runs PostgreSQL {}.{}; Philotes needs PostgreSQL 14 or newer",
                    version / 10000,
                    version % 10000 / 100
                )
            },
            None,
        ),
        check(
            "wal_level",
            wal_level != "logical",
            &|| {
                format!(
                    "the source has wal_level = {wal_level}; set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
                )
            },
            Some("ALTER SYSTEM SET wal_level = logical".into()),
        ),
        check(
            "replication_privilege",
            can_replicate != Some(true),
            &|| {
                format!(
                    "the user {user} may not replicate; run ALTER ROLE {} WITH REPLICATION as a superuser",
                    philotes_core::change::quote_ident(&user)
                )
            },
            Some(format!(
                "ALTER ROLE {} WITH REPLICATION",
                philotes_core::change::quote_ident(&user)
            )),
        ),
        check(
            "replication_slots",
            free_slots < needed,
            &|| {
                format!(
                    "the source has {free_slots} free replication slot(s), Philotes needs {needed}; raise max_replication_slots in postgresql.conf and restart, or drop unused slots (SELECT pg_drop_replication_slot(name))"
                )
            },
            Some(format!(
                "ALTER SYSTEM SET max_replication_slots = {}",
                max_slots + needed - free_slots.min(needed)
            )),
        ),
        check(
            "wal_senders",
            free_senders < 2,
            &|| {
                format!(
                    "the source has {free_senders} free WAL sender(s), Philotes needs 2; raise max_wal_senders in postgresql.conf and restart"
                )
            },
            Some(format!(
                "ALTER SYSTEM SET max_wal_senders = {}",
                max_senders + 2 - free_senders.min(2)
            )),
        ),
    ])
}

/// Create the publication if it does not exist: FOR ALL TABLES, or for `tables`.
pub async fn ensure_publication(
    client: &tokio_postgres::Client,
    publication: &str,
    tables: &[String],
) -> Result<bool> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&publication],
        )
        .await
        .map_err(|e| source_error("looking up the publication", e))?
        .get(0);
    if exists {
        return Ok(false);
    }
    let target = if tables.is_empty() {
        "FOR ALL TABLES".to_string()
    } else {
        let list: Vec<String> = tables.iter().map(|t| quote_qualified(t)).collect();
        format!("FOR TABLE {}", list.join(", "))
    };
    // Partitioned tables are replicated as their root: one changelog per table as users see it.
    let sql = format!(
        "CREATE PUBLICATION {} {target} WITH (publish_via_partition_root = true)",
        philotes_core::change::quote_ident(publication)
    );
    client.batch_execute(&sql).await.map_err(|e| {
        let detail = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
        setup(format!(
            "cannot create publication {publication}: {detail}; create it as a superuser or the tables' owner: {sql}"
        ))
    })?;
    tracing::info!(publication, target = %target, "created publication");
    Ok(true)
}

/// What [`set_publication_tables`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum PublicationChange {
    /// The publication does not exist yet: it will be made with the new tables.
    Missing,
    /// It now publishes exactly the tables asked for.
    Set,
    /// It is `FOR ALL TABLES`; a table list cannot be set on it.
    AllTables,
    /// It publishes a table list, and `FOR ALL TABLES` was asked for (no tables): only a
    /// superuser can make that, by dropping and creating it.
    NotAllTables,
}

/// Make `publication` publish exactly `tables` (`schema.table`; empty: every table), for a
/// pipeline whose table list was edited. The slot keeps its position: a table that joins is
/// copied, one that leaves is let go at the position it left, as when an operator alters the
/// publication by hand.
pub async fn set_publication_tables(
    client: &tokio_postgres::Client,
    publication: &str,
    tables: &[String],
) -> Result<PublicationChange> {
    let row = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| source_error("looking up the publication", e))?;
    let Some(row) = row else {
        return Ok(PublicationChange::Missing);
    };
    let all: bool = row.get(0);
    match (all, tables.is_empty()) {
        (true, true) => return Ok(PublicationChange::Set),
        (true, false) => return Ok(PublicationChange::AllTables),
        (false, true) => return Ok(PublicationChange::NotAllTables),
        (false, false) => {}
    }
    let list: Vec<String> = tables.iter().map(|t| quote_qualified(t)).collect();
    let sql = format!(
        "ALTER PUBLICATION {} SET TABLE {}",
        philotes_core::change::quote_ident(publication),
        list.join(", ")
    );
    client.batch_execute(&sql).await.map_err(|e| {
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        let kind = if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
            ErrorKind::Invalid
        } else {
            ErrorKind::SourceSetup
        };
        Error::new(
            kind,
            format!(
                "cannot change publication {publication}'s tables: {detail}; it takes the publication's owner (or a superuser): {sql}"
            ),
        )
    })?;
    tracing::info!(publication, tables = %list.join(", "), "set the publication's tables");
    Ok(PublicationChange::Set)
}

fn quote_qualified(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!(
            "{}.{}",
            philotes_core::change::quote_ident(schema),
            philotes_core::change::quote_ident(table)
        ),
        None => philotes_core::change::quote_ident(name),
    }
}

/// Why a table cannot be replicated as it is, with the fix; `None` when it can.
pub fn table_problem(table: &SourceTable) -> Option<Error> {
    identity_problem(&table.name, table.replica_identity, table.has_primary_key)
}

/// The statement that lets a table without a usable replica identity be replicated.
pub fn identity_fix(name: &philotes_core::TableName) -> String {
    format!("ALTER TABLE {} REPLICA IDENTITY FULL", name.quoted())
}

/// Why a table with this replica identity cannot be replicated, with the fix.
pub fn identity_problem(
    name: &philotes_core::TableName,
    identity: ReplicaIdentity,
    has_primary_key: bool,
) -> Option<Error> {
    let fix = identity_fix(name);
    let problem = match identity {
        ReplicaIdentity::Nothing => Some(format!(
            "table {name} has REPLICA IDENTITY NOTHING, so its updates and deletes cannot be replicated; run {fix}"
        )),
        ReplicaIdentity::Default if !has_primary_key => Some(format!(
            "table {name} has no primary key and REPLICA IDENTITY DEFAULT, so its updates and deletes cannot be replicated; add a primary key or run {fix}"
        )),
        _ => None,
    };
    problem.map(|m| setup(m).with("table", name))
}

/// The state of the pipeline's slot.
#[derive(Clone, Debug)]
pub struct SlotState {
    pub confirmed_flush: Lsn,
    pub created: bool,
}

/// Create the logical slot if it does not exist, and check that an existing one is usable.
pub async fn ensure_slot(client: &tokio_postgres::Client, slot: &str) -> Result<SlotState> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, slot_type::text, confirmed_flush_lsn::text,
                    COALESCE(wal_status, ''), current_database()::text
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("looking up the replication slot", e))?;
    if let Some(r) = row {
        let plugin: Option<String> = r.get(0);
        let database: Option<String> = r.get(1);
        let kind: String = r.get(2);
        let confirmed: Option<String> = r.get(3);
        let wal_status: String = r.get(4);
        let current_db: String = r.get(5);
        if kind != "logical"
            || plugin.as_deref() != Some("pgoutput")
            || database.as_deref() != Some(current_db.as_str())
        {
            return Err(setup(format!(
                "replication slot {slot} exists but is not a pgoutput logical slot of database {current_db}; choose another --slot, or drop it with SELECT pg_drop_replication_slot('{slot}') if it is unused"
            )));
        }
        if wal_status == "lost" {
            return Err(lost_slot(slot));
        }
        let confirmed = confirmed
            .as_deref()
            .unwrap_or("0/0")
            .parse()
            .map_err(|e: Error| e.with("slot", slot))?;
        return Ok(SlotState {
            confirmed_flush: confirmed,
            created: false,
        });
    }
    let r = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("creating the replication slot", e))?;
    let lsn: String = r.get(0);
    tracing::info!(slot, lsn = %lsn, "created replication slot");
    Ok(SlotState {
        confirmed_flush: lsn.parse()?,
        created: true,
    })
}

/// The source's current WAL position: past the commit record of every transaction that has
/// committed. (The insert position, not `pg_current_wal_lsn()`, the write position: with
/// `synchronous_commit = off` a commit returns before its record is written, so the write
/// position can be short of it.)
pub async fn current_wal_lsn(client: &tokio_postgres::Client) -> Result<Lsn> {
    let r = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|e| source_error("reading the current WAL position", e))?;
    r.get::<_, String>(0).parse()
}

/// The error for a slot whose WAL is gone, with the way out.
pub fn lost_slot(slot: &str) -> Error {
    setup(format!(
        "replication slot {slot} was invalidated (wal_status = lost: PostgreSQL removed WAL it still needed, see max_slot_wal_keep_size), so changes since its last position cannot be streamed. Run `philotes resync` with the same settings: it drops the lost slot, creates a new one and copies every table again (the changelogs keep their history)"
    ))
}

/// The error for a slot that disappeared while Philotes used it.
pub fn missing_slot(slot: &str) -> Error {
    setup(format!(
        "replication slot {slot} no longer exists (dropped on the source), so changes since its last position cannot be streamed. Run `philotes resync` with the same settings: it creates a new slot and copies every table again (the changelogs keep their history)"
    ))
}

/// Drop `slot` if PostgreSQL invalidated it (for `philotes resync`); true when dropped.
pub async fn drop_lost_slot(client: &tokio_postgres::Client, slot: &str) -> Result<bool> {
    let lost = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND wal_status = 'lost'",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("looking up the replication slot", e))?
        .is_some();
    if lost {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(|e| source_error("dropping the lost replication slot", e))?;
        tracing::warn!(
            slot,
            "dropped the invalidated replication slot; a new one is created and every table copied again"
        );
    }
    Ok(lost)
}

/// How much WAL a slot holds on the source, and how far behind it is.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotStatus {
    /// Bytes of WAL the source keeps for the slot (current WAL end − `restart_lsn`).
    pub retained_bytes: i64,
    /// Bytes between the current WAL end and the slot's confirmed position.
    pub lag_bytes: i64,
    /// `reserved`, `extended`, `unreserved` (about to be invalidated) or `lost`.
    pub wal_status: String,
    /// WAL the source may still write before the slot is past `max_slot_wal_keep_size`
    /// (`safe_wal_size`); `None` when the source sets no limit.
    pub safe_bytes: Option<i64>,
}

/// The slot's status, or `None` when it does not exist.
pub async fn slot_status(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<Option<SlotStatus>> {
    let row = client
        .query_opt(
            "SELECT COALESCE(pg_current_wal_lsn() - restart_lsn, 0)::bigint,
                    COALESCE(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint,
                    COALESCE(wal_status, ''), safe_wal_size
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("reading the replication slot's status", e))?;
    Ok(row.map(|r| SlotStatus {
        retained_bytes: r.get(0),
        lag_bytes: r.get(1),
        wal_status: r.get(2),
        safe_bytes: r.get(3),
    }))
}

/// Write a heartbeat into the WAL: the stream delivers it even when no replicated table
/// changes, so the slot's position moves and a quiet database does not make the source keep
/// WAL that other databases write.
pub async fn emit_heartbeat(client: &tokio_postgres::Client) -> Result<Lsn> {
    let r = client
        .query_one(
            "SELECT pg_logical_emit_message(false, 'philotes-heartbeat', '')::text",
            &[],
        )
        .await
        .map_err(|e| source_error("writing a heartbeat", e))?;
    r.get::<_, String>(0).parse()
}

/// Write a non-transactional logical message; the stream delivers it after every transaction
/// that committed before it.
pub async fn emit_marker(client: &tokio_postgres::Client, content: &str) -> Result<Lsn> {
    let r = client
        .query_one(
            "SELECT pg_logical_emit_message(false, 'philotes', $1::text)::text",
            &[&content],
        )
        .await
        .map_err(|e| source_error("writing a position marker", e))?;
    r.get::<_, String>(0).parse()
}

/// The first key of the advisory lock a pipeline holds on its source (`phlt`); the second is
/// the slot name's `hashtext`.
const LEASE_CLASS: i32 = 0x7068_6c74;

/// Hold the pipeline's lease: a session advisory lock on `client`'s connection, keyed by the
/// slot, that dies with the connection (a crashed or killed process frees it at once). One
/// process at a time streams a slot and writes its tables; a second is refused, naming the
/// first.
pub async fn take_lease(client: &tokio_postgres::Client, slot: &str) -> Result<()> {
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LEASE_CLASS, &slot],
        )
        .await
        .map_err(|e| source_error("taking the pipeline's lease", e))?
        .get(0);
    if got {
        return Ok(());
    }
    let holder = client
        .query_opt(
            "SELECT a.pid, coalesce(a.client_addr::text, 'local'), a.backend_start::text
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int4::oid
               AND l.objid = hashtext($2)::oid AND l.objsubid = 2",
            &[&LEASE_CLASS, &slot],
        )
        .await
        .ok()
        .flatten()
        .map(|r| {
            format!(
                " (its source connection: backend pid {}, from {}, since {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .unwrap_or_default();
    Err(Error::new(
        ErrorKind::Conflict,
        format!(
            "another Philotes process is replicating slot {slot}{holder}: only one may stream a slot and write its tables. Stop the other one, or give this pipeline its own --slot (and --publication, --data-dir or namespace)"
        ),
    ))
}

/// Whether no process holds the pipeline's lease now (nobody streams the slot or copies for it).
pub async fn lease_free(client: &tokio_postgres::Client, slot: &str) -> Result<bool> {
    let held: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND classid = $1::int4::oid AND objid = hashtext($2)::oid AND objsubid = 2)",
            &[&LEASE_CLASS, &slot],
        )
        .await
        .map_err(|e| source_error("looking at the pipeline's lease", e))?
        .get(0);
    Ok(!held)
}
