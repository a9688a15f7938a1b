//! `philotes api`: the control plane's REST API.
//!
//! One API for the dashboard, the CLI and scripts: sources, pipelines, dead letters, keys and
//! the audit log, all kept in the control database the roles already share (no second store
//! to run or back up). Every route is declared once in [`routes::Route`], which builds the
//! router, names the scope the route needs, and is checked against the OpenAPI document
//! generated from the handlers (checked in as `docs/api/openapi.json`, so a change of the
//! contract shows in review). Errors are problem details ([`error`]); bodies are checked whole
//! before anything changes ([`json`]); every change is written to the audit log in the same
//! transaction as the change itself.
//!
//! Choices: docs/decisions/013-control-plane-api.md.

use std::net::SocketAddr;
use std::sync::Arc;

use philotes_core::{Error, ErrorKind, Result, Secret};

pub mod auth;
pub mod error;
pub mod history;
mod idempotent;
pub mod json;
pub mod keys;
pub mod pipelines;
pub mod remote;
pub mod routes;
pub mod sources;
mod store;
pub mod system;
pub mod users;

pub use auth::Scope;
pub use philotes_buffer::sealed::Cipher;
pub use routes::{Route, openapi, openapi_json, router};
pub use store::Store;

use crate::auth::Actor;
use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    cipher: Cipher,
    proxies: remote::TrustedProxies,
}

impl AppState {
    pub fn new(store: Store, cipher: Cipher, proxies: remote::TrustedProxies) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                store,
                cipher,
                proxies,
            }),
        }
    }

    /// Where a request from `peer` with `headers` comes from (see [`remote`]).
    pub(crate) fn remote(
        &self,
        peer: std::net::SocketAddr,
        headers: &axum::http::HeaderMap,
    ) -> String {
        self.inner.proxies.client(peer.ip(), headers).to_string()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn cipher(&self) -> &Cipher {
        &self.inner.cipher
    }

    /// The caller behind `token`, or `None` for an unknown, malformed or revoked key.
    pub(crate) async fn authenticate(
        &self,
        token: &str,
        remote: Option<String>,
    ) -> std::result::Result<Option<Actor>, ApiError> {
        let Some((id, secret)) = auth::split_token(token) else {
            return Ok(None);
        };
        let Some(key) = keys::find(self.store(), id).await? else {
            return Ok(None);
        };
        if key.revoked || !auth::secret_matches(secret, &key.secret_sha256) {
            return Ok(None);
        }
        keys::touch(self.store(), id).await?;
        Ok(Some(Actor {
            name: format!("key:{id}"),
            scope: key.scope,
            remote,
            csrf: None,
        }))
    }
}

/// How `philotes api` runs.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Where to listen (`host:port`).
    pub listen: String,
    pub buffer_url: Option<Secret>,
    pub encryption_key: Option<Secret>,
    /// How often to sample every pipeline's history (kept [`history::KEEP_DAYS`] days).
    pub history_interval: std::time::Duration,
    /// Whose `X-Forwarded-For` to believe (the dashboard, an ingress).
    pub trusted_proxies: remote::TrustedProxies,
}

/// Serve the API until `stop` resolves.
pub async fn serve(
    settings: &ApiSettings,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let key = settings.encryption_key.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "no encryption key: set PHILOTES_ENCRYPTION_KEY (or --encryption-key-file) to 32 random bytes in base64 (`openssl rand -base64 32`); the API seals source passwords with it",
        )
    })?;
    let cipher = Cipher::from_text(key)?;
    let store = Store::open(settings.buffer_url.as_ref()).await?;
    let _sampler = history::spawn(store.connector(), settings.history_interval);
    let state = AppState::new(store, cipher, settings.trusted_proxies.clone());
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "cannot listen on {} (--listen / PHILOTES_API_LISTEN): {e}; pick a free address",
                    settings.listen
                ),
            )
        })?;
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "API listening; the contract is at /api/v1/openapi.json");
    philotes_telemetry::health().ready("api");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, format!("the API server failed: {e}")))
}
