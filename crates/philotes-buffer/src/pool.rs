//! The pool of workers of a pipeline, and which tables each one writes.
//!
//! Why no coordinator: every worker holds its own connection to the control database, named
//! `philotes-worker/<pipeline key>/<worker id>` (`application_name`), so the live workers are
//! the connections `pg_stat_activity` shows, and a dead worker leaves the pool the moment its
//! connection goes. Each worker computes the same assignment from the same list: a table belongs
//! to the worker with the highest hash of (worker, table) (rendezvous hashing), so tables spread
//! evenly and a joining or leaving worker moves only its share. Views of the list can differ for a
//! moment; a session advisory lock per table (the lease) makes sure that only one worker at a time
//! writes a table, whatever each one believes.

use philotes_core::{Error, ErrorKind, Result};
use philotes_source_postgres::SourceConn;

use crate::db_error;

/// The first key of a table lease's advisory lock (`phtb`); the second is the table id.
const TABLE_LEASE: i32 = 0x7068_7462;

/// A worker's place in its pipeline's pool: its own connection, which holds its leases.
pub struct Pool {
    client: tokio_postgres::Client,
    prefix: String,
    pub worker: String,
}

/// What the `application_name` of every worker of `pipeline` starts with (application_name
/// holds 63 bytes: the pipeline by a short hash).
pub fn member_prefix(pipeline: &str) -> String {
    format!(
        "philotes-worker/{:012x}/",
        fnv(&[pipeline.as_bytes()]) >> 16
    )
}

/// FNV-1a, finalized: the same on every worker and every platform (no randomized hasher).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // MurmurHash3's finalizer: FNV alone orders similar inputs alike, which would hand every
    // table to the same worker.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The name a worker joins its pool under: `worker` itself, or its last 34 characters (what
/// `application_name` leaves after the pool's prefix).
fn member_name(worker: &str) -> Result<&str> {
    if worker.is_empty() || !worker.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "worker id `{worker}` must be visible ASCII characters without `/` (the pod or host name, say)"
            ),
        ));
    }
    // (ASCII, so any byte index is a character boundary.)
    Ok(&worker[worker.len().saturating_sub(34)..])
}

impl Pool {
    /// Join `pipeline`'s pool as `worker` (unique in the pool: a host name or pod name). An
    /// id longer than the 34 characters `application_name` leaves is cut to its last 34: a
    /// pod name's unique part is its end (`…-7d9f8c6b5-x2k4q`).
    pub async fn join(conn: &SourceConn, pipeline: &str, worker: &str) -> Result<Pool> {
        let worker = member_name(worker)?;
        let prefix = member_prefix(pipeline);
        let client = conn
            .clone()
            .application_name(&format!("{prefix}{worker}"))
            .connect()
            .await?;
        let pool = Pool {
            client,
            prefix,
            worker: worker.to_string(),
        };
        let members = pool.members().await?;
        if members.iter().filter(|m| *m == worker).count() > 1 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "another worker of pipeline {pipeline} is already called `{worker}`: give each worker its own id"
                ),
            ));
        }
        Ok(pool)
    }

    /// Whether this worker's connection, and so its leases, is still there.
    pub fn alive(&self) -> bool {
        !self.client.is_closed()
    }

    /// The workers connected now, sorted.
    pub async fn members(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT substr(application_name, length($1::text) + 1) FROM pg_stat_activity
                 WHERE starts_with(application_name, $1::text) ORDER BY 1",
                &[&self.prefix],
            )
            .await
            .map_err(|e| db_error("cannot list the workers", e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The worker `table` belongs to among `members` (none when there are none).
    pub fn owner(members: &[String], table: i64) -> Option<&str> {
        members
            .iter()
            .max_by_key(|m| (fnv(&[m.as_bytes(), &table.to_be_bytes()]), m.as_str()))
            .map(String::as_str)
    }

    /// Take the lease of `table` if no other worker holds it; true when this worker holds it.
    pub async fn try_lease(&self, table: i64) -> Result<bool> {
        try_table_lease(&self.client, table).await
    }

    /// Give up the lease of `table` (after its last commit, so another worker can take it).
    pub async fn release(&self, table: i64) -> Result<()> {
        release_table_lease(&self.client, table).await
    }
}

fn lease_key(table: i64) -> Result<i32> {
    i32::try_from(table).map_err(|_| {
        Error::new(
            ErrorKind::Internal,
            format!("table id {table} is out of range"),
        )
    })
}

/// Take `table`'s lease on `client`'s session if nobody holds it (a worker, or ingest copying).
pub(crate) async fn try_table_lease(client: &tokio_postgres::Client, table: i64) -> Result<bool> {
    let key = lease_key(table)?;
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&TABLE_LEASE, &key])
        .await
        .map_err(|e| db_error("cannot take a table's lease", e))?;
    Ok(row.get(0))
}

/// Give up `table`'s lease held by `client`'s session.
pub(crate) async fn release_table_lease(client: &tokio_postgres::Client, table: i64) -> Result<()> {
    let key = lease_key(table)?;
    client
        .query_one("SELECT pg_advisory_unlock($1, $2)", &[&TABLE_LEASE, &key])
        .await
        .map_err(|e| db_error("cannot release a table's lease", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_pod_names_keep_their_unique_end() {
        assert_eq!(member_name("w1").ok(), Some("w1"));
        let pod = "shop-eu-central-philotes-worker-7d9f8c6b5-x2k4q";
        let name = member_name(pod).unwrap_or_default();
        assert_eq!(name.len(), 34);
        assert!(pod.ends_with(name) && name.ends_with("-7d9f8c6b5-x2k4q"));
        for bad in ["", "a/b", "tab\there", "naïve"] {
            assert!(member_name(bad).is_err(), "{bad}");
        }
        assert!(member_prefix("p").len() + 34 <= 63);
    }
}
