//! `philotes run`: preflight, initial copies, then the stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use philotes_config::Settings;
use philotes_core::retry::backoff;
use philotes_core::{
    ChangeSource, Error, ErrorKind, Lsn, Result, TableName, TableProgress, TableSink,
};
use philotes_sink_iceberg::{
    ChangelogTable, Lake, open_catalog, stored_attnums, stored_progress, table_ident,
};
use philotes_source_postgres::catalog::{column_has_values, publication_oids, publication_tables};
use philotes_source_postgres::{
    ReplicationStream, SourceConn, SourceTable, TypeResolver, preflight,
};

use philotes_maintenance::Maintained;

use crate::apply::{Applier, Ended, FlushPolicy, TableState, key_indexes, stream_changes};
use crate::dlq::DeadLetters;
use crate::sink::{Direct, Opener, Sink};
use crate::snapshot::copy_tables;

/// A table stopped by an error.
#[derive(Clone, Debug)]
pub struct TableError {
    pub table: TableName,
    pub error: String,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub tables: usize,
    pub stopped: Vec<TableError>,
    /// The position confirmed to the slot at the end.
    pub confirmed: Lsn,
    /// Changelog rows written while streaming.
    pub streamed_rows: u64,
}

/// Tables to copy again before streaming (`philotes resync`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Resync {
    #[default]
    None,
    All,
    Tables(Vec<TableName>),
}

impl Resync {
    fn wants(&self, table: &TableName) -> bool {
        match self {
            Resync::None => false,
            Resync::All => true,
            Resync::Tables(list) => list.contains(table),
        }
    }
}

/// Run the pipeline until `stop` is set (at a transaction boundary), the stream ends, or with
/// `until_caught_up`, everything committed on the source before the start is in Iceberg.
/// `resync` names tables to copy again first (an invalidated slot is then replaced).
pub async fn run(settings: &Settings, stop: Arc<AtomicBool>, resync: &Resync) -> Result<RunReport> {
    replicate(settings, stop, resync, &Direct).await
}

/// The streaming loop of `run` and `ingest`: what differs is where `opener`'s sinks write.
pub(crate) async fn replicate<O: Opener>(
    settings: &Settings,
    stop: Arc<AtomicBool>,
    resync: &Resync,
    opener: &O,
) -> Result<RunReport> {
    philotes_telemetry::set_pipeline(&settings.slot);
    let health = philotes_telemetry::health();
    health.expect("source", "connecting to the source");
    health.expect("lake", "opening the lake");
    let (conn, client) = SourceConn::open(settings.source.as_ref(), "to replicate").await?;
    preflight::check_server(&client, &settings.slot).await?;
    // One process per slot; the lease lives as long as `client`'s connection.
    if opener.waits_for_lease() {
        if !standby(&client, settings, &stop).await? {
            return Ok(RunReport::default());
        }
    } else {
        preflight::take_lease(&client, &settings.slot).await?;
    }
    let _held = crate::lease::hold(&settings.slot);
    preflight::ensure_publication(&client, &settings.publication, &settings.tables).await?;
    if *resync != Resync::None {
        preflight::drop_lost_slot(&client, &settings.slot).await?;
    }
    let slot = preflight::ensure_slot(&client, &settings.slot).await?;
    let catalog = open_catalog(settings).await?;
    health.ready("lake");
    let dead_letters = DeadLetters::new(&settings.data_dir);

    let mut resolver = TypeResolver::default();
    let found = publication_tables(&client, &mut resolver, &settings.publication).await?;
    if found.is_empty() {
        tracing::warn!(publication = %settings.publication, "the publication has no tables yet");
    }
    let mut tables: HashMap<u32, TableState<O::Sink>> = HashMap::new();
    for st in found {
        let state = open_table(st, &catalog, settings, slot.created, resync, &client).await;
        let state = opener.wrap(state).await?;
        tables.insert(state.source.oid, state);
    }
    tracing::info!(tables = tables.len(), slot = %settings.slot, confirmed = %slot.confirmed_flush, "source ready");
    // Compaction, expiry and cleanup on their own task (docs/decisions/009-maintenance.md).
    let maintained = Maintained::default();
    let maintains = settings.maintenance.enabled && opener.maintains();
    let _maintenance = maintains.then(|| {
        philotes_maintenance::spawn(
            catalog.clone(),
            maintained.clone(),
            settings.maintenance.clone(),
        )
    });
    maintain_tables(&maintained, tables.values());
    // Mirror tables, from the changelogs, on their own task (docs/decisions/020-mirror-tables.md).
    let mirrors_on = opener.maintains() && settings.mirror.enabled;
    let _mirrors = mirrors_on.then(|| {
        philotes_mirror::spawn(
            catalog.clone(),
            maintained.clone(),
            settings.mirror.interval,
        )
    });

    // Initial copies of every table that has none committed.
    {
        let mut to_copy: Vec<&mut TableState<O::Sink>> = tables
            .values_mut()
            .filter(|t| {
                t.stopped.is_none()
                    && t.lake.is_some()
                    && (t.progress.snapshot_lsn.is_none() || t.recopy)
            })
            .collect();
        copy_again(&conn, settings, &mut to_copy, &dead_letters).await?;
    }

    let marker = if settings.until_caught_up {
        let content = format!("caught-up {}", uuid_like());
        let lsn = preflight::emit_marker(&client, &content).await?;
        tracing::info!(target_lsn = %lsn, "will exit once everything before this position is in Iceberg");
        Some(content)
    } else {
        None
    };

    let spill_dir = settings
        .stream_large_transactions
        .then(|| settings.data_dir.join("spill"));
    let stream = ReplicationStream::start(
        &conn,
        &settings.slot,
        &settings.publication,
        slot.confirmed_flush,
        spill_dir.clone(),
    )
    .await?;
    let skips = dead_letters.skips()?;
    if !skips.is_empty() {
        tracing::info!(
            changes = skips.len(),
            "changes marked with `philotes dlq skip` are left out if they fail again"
        );
    }
    let mut applier = Applier::new(tables, dead_letters);
    applier.skip(skips);
    applier.depth_in_memory = opener.depth_in_memory();
    applier.hold = opener.hold();
    let mut live = Live {
        conn,
        client,
        stream,
        resolver,
        spill_dir,
        watch: SlotWatch::default(),
        flush: FlushPolicy {
            interval: opener.flush_interval(settings.flush_interval),
            rows: settings.flush_rows,
            publication_poll: PUBLICATION_POLL,
        },
    };
    for t in applier.tables.values() {
        live.stream.remember(t.source.oid, &t.source.columns);
    }
    philotes_telemetry::source_connected(true);
    health.ready("source");
    live.watch.tick(&live.client, &settings.slot).await?;
    loop {
        let step = live
            .step(
                &mut applier,
                settings,
                &catalog,
                &maintained,
                marker.as_deref(),
                &stop,
                opener,
            )
            .await;
        match step {
            Ok(true) => break,
            Ok(false) => {}
            // The source restarted, failed over or the network broke: reconnect and resume from
            // the confirmed position (a slot that is gone or lost still ends the run).
            Err(e) if e.kind() == ErrorKind::Source => {
                if !live.reconnect(&mut applier, settings, e, &stop).await? {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut stream = live.stream;
    stream.finish().await;
    if settings.until_caught_up && mirrors_on {
        // The mirrors reach what the changelogs hold before a batch run exits.
        drop(_mirrors);
        maintain_tables(&maintained, applier.tables.values());
        let mut mirrors = philotes_mirror::Mirrors::default();
        philotes_mirror::step_all(&catalog, &maintained, &mut mirrors).await;
    }
    if settings.until_caught_up && maintains {
        // Batch runs (cron) may never live for a maintenance interval: one pass before exiting.
        drop(_maintenance);
        maintain_tables(&maintained, applier.tables.values());
        philotes_maintenance::maintain(&catalog, &maintained.tables(), &settings.maintenance).await;
    }
    let mut stopped: Vec<TableError> = applier
        .tables
        .values()
        .filter_map(|t| {
            t.stopped.as_ref().map(|e| TableError {
                table: t.source.name.clone(),
                error: e.to_string(),
            })
        })
        .collect();
    stopped.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(RunReport {
        tables: applier.tables.len(),
        stopped,
        confirmed: stream.confirmed(),
        streamed_rows: applier.streamed_rows,
    })
}

/// The connections of a running stream, replaced whole when the source comes back.
struct Live {
    conn: SourceConn,
    client: tokio_postgres::Client,
    stream: ReplicationStream,
    resolver: TypeResolver,
    spill_dir: Option<std::path::PathBuf>,
    watch: SlotWatch,
    flush: FlushPolicy,
}

impl Live {
    /// Stream until it is time to look at the publication or copy a table again (false), or
    /// until the run is over (true).
    #[allow(clippy::too_many_arguments)]
    async fn step<O: Opener>(
        &mut self,
        applier: &mut Applier<O::Sink>,
        settings: &Settings,
        catalog: &Lake,
        maintained: &Maintained,
        marker: Option<&str>,
        stop: &AtomicBool,
        opener: &O,
    ) -> Result<bool> {
        let ended = stream_changes(applier, &mut self.stream, self.flush, marker, stop).await?;
        if ended == Ended::Refresh {
            self.watch.tick(&self.client, &settings.slot).await?;
            if applier.depth_in_memory {
                philotes_telemetry::buffer_depth(applier.pending());
            }
            maintain_tables(maintained, applier.tables.values());
            opener.refresh(&mut applier.tables).await?;
        }
        if ended == Ended::Done {
            return Ok(true);
        }
        let wants_copy = applier
            .tables
            .values()
            .any(|t| t.recopy && t.stopped.is_none() && t.lake.is_some());
        if ended == Ended::Refresh {
            applier.unknown = false;
            // The full description (columns of every table) only when the set changed.
            let oids = publication_oids(&self.client, &settings.publication).await?;
            let known: std::collections::HashSet<u32> = applier
                .tables
                .iter()
                .filter(|(_, t)| t.leaving.is_none())
                .map(|(oid, _)| *oid)
                .collect();
            if oids == known && !wants_copy {
                return Ok(false);
            }
        }
        let now =
            publication_tables(&self.client, &mut self.resolver, &settings.publication).await?;
        if ended == Ended::Refresh {
            let joined = follow_publication(
                applier,
                &mut self.stream,
                now.clone(),
                catalog,
                &self.client,
                settings,
                opener,
            )
            .await?;
            if !joined && !wants_copy {
                return Ok(false);
            }
            applier.flush(&mut self.stream).await?;
        }
        // The copy reads the table as it is now: take its current columns first (the stream's
        // description may be older than the catalog).
        let mut to_copy: Vec<&mut TableState<O::Sink>> = applier
            .tables
            .values_mut()
            .filter(|t| {
                t.stopped.is_none()
                    && t.lake.is_some()
                    && (t.recopy || t.progress.snapshot_lsn.is_none())
            })
            .collect();
        for t in to_copy.iter_mut() {
            if let Some(current) = now.iter().find(|s| s.oid == t.source.oid) {
                let lsn = t.progress.watermark.unwrap_or_default();
                t.adopt(&current.columns, lsn).await?;
            }
        }
        let dead_letters = DeadLetters::new(&settings.data_dir);
        copy_again(&self.conn, settings, &mut to_copy, &dead_letters).await?;
        Ok(false)
    }

    /// The source went away (`cause`): keep what is complete, then connect again with backoff
    /// until it is back (true) or the run is asked to stop (false). Nothing is confirmed to the
    /// slot that is not committed in Iceberg, so the new stream starts where the lake is.
    async fn reconnect<T: Sink>(
        &mut self,
        applier: &mut Applier<T>,
        settings: &Settings,
        cause: Error,
        stop: &AtomicBool,
    ) -> Result<bool> {
        let health = philotes_telemetry::health();
        philotes_telemetry::source_connected(false);
        health.not_ready("source", format!("reconnecting: {cause}"));
        tracing::warn!(error = %cause, "lost the source; reconnecting (Philotes keeps running and resumes from the last position committed in Iceberg)");
        // Complete transactions are committed now; a transaction cut off half-way is dropped
        // from every table and arrives again, whole, on the new stream.
        applier.abandon_open_transaction();
        applier.flush(&mut self.stream).await?;
        applier.new_stream();
        self.stream.abandon();
        let mut attempt = 0u32;
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(false);
            }
            attempt += 1;
            let delay = backoff(attempt, RECONNECT_FIRST, RECONNECT_MAX);
            tokio::time::sleep(delay).await;
            philotes_telemetry::retry("source", ErrorKind::Source);
            match self.connect_again(applier, settings).await {
                Ok(()) => {
                    tracing::info!(attempt, from = %self.stream.confirmed(), "reconnected to the source; streaming again");
                    philotes_telemetry::source_connected(true);
                    health.ready("source");
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Source => {
                    health.not_ready("source", format!("reconnecting: {e}"));
                    tracing::warn!(attempt, error = %e, "the source is not back yet; check that it runs and accepts replication connections");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_again<T: Sink>(
        &mut self,
        applier: &Applier<T>,
        settings: &Settings,
    ) -> Result<()> {
        // Only the replication connection may have broken (its walsender was terminated, say):
        // then the SQL connection, which holds the lease, goes on as it is.
        let alive = !self.client.is_closed() && self.client.simple_query("SELECT 1").await.is_ok();
        let fresh = if alive {
            None
        } else {
            Some(self.conn.connect().await?)
        };
        let client = fresh.as_ref().unwrap_or(&self.client);
        match preflight::slot_status(client, &settings.slot).await? {
            None => return Err(preflight::missing_slot(&settings.slot)),
            Some(s) if s.wal_status == "lost" => return Err(preflight::lost_slot(&settings.slot)),
            Some(_) => {}
        }
        if fresh.is_some() {
            // The lease died with the old connection: take it again before streaming (another
            // process that took it meanwhile ends this one).
            preflight::take_lease(client, &settings.slot).await?;
        }
        let mut stream = ReplicationStream::start(
            &self.conn,
            &settings.slot,
            &settings.publication,
            self.stream.confirmed(),
            self.spill_dir.clone(),
        )
        .await?;
        for t in applier.tables.values() {
            stream.remember(t.source.oid, &t.source.columns);
        }
        self.stream = stream;
        if let Some(c) = fresh {
            self.client = c;
        }
        Ok(())
    }
}

/// Wait until this process holds the pipeline's lease (true), or is asked to stop (false): a
/// standby takes over within [`STANDBY_POLL`] of the holder's death.
async fn standby(
    client: &tokio_postgres::Client,
    settings: &Settings,
    stop: &AtomicBool,
) -> Result<bool> {
    let health = philotes_telemetry::health();
    let mut told = false;
    loop {
        match preflight::take_lease(client, &settings.slot).await {
            Ok(()) => {
                if told {
                    tracing::info!(slot = %settings.slot, "took over the pipeline: the process that streamed it is gone");
                }
                return Ok(true);
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                if !told {
                    tracing::info!(slot = %settings.slot, holder = %e, "standing by: another process streams this pipeline; this one takes over when it stops");
                    told = true;
                }
                health.not_ready("source", "standby: another process streams this pipeline");
            }
            Err(e) => return Err(e),
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        tokio::time::sleep(STANDBY_POLL).await;
    }
}

/// How often a standby looks whether the pipeline's lease is free.
const STANDBY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The first wait before reconnecting to the source, doubled after each failure up to
/// [`RECONNECT_MAX`].
const RECONNECT_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Hand the tables that have a changelog to the maintenance task.
fn maintain_tables<'a, T: Sink + 'a>(
    maintained: &Maintained,
    tables: impl Iterator<Item = &'a TableState<T>>,
) {
    for t in tables {
        if let Some(ident) = t.lake.as_ref().and_then(Sink::maintained) {
            maintained.add(ident);
        }
    }
}

/// Heartbeats, and the slot's health in the log.
#[derive(Default)]
struct SlotWatch {
    last_log: Option<std::time::Instant>,
    heartbeat_failed: bool,
}

impl SlotWatch {
    /// Called every [`PUBLICATION_POLL`]: write a heartbeat, log retained WAL and lag once a
    /// minute, and stop with the way out when the source invalidated or dropped the slot.
    async fn tick(&mut self, client: &tokio_postgres::Client, slot: &str) -> Result<()> {
        if let Err(e) = preflight::emit_heartbeat(client).await
            && !self.heartbeat_failed
        {
            tracing::warn!(error = %e, "cannot write heartbeats (a read-only source?); a quiet database may make the source keep WAL longer");
            self.heartbeat_failed = true;
        }
        let Some(status) = preflight::slot_status(client, slot).await? else {
            return Err(preflight::missing_slot(slot));
        };
        philotes_telemetry::slot_status(
            Some(status.retained_bytes),
            &status.wal_status,
            status.safe_bytes,
        );
        philotes_telemetry::replication_lag(Some(status.lag_bytes), None);
        match status.wal_status.as_str() {
            "lost" => return Err(preflight::lost_slot(slot)),
            "unreserved" => tracing::warn!(
                slot,
                retained_wal_bytes = status.retained_bytes,
                "the slot's WAL is past max_slot_wal_keep_size and may be removed at the next checkpoint; Philotes is behind — give it more resources or raise max_slot_wal_keep_size"
            ),
            _ => {}
        }
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60))
        {
            tracing::info!(
                slot,
                retained_wal_bytes = status.retained_bytes,
                lag_bytes = status.lag_bytes,
                wal_status = %status.wal_status,
                "slot status"
            );
            self.last_log = Some(std::time::Instant::now());
        }
        Ok(())
    }
}

/// How often the stream looks for tables that joined or left the publication (a table's first
/// change after joining triggers a look at once).
const PUBLICATION_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Take in tables that joined the publication (to be copied) and let go of tables that left it.
/// Returns whether a table joined.
async fn follow_publication<O: Opener>(
    applier: &mut Applier<O::Sink>,
    stream: &mut ReplicationStream,
    now: Vec<SourceTable>,
    lake: &Lake,
    client: &tokio_postgres::Client,
    settings: &Settings,
    opener: &O,
) -> Result<bool> {
    let current: std::collections::HashSet<u32> = now.iter().map(|s| s.oid).collect();
    let gone: Vec<u32> = applier
        .tables
        .iter()
        .filter(|(oid, t)| !current.contains(oid) && t.leaving.is_none())
        .map(|(oid, _)| *oid)
        .collect();
    if !gone.is_empty() {
        // Its changes before it left are all below the WAL's end now.
        let at = preflight::current_wal_lsn(client).await?;
        for oid in gone {
            if let Some(t) = applier.tables.get_mut(&oid) {
                tracing::info!(table = %t.source.name, until = %at, "the table left the publication (removed or dropped); its changes up to now are still applied");
                t.leaving = Some(at);
            }
        }
    }
    let mut joined = false;
    for st in now {
        if let Some(t) = applier.tables.get_mut(&st.oid) {
            if t.leaving.take().is_some() {
                // Back before it was let go: changes in between may be missing.
                t.recopy = true;
                joined = true;
            }
            continue;
        }
        tracing::info!(table = %st.name, "a table joined the publication; copying it");
        stream.remember(st.oid, &st.columns);
        let state = open_table(st, lake, settings, false, &Resync::None, client).await;
        let mut state = opener.wrap(state).await?;
        // A changelog from an earlier time in the publication misses what happened since.
        state.recopy = state.progress.watermark.is_some();
        applier.tables.insert(state.source.oid, state);
        joined = true;
    }
    Ok(joined)
}

/// Copy `tables` (in name order) under one exported snapshot and take their new positions.
async fn copy_again<T: Sink>(
    conn: &SourceConn,
    settings: &Settings,
    tables: &mut [&mut TableState<T>],
    dead_letters: &DeadLetters,
) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    tables.sort_by(|a, b| a.source.name.cmp(&b.source.name));
    for t in tables.iter_mut() {
        let columns = t.source.columns.clone();
        if let Some(lake) = t.lake.as_mut() {
            lake.before_copy(&columns).await?;
        }
    }
    let copied = copy_tables(
        conn,
        &settings.publication,
        tables,
        settings.batch_rows,
        dead_letters,
    )
    .await;
    for t in tables.iter_mut() {
        if let Some(lake) = t.lake.as_mut() {
            lake.after_copy().await?;
            t.progress = lake.progress();
        }
    }
    copied?;
    for t in tables.iter_mut() {
        t.recopy = false;
    }
    Ok(())
}

async fn open_table(
    st: SourceTable,
    catalog: &Lake,
    settings: &Settings,
    slot_is_new: bool,
    resync: &Resync,
    client: &tokio_postgres::Client,
) -> TableState<ChangelogTable> {
    let mut st = st;
    let ident = table_ident(&st.name, settings.namespace.as_deref());
    if let Err(e) = mark_filled_columns(&mut st, catalog, &ident, client).await {
        tracing::warn!(table = %st.name, error = %e, "cannot check the table's new columns for values");
    }
    let key_idx = key_indexes(&st.columns);
    let metrics = philotes_telemetry::TableMetrics::new(&st.name.to_string());
    let mut state = TableState {
        lake: None,
        stopped: None,
        progress: TableProgress::default(),
        key_idx,
        recopy: false,
        leaving: None,
        metrics,
        source: st,
    };
    if let Some(problem) = preflight::table_problem(&state.source) {
        // A table replicated before keeps its position (and holds the slot) until fixed.
        keep_position(&mut state, catalog, &ident).await;
        state.stop(problem);
        return state;
    }
    match ChangelogTable::open(
        catalog,
        ident.clone(),
        &state.source.name,
        &state.source.columns,
        settings.batch_rows,
    )
    .await
    {
        Ok(lake) => {
            state.progress = lake.progress();
            state.recopy = lake.needs_copy();
            state.lake = Some(lake);
        }
        Err(e) => {
            keep_position(&mut state, catalog, &ident).await;
            state.stop(e);
            return state;
        }
    }
    let again = resync.wants(&state.source.name);
    let resync_hint = format!(
        "Run `philotes resync {}` with the same settings to copy the table again (its changelog keeps its history)",
        state.source.name
    );
    if again && state.progress.snapshot_lsn.is_some() {
        tracing::info!(table = %state.source.name, "copying the table again (resync)");
        state.recopy = true;
        return state;
    }
    let Some(lake) = state.lake.as_mut() else {
        return state;
    };
    let stale = if slot_is_new && state.progress.watermark.is_some() {
        let reason = format!(
            "the replication slot {} was created anew, but this table's changelog already holds changes up to {}: changes made in between were not captured",
            settings.slot,
            state
                .progress
                .watermark
                .map(|w| w.to_string())
                .unwrap_or_default(),
        );
        // Remembered in the table, so later runs keep it apart until it is copied again.
        if let Err(e) = lake.set_needs_resync(Some(reason.clone())).await {
            tracing::warn!(table = %state.source.name, error = %e, "cannot record that the table needs a resync");
        }
        Some(reason)
    } else {
        lake.needs_resync().cloned()
    };
    if let Some(reason) = stale {
        let e = Error::new(ErrorKind::SourceSetup, format!("{reason}. {resync_hint}"))
            .with("table", &state.source.name);
        state.stop(e);
        // This table's position belongs to a slot it cannot continue from: it must not hold
        // the slot.
        state.progress.watermark = None;
    }
    state
}

/// Columns the changelog has not seen yet that already hold values (added with a volatile
/// default while Philotes was not running, say) are marked, so the table is copied again.
async fn mark_filled_columns(
    st: &mut SourceTable,
    catalog: &Lake,
    ident: &iceberg::TableIdent,
    client: &tokio_postgres::Client,
) -> Result<()> {
    let known = stored_attnums(catalog.catalog.as_ref(), ident).await?;
    if known.is_empty() {
        return Ok(()); // a new table: its first copy takes everything
    }
    let seen: std::collections::HashSet<i16> = known.values().copied().collect();
    for c in st.columns.iter_mut() {
        let new = c.attnum.is_some_and(|a| !seen.contains(&a));
        if new && !c.filled_on_add {
            c.filled_on_add = column_has_values(client, &st.name, &c.name).await?;
        }
    }
    Ok(())
}

/// Read a stopped table's position from the lake, so that its watermark holds the slot.
async fn keep_position(
    state: &mut TableState<ChangelogTable>,
    catalog: &Lake,
    ident: &iceberg::TableIdent,
) {
    match stored_progress(catalog.catalog.as_ref(), ident).await {
        Ok(p) => state.progress = p,
        Err(e) => {
            tracing::warn!(table = %state.source.name, error = %e, "cannot read the table's position")
        }
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}
