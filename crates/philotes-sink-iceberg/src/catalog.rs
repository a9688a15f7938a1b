//! Opening the Iceberg catalog: the embedded SQL catalog or a REST catalog (Lakekeeper), with a
//! local or S3 warehouse.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use iceberg::io::{
    S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY,
    StorageFactory,
};
use iceberg::spec::TableMetadataBuildResult;
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, MetadataLocation};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::SqlCatalogBuilder;
use iceberg_storage_opendal::OpenDalStorageFactory;
use philotes_config::{CatalogSettings, Settings};
use philotes_core::{Error, ErrorKind, Result};

use crate::storage::Store;

/// Iceberg's table property: delete metadata files that fall off the metadata log at commit.
pub const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";
/// Iceberg's table property: how many earlier metadata files the metadata log lists.
pub const PREVIOUS_VERSIONS_MAX: &str = "write.metadata.previous-versions-max";

pub(crate) fn sink_error(what: impl Into<String>, e: iceberg::Error) -> Error {
    Error::new(ErrorKind::Sink, what).with_source(e)
}

/// Whether a failed [`Lake::commit_metadata`] certainly left the table as it was (a lost race,
/// or a catalog that refused the commit), so the files written for it may be deleted. Any other
/// failure (a dropped connection, a timeout, a 5xx) may have come after the commit landed.
pub fn commit_refused(e: &Error) -> bool {
    e.kind() == ErrorKind::Conflict || e.context("http_status").is_some_and(|s| s.starts_with('4'))
}

/// An open catalog, and the means to commit what the `iceberg` crate has no action for.
#[derive(Clone)]
pub struct Lake {
    pub catalog: Arc<dyn Catalog>,
    committer: Arc<MetadataCommitter>,
    /// Lists the files under a table's location (orphan cleanup).
    pub store: Arc<Store>,
}

/// What a metadata commit must find unchanged in the catalog, beyond the table itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The current schema (a schema change).
    Schema,
    /// The main branch's snapshot (a maintenance commit: a replace snapshot, expired snapshots).
    MainSnapshot,
}

/// Commits metadata changes the `iceberg` crate cannot express through its transactions
/// (renaming and widening columns, replace snapshots, removing snapshots): the SQL catalog's
/// compare-and-swap, or the REST catalog's commit endpoint, both guarded so a concurrent change
/// makes the commit fail with [`ErrorKind::Conflict`], not vanish.
enum MetadataCommitter {
    Sql {
        pool: sqlx::AnyPool,
        catalog_name: String,
    },
    Rest {
        http: reqwest::Client,
        /// `<uri>/v1[/<prefix>]`
        base: String,
        token: Option<String>,
        oauth2: bool,
    },
}

impl Lake {
    /// Commit `built` (made from `table`'s metadata) and return the table as it is now. A
    /// concurrent commit since `table` was loaded makes this fail with [`ErrorKind::Conflict`]
    /// (on the SQL catalog any commit; on a REST catalog one that breaks `guard`): reload and
    /// build again.
    pub async fn commit_metadata(
        &self,
        table: &Table,
        built: TableMetadataBuildResult,
        guard: Guard,
    ) -> Result<Table> {
        let ident = table.identifier().clone();
        let current = table
            .metadata_location_result()
            .map_err(|e| sink_error("the table has no metadata location", e))?
            .to_string();
        match self.committer.as_ref() {
            MetadataCommitter::Sql { pool, catalog_name } => {
                let next = MetadataLocation::from_str(&current)
                    .map_err(|e| sink_error("cannot read the metadata location", e))?
                    .with_next_version();
                built
                    .metadata
                    .write_to(table.file_io(), &next)
                    .await
                    .map_err(|e| sink_error("cannot write table metadata", e))?;
                let next = next.to_string();
                let done = sqlx::query(
                    "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
                     WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
                       AND metadata_location = ?",
                )
                .bind(&next)
                .bind(&current)
                .bind(catalog_name)
                .bind(ident.namespace().join("."))
                .bind(ident.name())
                .bind(&current)
                .execute(pool)
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Sink, "cannot commit to the SQL catalog").with_source(e)
                })?;
                if done.rows_affected() != 1 {
                    // Nobody will read what we wrote.
                    let _ = table.file_io().delete(&next).await;
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "the table changed in the catalog while Philotes committed to it",
                    )
                    .with("table", &ident));
                }
                let delete_old = built
                    .metadata
                    .properties()
                    .get(DELETE_AFTER_COMMIT)
                    .is_some_and(|v| v == "true");
                if delete_old {
                    // As Iceberg's `write.metadata.delete-after-commit.enabled` asks: metadata
                    // files that fell off the metadata log are never read again.
                    for old in &built.expired_metadata_logs {
                        if let Err(e) = table.file_io().delete(&old.metadata_file).await {
                            tracing::debug!(file = %old.metadata_file, error = %e, "cannot delete an old metadata file (maintenance will)");
                        }
                    }
                }
            }
            MetadataCommitter::Rest {
                http,
                base,
                token,
                oauth2,
            } => {
                if *oauth2 && token.is_none() {
                    return Err(Error::new(
                        ErrorKind::SchemaChange,
                        "schema changes and maintenance through a REST catalog need catalog_token (OAuth2 client credentials are not supported for these commits yet)",
                    )
                    .with("table", &ident));
                }
                let guarded = match guard {
                    Guard::Schema => serde_json::json!({"type": "assert-current-schema-id",
                        "current-schema-id": table.metadata().current_schema_id()}),
                    Guard::MainSnapshot => serde_json::json!({"type": "assert-ref-snapshot-id",
                        "ref": "main", "snapshot-id": table.metadata().current_snapshot_id()}),
                };
                let body = serde_json::json!({
                    "identifier": {"namespace": ident.namespace().as_ref(), "name": ident.name()},
                    "requirements": [
                        {"type": "assert-table-uuid", "uuid": table.metadata().uuid()},
                        guarded,
                    ],
                    "updates": built.changes,
                });
                let url = format!(
                    "{base}/namespaces/{}/tables/{}",
                    ident.namespace().to_url_string(),
                    ident.name()
                );
                let mut req = http.post(&url).json(&body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.map_err(|e| {
                    Error::new(ErrorKind::Sink, "cannot reach the REST catalog").with_source(e)
                })?;
                let status = resp.status();
                if status == reqwest::StatusCode::CONFLICT {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "the table changed in the catalog while Philotes committed to it",
                    )
                    .with("table", &ident));
                }
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::Sink,
                        format!("the REST catalog refused a commit ({status}): {text}"),
                    )
                    .with("table", &ident)
                    .with("http_status", status.as_u16()));
                }
            }
        }
        self.catalog
            .load_table(&ident)
            .await
            .map_err(|e| sink_error(format!("cannot load table {ident}"), e))
    }
}

/// Open the catalog the settings name.
pub async fn open_catalog(settings: &Settings) -> Result<Lake> {
    let mut props: HashMap<String, String> = HashMap::new();
    let storage: Arc<dyn StorageFactory> = if settings.warehouse.starts_with("s3://") {
        let s3 = &settings.s3;
        if let Some(endpoint) = &s3.endpoint {
            props.insert(S3_ENDPOINT.into(), endpoint.clone());
        }
        props.insert(S3_REGION.into(), s3.region.clone());
        if let Some(key) = &s3.access_key_id {
            props.insert(S3_ACCESS_KEY_ID.into(), key.clone());
        }
        if let Some(secret) = &s3.secret_access_key {
            props.insert(S3_SECRET_ACCESS_KEY.into(), secret.expose().to_string());
        }
        props.insert(S3_PATH_STYLE_ACCESS.into(), s3.path_style.to_string());
        Arc::new(OpenDalStorageFactory::S3 {
            customized_credential_load: None,
        })
    } else {
        let dir = settings.warehouse.trim_start_matches("file://");
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Sink,
                format!("cannot create the warehouse directory {dir}"),
            )
            .with_source(e)
        })?;
        Arc::new(OpenDalStorageFactory::Fs)
    };
    props.insert(
        "warehouse".into(),
        settings.warehouse.trim_end_matches('/').to_string(),
    );
    match &settings.catalog {
        CatalogSettings::Sql { uri } => {
            let sqlite_dir = uri
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
                .and_then(|p| std::path::Path::new(p).parent());
            if let Some(parent) = sqlite_dir {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::new(
                        ErrorKind::Sink,
                        format!("cannot create the data directory {}", parent.display()),
                    )
                    .with_source(e)
                })?;
            }
            sqlx::any::install_default_drivers();
            props.insert("uri".into(), uri.clone());
            props.insert("sql_bind_style".into(), "QMark".into());
            let catalog = SqlCatalogBuilder::default()
                .with_storage_factory(storage)
                .load(settings.catalog_name.clone(), props)
                .await
                .map_err(|e| sink_error(format!("cannot open the SQL catalog at {uri}"), e))?;
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(uri)
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Sink,
                        format!("cannot open the SQL catalog at {uri}"),
                    )
                    .with_source(e)
                })?;
            Ok(Lake {
                catalog: Arc::new(catalog),
                committer: Arc::new(MetadataCommitter::Sql {
                    pool,
                    catalog_name: settings.catalog_name.clone(),
                }),
                store: Arc::new(Store::new(settings)),
            })
        }
        CatalogSettings::Rest {
            uri,
            token,
            credential,
            warehouse,
            prefix,
        } => {
            let uri = uri.trim_end_matches('/').to_string();
            props.insert("uri".into(), uri.clone());
            if let Some(w) = warehouse {
                props.insert("warehouse".into(), w.clone());
            }
            if let Some(p) = prefix {
                props.insert("prefix".into(), p.clone());
            }
            if let Some(t) = token {
                props.insert("token".into(), t.expose().to_string());
            }
            if let Some(c) = credential {
                props.insert("credential".into(), c.expose().to_string());
            }
            let catalog = RestCatalogBuilder::default()
                .with_storage_factory(storage)
                .load(settings.catalog_name.clone(), props)
                .await
                .map_err(|e| {
                    sink_error(
                        format!("cannot reach the REST catalog at {uri}: check the URI and the credentials"),
                        e,
                    )
                })?;
            let base = match prefix {
                Some(p) => format!("{uri}/v1/{}", p.trim_matches('/')),
                None => format!("{uri}/v1"),
            };
            Ok(Lake {
                catalog: Arc::new(catalog),
                committer: Arc::new(MetadataCommitter::Rest {
                    http: reqwest::Client::new(),
                    base,
                    token: token.as_ref().map(|t| t.expose().to_string()),
                    oauth2: credential.is_some(),
                }),
                store: Arc::new(Store::new(settings)),
            })
        }
    }
}
