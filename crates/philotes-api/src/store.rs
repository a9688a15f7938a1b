//! The API's connections to the control database: a few, each reconnected when it broke, so a
//! restart of the control database costs the requests in flight and nothing more.

use philotes_buffer::ControlDb;
use philotes_core::{Result, Secret};
use philotes_source_postgres::SourceConn;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;

use crate::auth::Actor;
use crate::error::ApiError;

/// How many connections the API keeps.
const CONNECTIONS: usize = 4;

pub struct Store {
    conn: SourceConn,
    clients: Vec<Mutex<Option<tokio_postgres::Client>>>,
    next: std::sync::atomic::AtomicUsize,
}

/// One connection, held for a request.
pub struct Conn<'a> {
    guard: MutexGuard<'a, Option<tokio_postgres::Client>>,
}

impl Conn<'_> {
    pub fn client(&mut self) -> std::result::Result<&mut tokio_postgres::Client, ApiError> {
        self.guard
            .as_mut()
            .ok_or_else(|| ApiError::unavailable("the control database is not answering"))
    }
}

impl Store {
    /// Connect to (and migrate) the control database at `url`.
    pub async fn open(url: Option<&Secret>) -> Result<Store> {
        let db = ControlDb::open(url, "for the API").await?;
        let conn = db.conn.clone().application_name("philotes-api");
        let mut clients = vec![Mutex::new(Some(db.client))];
        for _ in 1..CONNECTIONS {
            clients.push(Mutex::new(None));
        }
        Ok(Store {
            conn,
            clients,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// For a connection of one's own (a background task's).
    pub fn connector(&self) -> SourceConn {
        self.conn.clone()
    }

    /// A free connection (or the next one in turn), connected.
    pub async fn get(&self) -> std::result::Result<Conn<'_>, ApiError> {
        let mut guard = None;
        for slot in &self.clients {
            if let Ok(g) = slot.try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => {
                let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % self.clients.len();
                self.clients[i].lock().await
            }
        };
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            match self.conn.connect().await {
                Ok(c) => *guard = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to the control database");
                    return Err(ApiError::unavailable(
                        "the control database is not answering; try again shortly",
                    ));
                }
            }
        }
        Ok(Conn { guard })
    }
}

/// A failed statement: a lost connection is a 503 to retry, a duplicate a 409, anything else
/// a 500 with an error id.
pub fn db(e: tokio_postgres::Error) -> ApiError {
    if e.is_closed() || e.as_db_error().is_none() {
        tracing::warn!(error = %e, "the control database failed a request");
        return ApiError::unavailable("the control database is not answering; try again shortly");
    }
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return ApiError::conflict("an object with that name exists already");
    }
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        return ApiError::conflict("another object still refers to this one; delete that first");
    }
    ApiError::internal(&e)
}

/// Record a change in the audit log, in the transaction that makes it.
pub async fn audit(
    tx: &tokio_postgres::Transaction<'_>,
    actor: &Actor,
    action: &str,
    resource: &str,
    detail: serde_json::Value,
) -> std::result::Result<(), ApiError> {
    tx.execute(
        "INSERT INTO philotes.audit_log (actor, action, resource, remote, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&actor.name, &action, &resource, &actor.remote, &detail],
    )
    .await
    .map_err(db)?;
    Ok(())
}
