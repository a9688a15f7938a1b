//! Pipelines: a source's publication into a lake. The API only records what the operator
//! wants (the definition and `running`, `paused` or `stopped`); `philotes ingest` and
//! `philotes worker` started without `--source` run what is defined and follow every change
//! within seconds. Status is read from what those roles record (the tables' positions, the
//! buffer) and from the source's slot.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use philotes_buffer::specs::{Desired, Destination, DestinationSecrets, PIPELINE_SECRETS};
use philotes_core::Lsn;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Actor;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::json::{Body, ListParams, Problems, Validate};
use crate::store::{audit, db};

/// What the operator asked of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    /// Ingest streams the slot, workers write the lake.
    Running,
    /// Ingest holds the slot without reading it (the source keeps the WAL); workers drain the
    /// buffer.
    Paused,
    /// No role runs the pipeline; the slot is kept, so a start resumes where it stopped.
    Stopped,
}

impl From<Desired> for PipelineState {
    fn from(d: Desired) -> PipelineState {
        match d {
            Desired::Running => PipelineState::Running,
            Desired::Paused => PipelineState::Paused,
            Desired::Stopped => PipelineState::Stopped,
        }
    }
}

/// Where the tables go. Absent settings are the roles' own (`--warehouse`, `--catalog-uri`…).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationIn {
    /// `file:///path` or `s3://bucket/path`.
    #[schema(
        max_length = 1024,
        pattern = "^(file:///|s3://)[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub warehouse: Option<String>,
    /// An Iceberg REST catalog (Lakekeeper); absent: the embedded SQL catalog.
    #[schema(max_length = 1024, pattern = "^https?://[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub catalog_uri: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub catalog_warehouse: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub catalog_prefix: Option<String>,
    #[schema(max_length = 1024, pattern = "^https?://[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub s3_endpoint: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub s3_region: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub s3_access_key_id: Option<String>,
    pub s3_path_style: Option<bool>,
    /// Write-only: sealed, never returned.
    #[schema(
        write_only,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub s3_secret_access_key: Option<String>,
    /// Write-only: sealed, never returned.
    #[schema(
        write_only,
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub catalog_token: Option<String>,
    /// Write-only (`client_id:client_secret`): sealed, never returned.
    #[schema(
        write_only,
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub catalog_credential: Option<String>,
}

/// Where the tables go, as shown (secrets only as whether they are set).
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationOut {
    pub warehouse: Option<String>,
    pub catalog_uri: Option<String>,
    pub catalog_warehouse: Option<String>,
    pub catalog_prefix: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_path_style: Option<bool>,
    pub has_s3_secret_access_key: bool,
    pub has_catalog_token: bool,
    pub has_catalog_credential: bool,
}

/// A pipeline as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
    pub source_id: i64,
    /// The replication slot on the source (also the pipeline's key for the roles).
    pub slot: String,
    pub publication: String,
    /// `schema.table` of a publication Philotes creates; empty: all tables.
    pub tables: Vec<String>,
    /// Every table into this Iceberg namespace as `<schema>__<table>__changelog`.
    pub namespace: Option<String>,
    pub destination: DestinationOut,
    /// How often the workers commit to Iceberg (`1s`, `500ms`); absent: the roles' setting.
    pub flush_interval: Option<String>,
    pub flush_rows: Option<i64>,
    pub state: PipelineState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelinePage {
    pub items: Vec<Pipeline>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

/// A source table, `schema.table`.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct TableRef(pub String);

impl utoipa::PartialSchema for TableRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A source table, `schema.table`"))
            .max_length(Some(200))
            .pattern(Some(
                "^[^.\\x00-\\x1f\\x7f-\\x9f]+\\.[^\\x00-\\x1f\\x7f-\\x9f]+$",
            ))
            .into()
    }
}

impl ToSchema for TableRef {}

/// A new pipeline (created `stopped`: start it when the definition is right).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineCreate {
    /// Unique; 1 to 63 of a-z, 0-9, - and _.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9][a-z0-9_-]*$")]
    pub name: String,
    #[serde(deserialize_with = "crate::json::integral")]
    pub source_id: i64,
    /// Default: `philotes_<name>` (created if missing).
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z_][a-z0-9_]*$")]
    pub publication: Option<String>,
    /// `schema.table` for the publication Philotes creates; absent or empty: all tables.
    #[schema(max_items = 1000)]
    pub tables: Option<Vec<TableRef>>,
    /// Default: `philotes_<name>`; unique among pipelines.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z_][a-z0-9_]*$")]
    pub slot: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "crate::json::object")]
    pub destination: DestinationIn,
    /// A positive duration: `500ms`, `1s`, `5m`.
    #[schema(pattern = "^[1-9][0-9]{0,8}(ms|s|m|h)$")]
    pub flush_interval: Option<String>,
    #[serde(default, deserialize_with = "crate::json::integral_opt")]
    #[schema(minimum = 1, maximum = 1000000000)]
    pub flush_rows: Option<i64>,
}

fn identifier(p: &mut Problems, field: &str, v: &str) {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    p.check(
        ok,
        field,
        "1 to 63 of a-z, 0-9 and _, not starting with a digit",
    );
}

fn optional_text(p: &mut Problems, field: &str, v: &Option<String>, max: usize) {
    if let Some(v) = v {
        p.text(field, v, max);
    }
}

fn check_tables(p: &mut Problems, tables: &[TableRef]) {
    p.check(tables.len() <= 1000, "tables", "at most 1000 tables");
    for (i, TableRef(t)) in tables.iter().enumerate() {
        let ok = t.split_once('.').is_some_and(|(s, n)| {
            !s.is_empty()
                && !n.is_empty()
                && t.chars().count() <= 200
                && !t.chars().any(char::is_control)
        });
        p.check(ok, &format!("tables[{i}]"), "`schema.table`");
    }
}

fn check_flush(p: &mut Problems, interval: Option<&str>, rows: Option<i64>) {
    if let Some(f) = interval {
        let digits = f.trim_end_matches(['m', 's', 'h']);
        let unit = &f[digits.len()..];
        let ok = matches!(unit, "ms" | "s" | "m" | "h")
            && (1..=9).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
            && philotes_config::parse_duration(f).is_ok_and(|d| !d.is_zero());
        p.check(
            ok,
            "flush_interval",
            "a positive duration, like `1s` or `500ms`",
        );
    }
    if let Some(r) = rows {
        p.check(
            (1..=1_000_000_000).contains(&r),
            "flush_rows",
            "1 to 1000000000",
        );
    }
}

/// The destination's settings, each named `destination.<field>`; secrets as they would be
/// stored.
fn check_destination(p: &mut Problems, d: &Destination, secrets: &DestinationSecrets) {
    if let Some(w) = &d.warehouse {
        p.check(
            (w.len() > 8 && w.starts_with("file:///") || w.len() > 5 && w.starts_with("s3://"))
                && w.chars().count() <= 1024
                && !w.chars().any(char::is_control),
            "destination.warehouse",
            "`file:///path` or `s3://bucket/path`",
        );
    }
    for (field, v) in [
        ("destination.catalog_uri", &d.catalog_uri),
        ("destination.s3_endpoint", &d.s3_endpoint),
    ] {
        if let Some(u) = v {
            p.check(
                (u.len() > 7 && u.starts_with("http://")
                    || u.len() > 8 && u.starts_with("https://"))
                    && u.chars().count() <= 1024
                    && !u.chars().any(char::is_control),
                field,
                "an http:// or https:// URL",
            );
        }
    }
    for (field, v, max) in [
        ("destination.catalog_warehouse", &d.catalog_warehouse, 255),
        ("destination.catalog_prefix", &d.catalog_prefix, 255),
        ("destination.s3_region", &d.s3_region, 64),
        ("destination.s3_access_key_id", &d.s3_access_key_id, 255),
        (
            "destination.s3_secret_access_key",
            &secrets.s3_secret_access_key,
            1024,
        ),
        ("destination.catalog_token", &secrets.catalog_token, 4096),
        (
            "destination.catalog_credential",
            &secrets.catalog_credential,
            1024,
        ),
    ] {
        optional_text(p, field, v, max);
    }
}

impl DestinationIn {
    fn split(self) -> (Destination, DestinationSecrets) {
        (
            Destination {
                warehouse: self.warehouse,
                catalog_uri: self.catalog_uri,
                catalog_warehouse: self.catalog_warehouse,
                catalog_prefix: self.catalog_prefix,
                s3_endpoint: self.s3_endpoint,
                s3_region: self.s3_region,
                s3_access_key_id: self.s3_access_key_id,
                s3_path_style: self.s3_path_style,
            },
            DestinationSecrets {
                s3_secret_access_key: self.s3_secret_access_key,
                catalog_token: self.catalog_token,
                catalog_credential: self.catalog_credential,
            },
        )
    }
}

impl Validate for PipelineCreate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.name("name", &self.name);
        if let Some(v) = &self.publication {
            identifier(&mut p, "publication", v);
        }
        if let Some(v) = &self.slot {
            identifier(&mut p, "slot", v);
        }
        if let Some(tables) = &self.tables {
            check_tables(&mut p, tables);
        }
        optional_text(&mut p, "namespace", &self.namespace, 255);
        check_flush(&mut p, self.flush_interval.as_deref(), self.flush_rows);
        let d = &self.destination;
        check_destination(
            &mut p,
            &Destination {
                warehouse: d.warehouse.clone(),
                catalog_uri: d.catalog_uri.clone(),
                catalog_warehouse: d.catalog_warehouse.clone(),
                catalog_prefix: d.catalog_prefix.clone(),
                s3_endpoint: d.s3_endpoint.clone(),
                s3_region: d.s3_region.clone(),
                s3_access_key_id: d.s3_access_key_id.clone(),
                s3_path_style: d.s3_path_style,
            },
            &DestinationSecrets {
                s3_secret_access_key: d.s3_secret_access_key.clone(),
                catalog_token: d.catalog_token.clone(),
                catalog_credential: d.catalog_credential.clone(),
            },
        );
        p.0
    }
}

const COLUMNS: &str = "id, name, source_id, slot, publication, tables, namespace, destination, \
     secrets_enc IS NOT NULL, flush_interval, flush_rows, desired, created_at, updated_at, \
     coalesce(secret_names, '{}')";

fn pipeline_of(r: &tokio_postgres::Row) -> Pipeline {
    let d: Destination =
        serde_json::from_value(r.get::<_, serde_json::Value>(7)).unwrap_or_default();
    let secret_names: Vec<String> = r.get(14);
    let has = |n: &str| secret_names.iter().any(|s| s == n);
    Pipeline {
        id: r.get(0),
        name: r.get(1),
        source_id: r.get(2),
        slot: r.get(3),
        publication: r.get(4),
        tables: r.get(5),
        namespace: r.get(6),
        destination: DestinationOut {
            warehouse: d.warehouse,
            catalog_uri: d.catalog_uri,
            catalog_warehouse: d.catalog_warehouse,
            catalog_prefix: d.catalog_prefix,
            s3_endpoint: d.s3_endpoint,
            s3_region: d.s3_region,
            s3_access_key_id: d.s3_access_key_id,
            s3_path_style: d.s3_path_style,
            has_s3_secret_access_key: has("s3_secret_access_key"),
            has_catalog_token: has("catalog_token"),
            has_catalog_credential: has("catalog_credential"),
        },
        flush_interval: r.get(9),
        flush_rows: r.get(10),
        state: Desired::parse(r.get::<_, &str>(11)).into(),
        created_at: r.get(12),
        updated_at: r.get(13),
    }
}

fn pipeline_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::not_found(format!("pipeline {raw}")))
}

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines",
    params(ListParams),
    responses((status = 200, body = PipelinePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// List pipelines by id.
pub async fn list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<PipelinePage>> {
    let p = ListParams::from_uri(&uri)?;
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            &format!(
                "SELECT {COLUMNS} FROM philotes.pipeline_specs WHERE id > $1 ORDER BY id LIMIT $2"
            ),
            &[&p.after_id(), &(p.limit() + 1)],
        )
        .await
        .map_err(db)?;
    let (items, next) = p.page(rows.iter().map(pipeline_of).collect(), |x| {
        crate::json::cursor(x.id)
    });
    Ok(Json(PipelinePage { items, next }))
}

/// `philotes_<name>` (with `_` for `-`), the default slot and publication; a name too long
/// for PostgreSQL's 63 bytes is cut and given a hash of the whole, so two long names that
/// start alike still differ.
fn default_name(name: &str) -> String {
    let full = format!("philotes_{}", name.replace('-', "_"));
    if full.len() <= 63 {
        return full;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(name.as_bytes());
    let tag: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    // (Names are ASCII, so byte 54 is a character boundary.)
    format!("{}_{tag}", &full[..54])
}

/// The destination's secrets sealed together (none: `None`), and the names of those set.
fn seal(
    s: &AppState,
    secrets: &DestinationSecrets,
) -> ApiResult<(Option<Vec<u8>>, Vec<&'static str>)> {
    let mut names: Vec<&'static str> = Vec::new();
    for (n, v) in [
        ("s3_secret_access_key", &secrets.s3_secret_access_key),
        ("catalog_token", &secrets.catalog_token),
        ("catalog_credential", &secrets.catalog_credential),
    ] {
        if v.is_some() {
            names.push(n);
        }
    }
    if names.is_empty() {
        return Ok((None, names));
    }
    let text = serde_json::to_string(secrets).map_err(|e| ApiError::internal(&e))?;
    Ok((
        Some(s.cipher().seal(PIPELINE_SECRETS, text.as_bytes())?),
        names,
    ))
}

#[utoipa::path(post, path = "/api/v1/pipelines", tag = "pipelines",
    request_body = PipelineCreate,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "The same key with the same body again answers as the first time, without a second pipeline")),
    responses((status = 201, body = Pipeline, headers(("Location" = String, description = "The new pipeline's path"))), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Define a pipeline (stopped until started).
pub async fn create(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    headers: axum::http::HeaderMap,
    body: Body<PipelineCreate>,
) -> ApiResult<axum::response::Response> {
    let key = crate::idempotent::key(&headers)?;
    let hash = crate::idempotent::fingerprint("pipelines", &body.raw);
    if let Some(key) = &key {
        let mut conn = s.store().get().await?;
        if let Some(replay) =
            crate::idempotent::replayed(conn.client()?, &actor, key, &hash, "/api/v1/pipelines")
                .await?
        {
            return Ok(replay);
        }
    }
    let b = body.value;
    let default_name = default_name(&b.name);
    let slot = b.slot.clone().unwrap_or_else(|| default_name.clone());
    let publication = b.publication.clone().unwrap_or(default_name);
    let (destination, secrets) = b.destination.split();
    let (sealed, secret_names) = seal(&s, &secrets)?;
    let destination = serde_json::to_value(&destination).map_err(|e| ApiError::internal(&e))?;
    let tables: Vec<String> = b
        .tables
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.0)
        .collect();
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let source = tx
        .query_opt(
            "SELECT 1 FROM philotes.sources WHERE id = $1 FOR SHARE",
            &[&b.source_id],
        )
        .await
        .map_err(db)?;
    if source.is_none() {
        return Err(ApiError::not_found(format!(
            "source {} (`source_id`)",
            b.source_id
        )));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO philotes.pipeline_specs (name, source_id, slot, publication, tables, namespace,
                    destination, secrets_enc, secret_names, flush_interval, flush_rows)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
            ),
            &[
                &b.name,
                &b.source_id,
                &slot,
                &publication,
                &tables,
                &b.namespace,
                &destination,
                &sealed,
                &secret_names,
                &b.flush_interval,
                &b.flush_rows,
            ],
        )
        .await
        .map_err(|e| match db(e) {
            e if e.status() == StatusCode::CONFLICT => ApiError::conflict(format!(
                "a pipeline named {} or with slot {slot} exists already",
                b.name
            )),
            e => e,
        })?;
    let p = pipeline_of(&row);
    audit(
        &tx,
        &actor,
        "pipeline.create",
        &format!("pipelines/{}", p.id),
        serde_json::json!({"name": p.name, "source_id": p.source_id, "slot": p.slot}),
    )
    .await?;
    let answer = serde_json::to_value(&p).map_err(|e| ApiError::internal(&e))?;
    if let Some(key) = &key {
        crate::idempotent::remember(&tx, &actor, key, &hash, &answer).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(crate::idempotent::created("/api/v1/pipelines", answer))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id")),
    responses((status = 200, body = Pipeline), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// One pipeline's definition and state.
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Pipeline>> {
    let id = pipeline_id(&id)?;
    let mut conn = s.store().get().await?;
    let row = conn
        .client()?
        .query_opt(
            &format!("SELECT {COLUMNS} FROM philotes.pipeline_specs WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db)?;
    row.map(|r| Json(pipeline_of(&r)))
        .ok_or_else(|| ApiError::not_found(format!("pipeline {id}")))
}

/// Changes to a destination; absent fields stay as they are, `null` clears one (the roles'
/// own setting applies again). Where the tables are (`warehouse`, `catalog_*`) changes only
/// before the pipeline first wrote them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationPatch {
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = "^(file:///|s3://)[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub warehouse: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = "^https?://[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub catalog_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub catalog_warehouse: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub catalog_prefix: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, max_length = 1024, pattern = "^https?://[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub s3_endpoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub s3_region: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub s3_access_key_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<bool>)]
    pub s3_path_style: Option<Option<bool>>,
    /// Write-only: sealed, never returned.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub s3_secret_access_key: Option<Option<String>>,
    /// Write-only: sealed, never returned.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 4096, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub catalog_token: Option<Option<String>>,
    /// Write-only (`client_id:client_secret`): sealed, never returned.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub catalog_credential: Option<Option<String>>,
}

/// Changes to a pipeline's definition; absent fields stay as they are, `null` clears a
/// setting. A running pipeline is restarted with the new definition within seconds (at a
/// transaction boundary; nothing is lost or repeated).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineUpdate {
    /// 1 to 63 of a-z, 0-9, - and _ (the slot keeps its name).
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9][a-z0-9_-]*$")]
    pub name: Option<String>,
    /// The tables to replicate, `schema.table`: the publication on the source is altered to
    /// publish exactly these (a table that joins is copied; one that leaves keeps its lake
    /// table as of the moment it left). Not for a `FOR ALL TABLES` publication.
    #[schema(max_items = 1000)]
    pub tables: Option<Vec<TableRef>>,
    /// Only before the pipeline first wrote its tables.
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub namespace: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::object_opt")]
    pub destination: Option<DestinationPatch>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, pattern = "^[1-9][0-9]{0,8}(ms|s|m|h)$")]
    pub flush_interval: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::json::integral_present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000)]
    pub flush_rows: Option<Option<i64>>,
}

impl Validate for PipelineUpdate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        if let Some(n) = &self.name {
            p.name("name", n);
        }
        if let Some(tables) = &self.tables {
            check_tables(&mut p, tables);
        }
        if let Some(n) = &self.namespace {
            optional_text(&mut p, "namespace", n, 255);
        }
        check_flush(
            &mut p,
            self.flush_interval.clone().flatten().as_deref(),
            self.flush_rows.flatten(),
        );
        // The destination is checked once merged with what is stored.
        p.0
    }
}

/// `patch` over `current`: `Some(None)` clears, `Some(Some(v))` sets, `None` keeps.
fn merge<T: Clone>(current: &mut Option<T>, patch: &Option<Option<T>>) {
    if let Some(v) = patch {
        *current = v.clone();
    }
}

#[utoipa::path(patch, path = "/api/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id")),
    request_body = PipelineUpdate,
    responses((status = 200, body = Pipeline), (status = 409, description = "A change the pipeline cannot take (where its tables are, once written; the tables of a FOR ALL TABLES publication), or the source refused the publication change", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Change a pipeline's definition: name, tables, flush settings, destination credentials.
/// A running pipeline picks the change up within seconds.
pub async fn update(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    body: Body<PipelineUpdate>,
) -> ApiResult<Json<Pipeline>> {
    let id = pipeline_id(&id)?;
    let b = body.value;
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS}, secrets_enc FROM philotes.pipeline_specs WHERE id = $1 FOR UPDATE"
            ),
            &[&id],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("pipeline {id}")));
    };
    let current = pipeline_of(&row);
    let stored: Destination =
        serde_json::from_value(row.get::<_, serde_json::Value>(7)).unwrap_or_default();
    let stored_secrets: DestinationSecrets = match row.get::<_, Option<Vec<u8>>>(15) {
        Some(sealed) => {
            let text = s.cipher().open(PIPELINE_SECRETS, &sealed)?;
            serde_json::from_str(text.expose()).map_err(|e| ApiError::internal(&e))?
        }
        None => DestinationSecrets::default(),
    };
    let (mut d, mut secrets) = (stored.clone(), stored_secrets.clone());
    let mut changed: Vec<String> = Vec::new();
    if let Some(p) = &b.destination {
        merge(&mut d.warehouse, &p.warehouse);
        merge(&mut d.catalog_uri, &p.catalog_uri);
        merge(&mut d.catalog_warehouse, &p.catalog_warehouse);
        merge(&mut d.catalog_prefix, &p.catalog_prefix);
        merge(&mut d.s3_endpoint, &p.s3_endpoint);
        merge(&mut d.s3_region, &p.s3_region);
        merge(&mut d.s3_access_key_id, &p.s3_access_key_id);
        merge(&mut d.s3_path_style, &p.s3_path_style);
        merge(&mut secrets.s3_secret_access_key, &p.s3_secret_access_key);
        merge(&mut secrets.catalog_token, &p.catalog_token);
        merge(&mut secrets.catalog_credential, &p.catalog_credential);
        for (field, set) in [
            ("warehouse", p.warehouse.is_some()),
            ("catalog_uri", p.catalog_uri.is_some()),
            ("catalog_warehouse", p.catalog_warehouse.is_some()),
            ("catalog_prefix", p.catalog_prefix.is_some()),
            ("s3_endpoint", p.s3_endpoint.is_some()),
            ("s3_region", p.s3_region.is_some()),
            ("s3_access_key_id", p.s3_access_key_id.is_some()),
            ("s3_path_style", p.s3_path_style.is_some()),
            ("s3_secret_access_key", p.s3_secret_access_key.is_some()),
            ("catalog_token", p.catalog_token.is_some()),
            ("catalog_credential", p.catalog_credential.is_some()),
        ] {
            if set {
                changed.push(format!("destination.{field}"));
            }
        }
    }
    let mut problems = Problems::default();
    check_destination(&mut problems, &d, &secrets);
    if !problems.0.is_empty() {
        return Err(ApiError::invalid(problems.0));
    }
    let mut namespace = current.namespace.clone();
    merge(&mut namespace, &b.namespace);
    // Where the tables are: their watermarks are in them, so a pipeline that wrote its tables
    // cannot be pointed at another lake (it would copy everything again there, or worse, skip
    // what the new lake never had).
    let moved: Vec<&str> = [
        ("namespace", namespace != current.namespace),
        ("destination.warehouse", d.warehouse != stored.warehouse),
        (
            "destination.catalog_uri",
            d.catalog_uri != stored.catalog_uri,
        ),
        (
            "destination.catalog_warehouse",
            d.catalog_warehouse != stored.catalog_warehouse,
        ),
        (
            "destination.catalog_prefix",
            d.catalog_prefix != stored.catalog_prefix,
        ),
    ]
    .into_iter()
    .filter_map(|(f, c)| c.then_some(f))
    .collect();
    if !moved.is_empty() {
        let wrote: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM philotes.tables WHERE pipeline = $1)",
                &[&current.slot],
            )
            .await
            .map_err(db)?
            .get(0);
        if wrote {
            return Err(ApiError::conflict(format!(
                "{} cannot change: the pipeline has written its tables there, and their positions are kept with them. For another lake, define a new pipeline (its own slot) and delete this one",
                moved.join(", ")
            )));
        }
    }
    let tables: Vec<String> = match &b.tables {
        Some(t) => t.iter().map(|t| t.0.clone()).collect(),
        None => current.tables.clone(),
    };
    let tables_changed = tables != current.tables;
    if tables_changed {
        changed.push("tables".into());
    }
    let name = b.name.clone().unwrap_or_else(|| current.name.clone());
    let mut flush_interval = current.flush_interval.clone();
    merge(&mut flush_interval, &b.flush_interval);
    let mut flush_rows = current.flush_rows;
    merge(&mut flush_rows, &b.flush_rows);
    for (field, set) in [
        ("name", b.name.is_some()),
        ("namespace", b.namespace.is_some()),
        ("flush_interval", b.flush_interval.is_some()),
        ("flush_rows", b.flush_rows.is_some()),
    ] {
        if set {
            changed.push(field.into());
        }
    }
    // A change to nothing (every field as it is) is no change: the running pipeline is not
    // restarted for it, and the audit log does not record it.
    if name == current.name
        && tables == current.tables
        && namespace == current.namespace
        && d == stored
        && secrets == stored_secrets
        && flush_interval == current.flush_interval
        && flush_rows == current.flush_rows
    {
        return Ok(Json(current));
    }
    let (sealed, secret_names) = seal(&s, &secrets)?;
    let destination = serde_json::to_value(&d).map_err(|e| ApiError::internal(&e))?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE philotes.pipeline_specs SET name = $2, tables = $3, namespace = $4, destination = $5,
                    secrets_enc = $6, secret_names = $7, flush_interval = $8, flush_rows = $9, updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &name,
                &tables,
                &namespace,
                &destination,
                &sealed,
                &secret_names,
                &flush_interval,
                &flush_rows,
            ],
        )
        .await
        .map_err(|e| match db(e) {
            e if e.status() == StatusCode::CONFLICT => {
                ApiError::conflict(format!("a pipeline named {name} exists already"))
            }
            e => e,
        })?;
    audit(
        &tx,
        &actor,
        "pipeline.update",
        &format!("pipelines/{id}"),
        serde_json::json!({ "changed": changed }),
    )
    .await?;
    // The source last: when it refuses, the transaction (the definition) is not committed.
    if tables_changed {
        use philotes_source_postgres::preflight::{PublicationChange, set_publication_tables};
        let client = crate::sources::connect(&s, current.source_id)
            .await?
            .map_err(|m| {
                ApiError::unreachable(format!(
                    "cannot reach the source to change publication {}'s tables ({m}); fix the source (POST /api/v1/sources/{}/test) and try again",
                    current.publication, current.source_id
                ))
            })?;
        let publication = &current.publication;
        match set_publication_tables(&client, publication, &tables).await {
            Ok(PublicationChange::Missing | PublicationChange::Set) => {}
            Ok(PublicationChange::AllTables) => {
                return Err(ApiError::conflict(format!(
                    "publication {publication} is FOR ALL TABLES: it publishes every table and cannot take a list. To replicate only some tables, define a pipeline with `tables` (it makes its own publication)"
                )));
            }
            Ok(PublicationChange::NotAllTables) => {
                return Err(ApiError::conflict(format!(
                    "publication {publication} publishes a list of tables; only a superuser can make it FOR ALL TABLES (DROP PUBLICATION {publication}; CREATE PUBLICATION {publication} FOR ALL TABLES WITH (publish_via_partition_root = true)). Or name the tables"
                )));
            }
            Err(e) if e.kind() == philotes_core::ErrorKind::Invalid => {
                return Err(ApiError::invalid(vec![FieldError {
                    field: "tables".into(),
                    message: e.to_string(),
                }]));
            }
            Err(e) => return Err(ApiError::conflict(e.to_string())),
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(Json(pipeline_of(&row)))
}

/// Move a pipeline to `to` from one of `from`.
async fn transition(
    s: &AppState,
    actor: &Actor,
    raw_id: &str,
    to: Desired,
    from: &[Desired],
    action: &str,
) -> ApiResult<Json<Pipeline>> {
    let id = pipeline_id(raw_id)?;
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            "SELECT desired FROM philotes.pipeline_specs WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("pipeline {id}")));
    };
    let now = Desired::parse(row.get::<_, &str>(0));
    if now != to && !from.contains(&now) {
        return Err(ApiError::conflict(format!(
            "the pipeline is {}; {action} applies to a pipeline that is {}",
            now.as_str(),
            from.iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE philotes.pipeline_specs SET desired = $2 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &to.as_str()],
        )
        .await
        .map_err(db)?;
    if now != to {
        audit(
            &tx,
            actor,
            &format!("pipeline.{action}"),
            &format!("pipelines/{id}"),
            serde_json::json!({"from": now.as_str(), "to": to.as_str()}),
        )
        .await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Json(pipeline_of(&row)))
}

macro_rules! action {
    ($fn:ident, $path:literal, $to:expr, [$($from:expr),*], $name:literal, $doc:literal) => {
        #[utoipa::path(post, path = $path, tag = "pipelines",
            params(("id" = i64, Path, description = "The pipeline's id")),
            responses((status = 200, body = Pipeline), (status = 409, description = "Not in a state this applies to", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
        #[doc = $doc]
        pub async fn $fn(
            State(s): State<AppState>,
            axum::Extension(actor): axum::Extension<Actor>,
            Path(id): Path<String>,
        ) -> ApiResult<Json<Pipeline>> {
            transition(&s, &actor, &id, $to, &[$($from),*], $name).await
        }
    };
}

action!(
    start,
    "/api/v1/pipelines/{id}/start",
    Desired::Running,
    [Desired::Stopped, Desired::Paused],
    "start",
    "Run the pipeline: ingest and the workers pick it up within seconds."
);
action!(
    stop,
    "/api/v1/pipelines/{id}/stop",
    Desired::Stopped,
    [Desired::Running, Desired::Paused],
    "stop",
    "Stop the pipeline (at a transaction boundary); its slot is kept, so a start resumes where it stopped."
);
action!(
    pause,
    "/api/v1/pipelines/{id}/pause",
    Desired::Paused,
    [Desired::Running],
    "pause",
    "Pause reading the source (the source keeps the WAL meanwhile); the workers drain what is buffered."
);
action!(
    resume,
    "/api/v1/pipelines/{id}/resume",
    Desired::Running,
    [Desired::Paused],
    "resume",
    "Read the source again after a pause."
);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete even when the source cannot be reached to drop the slot (drop it yourself).
    pub force: Option<bool>,
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), DeleteParams),
    responses((status = 204, description = "Deleted: its slot dropped, its buffer emptied; the lake tables stay"), (status = 409, description = "Not stopped, still stopping, or the source cannot be reached", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Delete a stopped pipeline: its slot on the source is dropped (so the source frees the WAL it
/// kept) and its buffered changes go; its Iceberg tables stay.
pub async fn delete(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<StatusCode> {
    let id = pipeline_id(&id)?;
    let force = axum::extract::Query::<DeleteParams>::try_from_uri(&uri)
        .map_err(|e| {
            ApiError::invalid(vec![FieldError {
                field: "query".into(),
                message: e.body_text(),
            }])
        })?
        .0
        .force
        .unwrap_or(false);
    let (slot, source_id, desired) = {
        let mut conn = s.store().get().await?;
        let row = conn
            .client()?
            .query_opt(
                "SELECT slot, source_id, desired FROM philotes.pipeline_specs WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Err(ApiError::not_found(format!("pipeline {id}")));
        };
        (
            row.get::<_, String>(0),
            row.get::<_, i64>(1),
            Desired::parse(row.get::<_, &str>(2)),
        )
    };
    if desired != Desired::Stopped {
        return Err(ApiError::conflict(format!(
            "the pipeline is {}: stop it first (POST /api/v1/pipelines/{id}/stop)",
            desired.as_str()
        )));
    }
    let mut slot_dropped = false;
    match crate::sources::connect(&s, source_id).await? {
        Ok(client) => {
            let row = client
                .query_opt(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(|e| {
                    ApiError::unreachable(format!("cannot look at the slot {slot}: {e}"))
                })?;
            match row {
                Some(r) if r.get::<_, bool>(0) => {
                    return Err(ApiError::conflict(format!(
                        "the pipeline is still stopping (its slot {slot} is in use); try again in a few seconds"
                    )));
                }
                Some(_) => {
                    client
                        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                        .await
                        .map_err(|e| {
                            ApiError::conflict(format!("cannot drop the slot {slot}: {e}"))
                        })?;
                    slot_dropped = true;
                }
                None => {}
            }
        }
        Err(message) if !force => {
            return Err(ApiError::unreachable(format!(
                "cannot reach the source to drop the slot {slot} ({message}); fix the source, or delete with ?force=true and drop the slot yourself (SELECT pg_drop_replication_slot('{slot}'))"
            )));
        }
        Err(_) => {}
    }
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    for statement in [
        "DELETE FROM philotes.changes WHERE table_id IN (SELECT id FROM philotes.tables WHERE pipeline = $1)",
        "DELETE FROM philotes.relations WHERE table_id IN (SELECT id FROM philotes.tables WHERE pipeline = $1)",
        "DELETE FROM philotes.dead_letters WHERE pipeline = $1",
        "DELETE FROM philotes.pipelines WHERE name = $1",
    ] {
        tx.execute(statement, &[&slot]).await.map_err(db)?;
    }
    tx.execute("DELETE FROM philotes.pipeline_specs WHERE id = $1", &[&id])
        .await
        .map_err(db)?;
    audit(
        &tx,
        &actor,
        "pipeline.delete",
        &format!("pipelines/{id}"),
        serde_json::json!({"slot": slot, "slot_dropped": slot_dropped}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The state of one table of a running pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableStatus {
    /// `schema.table` on the source.
    pub name: String,
    /// `waiting` (no copy yet), `copying`, `streaming`, `stopped` (see `stopped_reason`) or
    /// `needs_copy` (a worker asked ingest to copy it again).
    pub state: String,
    pub stopped_reason: Option<String>,
    /// Every change of the table that committed below this is buffered (or in the lake).
    pub buffered_lsn: Option<String>,
    /// Every change below this is in Iceberg.
    pub lake_lsn: Option<String>,
    /// The consistent point of its last copy.
    pub copied_at_lsn: Option<String>,
    /// Changes buffered and not yet in Iceberg.
    pub buffered_changes: i64,
    /// Age in seconds of its oldest change not yet in Iceberg (source commit time to now); 0
    /// when the lake holds everything buffered.
    pub lag_seconds: f64,
    /// Rows its last copy wrote (while `copying`: so far).
    pub rows_copied: i64,
    /// When its last copy began (rows per second and an ETA: `rows_copied` over the time
    /// since, against `source_rows_estimate`).
    pub copy_started_at: Option<DateTime<Utc>>,
    /// The source's estimate of the table's rows (`pg_class.reltuples`; absent when the
    /// source cannot be reached or has never analyzed the table).
    pub source_rows_estimate: Option<i64>,
    /// Changes streamed from the source into the buffer, ever.
    pub changes_streamed: i64,
    /// Streamed changes committed to Iceberg, ever.
    pub changes_in_lake: i64,
    /// When a worker last committed its changes to Iceberg.
    pub last_commit_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The source's slot, as the source reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotStatus {
    /// A role (ingest) is connected to it.
    pub active: bool,
    pub confirmed_lsn: Option<String>,
    /// WAL the source keeps for the slot.
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// WAL the source may still write before the slot is past `max_slot_wal_keep_size`;
    /// absent when the source keeps WAL without a limit.
    pub safe_wal_bytes: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineStatus {
    pub state: PipelineState,
    /// Every change committed on the source below this is buffered.
    pub buffered_lsn: Option<String>,
    /// Changes buffered and not yet in Iceberg, over all tables.
    pub buffer_depth: i64,
    /// Age in seconds of the oldest change not yet in Iceberg, over all tables (0: the lake
    /// holds everything buffered).
    pub lag_seconds: f64,
    /// When a worker last committed any of its tables to Iceberg.
    pub last_commit_at: Option<DateTime<Utc>>,
    /// The workers connected for this pipeline.
    pub workers: Vec<String>,
    /// Absent when the slot does not exist (yet), or the source cannot be reached (see
    /// `source_error`).
    pub slot: Option<SlotStatus>,
    pub source_error: Option<String>,
    pub tables: Vec<TableStatus>,
}

fn lsn(v: Option<i64>) -> Option<String> {
    v.map(|v| Lsn(v as u64).to_string())
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}/status", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id")),
    responses((status = 200, body = PipelineStatus), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// What the pipeline is doing: each table's state and position, the buffer, the workers and
/// the source's slot.
pub async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PipelineStatus>> {
    let id = pipeline_id(&id)?;
    let (slot, source_id, desired, buffered, tables, workers) = {
        let mut conn = s.store().get().await?;
        let client = conn.client()?;
        let row = client
            .query_opt(
                "SELECT p.slot, p.source_id, p.desired, x.buffered_lsn
                 FROM philotes.pipeline_specs p LEFT JOIN philotes.pipelines x ON x.name = p.slot
                 WHERE p.id = $1",
                &[&id],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Err(ApiError::not_found(format!("pipeline {id}")));
        };
        let slot: String = row.get(0);
        let tables = client
            .query(
                "SELECT t.name, t.stopped, t.buffered, t.watermark, t.snapshot_lsn, t.copying, t.recopy, t.updated_at,
                        t.changes_now,
                        coalesce((SELECT extract(epoch FROM now())::double precision - c.ts_us / 1e6
                                  FROM philotes.changes c WHERE c.table_id = t.id
                                  ORDER BY c.lsn, c.seq LIMIT 1), 0)::double precision,
                        t.rows_copied, t.copy_started_at, t.changes_buffered, t.changes_in_lake, t.last_commit_at
                 FROM philotes.tables t WHERE t.pipeline = $1 ORDER BY t.name",
                &[&slot],
            )
            .await
            .map_err(db)?;
        let prefix = philotes_buffer::pool::member_prefix(&slot);
        let workers: Vec<String> = client
            .query(
                "SELECT substr(application_name, length($1::text) + 1) FROM pg_stat_activity
                 WHERE starts_with(application_name, $1::text) ORDER BY 1",
                &[&prefix],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        (
            slot,
            row.get::<_, i64>(1),
            Desired::parse(row.get::<_, &str>(2)),
            row.get::<_, Option<i64>>(3),
            tables,
            workers,
        )
    };
    let source = crate::sources::connect(&s, source_id).await?;
    let names: Vec<String> = tables.iter().map(|r| r.get(0)).collect();
    let estimates: std::collections::HashMap<String, i64> = match &source {
        Ok(client) => client
            .query(
                "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname || '.' || c.relname = ANY($1) AND c.reltuples >= 0",
                &[&names],
            )
            .await
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let tables: Vec<TableStatus> = tables
        .iter()
        .map(|r| {
            let stopped: Option<String> = r.get(1);
            let snapshot: Option<i64> = r.get(4);
            let state = if stopped.is_some() {
                "stopped"
            } else if r.get::<_, bool>(5) {
                "copying"
            } else if r.get::<_, Option<String>>(6).is_some() {
                "needs_copy"
            } else if snapshot.is_none() {
                "waiting"
            } else {
                "streaming"
            };
            TableStatus {
                name: r.get(0),
                state: state.into(),
                stopped_reason: stopped,
                buffered_lsn: lsn(r.get(2)),
                lake_lsn: lsn(r.get(3)),
                copied_at_lsn: lsn(snapshot),
                buffered_changes: r.get(8),
                lag_seconds: r.get::<_, f64>(9).max(0.0),
                rows_copied: r.get(10),
                copy_started_at: r.get(11),
                source_rows_estimate: estimates.get(r.get::<_, &str>(0)).copied(),
                changes_streamed: r.get(12),
                changes_in_lake: r.get(13),
                last_commit_at: r.get(14),
                updated_at: r.get(7),
            }
        })
        .collect();
    let (slot_status, source_error) = match source {
        Ok(client) => match client
            .query_opt(
                "SELECT active, confirmed_flush_lsn::text, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status,
                        safe_wal_size
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
        {
            Ok(row) => (
                row.map(|r| SlotStatus {
                    active: r.get(0),
                    confirmed_lsn: r.get(1),
                    retained_bytes: r.get(2),
                    wal_status: r.get(3),
                    safe_wal_bytes: r.get(4),
                }),
                None,
            ),
            Err(e) => (None, Some(format!("cannot read the slot: {e}"))),
        },
        Err(message) => (None, Some(message)),
    };
    Ok(Json(PipelineStatus {
        state: desired.into(),
        buffered_lsn: lsn(buffered.filter(|b| *b > 0)),
        buffer_depth: tables.iter().map(|t| t.buffered_changes).sum(),
        lag_seconds: tables.iter().map(|t| t.lag_seconds).fold(0.0, f64::max),
        last_commit_at: tables.iter().filter_map(|t| t.last_commit_at).max(),
        workers,
        slot: slot_status,
        source_error,
        tables,
    }))
}

/// A change that could not be written: its table stopped at it until it is skipped or retried.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    /// `schema.table`.
    pub table: String,
    /// The transaction's commit position.
    pub lsn: String,
    /// Its place among the table's changes in the transaction.
    pub position: Option<i64>,
    /// `I`, `U`, `D`, `T` or `S` (a copied row).
    pub op: String,
    pub column: Option<String>,
    pub error: String,
    /// The row as received (column to value).
    #[schema(value_type = Object)]
    pub row: serde_json::Value,
    pub time: String,
    /// `open`, `skipped` or `retried`.
    pub state: String,
    pub note: Option<String>,
}

impl From<philotes_buffer::DeadLetterRow> for DeadLetter {
    fn from(d: philotes_buffer::DeadLetterRow) -> DeadLetter {
        DeadLetter {
            id: d.id,
            table: d.table,
            lsn: d.lsn,
            position: d.position,
            op: d.op,
            column: d.column,
            error: d.error,
            row: d.row,
            time: d.time,
            state: d.state,
            note: d.note,
        }
    }
}

/// The slot of pipeline `raw_id` (its key for the roles).
pub(crate) async fn slot_of(s: &AppState, raw_id: &str) -> ApiResult<(i64, String)> {
    let id = pipeline_id(raw_id)?;
    let mut conn = s.store().get().await?;
    let row = conn
        .client()?
        .query_opt(
            "SELECT slot FROM philotes.pipeline_specs WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db)?;
    row.map(|r| (id, r.get(0)))
        .ok_or_else(|| ApiError::not_found(format!("pipeline {id}")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetter>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}/dead-letters", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), ListParams),
    responses((status = 200, body = DeadLetterPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// The pipeline's dead letters, oldest first (decided ones too).
pub async fn dead_letters(
    State(s): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Json<DeadLetterPage>> {
    let p = ListParams::from_uri(&uri)?;
    let (_, slot) = slot_of(&s, &id).await?;
    let mut conn = s.store().get().await?;
    let found = philotes_buffer::tables::dead_letters(
        conn.client()?,
        Some(&slot),
        p.after_id(),
        Some(p.limit() + 1),
    )
    .await?;
    let (items, next) = p.page(found.into_iter().map(DeadLetter::from).collect(), |d| {
        crate::json::cursor(d.id)
    });
    Ok(Json(DeadLetterPage { items, next }))
}

/// Why an operator decided as they did.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub note: Option<String>,
}

impl Validate for Decision {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        optional_text(&mut p, "note", &self.note, 1000);
        p.0
    }
}

async fn decide(
    s: &AppState,
    actor: &Actor,
    raw_id: &str,
    raw_letter: &str,
    state: &str,
    note: Option<&str>,
) -> ApiResult<Json<DeadLetter>> {
    let (id, slot) = slot_of(s, raw_id).await?;
    let letter: i64 = raw_letter
        .parse()
        .map_err(|_| ApiError::not_found(format!("dead letter {raw_letter}")))?;
    let mut conn = s.store().get().await?;
    let client = conn.client()?;
    let row = client
        .query_opt(
            "SELECT state FROM philotes.dead_letters WHERE id = $1 AND pipeline = $2",
            &[&letter, &slot],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!(
            "dead letter {letter} of pipeline {id}"
        )));
    };
    let now: String = row.get(0);
    if now != "open" {
        return Err(ApiError::conflict(format!(
            "dead letter {letter} is {now} already; only an open one can be decided"
        )));
    }
    let mut tx = client.transaction().await.map_err(db)?;
    let decided = philotes_buffer::tables::decide_dead_letter(&mut tx, letter, state, note).await?;
    audit(
        &tx,
        actor,
        &format!(
            "dead-letter.{}",
            if state == "skipped" { "skip" } else { "retry" }
        ),
        &format!("pipelines/{id}/dead-letters/{letter}"),
        serde_json::json!({"table": decided.table, "lsn": decided.lsn, "note": note}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(Json(decided.into()))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{id}/dead-letters/{letter}/skip", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), ("letter" = i64, Path, description = "The dead letter's id")),
    request_body = Decision,
    responses((status = 200, body = DeadLetter), (status = 409, description = "Decided already", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Leave the change out of the lake (exactly that one change); its table goes on.
pub async fn skip(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path((id, letter)): Path<(String, String)>,
    body: Body<Decision>,
) -> ApiResult<Json<DeadLetter>> {
    decide(
        &s,
        &actor,
        &id,
        &letter,
        "skipped",
        body.value.note.as_deref(),
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/pipelines/{id}/dead-letters/{letter}/retry", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), ("letter" = i64, Path, description = "The dead letter's id")),
    request_body = Decision,
    responses((status = 200, body = DeadLetter), (status = 409, description = "Decided already", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Try the change again (after fixing what made it fail); its table goes on from it.
pub async fn retry(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path((id, letter)): Path<(String, String)>,
    body: Body<Decision>,
) -> ApiResult<Json<DeadLetter>> {
    decide(
        &s,
        &actor,
        &id,
        &letter,
        "retried",
        body.value.note.as_deref(),
    )
    .await
}

/// Which tables to copy again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    /// `schema.table` of the pipeline's tables; empty: every table.
    #[schema(max_items = 1000)]
    pub tables: Vec<TableRef>,
}

impl Validate for ResyncRequest {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.check(self.tables.len() <= 1000, "tables", "at most 1000 tables");
        p.0
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncStarted {
    /// The tables ingest copies again (each is `needs_copy`, then `copying`, in the status).
    pub tables: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{id}/resync", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id")),
    request_body = ResyncRequest,
    responses((status = 202, body = ResyncStarted), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Copy tables again (a stopped table is made whole this way): ingest copies each within
/// seconds while the others stream on, and the lake's changelog records the copy.
pub async fn resync(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    body: Body<ResyncRequest>,
) -> ApiResult<(StatusCode, Json<ResyncStarted>)> {
    let (id, slot) = slot_of(&s, &id).await?;
    let wanted: Vec<String> = body.value.tables.into_iter().map(|t| t.0).collect();
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let known = known_tables(&tx, id, &slot, &wanted).await?;
    let tables = if wanted.is_empty() { known } else { wanted };
    for t in &tables {
        tx.execute(
            "UPDATE philotes.tables SET recopy = 'an operator asked for a resync through the API',
                 stopped = NULL, updated_at = now()
             WHERE pipeline = $1 AND name = $2",
            &[&slot, t],
        )
        .await
        .map_err(db)?;
    }
    audit(
        &tx,
        &actor,
        "pipeline.resync",
        &format!("pipelines/{id}"),
        serde_json::json!({"tables": tables}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok((StatusCode::ACCEPTED, Json(ResyncStarted { tables })))
}

/// The pipeline's tables (`schema.table`, by name), after checking that every one `wanted`
/// is among them (404 for the first that is not).
async fn known_tables(
    tx: &tokio_postgres::Transaction<'_>,
    id: i64,
    slot: &str,
    wanted: &[String],
) -> ApiResult<Vec<String>> {
    let known: Vec<String> = tx
        .query(
            "SELECT name FROM philotes.tables WHERE pipeline = $1 ORDER BY name",
            &[&slot],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(t) = wanted.iter().find(|t| !known.contains(t)) {
        return Err(ApiError::not_found(format!(
            "table {t} of pipeline {id} (the status lists its tables)"
        )));
    }
    Ok(known)
}

/// A verification of a pipeline: the lake against the source at one position, run by the
/// managed ingest that runs the pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyRun {
    pub id: i64,
    /// `schema.table`; empty: every table.
    pub tables: Vec<String>,
    pub requested_at: DateTime<Utc>,
    pub requested_by: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `pending`, `running`, `done` or `failed` (see `error`).
    pub state: String,
    /// `match`, `different` or `unverifiable` once done.
    pub outcome: Option<String>,
    /// The report, as `philotes verify --format json` writes it.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
}

const VERIFY_COLUMNS: &str =
    "id, tables, requested_at, requested_by, started_at, finished_at, outcome, report, error";

fn verify_run_of(r: &tokio_postgres::Row) -> VerifyRun {
    let started: Option<DateTime<Utc>> = r.get(4);
    let finished: Option<DateTime<Utc>> = r.get(5);
    let error: Option<String> = r.get(8);
    let state = match (started, finished, &error) {
        (None, _, _) => "pending",
        (Some(_), None, _) => "running",
        (_, Some(_), Some(_)) => "failed",
        _ => "done",
    };
    VerifyRun {
        id: r.get(0),
        tables: r.get(1),
        requested_at: r.get(2),
        requested_by: r.get(3),
        started_at: started,
        finished_at: finished,
        state: state.into(),
        outcome: r.get(6),
        report: r.get(7),
        error,
    }
}

#[utoipa::path(post, path = "/api/v1/pipelines/{id}/verify", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id")),
    request_body = ResyncRequest,
    responses((status = 202, body = VerifyRun, headers(("Location" = String, description = "Where the run's outcome will be"))), (status = 409, description = "The pipeline is stopped", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Verify the lake against the source (the tables named, or all): the managed ingest running
/// the pipeline runs `philotes verify` and keeps the report.
pub async fn verify(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    body: Body<ResyncRequest>,
) -> ApiResult<impl IntoResponse> {
    let (id, slot) = slot_of(&s, &id).await?;
    let tables: Vec<String> = body.value.tables.into_iter().map(|t| t.0).collect();
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_one(
            "SELECT desired FROM philotes.pipeline_specs WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db)?;
    match Desired::parse(row.get::<_, &str>(0)) {
        Desired::Stopped => {
            return Err(ApiError::conflict(
                "the pipeline is stopped: start it first (the ingest that runs it verifies it)",
            ));
        }
        Desired::Paused => {
            return Err(ApiError::conflict(
                "the pipeline is paused: resume it first (a verification waits for the lake to reach the source's position, which a paused pipeline never does)",
            ));
        }
        _ => {}
    }
    known_tables(&tx, id, &slot, &tables).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO philotes.verify_runs (pipeline_id, tables, requested_by) VALUES ($1, $2, $3)
                 RETURNING {VERIFY_COLUMNS}"
            ),
            &[&id, &tables, &actor.name],
        )
        .await
        .map_err(db)?;
    let run = verify_run_of(&row);
    audit(
        &tx,
        &actor,
        "pipeline.verify",
        &format!("pipelines/{id}"),
        serde_json::json!({"run": run.id, "tables": run.tables}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    let location = format!("/api/v1/pipelines/{id}/verify-runs/{}", run.id);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(run),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyRunPage {
    pub items: Vec<VerifyRun>,
    /// The `after` of the next (older) page; absent on the last.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}/verify-runs", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), ListParams),
    responses((status = 200, body = VerifyRunPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// The pipeline's verifications, newest first.
pub async fn verify_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Json<VerifyRunPage>> {
    let p = ListParams::from_uri(&uri)?;
    let (id, _) = slot_of(&s, &id).await?;
    let before = match p.after_id() {
        0 => i64::MAX,
        a => a,
    };
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            &format!(
                "SELECT {VERIFY_COLUMNS} FROM philotes.verify_runs WHERE pipeline_id = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&id, &before, &(p.limit() + 1)],
        )
        .await
        .map_err(db)?;
    let (items, next) = p.page(rows.iter().map(verify_run_of).collect(), |r| {
        crate::json::cursor(r.id)
    });
    Ok(Json(VerifyRunPage { items, next }))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}/verify-runs/{run}", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), ("run" = i64, Path, description = "The verification's id")),
    responses((status = 200, body = VerifyRun), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// One verification, with its report once done.
pub async fn verify_run(
    State(s): State<AppState>,
    Path((id, run)): Path<(String, String)>,
) -> ApiResult<Json<VerifyRun>> {
    let (id, _) = slot_of(&s, &id).await?;
    let run: i64 = run
        .parse()
        .map_err(|_| ApiError::not_found(format!("verification {run}")))?;
    let mut conn = s.store().get().await?;
    let row = conn
        .client()?
        .query_opt(
            &format!(
                "SELECT {VERIFY_COLUMNS} FROM philotes.verify_runs WHERE pipeline_id = $1 AND id = $2"
            ),
            &[&id, &run],
        )
        .await
        .map_err(db)?;
    row.map(|r| Json(verify_run_of(&r)))
        .ok_or_else(|| ApiError::not_found(format!("verification {run} of pipeline {id}")))
}

#[cfg(test)]
mod tests {
    use super::default_name;

    #[test]
    fn default_names_fit_postgres_and_stay_distinct() {
        assert_eq!(default_name("shop-eu"), "philotes_shop_eu");
        let a = default_name(&"a".repeat(63));
        let b = default_name(&format!("{}b", "a".repeat(62)));
        assert_eq!((a.len(), b.len()), (63, 63));
        assert_ne!(a, b);
        assert!(a.starts_with("philotes_aaaa"));
    }
}
