//! `Idempotency-Key` on creates: a client that did not hear the answer (a timeout, a dropped
//! connection) sends the same request with the same key again and gets the first answer,
//! without a second object. The key is the caller's own (kept per actor, for a day); the same
//! key with a different request (another body, or another resource) is refused with 409.
//!
//! The answer is stored in the create's own transaction, so a replay never sees an answer for
//! something that was rolled back. Creates whose answer holds a secret (an API key's token) do
//! not take the header: the answer would have to be stored with the secret in it.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

use crate::auth::Actor;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::store::db;

/// The header of a create, checked: 1 to 255 visible ASCII characters.
pub fn key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v.to_str().ok().filter(|k| {
        !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
    });
    k.map(|k| Some(k.to_string())).ok_or_else(|| {
        ApiError::invalid(vec![FieldError {
            field: "Idempotency-Key".into(),
            message: "1 to 255 visible ASCII characters".into(),
        }])
    })
}

/// What identifies a request under one key: its resource and its body.
pub fn fingerprint(resource: &str, raw: &[u8]) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    h.update(resource.as_bytes());
    h.update(b"\n");
    h.update(raw);
    h.finalize().to_vec()
}

/// A created object's answer: 201 with its `Location` (`{collection}/{id}`).
pub fn created(collection: &str, body: serde_json::Value) -> Response {
    let location = body["id"].as_i64().map(|id| format!("{collection}/{id}"));
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

/// The first answer to a create made again with the same key (marked
/// `Idempotent-Replayed: true`); a different request under the same key is refused.
pub async fn replayed(
    client: &tokio_postgres::Client,
    actor: &Actor,
    key: &str,
    fingerprint: &[u8],
    collection: &str,
) -> ApiResult<Option<Response>> {
    let row = client
        .query_opt(
            "SELECT request_sha256, body FROM philotes.idempotency_keys
             WHERE actor = $1 AND key = $2 AND created_at > now() - interval '1 day'",
            &[&actor.name, &key],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.get::<_, Vec<u8>>(0) != fingerprint {
        return Err(ApiError::conflict(
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        ));
    }
    let mut r = created(collection, row.get(1));
    r.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(r))
}

/// Keep the answer of a create under its key, in the create's transaction (and forget the
/// keys older than a day).
pub async fn remember(
    tx: &tokio_postgres::Transaction<'_>,
    actor: &Actor,
    key: &str,
    fingerprint: &[u8],
    body: &serde_json::Value,
) -> ApiResult<()> {
    tx.execute(
        "DELETE FROM philotes.idempotency_keys WHERE created_at < now() - interval '1 day'",
        &[],
    )
    .await
    .map_err(db)?;
    tx.execute(
        "INSERT INTO philotes.idempotency_keys (actor, key, request_sha256, status, body) VALUES ($1, $2, $3, 201, $4)",
        &[&actor.name, &key, &fingerprint, body],
    )
    .await
    .map_err(|e| match db(e) {
        // Two requests with the same key at once: the other one made it.
        e if e.status() == StatusCode::CONFLICT => ApiError::conflict(
            "a request with this Idempotency-Key is being made right now; send it again in a moment to get its answer",
        ),
        e => e,
    })?;
    Ok(())
}
