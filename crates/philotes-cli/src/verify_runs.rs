//! Verifications asked for through the API, run by a managed ingest.
//!
//! The API records the request; the managed ingest that streams the pipeline (holds its lease:
//! `philotes_pipeline::lease`, so a standby never does, and a verification reads the lake the
//! pipeline writes, its embedded catalog included) claims it (a row lock, so it runs once),
//! runs `philotes verify` with the pipeline's settings — the same code and report as the
//! command — and keeps the report in the control database. Here and not in the pipeline crate
//! because verify builds on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use philotes_buffer::ControlDb;
use philotes_buffer::sealed::Cipher;
use philotes_config::Layer;
use philotes_core::{Error, Result};

const POLL: Duration = Duration::from_secs(2);

/// Claim and run verifications until `stop` is set.
pub(crate) async fn run(layer: Layer, cipher: Cipher, stop: Arc<AtomicBool>) -> Result<()> {
    let own = layer.clone().resolve()?;
    let mut db = ControlDb::open(own.buffer_url.as_ref(), "to run verifications").await?;
    while !stop.load(Ordering::Relaxed) {
        match db.claim_verify(&philotes_pipeline::lease::held()).await {
            Ok(Some(run)) => {
                let outcome = verify_one(&db, &layer, &cipher, &run).await;
                let recorded = match outcome {
                    Ok((outcome, report)) => {
                        tracing::info!(verification = run.id, outcome, "verification done");
                        db.finish_verify(run.id, Some(outcome), Some(&report), None)
                            .await
                    }
                    Err(e) => {
                        tracing::warn!(verification = run.id, error = %e, "verification could not run");
                        db.finish_verify(run.id, None, None, Some(&e.to_string()))
                            .await
                    }
                };
                if let Err(e) = recorded {
                    tracing::warn!(verification = run.id, error = %e, "cannot record the verification");
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for verifications to run");
                if db.client.is_closed()
                    && let Ok(fresh) =
                        ControlDb::open(own.buffer_url.as_ref(), "to run verifications").await
                {
                    db = fresh;
                }
            }
        }
        let until = std::time::Instant::now() + POLL;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn verify_one(
    db: &ControlDb,
    layer: &Layer,
    cipher: &Cipher,
    run: &philotes_buffer::specs::VerifyRun,
) -> Result<(&'static str, serde_json::Value)> {
    let specs = db.active_specs().await?;
    let spec = specs
        .iter()
        .find(|s| s.id == run.pipeline_id)
        .ok_or_else(|| {
            Error::new(
                philotes_core::ErrorKind::Config,
                "the pipeline was stopped or deleted before its verification ran",
            )
        })?;
    tracing::info!(verification = run.id, pipeline = %spec.name, "verifying the pipeline");
    let settings = philotes_pipeline::settings_for(layer, spec, cipher)?;
    let tables = crate::table_names("verify", &run.tables)?;
    let opts = philotes_verify::VerifyOptions {
        tables,
        wait: Duration::from_secs(300),
        memory_limit: None,
        show: 5,
        max_rounds: 4,
    };
    let report = philotes_verify::verify(&settings, &opts).await?;
    let mut json = Vec::new();
    report.write_json(&mut json).map_err(|e| {
        Error::new(
            philotes_core::ErrorKind::Internal,
            "cannot write the report",
        )
        .with_source(e)
    })?;
    let value = serde_json::from_slice(&json).map_err(|e| {
        Error::new(philotes_core::ErrorKind::Internal, "cannot read the report").with_source(e)
    })?;
    let outcome = match report.exit_code() {
        0 => "match",
        1 => "different",
        _ => "unverifiable",
    };
    Ok((outcome, value))
}
