//! The replication stream, turned into [`Change`]s.
//!
//! `pgwire-replication` carries the stream (keepalives, standby status on a timer even while
//! the consumer is busy, TLS, SCRAM); [`philotes_pgoutput`] decodes the payloads; this module
//! resolves relation types from the catalog and converts timestamps. The position confirmed to
//! the slot only moves when the pipeline calls [`ReplicationStream::confirm`], which it does only
//! for changes already committed in Iceberg.
//!
//! With protocol 2 (`stream_large_transactions`), a transaction larger than the source's
//! `logical_decoding_work_mem` arrives in blocks while it runs; the blocks go to a spill file
//! ([`crate::spill`]) and the transaction is handed on, from the file, only once it commits —
//! so the pipeline sees every transaction whole and in commit order, as with protocol 1.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use philotes_core::{
    Change, ChangeSource, ColumnDesc, Error, ErrorKind, Lsn, Next, RelationDesc, ReplicaIdentity,
    Result, TableName,
};
use philotes_pgoutput::Message;

use crate::catalog::TypeResolver;
use crate::connect::SourceConn;
use crate::snapshot::repl_error;
use crate::spill::{Replay, Spill};

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
    /// Protocol 2 only: transactions arriving while they run.
    spill: Option<Spill>,
    /// The transaction whose stream block is open.
    in_block: Option<u32>,
    /// A committed streamed transaction being handed on, and its Commit.
    replay: Option<(Replay, Change)>,
}

impl ReplicationStream {
    /// Start streaming `slot` for `publication` from the slot's confirmed position. With
    /// `spill_dir`, large transactions arrive while they run (protocol 2) and wait there.
    pub async fn start(
        conn: &SourceConn,
        slot: &str,
        publication: &str,
        confirmed: Lsn,
        spill_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let spill = spill_dir.map(Spill::open).transpose()?;
        let cfg = conn
            .replication_config(slot, publication)
            .with_streaming(spill.is_some())
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
            spill,
            in_block: None,
            replay: None,
        })
    }

    /// Let go of a broken stream before starting another on the same spill directory: its
    /// in-progress transactions are dropped (the source sends them again from the confirmed
    /// position) and no file of the next stream can be removed by this one later. The
    /// replication connection is closed at once: a walsender left blocked on a client that no
    /// longer reads would hold up the source's shutdown.
    pub fn abandon(&mut self) {
        self.client.abort();
        self.replay = None;
        self.spill = None;
        self.in_block = None;
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
        let began = Instant::now();
        loop {
            if let Some(next) = self.replay_next().await? {
                return Ok(next);
            }
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
                    let lsn = Lsn(wal_start.as_u64());
                    if let (Some(xid), Some(spill)) = (self.in_block, self.spill.as_mut())
                        && philotes_pgoutput::is_streamed_change(&data)
                    {
                        spill.append(xid, lsn, &data)?;
                        // Let the pipeline keep its clock while a big transaction arrives.
                        if began.elapsed() >= idle {
                            return Ok(Next::Idle);
                        }
                        continue;
                    }
                    let msg = philotes_pgoutput::decode(&data).map_err(|e| e.with("lsn", lsn))?;
                    let msg = match self.stream_control(msg)? {
                        Some(msg) => msg,
                        None => continue,
                    };
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
    /// Follow the protocol-2 stream control messages; any other message is returned.
    fn stream_control(&mut self, msg: Message) -> Result<Option<Message>> {
        match msg {
            Message::StreamStart { xid, .. } => {
                tracing::debug!(xid, "stream block starts");
                self.in_block = Some(xid)
            }
            Message::StreamStop => {
                tracing::debug!(xid = ?self.in_block, "stream block ends");
                self.in_block = None
            }
            Message::StreamAbort { xid, subxid } => {
                if let Some(spill) = self.spill.as_mut() {
                    spill.abort(xid, subxid);
                }
            }
            Message::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                timestamp,
                ..
            } => {
                let replay = match self.spill.as_mut() {
                    Some(spill) => spill.commit(xid)?,
                    None => None,
                };
                if replay.is_none() {
                    // Nothing of it reached this stream: a transaction of another database
                    // (the source streams those too), or one without a replicated change.
                    tracing::debug!(xid, commit_lsn = %commit_lsn, "a streamed transaction committed with nothing spilled");
                }
                if let Some(replay) = replay {
                    let commit_ts_us = timestamp.saturating_add(PG_EPOCH_OFFSET_US);
                    let commit = Change::Commit {
                        commit_lsn,
                        end_lsn,
                        commit_ts_us,
                    };
                    self.replay = Some((replay, commit));
                    // Handed on as an ordinary transaction, starting with its Begin.
                    return Ok(Some(Message::Begin {
                        final_lsn: commit_lsn,
                        timestamp,
                        xid,
                    }));
                }
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// The next change of a committed streamed transaction, while one is being handed on.
    async fn replay_next(&mut self) -> Result<Option<Next>> {
        loop {
            let Some((replay, _)) = self.replay.as_mut() else {
                return Ok(None);
            };
            let Some((lsn, data)) = replay.next_message()? else {
                let commit = self.replay.take().map(|(_, commit)| commit);
                return Ok(commit.map(Next::Change));
            };
            let (_, msg) =
                philotes_pgoutput::decode_streamed(&data).map_err(|e| e.with("lsn", lsn))?;
            if let Some(change) = self.convert(msg).await? {
                return Ok(Some(Next::Change(change)));
            }
        }
    }

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
            Message::Origin { .. }
            | Message::Type { .. }
            | Message::StreamStart { .. }
            | Message::StreamStop
            | Message::StreamCommit { .. }
            | Message::StreamAbort { .. } => return Ok(None),
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
