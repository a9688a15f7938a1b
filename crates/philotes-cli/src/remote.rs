//! `philotes source …` and `philotes pipeline …`: the control plane from a terminal, through
//! the API (never the database), so the CLI does exactly what the dashboard and scripts can,
//! under the same keys, checks and audit log.
//!
//! The API's URL and key come from `--api-url`/`--api-key`, `PHILOTES_API_URL`/
//! `PHILOTES_API_KEY`, or a file (`PHILOTES_CLI_CONFIG`, default
//! `~/.config/philotes/cli.toml`, with `api_url` and `api_key`). Answers print as tables for
//! people, or as the API's JSON with `--output json`; a refusal prints the API's problem
//! (with each field's) and exits 1.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use philotes_core::{Error, ErrorKind};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// The API's answer as it is.
    Json,
}

/// Where the API is, and the key to call it with.
#[derive(Args, Debug)]
pub(crate) struct Remote {
    /// The API's URL.
    #[arg(long, env = "PHILOTES_API_URL", global = true)]
    api_url: Option<String>,
    /// An API key (`phk_…`).
    #[arg(long, env = "PHILOTES_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct Client {
    #[command(flatten)]
    remote: Remote,
    /// `table` (for people) or `json`.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
}

#[derive(Args, Debug)]
pub(crate) struct SourceArgs {
    #[command(subcommand)]
    command: SourceCommand,
    #[command(flatten)]
    client: Client,
}

#[derive(Subcommand, Debug)]
enum SourceCommand {
    /// List the sources.
    List,
    /// Add a source. The password comes from PHILOTES_SOURCE_PASSWORD, if set.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 5432)]
        port: u16,
        #[arg(long)]
        database: String,
        #[arg(long)]
        user: String,
        /// disable, prefer, require, verify-ca or verify-full.
        #[arg(long, default_value = "prefer")]
        sslmode: String,
    },
    /// Connect and run the checks `philotes run` makes; exit 1 when one fails.
    Test { id: i64 },
    /// The source's tables, with what replication needs to know of each.
    Tables { id: i64 },
    /// Delete a source (no pipeline may use it).
    Delete { id: i64 },
}

#[derive(Args, Debug)]
pub(crate) struct PipelineArgs {
    #[command(subcommand)]
    command: PipelineCommand,
    #[command(flatten)]
    client: Client,
}

#[derive(Subcommand, Debug)]
enum PipelineCommand {
    /// List the pipelines.
    List,
    /// Define a pipeline (stopped until started).
    Create {
        #[arg(long)]
        name: String,
        /// The source's id.
        #[arg(long)]
        source: i64,
        /// Comma-separated `schema.table` list (default: every table).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        flush_interval: Option<String>,
        /// `file:///path` or `s3://bucket/path` (default: the roles' own).
        #[arg(long)]
        warehouse: Option<String>,
    },
    /// Change its definition (a running pipeline picks it up within seconds). `--tables`
    /// alters the publication on the source to exactly these tables.
    Update {
        id: i64,
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated `schema.table` list.
        #[arg(long, value_delimiter = ',')]
        tables: Option<Vec<String>>,
        /// `1s`, `500ms`; `default` for the roles' own.
        #[arg(long)]
        flush_interval: Option<String>,
        /// Rows; `default` for the roles' own.
        #[arg(long)]
        flush_rows: Option<String>,
        /// Only before the pipeline first wrote its tables.
        #[arg(long)]
        namespace: Option<String>,
        /// Only before the pipeline first wrote its tables.
        #[arg(long)]
        warehouse: Option<String>,
    },
    /// Run it.
    Start { id: i64 },
    /// Stop reading the source for a while (the workers drain the buffer).
    Pause { id: i64 },
    /// Read the source again after a pause.
    Resume { id: i64 },
    /// Stop it (its slot is kept).
    Stop { id: i64 },
    /// Each table's state and position, the buffer, the workers, the slot.
    Status { id: i64 },
    /// Copy tables again (all when none is named).
    Resync { id: i64, tables: Vec<String> },
    /// Its dead letters.
    DeadLetters { id: i64 },
    /// Its recent samples: changes per second into the buffer and the lake, depth, lag.
    History {
        id: i64,
        /// How many hours back (1 to 168).
        #[arg(long, default_value_t = 1)]
        hours: i32,
    },
    /// Leave one dead letter's change out of the lake.
    Skip {
        id: i64,
        letter: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Try one dead letter's change again.
    Retry {
        id: i64,
        letter: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Delete a stopped pipeline (its slot is dropped; its Iceberg tables stay).
    Delete { id: i64 },
}

/// Where the API is and how to authenticate, from flags, the environment or the file.
pub(crate) struct Api {
    url: String,
    key: String,
    output: Output,
    http: reqwest::Client,
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, msg)
}

impl Api {
    fn new(c: &Client) -> Result<Api, Error> {
        Api::with(&c.remote, c.output)
    }

    pub(crate) fn with(c: &Remote, output: Output) -> Result<Api, Error> {
        let path = std::env::var_os("PHILOTES_CLI_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".config/philotes/cli.toml"))
            });
        let file: toml::Table = match path.as_ref().filter(|p| p.exists()) {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| config_error(format!("cannot read {}: {e}", p.display())))?
                .parse()
                // (Not the parser's message: it quotes the line, which may hold the key.)
                .map_err(|_: toml::de::Error| {
                    config_error(format!(
                        "{} is not valid TOML: write `api_url = \"http://…\"` and `api_key = \"phk_…\"`, each value in quotes",
                        p.display()
                    ))
                })?,
            None => toml::Table::new(),
        };
        let from_file = |k: &str| file.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let url = c
            .api_url
            .clone()
            .or_else(|| from_file("api_url"))
            .unwrap_or_else(|| "http://localhost:8080".into());
        let key = c.api_key.clone().or_else(|| from_file("api_key")).ok_or_else(|| {
            config_error(
                "no API key: set --api-key or PHILOTES_API_KEY (or api_key in ~/.config/philotes/cli.toml); make the first with `philotes api-key create --buffer-url …` (straight in the control database)",
            )
        })?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot make an HTTP client: {e}"),
                )
            })?;
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            key,
            output,
            http,
        })
    }

    /// The answer's JSON; a refusal is an error carrying the API's problem.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot reach the API at {} ({e}): is `philotes api` running there? (--api-url, PHILOTES_API_URL)", self.url),
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("the API's answer broke off: {e}"),
            )
        })?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let mut msg = match (value["detail"].as_str(), &value) {
            (Some(d), _) => d.to_string(),
            // Not a problem from the API: a proxy or something else answered.
            (None, Value::String(body)) => format!(
                "the answer is not from the Philotes API (is --api-url / PHILOTES_API_URL right, or is a proxy in the way?): {}",
                body.chars().take(200).collect::<String>()
            ),
            (None, _) => "the API refused the request".to_string(),
        };
        if let Some(errors) = value["errors"].as_array() {
            for e in errors {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    e["field"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ));
            }
        }
        Err(Error::new(
            ErrorKind::Invalid,
            format!("{} ({status})", msg),
        ))
    }

    fn print(&self, value: &Value, table: impl FnOnce(&Value) -> String) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Table => print!("{}", table(value)),
        }
    }
}

/// Columns aligned under their headers.
fn render(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"]
        .as_array()
        .or_else(|| v.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Every page of a list.
pub(crate) async fn all(api: &Api, path: &str) -> Result<Value, Error> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = api
            .call(
                reqwest::Method::GET,
                &format!(
                    "{path}?limit=500{}",
                    after
                        .as_ref()
                        .map(|a| format!("&after={a}"))
                        .unwrap_or_default()
                ),
                None,
            )
            .await?;
        out.extend(items(&page));
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    Ok(Value::Array(out))
}

pub(crate) async fn source(args: SourceArgs) -> Result<ExitCode, Error> {
    let api = Api::new(&args.client)?;
    use reqwest::Method;
    match args.command {
        SourceCommand::List => {
            let v = all(&api, "sources").await?;
            api.print(&v, |v| {
                render(
                    &[
                        "ID", "NAME", "HOST", "PORT", "DATABASE", "USER", "PASSWORD", "SSLMODE",
                    ],
                    items(v)
                        .iter()
                        .map(|s| {
                            vec![
                                text(&s["id"]),
                                text(&s["name"]),
                                text(&s["host"]),
                                text(&s["port"]),
                                text(&s["database"]),
                                text(&s["user"]),
                                if s["has_password"].as_bool() == Some(true) {
                                    "set".into()
                                } else {
                                    "-".into()
                                },
                                text(&s["sslmode"]),
                            ]
                        })
                        .collect(),
                )
            });
        }
        SourceCommand::Create {
            name,
            host,
            port,
            database,
            user,
            sslmode,
        } => {
            let mut body = json!({"name": name, "host": host, "port": port, "database": database, "user": user, "sslmode": sslmode});
            if let Ok(pw) = std::env::var("PHILOTES_SOURCE_PASSWORD") {
                body["password"] = Value::String(pw);
            }
            let v = api.call(Method::POST, "sources", Some(body)).await?;
            api.print(&v, |v| {
                format!("source {} ({}) added\n", text(&v["id"]), text(&v["name"]))
            });
        }
        SourceCommand::Test { id } => {
            let v = api
                .call(Method::POST, &format!("sources/{id}/test"), None)
                .await?;
            api.print(&v, |v| {
                render(
                    &["CHECK", "OK", "PROBLEM"],
                    items(&v["checks"])
                        .iter()
                        .map(|c| {
                            vec![
                                text(&c["name"]),
                                if c["ok"].as_bool() == Some(true) {
                                    "yes".into()
                                } else {
                                    "NO".into()
                                },
                                c["message"].as_str().unwrap_or("").to_string(),
                            ]
                        })
                        .collect(),
                )
            });
            if v["ok"].as_bool() != Some(true) {
                return Ok(ExitCode::FAILURE);
            }
        }
        SourceCommand::Tables { id } => {
            let v = api
                .call(Method::GET, &format!("sources/{id}/tables"), None)
                .await?;
            api.print(&v, |v| {
                render(
                    &[
                        "TABLE",
                        "REPLICA IDENTITY",
                        "KEY",
                        "ROWS",
                        "BYTES",
                        "PROBLEM",
                    ],
                    items(v)
                        .iter()
                        .map(|t| {
                            vec![
                                format!("{}.{}", text(&t["schema"]), text(&t["name"])),
                                text(&t["replica_identity"]),
                                if t["has_primary_key"].as_bool() == Some(true) {
                                    "yes".into()
                                } else {
                                    "no".into()
                                },
                                text(&t["estimated_rows"]),
                                text(&t["total_bytes"]),
                                t["problem"].as_str().unwrap_or("").to_string(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        SourceCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("sources/{id}"), None)
                .await?;
            api.print(&json!({"deleted": id}), |_| {
                format!("source {id} deleted\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn one(v: &Value) -> String {
    render(
        &["ID", "NAME", "SOURCE", "SLOT", "STATE"],
        vec![pipeline_row(v)],
    )
}

/// Start, pause, resume or stop a pipeline.
async fn act(api: &Api, id: i64, action: &str) -> Result<(), Error> {
    let v = api
        .call(
            reqwest::Method::POST,
            &format!("pipelines/{id}/{action}"),
            None,
        )
        .await?;
    api.print(&v, one);
    Ok(())
}

/// Skip or retry a dead letter.
async fn decide(
    api: &Api,
    id: i64,
    letter: i64,
    action: &str,
    note: Option<String>,
) -> Result<(), Error> {
    let v = api
        .call(
            reqwest::Method::POST,
            &format!("pipelines/{id}/dead-letters/{letter}/{action}"),
            Some(json!({"note": note})),
        )
        .await?;
    api.print(&v, |v| {
        format!("dead letter {} is {}\n", text(&v["id"]), text(&v["state"]))
    });
    Ok(())
}

fn pipeline_row(p: &Value) -> Vec<String> {
    vec![
        text(&p["id"]),
        text(&p["name"]),
        text(&p["source_id"]),
        text(&p["slot"]),
        text(&p["state"]),
    ]
}

pub(crate) async fn pipeline(args: PipelineArgs) -> Result<ExitCode, Error> {
    let api = Api::new(&args.client)?;
    use reqwest::Method;
    match args.command {
        PipelineCommand::List => {
            let v = all(&api, "pipelines").await?;
            api.print(&v, |v| {
                render(
                    &["ID", "NAME", "SOURCE", "SLOT", "STATE"],
                    items(v).iter().map(pipeline_row).collect(),
                )
            });
        }
        PipelineCommand::Create {
            name,
            source,
            tables,
            namespace,
            flush_interval,
            warehouse,
        } => {
            let mut body = json!({"name": name, "source_id": source});
            if !tables.is_empty() {
                body["tables"] = json!(tables);
            }
            if let Some(n) = namespace {
                body["namespace"] = json!(n);
            }
            if let Some(f) = flush_interval {
                body["flush_interval"] = json!(f);
            }
            if let Some(w) = warehouse {
                body["destination"] = json!({"warehouse": w});
            }
            let v = api.call(Method::POST, "pipelines", Some(body)).await?;
            api.print(&v, one);
        }
        PipelineCommand::Update {
            id,
            name,
            tables,
            flush_interval,
            flush_rows,
            namespace,
            warehouse,
        } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(t) = tables {
                body["tables"] = json!(t);
            }
            if let Some(f) = flush_interval {
                body["flush_interval"] = if f == "default" {
                    Value::Null
                } else {
                    json!(f)
                };
            }
            if let Some(r) = flush_rows {
                body["flush_rows"] = if r == "default" {
                    Value::Null
                } else {
                    json!(r.parse::<i64>().map_err(|_| config_error(format!(
                        "--flush-rows {r}: a number of rows, or `default`"
                    )))?)
                };
            }
            if let Some(n) = namespace {
                body["namespace"] = json!(n);
            }
            if let Some(w) = warehouse {
                body["destination"] = json!({"warehouse": w});
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                return Err(config_error(
                    "nothing to change: give --name, --tables, --flush-interval, --flush-rows, --namespace or --warehouse",
                ));
            }
            let v = api
                .call(Method::PATCH, &format!("pipelines/{id}"), Some(body))
                .await?;
            api.print(&v, one);
        }
        PipelineCommand::Start { id } => act(&api, id, "start").await?,
        PipelineCommand::Pause { id } => act(&api, id, "pause").await?,
        PipelineCommand::Resume { id } => act(&api, id, "resume").await?,
        PipelineCommand::Stop { id } => act(&api, id, "stop").await?,
        PipelineCommand::Status { id } => {
            let v = api
                .call(Method::GET, &format!("pipelines/{id}/status"), None)
                .await?;
            api.print(&v, |v| {
                let slot = &v["slot"];
                let mut out = format!(
                    "state {}, buffered below {}, {} changes buffered, workers: {}\nslot: {}\n\n",
                    text(&v["state"]),
                    text(&v["buffered_lsn"]),
                    text(&v["buffer_depth"]),
                    items(&v["workers"])
                        .iter()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if slot.is_null() {
                        v["source_error"].as_str().unwrap_or("none yet").to_string()
                    } else {
                        format!(
                            "{} at {}, {} bytes of WAL kept ({})",
                            if slot["active"].as_bool() == Some(true) {
                                "active"
                            } else {
                                "inactive"
                            },
                            text(&slot["confirmed_lsn"]),
                            text(&slot["retained_bytes"]),
                            text(&slot["wal_status"])
                        )
                    }
                );
                out.push_str(&render(
                    &[
                        "TABLE",
                        "STATE",
                        "COPIED",
                        "BUFFERED",
                        "IN LAKE",
                        "CHANGES",
                        "LAG S",
                        "LAST COMMIT",
                        "REASON",
                    ],
                    items(&v["tables"])
                        .iter()
                        .map(|t| {
                            let copied = match t["source_rows_estimate"].as_i64() {
                                Some(e) if t["state"] == "copying" => {
                                    format!("{} of ~{e}", text(&t["rows_copied"]))
                                }
                                _ => text(&t["rows_copied"]),
                            };
                            vec![
                                text(&t["name"]),
                                text(&t["state"]),
                                copied,
                                text(&t["buffered_lsn"]),
                                text(&t["lake_lsn"]),
                                text(&t["buffered_changes"]),
                                t["lag_seconds"]
                                    .as_f64()
                                    .map_or("-".into(), |l| format!("{l:.1}")),
                                text(&t["last_commit_at"]),
                                t["stopped_reason"].as_str().unwrap_or("").to_string(),
                            ]
                        })
                        .collect(),
                ));
                out
            });
        }
        PipelineCommand::Resync { id, tables } => {
            let v = api
                .call(
                    Method::POST,
                    &format!("pipelines/{id}/resync"),
                    Some(json!({"tables": tables})),
                )
                .await?;
            api.print(&v, |v| {
                format!(
                    "copying again: {}\n",
                    items(&v["tables"])
                        .iter()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        PipelineCommand::DeadLetters { id } => {
            let v = all(&api, &format!("pipelines/{id}/dead-letters")).await?;
            api.print(&v, |v| {
                render(
                    &["ID", "TABLE", "LSN", "OP", "COLUMN", "STATE", "ERROR"],
                    items(v)
                        .iter()
                        .map(|d| {
                            vec![
                                text(&d["id"]),
                                text(&d["table"]),
                                text(&d["lsn"]),
                                text(&d["op"]),
                                text(&d["column"]),
                                text(&d["state"]),
                                text(&d["error"]),
                            ]
                        })
                        .collect(),
                )
            });
        }
        PipelineCommand::History { id, hours } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("pipelines/{id}/history?hours={hours}"),
                    None,
                )
                .await?;
            let rate = |x: &Value| x.as_f64().map_or("-".to_string(), |r| format!("{r:.1}"));
            api.print(&v, |v| {
                render(
                    &["AT", "BUFFERED/S", "LAKE/S", "DEPTH", "LAG S"],
                    items(v)
                        .iter()
                        .map(|h| {
                            vec![
                                text(&h["at"]),
                                rate(&h["buffered_changes_per_second"]),
                                rate(&h["lake_changes_per_second"]),
                                text(&h["buffer_depth"]),
                                rate(&h["lag_seconds"]),
                            ]
                        })
                        .collect(),
                )
            });
        }
        PipelineCommand::Skip { id, letter, note } => {
            decide(&api, id, letter, "skip", note).await?
        }
        PipelineCommand::Retry { id, letter, note } => {
            decide(&api, id, letter, "retry", note).await?
        }
        PipelineCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("pipelines/{id}"), None)
                .await?;
            api.print(&json!({"deleted": id}), |_| {
                format!("pipeline {id} deleted\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub(crate) struct ApiKeyArgs {
    #[command(subcommand)]
    command: ApiKeyCommand,
    #[command(flatten)]
    client: Client,
}

#[derive(Subcommand, Debug)]
enum ApiKeyCommand {
    /// List the keys (revoked ones too), with when each was last used.
    List,
    /// Make a key and print it (once: only its hash is kept). With --buffer-url, straight in the
    /// control database (for the first key, which needs no key); otherwise through the API.
    Create {
        /// What the key is for (`ci`, `dashboard`).
        #[arg(long)]
        name: String,
        /// read, operate or admin.
        #[arg(long, default_value = "read")]
        scope: String,
        #[command(flatten)]
        control: crate::ControlArgs,
    },
    /// Revoke a key: requests with it are refused from now on.
    Revoke {
        /// The key's id (`api-key list`; the part after `phk_`).
        id: String,
    },
}

fn scope_of(scope: &str) -> Result<philotes_api::Scope, Error> {
    philotes_api::Scope::parse(scope)
        .ok_or_else(|| config_error(format!("--scope {scope}: use read, operate or admin")))
}

pub(crate) async fn api_key(args: ApiKeyArgs) -> Result<ExitCode, Error> {
    use reqwest::Method;
    if let ApiKeyCommand::Create {
        name,
        scope,
        control,
    } = &args.command
        && let Some(url) = control.url()?
    {
        let scope = scope_of(scope)?;
        let mut db = philotes_buffer::ControlDb::open(Some(&url), "to keep the key in").await?;
        let made = philotes_api::keys::create_in(&mut db, name, scope).await?;
        eprintln!(
            "API key {} ({}, scope {}) made in the control database; it is shown this once:",
            made.key.id,
            made.key.name,
            scope.as_str()
        );
        println!("{}", made.token);
        return Ok(ExitCode::SUCCESS);
    }
    let api = Api::new(&args.client)?;
    match args.command {
        ApiKeyCommand::List => {
            let v = all(&api, "api-keys").await?;
            api.print(&v, |v| {
                render(
                    &[
                        "ID",
                        "NAME",
                        "SCOPE",
                        "CREATED",
                        "BY",
                        "LAST USED",
                        "REVOKED",
                    ],
                    items(v)
                        .iter()
                        .map(|k| {
                            vec![
                                text(&k["id"]),
                                text(&k["name"]),
                                text(&k["scope"]),
                                text(&k["created_at"]),
                                text(&k["created_by"]),
                                text(&k["last_used_at"]),
                                text(&k["revoked_at"]),
                            ]
                        })
                        .collect(),
                )
            });
        }
        ApiKeyCommand::Create { name, scope, .. } => {
            let scope = scope_of(&scope)?;
            let v = api
                .call(
                    Method::POST,
                    "api-keys",
                    Some(json!({"name": name, "scope": scope.as_str()})),
                )
                .await?;
            match api.output {
                Output::Json => api.print(&v, |_| String::new()),
                Output::Table => {
                    eprintln!(
                        "API key {} ({}, scope {}) made; it is shown this once:",
                        text(&v["key"]["id"]),
                        text(&v["key"]["name"]),
                        text(&v["key"]["scope"])
                    );
                    println!("{}", text(&v["token"]));
                }
            }
        }
        ApiKeyCommand::Revoke { id } => {
            api.call(Method::DELETE, &format!("api-keys/{id}"), None)
                .await?;
            api.print(&json!({"revoked": id}), |_| {
                format!("API key {id} revoked\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub(crate) struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    #[command(flatten)]
    client: Client,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// List the users with their roles.
    List,
    /// Make a user. The password (12 characters or more) is read from PHILOTES_USER_PASSWORD,
    /// or else from the first line of standard input; it is stored hashed with argon2id. With
    /// --buffer-url, straight in the control database (for the first admin); otherwise
    /// through the API.
    Create {
        #[arg(long)]
        username: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        control: crate::ControlArgs,
    },
    /// Change a user's role, set a new password (--password: read as for create; their
    /// sessions end), or disable or enable them.
    Update {
        username: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: Option<String>,
        /// Set a new password (from PHILOTES_USER_PASSWORD or standard input).
        #[arg(long)]
        password: bool,
        /// They can no longer log in; their sessions end.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// They can log in again.
        #[arg(long)]
        enable: bool,
    },
    /// Delete a user (the audit log keeps their name).
    Delete { username: String },
}

fn role_of(role: &str) -> Result<philotes_api::users::Role, Error> {
    philotes_api::users::Role::parse(role)
        .ok_or_else(|| config_error(format!("--role {role}: use viewer, operator or admin")))
}

/// The password from PHILOTES_USER_PASSWORD, or the first line of standard input.
fn password() -> Result<String, Error> {
    if let Ok(p) = std::env::var("PHILOTES_USER_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| config_error(format!("cannot read the password from standard input: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A user's id, from their name.
async fn user_id(api: &Api, username: &str) -> Result<i64, Error> {
    let users = all(api, "users").await?;
    items(&users)
        .iter()
        .find(|u| u["username"].as_str() == Some(username))
        .and_then(|u| u["id"].as_i64())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("there is no user {username} (`philotes user list`)"),
            )
        })
}

fn user_row(u: &Value) -> Vec<String> {
    vec![
        text(&u["id"]),
        text(&u["username"]),
        text(&u["role"]),
        text(&u["last_login_at"]),
        if u["disabled_at"].is_null() {
            "-".into()
        } else {
            format!("disabled {}", text(&u["disabled_at"]))
        },
    ]
}

const USER_HEADERS: [&str; 5] = ["ID", "USERNAME", "ROLE", "LAST LOGIN", "DISABLED"];

pub(crate) async fn user(args: UserArgs) -> Result<ExitCode, Error> {
    use reqwest::Method;
    if let UserCommand::Create {
        username,
        role,
        control,
    } = &args.command
        && let Some(url) = control.url()?
    {
        let role = role_of(role)?;
        let password = password()?;
        let mut db = philotes_buffer::ControlDb::open(Some(&url), "to keep the user in").await?;
        philotes_api::users::create_in(&mut db, username, role, &password).await?;
        eprintln!(
            "user {username} ({}) made in the control database",
            role.as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let api = Api::new(&args.client)?;
    match args.command {
        UserCommand::List => {
            let v = all(&api, "users").await?;
            api.print(&v, |v| {
                render(&USER_HEADERS, items(v).iter().map(user_row).collect())
            });
        }
        UserCommand::Create { username, role, .. } => {
            let role = role_of(&role)?;
            let body =
                json!({"username": username, "role": role.as_str(), "password": password()?});
            let v = api.call(Method::POST, "users", Some(body)).await?;
            api.print(&v, |v| render(&USER_HEADERS, vec![user_row(v)]));
        }
        UserCommand::Update {
            username,
            role,
            password: new_password,
            disable,
            enable,
        } => {
            let mut body = json!({});
            if let Some(r) = role {
                body["role"] = json!(role_of(&r)?.as_str());
            }
            if new_password {
                body["password"] = json!(password()?);
            }
            if disable || enable {
                body["disabled"] = json!(disable);
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                return Err(config_error(
                    "nothing to change: give --role, --password, --disable or --enable",
                ));
            }
            let id = user_id(&api, &username).await?;
            let v = api
                .call(Method::PATCH, &format!("users/{id}"), Some(body))
                .await?;
            api.print(&v, |v| render(&USER_HEADERS, vec![user_row(v)]));
        }
        UserCommand::Delete { username } => {
            let id = user_id(&api, &username).await?;
            api.call(Method::DELETE, &format!("users/{id}"), None)
                .await?;
            api.print(&json!({"deleted": username}), |_| {
                format!("user {username} deleted\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
