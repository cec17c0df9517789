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

use super::line::{GENESIS, HASH_LEN, Head, MAX_LINE, check_json, read_head};

#[cfg(test)]
mod tests;

/// How many lines the classifier may look past a broken line.
const LOOKAHEAD: usize = 1024;
/// How many recent records are remembered to recognise a copied line.
const RING: usize = 1024;

/// What kind of damage a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    let mut lines = Lines {
        reader,
        ahead: VecDeque::new(),
        next_no: 1,
        offset: base,
    };
    let mut chain = Chain::new(anchored, base);
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

/// The state of the chain after the last good record.
struct Chain {
    anchored: bool,
    /// The sequence number the next record must have.
    expected: u64,
    /// Hash of the last good record, which the next must link to.
    prev: [u8; HASH_LEN],
    /// What the last good record itself linked to.
    prev_prev: [u8; HASH_LEN],
    prev_line: u64,
    prev_offset: u64,
    records: u64,
    last: Option<(u64, [u8; HASH_LEN])>,
    good_end: u64,
    /// Recent records by `seq % RING`: (seq, line, hash).
    recent: Vec<(u64, u64, [u8; HASH_LEN])>,
}

fn finding(kind: ProblemKind, line: u64, offset: u64, seq: Option<u64>, msg: String) -> Finding {
    Finding {
        problem: Problem {
            kind,
            line,
            seq,
            message: msg,
        },
        offset,
    }
}

impl Chain {
    fn new(anchored: bool, base: u64) -> Chain {
        Chain {
            anchored,
            expected: 1,
            prev: GENESIS,
            prev_prev: GENESIS,
            prev_line: 0,
            prev_offset: base,
            records: 0,
            last: None,
            good_end: base,
            recent: vec![(0, 0, GENESIS); RING],
        }
    }

    fn accept(&mut self, l: &RawLine, h: &Head) {
        self.anchored = true;
        self.expected = h.seq.saturating_add(1);
        self.prev_prev = h.prev;
        self.prev = h.hash;
        self.prev_line = l.no;
        self.prev_offset = l.offset;
        self.records += 1;
        self.last = Some((h.seq, h.hash));
        self.good_end = l.offset + l.bytes.len() as u64 + 1;
        self.recent[(h.seq % RING as u64) as usize] = (h.seq, l.no, h.hash);
    }

    fn step<R: BufRead>(&mut self, l: &RawLine, lines: &mut Lines<R>) -> Result<(), Finding> {
        let at = |kind, seq, msg| finding(kind, l.no, l.offset, seq, msg);
        if l.overlong {
            return Err(at(
                ProblemKind::Malformed,
                None,
                format!("line is longer than {MAX_LINE} bytes"),
            ));
        }
        if !l.terminated {
            return Err(at(
                ProblemKind::Truncated,
                None,
                format!(
                    "the file ends inside a record: {} bytes after the last newline",
                    l.bytes.len()
                ),
            ));
        }
        let h = read_head(&l.bytes).map_err(|m| at(ProblemKind::Malformed, None, m))?;
        check_json(&l.bytes).map_err(|m| at(ProblemKind::Malformed, Some(h.seq), m))?;
        if !self.anchored {
            if !h.hash_ok {
                return Err(at(
                    ProblemKind::Modified,
                    Some(h.seq),
                    format!("record seq {} does not match its hash", h.seq),
                ));
            }
            self.accept(l, &h);
            return Ok(());
        }
        if h.hash_ok && h.seq == self.expected && h.prev == self.prev {
            self.accept(l, &h);
            return Ok(());
        }
        Err(self.classify(l, &h, lines))
    }

    /// Names what is wrong with line `l`, which does not continue the chain.
    fn classify<R: BufRead>(&self, l: &RawLine, h: &Head, lines: &mut Lines<R>) -> Finding {
        use ProblemKind::*;
        let (e, s, no) = (self.expected, h.seq, l.no);
        let at = |kind, msg| finding(kind, no, l.offset, Some(s), msg);
        let next = lines.peek_head(0);
        // The chain continues on the next line as if this line were not there.
        let next_links_back = next.is_some_and(|n| n.seq == e && n.prev == self.prev);
        let next_links_here =
            next.is_some_and(|n| n.seq == s.saturating_add(1) && n.prev == h.hash);
        let before = if self.prev_line == 0 {
            "the genesis hash".to_owned()
        } else {
            format!("seq {} (line {})", e - 1, self.prev_line)
        };

        if !h.hash_ok {
            if next_links_back {
                return at(
                    Inserted,
                    format!(
                        "line {no} does not match its hash and is not part of the chain: \
                         line {} continues from {before}",
                        no + 1
                    ),
                );
            }
            let msg = if s == e && h.prev == self.prev {
                format!("record seq {s} was altered: its content no longer matches its hash")
            } else {
                format!("line {no} does not match its hash")
            };
            return at(Modified, msg);
        }

        if s == e {
            // Right number, wrong link.
            if next_links_back {
                return at(
                    Inserted,
                    format!(
                        "a forged record claims seq {s}: it does not link to {before}, \
                         and the record on line {} does",
                        no + 1
                    ),
                );
            }
            if next_links_here && self.prev_line > 0 {
                return finding(
                    Modified,
                    self.prev_line,
                    self.prev_offset,
                    Some(e - 1),
                    format!(
                        "record seq {} was rewritten: seq {s} on line {no} links to a \
                         different hash",
                        e - 1
                    ),
                );
            }
            if next.is_none() {
                return at(
                    Inserted,
                    format!(
                        "record seq {s} does not link to {before}: it was forged, or \
                         the record before it was rewritten"
                    ),
                );
            }
            return at(
                Modified,
                format!(
                    "record seq {s} was replaced: it does not link to {before} and the next \
                     record does not link to it"
                ),
            );
        }

        if s > e {
            let mut linked = false;
            let mut earlier: Option<(u64, u64)> = None;
            for k in 0..LOOKAHEAD {
                let Some(raw) = lines.peek(k) else { break };
                let raw_no = raw.no;
                let Some(n) = lines.peek_head(k) else {
                    continue;
                };
                linked |= n.prev == h.hash || n.hash == h.prev;
                if earlier.is_none() && (e..s).contains(&n.seq) {
                    earlier = Some((raw_no, n.seq));
                }
                if linked && earlier.is_some() {
                    break;
                }
            }
            if let (true, Some((j, seq_j))) = (linked, earlier) {
                return at(
                    Reordered,
                    format!(
                        "record seq {s} is out of order: seq {seq_j} comes after it on line {j}"
                    ),
                );
            }
            if next_links_back {
                return at(
                    Inserted,
                    format!(
                        "record seq {s} is not part of the chain: line {} continues from {before}",
                        no + 1
                    ),
                );
            }
            let msg = if s == e + 1 {
                format!("record seq {e} is missing before line {no}")
            } else {
                format!(
                    "records seq {e} to {} are missing before line {no} ({} records)",
                    s - 1,
                    s - e
                )
            };
            return at(Missing, msg);
        }

        // s < e: the sequence goes back.
        if h.hash == self.prev {
            return at(
                Duplicated,
                format!("line {no} repeats line {} (seq {s})", self.prev_line),
            );
        }
        let (r_seq, r_line, r_hash) = self.recent[(s % RING as u64) as usize];
        let remembered = (r_seq == s).then_some((r_line, r_hash));
        if let Some((j, hash)) = remembered
            && hash == h.hash
        {
            return at(
                Duplicated,
                format!("record seq {s} appears again (first on line {j})"),
            );
        }
        if s == e - 1 && h.prev == self.prev_prev {
            // Two different records claim the same place; the one the next line links to is genuine.
            if next_links_here {
                return finding(
                    Inserted,
                    self.prev_line,
                    self.prev_offset,
                    Some(s),
                    format!(
                        "a forged record claims seq {s} on line {}; the genuine one follows \
                         on line {no}",
                        self.prev_line
                    ),
                );
            }
            return at(
                Inserted,
                format!(
                    "a second, different record claims seq {s} (first on line {})",
                    self.prev_line
                ),
            );
        }
        if let Some((j, _)) = remembered {
            return at(
                Inserted,
                format!("a second, different record claims seq {s} (first on line {j})"),
            );
        }
        at(
            Reordered,
            format!(
                "record seq {s} comes after seq {}: the sequence goes backwards",
                e - 1
            ),
        )
    }
}
