//! People: users with a role, a password hashed with argon2id, and sessions.
//!
//! Logging in sets a session cookie (`HttpOnly`, `Secure`, `SameSite=Strict`, 12 hours) and
//! answers a CSRF token; a change made with the cookie must send that token back in
//! `X-CSRF-Token` (the guard checks it), so another site cannot make a browser act for its
//! user. Only SHA-256 of the cookie is stored. Failed logins are counted per user name and per
//! address: past the limit a login is refused with 429 for a while, whatever the password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use philotes_core::{Error, ErrorKind, Result};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Actor, Scope, sha256};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::json::{Body, Problems, Validate};
use crate::store::{audit, db};

/// The session cookie's name.
pub const COOKIE: &str = "philotes_session";
/// How long a session lasts.
const SESSION_HOURS: i64 = 12;
/// Failed logins allowed in [`WINDOW_MINUTES`] per user name, and per address.
const MAX_FAILURES_PER_USER: i64 = 5;
const MAX_FAILURES_PER_ADDRESS: i64 = 20;
const WINDOW_MINUTES: i64 = 15;

/// What a person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees everything (scope `read`).
    Viewer,
    /// Also operates pipelines (scope `operate`).
    Operator,
    /// Also changes everything (scope `admin`).
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Role::Viewer => Scope::Read,
            Role::Operator => Scope::Operate,
            Role::Admin => Scope::Admin,
        }
    }
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot make a salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot hash a password: {e}")))
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A stored hash to verify against when the user does not exist, so a login takes as long
/// for an unknown name as for a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("philotes-decoy").unwrap_or_default())
}

fn check_password(p: &mut Problems, password: &str) {
    p.check(
        (12..=1024).contains(&password.chars().count()),
        "password",
        "12 to 1024 characters",
    );
}

/// `philotes user create`: a user made straight in the control database.
pub async fn create_in(
    db: &mut philotes_buffer::ControlDb,
    username: &str,
    role: Role,
    password: &str,
) -> Result<()> {
    let mut p = Problems::default();
    p.name("username", username);
    check_password(&mut p, password);
    if let Some(e) = p.0.first() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{}: {}", e.field, e.message),
        ));
    }
    let hash = hash_password(password)?;
    let tx = db
        .client
        .transaction()
        .await
        .map_err(|e| Error::new(ErrorKind::Buffer, "cannot create the user").with_source(e))?;
    let made = tx
        .execute(
            "INSERT INTO philotes.users (username, password_hash, role) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING",
            &[&username, &hash, &role.as_str()],
        )
        .await
        .map_err(|e| Error::new(ErrorKind::Buffer, "cannot create the user").with_source(e))?;
    if made == 0 {
        return Err(Error::new(
            ErrorKind::Config,
            format!("a user named {username} exists already"),
        ));
    }
    tx.execute(
        "INSERT INTO philotes.audit_log (actor, action, resource, detail) VALUES ('cli', 'user.create', $1, $2)",
        &[&format!("users/{username}"), &serde_json::json!({"role": role.as_str()})],
    )
    .await
    .map_err(|e| Error::new(ErrorKind::Buffer, "cannot create the user").with_source(e))?;
    tx.commit()
        .await
        .map_err(|e| Error::new(ErrorKind::Buffer, "cannot create the user").with_source(e))?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(min_length = 1, max_length = 63)]
    pub username: String,
    #[schema(min_length = 1, max_length = 1024, write_only)]
    pub password: String,
}

impl Validate for Login {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.check(
            (1..=63).contains(&self.username.chars().count()),
            "username",
            "1 to 63 characters",
        );
        p.check(
            (1..=1024).contains(&self.password.chars().count()),
            "password",
            "1 to 1024 characters",
        );
        p.0
    }
}

/// Who is calling.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `user:<name>` or `key:<id>`.
    pub actor: String,
    pub scope: Scope,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub username: String,
    pub role: Role,
    /// Send it back as `X-CSRF-Token` with every change made with the session cookie.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = Login,
    responses((status = 200, body = Session, headers(("Set-Cookie" = String, description = "The session cookie (HttpOnly, Secure, SameSite=Strict)"))),
        (status = 429, description = "Too many failed logins; try again later", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Log in with a user name and password: a session cookie and a CSRF token.
pub async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: Body<Login>,
) -> ApiResult<Response> {
    let remote = Some(peer.ip().to_string());
    let b = body.value;
    let mut conn = s.store().get().await?;
    let client = conn.client()?;
    let row = client
        .query_one(
            "SELECT
               (SELECT count(*) FROM philotes.login_failures WHERE username = $1 AND at > now() - make_interval(mins => $3::int)),
               (SELECT count(*) FROM philotes.login_failures WHERE remote = $2 AND at > now() - make_interval(mins => $3::int))",
            &[&b.username, &remote, &(WINDOW_MINUTES as i32)],
        )
        .await
        .map_err(db)?;
    let (by_user, by_address): (i64, i64) = (row.get(0), row.get(1));
    if by_user >= MAX_FAILURES_PER_USER || by_address >= MAX_FAILURES_PER_ADDRESS {
        let mut r = ApiError::too_many(format!(
            "too many failed logins; try again in {WINDOW_MINUTES} minutes"
        ))
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("900"));
        return Ok(r);
    }
    let user = client
        .query_opt(
            "SELECT id, password_hash, role FROM philotes.users WHERE username = $1 AND disabled_at IS NULL",
            &[&b.username],
        )
        .await
        .map_err(db)?;
    let stored = user.as_ref().map(|u| u.get::<_, String>(1));
    let password = b.password.clone();
    let hash = stored.clone().unwrap_or_else(|| decoy_hash().to_string());
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &hash))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let Some(user) = user.filter(|_| matches && stored.is_some()) else {
        client
            .execute(
                "INSERT INTO philotes.login_failures (username, remote) VALUES ($1, $2)",
                &[&b.username, &remote],
            )
            .await
            .map_err(db)?;
        client
            .execute(
                "DELETE FROM philotes.login_failures WHERE at < now() - interval '1 hour'",
                &[],
            )
            .await
            .map_err(db)?;
        return Err(ApiError::unauthenticated(
            "the user name or the password is wrong",
        ));
    };
    let user_id: i64 = user.get(0);
    let role = Role::parse(user.get::<_, &str>(2)).unwrap_or(Role::Viewer);
    let token = random_token(32);
    let csrf = random_token(32);
    let tx = client.transaction().await.map_err(db)?;
    let expires: DateTime<Utc> = tx
        .query_one(
            "INSERT INTO philotes.sessions (id_sha256, user_id, csrf_token, remote, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(hours => $5::int)) RETURNING expires_at",
            &[
                &sha256(&token),
                &user_id,
                &csrf,
                &remote,
                &(SESSION_HOURS as i32),
            ],
        )
        .await
        .map_err(db)?
        .get(0);
    tx.execute(
        "UPDATE philotes.users SET last_login_at = now() WHERE id = $1",
        &[&user_id],
    )
    .await
    .map_err(db)?;
    tx.execute(
        "DELETE FROM philotes.sessions WHERE expires_at < now()",
        &[],
    )
    .await
    .map_err(db)?;
    let actor = Actor {
        name: format!("user:{}", b.username),
        scope: role.scope(),
        remote: remote.clone(),
    };
    audit(
        &tx,
        &actor,
        "auth.login",
        &format!("users/{}", b.username),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_HOURS * 3600
    );
    let mut r = Json(Session {
        username: b.username,
        role,
        csrf_token: csrf,
        expires_at: expires,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// The session cookie's value in `headers`.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The user behind a session cookie: (actor name, scope, CSRF token).
pub(crate) async fn session(
    s: &AppState,
    token: &str,
) -> ApiResult<Option<(String, Scope, String)>> {
    let mut conn = s.store().get().await?;
    let row = conn
        .client()?
        .query_opt(
            "SELECT u.username, u.role, s.csrf_token FROM philotes.sessions s
             JOIN philotes.users u ON u.id = s.user_id
             WHERE s.id_sha256 = $1 AND s.expires_at > now() AND u.disabled_at IS NULL",
            &[&sha256(token)],
        )
        .await
        .map_err(db)?;
    Ok(row.and_then(|r| {
        let role = Role::parse(r.get::<_, &str>(1))?;
        Some((
            format!("user:{}", r.get::<_, String>(0)),
            role.scope(),
            r.get(2),
        ))
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "The session is over"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// End the session of the cookie sent.
pub async fn logout(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = session_cookie(&headers) {
        let mut conn = s.store().get().await?;
        let tx = conn.client()?.transaction().await.map_err(db)?;
        tx.execute(
            "DELETE FROM philotes.sessions WHERE id_sha256 = $1",
            &[&sha256(token)],
        )
        .await
        .map_err(db)?;
        audit(
            &tx,
            &actor,
            "auth.logout",
            &actor.name.replace("user:", "users/"),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await.map_err(db)?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "philotes_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Who the caller is, and what they may do.
pub async fn me(axum::Extension(actor): axum::Extension<Actor>) -> Json<Me> {
    Json(Me {
        actor: actor.name,
        scope: actor.scope,
    })
}
