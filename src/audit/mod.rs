//! The audit trail: records, the hash chain, the group-commit file sink, and the
//! verifier shared by `audit verify` and the start-up tail check.
//!
//! Every record becomes one JSON line chained to the one before by SHA-256 (see [`line`]).
//! Callers serialise their record on their own task; one writer thread splices in `seq`,
//! `prev` and `hash` and makes each batch durable with one write and one fdatasync.
//!
//! Failure semantics:
//! - a failed write (disk full, …) fails that batch's appends with
//!   [`AuditError::Unavailable`] and is rolled back (file length, `seq`, `prev`), so the
//!   next batch retries with no gap in the sequence; the log stays [`AuditLog::healthy`]
//!   and [`AuditLog::status`] says [`AuditStatus::WriteFailing`] until a batch succeeds;
//! - a failed fdatasync poisons the log for good (no retry: the kernel may have dropped
//!   the pages and would report the retry as a success): every later append fails and
//!   `healthy()` is false. Restarting runs the tail check, which decides what is on disk.

pub mod checkpoint;
pub mod head;
pub mod line;
pub mod place;
pub mod postgres;
pub mod pseudo;
pub mod query;
pub mod record;
pub mod repair;
pub mod report;
pub mod segments;
pub mod source;
mod stamp;
pub mod synthetic;
pub(crate) mod tail;
pub mod upkeep;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

pub use line::{LineError, ParsedLine, parse_line};
pub use record::{CompletionRecord, DecisionRecord, EventRecord, Outcome, Recheck, Record};
pub use stamp::Stamp;
pub use verify::{Problem, ProblemKind, VerifyReport, verify_file};

use line::is_spliceable;
use tail::Resume;
use writer::{LogFile, Msg, POISONED, Pending, RUNNING, STOPPED, Shared, Writer};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log is not writable: {0}")]
    Unavailable(String),
    #[error("audit log is corrupt: {0}")]
    Corrupt(String),
}

/// Proof that a record is durable: its sequence number and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The replica chain, on the PostgreSQL sink (each replica writes its own).
    pub chain: Option<std::sync::Arc<str>>,
    pub seq: u64,
    pub hash: String,
}

/// What the log can do right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditStatus {
    Ok,
    /// The last batch could not be written (disk full …); the next one retries.
    WriteFailing,
    /// An fdatasync failed: no record will be accepted until a restart.
    Poisoned,
    /// [`AuditLog::shutdown`] ran.
    Stopped,
}

impl AuditStatus {
    /// For operators' messages: `ok`, `failing to write`, `poisoned`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditStatus::Ok => "ok",
            AuditStatus::WriteFailing => "failing to write",
            AuditStatus::Poisoned => "poisoned (a sync failed)",
            AuditStatus::Stopped => "stopped",
        }
    }
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    /// [`Stamp::members`], spliced into every record before its closing brace.
    stamp: Arc<[u8]>,
    /// The replica of the stamp.
    replica: Option<crate::config::Replica>,
    /// The file writer's side channel for completion records (see `writer::Writer::later`);
    /// `None` for the PostgreSQL writer, which takes everything on `tx`.
    later: Option<mpsc::Sender<writer::Pending>>,
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, checks its tail, repairs a torn last line and
    /// starts the writer. At most `batch_max` records share one fdatasync.
    pub fn open(path: &Path, batch_max: usize) -> Result<AuditLog, AuditError> {
        Self::open_with(
            path,
            Options {
                batch_max,
                ..Options::default()
            },
        )
    }

    /// Opens the log as the `audit:` section of the config says (checkpoints signed with
    /// `signer`, the key `audit.checkpoint_key` names; rotation; retention). Every record
    /// is stamped with `stamp`'s replica, whose name is also this gateway's chain on the
    /// PostgreSQL sink.
    pub fn open_config(
        c: &crate::config::AuditConfig,
        signer: Option<checkpoint::Signer>,
        stamp: &Stamp,
    ) -> Result<AuditLog, AuditError> {
        if c.sink == crate::config::AuditSinkKind::Postgres {
            let pg = c.postgres.as_ref().ok_or_else(|| {
                AuditError::Unavailable("`audit.sink: postgres` needs `audit.postgres`".into())
            })?;
            let conn = pg.connection_string().map_err(AuditError::Unavailable)?;
            let chain = stamp
                .replica
                .as_ref()
                .map_or_else(crate::config::default_name, |r| r.name.to_string());
            let mut o = postgres::PgOptions::new(&conn, &pg.table, &chain);
            o.batch_max = c.batch_max;
            o.migrate = pg.migrate;
            o.timeout = std::time::Duration::from_millis(pg.timeout_ms.max(100));
            o.linger = std::time::Duration::from_micros(pg.linger_us.min(100_000));
            o.spool = pg.spool.clone();
            o.signer = signer;
            o.checkpoint_every = c.checkpoint_every;
            o.checkpoint_interval = std::time::Duration::from_secs(c.checkpoint_interval_secs);
            o.checkpoint_export = c.checkpoint_export.clone();
            return Self::open_postgres_as(o, stamp);
        }
        Self::open_file(&c.path, Options::from_config(c, signer), stamp)
    }

    /// Opens this replica's chain in the PostgreSQL store: checks its last rows and
    /// continues it, or — when the database does not answer — starts failing closed and
    /// connects when it can. Many replicas share one table, each on its own chain.
    pub fn open_postgres(opts: postgres::PgOptions) -> Result<AuditLog, AuditError> {
        Self::open_postgres_as(opts, &Stamp::default())
    }

    /// [`AuditLog::open_postgres`], every record stamped with `stamp`'s replica.
    pub fn open_postgres_as(
        opts: postgres::PgOptions,
        stamp: &Stamp,
    ) -> Result<AuditLog, AuditError> {
        let (table, chain) = (opts.table.clone(), opts.chain.clone());
        let mut opts = opts;
        opts.stamp = stamp.members();
        let (tx, shared, started) = postgres::start(opts)?;
        let log = AuditLog {
            tx,
            stamp: stamp.members().into(),
            replica: stamp.replica.clone(),
            later: None,
            shared,
        };
        let detail = match started {
            postgres::Started::Ready(h) if h.seq == 0 => {
                format!("new chain `{chain}` (postgres table `{table}`)")
            }
            postgres::Started::Ready(h) => format!(
                "chain `{chain}` continues at seq {} (postgres table `{table}`)",
                h.seq + 1
            ),
            postgres::Started::Waiting(e) => {
                tracing::error!(log = %table, error = %e, "the audit database is unreachable; refusing transfers until it answers");
                format!(
                    "chain `{chain}` (postgres table `{table}`): started while the database was unreachable ({e})"
                )
            }
        };
        log.append_nowait(stamp.start_event(detail));
        Ok(log)
    }

    /// Opens the log with checkpoints, rotation and retention as `opts` says.
    pub fn open_with(path: &Path, opts: Options) -> Result<AuditLog, AuditError> {
        Self::open_file(path, opts, &Stamp::default())
    }

    /// [`AuditLog::open_with`], every record stamped with `stamp`'s replica.
    pub fn open_file(path: &Path, opts: Options, stamp: &Stamp) -> Result<AuditLog, AuditError> {
        let batch_max = opts.batch_max;
        let name = path.display().to_string();
        let unavailable = |what: &str, e: std::io::Error| {
            AuditError::Unavailable(format!("cannot {what} `{name}`: {e}"))
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir
            && !dir.exists()
        {
            fs::create_dir_all(dir).map_err(|e| {
                AuditError::Unavailable(format!("cannot create directory `{}`: {e}", dir.display()))
            })?;
        }
        check_placement(path, dir)?;
        let existed = path.exists();
        // A device or pipe is written to but never read; anything else is a log file, and
        // its head file's lock is taken before a byte of it is read.
        let device = fs::metadata(path).is_ok_and(|m| !m.is_file());
        let locked = if device {
            None
        } else {
            Some(head::HeadFile::lock(&head::path_for(path)).map_err(AuditError::Unavailable)?)
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| unavailable("open", e))?;
        let regular = file
            .metadata()
            .map_err(|e| unavailable("open", e))?
            .is_file();
        let resume = if regular {
            tail::recover(&file, &name)?
        } else {
            Resume::fresh(0)
        };
        if regular && !existed {
            // Make the new file's directory entry durable too.
            if let Some(Err(e)) = dir.map(|d| File::open(d).and_then(|d| d.sync_all())) {
                tracing::warn!(log = %name, error = %e, "cannot sync the audit log directory");
            }
        }
        let head = match locked {
            Some((f, recorded)) if regular => Some(Self::check_head(f, recorded, &resume, &name)?),
            _ => None,
        };
        let crashed = if regular {
            tail::unfinished(&file, resume.len)
        } else {
            Vec::new()
        };
        let mut upkeep = opts.upkeep;
        if regular {
            upkeep.path = Some(path.to_path_buf());
        }
        upkeep.head = head;
        Self::start(
            file, regular, resume, batch_max, name, upkeep, crashed, stamp,
        )
    }

    /// Checks the log's end against its (locked) head file — a log cut, emptied or
    /// replaced since the last run is refused — and names the current end in it.
    fn check_head(
        f: head::HeadFile,
        recorded: Result<Option<head::Head>, String>,
        resume: &Resume,
        name: &str,
    ) -> Result<head::HeadFile, AuditError> {
        let recorded = recorded.unwrap_or_else(|e| {
            // A head torn by a power loss: the log itself decides.
            tracing::warn!(log = %name, error = %e, "ignoring an unreadable head file");
            None
        });
        let last = (resume.seq > 1).then_some(head::Head {
            seq: resume.seq - 1,
            hash: resume.prev,
        });
        head::check(last, recorded, name, true).map_err(AuditError::Corrupt)?;
        if let Some(l) = last {
            f.write(&l).map_err(|e| {
                AuditError::Unavailable(format!("cannot write the head file of `{name}`: {e}"))
            })?;
        }
        Ok(f)
    }

    #[allow(clippy::too_many_arguments)]
    fn start<F: LogFile>(
        file: F,
        regular: bool,
        resume: Resume,
        batch_max: usize,
        name: String,
        upkeep: upkeep::Upkeep,
        crashed: Vec<(u64, String)>,
        stamp: &Stamp,
    ) -> Result<AuditLog, AuditError> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let (later_tx, later_rx) = mpsc::channel();
        let start_detail = if resume.seq == 1 {
            "new log".to_owned()
        } else {
            format!("chain continues at seq {}", resume.seq)
        };
        let repaired = resume.repaired;
        let writer = Writer::new(
            file,
            regular,
            resume.len,
            resume.seq,
            resume.prev,
            batch_max,
            name,
            shared.clone(),
        );
        let mut writer = writer.with_later(later_rx);
        writer.upkeep = upkeep;
        std::thread::Builder::new()
            .name("bordergate-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::Unavailable(format!("cannot start the writer: {e}")))?;
        let log = AuditLog {
            tx,
            stamp: stamp.members().into(),
            replica: stamp.replica.clone(),
            later: Some(later_tx),
            shared,
        };
        if let Some((offset, cut)) = repaired {
            log.append_nowait(Record::Event(EventRecord::new(
                "repair",
                format!("cut {cut} bytes of a torn record at byte offset {offset}"),
            )));
        }
        for (decision_seq, request_id) in crashed {
            log.append_nowait(crashed_completion(decision_seq, request_id));
        }
        log.append_nowait(stamp.start_event(start_detail));
        Ok(log)
    }

    /// Appends `rec` and returns once it is on disk (fdatasync'ed).
    pub async fn append(&self, rec: Record) -> Result<Receipt, AuditError> {
        self.refuse_if_down()?;
        self.note_policy(&rec);
        let json = encode_stamped(&rec, &self.stamp)?;
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Msg::Record(Pending {
                json,
                done: Some(done),
            }))
            .map_err(|_| shut_down())?;
        rx.await.unwrap_or_else(|_| Err(shut_down()))
    }

    /// Queues `rec` to be written with the next batch, without waiting for it.
    /// A record that cannot be written is reported in the service log.
    pub fn append_nowait(&self, rec: Record) {
        self.note_policy(&rec);
        let sent = encode_stamped(&rec, &self.stamp).and_then(|json| {
            let pending = Pending { json, done: None };
            match (&self.later, &rec) {
                // A completion rides with the next batch someone waits for, or is written
                // within `SYNC_DEFER`; only the first of a window wakes the writer.
                (Some(later), Record::Completion(_)) => {
                    later.send(pending).map_err(|_| shut_down())?;
                    if !self.shared.later_armed.swap(true, Ordering::SeqCst) {
                        self.tx.send(Msg::Later).map_err(|_| shut_down())?;
                    }
                    Ok(())
                }
                _ => self.tx.send(Msg::Record(pending)).map_err(|_| shut_down()),
            }
        });
        if let Err(e) = sent {
            tracing::error!(error = %e, record = ?rec, "audit record dropped");
        }
    }

    /// Writes everything queued (plus a `shutdown` event), syncs it and stops the writer.
    /// Later appends fail with [`AuditError::Unavailable`].
    pub async fn shutdown(&self) {
        if self.shared.state.load(Ordering::SeqCst) == RUNNING {
            let mut e = EventRecord::new("shutdown", "clean shutdown".to_owned());
            e.policy_version = self
                .shared
                .policy_version
                .lock()
                .ok()
                .map(|p| p.clone())
                .filter(|p| !p.is_empty());
            self.append_nowait(Record::Event(e));
        }
        let (ack, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).is_ok() {
            let _ = rx.await;
        }
        self.shared.state.fetch_max(STOPPED, Ordering::SeqCst);
    }

    /// The replica every record of this log names, if it was opened with one.
    pub fn replica(&self) -> Option<&crate::config::Replica> {
        self.replica.as_ref()
    }

    /// False once the log is poisoned (an fdatasync failed) or shut down. A failing write
    /// (disk full) does not make it unhealthy: every append reports its own failure and the
    /// next batch retries; see [`AuditLog::status`].
    pub fn healthy(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) == RUNNING
    }

    pub fn status(&self) -> AuditStatus {
        match self.shared.state.load(Ordering::SeqCst) {
            RUNNING if self.shared.write_failing.load(Ordering::SeqCst) => {
                AuditStatus::WriteFailing
            }
            RUNNING => AuditStatus::Ok,
            POISONED => AuditStatus::Poisoned,
            _ => AuditStatus::Stopped,
        }
    }

    /// Remembers the policy version an event reports, for the next checkpoint.
    fn note_policy(&self, rec: &Record) {
        if let Record::Event(EventRecord {
            policy_version: Some(v),
            ..
        }) = rec
            && let Ok(mut p) = self.shared.policy_version.lock()
            && *p != *v
        {
            p.clone_from(v);
        }
    }

    fn refuse_if_down(&self) -> Result<(), AuditError> {
        match self.shared.state.load(Ordering::SeqCst) {
            RUNNING => Ok(()),
            POISONED => Err(AuditError::Unavailable(
                "the audit log refuses records after an fdatasync failure; restart the gateway"
                    .into(),
            )),
            _ => Err(shut_down()),
        }
    }
}

/// How [`AuditLog::open_with`] runs the log.
#[derive(Debug)]
pub struct Options {
    /// Most records per fdatasync.
    pub batch_max: usize,
    pub upkeep: upkeep::Upkeep,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_max: 512,
            upkeep: upkeep::Upkeep::default(),
        }
    }
}

impl Options {
    /// The options the `audit:` config section asks for, checkpoints signed with `signer`.
    pub fn from_config(
        c: &crate::config::AuditConfig,
        signer: Option<checkpoint::Signer>,
    ) -> Options {
        let secs = std::time::Duration::from_secs;
        Options {
            batch_max: c.batch_max,
            upkeep: upkeep::Upkeep {
                signer,
                checkpoint_every: c.checkpoint_every,
                checkpoint_interval: Some(secs(c.checkpoint_interval_secs)),
                checkpoint_export: c.checkpoint_export.clone(),
                rotate_bytes: c.rotate_bytes,
                rotate_after: c.rotate_secs.map(secs),
                retain_segments: c.retain_segments,
                retain_age: c.retain_days.map(|d| secs(d * 86_400)),
                ..upkeep::Upkeep::default()
            },
        }
    }
}

/// Refuses a log whose placement lets someone else redirect or rewrite it: a symbolic
/// link (whoever controls the link chooses where the evidence goes), a file writable by
/// everyone, or a directory writable by everyone without the sticky bit (anyone could
/// replace the file).
fn check_placement(path: &Path, dir: Option<&Path>) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt;
    let refuse = |m: String| Err(AuditError::Unavailable(m));
    if let Ok(md) = fs::symlink_metadata(path) {
        if md.file_type().is_symlink() {
            return refuse(format!(
                "`{}` is a symbolic link; give the log's real path",
                path.display()
            ));
        }
        if md.is_file() && md.permissions().mode() & 0o002 != 0 {
            return refuse(format!(
                "`{}` is writable by everyone; `chmod o-w` it",
                path.display()
            ));
        }
    }
    let dir = dir.unwrap_or(Path::new("."));
    if let Ok(md) = fs::metadata(dir) {
        let mode = md.permissions().mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return refuse(format!(
                "the directory `{}` of the audit log is writable by everyone; anyone could replace the log (`chmod o-w` it, or use a directory of its own)",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The completion of a forwarded transfer that a crash interrupted (found at start-up).
fn crashed_completion(decision_seq: u64, request_id: String) -> Record {
    Record::Completion(CompletionRecord {
        time: record::now_rfc3339(),
        request_id,
        decision_seq,
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
        duration_ms: 0,
        outcome: Outcome::UnknownCrashed,
        detail: Some(
            "the gateway stopped before this transfer ended; how much was sent is unknown".into(),
        ),
        recheck: None,
        sent_sha256: None,
    })
}

fn shut_down() -> AuditError {
    AuditError::Unavailable("the audit log is shut down".into())
}

/// Serialises a record on the caller's task, so the writer only hashes and writes; the
/// `stamp` members (see [`Stamp`]) go last, before the closing brace.
fn encode_stamped(rec: &Record, stamp: &[u8]) -> Result<Vec<u8>, AuditError> {
    let mut json = serde_json::to_vec(rec)
        .map_err(|e| AuditError::Unavailable(format!("cannot encode the record: {e}")))?;
    if !stamp.is_empty() && json.last() == Some(&b'}') {
        json.pop();
        json.extend_from_slice(stamp);
        json.push(b'}');
    }
    if !is_spliceable(&json) {
        return Err(AuditError::Unavailable(
            "cannot encode the record: it is not a JSON object starting with `kind`".into(),
        ));
    }
    Ok(json)
}
