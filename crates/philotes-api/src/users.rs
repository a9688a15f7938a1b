//! People: users with a role, a password hashed with argon2id, and sessions.
//!
//! Logging in sets a session cookie (`HttpOnly`, `Secure`, `SameSite=Strict`, 12 hours) and
//! answers a CSRF token; a change made with the cookie must send that token back in
//! `X-CSRF-Token` (the guard checks it), so another site cannot make a browser act for its
//! user. Only SHA-256 of the cookie is stored. Failed logins are counted per user name and per
//! address: past the limit a login is refused with 429 for a while, whatever the password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
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
use crate::json::{Body, ListParams, Problems, Validate};
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

fn check_password(p: &mut Problems, field: &str, password: &str) {
    p.check(
        (12..=1024).contains(&password.chars().count()),
        field,
        "12 to 1024 characters",
    );
}

/// A user as the API shows them (never with their password).
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// A disabled user cannot log in, and their sessions are over.
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

const COLUMNS: &str = "id, username, role, created_at, last_login_at, disabled_at";

fn user_of(r: &tokio_postgres::Row) -> User {
    User {
        id: r.get(0),
        username: r.get(1),
        role: Role::parse(r.get::<_, &str>(2)).unwrap_or(Role::Viewer),
        created_at: r.get(3),
        last_login_at: r.get(4),
        disabled_at: r.get(5),
    }
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// 1 to 63 of a-z, 0-9, - and _.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9][a-z0-9_-]*$")]
    pub username: String,
    pub role: Role,
    /// 12 to 1024 characters; stored hashed with argon2id.
    #[schema(min_length = 12, max_length = 1024, write_only)]
    pub password: String,
}

impl Validate for UserCreate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.name("username", &self.username);
        check_password(&mut p, "password", &self.password);
        p.0
    }
}

/// Changes to a user; absent fields stay as they are. A new password or `disabled: true`
/// ends the user's sessions.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub role: Option<Role>,
    /// 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024, write_only)]
    pub password: Option<String>,
    /// `true`: the user can no longer log in; `false`: they can again.
    pub disabled: Option<bool>,
}

impl Validate for UserUpdate {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        if let Some(pw) = &self.password {
            check_password(&mut p, "password", pw);
        }
        p.0
    }
}

/// A person's own new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(min_length = 1, max_length = 1024, write_only)]
    pub current_password: String,
    /// 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024, write_only)]
    pub new_password: String,
}

impl Validate for PasswordChange {
    fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        p.check(
            (1..=1024).contains(&self.current_password.chars().count()),
            "current_password",
            "1 to 1024 characters",
        );
        check_password(&mut p, "new_password", &self.new_password);
        p.0
    }
}

async fn hash_in_background(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))
}

/// Insert a user and its audit entry in one transaction; `None` when the name is taken.
async fn insert(
    client: &mut tokio_postgres::Client,
    actor: &Actor,
    username: &str,
    role: Role,
    hash: &str,
    idempotency: Option<(&str, &[u8])>,
) -> ApiResult<Option<User>> {
    let tx = client.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO philotes.users (username, password_hash, role) VALUES ($1, $2, $3)
                 ON CONFLICT (username) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&username, &hash, &role.as_str()],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    audit(
        &tx,
        actor,
        "user.create",
        &format!("users/{username}"),
        serde_json::json!({"role": role.as_str()}),
    )
    .await?;
    let user = user_of(&row);
    if let Some((key, fingerprint)) = idempotency {
        let answer = serde_json::to_value(&user).map_err(|e| ApiError::internal(&e))?;
        crate::idempotent::remember(&tx, actor, key, fingerprint, &answer).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Some(user))
}

/// `philotes user create` with `--buffer-url`: a user made straight in the control database
/// (the first admin needs no key).
pub async fn create_in(
    db: &mut philotes_buffer::ControlDb,
    username: &str,
    role: Role,
    password: &str,
) -> Result<()> {
    let mut p = Problems::default();
    p.name("username", username);
    check_password(&mut p, "password", password);
    if let Some(e) = p.0.first() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{}: {}", e.field, e.message),
        ));
    }
    let hash = hash_password(password)?;
    let cli = Actor {
        name: "cli".into(),
        scope: Scope::Admin,
        remote: None,
        csrf: None,
    };
    let made = insert(&mut db.client, &cli, username, role, &hash, None)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Buffer,
                format!("cannot create the user: {}", e.problem().detail),
            )
        })?;
    if made.is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("a user named {username} exists already"),
        ));
    }
    Ok(())
}

fn user_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::not_found(format!("user {raw}")))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    params(ListParams),
    responses((status = 200, body = UserPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// List users (disabled ones too) by id.
pub async fn list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<UserPage>> {
    let p = ListParams::from_uri(&uri)?;
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            &format!("SELECT {COLUMNS} FROM philotes.users WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&p.after_id(), &(p.limit() + 1)],
        )
        .await
        .map_err(db)?;
    let (items, next) = p.page(rows.iter().map(user_of).collect(), |u| {
        crate::json::cursor(u.id)
    });
    Ok(Json(UserPage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = UserCreate,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "The same key with the same body again answers as the first time, without a second user")),
    responses((status = 201, body = User, headers(("Location" = String, description = "The new user's path"))), (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Make a user who logs in to the dashboard.
pub async fn create(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    headers: HeaderMap,
    body: Body<UserCreate>,
) -> ApiResult<Response> {
    // The request's fingerprint leaves the password out: an unsalted hash of it would sit in
    // the idempotency table for a day. (The same key with another password is the same request.)
    let key = crate::idempotent::key(&headers)?;
    let without_password =
        serde_json::json!({"username": body.value.username, "role": body.value.role}).to_string();
    let fingerprint = crate::idempotent::fingerprint("users", without_password.as_bytes());
    let mut conn = s.store().get().await?;
    if let Some(key) = &key
        && let Some(replay) =
            crate::idempotent::replayed(conn.client()?, &actor, key, &fingerprint, "/api/v1/users")
                .await?
    {
        return Ok(replay);
    }
    let b = body.value;
    let hash = hash_in_background(b.password).await?;
    let made = insert(
        conn.client()?,
        &actor,
        &b.username,
        b.role,
        &hash,
        key.as_deref().map(|k| (k, fingerprint.as_slice())),
    )
    .await?
    .ok_or_else(|| ApiError::conflict(format!("a user named {} exists already", b.username)))?;
    let answer = serde_json::to_value(&made).map_err(|e| ApiError::internal(&e))?;
    Ok(crate::idempotent::created("/api/v1/users", answer))
}

/// Refuse a change that would leave no enabled admin. Locks every enabled admin's row, so two
/// admins demoting each other at once cannot both succeed.
async fn keep_an_admin(tx: &tokio_postgres::Transaction<'_>, id: i64) -> ApiResult<()> {
    let admins: Vec<i64> = tx
        .query(
            "SELECT id FROM philotes.users WHERE role = 'admin' AND disabled_at IS NULL ORDER BY id FOR UPDATE",
            &[],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if admins == [id] {
        return Err(ApiError::conflict(
            "this is the last admin: make another user admin first (an admin API key cannot log in to the dashboard)",
        ));
    }
    Ok(())
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "The user's id")),
    request_body = UserUpdate,
    responses((status = 200, body = User), (status = 409, description = "It would leave no admin", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Change a user's role or password, or disable them. A new password or disabling ends their
/// sessions; a new role applies to their next request.
pub async fn update(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    body: Body<UserUpdate>,
) -> ApiResult<Json<User>> {
    let id = user_id(&id)?;
    let b = body.value;
    let hash = match b.password.clone() {
        Some(pw) => Some(hash_in_background(pw).await?),
        None => None,
    };
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM philotes.users WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("user {id}")));
    };
    let before = user_of(&row);
    let stays_admin = b.role.unwrap_or(before.role) == Role::Admin
        && !b.disabled.unwrap_or(before.disabled_at.is_some());
    if before.role == Role::Admin && before.disabled_at.is_none() && !stays_admin {
        keep_an_admin(&tx, id).await?;
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE philotes.users SET role = coalesce($2, role),
                    password_hash = coalesce($3, password_hash),
                    disabled_at = CASE WHEN $4::bool IS NULL THEN disabled_at
                                       WHEN $4 THEN coalesce(disabled_at, now()) ELSE NULL END
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &b.role.map(Role::as_str), &hash, &b.disabled],
        )
        .await
        .map_err(db)?;
    if hash.is_some() || b.disabled == Some(true) {
        tx.execute("DELETE FROM philotes.sessions WHERE user_id = $1", &[&id])
            .await
            .map_err(db)?;
    }
    let mut changed: Vec<&str> = Vec::new();
    for (field, set) in [
        ("role", b.role.is_some()),
        ("password", b.password.is_some()),
        ("disabled", b.disabled.is_some()),
    ] {
        if set {
            changed.push(field);
        }
    }
    let after = user_of(&row);
    audit(
        &tx,
        &actor,
        "user.update",
        &format!("users/{}", after.username),
        serde_json::json!({"changed": changed, "role": after.role.as_str(), "disabled": after.disabled_at.is_some()}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "The user's id")),
    responses((status = 204, description = "Deleted, with their sessions (the audit log keeps their name)"), (status = 409, description = "The last admin", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Delete a user and end their sessions.
pub async fn delete(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = user_id(&id)?;
    let mut conn = s.store().get().await?;
    let tx = conn.client()?.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM philotes.users WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("user {id}")));
    };
    let user = user_of(&row);
    if user.role == Role::Admin && user.disabled_at.is_none() {
        keep_an_admin(&tx, id).await?;
    }
    tx.execute("DELETE FROM philotes.users WHERE id = $1", &[&id])
        .await
        .map_err(db)?;
    audit(
        &tx,
        &actor,
        "user.delete",
        &format!("users/{}", user.username),
        serde_json::json!({"role": user.role.as_str()}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = PasswordChange,
    responses((status = 204, description = "Changed; the user's other sessions are over"), (status = 409, description = "The caller is an API key, not a person", body = Problem, content_type = "application/problem+json"), (status = 429, description = "Too many wrong passwords; try again later", body = Problem, content_type = "application/problem+json"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// Change your own password (with the current one). Your other sessions end; this one goes on.
pub async fn change_password(
    State(s): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    headers: HeaderMap,
    body: Body<PasswordChange>,
) -> ApiResult<StatusCode> {
    let Some(username) = actor.name.strip_prefix("user:").map(str::to_string) else {
        return Err(ApiError::conflict(
            "an API key has no password: log in as the user (POST /api/v1/auth/login), or have an admin set it (PATCH /api/v1/users/{id})",
        ));
    };
    let b = body.value;
    let mut conn = s.store().get().await?;
    let client = conn.client()?;
    let failures: i64 = client
        .query_one(
            "SELECT count(*) FROM philotes.login_failures WHERE username = $1 AND at > now() - make_interval(mins => $2::int)",
            &[&username, &(WINDOW_MINUTES as i32)],
        )
        .await
        .map_err(db)?
        .get(0);
    if failures >= MAX_FAILURES_PER_USER {
        return Err(ApiError::too_many(format!(
            "too many wrong passwords; try again in {WINDOW_MINUTES} minutes"
        )));
    }
    let row = client
        .query_opt(
            "SELECT id, password_hash FROM philotes.users WHERE username = $1 AND disabled_at IS NULL",
            &[&username],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Err(ApiError::unauthenticated(
            "the session's user no longer exists",
        ));
    };
    let (uid, stored): (i64, String) = (row.get(0), row.get(1));
    let current = b.current_password.clone();
    let matches = tokio::task::spawn_blocking(move || password_matches(&current, &stored))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !matches {
        client
            .execute(
                "INSERT INTO philotes.login_failures (username, remote) VALUES ($1, $2)",
                &[&username, &actor.remote],
            )
            .await
            .map_err(db)?;
        return Err(ApiError::invalid(vec![FieldError {
            field: "current_password".into(),
            message: "is not your current password".into(),
        }]));
    }
    let hash = hash_in_background(b.new_password).await?;
    let this = session_cookie(&headers).map(sha256).unwrap_or_default();
    let tx = client.transaction().await.map_err(db)?;
    tx.execute(
        "UPDATE philotes.users SET password_hash = $2 WHERE id = $1",
        &[&uid, &hash],
    )
    .await
    .map_err(db)?;
    tx.execute(
        "DELETE FROM philotes.sessions WHERE user_id = $1 AND id_sha256 <> $2",
        &[&uid, &this],
    )
    .await
    .map_err(db)?;
    audit(
        &tx,
        &actor,
        "user.password",
        &format!("users/{username}"),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await.map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
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
    /// With the session cookie: the session's CSRF token, so a page loaded after the login
    /// can make changes (another site cannot read this answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
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
    headers: HeaderMap,
    body: Body<Login>,
) -> ApiResult<Response> {
    let remote = Some(s.remote(peer, &headers));
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
        csrf: None,
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
        csrf_token: actor.csrf,
    })
}
