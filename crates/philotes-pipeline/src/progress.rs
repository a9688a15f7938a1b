//! Progress of long jobs: one updating line on a terminal, periodic log lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    started: Instant,
    last: Instant,
    tty: bool,
    rows: u64,
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Self {
        let now = Instant::now();
        Progress {
            label: label.into(),
            started: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
            rows: 0,
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.rows as f64 / secs
        } else {
            0.0
        }
    }

    /// Count `n` more rows; redraw or log when it is time.
    pub fn add(&mut self, n: u64) {
        self.rows += n;
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() >= every {
            self.last = Instant::now();
            if self.tty {
                let mut err = std::io::stderr();
                let _ = write!(
                    err,
                    "\r{}: {} rows, {:.0} rows/s   ",
                    self.label,
                    self.rows,
                    self.rate()
                );
                let _ = err.flush();
            } else {
                tracing::info!(job = %self.label, rows = self.rows, rows_per_s = self.rate() as u64, "progress");
            }
        }
    }

    pub fn finish(&self) {
        if self.tty {
            let _ = writeln!(
                std::io::stderr(),
                "\r{}: {} rows, {:.0} rows/s, done   ",
                self.label,
                self.rows,
                self.rate()
            );
        }
        tracing::info!(
            job = %self.label,
            rows = self.rows,
            seconds = format!("{:.1}", self.started.elapsed().as_secs_f64()),
            rows_per_s = self.rate() as u64,
            "done"
        );
    }
}
