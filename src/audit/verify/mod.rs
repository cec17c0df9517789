//! The verifier: walks a log line by line and names the first break in the hash chain.
//!
//! One checker serves `bordergate audit verify` (the whole file, from the genesis hash) and
//! the start-up tail check (the last MiB, anchored on its first complete line). It streams:
//! one reused line buffer, and a bounded look-ahead only once something is wrong, to tell
//! a deleted record from a moved one and a forged record from a rewritten one.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::line::{HASH_LEN, Head, MAX_LINE, read_head};

mod chain;
mod log;
#[cfg(test)]
mod tests;

pub(crate) use chain::Chain;
pub(crate) use log::opens_segment;
pub use log::{Damage, LogReport, RecordedRepair, VerifyOptions, parse_receipt, verify_log};

/// How many lines the classifier may look past a broken line.
const LOOKAHEAD: usize = 1024;
/// How many recent records are remembered to recognise a copied line.
const RING: usize = 1024;

/// What kind of damage a problem is; serialised as [`ProblemKind::as_str`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A record's content no longer matches its hash, or a record was rewritten.
    Modified,
    /// Records were deleted: the sequence jumps.
    Missing,
    /// A record that is not part of the chain was added.
    Inserted,
    /// A record appears twice.
    Duplicated,
    /// Records are out of order.
    Reordered,
    /// The file ends in the middle of a line.
    Truncated,
    /// A line is not an audit record at all.
    Malformed,
    /// The file could not be read.
    Unreadable,
    /// A whole segment is gone and no retention record says it was removed by policy.
    MissingSegment,
    /// A checkpoint's signature does not verify, or it does not sign the record before it.
    BadCheckpointSignature,
    /// A receipted record is not in the log with the receipted hash.
    MissingReceipt,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Modified => "modified",
            ProblemKind::Missing => "missing",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Duplicated => "duplicated",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Malformed => "malformed",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::MissingSegment => "missing-segment",
            ProblemKind::BadCheckpointSignature => "bad-checkpoint-signature",
            ProblemKind::MissingReceipt => "missing-receipt",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first break found in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// 1-based line number of the record the problem names.
    pub line: u64,
    /// That record's sequence number, when the line is readable.
    pub seq: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at line {}", self.kind, self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of checking a whole log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that chain correctly (before the problem, if any).
    pub records: u64,
    pub problem: Option<Problem>,
    /// Sequence number and hash of the last record that chains correctly.
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    /// Bytes of the file covered by the correctly chained records.
    pub bytes: u64,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.problem, self.last_seq, &self.last_hash) {
            (None, None, _) => write!(f, "ok: the log is empty"),
            (None, Some(seq), Some(hash)) => write!(
                f,
                "ok: {} records, seq 1 to {seq}, last hash {hash}",
                self.records
            ),
            (None, Some(seq), None) => write!(f, "ok: {} records, seq 1 to {seq}", self.records),
            (Some(p), _, _) => {
                write!(f, "FAILED: {p}")?;
                match self.last_seq {
                    Some(seq) => write!(
                        f,
                        "\n{} records before it chain correctly (seq 1 to {seq})",
                        self.records
                    ),
                    None => write!(f, "\nno record before it chains correctly"),
                }
            }
        }
    }
}

/// Checks every line of the log at `path`: shape, own hash, sequence and links.
/// Streams the file; memory use does not grow with its size.
pub fn verify_file(path: &Path) -> VerifyReport {
    match File::open(path) {
        Ok(file) => verify_reader(BufReader::with_capacity(1 << 20, file)),
        Err(e) => VerifyReport {
            records: 0,
            problem: Some(Problem {
                kind: ProblemKind::Unreadable,
                line: 0,
                seq: None,
                message: format!("cannot open `{}`: {e}", path.display()),
            }),
            last_seq: None,
            last_hash: None,
            bytes: 0,
        },
    }
}

/// Checks a whole log read from `reader`, as [`verify_file`] does.
pub fn verify_reader<R: BufRead>(reader: R) -> VerifyReport {
    let out = check(reader, 0, true);
    VerifyReport {
        records: out.records,
        problem: out.finding.map(|f| f.problem),
        last_seq: out.last.map(|(s, _)| s),
        last_hash: out.last.map(|(_, h)| hex::encode(h)),
        bytes: out.good_end,
    }
}

/// A problem and where its line starts in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    pub problem: Problem,
    pub offset: u64,
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub records: u64,
    /// Sequence number and hash of the last record that chains correctly.
    pub last: Option<(u64, [u8; HASH_LEN])>,
    /// File offset just past that record (or the start offset).
    pub good_end: u64,
    pub finding: Option<Finding>,
}

/// Checks the lines read from `reader`, whose first byte is at file offset `base`.
/// `anchored`: the first line must be seq 1 linking to the genesis hash; otherwise the first
/// line is taken on trust (apart from its own hash) and the chain is checked from there.
pub(crate) fn check<R: BufRead>(reader: R, base: u64, anchored: bool) -> Outcome {
    check_from(reader, Chain::new(anchored, base), &mut |_, _| {})
}

/// Like [`check`], from a given chain state; `each` sees every record that chains
/// correctly (the line without its newline, and its sequence number).
pub(crate) fn check_from<R: BufRead>(
    reader: R,
    mut chain: Chain,
    each: &mut dyn FnMut(&[u8], u64),
) -> Outcome {
    let base = chain.good_end;
    let mut lines = Lines {
        reader,
        ahead: VecDeque::new(),
        next_no: 1,
        offset: base,
    };
    let mut cur = RawLine::default();
    let finding = loop {
        match lines.next(&mut cur) {
            Ok(false) => break None,
            Ok(true) => {}
            Err(e) => {
                break Some(Finding {
                    problem: Problem {
                        kind: ProblemKind::Unreadable,
                        line: lines.next_no,
                        seq: None,
                        message: format!("read error: {e}"),
                    },
                    offset: lines.offset,
                });
            }
        }
        if let Err(f) = chain.step(&cur, &mut lines) {
            break Some(f);
        }
        if let Some((seq, _)) = chain.last {
            each(&cur.bytes, seq);
        }
    };
    Outcome {
        records: chain.records,
        last: chain.last,
        good_end: chain.good_end,
        finding,
    }
}

#[derive(Default)]
struct RawLine {
    no: u64,
    offset: u64,
    /// Without the newline.
    bytes: Vec<u8>,
    terminated: bool,
    overlong: bool,
}

struct Lines<R> {
    reader: R,
    ahead: VecDeque<RawLine>,
    next_no: u64,
    offset: u64,
}

impl<R: BufRead> Lines<R> {
    fn read_raw(&mut self, into: &mut RawLine) -> io::Result<bool> {
        into.bytes.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut into.bytes)?;
        if n == 0 {
            return Ok(false);
        }
        into.no = self.next_no;
        into.offset = self.offset;
        self.next_no += 1;
        self.offset += n as u64;
        into.terminated = into.bytes.last() == Some(&b'\n');
        into.overlong = !into.terminated && into.bytes.len() > MAX_LINE;
        if into.terminated {
            into.bytes.pop();
        }
        Ok(true)
    }

    fn next(&mut self, into: &mut RawLine) -> io::Result<bool> {
        match self.ahead.pop_front() {
            Some(l) => {
                *into = l;
                Ok(true)
            }
            None => self.read_raw(into),
        }
    }

    /// The `k`-th line after the current one, if it can be read.
    fn peek(&mut self, k: usize) -> Option<&RawLine> {
        while self.ahead.len() <= k {
            let mut l = RawLine::default();
            match self.read_raw(&mut l) {
                Ok(true) => self.ahead.push_back(l),
                _ => return None,
            }
        }
        self.ahead.get(k)
    }

    /// The head of the `k`-th line ahead, if it is a complete record matching its hash.
    fn peek_head(&mut self, k: usize) -> Option<Head> {
        let l = self.peek(k)?;
        if !l.terminated {
            return None;
        }
        read_head(&l.bytes).ok().filter(|h| h.hash_ok)
    }
}
