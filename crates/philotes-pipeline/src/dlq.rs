//! The dead-letter file: changes that could not be written, kept whole for an operator.
//!
//! One JSON object per line in `DATA_DIR/dead-letter.jsonl`, flushed to disk before the
//! pipeline moves on. The table the change belongs to is stopped at the same time and the slot
//! keeps its position, so the change is also still in the source's WAL: nothing is lost twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use philotes_core::{Cell, Error, ErrorKind, Lsn, Op, Result, TableName};

pub struct DeadLetters {
    path: PathBuf,
}

impl DeadLetters {
    pub fn new(data_dir: &Path) -> Self {
        DeadLetters {
            path: data_dir.join("dead-letter.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one failed change and flush it to disk.
    pub fn record(
        &self,
        table: &TableName,
        lsn: Lsn,
        op: Op,
        columns: &[String],
        row: &[Cell],
        error: &Error,
    ) -> Result<()> {
        let values: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .zip(row)
            .map(|(name, cell)| {
                let v = match cell {
                    Cell::Null => serde_json::Value::Null,
                    Cell::Unchanged => serde_json::json!({"unchanged_toast": true}),
                    Cell::Text(b) => match std::str::from_utf8(b) {
                        Ok(s) => serde_json::Value::String(s.to_string()),
                        Err(_) => serde_json::json!({"bytes_hex": hex(b)}),
                    },
                    // A value of an initial copy, in its type's binary send format.
                    Cell::Binary(b) => serde_json::json!({"pg_binary_hex": hex(b)}),
                };
                (name.clone(), v)
            })
            .collect();
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339(),
            "table": table.to_string(),
            "lsn": lsn.to_string(),
            "op": op.code(),
            "error": error.to_string(),
            "row": values,
        });
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::Sink,
                format!("cannot write the dead-letter file {}", self.path.display()),
            )
            .with_source(e)
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(f, "{line}").map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
