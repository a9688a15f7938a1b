//! Opening the Iceberg catalog: the embedded SQL catalog or a REST catalog (Lakekeeper), with a
//! local or S3 warehouse.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::io::{
    S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY,
    StorageFactory,
};
use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::SqlCatalogBuilder;
use iceberg_storage_opendal::OpenDalStorageFactory;
use philotes_config::{CatalogSettings, Settings};
use philotes_core::{Error, ErrorKind, Result};

pub(crate) fn sink_error(what: impl Into<String>, e: iceberg::Error) -> Error {
    Error::new(ErrorKind::Sink, what).with_source(e)
}

/// Open the catalog the settings name.
pub async fn open_catalog(settings: &Settings) -> Result<Arc<dyn Catalog>> {
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
            Ok(Arc::new(catalog))
        }
        CatalogSettings::Rest {
            uri,
            token,
            credential,
            warehouse,
            prefix,
        } => {
            props.insert("uri".into(), uri.trim_end_matches('/').to_string());
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
            Ok(Arc::new(catalog))
        }
    }
}
