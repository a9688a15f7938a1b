//! The dead-letter file: changes that could not be written, kept whole for an operator.
//!
//! One JSON object per line in `DATA_DIR/dead-letter.jsonl`, flushed to disk before the
//! pipeline moves on. The table the change belongs to is stopped at the same time and the slot
//! keeps its position, so the change is also still in the source's WAL: nothing is lost twice.
//!
//! `philotes dlq` reads the file and records an operator's decision about a change in
//! `DATA_DIR/dead-letter-actions.jsonl` (both files only ever grow, so a dead letter's id, its
//! first line's number, never changes). A change is identified by its table, its transaction's
//! commit LSN and its position among that table's changes in the transaction: the same change
//! has the same identity every time the stream delivers it again, however far the other tables
//! have got. `skip` makes the pipeline leave exactly that change out when it fails again (logged
//! and counted); `retry` only marks it, as every start tries a stopped table's changes again.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use philotes_core::{Cell, Error, ErrorKind, Lsn, Op, Result, TableName};
use serde::Serialize;

pub struct DeadLetters {
    path: PathBuf,
    actions: PathBuf,
}

/// One change that could not be written, as `philotes dlq list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// The line of its first occurrence in the dead-letter file.
    pub id: u64,
    pub table: String,
    pub lsn: String,
    /// Its position among its table's changes in the transaction (none for initial copies).
    pub position: Option<u64>,
    pub op: String,
    pub column: Option<String>,
    pub error: String,
    pub row: serde_json::Value,
    /// When it last failed.
    pub time: String,
    /// How often it failed (once per start while its table stays stopped).
    pub failures: u64,
    /// `open`, `skipped` or `retried`.
    pub state: String,
    pub note: Option<String>,
}

/// What an operator decided about a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Skip,
    Retry,
}

/// The identity of a streamed change: table, commit LSN, position in the transaction.
pub type ChangeKey = (String, Lsn, u64);

impl DeadLetters {
    pub fn new(data_dir: &Path) -> Self {
        DeadLetters {
            path: data_dir.join("dead-letter.jsonl"),
            actions: data_dir.join("dead-letter-actions.jsonl"),
        }
    }

    /// Every dead letter, one per change (its repeated failures counted), oldest first.
    pub fn list(&self) -> Result<Vec<DeadLetter>> {
        let mut by_key: BTreeMap<(String, String, Option<u64>, String), DeadLetter> =
            BTreeMap::new();
        for (n, v) in read_lines(&self.path)? {
            let s = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let position = v.get("position").and_then(serde_json::Value::as_u64);
            let key = (s("table"), s("lsn"), position, s("op"));
            let entry = by_key.entry(key).or_insert_with(|| DeadLetter {
                id: n,
                table: s("table"),
                lsn: s("lsn"),
                position,
                op: s("op"),
                column: v.get("column").and_then(|x| x.as_str()).map(str::to_string),
                error: String::new(),
                row: serde_json::Value::Null,
                time: String::new(),
                failures: 0,
                state: "open".into(),
                note: None,
            });
            entry.failures += 1;
            entry.error = s("error");
            entry.row = v.get("row").cloned().unwrap_or_default();
            entry.time = s("time");
            // Failing again after a decision reopens it.
            entry.state = "open".into();
            entry.note = None;
        }
        let mut out: Vec<DeadLetter> = by_key.into_values().collect();
        out.sort_by_key(|d| d.id);
        for (_, a) in read_lines(&self.actions)? {
            let Some(id) = a.get("id").and_then(serde_json::Value::as_u64) else {
                continue;
            };
            let at = a.get("time").and_then(|x| x.as_str()).unwrap_or_default();
            if let Some(d) = out.iter_mut().find(|d| d.id == id)
                && at >= d.time.as_str()
            {
                d.state = a
                    .get("action")
                    .and_then(|x| x.as_str())
                    .unwrap_or("open")
                    .to_string();
                d.note = a.get("note").and_then(|x| x.as_str()).map(str::to_string);
            }
        }
        Ok(out)
    }

    /// Record `decision` about dead letter `id`; the dead letter as it is now.
    pub fn decide(&self, id: u64, decision: Decision, note: Option<&str>) -> Result<DeadLetter> {
        let list = self.list()?;
        let Some(d) = list.iter().find(|d| d.id == id) else {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "no dead letter {id} in {}: `philotes dlq list --all` shows the ids",
                    self.path.display()
                ),
            ));
        };
        if decision == Decision::Skip && d.position.is_none() {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "dead letter {id} is a row of an initial copy of {}, which cannot be skipped alone: fix the value on the source, then `philotes resync {}`",
                    d.table, d.table
                ),
            ));
        }
        let action = match decision {
            Decision::Skip => "skipped",
            Decision::Retry => "retried",
        };
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339(),
            "id": id,
            "action": action,
            "table": d.table,
            "lsn": d.lsn,
            "position": d.position,
            "note": note,
        });
        append_synced(&self.actions, &line)?;
        let mut d = d.clone();
        d.state = action.into();
        d.note = note.map(str::to_string);
        tracing::info!(id, table = %d.table, lsn = %d.lsn, action, "dead letter decided");
        Ok(d)
    }

    /// The changes an operator chose to skip.
    pub fn skips(&self) -> Result<HashSet<ChangeKey>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|d| d.state == "skipped")
            .filter_map(|d| {
                let lsn = d.lsn.parse::<Lsn>().ok()?;
                Some((d.table, lsn, d.position?))
            })
            .collect())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one failed change and flush it to disk. `position`: its place among its table's
    /// changes in the transaction (none for a row of an initial copy).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        table: &TableName,
        lsn: Lsn,
        position: Option<u64>,
        op: Op,
        columns: &[String],
        row: &[Cell],
        column: &str,
        error: &Error,
    ) -> Result<()> {
        let values = row_json(columns, row);
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339(),
            "table": table.to_string(),
            "lsn": lsn.to_string(),
            "position": position,
            "op": op.code(),
            "column": column,
            "error": error.to_string(),
            "row": values,
        });
        append_synced(&self.path, &line)
    }
}

/// A row as an operator reads it: column name to value (text where it is text).
pub(crate) fn row_json(columns: &[String], row: &[Cell]) -> serde_json::Value {
    let values: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .zip(row)
        .map(|(name, cell)| {
            let v = match cell {
                Cell::Null => serde_json::Value::Null,
                Cell::Unchanged => serde_json::json!({"unchanged_toast": true}),
                Cell::Text(b) => match std::str::from_utf8(b) {
                    Ok(s) => serde_json::Value::String(s.to_string()),
                    Err(_) => serde_json::json!({"bytes_hex": hex(b)}),
                },
                // A value of an initial copy, in its type's binary send format.
                Cell::Binary(b) => serde_json::json!({"pg_binary_hex": hex(b)}),
            };
            (name.clone(), v)
        })
        .collect();
    serde_json::Value::Object(values)
}

/// Append `line` to `path` and flush it to disk.
fn append_synced(path: &Path, line: &serde_json::Value) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Disk, format!("cannot write {}", path.display())).with_source(e)
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    writeln!(f, "{line}").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// The JSON lines of `path` with their line numbers (1-based); none when it does not exist. A
/// torn last line (a crash while writing) is left out.
fn read_lines(path: &Path) -> Result<Vec<(u64, serde_json::Value)>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(
                Error::new(ErrorKind::Disk, format!("cannot read {}", path.display()))
                    .with_source(e),
            );
        }
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| {
            Error::new(ErrorKind::Disk, format!("cannot read {}", path.display())).with_source(e)
        })?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            out.push((i as u64 + 1, v));
        }
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
