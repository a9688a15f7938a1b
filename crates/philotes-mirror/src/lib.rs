//! Mirror tables: the current state of each changelog as a plain Iceberg table.
//!
//! A changelog (`<schema>.<table>__changelog`) holds every change; its current state is a rule
//! (docs/changelog-tables.md) that every engine would have to evaluate over the whole history
//! at every query. The mirror `<schema>.<table>` *is* that state, as a table any engine reads
//! with `SELECT * FROM orders`: the source's columns, plus `_cdc_lsn` and `_cdc_ts` of each
//! row's last change.
//!
//! Why it is built this way (docs/decisions/020-mirror-tables.md):
//!
//! - **From the changelog, not beside it.** The mirror reads the changes the changelog has
//!   committed after its own position, so it is exactly as correct as the changelog (TOAST,
//!   key changes, truncates, re-copies are already resolved there) and a crash of either never
//!   loses or repeats a change: the mirror's snapshots record the last change they applied
//!   (`philotes.mirror-position`), and a restart goes on from there.
//! - **Merge-on-read with position deletes** (Iceberg v2): each step appends the new versions
//!   of the touched keys and a position-delete file naming the rows they replace. Every engine
//!   that reads Iceberg v2 applies position deletes (pyiceberg included; equality deletes it
//!   does not read). Finding those rows needs a **key index** (key → file, row), kept in
//!   memory and rebuilt from the mirror itself whenever another writer committed to it.
//! - **Field ids are mapped, names followed.** The mirror's schema follows the changelog's
//!   source columns (renames, widenings, new columns), through a map of field ids kept in the
//!   table's properties.

mod apply;
mod commit;
mod index;
mod read;
mod schema;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use iceberg::TableIdent;
use iceberg::table::Table;
use philotes_core::{Error, ErrorKind, Lsn, Result};
use philotes_maintenance::Maintained;
use philotes_sink_iceberg::Lake;
use philotes_sink_iceberg::table::{KEY_FIELDS_KEY, read_progress};

pub use index::KeyIndex;

pub use philotes_sink_iceberg::table::MIRROR_OF_KEY;
/// Snapshot summary key: the position (`<lsn>:<seq>`) of the last change the mirror applied.
pub const POSITION_KEY: &str = "philotes.mirror-position";
/// Table property: changelog field id → mirror field id, `cl:m,cl:m,…`.
pub const FIELDS_KEY: &str = "philotes.mirror-field-ids";
/// The suffix of a changelog's name; the mirror takes the name without it.
const CHANGELOG_SUFFIX: &str = "__changelog";

/// The mirror of the changelog `changelog`: the same namespace, the name without
/// `__changelog`. `None` for a table that is not named as a changelog.
pub fn mirror_ident(changelog: &TableIdent) -> Option<TableIdent> {
    let name = changelog.name().strip_suffix(CHANGELOG_SUFFIX)?;
    if name.is_empty() {
        return None;
    }
    Some(TableIdent::new(
        changelog.namespace().clone(),
        name.to_string(),
    ))
}

/// A position in a changelog: a change's (`_cdc_lsn`, `_cdc_seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub lsn: i64,
    pub seq: i64,
}

impl Position {
    fn parse(s: &str) -> Result<Position> {
        let bad = || {
            Error::new(
                ErrorKind::Internal,
                format!("a mirror snapshot records the position {s:?}, expected <lsn>:<seq>"),
            )
        };
        let (lsn, seq) = s.split_once(':').ok_or_else(bad)?;
        let lsn = i64::try_from(lsn.parse::<Lsn>().map_err(|_| bad())?.0).map_err(|_| bad())?;
        Ok(Position {
            lsn,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }

    fn render(self) -> String {
        format!("{}:{}", Lsn(u64::try_from(self.lsn).unwrap_or(0)), self.seq)
    }
}

/// What one step did to one mirror.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Changes of the changelog applied.
    pub changes: u64,
    /// Rows written, and rows of earlier files deleted by position.
    pub rows_written: u64,
    pub rows_deleted: u64,
    /// The step began with a truncate (or a copy made again): every earlier row went.
    pub truncated: bool,
    /// The changelog's watermark the mirror has reached (every change before it applied).
    pub watermark: Option<Lsn>,
    /// The index was rebuilt from the table (first step, or another writer committed).
    pub index_rebuilt: bool,
    pub took: Duration,
    /// How long after the changelog's commit the mirror's came.
    pub lag: Duration,
}

/// The mirror of one changelog, with its key index between steps.
pub struct Mirror {
    changelog: TableIdent,
    ident: TableIdent,
    index: Option<KeyIndex>,
    /// The changelog watermark up to which nothing was left to apply (no commit was needed).
    seen: Option<Lsn>,
}

impl Mirror {
    pub fn new(changelog: &TableIdent) -> Option<Mirror> {
        Some(Mirror {
            changelog: changelog.clone(),
            ident: mirror_ident(changelog)?,
            index: None,
            seen: None,
        })
    }

    pub fn ident(&self) -> &TableIdent {
        &self.ident
    }

    /// Apply every change the changelog has committed since the mirror's position, in one
    /// commit (nothing when there is nothing new). A changelog without a key has no mirror.
    pub async fn step(&mut self, lake: &Lake) -> Result<Option<Step>> {
        let started = Instant::now();
        let changelog = lake
            .catalog
            .load_table(&self.changelog)
            .await
            .map_err(|e| lake_error(format!("cannot load {}", self.changelog), e))?;
        let key_ids = key_field_ids(&changelog)?;
        if key_ids.is_empty() {
            return Ok(None);
        }
        let Some(watermark) = read_progress(&changelog)?.watermark else {
            return Ok(None);
        };
        // Idle tables cost one load of the changelog a step, nothing more.
        if self.seen.is_some_and(|w| w >= watermark) {
            return Ok(None);
        }
        let mut mirror = schema::open(lake, &changelog, &self.ident).await?;
        let fields = schema::field_map(&mirror)?;
        let position = recorded_position(&mirror)?;
        let mut step = Step {
            watermark: Some(watermark),
            ..Default::default()
        };
        let reached = mirror_watermark(&mirror).max(self.seen);
        if reached.is_some_and(|w| w >= watermark) {
            return Ok(None);
        }
        let changes =
            read::changes_after(&changelog, position, watermark, &fields, &key_ids).await?;
        if changes.rows == 0 {
            // Nothing after the position: the mirror already equals the changelog here.
            self.seen = Some(watermark);
            return Ok(None);
        }
        // The index must describe the snapshot the commit builds on.
        let current = mirror.metadata().current_snapshot_id();
        let mirror_keys = fields.mirror_keys(&key_ids)?;
        if self
            .index
            .as_ref()
            .is_none_or(|i| i.snapshot_id != current || i.key_ids != mirror_keys)
        {
            self.index = Some(index::build(&mirror, &mirror_keys).await?);
            step.index_rebuilt = true;
        }
        let Some(index) = self.index.as_mut() else {
            return Err(Error::new(ErrorKind::Internal, "the key index is missing"));
        };
        let plan = apply::fold(&changes, index, &mirror).await?;
        step.changes = changes.rows as u64;
        step.truncated = plan.truncated;
        step.rows_written = plan.batch.as_ref().map_or(0, |b| b.num_rows() as u64);
        step.rows_deleted = plan.deletes.len() as u64;
        let last = changes.last.unwrap_or(position);
        let (table, added) =
            commit::commit(lake, mirror, &plan, last, watermark, &changelog).await?;
        mirror = table;
        index.after_commit(&plan, added, mirror.metadata().current_snapshot_id());
        self.seen = Some(watermark);
        step.took = started.elapsed();
        // How long after the changelog committed these changes the mirror has them.
        let had = changelog
            .metadata()
            .current_snapshot()
            .map_or(0, |s| s.timestamp_ms());
        step.lag = Duration::from_millis(
            u64::try_from(chrono::Utc::now().timestamp_millis() - had).unwrap_or(0),
        );
        philotes_telemetry::mirrored(&self.ident.to_string(), step.changes, step.lag);
        Ok(Some(step))
    }
}

/// The changelog's key, as field ids ([`KEY_FIELDS_KEY`]).
fn key_field_ids(changelog: &Table) -> Result<Vec<i32>> {
    let Some(v) = changelog.metadata().properties().get(KEY_FIELDS_KEY) else {
        return Ok(Vec::new());
    };
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim().parse::<i32>().map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    format!(
                        "{KEY_FIELDS_KEY} of {} is {v:?}: not field ids",
                        changelog.identifier()
                    ),
                )
            })
        })
        .collect()
}

/// The position of the last change the mirror applied (none yet: before every change).
fn recorded_position(mirror: &Table) -> Result<Position> {
    let md = mirror.metadata();
    let mut snapshot = md.current_snapshot().cloned();
    while let Some(s) = snapshot {
        if let Some(p) = s.summary().additional_properties.get(POSITION_KEY) {
            return Position::parse(p);
        }
        snapshot = s
            .parent_snapshot_id()
            .and_then(|id| md.snapshot_by_id(id).cloned());
    }
    Ok(Position {
        lsn: -1,
        seq: i64::MAX,
    })
}

/// The changelog watermark the mirror's newest snapshot reached.
fn mirror_watermark(mirror: &Table) -> Option<Lsn> {
    read_progress(mirror).ok().and_then(|p| p.watermark)
}

pub(crate) fn lake_error(what: impl Into<String>, e: iceberg::Error) -> Error {
    Error::new(ErrorKind::Sink, what.into()).with_source(e)
}

/// The mirrors of the tables a pipeline writes, stepped one after the other.
#[derive(Default)]
pub struct Mirrors {
    mirrors: HashMap<TableIdent, Mirror>,
}

impl Mirrors {
    /// One step of every mirror of `tables` (changelogs); a mirror that fails is reported and
    /// the others go on. Returns the mirrors' names and what each step did.
    pub async fn step(
        &mut self,
        lake: &Lake,
        tables: &[TableIdent],
    ) -> Vec<(TableIdent, Result<Option<Step>>)> {
        let mut out = Vec::new();
        for t in tables {
            if !self.mirrors.contains_key(t) {
                let Some(m) = Mirror::new(t) else { continue };
                self.mirrors.insert(t.clone(), m);
            }
            let Some(m) = self.mirrors.get_mut(t) else {
                continue;
            };
            let r = m.step(lake).await;
            if let Err(e) = &r {
                tracing::warn!(mirror = %m.ident, error = %e, "mirror step failed; the next step tries again");
                philotes_telemetry::mirror_failed(&m.ident.to_string());
                // Whatever the index knew may not be what the table holds.
                m.index = None;
            }
            out.push((m.ident.clone(), r));
        }
        out
    }
}

/// Step the mirrors of the changelogs in `tables` every `interval`, on a task of its own,
/// until the returned handle is dropped. Each mirror that exists joins `tables`, so
/// maintenance expires its snapshots (it never compacts a mirror: see [`MIRROR_OF_KEY`]).
pub fn spawn(lake: Lake, tables: Maintained, interval: Duration) -> Background {
    let handle = tokio::spawn(async move {
        let mut mirrors = Mirrors::default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            step_all(&lake, &tables, &mut mirrors).await;
        }
    });
    Background { handle }
}

/// One step of every mirror of the changelogs in `tables` (the last one of a batch run).
pub async fn step_all(lake: &Lake, tables: &Maintained, mirrors: &mut Mirrors) {
    let list: Vec<TableIdent> = tables
        .tables()
        .into_iter()
        .filter(|t| mirror_ident(t).is_some())
        .collect();
    for (ident, r) in mirrors.step(lake, &list).await {
        if matches!(r, Ok(Some(_))) {
            tables.add(&ident);
        }
    }
}

/// The mirrors' task; dropping it stops them.
pub struct Background {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
