//! `philotes verify`: does the lake's current state equal the source, table by table?
//!
//! **Consistently.** A temporary slot's exported snapshot gives a source position `C` and a
//! snapshot that sees exactly the transactions committed before `C`. Verify waits until the
//! pipeline's own slot is confirmed at or past `C` — the pipeline confirms only what it has
//! committed, so the lake then holds every change before `C` — and reads the lake as of `C`
//! (changes with `_cdc_lsn < C`, the time travel of `philotes sql`: a transaction whose commit
//! record starts at `C` is not in the snapshot, and initial copies write their rows just before
//! their own consistent point). Both sides describe the same moment however busy the source
//! is, so concurrent writes raise no false alarms.
//!
//! **Exactly.** Source rows are read with the initial copy's `COPY` and converted by the sink's
//! own converter, so a value compares equal only if the pipeline would have written it as the
//! lake holds it. Values are compared in Arrow's row encoding: NULL is not the empty string,
//! `[NULL]` is not `[]`, `-0.0` is not `0.0`.
//!
//! **Without holding a table.** Rows are summarised per range of the key's hash (see
//! [`digest`]); only ranges that differ are compared row by row (see [`compare`]).

pub mod compare;
pub mod digest;
pub mod progress;
pub mod report;

use std::time::{Duration, Instant};

use philotes_config::Settings;
use philotes_core::{Error, ErrorKind, Lsn, Result, TableName};
use philotes_query::state::{Upto, ident};
use philotes_query::{LakeSession, QueryOptions};
use philotes_sink_iceberg::table::read_progress;
use philotes_sink_iceberg::{open_catalog, table_ident};
use philotes_source_postgres::catalog::publication_tables;
use philotes_source_postgres::{
    ExportedSnapshot, SourceConn, SourceTable, TypeResolver, preflight,
};

use crate::compare::{Limits, Sides, compare};
use crate::progress::Progress;
use crate::report::{Report, TableReport};

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Tables to verify; every table of the publication when empty.
    pub tables: Vec<TableName>,
    /// How long to wait for the pipeline to commit everything before the verification point.
    pub wait: Duration,
    /// Memory for the lake's query (spilling beyond it) and for the rows held while drilling.
    pub memory_limit: Option<usize>,
    /// Keys to name per kind of difference.
    pub show: usize,
    /// Rounds of row-by-row comparison at most per table (each reads both sides again).
    pub max_rounds: u32,
}

/// Memory for held rows when no limit is given.
const DEFAULT_BUDGET_BYTES: usize = 256 << 20;

/// Verify every table (or the ones named) of the publication.
pub async fn verify(settings: &Settings, opts: &VerifyOptions) -> Result<Report> {
    let (conn, client) = SourceConn::open(settings.source.as_ref(), "the lake replicates").await?;
    // The lake's options and the table names are checked before anything waits.
    let lake = open_catalog(settings).await?;
    chosen_tables(&client, settings, &opts.tables).await?;
    let snapshot = ExportedSnapshot::open(&conn, &settings.publication).await?;
    let at = snapshot.lsn;
    // Their columns as close to the snapshot as can be.
    let tables = chosen_tables(&client, settings, &opts.tables).await?;
    // Something past `C` for the pipeline to confirm, even on a quiet source.
    if let Err(e) = preflight::emit_heartbeat(&client).await {
        tracing::debug!(error = %e, "no heartbeat written");
    }
    if settings.buffer_url.is_some() {
        // Ingest and workers: the lake holds everything before `C` once the slot is confirmed
        // past it (all of it buffered) and nothing below it is left in the buffer.
        wait_for_buffer(settings, &client, at, opts.wait).await?;
    } else {
        // The slot exists (a pipeline was set up) but nobody streams it.
        if slot_active(&client, &settings.slot).await? == Some(false)
            && preflight::lease_free(&client, &settings.slot).await?
        {
            catch_up(settings).await?;
        }
        wait_for_lake(&client, &settings.slot, at, opts.wait).await?;
    }
    let only = tables
        .iter()
        .map(|t| table_ident(&t.name, settings.namespace.as_deref()))
        .collect();
    // Half the memory for the lake's query, half for the rows held while drilling.
    let session = LakeSession::open(
        lake.catalog.clone(),
        &QueryOptions {
            upto: Upto::Lsn(at.0.saturating_sub(1)),
            memory_limit: opts.memory_limit.map(|m| m / 2),
            only: Some(only),
        },
    )
    .await?;
    let ctx = Ctx {
        conn: &conn,
        client: &client,
        snapshot: &snapshot,
        settings,
        session: &session,
        opts,
    };
    let mut reports = Vec::with_capacity(tables.len());
    for st in &tables {
        let started = Instant::now();
        let mut report = verify_table(&ctx, st).await;
        report.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        tracing::info!(table = %st.name, status = ?report.status, seconds = report.seconds, "verified");
        reports.push(report);
    }
    drop(snapshot);
    Ok(Report::new(at.to_string(), reports))
}

/// The publication's tables, or the ones asked for (each must be in it).
async fn chosen_tables(
    client: &tokio_postgres::Client,
    settings: &Settings,
    wanted: &[TableName],
) -> Result<Vec<SourceTable>> {
    let mut resolver = TypeResolver::default();
    let mut tables = publication_tables(client, &mut resolver, &settings.publication).await?;
    for w in wanted {
        if !tables.iter().any(|t| &t.name == w) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "table {w} is not in publication {}: name tables as schema.table, as `philotes run` replicates them",
                    settings.publication
                ),
            ));
        }
    }
    if !wanted.is_empty() {
        tables.retain(|t| wanted.contains(&t.name));
    }
    if tables.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "publication {} has no tables: nothing to verify (is --publication right?)",
                settings.publication
            ),
        ));
    }
    Ok(tables)
}

/// Whether a process streams `slot` now; `None` when there is no such slot.
async fn slot_active(client: &tokio_postgres::Client, slot: &str) -> Result<Option<bool>> {
    let row = client
        .query_opt(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Source, "cannot read the replication slot").with_source(e)
        })?;
    Ok(row.map(|r| r.get::<_, bool>(0)))
}

/// No pipeline is running (cron-style `run --until-caught-up`, say): bring the lake up to the
/// verification point here, as `run --until-caught-up` would (it emits its own mark after
/// the verification point, so reaching it means reaching the point). Without maintenance: verify
/// changes nothing else.
async fn catch_up(settings: &Settings) -> Result<()> {
    tracing::info!(slot = %settings.slot, "no pipeline is running: catching the lake up to the verification point first");
    let mut s = settings.clone();
    s.until_caught_up = true;
    s.maintenance.enabled = false;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    match philotes_pipeline::run(&s, stop, &philotes_pipeline::Resync::None).await {
        Ok(report) if report.stopped.is_empty() => Ok(()),
        Ok(report) => {
            let names: Vec<String> = report
                .stopped
                .iter()
                .map(|t| format!("{}: {}", t.table, t.error))
                .collect();
            Err(Error::new(
                ErrorKind::Source,
                format!(
                    "the lake cannot be brought up to the verification point: {} (a stopped table holds the slot back; mend it with `philotes resync` or `philotes dlq`, then verify again)",
                    names.join("; ")
                ),
            ))
        }
        // A pipeline started in the meantime: it brings the lake up; wait for it.
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(()),
        Err(e) => Err(e),
    }
}

/// Wait until `slot` is confirmed at or past `at`: the lake then holds every change before it.
async fn wait_for_lake(
    client: &tokio_postgres::Client,
    slot: &str,
    at: Lsn,
    wait: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut inactive_since: Option<Instant> = None;
    let mut told = false;
    loop {
        let row = client
            .query_opt(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| Error::new(ErrorKind::Source, "cannot read the replication slot's position").with_source(e))?;
        let Some(row) = row else {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "there is no replication slot {slot} on the source: verify compares the lake `philotes run` keeps with that slot — check --slot, or start `philotes run` first"
                ),
            ));
        };
        let active: bool = row.get(0);
        let confirmed = row
            .get::<_, Option<String>>(1)
            .map(|s| s.parse::<Lsn>())
            .transpose()?;
        if confirmed.is_some_and(|c| c >= at) {
            return Ok(());
        }
        let shown = confirmed.map_or("nothing".to_string(), |c| c.to_string());
        let since = *inactive_since.get_or_insert_with(Instant::now);
        if active {
            inactive_since = None;
        } else if since.elapsed() >= Duration::from_secs(10) {
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "`philotes run` is not streaming (slot {slot} is not in use; confirmed up to {shown}): it is stopped, or still making an initial copy. Verify needs it streaming to bring the lake up to the verification point {at} — start it (or let the copy finish), then verify again"
                ),
            ));
        }
        if started.elapsed() >= wait {
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "the lake did not reach the verification point {at} within {}s (slot {slot} is confirmed up to {shown}): `philotes run` is behind, or a stopped table holds the slot back (see its log; `philotes resync` mends a stopped table) — verify again later or raise --wait",
                    wait.as_secs()
                ),
            ));
        }
        if !told && started.elapsed() >= Duration::from_secs(2) {
            tracing::info!(slot, verification_point = %at, confirmed = %shown, "waiting for `philotes run` to commit everything before the verification point");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Wait until ingest has buffered everything before `at` and the workers have committed it.
async fn wait_for_buffer(
    settings: &Settings,
    client: &tokio_postgres::Client,
    at: Lsn,
    wait: Duration,
) -> Result<()> {
    let db = philotes_buffer::ControlDb::open(settings.buffer_url.as_ref(), "").await?;
    let slot = &settings.slot;
    let started = Instant::now();
    let mut told = false;
    loop {
        let confirmed = client
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[slot],
            )
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Source,
                    "cannot read the replication slot's position",
                )
                .with_source(e)
            })?
            .and_then(|r| r.get::<_, Option<String>>(0))
            .map(|s| s.parse::<Lsn>())
            .transpose()?;
        let left = db.buffered_below(slot, at).await?;
        let buffered = confirmed.is_some_and(|c| c >= at);
        if buffered && left.is_empty() {
            return Ok(());
        }
        if let Some((table, rows, Some(why))) = left.iter().find(|(_, _, s)| s.is_some()) {
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "table {table} is stopped with {rows} changes before the verification point {at} still buffered: {why} — see `philotes dlq list --buffer-url …`, then verify again"
                ),
            ));
        }
        if started.elapsed() >= wait {
            let why = if buffered {
                format!(
                    "the workers have not committed {} buffered changes before it (are workers running? `philotes_worker_leases`)",
                    left.iter().map(|(_, n, _)| n).sum::<i64>()
                )
            } else {
                format!(
                    "ingest has not buffered everything before it (slot {slot} is confirmed up to {}; is `philotes ingest` running?)",
                    confirmed.map_or("nothing".to_string(), |c| c.to_string())
                )
            };
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "the lake did not reach the verification point {at} within {}s: {why} — verify again later or raise --wait",
                    wait.as_secs()
                ),
            ));
        }
        if !told && started.elapsed() >= Duration::from_secs(2) {
            tracing::info!(slot, verification_point = %at, "waiting for ingest and the workers to commit everything before the verification point");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What every table's verification shares.
struct Ctx<'a> {
    conn: &'a SourceConn,
    client: &'a tokio_postgres::Client,
    snapshot: &'a ExportedSnapshot,
    settings: &'a Settings,
    session: &'a LakeSession,
    opts: &'a VerifyOptions,
}

async fn verify_table(ctx: &Ctx<'_>, st: &SourceTable) -> TableReport {
    let name = st.name.to_string();
    let (sides, not_in_lake) = match prepare(ctx, st).await {
        Err(reason) => return TableReport::not_verified(name, reason),
        Ok(prepared) => prepared,
    };
    let estimate = ctx
        .client
        .query_one(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = $1",
            &[&st.oid],
        )
        .await
        .ok()
        .and_then(|r| u64::try_from(r.get::<_, i64>(0)).ok());
    let before = filenode(ctx.client, st.oid).await;
    let progress = Progress::start(name.clone(), estimate);
    // A held row: its key (assumed up to 64 bytes), a hash per column, the map's overhead.
    let per_row = 208 + 8 * sides.names.len();
    let held = ctx
        .opts
        .memory_limit
        .map_or(DEFAULT_BUDGET_BYTES, |m| m / 2);
    let limits = Limits {
        show: ctx.opts.show,
        budget: (held / per_row).max(100) as u64,
        max_rounds: ctx.opts.max_rounds,
    };
    let outcome = compare(&sides, ctx.session, limits, &progress).await;
    drop(progress);
    // TRUNCATE and table rewrites are not MVCC-safe: under the old snapshot the table would
    // read as empty.
    if before != filenode(ctx.client, st.oid).await {
        return TableReport::not_verified(
            name,
            "the table was truncated or rewritten while verify read it (such changes are not visible consistently under a snapshot): verify again".to_string(),
        );
    }
    match outcome {
        Ok(o) => TableReport::compared(name, o, not_in_lake),
        Err(e) if e.to_string().contains("Resources exhausted") => {
            TableReport::not_verified(name, format!("{e} — raise --memory-limit"))
        }
        Err(e) => TableReport::not_verified(name, e.to_string()),
    }
}

/// The table's storage file (it changes on TRUNCATE and rewrites); `None` when partitioned.
async fn filenode(client: &tokio_postgres::Client, oid: u32) -> Option<u32> {
    client
        .query_one("SELECT pg_relation_filenode($1)", &[&oid])
        .await
        .ok()
        .and_then(|r| r.get::<_, Option<u32>>(0))
}

/// Match the source table with its changelog, or say why they cannot be compared.
async fn prepare(
    ctx: &Ctx<'_>,
    st: &SourceTable,
) -> std::result::Result<(Sides, Vec<String>), String> {
    let at = ctx.snapshot.lsn;
    let id = table_ident(&st.name, ctx.settings.namespace.as_deref());
    let ns = id.namespace().as_ref().join(".");
    let Some(lt) = ctx
        .session
        .tables
        .iter()
        .find(|t| t.namespace == ns && t.changelog == id.name())
    else {
        return Err(format!(
            "the lake has no changelog table {id}: `philotes run` has not copied it yet"
        ));
    };
    let lake_table = lt.table.clone();
    match read_progress(&lake_table)
        .map_err(|e| e.to_string())?
        .snapshot_lsn
    {
        None => return Err("its initial copy is not committed yet".to_string()),
        Some(s) if s > at => {
            return Err(format!(
                "it was copied at {s}, after the verification point {at}: verify again"
            ));
        }
        Some(_) => {}
    }
    if let Some(why) = publication_filter(ctx.client, &ctx.settings.publication, st.oid).await {
        return Err(why);
    }
    let source_key: Vec<String> = st
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| c.name.clone())
        .collect();
    if source_key.is_empty() {
        return Err("the source table has no primary key: the lake keeps its changes (the changelog) but no current state to compare".to_string());
    }
    let Some(view) = lt.state.as_ref() else {
        return Err("the lake has no key recorded for it (written before Philotes recorded keys): run `philotes resync` for it".to_string());
    };
    let (mut a, mut b) = (source_key.clone(), lt.key.clone());
    a.sort();
    b.sort();
    if a != b {
        return Err(format!(
            "the key differs: the source's is ({}), the lake's ({}); `philotes resync {}` copies the table again under the new key",
            source_key.join(", "),
            lt.key.join(", "),
            st.name
        ));
    }
    let (names, not_in_lake): (Vec<String>, Vec<String>) = st
        .columns
        .iter()
        .map(|c| c.name.clone())
        .partition(|n| lt.columns.contains(n));
    let key = source_key
        .iter()
        .filter_map(|k| names.iter().position(|n| n == k))
        .collect();
    let lake_sql = format!(
        "SELECT {} FROM {}.{}",
        names
            .iter()
            .map(|n| ident(n))
            .collect::<Vec<_>>()
            .join(", "),
        ident(&lt.namespace),
        ident(view)
    );
    Ok((
        Sides {
            conn: ctx.conn.clone(),
            snapshot: ctx.snapshot.name.clone(),
            source: st.clone(),
            lake_table,
            lake_sql,
            names: names.into(),
            key,
            unseen: not_in_lake.clone().into(),
        },
        not_in_lake,
    ))
}

/// Why the table cannot be compared whole, when the publication filters its rows or columns
/// (PostgreSQL 15+; the initial copy does not apply such filters either).
async fn publication_filter(
    client: &tokio_postgres::Client,
    publication: &str,
    oid: u32,
) -> Option<String> {
    // Before PostgreSQL 15 these columns do not exist, and neither do the filters.
    let row = client
        .query_opt(
            "SELECT pr.prqual IS NOT NULL, pr.prattrs IS NOT NULL FROM pg_publication_rel pr
             JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2",
            &[&publication, &oid],
        )
        .await
        .ok()??;
    let (rows, columns): (bool, bool) = (row.get(0), row.get(1));
    (rows || columns).then(|| {
        format!(
            "publication {publication} replicates only some of its {} (a {} list): verify compares whole tables — not supported yet",
            if rows { "rows" } else { "columns" },
            if rows { "WHERE" } else { "column" }
        )
    })
}
