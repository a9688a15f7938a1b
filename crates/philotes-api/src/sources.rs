//! Sources: the PostgreSQL databases pipelines replicate. The password is sealed before it is
//! stored and never returned (`has_password` says whether one is set); a test connects and
//! runs the very checks `philotes run` makes before it starts, each with its fix.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use philotes_source_postgres::SourceConn;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Actor;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::json::{Body, ListParams, Problems, Validate};
use crate::store::{audit, db};
use crate::{AppState, idempotent};

/// How the API reaches a source over TLS (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> SslMode {
        match s {
            "disable" => SslMode::Disable,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => SslMode::Prefer,
        }
    }
}

/// A source as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Source {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// Whether a password is stored (it is never shown).
    pub has_password: bool,
    pub sslmode: SslMode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourcePage {
    pub items: Vec<Source>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

fn default_port() -> u16 {
    5432
}

fn default_sslmode() -> SslMode {
    SslMode::Prefer
}

/// A new source.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceCreate {
    /// Unique; 1 to 63 of a-z, 0-9, - and _.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9][a-z0-9_-]*$")]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub host: String,
    #[serde(default = "default_port", deserialize_with = "crate::json::integral")]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub database: String,
    /// A role with the REPLICATION attribute.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub user: String,
    /// Write-only: stored encrypted, never returned.
    #[schema(min_length = 1, max_length = 1024, write_only)]
    pub password: Option<String>,
    #[serde(default = "default_sslmode")]
    pub sslmode: SslMode,
}

/// Changes to a source; absent fields stay as they are. `password: null` removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceUpdate {
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "crate::json::integral_opt")]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub database: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "crate::json::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1024, write_only)]
    pub password: Option<Option<String>>,
    pub sslmode: Option<SslMode>,
}

fn check_connection(
    p: &mut Problems,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
    password: Option<&str>,
) {
    p.text("host", host, 253);
    p.check(port != 0, "port", "between 1 and 65535");
    p.text("database", database, 63);
    p.text("user", user, 63);
    if let Some(pw) = password {
        p.check(
            !pw.is_empty() && pw.chars().count() <= 1024,
            "password",
            "1 to 1024 characters",
        );
    }
}

impl Validate for SourceCreate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.name("name", &self.name);
        check_connection(
            &mut p,
            &self.host,
            self.port,
            &self.database,
            &self.user,
            self.password.as_deref(),
        );
        p.0
    }
}

impl Validate for SourceUpdate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        if let Some(h) = &self.host {
            p.text("host", h, 253);
        }
        if let Some(port) = self.port {
            p.check(port != 0, "port", "between 1 and 65535");
        }
        if let Some(d) = &self.database {
            p.text("database", d, 63);
        }
        if let Some(u) = &self.user {
            p.text("user", u, 63);
        }
        if let Some(Some(pw)) = &self.password {
            p.check(
                !pw.is_empty() && pw.len() <= 1024,
                "password",
                "1 to 1024 bytes",
            );
        }
        p.0
    }
}

const PURPOSE: &str = philotes_buffer::specs::SOURCE_PASSWORD;
const COLUMNS: &str = "id, name, host, port, database, username, password_enc IS NOT NULL, sslmode, created_at, updated_at";

fn source_of(r: &tokio_postgres::Row) -> Source {
    Source {
        id: r.get(0),
        name: r.get(1),
        host: r.get(2),
        port: u16::try_from(r.get::<_, i32>(3)).unwrap_or(0),
        database: r.get(4),
        user: r.get(5),
        has_password: r.get(6),
        sslmode: SslMode::parse(r.get::<_, &str>(7)),
        created_at: r.get(8),
        updated_at: r.get(9),
    }
}

/// A source id from the path; anything else is a source that does not exist.
fn source_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::not_found(format!("source {raw}")))
}

#[utoipa::path(get, path = "/api/v1/sources", tag = "sources",
    params(ListParams),
    responses((status = 200, body = SourcePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// List sources by id.
pub async fn list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<SourcePage>> {
    let p = ListParams::from_uri(&uri)?;
    let after = p.after_id();
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            &format!("SELECT {COLUMNS} FROM philotes.sources WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&after, &(p.limit() + 1)],
        )
        .await
        .map_err(db)?;
    let (items, next) = p.page(rows.iter().map(source_of).collect(), |s| {
        crate::json::cursor(s.id)
    });
    Ok(Json(SourcePage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/sources", tag = "sources",
    request_body = SourceCreate,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "The same key with the same body again answers as the first time, without a second source")),
    responses((status = 201, body = Source, headers(("Location" = String, description = "The new source's path"))), (status = 409, body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Add a source.
pub async fn create(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    headers: HeaderMap,
    body: Body<SourceCreate>,
) -> ApiResult<Response> {
    let key = idempotent::key(&headers)?;
    let hash = idempotent::fingerprint("sources", &body.raw);
    let mut conn = s.store().get().await?;
    let client = conn.client()?;
    if let Some(key) = &key
        && let Some(replay) =
            idempotent::replayed(client, &actor, key, &hash, "/api/v1/sources").await?
    {
        return Ok(replay);
    }
    let b = &body.value;
    let sealed = match &b.password {
        Some(pw) => Some(s.cipher().seal(PURPOSE, pw.as_bytes())?),
        None => None,
    };
    let tx = client.transaction().await.map_err(db)?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO philotes.sources (name, host, port, database, username, password_enc, sslmode)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[&b.name, &b.host, &i32::from(b.port), &b.database, &b.user, &sealed, &b.sslmode.as_str()],
        )
        .await
        .map_err(|e| match db(e) {
            e if e.status() == StatusCode::CONFLICT => {
                ApiError::conflict(format!("a source named {} exists already", b.name))
            }
            e => e,
        })?;
    let source = source_of(&row);
    audit(
        &tx,
        &actor,
        "source.create",
        &format!("sources/{}", source.id),
        serde_json::json!({"name": source.name, "host": source.host, "database": source.database}),
    )
    .await?;
    let body_json = serde_json::to_value(&source).map_err(|e| ApiError::internal(&e))?;
    if let Some(key) = &key {
        idempotent::remember(&tx, &actor, key, &hash, &body_json).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(idempotent::created("/api/v1/sources", body_json))
}

#[utoipa::path(get, path = "/api/v1/sources/{id}", tag = "sources",
    params(("id" = i64, Path, description = "The source's id")),
    responses((status = 200, body = Source), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// One source.
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Source>> {
    let id = source_id(&id)?;
    let mut conn = s.store().get().await?;
    let row = conn
        .client()?
        .query_opt(
            &format!("SELECT {COLUMNS} FROM philotes.sources WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db)?;
    row.map(|r| Json(source_of(&r)))
        .ok_or_else(|| ApiError::not_found(format!("source {id}")))
}

#[utoipa::path(patch, path = "/api/v1/sources/{id}", tag = "sources",
    params(("id" = i64, Path, description = "The source's id")),
    request_body = SourceUpdate,
    responses((status = 200, body = Source), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Change a source's connection settings.
pub async fn update(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    body: Body<SourceUpdate>,
) -> ApiResult<Json<Source>> {
    let id = source_id(&id)?;
    let b = &body.value;
    let sealed = match &b.password {
        Some(Some(pw)) => Some(Some(s.cipher().seal(PURPOSE, pw.as_bytes())?)),
        Some(None) => Some(None),
        None => None,
    };
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE philotes.sources SET
                    host = coalesce($2, host), port = coalesce($3, port),
                    database = coalesce($4, database), username = coalesce($5, username),
                    password_enc = CASE WHEN $6 THEN $7 ELSE password_enc END,
                    sslmode = coalesce($8, sslmode), updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &b.host,
                &b.port.map(i32::from),
                &b.database,
                &b.user,
                &sealed.is_some(),
                &sealed.clone().flatten(),
                &b.sslmode.map(SslMode::as_str),
            ],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("source {id}")));
    };
    let mut changed: Vec<&str> = Vec::new();
    for (field, set) in [
        ("host", b.host.is_some()),
        ("port", b.port.is_some()),
        ("database", b.database.is_some()),
        ("user", b.user.is_some()),
        ("password", b.password.is_some()),
        ("sslmode", b.sslmode.is_some()),
    ] {
        if set {
            changed.push(field);
        }
    }
    audit(
        &tx,
        &actor,
        "source.update",
        &format!("sources/{id}"),
        serde_json::json!({ "changed": changed }),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(Json(source_of(&row)))
}

#[utoipa::path(delete, path = "/api/v1/sources/{id}", tag = "sources",
    params(("id" = i64, Path, description = "The source's id")),
    responses((status = 204, description = "Deleted"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Delete a source.
pub async fn delete(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = source_id(&id)?;
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            "DELETE FROM philotes.sources WHERE id = $1 RETURNING name",
            &[&id],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("source {id}")));
    };
    let name: String = row.get(0);
    audit(
        &tx,
        &actor,
        "source.delete",
        &format!("sources/{id}"),
        serde_json::json!({ "name": name }),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of one check of a source test.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `connect`, `version`, `wal_level`, `replication_privilege`, `replication_slots`,
    /// `wal_senders`.
    pub name: String,
    pub ok: bool,
    /// For a failed check: the problem and its fix, as `philotes run` says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a failed check that one statement fixes: that statement, to run as a superuser on
    /// the source (`message` says what else it needs, such as a restart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceTest {
    /// Every check passed: a pipeline can start on this source.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// A source's stored connection settings.
pub(crate) async fn spec(s: &AppState, id: i64) -> ApiResult<philotes_buffer::specs::SourceSpec> {
    let mut conn = s.store().get().await?;
    let row = conn
        .client()?
        .query_opt(
            "SELECT host, port, database, username, password_enc, sslmode FROM philotes.sources WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("source {id}")));
    };
    Ok(philotes_buffer::specs::SourceSpec {
        host: row.get(0),
        port: row.get(1),
        database: row.get(2),
        user: row.get(3),
        password_enc: row.get(4),
        sslmode: row.get(5),
    })
}

/// A connection to a source (`Err` with what went wrong when it cannot be reached).
pub(crate) async fn connect(
    s: &AppState,
    id: i64,
) -> ApiResult<Result<tokio_postgres::Client, String>> {
    let info = spec(s, id).await?.conninfo(s.cipher(), "philotes-api")?;
    let conn = match SourceConn::parse(&info) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(conn.connect().await.map_err(|e| e.to_string()))
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/test", tag = "sources",
    params(("id" = i64, Path, description = "The source's id")),
    responses((status = 200, body = SourceTest), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Connect to the source and run the checks `philotes run` makes before it starts.
pub async fn test(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SourceTest>> {
    let id = source_id(&id)?;
    let client = match connect(&s, id).await? {
        Ok(c) => c,
        Err(message) => {
            return Ok(Json(SourceTest {
                ok: false,
                checks: vec![Check {
                    name: "connect".into(),
                    ok: false,
                    message: Some(message),
                    fix: None,
                }],
            }));
        }
    };
    let mut checks = vec![Check {
        name: "connect".into(),
        ok: true,
        message: None,
        fix: None,
    }];
    match philotes_source_postgres::preflight::server_checks(&client, "philotes").await {
        Ok(found) => checks.extend(found.into_iter().map(|c| Check {
            name: c.name.into(),
            ok: c.problem.is_none(),
            message: c.problem.map(|p| p.to_string()),
            fix: c.fix,
        })),
        Err(e) => checks.push(Check {
            name: "preflight".into(),
            ok: false,
            message: Some(e.to_string()),
            fix: None,
        }),
    }
    Ok(Json(SourceTest {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }))
}

/// A table of a source.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceTable {
    pub schema: String,
    pub name: String,
    /// `default` (the primary key), `full`, `index` or `nothing`.
    pub replica_identity: String,
    pub has_primary_key: bool,
    /// The planner's row estimate (0 before the table was first analyzed).
    pub estimated_rows: i64,
    /// Table, indexes and TOAST.
    pub total_bytes: i64,
    /// Replicated as one table with its partitions.
    pub partitioned: bool,
    /// Why its updates and deletes could not be replicated, with the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// With a problem: the statement that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sources/{id}/tables", tag = "sources",
    params(("id" = i64, Path, description = "The source's id")),
    responses((status = 200, body = [SourceTable]), (status = "4XX", description = "409: the source cannot be reached with its settings (`POST …/test` says why)", body = Problem, content_type = "application/problem+json")))]
/// The source's tables, with what replication needs to know of each.
pub async fn tables(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<SourceTable>>> {
    let id = source_id(&id)?;
    let client = connect(&s, id).await?.map_err(ApiError::unreachable)?;
    let found = philotes_source_postgres::catalog::user_tables(&client)
        .await
        .map_err(|e| ApiError::unreachable(e.to_string()))?;
    Ok(Json(
        found
            .into_iter()
            .map(|t| {
                let problem = philotes_source_postgres::preflight::identity_problem(
                    &t.name,
                    t.replica_identity,
                    t.has_primary_key,
                )
                .map(|e| e.to_string());
                let fix = problem
                    .is_some()
                    .then(|| philotes_source_postgres::preflight::identity_fix(&t.name));
                SourceTable {
                    schema: t.name.schema.clone(),
                    name: t.name.name.clone(),
                    replica_identity: format!("{:?}", t.replica_identity).to_lowercase(),
                    has_primary_key: t.has_primary_key,
                    estimated_rows: t.estimated_rows,
                    total_bytes: t.total_bytes,
                    partitioned: t.partitioned,
                    problem,
                    fix,
                }
            })
            .collect(),
    ))
}
