//! Health, version, the contract itself, and the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::json::ListParams;
use crate::store::db;

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok`.
    pub status: String,
}

#[utoipa::path(get, path = "/healthz", tag = "system", security(()),
    responses((status = 200, body = Status)))]
/// Liveness: the process serves requests (it does not depend on the control database, so an
/// outage of that does not restart the API).
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "system", security(()),
    responses((status = 200, body = Status), (status = 503, body = Problem, content_type = "application/problem+json")))]
/// Readiness: the control database answers.
pub async fn readyz(State(s): State<AppState>) -> ApiResult<Json<Status>> {
    let mut conn = s.store().get().await?;
    conn.client()?.execute("SELECT 1", &[]).await.map_err(db)?;
    Ok(Json(Status {
        status: "ok".into(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// The Philotes release.
    pub version: String,
    /// The API's version (the path prefix).
    pub api: String,
    /// The control database's schema version.
    pub schema: i32,
}

#[utoipa::path(get, path = "/api/v1/version", tag = "system",
    responses((status = 200, body = Version), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// The versions of Philotes, the API and the control database schema.
pub async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
        schema: philotes_buffer::MIGRATIONS.last().map_or(0, |m| m.version),
    })
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
/// The API's contract.
pub async fn spec() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::routes::openapi_json(),
    )
        .into_response()
}

/// One change made through the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who: `key:<id>`, or `cli` for changes made with the command line against the database.
    pub actor: String,
    /// What: `source.create`, `api-key.revoke`, …
    pub action: String,
    /// On what: `sources/3`.
    pub resource: String,
    /// From where (the caller's address).
    pub remote: Option<String>,
    /// What changed (never a secret).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "system",
    params(ListParams),
    responses((status = 200, body = AuditPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// The audit log, newest first.
pub async fn audit(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<AuditPage>> {
    let p = ListParams::from_uri(&uri)?;
    let before = match p.after {
        Some(_) => p.after_id(),
        None => i64::MAX,
    };
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            "SELECT id, at, actor, action, resource, remote, detail FROM philotes.audit_log
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
            &[&before, &(p.limit() + 1)],
        )
        .await
        .map_err(db)?;
    let mut items: Vec<AuditEntry> = rows
        .iter()
        .map(|r| AuditEntry {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            resource: r.get(4),
            remote: r.get(5),
            detail: r.get(6),
        })
        .collect();
    let next = if items.len() as i64 > p.limit() {
        items.truncate(p.limit() as usize);
        items.last().map(|e| crate::json::cursor(e.id))
    } else {
        None
    };
    Ok(Json(AuditPage { items, next }))
}

/// Any path no route has.
pub async fn fallback() -> ApiError {
    ApiError::no_route()
}

/// A known path with a method it does not take.
pub async fn wrong_method() -> ApiError {
    ApiError::method_not_allowed()
}
