//! The start-up tail check: verify the end of an existing log, cut a torn last line, and
//! find where the chain continues.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::AuditError;
use super::line::{GENESIS, HASH_LEN};
use super::record::view::{RecordView, kind_of};
use super::verify::{self, ProblemKind};

/// How much of the end of the log is checked at start-up.
pub(crate) const WINDOW: u64 = 1 << 20;

/// Where the chain continues after the tail check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    /// Sequence number of the next record.
    pub seq: u64,
    /// Hash of the last record (the genesis hash for a new log).
    pub prev: [u8; HASH_LEN],
    /// Length of the file after any repair.
    pub len: u64,
    /// A torn last line was cut: (offset it started at, bytes cut).
    pub repaired: Option<(u64, u64)>,
}

impl Resume {
    pub fn fresh(len: u64) -> Resume {
        Resume {
            seq: 1,
            prev: GENESIS,
            len,
            repaired: None,
        }
    }
}

/// Checks the last MiB of `file` (a regular file opened for reading and appending).
/// A torn last line is cut and the cut made durable; any other damage is an error.
pub(crate) fn recover(file: &File, name: &str) -> Result<Resume, AuditError> {
    let io_err = |what: &str, e: std::io::Error| {
        AuditError::Unavailable(format!("cannot {what} `{name}`: {e}"))
    };
    let len = file.metadata().map_err(|e| io_err("read", e))?.len();
    if len == 0 {
        return Ok(Resume::fresh(0));
    }
    let start = len.saturating_sub(WINDOW);
    // At most WINDOW bytes.
    let mut window = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut window, start)
        .map_err(|e| io_err("read", e))?;
    // Unless the window is the whole file it starts inside a line: skip to the next one.
    let skip = if start == 0 {
        0
    } else {
        window
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(window.len())
    };
    let base = start + skip as u64;
    // A file whose first record opens a segment (after a rotation or a repair) continues a
    // chain from another file: its first line is taken on its own hash, as in a window.
    let first = window[skip..]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let anchored = start == 0 && !verify::opens_segment(first);
    let out = verify::check(&window[skip..], base, anchored);

    let mut resume_len = len;
    let mut repaired = None;
    if let Some(f) = out.finding {
        if f.problem.kind != ProblemKind::Truncated {
            let seq = f
                .problem
                .seq
                .map(|s| format!(" (seq {s})"))
                .unwrap_or_default();
            let lines = if start == 0 {
                String::new()
            } else {
                format!("; line numbers count from byte offset {base}")
            };
            return Err(AuditError::Corrupt(format!(
                "`{name}` is damaged at byte offset {}{seq}: {}: {}{lines}; \
                 run `bordergate audit verify` on it for details",
                f.offset, f.problem.kind, f.problem.message
            )));
        }
        if out.last.is_none() && start > 0 {
            return Err(no_record(name));
        }
        // The last write was cut short by a crash: that record was never acknowledged.
        file.set_len(f.offset)
            .map_err(|e| io_err("cut the torn end of", e))?;
        file.sync_all()
            .map_err(|e| io_err("cut the torn end of", e))?;
        repaired = Some((f.offset, len - f.offset));
        resume_len = f.offset;
    }
    match out.last {
        Some((seq, hash)) => Ok(Resume {
            seq: seq + 1,
            prev: hash,
            len: resume_len,
            repaired,
        }),
        None if start == 0 => Ok(Resume {
            repaired,
            ..Resume::fresh(resume_len)
        }),
        None => Err(no_record(name)),
    }
}

fn no_record(name: &str) -> AuditError {
    AuditError::Corrupt(format!(
        "`{name}` has no complete record in its last {WINDOW} bytes; \
         run `bordergate audit verify` on it for details"
    ))
}

/// Decisions in the last [`WINDOW`] bytes (up to `len`) that were forwarded (`status` 0) and
/// have no completion record: the gateway stopped during their transfer. Returns their
/// `(seq, request_id)`, oldest first.
pub(crate) fn unfinished(file: &File, len: u64) -> Vec<(u64, String)> {
    let start = len.saturating_sub(WINDOW);
    let mut window = vec![0u8; (len - start) as usize];
    if file.read_exact_at(&mut window, start).is_err() {
        return Vec::new();
    }
    unfinished_in(window.split(|&b| b == b'\n').skip(usize::from(start > 0)))
}

/// The forwarded decisions among `lines` (oldest first) that no later line completes; shared
/// by the file sink and each chain of the PostgreSQL sink.
pub(crate) fn unfinished_in<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<(u64, String)> {
    let mut open: Vec<(u64, String)> = Vec::new();
    let mut done = std::collections::HashSet::new();
    for line in lines {
        // Only decisions and completions matter.
        if !matches!(kind_of(line), Some("decision" | "completion")) {
            continue;
        }
        match RecordView::parse(line) {
            Ok(RecordView::Completion(c)) => done.extend(c.decision_seq),
            Ok(RecordView::Decision(d)) if d.status == 0 => {
                if let Some(seq) = d.seq {
                    open.push((seq, d.request_id.into_owned()));
                }
            }
            _ => {}
        }
    }
    open.retain(|(s, _)| !done.contains(s));
    open
}
