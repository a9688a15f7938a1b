//! What the stream writes into: the lake itself (`run`), or the buffer with the lake for copies
//! (`ingest`). Both go through one streaming loop, so `ingest` follows the publication, copies,
//! reconnects and confirms the slot exactly as `run` does.

use std::future::Future;

use philotes_core::{ColumnDesc, Result, TableSink};
use philotes_sink_iceberg::ChangelogTable;

use crate::apply::TableState;

/// One table's destination while streaming.
pub(crate) trait Sink: TableSink + Sized {
    /// The lake table to maintain in the background, when this process maintains it.
    fn maintained(&self) -> Option<&iceberg::TableIdent>;
    /// About to copy the table with these columns: take it from whoever writes it.
    fn before_copy(&mut self, _columns: &[ColumnDesc]) -> impl Future<Output = Result<()>> {
        async { Ok(()) }
    }
    /// The copy has written `rows` rows so far (called after every batch).
    fn copy_progress(&mut self, _rows: u64) -> impl Future<Output = Result<()>> {
        async { Ok(()) }
    }
    /// The copy is over (committed, or failed and the table stopped): hand the table back.
    fn after_copy(&mut self) -> impl Future<Output = Result<()>> {
        async { Ok(()) }
    }
}

/// Makes the [`Sink`] of a table whose lake table is open.
pub(crate) trait Opener {
    type Sink: Sink;
    /// Whether this process maintains the lake tables (compaction, expiry, cleanup).
    fn maintains(&self) -> bool;
    /// Whether to wait as a standby while another process streams the pipeline (rather than
    /// stop with the way out).
    fn waits_for_lease(&self) -> bool {
        false
    }
    /// Every few seconds while streaming: take in what other processes asked of the tables
    /// (a copy, say) and report the buffer.
    fn refresh(
        &self,
        _tables: &mut std::collections::HashMap<u32, TableState<Self::Sink>>,
    ) -> impl Future<Output = Result<()>> {
        async { Ok(()) }
    }
    /// How often streamed changes are committed, given the configured `flush_interval`.
    fn flush_interval(&self, configured: std::time::Duration) -> std::time::Duration {
        configured
    }
    /// While the returned flag is set, the stream is not read (backpressure).
    fn hold(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
        None
    }
    /// Whether `philotes_buffer_depth` counts the rows this process holds in memory (`run`)
    /// rather than a buffer somewhere else.
    fn depth_in_memory(&self) -> bool {
        true
    }
    /// `state` with its lake table turned into this opener's sink.
    fn wrap(
        &self,
        state: TableState<ChangelogTable>,
    ) -> impl Future<Output = Result<TableState<Self::Sink>>>;
}

impl Sink for ChangelogTable {
    fn maintained(&self) -> Option<&iceberg::TableIdent> {
        Some(self.ident())
    }
}

/// `run`: the stream goes straight into the lake.
pub(crate) struct Direct;

impl Opener for Direct {
    type Sink = ChangelogTable;

    fn maintains(&self) -> bool {
        true
    }

    async fn wrap(&self, state: TableState<ChangelogTable>) -> Result<TableState<ChangelogTable>> {
        let mut state = state;
        let buffered = state.lake.as_ref().and_then(|l| l.buffered_by().cloned());
        if let Some(pipeline) = buffered {
            // Its changes past the lake's watermark are in a control database, not in the slot:
            // streaming the slot from here would leave them out.
            let e = philotes_core::Error::new(
                philotes_core::ErrorKind::Config,
                format!(
                    "this table is written by `philotes ingest` and `philotes worker` (pipeline {pipeline}, through a control database): run those roles (`philotes verify --buffer-url …` verifies it), not `run`, which would miss the changes waiting in the buffer"
                ),
            )
            .with("table", &state.source.name);
            state.stop(e);
        }
        Ok(state)
    }
}

impl<T> TableState<T> {
    /// The same table with another sink.
    pub(crate) fn with_sink<U>(self, lake: Option<U>) -> TableState<U> {
        TableState {
            source: self.source,
            lake,
            stopped: self.stopped,
            progress: self.progress,
            key_idx: self.key_idx,
            recopy: self.recopy,
            leaving: self.leaving,
            metrics: self.metrics,
        }
    }
}
