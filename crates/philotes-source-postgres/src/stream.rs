//! The replication stream, turned into [`Change`]s.
//!
//! `pgwire-replication` carries the stream (keepalives, standby status on a timer even while
//! the consumer is busy, TLS, SCRAM); [`philotes_pgoutput`] decodes the payloads; this module
//! resolves relation types from the catalog and converts timestamps. The position confirmed to
//! the slot only moves when the pipeline calls [`ReplicationStream::confirm`], which it does only
//! for changes already committed in Iceberg.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use philotes_core::{
    Change, ChangeSource, ColumnDesc, Error, ErrorKind, Lsn, Next, RelationDesc, ReplicaIdentity,
    Result, TableName,
};
use philotes_pgoutput::Message;

use crate::catalog::TypeResolver;
use crate::connect::SourceConn;
use crate::snapshot::repl_error;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A running logical replication stream of one slot and publication.
pub struct ReplicationStream {
    client: ReplicationClient,
    catalog: tokio_postgres::Client,
    resolver: TypeResolver,
    confirmed: Lsn,
    /// The attnums each table had at its previous description (seeded at start).
    seen: HashMap<u32, HashSet<i16>>,
}

impl ReplicationStream {
    /// Start streaming `slot` for `publication` from the slot's confirmed position.
    pub async fn start(
        conn: &SourceConn,
        slot: &str,
        publication: &str,
        confirmed: Lsn,
    ) -> Result<Self> {
        let cfg = conn
            .replication_config(slot, publication)
            .with_start_lsn(pgwire_replication::Lsn::from_u64(confirmed.0))
            .with_ack_lsn(pgwire_replication::Lsn::from_u64(confirmed.0))
            .with_status_interval(Duration::from_millis(200))
            .with_wakeup_interval(Duration::from_secs(5))
            .with_buffer_size(4096);
        let mut client = ReplicationClient::connect(cfg).await.map_err(repl_error)?;
        client.wait_started().await.map_err(|e| {
            Error::new(
                ErrorKind::Source,
                format!("the source refused to start streaming slot {slot}: {e}; is another process using the slot? (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}')"),
            )
        })?;
        let catalog = conn.connect().await?;
        Ok(ReplicationStream {
            client,
            catalog,
            resolver: TypeResolver::default(),
            confirmed,
            seen: HashMap::new(),
        })
    }

    /// The columns a table has now, so a later description can tell which are new.
    pub fn remember(&mut self, table_oid: u32, columns: &[ColumnDesc]) {
        self.seen
            .insert(table_oid, columns.iter().filter_map(|c| c.attnum).collect());
    }
}

impl ChangeSource for ReplicationStream {
    /// Tell the source that everything before `lsn` is durable in the lake.
    fn confirm(&mut self, lsn: Lsn) {
        if lsn > self.confirmed {
            self.confirmed = lsn;
            self.client
                .update_applied_lsn(pgwire_replication::Lsn::from_u64(lsn.0));
        }
    }

    fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    async fn finish(&mut self) {
        let metrics = self.client.metrics();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while metrics.last_applied_lsn().as_u64() < self.confirmed.0 {
            if tokio::time::Instant::now() > deadline {
                tracing::warn!(confirmed = %self.confirmed, "the source has not acknowledged the last position yet; it will be sent again on the next start");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next change, or [`Next::Idle`] when nothing arrived within `idle`.
    async fn next(&mut self, idle: Duration) -> Result<Next> {
        loop {
            // Only the receive is raced against the timer: it is cancel-safe, the conversion
            // (which may query the catalog) is not, so it runs outside the timeout.
            let event = match tokio::time::timeout(idle, self.client.recv()).await {
                Err(_) => return Ok(Next::Idle),
                Ok(r) => r.map_err(|e| {
                    Error::new(ErrorKind::Source, format!("the replication stream broke: {e}; Philotes resumes from the last committed position when restarted"))
                })?,
            };
            let Some(event) = event else {
                return Ok(Next::End);
            };
            let change = match event {
                ReplicationEvent::KeepAlive { wal_end, .. } => Change::KeepAlive {
                    wal_end: Lsn(wal_end.as_u64()),
                },
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => Change::Begin {
                    commit_lsn: Lsn(final_lsn.as_u64()),
                    commit_ts_us: commit_time_micros.saturating_add(PG_EPOCH_OFFSET_US),
                    xid,
                },
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => Change::Commit {
                    commit_lsn: Lsn(lsn.as_u64()),
                    end_lsn: Lsn(end_lsn.as_u64()),
                    commit_ts_us: commit_time_micros.saturating_add(PG_EPOCH_OFFSET_US),
                },
                ReplicationEvent::Message {
                    transactional,
                    lsn,
                    prefix,
                    content,
                } => Change::Message {
                    lsn: Lsn(lsn.as_u64()),
                    transactional,
                    prefix,
                    content,
                },
                ReplicationEvent::StoppedAt { .. } => return Ok(Next::End),
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    let msg = philotes_pgoutput::decode(&data)
                        .map_err(|e| e.with("lsn", Lsn(wal_start.as_u64())))?;
                    match self.convert(msg).await? {
                        Some(c) => c,
                        None => continue,
                    }
                }
            };
            return Ok(Next::Change(change));
        }
    }
}

impl ReplicationStream {
    async fn convert(&mut self, msg: Message) -> Result<Option<Change>> {
        Ok(Some(match msg {
            Message::Begin {
                final_lsn,
                timestamp,
                xid,
            } => Change::Begin {
                commit_lsn: final_lsn,
                commit_ts_us: timestamp.saturating_add(PG_EPOCH_OFFSET_US),
                xid,
            },
            Message::Commit {
                commit_lsn,
                end_lsn,
                timestamp,
                ..
            } => Change::Commit {
                commit_lsn,
                end_lsn,
                commit_ts_us: timestamp.saturating_add(PG_EPOCH_OFFSET_US),
            },
            Message::Origin { .. } | Message::Type { .. } => return Ok(None),
            Message::Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            } => {
                // The catalog is at its current state, which may be past this message: a name
                // it no longer has gets no attnum (the sink then matches by name).
                let facts = crate::catalog::column_facts(&self.catalog, oid).await?;
                let schema = if namespace.is_empty() {
                    "pg_catalog".to_string()
                } else {
                    namespace
                };
                let table = TableName::new(schema, name);
                let mut cols = Vec::with_capacity(columns.len());
                for c in columns {
                    let ty = self
                        .resolver
                        .resolve(&self.catalog, c.type_oid, c.type_modifier)
                        .await?;
                    let found = facts.get(&c.name).copied();
                    let new = match (found, self.seen.get(&oid)) {
                        (Some(f), Some(before)) => !before.contains(&f.attnum),
                        _ => false,
                    };
                    let filled = match found {
                        Some(f) if new => {
                            f.has_missing
                                || crate::catalog::column_has_values(&self.catalog, &table, &c.name)
                                    .await?
                        }
                        _ => false,
                    };
                    let ty = match found {
                        Some(f) => crate::catalog::lake_type_for_dims(ty, f.ndims),
                        None => ty,
                    };
                    cols.push(ColumnDesc {
                        attnum: found.map(|f| f.attnum),
                        filled_on_add: filled,
                        name: c.name,
                        type_oid: c.type_oid,
                        type_modifier: c.type_modifier,
                        is_key: c.flags & 1 == 1,
                        ty,
                    });
                }
                self.remember(oid, &cols);
                Change::Relation(Arc::new(RelationDesc {
                    oid,
                    table,
                    replica_identity: ReplicaIdentity::from_byte(replica_identity)
                        .unwrap_or(ReplicaIdentity::Default),
                    columns: cols,
                }))
            }
            Message::Insert { oid, new } => Change::Insert { rel: oid, new },
            Message::Update { oid, old, new } => Change::Update {
                rel: oid,
                old: old.map(|(_, row)| row),
                new,
            },
            Message::Delete { oid, old, .. } => Change::Delete { rel: oid, old },
            Message::Truncate { oids, .. } => Change::Truncate { rels: oids },
            Message::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => Change::Message {
                lsn,
                transactional,
                prefix,
                content,
            },
        }))
    }
}
