//! What `philotes verify` says: a table per run on a terminal, or one JSON document.

use std::io::Write;

use serde::Serialize;

use crate::compare::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Match,
    Different,
    /// The table could not be compared (see `reason`).
    NotVerified,
}

#[derive(Debug, Serialize)]
pub struct DifferentRow {
    pub key: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub table: String,
    pub status: Status,
    pub source_rows: u64,
    pub lake_rows: u64,
    /// Rows of the source the lake does not have.
    pub missing: u64,
    /// Rows of the lake the source does not have.
    pub extra: u64,
    /// Rows on both sides whose values differ.
    pub different: u64,
    pub first_missing: Vec<String>,
    pub first_extra: Vec<String>,
    pub first_different: Vec<DifferentRow>,
    /// Source columns the lake has no field for yet (added, with no change since): they match
    /// only while every value is NULL (`values_not_in_lake` counts the others).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns_not_in_lake: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub values_not_in_lake: u64,
    /// Key ranges (buckets of the key's hash) whose summaries differed, and the rounds spent
    /// comparing them row by row (more than one when their rows did not fit the memory).
    pub differing_ranges: usize,
    pub rounds: u32,
    /// Whether every differing range was compared row by row; when not (more rounds were
    /// needed than `--max-rounds`), `missing`, `extra` and `different` are lower bounds.
    pub complete: bool,
    /// Why the table was not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seconds: f64,
}

impl TableReport {
    pub fn not_verified(table: String, reason: String) -> TableReport {
        TableReport {
            table,
            status: Status::NotVerified,
            source_rows: 0,
            lake_rows: 0,
            missing: 0,
            extra: 0,
            different: 0,
            first_missing: Vec::new(),
            first_extra: Vec::new(),
            first_different: Vec::new(),
            columns_not_in_lake: Vec::new(),
            values_not_in_lake: 0,
            differing_ranges: 0,
            rounds: 0,
            complete: false,
            reason: Some(reason),
            seconds: 0.0,
        }
    }

    pub fn compared(table: String, o: Outcome, columns_not_in_lake: Vec<String>) -> TableReport {
        let differs =
            o.missing + o.extra + o.different + o.unseen_values > 0 || o.differing_buckets > 0;
        TableReport {
            table,
            status: if differs {
                Status::Different
            } else {
                Status::Match
            },
            source_rows: o.source_rows,
            lake_rows: o.lake_rows,
            missing: o.missing,
            extra: o.extra,
            different: o.different,
            first_missing: o.first_missing,
            first_extra: o.first_extra,
            first_different: o
                .first_different
                .into_iter()
                .map(|(key, columns)| DifferentRow { key, columns })
                .collect(),
            columns_not_in_lake,
            values_not_in_lake: o.unseen_values,
            differing_ranges: o.differing_buckets,
            rounds: o.rounds,
            complete: o.rounds >= o.rounds_needed,
            reason: None,
            seconds: 0.0,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// The source position both sides were read at.
    pub lsn: String,
    pub status: Status,
    pub tables: Vec<TableReport>,
}

impl Report {
    pub fn new(lsn: String, tables: Vec<TableReport>) -> Report {
        let status = if tables.iter().any(|t| t.status == Status::Different) {
            Status::Different
        } else if tables.iter().any(|t| t.status == Status::NotVerified) {
            Status::NotVerified
        } else {
            Status::Match
        };
        Report {
            lsn,
            status,
            tables,
        }
    }

    /// `0` when every table matches, `1` when one differs, `2` when one could not be verified.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Match => 0,
            Status::Different => 1,
            Status::NotVerified => 2,
        }
    }

    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "source and lake compared at source LSN {} (the lake as of the same position)\n",
            self.lsn
        )?;
        let width = self
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>8}  {:>8}  {:>9}  result",
            "table", "source rows", "lake rows", "missing", "extra", "different"
        )?;
        for t in &self.tables {
            if t.status == Status::NotVerified {
                writeln!(
                    out,
                    "{:<width$}  {:>12}  {:>12}  {:>8}  {:>8}  {:>9}  not verified: {}",
                    t.table,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    t.reason.as_deref().unwrap_or("")
                )?;
                continue;
            }
            let result = match t.status {
                Status::Match => "match",
                _ => "DIFFERENT",
            };
            writeln!(
                out,
                "{:<width$}  {:>12}  {:>12}  {:>8}  {:>8}  {:>9}  {result}",
                t.table, t.source_rows, t.lake_rows, t.missing, t.extra, t.different
            )?;
            let more = |shown: usize, total: u64| {
                if total > shown as u64 {
                    format!(", … ({} more)", total - shown as u64)
                } else {
                    String::new()
                }
            };
            if !t.first_missing.is_empty() {
                writeln!(
                    out,
                    "    missing from the lake: {}{}",
                    t.first_missing.join("; "),
                    more(t.first_missing.len(), t.missing)
                )?;
            }
            if !t.first_extra.is_empty() {
                writeln!(
                    out,
                    "    only in the lake: {}{}",
                    t.first_extra.join("; "),
                    more(t.first_extra.len(), t.extra)
                )?;
            }
            if !t.first_different.is_empty() {
                let rows: Vec<String> = t
                    .first_different
                    .iter()
                    .map(|d| format!("{} (columns: {})", d.key, d.columns.join(", ")))
                    .collect();
                writeln!(
                    out,
                    "    different: {}{}",
                    rows.join("; "),
                    more(t.first_different.len(), t.different)
                )?;
            }
            if !t.columns_not_in_lake.is_empty() {
                writeln!(
                    out,
                    "    source columns the lake has not seen yet: {} ({} non-NULL values)",
                    t.columns_not_in_lake.join(", "),
                    t.values_not_in_lake
                )?;
            }
            if !t.complete {
                writeln!(
                    out,
                    "    compared row by row in {} of the rounds needed only: the counts are lower bounds (raise --max-rounds or --memory-limit)",
                    t.rounds
                )?;
            }
        }
        let count = |s: Status| self.tables.iter().filter(|t| t.status == s).count();
        writeln!(
            out,
            "\n{} tables: {} match, {} differ, {} not verified",
            self.tables.len(),
            count(Status::Match),
            count(Status::Different),
            count(Status::NotVerified)
        )
    }
}
