//! Managed roles: `philotes ingest` and `philotes worker` started without `--source` run every
//! pipeline defined through `philotes api` (the control database's `pipeline_specs`).
//!
//! Every two seconds the role reads the definitions that are not `stopped` and makes what runs
//! match: a new or started pipeline gets a task (the very `ingest` or `work` a flag-configured
//! process runs, with settings layered from the definition over the process's own), a stopped
//! or deleted one is stopped at a transaction boundary, an edited one (its definition or its
//! source's settings) is stopped and started again. A pipeline that fails is started again
//! with backoff, and its error logged with its name, while the others go on. Pausing needs no
//! restart: ingest's backpressure watch reads the pipeline's state every second.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use philotes_buffer::ControlDb;
use philotes_buffer::sealed::Cipher;
use philotes_buffer::specs::PipelineSpec;
use philotes_config::{Layer, Settings};
use philotes_core::{Result, Secret};

/// How often the definitions are read.
const POLL: Duration = Duration::from_secs(2);

/// Which role runs the pipelines.
#[derive(Clone, Debug)]
pub enum ManagedRole {
    Ingest,
    /// A worker, with its id in every pipeline's pool.
    Worker(String),
}

impl ManagedRole {
    fn name(&self) -> &'static str {
        match self {
            ManagedRole::Ingest => "ingest",
            ManagedRole::Worker(_) => "worker",
        }
    }
}

struct Running {
    name: String,
    slot: String,
    version: chrono::DateTime<chrono::Utc>,
    stop: Arc<AtomicBool>,
    task: std::thread::JoinHandle<Result<()>>,
}

/// The settings of `spec` for a role whose own layer (flags, environment, file) is `base`.
pub fn settings_for(base: &Layer, spec: &PipelineSpec, cipher: &Cipher) -> Result<Settings> {
    let secrets = spec.secrets(cipher)?;
    let d = &spec.destination;
    let base_dir = base
        .data_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("./philotes-data"));
    let layer = Layer {
        source: Some(spec.source.conninfo(cipher, "philotes")?),
        publication: Some(spec.publication.clone()),
        tables: (!spec.tables.is_empty()).then(|| spec.tables.clone()),
        slot: Some(spec.slot.clone()),
        data_dir: Some(pipeline_dir(&base_dir, &spec.slot)),
        namespace: spec.namespace.clone(),
        catalog_uri: d.catalog_uri.clone(),
        catalog_token: secrets.catalog_token.map(Secret::new),
        catalog_credential: secrets.catalog_credential.map(Secret::new),
        catalog_warehouse: d.catalog_warehouse.clone(),
        catalog_prefix: d.catalog_prefix.clone(),
        warehouse: d.warehouse.clone(),
        s3_endpoint: d.s3_endpoint.clone(),
        s3_region: d.s3_region.clone(),
        s3_access_key_id: d.s3_access_key_id.clone(),
        s3_secret_access_key: secrets.s3_secret_access_key.map(Secret::new),
        s3_path_style: d.s3_path_style,
        flush_interval: spec.flush_interval.clone(),
        flush_rows: spec.flush_rows.and_then(|r| u64::try_from(r).ok()),
        ..Layer::default()
    };
    layer.over(base.clone()).resolve()
}

/// A pipeline's local state (spill files, the embedded catalog and warehouse by default):
/// `DATA_DIR/<slot>`.
pub fn pipeline_dir(base: &Path, slot: &str) -> std::path::PathBuf {
    base.join(slot)
}

/// Run every defined pipeline in `role` until `stop` is set.
pub async fn manage(
    base: Layer,
    role: ManagedRole,
    cipher: Cipher,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let own = base.clone().resolve()?;
    let mut db = ControlDb::open(own.buffer_url.as_ref(), "to read the pipelines from").await?;
    let health = philotes_telemetry::health();
    health.ready("buffer");
    tracing::info!(
        role = role.name(),
        "running the pipelines defined in the control database (through `philotes api`)"
    );
    let mut running: HashMap<i64, Running> = HashMap::new();
    // Failures in a row and when to try again, per pipeline.
    let mut failing: HashMap<i64, (u32, Instant)> = HashMap::new();
    let mut last_error_logged = false;
    while !stop.load(Ordering::Relaxed) {
        // What ended by itself.
        let ended: Vec<i64> = running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(r) = running.remove(&id) else {
                continue;
            };
            let outcome = r.task.join();
            if r.stop.load(Ordering::Relaxed) {
                philotes_telemetry::forget_pipeline(&r.slot);
                continue;
            }
            let failures = failing.get(&id).map_or(0, |f| f.0) + 1;
            let wait = philotes_core::retry::backoff(
                failures,
                Duration::from_secs(1),
                Duration::from_secs(60),
            );
            match outcome {
                Ok(Ok(())) => {
                    tracing::warn!(pipeline = %r.name, "the pipeline ended by itself; starting it again")
                }
                Ok(Err(e)) => {
                    tracing::error!(pipeline = %r.name, error = %e, retry_in = ?wait, "the pipeline failed; starting it again (fix it through the API, or stop it)")
                }
                Err(_) => {
                    tracing::error!(pipeline = %r.name, "the pipeline's thread panicked; starting it again")
                }
            }
            failing.insert(id, (failures, Instant::now() + wait));
        }
        let specs = match db.active_specs().await {
            Ok(s) => {
                if last_error_logged {
                    tracing::info!("the control database answers again");
                    health.ready("buffer");
                    last_error_logged = false;
                }
                s
            }
            Err(e) => {
                if !last_error_logged {
                    tracing::warn!(error = %e, "cannot read the pipelines' definitions; what runs goes on, trying again");
                    health.not_ready("buffer", format!("cannot read the pipelines: {e}"));
                    last_error_logged = true;
                }
                if db.client.is_closed()
                    && let Ok(fresh) =
                        ControlDb::open(own.buffer_url.as_ref(), "to read the pipelines from").await
                {
                    db = fresh;
                }
                sleep_unless(&stop, POLL).await;
                continue;
            }
        };
        // Stop what is no longer wanted, or changed.
        let wanted: HashMap<i64, &PipelineSpec> = specs.iter().map(|s| (s.id, s)).collect();
        for (id, r) in running.iter() {
            let keep = wanted.get(id).is_some_and(|s| s.updated_at == r.version);
            if !keep && !r.stop.swap(true, Ordering::Relaxed) {
                tracing::info!(pipeline = %r.name, "the pipeline was stopped, deleted or changed; stopping it at a transaction boundary");
            }
        }
        let stopping: Vec<i64> = running
            .iter()
            .filter(|(_, r)| r.stop.load(Ordering::Relaxed) && r.task.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in stopping {
            if let Some(r) = running.remove(&id) {
                let _ = r.task.join();
                philotes_telemetry::forget_pipeline(&r.slot);
                tracing::info!(pipeline = %r.name, "the pipeline stopped");
            }
        }
        // Start what is wanted and not running.
        for spec in &specs {
            if running.contains_key(&spec.id) {
                continue;
            }
            if failing
                .get(&spec.id)
                .is_some_and(|(_, at)| Instant::now() < *at)
            {
                continue;
            }
            let settings = match settings_for(&base, spec, &cipher) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(pipeline = %spec.name, error = %e, "cannot run the pipeline as defined; fix its definition through the API");
                    let failures = failing.get(&spec.id).map_or(0, |f| f.0) + 1;
                    failing.insert(
                        spec.id,
                        (failures, Instant::now() + Duration::from_secs(30)),
                    );
                    continue;
                }
            };
            tracing::info!(pipeline = %spec.name, slot = %spec.slot, "starting the pipeline");
            let flag = Arc::new(AtomicBool::new(false));
            let task = match spawn(role.clone(), settings, flag.clone()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(pipeline = %spec.name, error = %e, "cannot start the pipeline's thread");
                    continue;
                }
            };
            running.insert(
                spec.id,
                Running {
                    name: spec.name.clone(),
                    slot: spec.slot.clone(),
                    version: spec.updated_at,
                    stop: flag,
                    task,
                },
            );
        }
        failing.retain(|id, _| wanted.contains_key(id));
        sleep_unless(&stop, POLL).await;
    }
    for r in running.values() {
        r.stop.store(true, Ordering::Relaxed);
    }
    while running.values().any(|r| !r.task.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, r) in running.drain() {
        if let Ok(Err(e)) = r.task.join() {
            tracing::warn!(pipeline = %r.name, error = %e, "the pipeline ended with an error while stopping");
        }
    }
    Ok(())
}

/// Run one pipeline on a thread and runtime of its own: a pipeline's loop holds its tables
/// across awaits (they are not `Sync`), so it is driven by `block_on`, as `philotes ingest`
/// drives its one pipeline, while what it spawns runs on that runtime's workers.
fn spawn(
    role: ManagedRole,
    settings: Settings,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<Result<()>>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::Builder::new()
        .name(format!("pipeline-{}", settings.slot))
        .spawn(move || {
            // Its metrics carry its own `pipeline` label, on every thread of its runtime.
            let slot = settings.slot.clone();
            philotes_telemetry::set_thread_pipeline(&slot);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .on_thread_start(move || philotes_telemetry::set_thread_pipeline(&slot))
                .enable_all()
                .build()
                .map_err(|e| {
                    philotes_core::Error::new(
                        philotes_core::ErrorKind::Internal,
                        format!("cannot start a runtime for the pipeline: {e}"),
                    )
                })?;
            rt.block_on(async move {
                match role {
                    ManagedRole::Ingest => crate::ingest(&settings, stop).await.map(|_| ()),
                    ManagedRole::Worker(id) => crate::work(&settings, &id, stop).await,
                }
            })
        })
}

async fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
