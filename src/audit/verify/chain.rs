//! The chain state and the classifier that names what broke it.

use std::io::BufRead;

use super::{Finding, LOOKAHEAD, Lines, Problem, ProblemKind, RING, RawLine};
use crate::audit::line::{GENESIS, HASH_LEN, Head, MAX_LINE, check_json, read_head};

/// The state of the chain after the last good record.
pub(crate) struct Chain {
    anchored: bool,
    /// The sequence number the next record must have.
    expected: u64,
    /// Hash of the last good record, which the next must link to.
    prev: [u8; HASH_LEN],
    /// What the last good record itself linked to.
    prev_prev: [u8; HASH_LEN],
    prev_line: u64,
    prev_offset: u64,
    pub(super) records: u64,
    pub(super) last: Option<(u64, [u8; HASH_LEN])>,
    pub(super) good_end: u64,
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
    pub(crate) fn new(anchored: bool, base: u64) -> Chain {
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

    /// A chain that continues from a record of an earlier file: `prev` is its hash and
    /// `expected` the sequence number after it.
    pub(crate) fn continuing(expected: u64, prev: [u8; HASH_LEN]) -> Chain {
        let mut c = Chain::new(true, 0);
        c.expected = expected;
        c.prev = prev;
        c
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

    pub(super) fn step<R: BufRead>(
        &mut self,
        l: &RawLine,
        lines: &mut Lines<R>,
    ) -> Result<(), Finding> {
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
