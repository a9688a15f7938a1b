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

#[utoipa::path(get, path = "/api/v1/docs", tag = "system", security(()),
    responses((status = 200, description = "A page listing every operation, its scope and what it does", content_type = "text/html")))]
/// The contract for people: every operation with the scope it needs and what it does, on one
/// page with no script (the JSON document is the reference).
pub async fn docs() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        docs_page(),
    )
        .into_response()
}

/// The docs page, from the route list and the OpenAPI document.
pub fn docs_page() -> String {
    let doc = crate::routes::openapi();
    let mut rows = String::new();
    for route in crate::routes::Route::ALL {
        let method = route.method();
        let op = doc
            .paths
            .paths
            .get(route.path())
            .and_then(|item| match method.as_str() {
                "GET" => item.get.as_ref(),
                "POST" => item.post.as_ref(),
                "PATCH" => item.patch.as_ref(),
                "DELETE" => item.delete.as_ref(),
                "PUT" => item.put.as_ref(),
                _ => None,
            });
        let summary = op.and_then(|o| o.summary.as_deref()).unwrap_or("");
        let more = op.and_then(|o| o.description.as_deref()).unwrap_or("");
        let scope = route.scope().map_or("none", |s| s.as_str());
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{} {}</td></tr>\n",
            method,
            escape(route.path()),
            scope,
            escape(summary),
            escape(more)
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Philotes API {version}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:75em}}td,th{{text-align:left;vertical-align:top;padding:.3em .6em;border-bottom:1px solid #ddd}}code{{white-space:nowrap}}</style></head>\n\
         <body><h1>Philotes API {version}</h1>\n\
         <p>{description}</p>\n\
         <p>The contract: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a> (OpenAPI 3.1). Scopes: <code>read</code> &lt; <code>operate</code> &lt; <code>admin</code>; <code>none</code> needs no authentication.</p>\n\
         <table><thead><tr><th>method</th><th>path</th><th>scope</th><th>what it does</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>\n",
        version = escape(&doc.info.version),
        description = escape(doc.info.description.as_deref().unwrap_or("")),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    let (items, next) = p.page(
        rows.iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                resource: r.get(4),
                remote: r.get(5),
                detail: r.get(6),
            })
            .collect(),
        |e| crate::json::cursor(e.id),
    );
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
