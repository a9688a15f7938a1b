//! API keys: made by an admin (or, for the first, by `philotes api-key create` against the
//! control database), shown once, kept as a hash, revoked rather than deleted so the audit log
//! keeps naming them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use philotes_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Actor, Scope, new_key};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::json::{Body, ListParams, Problems, Validate};
use crate::store::{Store, audit, db};

/// An API key as listed (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// The key's public id (the part after `phk_`).
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: DateTime<Utc>,
    /// Who made it (`key:<id>`, or `cli` for `philotes api-key create`).
    pub created_by: String,
    /// The last request made with it (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub items: Vec<ApiKey>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// What the key is for (`ci`, `grafana`), 1 to 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    pub scope: Scope,
}

impl Validate for ApiKeyCreate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.text("name", &self.name, 100);
        p.0
    }
}

/// A new key, with the token itself: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub key: ApiKey,
    /// `phk_<id>_<secret>`: send as `Authorization: Bearer <token>`. Not shown again.
    pub token: String,
}

pub(crate) struct StoredKey {
    pub scope: Scope,
    pub secret_sha256: Vec<u8>,
    pub revoked: bool,
}

pub(crate) async fn find(store: &Store, id: &str) -> ApiResult<Option<StoredKey>> {
    let mut conn = store.get().await?;
    let row = conn
        .client()?
        .query_opt(
            "SELECT scope, secret_sha256, revoked_at IS NOT NULL FROM philotes.api_keys WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db)?;
    Ok(row.and_then(|r| {
        Some(StoredKey {
            scope: Scope::parse(r.get::<_, &str>(0))?,
            secret_sha256: r.get(1),
            revoked: r.get(2),
        })
    }))
}

/// Note the key's use, at most once a minute.
pub(crate) async fn touch(store: &Store, id: &str) -> ApiResult<()> {
    let mut conn = store.get().await?;
    conn.client()?
        .execute(
            "UPDATE philotes.api_keys SET last_used_at = now()
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            &[&id],
        )
        .await
        .map_err(db)?;
    Ok(())
}

const COLUMNS: &str = "id, name, scope, created_at, created_by, last_used_at, revoked_at";

fn key_of(r: &tokio_postgres::Row) -> ApiKey {
    ApiKey {
        id: r.get(0),
        name: r.get(1),
        scope: Scope::parse(r.get::<_, &str>(2)).unwrap_or(Scope::Read),
        created_at: r.get(3),
        created_by: r.get(4),
        last_used_at: r.get(5),
        revoked_at: r.get(6),
    }
}

async fn insert(
    client: &mut tokio_postgres::Client,
    name: &str,
    scope: Scope,
    actor: Option<&Actor>,
) -> std::result::Result<ApiKeyCreated, tokio_postgres::Error> {
    let k = new_key();
    let by = actor.map_or("cli".to_string(), |a| a.name.clone());
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO philotes.api_keys (id, name, scope, secret_sha256, created_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[&k.id, &name, &scope.as_str(), &k.secret_sha256, &by],
        )
        .await?;
    let detail = serde_json::json!({"name": name, "scope": scope.as_str()});
    tx.execute(
        "INSERT INTO philotes.audit_log (actor, action, resource, remote, detail) VALUES ($1, 'api-key.create', $2, $3, $4)",
        &[&by, &format!("api-keys/{}", k.id), &actor.and_then(|a| a.remote.clone()), &detail],
    )
    .await?;
    tx.commit().await?;
    Ok(ApiKeyCreated {
        key: key_of(&row),
        token: k.token,
    })
}

/// `philotes api-key create`: a key made straight in the control database (the first key
/// needs no key).
pub async fn create_in(
    db: &mut philotes_buffer::ControlDb,
    name: &str,
    scope: Scope,
) -> Result<ApiKeyCreated> {
    let mut p = Problems::default();
    p.text("name", name, 100);
    if let Some(e) = p.0.first() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("--name: {}", e.message),
        ));
    }
    insert(&mut db.client, name, scope, None)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Buffer,
                "cannot create the API key in the control database",
            )
            .with_source(e)
        })
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys",
    params(ListParams),
    responses((status = 200, body = ApiKeyPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// List API keys (revoked ones too), oldest first.
pub async fn list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<ApiKeyPage>> {
    let p = ListParams::from_uri(&uri)?;
    let after = p.after.clone().unwrap_or_default();
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            &format!("SELECT {COLUMNS} FROM philotes.api_keys WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&after, &(p.limit() + 1)],
        )
        .await
        .map_err(db)?;
    let (items, next) = p.page(rows.iter().map(key_of).collect(), |k| k.id.clone());
    Ok(Json(ApiKeyPage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys",
    request_body = ApiKeyCreate,
    responses((status = 201, body = ApiKeyCreated), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Make an API key; the token is in this answer only.
pub async fn create(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    body: Body<ApiKeyCreate>,
) -> ApiResult<impl IntoResponse> {
    let mut conn = s.store().get().await?;
    let created = insert(
        conn.client()?,
        &body.value.name,
        body.value.scope,
        Some(&actor),
    )
    .await
    .map_err(db)?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked (or revoked already)"), (status = 409, description = "The key of the request itself", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Revoke an API key: requests with it are refused from now on.
pub async fn revoke(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if actor.name == format!("key:{id}") {
        return Err(ApiError::conflict(
            "a key cannot revoke itself (that would lock its holder out mid-request); revoke it with another admin key",
        ));
    }
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let n = tx
        .execute(
            "UPDATE philotes.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(ApiError::not_found(format!("API key {id}")));
    }
    audit(
        &tx,
        &actor,
        "api-key.revoke",
        &format!("api-keys/{id}"),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
}
