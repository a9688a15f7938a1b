//! Pipelines defined through `philotes api`: what a managed `ingest` or `worker` runs.
//!
//! A definition holds everything a role needs but the process's own settings: the source (its
//! password sealed), publication, tables, slot, destination (its secrets sealed) and flush
//! settings. The roles read the definitions every few seconds, so a pipeline created, started,
//! paused or stopped through the API is followed without a restart.

use philotes_core::{Error, ErrorKind, Result, Secret};
use serde::{Deserialize, Serialize};

use crate::sealed::Cipher;
use crate::{ControlDb, db_error};

/// What seals a source's password.
pub const SOURCE_PASSWORD: &str = "philotes.sources.password";
/// What seals a pipeline's destination secrets.
pub const PIPELINE_SECRETS: &str = "philotes.pipeline_specs.secrets";

/// What the operator asked of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Paused,
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Paused => "paused",
            Desired::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Desired {
        match s {
            "running" => Desired::Running,
            "paused" => Desired::Paused,
            _ => Desired::Stopped,
        }
    }
}

/// Where a pipeline's tables go, without secrets (absent: the role's own setting).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_warehouse: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_path_style: Option<bool>,
}

/// A destination's secrets, sealed together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_credential: Option<String>,
}

/// A source's connection settings as stored.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    pub host: String,
    pub port: i32,
    pub database: String,
    pub user: String,
    pub password_enc: Option<Vec<u8>>,
    pub sslmode: String,
}

impl SourceSpec {
    /// The `key=value` connection string, with the password opened.
    pub fn conninfo(&self, cipher: &Cipher, application_name: &str) -> Result<Secret> {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut info = format!(
            "host={} port={} dbname={} user={} sslmode={} connect_timeout=10 application_name={}",
            quote(&self.host),
            self.port,
            quote(&self.database),
            quote(&self.user),
            self.sslmode,
            quote(application_name),
        );
        if let Some(sealed) = &self.password_enc {
            let pw = cipher.open(SOURCE_PASSWORD, sealed)?;
            info.push_str(&format!(" password={}", quote(pw.expose())));
        }
        Ok(Secret::new(info))
    }
}

/// A pipeline as defined.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    pub id: i64,
    pub name: String,
    pub source: SourceSpec,
    pub slot: String,
    pub publication: String,
    pub tables: Vec<String>,
    pub namespace: Option<String>,
    pub destination: Destination,
    pub secrets_enc: Option<Vec<u8>>,
    pub flush_interval: Option<String>,
    pub flush_rows: Option<i64>,
    pub desired: Desired,
    /// Changes with every edit of the definition (a role restarts the pipeline on it).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl PipelineSpec {
    pub fn secrets(&self, cipher: &Cipher) -> Result<DestinationSecrets> {
        let Some(sealed) = &self.secrets_enc else {
            return Ok(DestinationSecrets::default());
        };
        let text = cipher.open(PIPELINE_SECRETS, sealed)?;
        serde_json::from_str(text.expose()).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "a pipeline's stored secrets cannot be read; set them again through the API",
            )
        })
    }
}

impl ControlDb {
    /// Every pipeline whose state is not `stopped`, with its source.
    pub async fn active_specs(&self) -> Result<Vec<PipelineSpec>> {
        let rows = self
            .client
            .query(
                "SELECT p.id, p.name, p.slot, p.publication, p.tables, p.namespace, p.destination,
                        p.secrets_enc, p.flush_interval, p.flush_rows, p.desired, p.updated_at,
                        s.host, s.port, s.database, s.username, s.password_enc, s.sslmode, s.updated_at
                 FROM philotes.pipeline_specs p JOIN philotes.sources s ON s.id = p.source_id
                 WHERE p.desired <> 'stopped' ORDER BY p.id",
                &[],
            )
            .await
            .map_err(|e| db_error("cannot read the pipelines' definitions", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let destination: serde_json::Value = r.get(6);
            let source_updated: chrono::DateTime<chrono::Utc> = r.get(18);
            let updated: chrono::DateTime<chrono::Utc> = r.get(11);
            out.push(PipelineSpec {
                id: r.get(0),
                name: r.get(1),
                slot: r.get(2),
                publication: r.get(3),
                tables: r.get(4),
                namespace: r.get(5),
                destination: serde_json::from_value(destination).unwrap_or_default(),
                secrets_enc: r.get(7),
                flush_interval: r.get(8),
                flush_rows: r.get(9),
                desired: Desired::parse(r.get::<_, &str>(10)),
                updated_at: updated.max(source_updated),
                source: SourceSpec {
                    host: r.get(12),
                    port: r.get(13),
                    database: r.get(14),
                    user: r.get(15),
                    password_enc: r.get(16),
                    sslmode: r.get(17),
                },
            });
        }
        Ok(out)
    }

    /// Whether the pipeline with this slot was paused through the API.
    pub async fn paused(&self, slot: &str) -> Result<bool> {
        let row = self
            .client
            .query_opt(
                "SELECT desired = 'paused' FROM philotes.pipeline_specs WHERE slot = $1",
                &[&slot],
            )
            .await
            .map_err(|e| db_error("cannot read the pipeline's state", e))?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// Claim the oldest verification nobody started, of a pipeline that is not stopped and
    /// whose slot is one of `slots` (the pipelines the caller streams).
    pub async fn claim_verify(&mut self, slots: &[String]) -> Result<Option<VerifyRun>> {
        if slots.is_empty() {
            return Ok(None);
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("cannot claim a verification", e))?;
        let row = tx
            .query_opt(
                "SELECT v.id, v.pipeline_id, v.tables FROM philotes.verify_runs v
                 JOIN philotes.pipeline_specs p ON p.id = v.pipeline_id
                 WHERE (v.started_at IS NULL
                        -- Claimed by an ingest that died before finishing it: run it again.
                        OR (v.finished_at IS NULL AND v.started_at < now() - interval '15 minutes'))
                   AND p.desired <> 'stopped' AND p.slot = ANY($1)
                 ORDER BY v.id LIMIT 1 FOR UPDATE OF v SKIP LOCKED",
                &[&slots],
            )
            .await
            .map_err(|e| db_error("cannot claim a verification", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let run = VerifyRun {
            id: row.get(0),
            pipeline_id: row.get(1),
            tables: row.get(2),
        };
        tx.execute(
            "UPDATE philotes.verify_runs SET started_at = now() WHERE id = $1",
            &[&run.id],
        )
        .await
        .map_err(|e| db_error("cannot claim a verification", e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("cannot claim a verification", e))?;
        Ok(Some(run))
    }

    /// Record how verification `id` ended: its outcome and report, or why it could not run.
    pub async fn finish_verify(
        &self,
        id: i64,
        outcome: Option<&str>,
        report: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<()> {
        self.client
            .execute(
                "UPDATE philotes.verify_runs SET finished_at = now(), outcome = $2, report = $3, error = $4 WHERE id = $1",
                &[&id, &outcome, &report, &error],
            )
            .await
            .map_err(|e| db_error("cannot record a verification", e))?;
        Ok(())
    }
}

/// A verification claimed by a managed ingest.
#[derive(Clone, Debug)]
pub struct VerifyRun {
    pub id: i64,
    pub pipeline_id: i64,
    pub tables: Vec<String>,
}
