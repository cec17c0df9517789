//! Verifying a whole log: its segments in order, the links between them, retention
//! removals, checkpoint signatures and receipts.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use super::{Chain, Problem, ProblemKind, check_from};
use crate::audit::checkpoint::{Checkpoint, PublicKey};
use crate::audit::line::{HASH_LEN, MAX_LINE, read_head};
use crate::audit::record::view::{RecordView, kind_of};
use crate::audit::record::{RepairRecord, SegmentRemoved, SegmentStart};

/// What to check besides the chain.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Check every checkpoint against this key, and require at least one.
    pub pubkey: Option<PublicKey>,
    /// Receipts `(seq, hash)` whose records must still be in the log.
    pub receipts: Vec<(u64, String)>,
    /// How long a young log may lack its first checkpoint: when no checkpoint is in the log
    /// and its newest `start` event is less than this from now, that is reported as
    /// [`LogReport::checkpoint_pending`] instead of damage. The writer signs its first
    /// checkpoint `audit.checkpoint_interval_secs` after it starts writing, so the gateway
    /// uses that plus a little; zero (the default) allows no grace.
    pub checkpoint_grace: Duration,
}

/// One piece of damage: its kind and where it starts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub kind: ProblemKind,
    /// The file (segment) it was found in.
    pub file: String,
    /// 1-based line in that file (0: the file as a whole).
    pub line: u64,
    pub seq: Option<u64>,
    pub message: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in `{}`", self.kind, self.file)?;
        if self.line > 0 {
            write!(f, " at line {}", self.line)?;
        }
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A repair recorded in the chain (see [`crate::audit::repair`]): the segment it starts
/// continues from `last_good_seq`, and the damaged file is kept as `sealed`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecordedRepair {
    /// The segment whose first record is the repair record.
    pub file: String,
    pub seq: u64,
    pub time: String,
    pub sealed: String,
    pub last_good_seq: u64,
    pub damage: Vec<String>,
    pub by: String,
}

impl fmt::Display for RecordedRepair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recorded repair at seq {} in `{}` ({} by {}): the damaged log is sealed as `{}`, the chain continues from seq {}",
            self.seq, self.file, self.time, self.by, self.sealed, self.last_good_seq
        )?;
        for d in &self.damage {
            write!(f, "\n    damage found then: {d}")?;
        }
        Ok(())
    }
}

/// The result of verifying a log.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LogReport {
    /// The files checked, in order, with the records that chain correctly in each.
    pub files: Vec<(String, u64)>,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Sequence number the last valid checkpoint signs.
    pub signed_to: Option<u64>,
    /// Segments the retention policy removed (as recorded in the chain).
    pub removed: Vec<String>,
    pub receipts_checked: usize,
    /// Every damage found, in order; at most one per kind and file.
    pub damage: Vec<Damage>,
    /// No checkpoint is in the log yet, and it started within
    /// [`VerifyOptions::checkpoint_grace`]: its first checkpoint is still to come.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub checkpoint_pending: bool,
    /// Breaks repaired with `bordergate audit repair`, as the chain records them: not damage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<RecordedRepair>,
}

impl LogReport {
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }

    /// One line: `ok: …` or `FAILED: N problem(s) …`.
    pub fn summary(&self) -> String {
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a} to {b}"),
            _ => "no records".into(),
        };
        let cps = match self.signed_to {
            Some(s) => format!(", {} signed checkpoint(s) up to seq {s}", self.checkpoints),
            None => String::new(),
        };
        let repaired = match self.repairs.len() {
            0 => String::new(),
            n => format!(", {n} recorded repair(s)"),
        };
        if self.is_ok() {
            format!(
                "ok: {} records in {} file(s), {range}{cps}{repaired}",
                self.records,
                self.files.len()
            )
        } else {
            let kinds: Vec<&str> = self.damage.iter().map(|d| d.kind.as_str()).collect();
            format!(
                "FAILED: {} problem(s) ({}); {} records chain correctly, {range}{cps}",
                self.damage.len(),
                kinds.join(", "),
                self.records
            )
        }
    }
}

impl fmt::Display for LogReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        for (name, n) in &self.files {
            writeln!(f, "  {name}: {n} records")?;
        }
        for r in &self.removed {
            writeln!(
                f,
                "  {r}: removed by the retention policy (recorded in the chain)"
            )?;
        }
        for r in &self.repairs {
            writeln!(f, "  note: {r}")?;
        }
        if self.receipts_checked > 0 {
            writeln!(f, "  receipts checked: {}", self.receipts_checked)?;
        }
        if self.checkpoint_pending {
            writeln!(
                f,
                "  note: no checkpoint yet: the log started recently and its first one is pending"
            )?;
        }
        if let (Some(signed), Some(last)) = (self.signed_to, self.last_seq)
            && last > signed
        {
            writeln!(
                f,
                "  note: {} record(s) after the last checkpoint are not yet signed",
                last - signed
            )?;
        }
        for d in &self.damage {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Parses a receipt header value `seq=N; hash=H`.
pub fn parse_receipt(s: &str) -> Result<(u64, String), String> {
    let (mut seq, mut hash) = (None, None);
    for part in s.split(';') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("seq=") {
            seq = v.trim().parse::<u64>().ok();
        } else if let Some(v) = part.strip_prefix("hash=") {
            let v = v.trim();
            if v.len() == 2 * HASH_LEN && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                hash = Some(v.to_ascii_lowercase());
            }
        }
    }
    match (seq, hash) {
        (Some(s), Some(h)) => Ok((s, h)),
        _ => Err(format!(
            "`{}` is not an audit receipt (`seq=N; hash=<64 hex>`)",
            s.escape_default()
        )),
    }
}

/// Where a segment-start record said the chain came from, to be justified by a removal.
struct Gap {
    file: String,
    seq: u64,
    previous: String,
    previous_hash: String,
    /// The sequence number the chain expected, when a file came before.
    expected: Option<u64>,
}

/// Verifies the log made of `paths` (files in chain order; a directory stands for its
/// segments): every chain link, the links between segments, retention removals and, as
/// `opts` asks, checkpoint signatures and receipts.
pub fn verify_log(paths: &[PathBuf], opts: &VerifyOptions) -> LogReport {
    let mut rep = LogReport::default();
    let files = match crate::audit::query::expand(paths) {
        Ok(f) => f,
        Err(e) => {
            rep.damage
                .push(damage(ProblemKind::Unreadable, "", 0, None, e));
            return rep;
        }
    };
    // Read before the log: the writer updates the head only after a batch is durable, so
    // a live log is never behind the head read first.
    let recorded_head = files
        .last()
        .and_then(|a| crate::audit::head::read(&crate::audit::head::path_for(a)).ok())
        .flatten();
    let mut state: Option<(u64, [u8; HASH_LEN])> = None;
    let mut gaps: Vec<Gap> = Vec::new();
    let mut seen = Seen::default();
    for path in &files {
        let name = display_name(path);
        let (first, rest) = match open_first(path) {
            Ok(x) => x,
            Err(e) => {
                rep.damage
                    .push(damage(ProblemKind::Unreadable, &name, 0, None, e));
                state = None;
                continue;
            }
        };
        let head = read_head(first.strip_suffix(b"\n").unwrap_or(&first)).ok();
        let start = first_segment_start(&first);
        let repaired = first_repair(&first).filter(|r| {
            head.is_some_and(|h| {
                h.hash_ok && h.seq == r.last_good_seq + 1 && hex::encode(h.prev) == r.last_good_hash
            })
        });
        if let (Some(r), Some(h)) = (&repaired, head) {
            let sealed = path.with_file_name(&r.sealed);
            if !sealed.is_file() {
                rep.damage.push(damage(
                    ProblemKind::MissingSegment,
                    &name,
                    1,
                    Some(h.seq),
                    format!(
                        "the repair record names the sealed log `{}`, which is not beside it: the evidence of the repaired damage is gone",
                        r.sealed
                    ),
                ));
            }
            rep.repairs.push(RecordedRepair {
                file: name.clone(),
                seq: h.seq,
                time: r.time.clone(),
                sealed: r.sealed.clone(),
                last_good_seq: r.last_good_seq,
                damage: r.damage.clone(),
                by: r.by.clone(),
            });
        }
        let chain = match (state, head, &start) {
            (Some((e, p)), Some(h), _) if h.seq == e && h.prev == p => Chain::continuing(e, p),
            // The chain before the repair record is in the sealed file.
            _ if repaired.is_some() => Chain::new(false, 0),
            (_, Some(h), Some(s)) => {
                // A new segment whose predecessor is not the file before: removed or lost.
                gaps.push(Gap {
                    file: name.clone(),
                    seq: h.seq,
                    previous: s.previous.clone(),
                    previous_hash: s.previous_hash.clone(),
                    expected: state.map(|(e, _)| e),
                });
                Chain::new(false, 0)
            }
            (Some((e, p)), _, _) => Chain::continuing(e, p),
            (None, _, _) => Chain::new(true, 0),
        };
        let reader = Cursor::new(first).chain(rest);
        let mut on = |line: &[u8], seq: u64| on_record(line, seq, &name, opts, &mut rep, &mut seen);
        let out = check_from(BufReader::new(reader), chain, &mut on);
        rep.files.push((name.clone(), out.records));
        rep.records += out.records;
        if let Some(f) = out.finding {
            rep.damage.push(from_problem(&name, f.problem));
            state = None;
        } else {
            state = out.last.map(|(s, h)| (s + 1, h)).or(state);
        }
        if let Some((s, h)) = out.last {
            rep.last_seq = Some(s);
            rep.last_hash = Some(hex::encode(h));
        }
    }
    let Seen {
        removals,
        cp_problems,
        last_start,
    } = seen;
    for g in gaps {
        let justified = removals.iter().any(|r| {
            r.segment == g.previous && r.last_hash == g.previous_hash && r.last_seq + 1 == g.seq
        });
        if justified {
            rep.removed.push(g.previous);
            continue;
        }
        let lost = match g.expected {
            Some(e) if e < g.seq => format!("seq {e} to {}", g.seq - 1),
            _ => format!("up to seq {}", g.seq.saturating_sub(1)),
        };
        rep.damage.push(damage(
            ProblemKind::MissingSegment,
            &g.file,
            1,
            Some(g.seq),
            format!(
                "segment `{}` ({lost}) is missing and no retention record says it was removed",
                g.previous
            ),
        ));
    }
    rep.damage.extend(cp_problems);
    if let Some(key) = &opts.pubkey
        && rep.checkpoints == 0
        && !rep
            .damage
            .iter()
            .any(|d| d.kind == ProblemKind::BadCheckpointSignature)
    {
        if young(last_start, opts.checkpoint_grace, OffsetDateTime::now_utc()) {
            rep.checkpoint_pending = true;
        } else {
            rep.damage.push(damage(
                ProblemKind::BadCheckpointSignature,
                files
                    .last()
                    .map(|p| display_name(p))
                    .as_deref()
                    .unwrap_or(""),
                0,
                None,
                format!("no checkpoint signed by key `{}` in the log", key.id),
            ));
        }
    }
    if !opts.receipts.is_empty() {
        check_receipts(&files, opts, &removals, &mut rep);
    }
    check_head_file(&files, recorded_head, &mut rep);
    dedupe(&mut rep.damage);
    rep
}

/// Compares where the chain ends with the head file beside the active log (see
/// [`crate::audit::head`]): records cut from the end, or a log emptied or replaced, are
/// named even without a checkpoint key.
fn check_head_file(
    files: &[PathBuf],
    recorded: Option<crate::audit::head::Head>,
    rep: &mut LogReport,
) {
    // No head file (an old log, a copy) or a torn one: nothing to compare with.
    let (Some(active), Some(recorded)) = (files.last(), recorded) else {
        return;
    };
    let last = match (rep.last_seq, rep.last_hash.as_deref()) {
        (Some(seq), Some(h)) => {
            let mut hash = [0u8; HASH_LEN];
            if hex::decode_to_slice(h, &mut hash).is_err() {
                return;
            }
            Some(crate::audit::head::Head { seq, hash })
        }
        _ => None,
    };
    let name = display_name(active);
    if let Err(e) = crate::audit::head::check(last, Some(recorded), &name, false) {
        rep.damage.push(damage(
            ProblemKind::Truncated,
            &name,
            0,
            Some(recorded.seq),
            e,
        ));
    }
}

fn display_name(p: &Path) -> String {
    p.display().to_string()
}

fn damage(kind: ProblemKind, file: &str, line: u64, seq: Option<u64>, message: String) -> Damage {
    Damage {
        kind,
        file: file.to_owned(),
        line,
        seq,
        message,
    }
}

fn from_problem(file: &str, p: Problem) -> Damage {
    damage(p.kind, file, p.line, p.seq, p.message)
}

/// Keeps the first damage of each kind in each file (every missing receipt is named).
fn dedupe(d: &mut Vec<Damage>) {
    let mut seen = std::collections::HashSet::new();
    d.retain(|x| x.kind == ProblemKind::MissingReceipt || seen.insert((x.kind, x.file.clone())));
}

fn open_first(path: &Path) -> Result<(Vec<u8>, BufReader<File>), String> {
    let f = File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut first = Vec::new();
    (&mut r)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut first)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok((first, r))
}

/// The line's record, if it is a `segment-start` event.
fn first_segment_start(line: &[u8]) -> Option<SegmentStart> {
    if kind_of(line) != Some("event") || !contains(line, br#""segment-start""#) {
        return None;
    }
    serde_json::from_slice::<SegmentStart>(line)
        .ok()
        .filter(|s| s.event == "segment-start")
}

/// The line's record, if it is the `repair` event `audit repair` starts a segment with.
fn first_repair(line: &[u8]) -> Option<RepairRecord> {
    if kind_of(line) != Some("event") || !contains(line, br#""sealed""#) {
        return None;
    }
    serde_json::from_slice::<RepairRecord>(line)
        .ok()
        .filter(|r| r.event == "repair")
}

/// Whether a file's first line opens a segment (a rotation's `segment-start` or a repair
/// record), so its chain starts from a record of another file rather than from genesis.
pub(crate) fn opens_segment(line: &[u8]) -> bool {
    first_segment_start(line).is_some() || first_repair(line).is_some()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What the walk over the records gathers besides the report.
#[derive(Default)]
struct Seen {
    removals: Vec<SegmentRemoved>,
    cp_problems: Vec<Damage>,
    /// Time of the newest `start` event.
    last_start: Option<OffsetDateTime>,
}

/// Whether a log whose newest start was at `start` may still lack its first checkpoint.
fn young(start: Option<OffsetDateTime>, grace: Duration, now: OffsetDateTime) -> bool {
    start.is_some_and(|t| (now - t).unsigned_abs() < grace)
}

fn on_record(
    line: &[u8],
    seq: u64,
    file: &str,
    opts: &VerifyOptions,
    rep: &mut LogReport,
    seen: &mut Seen,
) {
    rep.first_seq.get_or_insert(seq);
    let kind = kind_of(line);
    if kind == Some("checkpoint") {
        let Some(key) = &opts.pubkey else { return };
        let bad = |m: String| damage(ProblemKind::BadCheckpointSignature, file, 0, Some(seq), m);
        let prev = read_head(line)
            .map(|h| hex::encode(h.prev))
            .unwrap_or_default();
        match serde_json::from_slice::<Checkpoint>(line) {
            Err(e) => seen
                .cp_problems
                .push(bad(format!("checkpoint seq {seq} is unreadable: {e}"))),
            Ok(c) if c.covers_seq + 1 != seq || c.covers_hash != prev => {
                seen.cp_problems.push(bad(format!(
                    "checkpoint seq {seq} signs seq {} with hash {}, but the record before it is \
                     seq {} with hash {prev}: the records before it were rewritten",
                    c.covers_seq,
                    c.covers_hash,
                    seq - 1
                )))
            }
            Ok(c) => match key.check(&c) {
                Ok(()) => {
                    rep.checkpoints += 1;
                    rep.signed_to = Some(c.covers_seq);
                }
                Err(m) => seen
                    .cp_problems
                    .push(bad(format!("checkpoint seq {seq}: {m}"))),
            },
        }
    } else if kind == Some("event") {
        if contains(line, br#""segment-removed""#)
            && let Ok(r) = serde_json::from_slice::<SegmentRemoved>(line)
            && r.event == "segment-removed"
        {
            seen.removals.push(r);
        } else if contains(line, br#""event":"start""#)
            && let Ok(RecordView::Event(e)) = RecordView::parse(line)
            && e.event == "start"
        {
            seen.last_start = e.time().or(seen.last_start);
        }
    }
}

/// Finds every receipted record by scanning all lines (independently of the chain, so a
/// break elsewhere does not hide one) and names those not present with their hash.
fn check_receipts(
    files: &[PathBuf],
    opts: &VerifyOptions,
    removals: &[SegmentRemoved],
    rep: &mut LogReport,
) {
    let mut want: HashMap<u64, &str> = opts
        .receipts
        .iter()
        .map(|(s, h)| (*s, h.as_str()))
        .collect();
    let mut found_other: HashMap<u64, String> = HashMap::new();
    for path in files {
        let Ok(f) = File::open(path) else { continue };
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let l = line.strip_suffix(b"\n").unwrap_or(&line);
            let Ok(h) = read_head(l) else { continue };
            if let Some(w) = want.get(&h.seq) {
                let hash = hex::encode(h.hash);
                if h.hash_ok && hash == *w {
                    want.remove(&h.seq);
                } else {
                    found_other.insert(h.seq, hash);
                }
            }
        }
    }
    rep.receipts_checked = opts.receipts.len();
    let mut missing: Vec<(u64, &str)> = want.into_iter().collect();
    missing.sort_unstable();
    let file = files.last().map(|p| display_name(p)).unwrap_or_default();
    for (seq, hash) in missing {
        if let Some(r) = removals
            .iter()
            .find(|r| (r.first_seq..=r.last_seq).contains(&seq))
        {
            rep.removed.push(format!(
                "receipt seq {seq} (in `{}`, removed by the retention policy)",
                r.segment
            ));
            continue;
        }
        let msg = match found_other.get(&seq) {
            Some(other) => format!(
                "receipt seq {seq} hash {hash}: the log holds seq {seq} with a different content (hash {other})"
            ),
            None => format!("receipt seq {seq} hash {hash}: the record is not in the log"),
        };
        rep.damage.push(damage(
            ProblemKind::MissingReceipt,
            &file,
            0,
            Some(seq),
            msg,
        ));
    }
}
