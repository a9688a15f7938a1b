//! Listing the files under a table's location, which the `iceberg` crate's `FileIO` cannot do.
//!
//! Orphan cleanup needs to see every file a table's location holds — the Parquet files of an
//! interrupted write, the metadata of a commit that lost its race — and how old each is, so it
//! never touches a file a write still under way may commit. Reading and deleting go through the
//! table's own `FileIO`; only listing comes here, through the same OpenDAL services and the same
//! S3 settings.

use std::collections::HashMap;
use std::sync::Mutex;

use opendal::Operator;
use philotes_config::Settings;
use philotes_core::{Error, ErrorKind, Result};

/// A file found under a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The full location, as Iceberg metadata names it (`file:///…` or `s3://bucket/…`).
    pub location: String,
    pub size: u64,
    /// Last modification, in milliseconds since the epoch.
    pub modified_ms: i64,
}

/// Lists files under `file://` and `s3://` locations.
pub struct Store {
    s3: Option<S3Access>,
    /// One operator per bucket (and one for the local file system, under "").
    operators: Mutex<HashMap<String, Operator>>,
}

struct S3Access {
    endpoint: Option<String>,
    region: String,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    path_style: bool,
}

fn store_error(what: impl Into<String>, e: opendal::Error) -> Error {
    Error::new(ErrorKind::Sink, what).with_source(e)
}

impl Store {
    pub fn new(settings: &Settings) -> Store {
        let s3 = &settings.s3;
        Store {
            s3: Some(S3Access {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3
                    .secret_access_key
                    .as_ref()
                    .map(|s| s.expose().to_string()),
                path_style: s3.path_style,
            }),
            operators: Mutex::new(HashMap::new()),
        }
    }

    /// The operator for `location` and the path inside it.
    fn operator(&self, location: &str) -> Result<(Operator, String, String)> {
        let (key, prefix, path) = if let Some(rest) = location.strip_prefix("file://") {
            (String::new(), "file://".to_string(), rest.to_string())
        } else if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            (
                bucket.to_string(),
                format!("s3://{bucket}/"),
                path.to_string(),
            )
        } else if location.starts_with('/') {
            (String::new(), String::new(), location.to_string())
        } else {
            return Err(Error::new(
                ErrorKind::Sink,
                format!("cannot list {location}: only file:// and s3:// locations are supported"),
            ));
        };
        let mut ops = self
            .operators
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "storage lock poisoned"))?;
        if let Some(op) = ops.get(&key) {
            return Ok((op.clone(), prefix, path));
        }
        let op = if key.is_empty() {
            Operator::new(opendal::services::Fs::default().root("/"))
                .map_err(|e| store_error("cannot open the local file system", e))?
                .finish()
        } else {
            let mut b = opendal::services::S3::default()
                .bucket(&key)
                .root("/")
                .disable_ec2_metadata();
            if let Some(s3) = &self.s3 {
                b = b.region(&s3.region);
                if let Some(e) = &s3.endpoint {
                    b = b.endpoint(e);
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.access_key_id(k);
                }
                if let Some(k) = &s3.secret_access_key {
                    b = b.secret_access_key(k);
                }
                if !s3.path_style {
                    b = b.enable_virtual_host_style();
                }
            }
            Operator::new(b)
                .map_err(|e| store_error(format!("cannot open the S3 bucket {key}"), e))?
                .finish()
        };
        ops.insert(key, op.clone());
        Ok((op, prefix, path))
    }

    /// Every file under `location` (a directory), recursively.
    pub async fn list(&self, location: &str) -> Result<Vec<StoredFile>> {
        let (op, prefix, path) = self.operator(location)?;
        let mut dir = path.trim_start_matches('/').to_string();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        let entries = match op.list_with(&dir).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(store_error(format!("cannot list {location}"), e)),
        };
        let mut files = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut meta = entry.metadata().clone();
            if !meta.is_file() {
                continue;
            }
            // The file system lists names only; S3 lists sizes and times too.
            if meta.last_modified().is_none() {
                meta = match op.stat(entry.path()).await {
                    Ok(m) => m,
                    // Deleted since it was listed.
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(store_error(format!("cannot look at {}", entry.path()), e));
                    }
                };
            }
            let modified_ms = meta
                .last_modified()
                .map(|t| t.into_inner().as_millisecond())
                .unwrap_or(i64::MAX);
            let lead = if prefix.starts_with("s3://") { "" } else { "/" };
            files.push(StoredFile {
                location: format!("{prefix}{lead}{}", entry.path().trim_start_matches('/')),
                size: meta.content_length(),
                modified_ms,
            });
        }
        Ok(files)
    }
}
