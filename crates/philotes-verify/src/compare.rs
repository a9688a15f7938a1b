//! One table, compared: both sides summarised by bucket at once (pass 1), then the buckets that
//! differ compared key by key (pass 2, only when something differs).
//!
//! Pass 2 holds the source's rows of the drilled buckets — key and per-column hashes, never the
//! values — and streams the lake past them; when those rows would not fit the budget, the
//! buckets are split into rounds, each reading both sides again. Buckets with rows on one side
//! only are counted from their summaries; their rows are read only for the first keys.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use iceberg::table::Table;
use philotes_core::{Error, ErrorKind, Lsn, Op, Result, RowBatcher};
use philotes_query::LakeSession;
use philotes_query::datafusion::arrow::array::ArrayRef;
use philotes_query::datafusion::arrow::row::Rows;
use philotes_query::datafusion::execution::SendableRecordBatchStream;
use philotes_sink_iceberg::{Batcher, source_batcher};
use philotes_source_postgres::snapshot::{CopyChunk, copy_table};
use philotes_source_postgres::{SourceConn, SourceTable};
use tokio::sync::mpsc;

use crate::digest::{BatchDigest, Digester, Drill, FirstKeys, Plan, Summary};
use crate::progress::Progress;

/// Source rows converted per batch.
const BATCH_ROWS: usize = 8192;

/// Everything needed to read one table on both sides.
#[derive(Clone)]
pub struct Sides {
    pub conn: SourceConn,
    /// The exported snapshot the source is read under.
    pub snapshot: String,
    pub source: SourceTable,
    /// The changelog table, whose schema decides how source values convert.
    pub lake_table: Table,
    /// The lake's current state as of the snapshot, columns in `names` order.
    pub lake_sql: String,
    pub names: Arc<[String]>,
    /// Indexes of the key columns in `names`.
    pub key: Vec<usize>,
    /// Source columns the lake has no field for yet: compared with NULL.
    pub unseen: Arc<[String]>,
}

/// The comparison of one table.
#[derive(Debug, Default)]
pub struct Outcome {
    pub source_rows: u64,
    pub lake_rows: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub first_missing: Vec<String>,
    pub first_extra: Vec<String>,
    /// Keys with the names of the columns that differ.
    pub first_different: Vec<(String, Vec<String>)>,
    /// Buckets whose summaries differed.
    pub differing_buckets: usize,
    /// Rounds of row-by-row comparison run, and needed.
    pub rounds: u32,
    pub rounds_needed: u32,
    /// Values of the source in columns the lake has not seen yet (should be 0).
    pub unseen_values: u64,
}

/// How one table is compared.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Keys named per kind of difference.
    pub show: usize,
    /// Source rows held at once while comparing row by row.
    pub budget: u64,
    /// Rounds of row-by-row comparison at most (each reads both sides again).
    pub max_rounds: u32,
}

/// What a side's rows are handed to.
trait Visit: Send + 'static {
    fn visit(&mut self, digester: &Digester, cols: &[ArrayRef], d: &BatchDigest) -> Result<()>;
}

fn joined(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Internal, format!("a verify task failed: {e}"))
}

/// Compare one table.
pub async fn compare(
    sides: &Sides,
    session: &LakeSession,
    limits: Limits,
    progress: &Progress,
) -> Result<Outcome> {
    let stream = session.query(&sides.lake_sql).await?;
    let types = stream
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let digester = Arc::new(Digester::new(
        sides.names.to_vec(),
        types,
        sides.key.clone(),
    )?);
    // Pass 1: the source on its own task, so converting it and the lake's query use both
    // cores; whichever side fails first ends the other.
    let unseen = Arc::new(AtomicU64::new(0));
    let mut source = tokio::spawn(scan_source(
        sides.clone(),
        digester.clone(),
        Summarise::default(),
        progress.source.clone(),
        Some(unseen.clone()),
    ));
    let lake = scan_lake(
        stream,
        digester.clone(),
        Summarise::default(),
        progress.lake.clone(),
    );
    tokio::pin!(lake);
    let (source, lake) = tokio::select! {
        s = &mut source => {
            let s = s.map_err(joined)??;
            (s.0, lake.await?.0)
        }
        l = &mut lake => match l {
            Ok(l) => (source.await.map_err(joined)??.0, l.0),
            Err(e) => {
                source.abort();
                return Err(e);
            }
        },
    };
    let plan = Arc::new(Plan::new(&source, &lake, limits.budget));
    let mut out = Outcome {
        source_rows: source.rows,
        lake_rows: lake.rows,
        differing_buckets: plan.differing,
        rounds_needed: plan.rounds,
        unseen_values: unseen.load(Ordering::Relaxed),
        missing: plan.one_sided_missing,
        extra: plan.one_sided_extra,
        ..Outcome::default()
    };
    let one_sided = plan.one_sided_missing + plan.one_sided_extra > 0;
    let rounds = match plan.rounds.min(limits.max_rounds) {
        // Buckets with rows on one side only are counted already; read for their keys.
        0 if one_sided && limits.show > 0 => 1,
        n => n,
    };
    let mut missing = FirstKeys::new(limits.show);
    let mut extra = FirstKeys::new(limits.show);
    let mut different = FirstKeys::new(limits.show);
    for round in 0..rounds {
        progress.phase(format!(
            "comparing {} differing key ranges row by row (round {} of {rounds})",
            plan.differing,
            round + 1,
        ));
        let held = scan_source(
            sides.clone(),
            digester.clone(),
            SourceDrill::new(plan.clone(), round, limits.show),
            progress.source.clone(),
            None,
        )
        .await?;
        missing.merge(held.missing);
        let stream = session.query(&sides.lake_sql).await?;
        let mut lake = scan_lake(
            stream,
            digester.clone(),
            LakeDrill::new(plan.clone(), round, held.held, limits.show),
            progress.lake.clone(),
        )
        .await?;
        out.missing += lake.held.len() as u64;
        for key in lake.held.keys() {
            missing.offer(key, Vec::new());
        }
        lake.held.clear();
        out.extra += lake.extra_count;
        out.different += lake.different_count;
        extra.merge(lake.extra);
        different.merge(lake.different);
        out.rounds = round + 1;
    }
    out.first_missing = digester.show_keys(missing.entries().map(|(k, _)| k))?;
    out.first_extra = digester.show_keys(extra.entries().map(|(k, _)| k))?;
    let keys = digester.show_keys(different.entries().map(|(k, _)| k))?;
    out.first_different = keys
        .into_iter()
        .zip(different.entries())
        .map(|(k, (_, cols))| {
            let names = cols.iter().map(|&c| digester.names()[c].clone()).collect();
            (k, names)
        })
        .collect();
    Ok(out)
}

/// Read the source table under the snapshot, converted exactly as the pipeline converts it.
/// With `unseen`, count the values of the columns the lake has not seen yet.
async fn scan_source<V: Visit>(
    sides: Sides,
    digester: Arc<Digester>,
    mut visit: V,
    counter: Arc<AtomicU64>,
    unseen: Option<Arc<AtomicU64>>,
) -> Result<V> {
    let table = sides.source.name.clone();
    let mut batcher = source_batcher(&sides.lake_table, &sides.source.columns)?;
    let (tx, mut rx) = mpsc::channel::<CopyChunk>(4);
    let reader = {
        let sides = sides.clone();
        tokio::spawn(async move {
            let s = &sides.source;
            copy_table(
                &sides.conn,
                &sides.snapshot,
                &s.name,
                &s.columns,
                s.partitioned,
                tx,
            )
            .await
        })
    };
    let hand_on = |batcher: &mut Batcher, visit: &mut V| -> Result<()> {
        let batch = batcher.finish()?;
        let cols = sides
            .names
            .iter()
            .map(|n| {
                batch.column_by_name(n).cloned().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("the converted source rows have no column {n}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(unseen) = &unseen {
            let values: usize = sides
                .unseen
                .iter()
                .filter_map(|n| batch.column_by_name(n))
                .map(|c| c.len() - c.null_count())
                .sum();
            unseen.fetch_add(values as u64, Ordering::Relaxed);
        }
        let cols = digester.align(cols)?;
        let d = digester.digest(&cols)?;
        visit.visit(&digester, &cols, &d)?;
        counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(())
    };
    while let Some(chunk) = rx.recv().await {
        let mut failed = None;
        let _ = chunk.for_each_row(|row| {
            match batcher.append(Op::Snapshot, row, Lsn::default(), 0, 0) {
                Ok(()) => ControlFlow::Continue(()),
                Err(ce) => {
                    failed = Some(ce);
                    ControlFlow::Break(())
                }
            }
        })?;
        if let Some(ce) = failed {
            reader.abort();
            return Err(Error::new(
                ErrorKind::Conversion,
                format!(
                    "a source value cannot be converted as the lake's schema says ({}): the source's column changed and the pipeline has not followed yet, or the value arrived after the verification point — verify again; if it persists, `philotes run` will stop on it too",
                    ce.message
                ),
            )
            .with("table", &table)
            .with("column", &ce.column));
        }
        if batcher.len() >= BATCH_ROWS {
            hand_on(&mut batcher, &mut visit)?;
        }
    }
    if !batcher.is_empty() {
        hand_on(&mut batcher, &mut visit)?;
    }
    reader.await.map_err(joined)??;
    Ok(visit)
}

/// Read the lake's current state as of the snapshot's position.
async fn scan_lake<V: Visit>(
    mut stream: SendableRecordBatchStream,
    digester: Arc<Digester>,
    mut visit: V,
    counter: Arc<AtomicU64>,
) -> Result<V> {
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| {
            Error::new(ErrorKind::Sink, "reading the lake's current state failed").with_source(e)
        })?;
        let cols = digester.align(batch.columns().to_vec())?;
        let d = digester.digest(&cols)?;
        visit.visit(&digester, &cols, &d)?;
        counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
    }
    Ok(visit)
}

/// Pass 1: bucket summaries.
#[derive(Default)]
struct Summarise(Summary);

impl Visit for Summarise {
    fn visit(&mut self, _: &Digester, _: &[ArrayRef], d: &BatchDigest) -> Result<()> {
        self.0.add(d);
        Ok(())
    }
}

/// A source row held for pass 2.
struct Held {
    row: u64,
    columns: Box<[u64]>,
}

/// Pass 2, source side: hold the rows of this round's buckets; name the first missing rows of
/// buckets the lake has nothing in.
struct SourceDrill {
    plan: Arc<Plan>,
    round: u32,
    held: HashMap<Box<[u8]>, Held>,
    missing: FirstKeys,
}

impl SourceDrill {
    fn new(plan: Arc<Plan>, round: u32, show: usize) -> Self {
        SourceDrill {
            plan,
            round,
            held: HashMap::new(),
            missing: FirstKeys::new(show),
        }
    }
}

/// What pass 2 does with a row of `bucket` in `round`.
fn role(plan: &Plan, round: u32, bucket: u32) -> Option<Drill> {
    match plan.kind.get(bucket as usize).copied().flatten()? {
        Drill::Round(r) if r == round => Some(Drill::Round(r)),
        Drill::Round(_) => None,
        one_sided if round == 0 => Some(one_sided),
        _ => None,
    }
}

/// The encoded keys of a batch, when one of its rows has a part in `round`.
fn keys_in_play(
    plan: &Plan,
    round: u32,
    digester: &Digester,
    cols: &[ArrayRef],
    d: &BatchDigest,
) -> Result<Option<Rows>> {
    if !d.bucket.iter().any(|&b| role(plan, round, b).is_some()) {
        return Ok(None);
    }
    digester.keys(cols).map(Some)
}

impl Visit for SourceDrill {
    fn visit(&mut self, digester: &Digester, cols: &[ArrayRef], d: &BatchDigest) -> Result<()> {
        let Some(keys) = keys_in_play(&self.plan, self.round, digester, cols, d)? else {
            return Ok(());
        };
        for (r, &b) in d.bucket.iter().enumerate() {
            match role(&self.plan, self.round, b) {
                Some(Drill::SourceOnly) => self.missing.offer(keys.row(r).as_ref(), Vec::new()),
                Some(Drill::Round(_)) => {
                    let held = Held {
                        row: d.row[r],
                        columns: d.columns.iter().map(|c| c[r]).collect(),
                    };
                    self.held.insert(keys.row(r).as_ref().into(), held);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Pass 2, lake side: match lake rows against the held source rows.
struct LakeDrill {
    plan: Arc<Plan>,
    round: u32,
    held: HashMap<Box<[u8]>, Held>,
    extra: FirstKeys,
    different: FirstKeys,
    extra_count: u64,
    different_count: u64,
}

impl LakeDrill {
    fn new(plan: Arc<Plan>, round: u32, held: HashMap<Box<[u8]>, Held>, show: usize) -> Self {
        LakeDrill {
            plan,
            round,
            held,
            extra: FirstKeys::new(show),
            different: FirstKeys::new(show),
            extra_count: 0,
            different_count: 0,
        }
    }
}

impl Visit for LakeDrill {
    fn visit(&mut self, digester: &Digester, cols: &[ArrayRef], d: &BatchDigest) -> Result<()> {
        let Some(keys) = keys_in_play(&self.plan, self.round, digester, cols, d)? else {
            return Ok(());
        };
        for (r, &b) in d.bucket.iter().enumerate() {
            let key = keys.row(r);
            match role(&self.plan, self.round, b) {
                Some(Drill::LakeOnly) => self.extra.offer(key.as_ref(), Vec::new()),
                Some(Drill::Round(_)) => match self.held.remove(key.as_ref()) {
                    None => {
                        self.extra_count += 1;
                        self.extra.offer(key.as_ref(), Vec::new());
                    }
                    Some(h) if h.row != d.row[r] => {
                        self.different_count += 1;
                        let differ = (0..d.columns.len())
                            .filter(|&c| h.columns.get(c) != Some(&d.columns[c][r]))
                            .collect();
                        self.different.offer(key.as_ref(), differ);
                    }
                    Some(_) => {}
                },
                _ => {}
            }
        }
        Ok(())
    }
}
