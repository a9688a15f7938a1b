//! Each running pipeline's history: a sample per interval (a minute by default) of its
//! counters, buffer depth and freshness, kept 7 days in the control database, so the dashboard
//! draws throughput, lag and depth charts with no Prometheus.
//!
//! Why the API samples: it is the one role that always runs where the dashboard is, and every
//! number comes from the control database (the counters ingest and the workers keep in
//! `philotes.tables`, the buffered changes' source commit times), so sampling touches no
//! source. Several API replicas sample the same interval into the same row: the first wins.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::json::Problems;
use crate::store::db;

/// How long samples are kept.
pub const KEEP_DAYS: i32 = 7;

/// The sampler's task; ends when dropped.
pub struct Sampler(tokio::task::JoinHandle<()>);

impl Drop for Sampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sample every pipeline that is not stopped each `every`, on a connection of its own, and
/// remove samples older than [`KEEP_DAYS`].
pub fn spawn(conn: philotes_source_postgres::SourceConn, every: Duration) -> Sampler {
    Sampler(tokio::spawn(async move {
        let seconds = every.as_secs_f64().max(1.0);
        let mut client: Option<tokio_postgres::Client> = None;
        let mut failing = false;
        loop {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = conn.connect().await.ok();
            }
            let result = match client.as_ref() {
                Some(c) => sample(c, seconds).await,
                None => Err("cannot connect to the control database".to_string()),
            };
            match result {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "cannot record the pipelines' history (the dashboard's charts miss this interval); is the control database up?");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(every).await;
        }
    }))
}

/// One sample of every pipeline that is not stopped; the number of samples written.
pub async fn sample(client: &tokio_postgres::Client, seconds: f64) -> Result<u64, String> {
    let n = client
        .execute(
            "INSERT INTO philotes.pipeline_history
                 (pipeline_id, at, changes_buffered, changes_in_lake, buffer_depth, lag_seconds)
             SELECT p.id, to_timestamp(floor(extract(epoch FROM now())::double precision / $1) * $1),
                    coalesce(sum(t.changes_buffered), 0)::bigint,
                    coalesce(sum(t.changes_in_lake), 0)::bigint,
                    coalesce(sum(t.changes_now), 0)::bigint,
                    coalesce((SELECT extract(epoch FROM now()) - min(o.ts_us) / 1e6
                      FROM philotes.tables b,
                           LATERAL (SELECT c.ts_us FROM philotes.changes c WHERE c.table_id = b.id
                                    ORDER BY c.lsn, c.seq LIMIT 1) o
                      WHERE b.pipeline = p.slot), 0)::double precision
             FROM philotes.pipeline_specs p LEFT JOIN philotes.tables t ON t.pipeline = p.slot
             WHERE p.desired <> 'stopped'
             GROUP BY p.id, p.slot
             ON CONFLICT (pipeline_id, at) DO NOTHING",
            &[&seconds],
        )
        .await
        .map_err(|e| e.to_string())?;
    for old in [
        "DELETE FROM philotes.pipeline_history WHERE at < now() - make_interval(days => $1)",
        "DELETE FROM philotes.commits WHERE at < now() - make_interval(days => $1)",
    ] {
        client
            .execute(old, &[&KEEP_DAYS])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(n)
}

/// One sample of a pipeline's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sample {
    /// The start of the interval (RFC 3339).
    pub at: String,
    /// Changes committed to Iceberg per second since the sample before (absent on the first).
    pub lake_changes_per_second: Option<f64>,
    /// Changes ingest buffered per second since the sample before (absent on the first).
    pub buffered_changes_per_second: Option<f64>,
    /// Changes buffered and not yet in Iceberg.
    pub buffer_depth: i64,
    /// Age of the oldest change not yet in Iceberg, in seconds (0: the lake holds everything
    /// buffered).
    pub lag_seconds: f64,
}

/// `?hours=`: how far back (1 to 168, default 24).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How many hours back (1 to 168; default 24).
    #[param(minimum = 1, maximum = 168)]
    pub hours: Option<i32>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}/history", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id"), HistoryParams),
    responses((status = 200, body = [Sample]), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// The pipeline's samples (one per interval, a minute by default), oldest first: throughput
/// into the buffer and into Iceberg, buffer depth and the age of the oldest change not in
/// Iceberg yet. Kept 7 days.
pub async fn history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult<Json<Vec<Sample>>> {
    let q = axum::extract::Query::<HistoryParams>::try_from_uri(&uri).map_err(|e| {
        ApiError::invalid(vec![FieldError {
            field: "query".into(),
            message: e.body_text(),
        }])
    })?;
    let hours = q.0.hours.unwrap_or(24);
    let mut problems = Problems::default();
    problems.check((1..=168).contains(&hours), "hours", "between 1 and 168");
    if !problems.0.is_empty() {
        return Err(ApiError::invalid(problems.0));
    }
    let (id, _) = crate::pipelines::slot_of(&s, &id).await?;
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    (changes_in_lake - lag(changes_in_lake) OVER w)::double precision
                      / nullif(extract(epoch FROM at - lag(at) OVER w)::double precision, 0),
                    (changes_buffered - lag(changes_buffered) OVER w)::double precision
                      / nullif(extract(epoch FROM at - lag(at) OVER w)::double precision, 0),
                    buffer_depth, lag_seconds
             FROM philotes.pipeline_history
             WHERE pipeline_id = $1 AND at >= now() - make_interval(hours => $2)
             WINDOW w AS (ORDER BY at)
             ORDER BY at",
            &[&id, &hours],
        )
        .await
        .map_err(db)?;
    Ok(Json(
        rows.iter()
            .map(|r| Sample {
                at: r.get(0),
                // A counter never goes back; a negative rate would be a table removed.
                lake_changes_per_second: r.get::<_, Option<f64>>(1).map(|v| v.max(0.0)),
                buffered_changes_per_second: r.get::<_, Option<f64>>(2).map(|v| v.max(0.0)),
                buffer_depth: r.get(3),
                lag_seconds: r.get::<_, f64>(4).max(0.0),
            })
            .collect(),
    ))
}

/// One commit of a table to the lake.
#[derive(Debug, Serialize, ToSchema)]
pub struct Commit {
    /// `schema.table` on the source.
    pub table: String,
    /// When it landed (RFC 3339).
    pub at: String,
    /// `stream` (a worker's changes) or `copy` (an initial copy or a resync).
    pub kind: String,
    /// Changes (stream) or rows (copy) it added.
    pub rows: i64,
    /// Everything of the table below this position is in the lake after it.
    pub watermark: String,
    /// How long the commit took (streaming commits).
    pub seconds: Option<f64>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}/commits", tag = "pipelines",
    params(("id" = i64, Path, description = "The pipeline's id")),
    responses((status = 200, body = [Commit]), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
/// The pipeline's 50 most recent commits to the lake over all its tables, newest first. Kept 7
/// days.
pub async fn commits(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Commit>>> {
    let (_, slot) = crate::pipelines::slot_of(&s, &id).await?;
    let mut conn = s.store().get().await?;
    let rows = conn
        .client()?
        .query(
            "SELECT t.name, to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    c.kind, c.rows, c.watermark, c.seconds
             FROM philotes.commits c JOIN philotes.tables t ON t.id = c.table_id
             WHERE t.pipeline = $1 ORDER BY c.at DESC, c.id DESC LIMIT 50",
            &[&slot],
        )
        .await
        .map_err(db)?;
    Ok(Json(
        rows.iter()
            .map(|r| Commit {
                table: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                rows: r.get(3),
                watermark: philotes_core::Lsn(r.get::<_, i64>(4) as u64).to_string(),
                seconds: r.get(5),
            })
            .collect(),
    ))
}
