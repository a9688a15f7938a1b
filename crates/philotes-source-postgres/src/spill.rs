//! Transactions the source streams while they still run (pgoutput protocol 2), kept on local
//! disk until they end.
//!
//! Why disk: a transaction larger than the source's `logical_decoding_work_mem` arrives in
//! blocks long before its commit, and may still roll back. Holding it in memory would make
//! Philotes' memory as large as the largest transaction; applying it early would put rows in
//! the lake that may never have existed. So each block is appended, exactly as received, to
//! one file per transaction (`DATA_DIR/spill/<xid>.spill`). At Stream Commit the file is read
//! back in order and handed on as an ordinary transaction; at Stream Abort it is deleted (or,
//! for a rolled-back subtransaction, its changes are skipped on the way back).
//!
//! Nothing here needs to survive a restart: the slot's confirmed position never passes an
//! uncommitted transaction, so the source sends an unfinished one again, from its start, after
//! a restart. Leftover files are removed when a stream opens.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use philotes_core::{Error, ErrorKind, Lsn, Result};

/// How often a transaction still arriving is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The open spill files, one per streamed transaction.
pub(crate) struct Spill {
    dir: PathBuf,
    open: HashMap<u32, Pending>,
}

/// A streamed transaction still in progress.
struct Pending {
    path: PathBuf,
    out: BufWriter<File>,
    /// Subtransactions rolled back: their changes are skipped on replay.
    aborted: HashSet<u32>,
    changes: u64,
    bytes: u64,
    started: Instant,
    reported: Instant,
}

/// A committed streamed transaction, read back in the order it arrived.
pub(crate) struct Replay {
    pub xid: u32,
    path: PathBuf,
    input: BufReader<File>,
    aborted: HashSet<u32>,
    /// Changes in the file (for progress), and handed on so far.
    pub changes: u64,
    pub replayed: u64,
    reported: Instant,
}

fn io_error(what: String, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Disk,
        format!(
            "{what} {}: {e}; check that the data dir has free space and is writable",
            path.display()
        ),
    )
}

impl Spill {
    /// Use `dir` for spill files, removing any left by an earlier run.
    pub fn open(dir: PathBuf) -> Result<Spill> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_error("cannot create the spill directory".into(), &dir, e))?;
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| io_error("cannot list the spill directory".into(), &dir, e))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "spill") && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(files = removed, dir = %dir.display(), "removed spill files of transactions a previous run did not see end; the source sends them again");
        }
        Ok(Spill {
            dir,
            open: HashMap::new(),
        })
    }

    /// Transactions still arriving.
    #[cfg(test)]
    pub fn in_progress(&self) -> usize {
        self.open.len()
    }

    /// Append one message received inside a stream block of transaction `xid`.
    pub fn append(&mut self, xid: u32, lsn: Lsn, data: &[u8]) -> Result<()> {
        let pending = match self.open.get_mut(&xid) {
            Some(p) => p,
            None => {
                let path = self.dir.join(format!("{xid}.spill"));
                let file = File::create(&path)
                    .map_err(|e| io_error("cannot create the spill file".into(), &path, e))?;
                tracing::info!(xid, file = %path.display(), "a transaction larger than the source's logical_decoding_work_mem is arriving while it runs; keeping it on disk until it commits");
                let now = Instant::now();
                self.open.entry(xid).or_insert(Pending {
                    path,
                    out: BufWriter::with_capacity(1 << 20, file),
                    aborted: HashSet::new(),
                    changes: 0,
                    bytes: 0,
                    started: now,
                    reported: now,
                })
            }
        };
        let len = u32::try_from(data.len()).map_err(|_| {
            Error::new(
                ErrorKind::Protocol,
                format!("a message of {} bytes is too large to spill", data.len()),
            )
            .with("lsn", lsn)
        })?;
        let mut head = [0u8; 12];
        head[..8].copy_from_slice(&lsn.0.to_be_bytes());
        head[8..].copy_from_slice(&len.to_be_bytes());
        let written = pending
            .out
            .write_all(&head)
            .and_then(|()| pending.out.write_all(data));
        written.map_err(|e| io_error("cannot write the spill file".into(), &pending.path, e))?;
        pending.changes += 1;
        pending.bytes += 12 + u64::from(len);
        if pending.reported.elapsed() >= PROGRESS_EVERY {
            pending.reported = Instant::now();
            tracing::info!(
                xid,
                messages = pending.changes,
                mib = pending.bytes / (1 << 20),
                running_s = pending.started.elapsed().as_secs(),
                "a large transaction is still arriving"
            );
        }
        Ok(())
    }

    /// Subtransaction `subxid` of `xid` rolled back — or all of `xid` when they are equal.
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if xid != subxid {
            if let Some(p) = self.open.get_mut(&xid) {
                p.aborted.insert(subxid);
            }
            return;
        }
        if let Some(p) = self.open.remove(&xid) {
            tracing::info!(
                xid,
                messages = p.changes,
                "a large transaction rolled back; nothing of it goes to the lake"
            );
            drop(p.out);
            let _ = std::fs::remove_file(&p.path);
        }
    }

    /// Transaction `xid` committed: read it back. `None` when nothing of it was spilled.
    pub fn commit(&mut self, xid: u32) -> Result<Option<Replay>> {
        let Some(p) = self.open.remove(&xid) else {
            return Ok(None);
        };
        let Pending {
            path,
            out,
            aborted,
            changes,
            ..
        } = p;
        let file = out
            .into_inner()
            .map_err(|e| io_error("cannot write the spill file".into(), &path, e.into_error()))?;
        drop(file);
        let input = File::open(&path)
            .map_err(|e| io_error("cannot read the spill file".into(), &path, e))?;
        tracing::info!(
            xid,
            messages = changes,
            "a large transaction committed; applying it from disk"
        );
        Ok(Some(Replay {
            xid,
            path,
            input: BufReader::with_capacity(1 << 20, input),
            aborted,
            changes,
            replayed: 0,
            reported: Instant::now(),
        }))
    }
}

impl Replay {
    /// The next message and its position, skipping rolled-back subtransactions' changes;
    /// `None` at the end.
    pub fn next_message(&mut self) -> Result<Option<(Lsn, Bytes)>> {
        loop {
            let mut head = [0u8; 12];
            match self.input.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(io_error("cannot read the spill file".into(), &self.path, e)),
            }
            let (lsn, len) = head.split_at(8);
            let lsn = Lsn(u64::from_be_bytes(lsn.try_into().unwrap_or_default()));
            let len = u32::from_be_bytes(len.try_into().unwrap_or_default());
            let mut data = vec![0u8; len as usize];
            self.input
                .read_exact(&mut data)
                .map_err(|e| io_error("cannot read the spill file".into(), &self.path, e))?;
            let data = Bytes::from(data);
            self.replayed += 1;
            if self.reported.elapsed() >= PROGRESS_EVERY {
                self.reported = Instant::now();
                tracing::info!(
                    xid = self.xid,
                    applied = self.replayed,
                    of = self.changes,
                    "applying a large transaction from disk"
                );
            }
            if !self.aborted.is_empty() && is_rolled_back(&data, &self.aborted)? {
                continue;
            }
            return Ok(Some((lsn, data)));
        }
    }
}

/// Whether a spilled message is a change of a rolled-back subtransaction. Relation and type
/// descriptions are kept: they describe the table for the changes after them, whichever
/// subtransaction happened to send them first.
fn is_rolled_back(data: &Bytes, aborted: &HashSet<u32>) -> Result<bool> {
    if matches!(data.first(), Some(b'R' | b'Y')) {
        return Ok(false);
    }
    Ok(aborted.contains(&philotes_pgoutput::streamed_xid(data)?))
}

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(xid: u32, n: u8) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend_from_slice(&xid.to_be_bytes());
        m.extend_from_slice(&16384u32.to_be_bytes());
        m.push(b'N');
        m.extend_from_slice(&1u16.to_be_bytes());
        m.push(b't');
        m.extend_from_slice(&1i32.to_be_bytes());
        m.push(b'0' + n);
        m
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("philotes-spill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn replays_in_order_without_rolled_back_subtransactions() -> Result<()> {
        let d = dir("order");
        let mut spill = Spill::open(d.clone())?;
        spill.append(10, Lsn(1), &change(10, 1))?;
        spill.append(10, Lsn(2), &change(11, 2))?;
        spill.append(20, Lsn(3), &change(20, 9))?;
        spill.append(10, Lsn(4), &change(12, 3))?;
        spill.abort(10, 11);
        spill.abort(20, 20);
        assert_eq!(spill.in_progress(), 1);
        assert!(
            !d.join("20.spill").exists(),
            "an aborted transaction leaves no file"
        );
        let mut replay = spill
            .commit(10)?
            .ok_or_else(|| Error::new(ErrorKind::Disk, "gone"))?;
        let mut seen = Vec::new();
        while let Some((lsn, data)) = replay.next_message()? {
            seen.push((lsn.0, data.last().copied()));
        }
        assert_eq!(seen, vec![(1, Some(b'1')), (4, Some(b'3'))]);
        assert_eq!(replay.replayed, 3);
        drop(replay);
        assert!(!d.join("10.spill").exists(), "a replayed file is removed");
        assert!(spill.commit(10)?.is_none());
        Ok(())
    }

    #[test]
    fn leftovers_of_an_earlier_run_are_removed() -> Result<()> {
        let d = dir("left");
        std::fs::create_dir_all(&d).map_err(|e| io_error("mkdir".into(), &d, e))?;
        std::fs::write(d.join("7.spill"), b"partial").map_err(|e| io_error("w".into(), &d, e))?;
        let spill = Spill::open(d.clone())?;
        assert_eq!(spill.in_progress(), 0);
        assert!(!d.join("7.spill").exists());
        Ok(())
    }
}
