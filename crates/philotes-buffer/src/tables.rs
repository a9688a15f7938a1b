//! Each table's progress as ingest and the workers share it: where its buffered changes reach,
//! whether ingest is copying it, the columns its changes are written with, and its lake.
//!
//! Why columns live here: a worker has no connection to the source, so it cannot ask PostgreSQL
//! what a table looks like. Ingest records the table's description at every point it changes
//! (`philotes.relations`), and a worker writes each change with the description in force at
//! that change, exactly as `run` does with the stream's relation messages.

use philotes_core::{ColumnDesc, Error, ErrorKind, Lsn, Result, TableName};

use crate::pool::{release_table_lease, try_table_lease};
use crate::{ControlDb, db_error};

/// One table of a pipeline, as the control database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRow {
    pub id: i64,
    /// `schema.table`.
    pub name: String,
    /// Every transaction of the table that committed below it is buffered (or in the lake).
    pub buffered: Option<Lsn>,
    /// The lake's watermark as a worker last committed it.
    pub watermark: Option<Lsn>,
    /// The consistent point of the table's last copy.
    pub snapshot_lsn: Option<Lsn>,
    /// Ingest is copying the table.
    pub copying: bool,
    /// Why a worker asked for a new copy.
    pub recopy: Option<String>,
    /// Why the table is stopped.
    pub stopped: Option<String>,
}

/// A table's description from a position on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relation {
    pub table: TableName,
    pub columns: Vec<ColumnDesc>,
}

/// A [`Relation`] and where it starts: before the change `(lsn, seq)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RelationAt {
    pub lsn: Lsn,
    pub seq: i32,
    pub relation: Relation,
}

fn lsn_of(v: Option<i64>) -> Option<Lsn> {
    v.map(|l| Lsn(l as u64))
}

impl ControlDb {
    /// Record which lake `pipeline` writes (`lake` describes catalog, warehouse and namespace),
    /// or check that it is the one recorded: every role must write the same tables. With
    /// `first` false (a worker), false when ingest has not registered the pipeline yet.
    pub async fn claim_lake(&self, pipeline: &str, lake: &str, first: bool) -> Result<bool> {
        let row = self
            .client
            .query_opt(
                "SELECT lake FROM philotes.pipelines WHERE name = $1",
                &[&pipeline],
            )
            .await
            .map_err(|e| db_error("cannot read the pipeline's lake", e))?;
        let recorded: Option<String> = row.and_then(|r| r.get(0));
        match recorded {
            Some(l) if l == lake => Ok(true),
            Some(l) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "pipeline {pipeline} writes the lake `{l}`, but this process is configured for `{lake}`: give every role (ingest, worker) the same catalog, warehouse and namespace settings — one config file serves them all"
                ),
            )),
            None if first => {
                self.client
                    .execute(
                        "UPDATE philotes.pipelines SET lake = $2, updated_at = now() WHERE name = $1",
                        &[&pipeline, &lake],
                    )
                    .await
                    .map_err(|e| db_error("cannot record the pipeline's lake", e))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The tables of `pipeline`, by id.
    pub async fn tables(&self, pipeline: &str) -> Result<Vec<TableRow>> {
        let rows = self
            .client
            .query(
                "SELECT id, name, buffered, watermark, snapshot_lsn, copying, recopy, stopped
                 FROM philotes.tables WHERE pipeline = $1 ORDER BY id",
                &[&pipeline],
            )
            .await
            .map_err(|e| db_error("cannot list the pipeline's tables", e))?;
        Ok(rows
            .iter()
            .map(|r| TableRow {
                id: r.get(0),
                name: r.get(1),
                buffered: lsn_of(r.get(2)),
                watermark: lsn_of(r.get(3)),
                snapshot_lsn: lsn_of(r.get(4)),
                copying: r.get(5),
                recopy: r.get(6),
                stopped: r.get(7),
            })
            .collect())
    }

    /// Record `relation` as `table`'s description from `(lsn, seq)` on.
    pub async fn set_relation(
        &self,
        table: i64,
        lsn: Lsn,
        seq: i32,
        relation: &Relation,
    ) -> Result<()> {
        let json = serde_json::to_value(relation).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("cannot describe a table: {e}"))
        })?;
        let lsn = lsn.0 as i64;
        self.client
            .execute(
                "INSERT INTO philotes.relations (table_id, lsn, seq, relation) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (table_id, lsn, seq) DO UPDATE SET relation = excluded.relation",
                &[&table, &lsn, &seq, &json],
            )
            .await
            .map_err(|e| db_error("cannot record a table's columns", e))?;
        Ok(())
    }

    /// `table`'s descriptions that matter from `from` on: the newest that starts below it, and
    /// every later one, in order.
    pub async fn relations(&self, table: i64, from: Lsn) -> Result<Vec<RelationAt>> {
        let from = from.0 as i64;
        let rows = self
            .client
            .query(
                "(SELECT lsn, seq, relation FROM philotes.relations
                  WHERE table_id = $1 AND lsn < $2 ORDER BY lsn DESC, seq DESC LIMIT 1)
                 UNION ALL
                 (SELECT lsn, seq, relation FROM philotes.relations
                  WHERE table_id = $1 AND lsn >= $2)
                 ORDER BY 1, 2",
                &[&table, &from],
            )
            .await
            .map_err(|e| db_error("cannot read a table's columns", e))?;
        rows.iter()
            .map(|r| {
                let json: serde_json::Value = r.get(2);
                let relation: Relation = serde_json::from_value(json).map_err(|e| {
                    Error::new(
                        ErrorKind::Buffer,
                        format!("a table description in the control database is malformed (written by another version?): {e}"),
                    )
                })?;
                Ok(RelationAt {
                    lsn: Lsn(r.get::<_, i64>(0) as u64),
                    seq: r.get(1),
                    relation,
                })
            })
            .collect()
    }

    /// Ingest starts (true) or ends (false) copying `table`: workers let go of it meanwhile.
    pub async fn set_copying(&self, table: i64, copying: bool) -> Result<()> {
        self.client
            .execute(
                // A copy that begins starts its count over.
                "UPDATE philotes.tables SET copying = $2, updated_at = now(),
                    rows_copied = CASE WHEN $2 THEN 0 ELSE rows_copied END,
                    copy_started_at = CASE WHEN $2 THEN now() ELSE copy_started_at END
                 WHERE id = $1",
                &[&table, &copying],
            )
            .await
            .map_err(|e| db_error("cannot record a copy", e))?;
        Ok(())
    }

    /// The copy of `table` has written `rows` so far (its status shows the progress).
    pub async fn copy_progress(&self, table: i64, rows: u64) -> Result<()> {
        self.client
            .execute(
                "UPDATE philotes.tables SET rows_copied = $2 WHERE id = $1",
                &[&table, &i64::try_from(rows).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(|e| db_error("cannot record a copy's progress", e))?;
        Ok(())
    }

    /// A copy of `table` at `lsn` is committed in the lake: changes below it are obsolete, and
    /// the table is buffered up to it at least.
    pub async fn copied(&self, table: i64, lsn: Lsn) -> Result<()> {
        let lsn = lsn.0 as i64;
        self.client
            .execute(
                "UPDATE philotes.tables SET snapshot_lsn = $2, watermark = $2,
                   buffered = greatest(coalesce(buffered, 0), $2), recopy = NULL, updated_at = now()
                 WHERE id = $1",
                &[&table, &lsn],
            )
            .await
            .map_err(|e| db_error("cannot record a copy", e))?;
        // The copy holds everything before its point.
        self.remove_below(table, Lsn(lsn as u64)).await?;
        Ok(())
    }

    /// Record that the lake holds a copy of `table` made at `lsn` (found in the lake itself).
    pub async fn set_snapshot_lsn(&self, table: i64, lsn: Lsn) -> Result<()> {
        let lsn = lsn.0 as i64;
        self.client
            .execute(
                "UPDATE philotes.tables SET snapshot_lsn = $2, updated_at = now() WHERE id = $1",
                &[&table, &lsn],
            )
            .await
            .map_err(|e| db_error("cannot record a copy", e))?;
        Ok(())
    }

    /// A worker asks ingest to copy `table` again, saying why.
    pub async fn request_copy(&self, table: i64, why: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE philotes.tables SET recopy = $2, updated_at = now() WHERE id = $1",
                &[&table, &why],
            )
            .await
            .map_err(|e| db_error("cannot ask for a copy", e))?;
        Ok(())
    }

    /// Stop `table` (`Some(why)`) or let it go on (`None`).
    pub async fn set_stopped(&self, table: i64, why: Option<&str>) -> Result<()> {
        self.client
            .execute(
                "UPDATE philotes.tables SET stopped = $2, updated_at = now() WHERE id = $1",
                &[&table, &why],
            )
            .await
            .map_err(|e| db_error("cannot record a stopped table", e))?;
        Ok(())
    }

    /// A worker committed `table` up to `watermark`: record it and remove what the lake holds
    /// now from the buffer (the lake's own watermark decides, so a crash in between is
    /// harmless). The newest description below the watermark stays: it applies to what follows.
    pub async fn committed(&self, table: i64, watermark: Lsn) -> Result<u64> {
        let w = watermark.0 as i64;
        self.client
            .execute(
                "UPDATE philotes.tables SET watermark = $2, updated_at = now() WHERE id = $1",
                &[&table, &w],
            )
            .await
            .map_err(|e| db_error("cannot record a table's watermark", e))?;
        self.client
            .execute(
                "DELETE FROM philotes.relations r WHERE r.table_id = $1 AND r.lsn < $2
                   AND (r.lsn, r.seq) < (SELECT lsn, seq FROM philotes.relations
                        WHERE table_id = $1 AND lsn < $2 ORDER BY lsn DESC, seq DESC LIMIT 1)",
                &[&table, &w],
            )
            .await
            .map_err(|e| db_error("cannot remove old table descriptions", e))?;
        let removed = self.remove_below(table, watermark).await?;
        if removed > 0 {
            // What left the buffer for the lake (history).
            self.client
                .execute(
                    "UPDATE philotes.tables SET changes_in_lake = changes_in_lake + $2, last_commit_at = now() WHERE id = $1",
                    &[&table, &(removed as i64)],
                )
                .await
                .map_err(|e| db_error("cannot count the changes in the lake", e))?;
        }
        Ok(removed)
    }

    /// Record a commit of `table` to the lake (`philotes.commits`): `kind` `stream` (a worker's
    /// changes) or `copy`, the changes or rows it added, the watermark it carries, how long it
    /// took.
    pub async fn record_commit(
        &self,
        table: i64,
        kind: &str,
        rows: u64,
        watermark: Lsn,
        seconds: Option<f64>,
    ) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO philotes.commits (table_id, kind, rows, watermark, seconds) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &table,
                    &kind,
                    &i64::try_from(rows).unwrap_or(i64::MAX),
                    &(watermark.0 as i64),
                    &seconds,
                ],
            )
            .await
            .map_err(|e| db_error("cannot record a commit", e))?;
        Ok(())
    }

    /// The tables of `pipeline` with changes below `lsn` still buffered: (name, changes, why
    /// stopped).
    pub async fn buffered_below(
        &self,
        pipeline: &str,
        lsn: Lsn,
    ) -> Result<Vec<(String, i64, Option<String>)>> {
        let lsn = lsn.0 as i64;
        let rows = self
            .client
            .query(
                "SELECT t.name, count(*), t.stopped FROM philotes.changes c
                 JOIN philotes.tables t ON t.id = c.table_id
                 WHERE t.pipeline = $1 AND c.lsn < $2 GROUP BY t.name, t.stopped ORDER BY t.name",
                &[&pipeline, &lsn],
            )
            .await
            .map_err(|e| db_error("cannot read the buffer", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Take `table`'s lease (the one workers hold while they write it) if nobody holds it.
    pub async fn try_table_lease(&self, table: i64) -> Result<bool> {
        try_table_lease(&self.client, table).await
    }

    /// Give up `table`'s lease.
    pub async fn release_table_lease(&self, table: i64) -> Result<()> {
        release_table_lease(&self.client, table).await
    }
}

/// A dead letter in the control database, as `philotes dlq list` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub table: String,
    pub lsn: String,
    /// Its position among its table's buffered changes in the transaction.
    pub position: Option<i64>,
    pub op: String,
    pub column: Option<String>,
    pub error: String,
    pub row: serde_json::Value,
    /// When it failed.
    pub time: String,
    /// `open`, `skipped` or `retried`.
    pub state: String,
    pub note: Option<String>,
}

/// A change that could not be written, for [`ControlDb::dead_letter`].
pub struct NewDeadLetter<'a> {
    pub pipeline: &'a str,
    pub table: &'a str,
    pub lsn: Lsn,
    pub position: Option<i64>,
    pub op: &'a str,
    pub column: &'a str,
    pub error: &'a str,
    pub row: serde_json::Value,
}

impl ControlDb {
    /// Record a dead letter and stop its table, in one transaction.
    pub async fn dead_letter(&mut self, table_id: i64, d: NewDeadLetter<'_>) -> Result<i64> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("cannot begin recording a dead letter", e))?;
        let lsn = d.lsn.0 as i64;
        // Failing again (a retry that failed the same way) reopens the same dead letter.
        let existing = tx
            .query_opt(
                "UPDATE philotes.dead_letters SET state = 'open', error = $6, resolved_at = NULL,
                   resolved_note = NULL, created_at = now()
                 WHERE pipeline = $1 AND table_name = $2 AND lsn = $3
                   AND position IS NOT DISTINCT FROM $4 AND op = $5 RETURNING id",
                &[&d.pipeline, &d.table, &lsn, &d.position, &d.op, &d.error],
            )
            .await
            .map_err(|e| db_error("cannot record a dead letter", e))?;
        let id: i64 = match existing {
            Some(r) => r.get(0),
            None => tx
                .query_one(
                    "INSERT INTO philotes.dead_letters
                       (pipeline, table_name, lsn, position, op, column_name, error, row)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &d.pipeline,
                        &d.table,
                        &lsn,
                        &d.position,
                        &d.op,
                        &d.column,
                        &d.error,
                        &d.row,
                    ],
                )
                .await
                .map_err(|e| db_error("cannot record a dead letter", e))?
                .get(0),
        };
        tx.execute(
            "UPDATE philotes.tables SET stopped = $2, updated_at = now() WHERE id = $1",
            &[&table_id, &d.error],
        )
        .await
        .map_err(|e| db_error("cannot stop the table", e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("cannot commit a dead letter", e))?;
        Ok(id)
    }

    /// The dead letters of `pipeline` (every pipeline's when `None`), oldest first.
    pub async fn dead_letters(&self, pipeline: Option<&str>) -> Result<Vec<DeadLetterRow>> {
        dead_letters(&self.client, pipeline, 0, None).await
    }

    /// Decide dead letter `id` (`skipped` or `retried`); see [`decide_dead_letter`].
    pub async fn decide_dead_letter(
        &mut self,
        id: i64,
        state: &str,
        note: Option<&str>,
    ) -> Result<DeadLetterRow> {
        decide_dead_letter(&mut self.client, id, state, note).await
    }

    /// The changes of `table` an operator chose to leave out: (lsn, position).
    pub async fn skipped(&self, pipeline: &str, table: &str) -> Result<Vec<(Lsn, i64)>> {
        let rows = self
            .client
            .query(
                "SELECT lsn, position FROM philotes.dead_letters
                 WHERE pipeline = $1 AND table_name = $2 AND state = 'skipped' AND position IS NOT NULL",
                &[&pipeline, &table],
            )
            .await
            .map_err(|e| db_error("cannot read skipped changes", e))?;
        Ok(rows
            .iter()
            .map(|r| (Lsn(r.get::<_, i64>(0) as u64), r.get(1)))
            .collect())
    }
}

/// The dead letters of `pipeline` (every pipeline's when `None`) with an id above `after`,
/// oldest first, at most `limit` (`None`: all).
pub async fn dead_letters(
    client: &impl tokio_postgres::GenericClient,
    pipeline: Option<&str>,
    after: i64,
    limit: Option<i64>,
) -> Result<Vec<DeadLetterRow>> {
    let rows = client
        .query(
            "SELECT id, table_name, lsn, position, op, column_name, error, row,
                        created_at::text, state, resolved_note
                 FROM philotes.dead_letters WHERE ($1::text IS NULL OR pipeline = $1) AND id > $2
                 ORDER BY id LIMIT $3",
            &[&pipeline, &after, &limit],
        )
        .await
        .map_err(|e| db_error("cannot list dead letters", e))?;
    Ok(rows
        .iter()
        .map(|r| DeadLetterRow {
            id: r.get(0),
            table: r.get(1),
            lsn: Lsn(r.get::<_, i64>(2) as u64).to_string(),
            position: r.get(3),
            op: r.get(4),
            column: r.get(5),
            error: r.get(6),
            row: r.get(7),
            time: r.get(8),
            state: r.get(9),
            note: r.get(10),
        })
        .collect())
}

/// Mark dead letter `id` `skipped` or `retried` with an operator's note; a retried (or
/// skipped) dead letter's table goes on. The dead letter as it is now.
pub async fn decide_dead_letter(
    client: &mut impl tokio_postgres::GenericClient,
    id: i64,
    state: &str,
    note: Option<&str>,
) -> Result<DeadLetterRow> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot begin deciding a dead letter", e))?;
    let row = tx
        .query_opt(
            "UPDATE philotes.dead_letters SET state = $2, resolved_at = now(), resolved_note = $3
                 WHERE id = $1 RETURNING pipeline, table_name",
            &[&id, &state, &note],
        )
        .await
        .map_err(|e| db_error("cannot decide a dead letter", e))?;
    let Some(row) = row else {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "no dead letter {id} in the control database: `philotes dlq list --all` shows the ids"
            ),
        ));
    };
    let (pipeline, table): (String, String) = (row.get(0), row.get(1));
    // The table goes on once none of its dead letters is open.
    tx.execute(
        "UPDATE philotes.tables SET stopped = NULL, updated_at = now()
             WHERE pipeline = $1 AND name = $2 AND NOT EXISTS (
               SELECT 1 FROM philotes.dead_letters
               WHERE pipeline = $1 AND table_name = $2 AND state = 'open')",
        &[&pipeline, &table],
    )
    .await
    .map_err(|e| db_error("cannot let the table go on", e))?;
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit a decision", e))?;
    dead_letters(client, Some(&pipeline), id - 1, Some(1))
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| Error::new(ErrorKind::Internal, "a decided dead letter vanished"))
}
