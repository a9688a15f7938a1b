//! `philotes dlq`: the dead letters of a pipeline, and an operator's decisions about them.
//!
//! `run` keeps them in `DATA_DIR/dead-letter.jsonl`; see `philotes_pipeline::dlq` for how a
//! change is identified and what `skip` and `retry` do. With `--buffer-url` (ingest and
//! workers) they are in the control database's `philotes.dead_letters`, and a decision lets the
//! table go on at once: the workers pick it up within a pass. With `--pipeline ID` they are
//! those of a pipeline of `philotes api`, through the API (as `philotes pipeline dead-letters`).

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use philotes_core::{Error, ErrorKind};
use philotes_pipeline::{DeadLetter, DeadLetters, Decision};

use crate::RunArgs;

#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: DlqAction,
}

#[derive(Subcommand, Debug)]
enum DlqAction {
    /// The dead letters still open (with --all, also those skipped or retried).
    List {
        /// Only this table (schema.table).
        #[arg(long)]
        table: Option<String>,
        /// Also the dead letters already skipped or retried.
        #[arg(long)]
        all: bool,
        /// Output: text or json.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        #[command(flatten)]
        api: Through,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Try a change again after its mapping was fixed (a new Philotes, say): every start of
    /// `run` does; this records that you want it. A value that is wrong on the source is fixed
    /// there and mended with `philotes resync TABLE` instead (the WAL keeps the old value).
    Retry {
        /// The dead letter's id (`dlq list`).
        #[arg(required_unless_present = "table", conflicts_with = "table")]
        id: Option<u64>,
        /// Every open dead letter of this table (schema.table).
        #[arg(long)]
        table: Option<String>,
        #[command(flatten)]
        api: Through,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Leave one change out of the lake: when it fails again, its table goes on without it
    /// (logged, and counted in philotes_dead_letters_skipped_total). Explicit and permanent.
    Skip {
        /// The dead letter's id (`dlq list`).
        id: u64,
        /// Why (kept with the decision).
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        api: Through,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// With `--pipeline`, the dead letters of that pipeline through the API.
#[derive(Args, Debug)]
struct Through {
    /// A pipeline of `philotes api` (its id): its dead letters through the API
    /// (`--api-url`, `--api-key`), not a local `run`'s.
    #[arg(long)]
    pipeline: Option<i64>,
    #[command(flatten)]
    remote: crate::remote::Remote,
}

/// Where the dead letters are: `run`'s file, the control database, or the API.
enum Store {
    File(DeadLetters),
    Db(Box<philotes_buffer::ControlDb>, String),
    Api(Box<crate::remote::Api>, i64),
}

/// A dead letter as the API answers it.
fn from_api(v: &serde_json::Value) -> Result<DeadLetter, Error> {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let bad = || {
        Error::new(
            ErrorKind::Invalid,
            format!("the API answered a dead letter this CLI cannot read: {v}"),
        )
    };
    Ok(DeadLetter {
        id: v["id"].as_u64().ok_or_else(bad)?,
        table: s("table").ok_or_else(bad)?,
        lsn: s("lsn").ok_or_else(bad)?,
        position: v["position"].as_u64(),
        op: s("op").unwrap_or_default(),
        column: s("column"),
        error: s("error").unwrap_or_default(),
        row: v["row"].clone(),
        time: s("time").unwrap_or_default(),
        failures: 1,
        state: s("state").unwrap_or_default(),
        note: s("note"),
    })
}

impl Store {
    async fn list(&self) -> Result<Vec<DeadLetter>, Error> {
        match self {
            Store::File(f) => f.list(),
            Store::Db(db, pipeline) => Ok(db
                .dead_letters(Some(pipeline))
                .await?
                .into_iter()
                .map(|d| DeadLetter {
                    id: d.id.max(0) as u64,
                    table: d.table,
                    lsn: d.lsn,
                    position: d.position.map(|p| p.max(0) as u64),
                    op: d.op,
                    column: d.column,
                    error: d.error,
                    row: d.row,
                    time: d.time,
                    failures: 1,
                    state: d.state,
                    note: d.note,
                })
                .collect()),
            Store::Api(api, pipeline) => {
                let v =
                    crate::remote::all(api, &format!("pipelines/{pipeline}/dead-letters")).await?;
                v.as_array().into_iter().flatten().map(from_api).collect()
            }
        }
    }

    async fn decide(
        &mut self,
        id: u64,
        decision: Decision,
        note: Option<&str>,
    ) -> Result<DeadLetter, Error> {
        match self {
            Store::File(f) => f.decide(id, decision, note),
            Store::Db(db, _) => {
                let state = match decision {
                    Decision::Skip => "skipped",
                    Decision::Retry => "retried",
                };
                let id = i64::try_from(id)
                    .map_err(|_| Error::new(ErrorKind::Invalid, "no such dead letter"))?;
                let d = db.decide_dead_letter(id, state, note).await?;
                tracing::info!(id, table = %d.table, lsn = %d.lsn, action = state, "dead letter decided");
                let mut all = self.list().await?;
                all.retain(|x| x.id == id as u64);
                all.pop().ok_or_else(|| {
                    Error::new(ErrorKind::Internal, "a decided dead letter vanished")
                })
            }
            Store::Api(api, pipeline) => {
                let action = match decision {
                    Decision::Skip => "skip",
                    Decision::Retry => "retry",
                };
                let v = api
                    .call(
                        reqwest::Method::POST,
                        &format!("pipelines/{pipeline}/dead-letters/{id}/{action}"),
                        Some(serde_json::json!({ "note": note })),
                    )
                    .await?;
                from_api(&v)
            }
        }
    }

    fn runs(&self) -> &'static str {
        match self {
            Store::File(_) => "the next start of `philotes run`",
            Store::Db(..) | Store::Api(..) => "the worker writing the table (within a second)",
        }
    }
}

async fn store(through: Through, run: RunArgs) -> Result<Store, Error> {
    if let Some(pipeline) = through.pipeline {
        let api = crate::remote::Api::with(&through.remote, crate::remote::Output::Table)?;
        return Ok(Store::Api(Box::new(api), pipeline));
    }
    let settings = crate::settings(run)?;
    if settings.buffer_url.is_some() {
        let db = philotes_buffer::ControlDb::open(settings.buffer_url.as_ref(), "").await?;
        return Ok(Store::Db(Box::new(db), settings.slot));
    }
    if !settings.data_dir.exists() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "no data directory at {}: point --data-dir at the one `philotes run` uses",
                settings.data_dir.display()
            ),
        ));
    }
    Ok(Store::File(DeadLetters::new(&settings.data_dir)))
}

fn line(d: &DeadLetter) -> String {
    let column = d.column.as_deref().unwrap_or("-");
    let mut s = format!(
        "{}  {}  lsn {}  op {}  column {}  {}  failed {}x, last {}\n    {}\n    row: {}",
        d.id, d.table, d.lsn, d.op, column, d.state, d.failures, d.time, d.error, d.row
    );
    if let Some(n) = &d.note {
        s.push_str(&format!("\n    note: {n}"));
    }
    s
}

pub async fn dlq(args: DlqArgs) -> Result<ExitCode, Error> {
    let mut out = std::io::stdout().lock();
    let io =
        |e: std::io::Error| Error::new(ErrorKind::Disk, "cannot write the output").with_source(e);
    match args.action {
        DlqAction::List {
            table,
            all,
            format,
            api,
            run,
        } => {
            let letters: Vec<DeadLetter> = store(api, run)
                .await?
                .list()
                .await?
                .into_iter()
                .filter(|d| all || d.state == "open")
                .filter(|d| table.as_ref().is_none_or(|t| &d.table == t))
                .collect();
            if format == "json" {
                let v = serde_json::json!({ "dead_letters": letters });
                writeln!(out, "{v}").map_err(io)?;
            } else if letters.is_empty() {
                writeln!(out, "no {}dead letters", if all { "" } else { "open " }).map_err(io)?;
            } else {
                for d in &letters {
                    writeln!(out, "{}", line(d)).map_err(io)?;
                }
            }
        }
        DlqAction::Retry {
            id,
            table,
            api,
            run,
        } => {
            let mut store = store(api, run).await?;
            let ids: Vec<u64> = match (id, &table) {
                (Some(id), _) => vec![id],
                (None, Some(t)) => store
                    .list()
                    .await?
                    .into_iter()
                    .filter(|d| &d.table == t && d.state == "open")
                    .map(|d| d.id)
                    .collect(),
                (None, None) => Vec::new(),
            };
            if ids.is_empty() {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    format!(
                        "no open dead letters of {}: `philotes dlq list --all` shows them all",
                        table.unwrap_or_default()
                    ),
                ));
            }
            for id in ids {
                let d = store.decide(id, Decision::Retry, None).await?;
                let when = match store {
                    Store::File(_) => "when `philotes run` next starts (restart it if it runs now)",
                    Store::Db(..) | Store::Api(..) => {
                        "by the worker writing the table, within a second"
                    }
                };
                writeln!(
                    out,
                    "dead letter {} ({} at {}) is tried again {when}. If the value is wrong on the source, fix it there and run `philotes resync {}`: the WAL still holds the old value",
                    d.id, d.table, d.lsn, d.table
                )
                .map_err(io)?;
            }
        }
        DlqAction::Skip { id, note, api, run } => {
            let mut store = store(api, run).await?;
            let d = store.decide(id, Decision::Skip, note.as_deref()).await?;
            writeln!(
                out,
                "dead letter {} ({} at {}) will be left out of the lake: {} goes on without it",
                d.id,
                d.table,
                d.lsn,
                store.runs()
            )
            .map_err(io)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
