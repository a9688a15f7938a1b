//! Layered configuration for `philotes run` and the commands that read the lake.
//!
//! Every key can come from four places, highest first: a command-line flag, a `PHILOTES_*`
//! environment variable, a TOML file (`--config`), and the built-in default. The CLI fills a
//! [`Layer`] from flags and environment (clap does both), [`Layer::from_toml`] reads the file,
//! and [`Layer::resolve`] merges them and checks the result into [`Settings`].
//!
//! [`KEYS`] lists every key with its flag, variable, default and a line of documentation; the
//! README's reference table is checked against it by a test, so the two cannot drift apart.

use std::path::PathBuf;
use std::time::Duration;

use philotes_core::{Error, ErrorKind, Result, Secret};
use serde::Deserialize;

mod keys;
pub use keys::{KEYS, KeyDoc};

/// One layer of configuration: every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub source: Option<Secret>,
    pub publication: Option<String>,
    pub tables: Option<Vec<String>>,
    pub slot: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub namespace: Option<String>,
    pub catalog_name: Option<String>,
    pub catalog_uri: Option<String>,
    pub catalog_token: Option<Secret>,
    pub catalog_credential: Option<Secret>,
    pub catalog_warehouse: Option<String>,
    pub catalog_prefix: Option<String>,
    pub warehouse: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    pub s3_path_style: Option<bool>,
    pub flush_interval: Option<String>,
    pub flush_rows: Option<u64>,
    pub batch_rows: Option<usize>,
    pub stream_large_transactions: Option<bool>,
    pub until_caught_up: Option<bool>,
    pub maintenance: Option<bool>,
    pub maintenance_interval: Option<String>,
    pub mirror: Option<bool>,
    pub mirror_interval: Option<String>,
    pub compaction_target_size: Option<String>,
    pub snapshot_max_age: Option<String>,
    pub snapshot_keep_min: Option<usize>,
    pub orphan_min_age: Option<String>,
    pub changelog_retention: Option<String>,
    pub metrics_addr: Option<String>,
    pub buffer_url: Option<Secret>,
    pub shutdown_timeout: Option<String>,
    pub buffer_high_rows: Option<u64>,
    pub buffer_low_rows: Option<u64>,
}

macro_rules! merge_fields {
    ($hi:expr, $lo:expr, $($f:ident),*) => {
        Layer { $($f: $hi.$f.or($lo.$f)),* }
    };
}

impl Layer {
    /// Read a TOML file layer; unknown keys are an error (a typo must not be ignored).
    pub fn from_toml_file(path: &std::path::Path) -> Result<Layer> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot read the configuration file {}", path.display()),
            )
            .with_source(e)
        })?;
        Self::from_toml(&text).map_err(|e| e.with("file", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Layer> {
        toml::from_str(text).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("the configuration file is not valid: {}", e.message()),
            )
        })
    }

    /// This layer over `lower`: a value set here wins.
    pub fn over(self, lower: Layer) -> Layer {
        merge_fields!(
            self,
            lower,
            source,
            publication,
            tables,
            slot,
            data_dir,
            namespace,
            catalog_name,
            catalog_uri,
            catalog_token,
            catalog_credential,
            catalog_warehouse,
            catalog_prefix,
            warehouse,
            s3_endpoint,
            s3_region,
            s3_access_key_id,
            s3_secret_access_key,
            s3_path_style,
            flush_interval,
            flush_rows,
            batch_rows,
            stream_large_transactions,
            until_caught_up,
            maintenance,
            maintenance_interval,
            mirror,
            mirror_interval,
            compaction_target_size,
            snapshot_max_age,
            snapshot_keep_min,
            orphan_min_age,
            changelog_retention,
            metrics_addr,
            buffer_url,
            shutdown_timeout,
            buffer_high_rows,
            buffer_low_rows
        )
    }

    /// Apply defaults and check the merged configuration.
    pub fn resolve(self) -> Result<Settings> {
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./philotes-data"));
        let catalog = match self.catalog_uri.filter(|u| !u.is_empty()) {
            None => CatalogSettings::Sql {
                uri: format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("catalog.db").display()
                ),
            },
            Some(uri) => CatalogSettings::Rest {
                uri,
                token: self.catalog_token.filter(|s| !s.is_empty()),
                credential: self.catalog_credential.filter(|s| !s.is_empty()),
                warehouse: self.catalog_warehouse.filter(|s| !s.is_empty()),
                prefix: self.catalog_prefix.filter(|s| !s.is_empty()),
            },
        };
        let warehouse = match self.warehouse.filter(|w| !w.is_empty()) {
            Some(w) => w,
            None => {
                let dir = absolute(&data_dir.join("warehouse"))?;
                format!("file://{}", dir.display())
            }
        };
        if !(warehouse.starts_with("file://") || warehouse.starts_with("s3://")) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "warehouse `{warehouse}` is neither a file:// nor an s3:// location; \
                     set --warehouse to e.g. s3://bucket/lake or leave it empty for DATA_DIR/warehouse"
                ),
            ));
        }
        let flush_interval = match self.flush_interval {
            Some(s) => parse_duration(&s)?,
            None => Duration::from_secs(1),
        };
        let batch_rows = self.batch_rows.unwrap_or(16_384);
        if batch_rows == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "batch_rows must be at least 1",
            ));
        }
        let buffer_high_rows = self.buffer_high_rows.unwrap_or(2_000_000);
        let buffer_low_rows = self.buffer_low_rows.unwrap_or(buffer_high_rows / 2);
        if buffer_low_rows >= buffer_high_rows {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "buffer_low_rows ({buffer_low_rows}) must be below buffer_high_rows ({buffer_high_rows}): ingest pauses at the high mark and resumes below the low one"
                ),
            ));
        }
        let flush_rows = self.flush_rows.unwrap_or(1_000_000);
        if flush_rows == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "flush_rows must be at least 1",
            ));
        }
        let namespace = self.namespace.filter(|n| !n.is_empty());
        let maintenance = MaintenanceSettings {
            enabled: self.maintenance.unwrap_or(true),
            interval: duration_or(self.maintenance_interval, Duration::from_secs(300))?,
            target_file_size: match self.compaction_target_size {
                Some(s) => parse_size(&s)? as u64,
                None => 128 << 20,
            },
            snapshot_max_age: duration_or(self.snapshot_max_age, Duration::from_secs(600))?,
            snapshot_keep_min: self.snapshot_keep_min.unwrap_or(10),
            orphan_min_age: duration_or(self.orphan_min_age, Duration::from_secs(3 * 86_400))?,
            changelog_retention: match self.changelog_retention.as_deref() {
                None | Some("") | Some("off") => None,
                Some(s) => Some(parse_duration(s)?),
            },
        };
        let mirror = MirrorSettings {
            enabled: self.mirror.unwrap_or(false),
            interval: duration_or(self.mirror_interval, Duration::from_secs(2))?,
        };
        if mirror.interval.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "mirror_interval must be above zero; to turn mirror tables off set mirror = false",
            ));
        }
        if maintenance.changelog_retention.is_some_and(|d| d.is_zero()) {
            return Err(Error::new(
                ErrorKind::Config,
                "changelog_retention must be above zero, or \"off\" to keep every change",
            ));
        }
        if maintenance.interval.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "maintenance_interval must be above zero; to turn maintenance off set maintenance = false",
            ));
        }
        if maintenance.target_file_size < 1 << 20 {
            return Err(Error::new(
                ErrorKind::Config,
                "compaction_target_size must be at least 1MiB (the default, 128MiB, suits most tables)",
            ));
        }
        if maintenance.snapshot_keep_min < 2 {
            return Err(Error::new(
                ErrorKind::Config,
                "snapshot_keep_min must be at least 2: a commit under way may still be reading the snapshot that was current a moment ago",
            ));
        }
        Ok(Settings {
            source: self.source.filter(|s| !s.is_empty()),
            publication: self.publication.unwrap_or_else(|| "philotes".into()),
            tables: self.tables.unwrap_or_default(),
            slot: self.slot.unwrap_or_else(|| "philotes".into()),
            data_dir,
            namespace,
            catalog_name: self.catalog_name.unwrap_or_else(|| "philotes".into()),
            catalog,
            warehouse,
            s3: S3Settings {
                endpoint: self.s3_endpoint.filter(|s| !s.is_empty()),
                region: self.s3_region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id: self.s3_access_key_id.filter(|s| !s.is_empty()),
                secret_access_key: self.s3_secret_access_key.filter(|s| !s.is_empty()),
                path_style: self.s3_path_style.unwrap_or(false),
            },
            flush_interval,
            flush_rows,
            batch_rows,
            stream_large_transactions: self.stream_large_transactions.unwrap_or(true),
            until_caught_up: self.until_caught_up.unwrap_or(false),
            maintenance,
            mirror,
            metrics_addr: self
                .metrics_addr
                .unwrap_or_else(|| DEFAULT_METRICS_ADDR.into()),
            buffer_url: self.buffer_url.filter(|s| !s.is_empty()),
            shutdown_timeout: duration_or(self.shutdown_timeout, Duration::from_secs(25))?,
            buffer_high_rows,
            buffer_low_rows,
        })
    }
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot make {} an absolute path", p.display()),
        )
        .with_source(e)
    })
}

fn duration_or(value: Option<String>, default: Duration) -> Result<Duration> {
    value.map_or(Ok(default), |s| parse_duration(&s))
}

/// A size: `512MiB`, `2GiB`, `300MB`, or a number of bytes.
pub fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => 0,
    };
    num.parse::<usize>()
        .ok()
        .filter(|_| factor > 0)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("`{s}` is not a size: write e.g. 512MiB or 2GiB"),
            )
        })
}

/// Parse `500ms`, `5s`, `2m`, `1h`, `3d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let bad = || {
        Error::new(
            ErrorKind::Config,
            format!("`{s}` is not a duration: write e.g. `500ms`, `5s`, `2m`, `1h` or `3d`"),
        )
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The source connection URL; `None` for commands that only read the lake.
    pub source: Option<Secret>,
    pub publication: String,
    /// Tables for a publication Philotes creates (`schema.table`); empty: all tables.
    pub tables: Vec<String>,
    pub slot: String,
    pub data_dir: PathBuf,
    /// Put every table into this namespace as `<schema>__<table>`.
    pub namespace: Option<String>,
    pub catalog_name: String,
    pub catalog: CatalogSettings,
    /// `file://…` or `s3://…`.
    pub warehouse: String,
    pub s3: S3Settings,
    pub flush_interval: Duration,
    pub flush_rows: u64,
    pub batch_rows: usize,
    /// Receive large transactions while they run (protocol 2), spilled to `DATA_DIR/spill`.
    pub stream_large_transactions: bool,
    pub until_caught_up: bool,
    pub maintenance: MaintenanceSettings,
    pub mirror: MirrorSettings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`host:port`, or `off`).
    pub metrics_addr: String,
    /// The control database (`ingest`, `worker`, `migrate`); `None` when not configured.
    pub buffer_url: Option<Secret>,
    /// How long a graceful stop may take after SIGTERM before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// Ingest stops reading the slot once the buffer holds this many rows…
    pub buffer_high_rows: u64,
    /// … and reads again once it is down to this many.
    pub buffer_low_rows: u64,
}

/// The default of `metrics_addr`.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";

/// Mirror tables: the current state of each changelog as a plain Iceberg table
/// (docs/decisions/020-mirror-tables.md).
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorSettings {
    /// Whether the process that writes the changelogs keeps their mirrors (off until a step's
    /// memory is bounded: a step reads every change since the mirror's position at once).
    pub enabled: bool,
    /// Time between the mirrors' steps (each applies what the changelog committed since).
    pub interval: Duration,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            enabled: false,
            interval: Duration::from_secs(2),
        }
    }
}

/// Table maintenance: compaction, manifest rewrite, snapshot expiry and orphan cleanup.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceSettings {
    /// Whether `run` maintains its tables in the background.
    pub enabled: bool,
    /// Time between maintenance passes over a pipeline's tables.
    pub interval: Duration,
    /// Size compaction aims for; smaller files are merged.
    pub target_file_size: u64,
    /// Snapshots younger than this are kept.
    pub snapshot_max_age: Duration,
    /// The newest this many snapshots are kept, however old.
    pub snapshot_keep_min: usize,
    /// Unreferenced files younger than this are left alone (they may belong to a write still
    /// under way).
    pub orphan_min_age: Duration,
    /// Changes older than this are folded into one row per key (`None`: every change is kept).
    pub changelog_retention: Option<Duration>,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        // The same defaults as `Layer::resolve`.
        MaintenanceSettings {
            enabled: true,
            interval: Duration::from_secs(300),
            target_file_size: 128 << 20,
            snapshot_max_age: Duration::from_secs(600),
            snapshot_keep_min: 10,
            orphan_min_age: Duration::from_secs(3 * 86_400),
            changelog_retention: None,
        }
    }
}

#[derive(Clone, Debug)]
pub enum CatalogSettings {
    /// The embedded SQL catalog (SQLite by default).
    Sql { uri: String },
    /// An Iceberg REST catalog (Lakekeeper in production).
    Rest {
        uri: String,
        token: Option<Secret>,
        credential: Option<Secret>,
        warehouse: Option<String>,
        prefix: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub path_style: bool,
}

#[cfg(test)]
mod tests;
