//! The writer's upkeep between batches: the head file, signed checkpoints, segment
//! rotation and retention.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::checkpoint::Signer;
use super::record::{SegmentRemoved, SegmentStart, now_rfc3339};
use super::segments;
use super::writer::{LogFile, Pending, RUNNING, Writer};

/// What the writer does besides writing batches; all off by default.
#[derive(Debug, Default)]
pub struct Upkeep {
    pub signer: Option<Signer>,
    /// Checkpoint after this many records (0: only by time and at shutdown).
    pub checkpoint_every: u64,
    pub checkpoint_interval: Option<Duration>,
    pub checkpoint_export: Option<PathBuf>,
    /// The active log's path; rotation needs it.
    pub path: Option<PathBuf>,
    pub rotate_bytes: Option<u64>,
    pub rotate_after: Option<Duration>,
    pub retain_segments: Option<usize>,
    pub retain_age: Option<Duration>,
    /// The head file beside the log, rewritten after every batch (see [`super::head`]).
    pub head: Option<super::head::HeadFile>,
    pub(crate) since_checkpoint: u64,
    pub(crate) last_checkpoint: Option<Instant>,
    pub(crate) segment_started: Option<Instant>,
}

impl Upkeep {
    /// How long the writer may wait for records before some upkeep is due.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        let left = |since: Option<Instant>, every: Option<Duration>| {
            every.map(|e| e.saturating_sub(now.duration_since(since.unwrap_or(now))))
        };
        let cp = if self.signer.is_some() {
            left(self.last_checkpoint, self.checkpoint_interval)
        } else {
            None
        };
        let rot = if self.path.is_some() {
            left(self.segment_started, self.rotate_after)
        } else {
            None
        };
        match (cp, rot) {
            (Some(a), Some(b)) => Some(a.min(b).max(Duration::from_millis(10))),
            (a, b) => a.or(b).map(|d| d.max(Duration::from_millis(10))),
        }
    }
}

fn elapsed(since: Option<Instant>, every: Option<Duration>) -> bool {
    match (since, every) {
        (Some(s), Some(e)) => s.elapsed() >= e,
        _ => false,
    }
}

impl<F: LogFile> Writer<F> {
    fn running(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) == RUNNING
    }

    /// Writes one record of the writer's own as a batch of one; true if it is durable.
    fn commit_own(&mut self, json: Vec<u8>) -> bool {
        let before = self.seq;
        let mut batch = vec![Pending { json, done: None }];
        self.commit(&mut batch);
        self.upkeep.since_checkpoint += self.seq - before;
        self.seq > before
    }

    pub(crate) fn after_commit(&mut self, written: u64) {
        let u = &mut self.upkeep;
        u.since_checkpoint += written;
        if u.last_checkpoint.is_none() {
            u.last_checkpoint = Some(Instant::now());
        }
        if u.segment_started.is_none() {
            u.segment_started = Some(Instant::now());
        }
        if u.signer.is_some() && u.checkpoint_every > 0 && u.since_checkpoint >= u.checkpoint_every
        {
            self.checkpoint();
        }
        if self.upkeep.rotate_bytes.is_some_and(|max| self.len >= max) {
            self.rotate();
        }
    }

    /// Called when the writer waited long enough for time-based upkeep.
    pub(crate) fn tick(&mut self) {
        let u = &self.upkeep;
        if u.since_checkpoint > 0 && elapsed(u.last_checkpoint, u.checkpoint_interval) {
            self.checkpoint();
        } else if u.since_checkpoint == 0 {
            self.upkeep.last_checkpoint = Some(Instant::now());
        }
        if elapsed(self.upkeep.segment_started, self.upkeep.rotate_after) {
            if self.len > 0 {
                self.rotate();
            } else {
                self.upkeep.segment_started = Some(Instant::now());
            }
        }
    }

    pub(crate) fn final_checkpoint(&mut self) {
        if self.upkeep.since_checkpoint > 0 {
            self.checkpoint();
        }
    }

    /// Signs the current head and chains the checkpoint (and exports it, if asked).
    pub(crate) fn checkpoint(&mut self) {
        self.upkeep.last_checkpoint = Some(Instant::now());
        let Some(signer) = &self.upkeep.signer else {
            return;
        };
        if self.seq <= 1 || !self.running() {
            return;
        }
        let policy = self
            .shared
            .policy_version
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let cp = signer.sign(
            self.seq - 1,
            &hex::encode(self.prev),
            &now_rfc3339(),
            &policy,
        );
        let Ok(json) = serde_json::to_vec(&cp) else {
            return;
        };
        if !self.commit_own(json) {
            return;
        }
        self.upkeep.since_checkpoint = 0;
        if let Some(export) = &self.upkeep.checkpoint_export {
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(export)
                .and_then(|mut f| {
                    Write::write_all(&mut f, &self.buf)?;
                    f.sync_data()
                });
            if let Err(e) = written {
                tracing::warn!(file = %export.display(), error = %e, "cannot export the audit checkpoint");
            }
        }
    }

    /// Closes the active segment under the next segment number and starts a new one.
    pub(crate) fn rotate(&mut self) {
        self.upkeep.segment_started = Some(Instant::now());
        let Some(path) = self.upkeep.path.clone() else {
            return;
        };
        if self.seq <= 1 || !self.running() {
            return;
        }
        if self.upkeep.signer.is_some() && self.upkeep.since_checkpoint > 0 {
            // Seal the segment: its last record is a signed checkpoint.
            self.checkpoint();
        }
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        let n = match segments::rotated(&path) {
            Ok(list) => list.last().map(|(n, _)| n + 1).unwrap_or(1),
            Err(e) => {
                tracing::error!(error = %e, "cannot rotate the audit log");
                return;
            }
        };
        let seg = segments::segment_name(&path, n);
        // The segment is closed durable.
        self.sync_pending();
        if let Err(e) = std::fs::rename(&path, &seg) {
            tracing::error!(error = %e, segment = %seg.display(), "cannot rotate the audit log");
            return;
        }
        if let Err(e) = self.file.reopen(&path) {
            tracing::error!(error = %e, "cannot start a new audit segment; continuing the old one");
            let _ = std::fs::rename(&seg, &path);
            return;
        }
        if let Err(e) = segments::sync_dir(&dir) {
            tracing::warn!(error = %e, "cannot sync the audit log directory");
        }
        self.len = 0;
        let name = seg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let start = SegmentStart {
            kind: "event".into(),
            time: now_rfc3339(),
            event: "segment-start".into(),
            detail: format!("continues from `{name}`"),
            previous: name,
            previous_hash: hex::encode(self.prev),
        };
        if let Ok(json) = serde_json::to_vec(&start) {
            self.commit_own(json);
        }
        self.retain();
    }

    /// Removes the oldest rotated segments the retention policy no longer keeps, each after
    /// recording its removal in the chain.
    fn retain(&mut self) {
        let (Some(path), keep, age) = (
            self.upkeep.path.clone(),
            self.upkeep.retain_segments,
            self.upkeep.retain_age,
        ) else {
            return;
        };
        if keep.is_none() && age.is_none() {
            return;
        }
        let Ok(list) = segments::rotated(&path) else {
            return;
        };
        let too_many = keep.map(|k| list.len().saturating_sub(k)).unwrap_or(0);
        let too_old = |p: &PathBuf| {
            age.is_some_and(|age| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|a| a >= age)
            })
        };
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        for (i, (_, seg)) in list.iter().enumerate() {
            if i >= too_many && !too_old(seg) {
                break;
            }
            let (first_seq, last_seq, last_hash) = match segments::ends(seg) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "retention: cannot read the segment; keeping it");
                    break;
                }
            };
            let name = seg
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let rec = SegmentRemoved {
                kind: "event".into(),
                time: now_rfc3339(),
                event: "segment-removed".into(),
                detail: format!(
                    "retention policy removed `{name}` (seq {first_seq} to {last_seq})"
                ),
                segment: name,
                first_seq,
                last_seq,
                last_hash,
            };
            let Ok(json) = serde_json::to_vec(&rec) else {
                break;
            };
            if !self.commit_own(json) {
                break;
            }
            if let Err(e) = std::fs::remove_file(seg) {
                tracing::error!(error = %e, segment = %seg.display(), "retention: cannot remove the segment");
                break;
            }
        }
        if let Err(e) = segments::sync_dir(&dir) {
            tracing::warn!(error = %e, "cannot sync the audit log directory");
        }
    }
}
