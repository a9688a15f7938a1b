//! Who is calling, and what they may do.
//!
//! An API key is `phk_<id>_<secret>`: the id finds its row, the secret's SHA-256 is compared in
//! constant time with the stored one. A key has one scope; scopes are ordered, so `admin` may
//! do what `operate` may, and `operate` what `read` may. Every route declares the scope it
//! needs in [`crate::routes::Route::scope`]; the guard here is the only place that checks it.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// What a caller may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// See everything (but secrets, which nobody sees).
    Read,
    /// Also start, stop, pause and resume pipelines, test sources and act on dead letters.
    Operate,
    /// Also create, change and delete sources, pipelines and keys, and read the audit log.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "read" => Scope::Read,
            "operate" => Scope::Operate,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `key:<id>` — how the audit log names the caller.
    pub name: String,
    pub scope: Scope,
    /// The peer's address.
    pub remote: Option<String>,
    /// The session's CSRF token, when the caller came with the session cookie.
    pub csrf: Option<String>,
}

/// A new key: shown once, then only its hash is kept.
pub struct NewKey {
    pub id: String,
    pub token: String,
    pub secret_sha256: Vec<u8>,
}

const PREFIX: &str = "phk_";

/// Make a key: 6 random bytes of id, 32 of secret.
pub fn new_key() -> NewKey {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewKey {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_sha256: sha256(&secret),
        id,
    }
}

pub fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// `(id, secret)` of a well-formed token.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

/// Whether `secret` hashes to `stored`, in time independent of where they differ.
pub fn secret_matches(secret: &str, stored: &[u8]) -> bool {
    bool::from(sha256(secret).ct_eq(stored))
}

/// The state the guard of one route carries: the scope it needs.
#[derive(Clone)]
pub struct Guard {
    pub state: AppState,
    pub scope: Scope,
}

/// Authenticate the request and check the route's scope; the [`Actor`] goes into the request's
/// extensions for the handler.
pub async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let remote = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| g.state.remote(c.0, req.headers()));
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let actor = if let Some(token) = token {
        match g.state.authenticate(token, remote).await {
            Ok(Some(actor)) => actor,
            Ok(None) => {
                return ApiError::unauthenticated("the API key is unknown or revoked")
                    .into_response();
            }
            Err(e) => return e.into_response(),
        }
    } else if let Some(cookie) = crate::users::session_cookie(req.headers()) {
        let (name, scope, csrf) = match crate::users::session(&g.state, cookie).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return ApiError::unauthenticated(
                    "the session expired or was ended; log in again (POST /api/v1/auth/login)",
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        };
        // A change made with the cookie must prove it comes from the page that logged in.
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !safe && !bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) {
            return ApiError::forbidden(
                "a change made with the session cookie needs the session's CSRF token in `X-CSRF-Token` (the login answer has it)",
            )
            .into_response();
        }
        Actor {
            name,
            scope,
            remote,
            csrf: Some(csrf),
        }
    } else {
        return ApiError::unauthenticated(
            "send an API key as `Authorization: Bearer phk_…` (make one with `philotes api-key create`), or log in (POST /api/v1/auth/login)",
        )
        .into_response();
    };
    if actor.scope < g.scope {
        return ApiError::forbidden(format!(
            "this needs a key with scope `{}`; this key has `{}`",
            g.scope.as_str(),
            actor.scope.as_str()
        ))
        .into_response();
    }
    req.extensions_mut().insert(actor);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_only_their_secret_matches() {
        let k = new_key();
        let (id, secret) = split_token(&k.token).unwrap_or_default();
        assert_eq!(id, k.id);
        assert!(secret_matches(secret, &k.secret_sha256));
        assert!(!secret_matches("x", &k.secret_sha256));
        assert!(split_token("phk_short_x").is_none());
        assert!(split_token("Bearer").is_none());
        assert!(Scope::Admin > Scope::Operate && Scope::Operate > Scope::Read);
    }
}
