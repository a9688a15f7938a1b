//! Progress of one table's comparison: a bar on a terminal, a log line every few seconds
//! otherwise. Both sides count rows into atomics; a ticker task draws them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Progress {
    pub source: Arc<AtomicU64>,
    pub lake: Arc<AtomicU64>,
    phase: Arc<Mutex<String>>,
    ticker: tokio::task::JoinHandle<()>,
    tty: bool,
}

struct View {
    table: String,
    /// The source's row estimate (`pg_class.reltuples`), when it has one.
    estimate: Option<u64>,
    started: Instant,
}

impl View {
    fn line(&self, phase: &str, source: u64, lake: u64) -> String {
        let secs = self.started.elapsed().as_secs();
        match self.estimate.filter(|&e| e > 0) {
            Some(e) => {
                let done = ((source.max(lake) as f64 / e as f64).min(1.0) * 20.0) as usize;
                format!(
                    "verify {}: {phase} [{}{}] source {source} of ~{e} rows, lake {lake} rows, {secs}s",
                    self.table,
                    "#".repeat(done),
                    ".".repeat(20 - done)
                )
            }
            None => format!(
                "verify {}: {phase} source {source} rows, lake {lake} rows, {secs}s",
                self.table
            ),
        }
    }
}

impl Progress {
    pub fn start(table: String, estimate: Option<u64>) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let source = Arc::new(AtomicU64::new(0));
        let lake = Arc::new(AtomicU64::new(0));
        let phase = Arc::new(Mutex::new("summarising key ranges".to_string()));
        let view = View {
            table,
            estimate,
            started: Instant::now(),
        };
        let ticker = {
            let (source, lake, phase) = (source.clone(), lake.clone(), phase.clone());
            tokio::spawn(async move {
                let every = if tty {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(10)
                };
                loop {
                    let p = phase.lock().map(|p| p.clone()).unwrap_or_default();
                    let (s, l) = (source.load(Ordering::Relaxed), lake.load(Ordering::Relaxed));
                    if tty {
                        let mut err = std::io::stderr();
                        let _ = write!(err, "\r\x1b[2K{}", view.line(&p, s, l));
                        let _ = err.flush();
                    } else {
                        tracing::info!(progress = %view.line(&p, s, l), "verify progress");
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        Progress {
            source,
            lake,
            phase,
            ticker,
            tty,
        }
    }

    /// A new phase; the row counts start again.
    pub fn phase(&self, what: String) {
        if let Ok(mut p) = self.phase.lock() {
            *p = what;
        }
        self.source.store(0, Ordering::Relaxed);
        self.lake.store(0, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
