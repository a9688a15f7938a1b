//! One error type for all of Philotes.
//!
//! An [`Error`] has a [`ErrorKind`] that callers branch on (retry a transient failure, stop a
//! table on a conversion failure, exit on a configuration mistake), a message written for the
//! operator (what happened and what to do), and context pairs (table, column, LSN) that make
//! the message findable in logs.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure this is; decides how the pipeline reacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A configuration value is missing or wrong: fix the configuration and start again.
    Config,
    /// The source database is not set up for replication (wal_level, privileges, slots, ...).
    SourceSetup,
    /// Talking to the source failed (network, server error).
    Source,
    /// The replication stream contained something we could not decode.
    Protocol,
    /// A value could not be converted to its lake type.
    Conversion,
    /// The table's schema changed in a way this version cannot apply yet.
    SchemaChange,
    /// Writing to the lake (catalog, object store, files) failed.
    Sink,
    /// The control database (buffered changes, progress, dead letters) failed.
    Buffer,
    /// Another writer changed the table first (a streaming commit and maintenance, say):
    /// reload the table and try again.
    Conflict,
    /// An input (argument, LSN, name) is malformed.
    Invalid,
    /// Philotes' own local files (data dir, spill files) could not be read or written.
    Disk,
    /// The pipeline was asked to stop.
    Cancelled,
    /// A bug: an invariant of our own code did not hold.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::SourceSetup => "source-setup",
            ErrorKind::Source => "source",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Conversion => "conversion",
            ErrorKind::SchemaChange => "schema-change",
            ErrorKind::Sink => "sink",
            ErrorKind::Buffer => "buffer",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Disk => "disk",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A Philotes error: a kind, an operator-facing message, context, and the cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
            source: None,
        }
    }

    /// Attach a cause (shown after the message).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attach a context pair such as `("table", "public.orders")`.
    pub fn with(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.context.push((key, value.to_string()));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn context(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}: {v}")?;
            }
            f.write_str(")")?;
        }
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
            let mut next = src.source();
            while let Some(cause) = next {
                write!(f, ": {cause}")?;
                next = cause.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind.as_str(), self)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_message_context_and_cause() {
        let io = std::io::Error::other("disk full");
        let e = Error::new(ErrorKind::Sink, "could not write a data file")
            .with("table", "public.orders")
            .with_source(io);
        assert_eq!(
            e.to_string(),
            "could not write a data file (table: public.orders): disk full"
        );
        assert_eq!(e.kind(), ErrorKind::Sink);
        assert_eq!(e.context("table"), Some("public.orders"));
    }
}
