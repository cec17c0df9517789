//! The group-commit writer: one thread owns the log file and turns queued records into
//! chained lines, one write and one fdatasync per batch.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use tokio::sync::oneshot;

use super::line::{HASH_LEN, encode_line};
use super::upkeep::Upkeep;
use super::{AuditError, Receipt};

pub(crate) const RUNNING: u8 = 0;
pub(crate) const POISONED: u8 = 1;
pub(crate) const STOPPED: u8 = 2;

/// State shared between the handles and the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub state: AtomicU8,
    /// The last batch failed to write (cleared by the next batch that succeeds).
    pub write_failing: AtomicBool,
    /// The policy version in force, as last reported by an event record (for checkpoints).
    pub policy_version: std::sync::Mutex<String>,
    /// Completion records wait on the writer's side channel and the writer knows it (it
    /// was woken once, and wakes again within [`SYNC_DEFER`]): further ones need no wake.
    pub later_armed: AtomicBool,
}

/// A record waiting for the writer.
pub(crate) struct Pending {
    /// The record as a JSON object, serialised by the caller.
    pub json: Vec<u8>,
    pub done: Option<oneshot::Sender<Result<Receipt, AuditError>>>,
}

pub(crate) enum Msg {
    Record(Pending),
    /// Records are waiting on the side channel: write them within [`SYNC_DEFER`].
    Later,
    /// Write everything queued before this, then stop; acknowledged when done.
    Shutdown(oneshot::Sender<()>),
}

/// Gathers one batch for a group commit: `first`, then whatever is already queued, up to
/// `max` records. Returns the shutdown request if one came (nothing after it is taken).
pub(crate) fn drain(
    first: Msg,
    rx: &std::sync::mpsc::Receiver<Msg>,
    batch: &mut Vec<Pending>,
    max: usize,
) -> Option<oneshot::Sender<()>> {
    let mut msg = Some(first);
    while let Some(m) = msg.take() {
        match m {
            Msg::Record(p) => batch.push(p),
            Msg::Later => {}
            Msg::Shutdown(ack) => return Some(ack),
        }
        if batch.len() >= max {
            break;
        }
        msg = rx.try_recv().ok();
    }
    None
}

/// Fails every record of `batch` with `msg`: waiters get the error, fire-and-forget records
/// are lost, and how many is logged. Shared by the file and the PostgreSQL writers.
pub(crate) fn fail_batch(batch: &mut Vec<Pending>, log: &str, msg: &str) {
    let mut lost = 0usize;
    for p in batch.drain(..) {
        match p.done {
            Some(done) => {
                let _ = done.send(Err(AuditError::Unavailable(msg.to_owned())));
            }
            None => lost += 1,
        }
    }
    if lost > 0 {
        tracing::error!(log = %log, lost, error = %msg, "audit records could not be written");
    }
}

/// Gives every waiter of a durable `batch` its receipt: the records got the sequence numbers
/// from `seq0` on and `hashes` (hex), in order.
pub(crate) fn release(
    batch: &mut Vec<Pending>,
    seq0: u64,
    hashes: impl IntoIterator<Item = String>,
    chain: Option<&std::sync::Arc<str>>,
) {
    for ((i, p), hash) in batch.drain(..).enumerate().zip(hashes) {
        if let Some(done) = p.done {
            let _ = done.send(Ok(Receipt {
                chain: chain.cloned(),
                seq: seq0 + i as u64,
                hash,
            }));
        }
    }
}

/// Stops a writer after a shutdown request (`ack`): marks the log stopped, refuses whatever
/// was queued after the request (not lost silently), then acknowledges every shutdown request.
pub(crate) fn stop_writer(shared: &Shared, rx: Receiver<Msg>, ack: oneshot::Sender<()>, log: &str) {
    shared.state.fetch_max(STOPPED, Ordering::SeqCst);
    let mut acks = vec![ack];
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Record(p) => {
                if let Some(done) = p.done {
                    let _ = done.send(Err(super::shut_down()));
                } else {
                    tracing::error!(log = %log, "audit record queued after shutdown was not written");
                }
            }
            Msg::Later => {}
            Msg::Shutdown(a) => acks.push(a),
        }
    }
    drop(rx);
    for a in acks {
        let _ = a.send(());
    }
}

/// What the writer needs from the file; a trait so tests can inject failures.
pub(crate) trait LogFile: Send + 'static {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    fn len(&mut self) -> io::Result<u64>;
    /// Replaces the file by the one at `path` (created if missing), for rotation.
    fn reopen(&mut self, _path: &std::path::Path) -> io::Result<()> {
        Err(io::Error::other("this log cannot be rotated"))
    }
}

impl LogFile for File {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn reopen(&mut self, path: &std::path::Path) -> io::Result<()> {
        *self = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        Ok(())
    }
}

/// Marks the log stopped when the writer thread ends, however it ends, so `healthy()`
/// never reports a log nobody writes.
struct StopOnExit(Arc<Shared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.state.fetch_max(STOPPED, Ordering::SeqCst);
    }
}

pub(crate) struct Writer<F> {
    pub file: F,
    /// Whether the file is a regular file (a failed write can then be rolled back).
    pub regular: bool,
    /// Length of the file after the last good batch.
    pub len: u64,
    /// Sequence number of the next record.
    pub seq: u64,
    /// Hash of the last record.
    pub prev: [u8; HASH_LEN],
    pub batch_max: usize,
    pub name: String,
    pub shared: Arc<Shared>,
    /// The last batch's lines.
    pub buf: Vec<u8>,
    hashes: Vec<[u8; HASH_LEN]>,
    /// Checkpoints, rotation and retention.
    pub upkeep: Upkeep,
    /// Why the log was poisoned, for the batches refused after it.
    poisoned_because: String,
    /// Records written but not yet fdatasync'ed, since when: a batch that nobody waits for
    /// (completion records, the writer's own events) is synced with the next batch someone
    /// awaits, or after [`SYNC_DEFER`], whichever comes first.
    unsynced_since: Option<std::time::Instant>,
    /// The side channel of records nobody waits for (completions): they ride along with
    /// the next batch, so sending one does not wake this thread each time.
    later: Option<Receiver<Pending>>,
    /// Since when the side channel is armed (see [`Shared::later_armed`]).
    later_since: Option<std::time::Instant>,
}

/// Longest a record nobody waits for stays without an fdatasync: a completion waits on
/// the side channel (in memory) and an event written without a waiter stays unsynced at
/// most this long. A crash in that window loses only such records; a decision whose
/// completion was lost gets an `unknown-crashed` completion at the next start.
pub(crate) const SYNC_DEFER: std::time::Duration = std::time::Duration::from_millis(20);

impl<F: LogFile> Writer<F> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        file: F,
        regular: bool,
        len: u64,
        seq: u64,
        prev: [u8; HASH_LEN],
        batch_max: usize,
        name: String,
        shared: Arc<Shared>,
    ) -> Writer<F> {
        let batch_max = batch_max.max(1);
        Writer {
            file,
            regular,
            len,
            seq,
            prev,
            batch_max,
            name,
            shared,
            buf: Vec::with_capacity(batch_max * 512),
            hashes: Vec::with_capacity(batch_max),
            upkeep: Upkeep::default(),
            poisoned_because: String::new(),
            unsynced_since: None,
            later: None,
            later_since: None,
        }
    }

    /// Takes completion records from `later` (see [`Writer::later`]).
    pub fn with_later(mut self, later: Receiver<Pending>) -> Writer<F> {
        self.later = Some(later);
        self
    }

    /// Moves everything on the side channel into `batch`.
    fn take_later(&mut self, batch: &mut Vec<Pending>) {
        if let Some(rx) = &self.later {
            while let Ok(p) = rx.try_recv() {
                batch.push(p);
            }
        }
    }

    /// How long until the side channel must be emptied (none: not armed).
    fn later_due(&self) -> Option<std::time::Duration> {
        self.later_since
            .map(|t| SYNC_DEFER.saturating_sub(t.elapsed()))
    }

    /// The armed window ended: write and sync what waits, then disarm — and look once
    /// more, for a record sent between the last look and the disarming (its sender saw the
    /// channel armed and did not wake this thread).
    fn flush_later(&mut self, batch: &mut Vec<Pending>) {
        self.later_since = None;
        self.take_later(batch);
        self.shared.later_armed.store(false, Ordering::SeqCst);
        self.take_later(batch);
        if !batch.is_empty() {
            let before = self.seq;
            self.commit(batch);
            self.after_commit(self.seq - before);
        }
        self.sync_pending();
    }

    /// The writer thread's loop: runs until shut down or every handle is dropped.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let _guard = StopOnExit(self.shared.clone());
        let mut batch: Vec<Pending> = Vec::with_capacity(self.batch_max);
        loop {
            let due = [self.upkeep.next_due(), self.sync_due(), self.later_due()]
                .into_iter()
                .flatten()
                .min();
            let first = match due {
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.later_due() == Some(std::time::Duration::ZERO) {
                            self.flush_later(&mut batch);
                        }
                        if self.sync_due() == Some(std::time::Duration::ZERO) {
                            self.sync_pending();
                        }
                        self.tick();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let stop = drain(first, &rx, &mut batch, self.batch_max);
            if self.later_since.is_none() && self.shared.later_armed.load(Ordering::SeqCst) {
                self.later_since = Some(std::time::Instant::now());
            }
            if stop.is_some() || batch.iter().any(|p| p.done.is_some()) {
                // Completions ride with a batch someone waits for (one write, one sync).
                self.take_later(&mut batch);
            }
            if !batch.is_empty() {
                let before = self.seq;
                self.commit(&mut batch);
                self.after_commit(self.seq - before);
            }
            if let Some(ack) = stop {
                self.final_checkpoint();
                self.sync_pending();
                self.sync_head();
                // Release the log's lock before anyone learns it stopped.
                self.upkeep.head = None;
                stop_writer(&self.shared, rx, ack, &self.name);
                return;
            }
        }
        // Every handle is gone: what waits on the side channel is still written.
        self.flush_later(&mut batch);
    }

    /// Writes one batch: one write, one fdatasync, then every waiter learns its receipt.
    pub fn commit(&mut self, batch: &mut Vec<Pending>) {
        if self.shared.state.load(Ordering::SeqCst) != POISONED
            && self.regular
            && !matches!(self.file.len(), Ok(l) if l == self.len)
        {
            // Someone else appended (or cut): the chain on disk is no longer the one this
            // writer continues. Fail closed: refuse every record from now on.
            self.poison();
            self.poisoned_because = format!(
                "`{}` changed under the gateway (records it did not write, or a cut); it refuses further records: check the log with `bordergate audit verify` and restart",
                self.name
            );
            tracing::error!(log = %self.name, error = %self.poisoned_because, "audit log poisoned");
        }
        if self.shared.state.load(Ordering::SeqCst) == POISONED {
            let msg = self.poisoned_because.clone();
            fail_batch(batch, &self.name, &msg);
            return;
        }
        self.buf.clear();
        self.hashes.clear();
        let (seq0, prev0) = (self.seq, self.prev);
        for p in batch.iter() {
            let h = encode_line(&mut self.buf, self.seq, &self.prev, &p.json);
            self.hashes.push(h);
            self.prev = h;
            self.seq += 1;
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // Disk full and the like: forget this batch as if it never happened, so the
            // next batch retries with the same sequence numbers and the chain has no gap.
            self.seq = seq0;
            self.prev = prev0;
            self.shared.write_failing.store(true, Ordering::SeqCst);
            let mut msg = format!("cannot write `{}`: {e}", self.name);
            if self.regular {
                let _ = self.file.set_len(self.len);
                if !matches!(self.file.len(), Ok(l) if l == self.len) {
                    // A partial line stays in the file: appending after it would break the chain.
                    msg.push_str("; the partial write could not be rolled back");
                    self.poison();
                    self.poisoned_because = format!(
                        "a partial write could not be rolled back from `{}`; it refuses further records: restart the gateway",
                        self.name
                    );
                }
            }
            tracing::error!(log = %self.name, error = %msg, "audit batch failed");
            fail_batch(batch, &self.name, &msg);
            return;
        }
        if !batch.iter().any(|p| p.done.is_some()) {
            // Nobody waits for these records: sync them with the next awaited batch.
            self.len += self.buf.len() as u64;
            self.shared.write_failing.store(false, Ordering::SeqCst);
            self.unsynced_since
                .get_or_insert_with(std::time::Instant::now);
            batch.clear();
            return;
        }
        let synced = std::time::Instant::now();
        if let Err(e) = self.file.sync_data() {
            // fsyncgate: after a failed fdatasync the kernel may have dropped the dirty pages
            // and a retry can report success. Never trust the file again.
            self.poison();
            let msg = format!(
                "fdatasync of `{}` failed: {e}; the audit log refuses further records",
                self.name
            );
            self.poisoned_because = "the audit log refuses records after an earlier fdatasync failure; restart the gateway".into();
            tracing::error!(log = %self.name, error = %msg, "audit log poisoned");
            fail_batch(batch, &self.name, &msg);
            return;
        }
        crate::metrics::global().audit_commit(batch.len(), synced.elapsed());
        self.len += self.buf.len() as u64;
        self.unsynced_since = None;
        self.shared.write_failing.store(false, Ordering::SeqCst);
        release(batch, seq0, self.hashes.iter().map(hex::encode), None);
        self.write_head();
    }

    /// How long until the written-but-unsynced records must be synced (none: nothing waits).
    fn sync_due(&self) -> Option<std::time::Duration> {
        self.unsynced_since
            .map(|t| SYNC_DEFER.saturating_sub(t.elapsed()))
    }

    /// Makes the written records durable now (before rotation, at shutdown, after
    /// [`SYNC_DEFER`]); a failure poisons the log, like any failed fdatasync.
    pub(crate) fn sync_pending(&mut self) {
        if self.unsynced_since.is_none() || self.shared.state.load(Ordering::SeqCst) == POISONED {
            return;
        }
        self.unsynced_since = None;
        let synced = std::time::Instant::now();
        if let Err(e) = self.file.sync_data() {
            self.poison();
            self.poisoned_because = "the audit log refuses records after an earlier fdatasync failure; restart the gateway".into();
            tracing::error!(log = %self.name, error = %e, "fdatasync failed; audit log poisoned");
            return;
        }
        crate::metrics::global().audit_commit(0, synced.elapsed());
        self.write_head();
    }

    /// Names the last durable record in the head file (a failure is logged: the log itself
    /// is durable; only the detection of a cut between runs is weakened).
    fn write_head(&mut self) {
        let Some(h) = &self.upkeep.head else {
            return;
        };
        let head = super::head::Head {
            seq: self.seq.saturating_sub(1),
            hash: self.prev,
        };
        if let Err(e) = h.write(&head) {
            tracing::warn!(log = %self.name, error = %e, "cannot write the audit log's head file");
            self.upkeep.head = None;
        }
    }

    /// Makes the head file durable (at shutdown).
    pub(crate) fn sync_head(&self) {
        if let Some(h) = &self.upkeep.head
            && let Err(e) = h.sync()
        {
            tracing::warn!(log = %self.name, error = %e, "cannot sync the audit log's head file");
        }
    }

    fn poison(&self) {
        self.shared.state.fetch_max(POISONED, Ordering::SeqCst);
        // STOPPED outranks POISONED in fetch_max; a poisoned log is reported as poisoned
        // while it runs.
    }
}
