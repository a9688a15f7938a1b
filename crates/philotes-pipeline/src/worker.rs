//! `philotes worker`: buffered changes into Iceberg commits, one table at a time per worker.
//!
//! Why this shape: a table is written by the one worker holding its lease (a session advisory
//! lock on the control database, which dies with the worker), so its commits never race and
//! its changes go in source order. Which worker that is comes from rendezvous hashing over the
//! live workers ([`Pool`]), so tables spread out and move only when a worker comes or goes. What
//! a table holds is still decided by its own watermark in the lake (decision 002): a worker
//! reads the table's buffered changes from that watermark on, writes them with the columns in
//! force at each change, and commits with the position it reached; only then are those changes
//! removed from the buffer. Whichever worker dies when, the next one starts from the lake.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use philotes_buffer::{
    BufferedChange, ControlDb, NewDeadLetter, Pool, RelationAt, TableRow, decode_row,
};
use philotes_config::Settings;
use philotes_core::retry::backoff;
use philotes_core::{
    ColumnDesc, Error, ErrorKind, Lsn, Op, Result, TableName, TableProgress, TableSink,
};
use philotes_maintenance::Maintained;
use philotes_sink_iceberg::{ChangelogTable, Lake, open_catalog, stored_progress, table_ident};

use crate::dlq::row_json;
use crate::ingest::lake_identity;

/// Buffered changes read per query.
const PAGE: i64 = 5_000;
/// Time between passes when there was nothing to do.
const IDLE: Duration = Duration::from_millis(200);
/// How often the buffer's depth is measured.
const DEPTH_EVERY: Duration = Duration::from_secs(2);

/// Run a worker of the pipeline `settings.slot` as `id` until `stop` is set.
pub async fn work(settings: &Settings, id: &str, stop: Arc<AtomicBool>) -> Result<()> {
    philotes_telemetry::set_pipeline(&settings.slot);
    let health = philotes_telemetry::health();
    health.expect("buffer", "connecting to the control database");
    health.expect("lake", "opening the lake");
    let mut db = ControlDb::open(settings.buffer_url.as_ref(), "for the worker").await?;
    // The lake is checked against ingest's before anything is opened or created in it.
    if !await_pipeline(&db, settings, &stop).await? {
        return Ok(());
    }
    let lake = open_catalog(settings).await?;
    health.ready("lake");
    let maintained = Maintained::default();
    let _maintenance = settings.maintenance.enabled.then(|| {
        philotes_maintenance::spawn(
            lake.clone(),
            maintained.clone(),
            settings.maintenance.clone(),
        )
    });
    let _mirrors = settings.mirror.enabled.then(|| {
        philotes_mirror::spawn(lake.clone(), maintained.clone(), settings.mirror.interval)
    });
    let mut attempt = 0u32;
    loop {
        match serve(&mut db, &lake, &maintained, settings, id, &stop).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Buffer => {
                // The control database went away (a restart, a failover): every lease went
                // with the connection, so other workers may take the tables meanwhile.
                philotes_telemetry::worker_leases(0);
                health.not_ready("buffer", format!("reconnecting: {e}"));
                tracing::warn!(error = %e, "lost the control database; reconnecting (the tables' leases went with the connection)");
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, RETRY_FIRST, RETRY_MAX)).await;
                    philotes_telemetry::retry("buffer", ErrorKind::Buffer);
                    match ControlDb::open(settings.buffer_url.as_ref(), "for the worker").await {
                        Ok(d) => {
                            db = d;
                            attempt = 0;
                            tracing::info!("reconnected to the control database");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(attempt, error = %e, "the control database is not back yet")
                        }
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Wait until ingest has registered the pipeline (true) or `stop` is set (false); an error when
/// the pipeline writes another lake than this worker is configured for.
async fn await_pipeline(db: &ControlDb, settings: &Settings, stop: &AtomicBool) -> Result<bool> {
    let mut told = false;
    while !db
        .claim_lake(&settings.slot, &lake_identity(settings), false)
        .await?
    {
        // Started together with ingest (as Kubernetes does): wait for it.
        if !told {
            tracing::info!(pipeline = %settings.slot, "waiting for `philotes ingest` to register the pipeline (same --slot and control database)");
            philotes_telemetry::health()
                .not_ready("buffer", "waiting for ingest to register the pipeline");
            told = true;
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(true)
}

/// Join the pool and write tables until `stop` is set (or the control database fails).
async fn serve(
    db: &mut ControlDb,
    lake: &Lake,
    maintained: &Maintained,
    settings: &Settings,
    id: &str,
    stop: &AtomicBool,
) -> Result<()> {
    let health = philotes_telemetry::health();
    if !await_pipeline(db, settings, stop).await? {
        return Ok(());
    }
    let pool = Pool::join(&db.conn, &settings.slot, id).await?;
    health.ready("buffer");
    tracing::info!(worker = id, pipeline = %settings.slot, "worker ready");
    let mut held: HashMap<i64, Held> = HashMap::new();
    let mut depth_at: Option<Instant> = None;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match pass(db, &pool, lake, settings, &mut held, maintained).await {
            Ok(busy) => {
                if depth_at.is_none_or(|t| t.elapsed() >= DEPTH_EVERY) {
                    if let Ok(d) = db.depth(&settings.slot).await {
                        philotes_telemetry::buffer_depth(d);
                    }
                    depth_at = Some(Instant::now());
                }
                if !busy {
                    tokio::time::sleep(IDLE).await;
                }
            }
            Err(e) => break Err(e),
        }
    };
    // Commit what is complete, then let go: another worker takes the tables at once. Not
    // after a failure: the leases may be gone with the connection, and another worker may be
    // writing these tables already.
    for (table, mut h) in held.drain() {
        if let Some(w) = h.work.as_mut()
            && result.is_ok()
            && let Err(e) = w.commit(db, &pool).await
        {
            tracing::warn!(table = %w.name, error = %e, "cannot commit before stopping; the next worker writes these changes again from the lake's watermark");
        }
        let _ = pool.release(table).await;
    }
    philotes_telemetry::worker_leases(0);
    result
}

/// A table whose lease this worker holds.
struct Held {
    /// `None` while it cannot be written (waiting for a retry, or for ingest's description).
    work: Option<Work>,
    /// When to try to open it again after a fault, and how often it failed.
    retry_at: Option<Instant>,
    failures: u32,
}

/// One pass over the pipeline's tables: take and let go of leases, then write what each held
/// table has buffered. True when something was written.
async fn pass(
    db: &mut ControlDb,
    pool: &Pool,
    lake: &Lake,
    settings: &Settings,
    held: &mut HashMap<i64, Held>,
    maintained: &Maintained,
) -> Result<bool> {
    if !pool.alive() {
        return Err(Error::new(
            ErrorKind::Buffer,
            "lost the connection that holds this worker's table leases",
        ));
    }
    let tables = db.tables(&settings.slot).await?;
    let members = pool.members().await?;
    let mut busy = false;
    for row in &tables {
        let mine = Pool::owner(&members, row.id) == Some(pool.worker.as_str());
        let writable = mine && !row.copying && row.stopped.is_none() && row.recopy.is_none();
        if let Some(h) = held.get_mut(&row.id) {
            if !writable {
                // Commit what is complete (a new owner or a copy takes over from there).
                if let Some(w) = h.work.as_mut()
                    && !row.copying
                    && let Err(e) = w.commit(db, pool).await
                {
                    tracing::warn!(table = %row.name, error = %e, "cannot commit before handing the table on; the next writer starts from the lake's watermark");
                }
                held.remove(&row.id);
                pool.release(row.id).await?;
                tracing::info!(table = %row.name, "let go of the table");
                continue;
            }
        } else if writable && row.snapshot_lsn.is_some() && pool.try_lease(row.id).await? {
            tracing::info!(table = %row.name, "writing the table");
            held.insert(
                row.id,
                Held {
                    work: None,
                    retry_at: None,
                    failures: 0,
                },
            );
        }
        let Some(h) = held.get_mut(&row.id) else {
            continue;
        };
        if h.work.is_none() {
            if h.retry_at.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            match Work::open(db, lake, settings, row).await {
                Ok(Some(w)) => {
                    maintained.add(w.lake.ident());
                    h.work = Some(w);
                }
                Ok(None) => continue,
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                Err(e) => {
                    h.failures += 1;
                    h.retry_at = Some(Instant::now() + backoff(h.failures, RETRY_FIRST, RETRY_MAX));
                    philotes_telemetry::retry("worker-open", e.kind());
                    tracing::warn!(table = %row.name, attempt = h.failures, error = %e, "cannot open the table; trying again");
                    continue;
                }
            }
        }
        let Some(w) = h.work.as_mut() else {
            continue;
        };
        match w.step(db, settings, row, pool).await {
            Ok(Step::Wrote) => {
                busy = true;
                h.failures = 0;
            }
            Ok(Step::Idle) => {}
            Ok(Step::Stopped) => {
                h.work = None;
            }
            Err(e) => {
                // The lake or the buffer is not answering: start over from the lake's watermark
                // after a pause (nothing uncommitted is lost; it is all still buffered).
                h.failures += 1;
                philotes_telemetry::retry("worker-commit", e.kind());
                tracing::warn!(table = %row.name, attempt = h.failures, error = %e, "cannot write the table; starting over from its watermark after a pause");
                h.work = None;
                h.retry_at = Some(Instant::now() + backoff(h.failures, RETRY_FIRST, RETRY_MAX));
            }
        }
    }
    // Tables no longer in the pipeline.
    let known: HashSet<i64> = tables.iter().map(|t| t.id).collect();
    let gone: Vec<i64> = held
        .keys()
        .filter(|k| !known.contains(k))
        .copied()
        .collect();
    for id in gone {
        held.remove(&id);
        pool.release(id).await?;
    }
    philotes_telemetry::worker_leases(held.len());
    Ok(busy)
}

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What one step of a table did.
enum Step {
    Wrote,
    Idle,
    /// The table stopped (a dead letter, a schema change it cannot follow) or waits for a copy.
    Stopped,
}

/// A table being written by this worker.
struct Work {
    id: i64,
    name: TableName,
    lake: ChangelogTable,
    /// Descriptions not followed yet, in order.
    relations: Vec<RelationAt>,
    /// The newest description loaded (to load only later ones).
    relations_seen: Option<(Lsn, i32)>,
    columns: Vec<ColumnDesc>,
    /// Where the next read starts.
    next: (Lsn, i32),
    /// The commit LSN of the last change written.
    last_lsn: Option<Lsn>,
    /// A position the pending rows are complete up to: every change below it is written.
    boundary: Option<Lsn>,
    last_commit: Instant,
    metrics: philotes_telemetry::TableMetrics,
    /// Changes an operator chose to leave out: (lsn, position).
    skips: HashSet<(Lsn, i64)>,
    pipeline: String,
}

fn op_of(code: u8) -> Option<Op> {
    Some(match code {
        b'I' => Op::Insert,
        b'U' => Op::Update,
        b'D' => Op::Delete,
        b'T' => Op::Truncate,
        b'S' => Op::Snapshot,
        _ => return None,
    })
}

impl Work {
    /// Open `row`'s lake table where its watermark is, with the columns in force there. `None`
    /// when ingest has not described the table yet.
    async fn open(
        db: &ControlDb,
        lake: &Lake,
        settings: &Settings,
        row: &TableRow,
    ) -> Result<Option<Work>> {
        // The name as ingest recorded it, from its description.
        let all = db.relations(row.id, Lsn(0)).await?;
        let Some(first) = all.first() else {
            return Ok(None);
        };
        let name = first.relation.table.clone();
        let ident = table_ident(&name, settings.namespace.as_deref());
        let progress = stored_progress(lake.catalog.as_ref(), &ident).await?;
        if progress.snapshot_lsn != row.snapshot_lsn {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "table {name} in this worker's lake ({ident}) {}, but ingest copied it at {}: this worker's lake settings (catalog, warehouse, namespace) differ from ingest's — give every role the same configuration",
                    match progress.snapshot_lsn {
                        Some(l) => format!("was copied at {l}"),
                        None => "holds no copy".to_string(),
                    },
                    row.snapshot_lsn.map(|l| l.to_string()).unwrap_or_default(),
                ),
            ));
        }
        let from = progress.watermark.unwrap_or_default();
        // Whatever is buffered below the lake's watermark is in the lake (a crash after a
        // commit, or a copy since).
        db.committed(row.id, from).await?;
        let mut relations = db.relations(row.id, from).await?;
        if relations.is_empty() {
            return Ok(None);
        }
        let start = relations.remove(0);
        let seen = relations
            .last()
            .map_or((start.lsn, start.seq), |r| (r.lsn, r.seq));
        let mut table = ChangelogTable::open(
            lake,
            ident,
            &name,
            &start.relation.columns,
            settings.batch_rows,
        )
        .await?;
        if table.needs_copy() {
            db.request_copy(row.id, "the table changed in a way only a copy makes whole")
                .await?;
            table.discard();
            return Ok(None);
        }
        let skips = db
            .skipped(&settings.slot, &row.name)
            .await?
            .into_iter()
            .collect();
        Ok(Some(Work {
            id: row.id,
            metrics: philotes_telemetry::TableMetrics::new(&name.to_string()),
            name,
            lake: table,
            relations,
            relations_seen: Some(seen),
            columns: start.relation.columns,
            next: (from, i32::MIN),
            last_lsn: None,
            boundary: None,
            last_commit: Instant::now(),
            skips,
            pipeline: settings.slot.clone(),
        }))
    }

    /// Write what is buffered for the table below its buffered position, committing per the
    /// flush settings at transaction boundaries.
    async fn step(
        &mut self,
        db: &mut ControlDb,
        settings: &Settings,
        row: &TableRow,
        pool: &Pool,
    ) -> Result<Step> {
        let Some(below) = row.buffered else {
            return Ok(Step::Idle);
        };
        if below <= self.next.0 && self.lake.pending() == 0 {
            return Ok(Step::Idle);
        }
        self.load_relations(db).await?;
        let mut wrote = false;
        loop {
            let page = db.read_range(self.id, self.next, below, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            for c in &page {
                if self.last_lsn.is_some_and(|l| c.lsn > l) {
                    // Every change below this one is written: a place to commit.
                    self.boundary = Some(c.lsn);
                    if self.lake.pending() >= settings.flush_rows {
                        self.commit(db, pool).await?;
                    }
                }
                if !self.follow_until(db, (c.lsn, c.seq), pool).await? {
                    return Ok(Step::Stopped);
                }
                if !self.write(db, c, pool).await? {
                    return Ok(Step::Stopped);
                }
                self.next = (c.lsn, c.seq.saturating_add(1));
                self.last_lsn = Some(c.lsn);
                wrote = true;
            }
            if !full {
                break;
            }
        }
        // Caught up: every change below `below` is written.
        if !self.follow_until(db, (below, i32::MIN), pool).await? {
            return Ok(Step::Stopped);
        }
        self.next = (below, i32::MIN);
        self.boundary = Some(below);
        let due = self.lake.pending() >= settings.flush_rows
            || self.last_commit.elapsed() >= settings.flush_interval;
        if self.lake.pending() > 0 && due {
            self.commit(db, pool).await?;
        }
        Ok(if wrote { Step::Wrote } else { Step::Idle })
    }

    /// Load descriptions recorded since the last look.
    async fn load_relations(&mut self, db: &ControlDb) -> Result<()> {
        let Some(seen) = self.relations_seen else {
            return Ok(());
        };
        let newer = db.relations(self.id, seen.0).await?;
        for r in newer {
            if (r.lsn, r.seq) > seen {
                self.relations_seen = Some((r.lsn, r.seq));
                self.relations.push(r);
            }
        }
        Ok(())
    }

    /// Follow every description that starts at or before `at`. False when the table stopped
    /// or waits for a copy.
    async fn follow_until(
        &mut self,
        db: &mut ControlDb,
        at: (Lsn, i32),
        pool: &Pool,
    ) -> Result<bool> {
        while self.relations.first().is_some_and(|r| (r.lsn, r.seq) <= at) {
            let r = self.relations.remove(0);
            if r.relation.columns == self.columns {
                continue;
            }
            match self.lake.adopt(&r.relation.columns, r.lsn).await {
                Ok(false) => self.columns = r.relation.columns,
                Ok(true) => {
                    // Commit what came before; ingest copies the table, then it goes on.
                    self.settle_before(db, r.lsn, pool).await?;
                    tracing::info!(table = %self.name, lsn = %r.lsn, "the table is copied again: PostgreSQL changed rows without sending them (a converted type, or a new column that holds values); asking ingest for a copy");
                    db.request_copy(self.id, "PostgreSQL changed rows without sending them (a converted type, or a new column that holds values)").await?;
                    return Ok(false);
                }
                Err(e) if e.kind() == ErrorKind::SchemaChange => {
                    let e = e.with("table", &self.name).with("lsn", r.lsn);
                    self.settle_before(db, r.lsn, pool).await?;
                    self.stop(db, &e).await?;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Write one buffered change. False when the table stopped on it.
    async fn write(&mut self, db: &mut ControlDb, c: &BufferedChange, pool: &Pool) -> Result<bool> {
        let row =
            decode_row(&c.data).map_err(|e| e.with("table", &self.name).with("lsn", c.lsn))?;
        let Some(op) = op_of(c.op) else {
            return Err(Error::new(
                ErrorKind::Buffer,
                format!("a buffered change has an unknown kind `{}`", c.op as char),
            )
            .with("table", &self.name)
            .with("lsn", c.lsn));
        };
        match self.lake.append(op, &row, c.lsn, i64::from(c.seq), c.ts_us) {
            Ok(()) => {
                self.lake.write_if_full().await?;
                Ok(true)
            }
            Err(ce) => {
                let position = i64::from(c.seq);
                if self.skips.contains(&(c.lsn, position)) {
                    tracing::warn!(table = %self.name, lsn = %c.lsn, position, column = %ce.column, "left out a change that cannot be converted, as decided with `philotes dlq skip`; it is not in the lake");
                    self.metrics.skipped();
                    return Ok(true);
                }
                let err = Error::new(
                    ErrorKind::Conversion,
                    format!("cannot convert a value: {}", ce.message),
                )
                .with("table", &self.name)
                .with("column", &ce.column)
                .with("lsn", c.lsn);
                // What came before it is committed; the table stops at it.
                self.settle_before(db, c.lsn, pool).await?;
                let names: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
                let table = self.name.to_string();
                let id = db
                    .dead_letter(
                        self.id,
                        NewDeadLetter {
                            pipeline: &self.pipeline,
                            table: &table,
                            lsn: c.lsn,
                            position: Some(position),
                            op: op.code(),
                            column: &ce.column,
                            error: &err.to_string(),
                            row: row_json(&names, &row),
                        },
                    )
                    .await?;
                self.metrics.dead_letter();
                self.metrics.stopped(err.kind());
                tracing::error!(table = %self.name, dead_letter = id, error = %err, "table stopped; the change is a dead letter in the control database (`philotes dlq list`), the other tables go on");
                Ok(false)
            }
        }
    }

    /// Stop the table with `e` (recorded in the control database).
    async fn stop(&mut self, db: &mut ControlDb, e: &Error) -> Result<()> {
        db.set_stopped(self.id, Some(&e.to_string())).await?;
        self.metrics.stopped(e.kind());
        tracing::error!(table = %self.name, error = %e, "table stopped; the other tables go on, and its changes stay buffered");
        Ok(())
    }

    /// Before the table stops (or waits for a copy) at a change of the transaction at `at`:
    /// commit the transactions before it, or, when part of that transaction is written
    /// already, drop what is pending (it is all still buffered, and the lake's watermark says
    /// where the next writer starts).
    async fn settle_before(&mut self, db: &ControlDb, at: Lsn, pool: &Pool) -> Result<()> {
        if self.last_lsn.is_some_and(|l| l >= at) {
            self.lake.discard();
            return Ok(());
        }
        self.boundary = Some(at);
        self.commit(db, pool).await
    }

    /// Commit everything written, up to the boundary, then remove it from the buffer — only
    /// while this worker's lease connection is alive (a lost lease may be another worker's now).
    async fn commit(&mut self, db: &ControlDb, pool: &Pool) -> Result<()> {
        let Some(at) = self.boundary else {
            return Ok(());
        };
        if self.lake.pending() == 0 {
            return Ok(());
        }
        if !pool.alive() {
            self.lake.discard();
            return Err(Error::new(
                ErrorKind::Buffer,
                "lost the connection that holds this worker's table leases; what was not committed is still buffered",
            )
            .with("table", &self.name));
        }
        let rows = self.lake.pending();
        let progress = TableProgress {
            watermark: Some(at),
            snapshot_lsn: self.lake.progress().snapshot_lsn,
        };
        let started = Instant::now();
        self.lake.commit(progress).await?;
        let took = started.elapsed();
        self.metrics.committed(rows, took);
        self.last_commit = Instant::now();
        db.committed(self.id, at).await?;
        // For the dashboard's recent commits; the commit itself is done whatever this says.
        if let Err(e) = db
            .record_commit(self.id, "stream", rows, at, Some(took.as_secs_f64()))
            .await
        {
            tracing::warn!(table = %self.name, error = %e, "cannot record the commit in the control database");
        }
        Ok(())
    }
}
