//! The officer's index: every decision of the log held in memory as a compact row (its
//! strings interned, its completion's bytes or refusal joined in), so the page's overview and
//! filtered record lists answer without reading the log again.
//!
//! Built from the segments when the admin listener starts and brought up to date before each
//! answer: bytes appended to the files since are read and added; a rotation (the active file
//! renamed to a segment, a new active file) is followed by file identity. Anything else — a
//! segment removed by retention, a file that shrank — rebuilds the index from the files.
//! Filters are the one [`Filter`] of `audit query` ([`Compiled::matches_fields`]); a filter on
//! a request id or on records other than decisions is left to the streaming reader.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::Value;

use super::overview::{Ended, Seen, Tally};
use crate::audit::query::{Compiled, Fields, Text};
use crate::audit::record::view::RecordView;
use crate::model::{Category, Country, Effect, Instrument};

/// No string, instrument or recheck.
const NONE: u32 = u32::MAX;

/// Row flags.
const DENY: u8 = 1;
const TAGGED: u8 = 2;
const CALLER: u8 = 4;
const TIMED: u8 = 8;
const PERSONAL: u8 = 16;

/// One decision.
#[derive(Clone, Debug)]
struct Row {
    /// Unix nanoseconds.
    time: i64,
    offset: u64,
    bytes_out: u64,
    bytes_in: u64,
    len: u32,
    origins: u32,
    categories: u32,
    rule: u32,
    article: u32,
    reason: u32,
    org: u32,
    sub: u32,
    dataset: u32,
    purpose: u32,
    instrument: u32,
    /// The recheck that refused it after all ([`State::rechecks`]), or [`NONE`].
    recheck: u32,
    file: u16,
    status: u16,
    destination: Option<Country>,
    flags: u8,
}

/// A file read so far.
#[derive(Clone, Debug)]
struct Mark {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Bytes consumed: up to the end of the last complete line.
    read: u64,
}

/// Values interned once.
#[derive(Debug)]
struct Pool<T> {
    map: HashMap<T, u32>,
    list: Vec<T>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            map: HashMap::new(),
            list: Vec::new(),
        }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Pool<T> {
    fn id<Q>(&mut self, v: &Q, own: impl Fn(&Q) -> T) -> u32
    where
        T: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(i) = self.map.get(v) {
            return *i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(NONE);
        let owned = own(v);
        self.list.push(owned.clone());
        self.map.insert(owned, i);
        i
    }
    fn get(&self, i: u32) -> Option<&T> {
        self.list.get(i as usize)
    }
}

#[derive(Debug, Default)]
struct State {
    files: Vec<Mark>,
    rows: Vec<Row>,
    strings: Pool<Box<str>>,
    origins: Pool<Vec<Country>>,
    categories: Pool<Vec<Category>>,
    /// Instruments by their JSON.
    instrument_keys: Pool<String>,
    instruments: Vec<Instrument>,
    /// (rule, article, reason, status) of refusals on recheck.
    rechecks: Vec<(u32, u32, u32, u16)>,
    /// Allowed decisions by seq, until their completion.
    waiting: HashMap<u64, u32>,
}

/// The index of one log's files.
#[derive(Debug, Default)]
pub struct Index {
    state: Mutex<State>,
}

/// A row seen through the filter's eyes.
struct View<'a> {
    row: &'a Row,
    st: &'a State,
}

impl State {
    fn text(&self, i: u32) -> Option<&str> {
        if i == NONE {
            None
        } else {
            self.strings.get(i).map(|s| &**s)
        }
    }

    fn string(&mut self, s: &str) -> u32 {
        self.strings.id(s, |x: &str| Box::from(x))
    }

    fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NONE, |s| self.string(s))
    }

    /// Reads the records of `buf` (complete lines of file `file` from `offset`).
    fn add_lines(&mut self, file: u16, mut offset: u64, buf: &[u8]) {
        for line in buf.split_inclusive(|b| *b == b'\n') {
            let len = line.len();
            self.add_line(file, offset, line);
            offset += len as u64;
        }
    }

    fn add_line(&mut self, file: u16, offset: u64, line: &[u8]) {
        let Ok(rec) = RecordView::parse(line) else {
            return;
        };
        match rec {
            RecordView::Decision(d) => {
                let time = d.time().map(|t| t.unix_timestamp_nanos());
                let mut flags = 0;
                if d.decision == Effect::Deny {
                    flags |= DENY;
                }
                if d.tags.is_some() {
                    flags |= TAGGED;
                }
                if d.caller.is_some() {
                    flags |= CALLER;
                }
                if d.is_personal() {
                    flags |= PERSONAL;
                }
                let time = match time.and_then(|t| i64::try_from(t).ok()) {
                    Some(t) => {
                        flags |= TIMED;
                        t
                    }
                    None => 0,
                };
                let instrument = match &d.instrument {
                    None => NONE,
                    Some(i) => {
                        let key = serde_json::to_string(i).unwrap_or_default();
                        let id = self
                            .instrument_keys
                            .id(key.as_str(), |x: &str| x.to_owned());
                        if id as usize == self.instruments.len() {
                            self.instruments.push(i.clone());
                        }
                        id
                    }
                };
                let caller = d.caller.as_ref();
                let row = Row {
                    time,
                    offset,
                    bytes_out: 0,
                    bytes_in: 0,
                    len: u32::try_from(line.len()).unwrap_or(u32::MAX),
                    origins: self.origins.id(d.origins.as_slice(), <[Country]>::to_vec),
                    categories: self.categories.id(d.categories(), <[Category]>::to_vec),
                    rule: self.string(&d.rule),
                    article: self.string(&d.article),
                    reason: self.string(&d.reason),
                    org: self.opt(caller.map(|c| &*c.org)),
                    sub: self.opt(caller.map(|c| &*c.sub)),
                    dataset: self.opt(d.dataset.as_deref()),
                    purpose: self.opt(caller.map(|c| &*c.purpose)),
                    instrument,
                    recheck: NONE,
                    file,
                    status: d.status,
                    destination: d.destination,
                    flags,
                };
                let i = u32::try_from(self.rows.len()).unwrap_or(NONE);
                if d.decision == Effect::Allow
                    && let Some(seq) = d.seq
                {
                    self.waiting.insert(seq, i);
                }
                self.rows.push(row);
            }
            RecordView::Completion(c) => {
                let Some(i) = c.decision_seq.and_then(|s| self.waiting.remove(&s)) else {
                    return;
                };
                let recheck = if c.refused() {
                    let (rule, article, reason) = match &c.recheck {
                        Some(r) => (
                            self.string(&r.rule),
                            self.string(&r.article),
                            self.string(&r.reason),
                        ),
                        None => {
                            let (rule, article) = self
                                .rows
                                .get(i as usize)
                                .map_or((NONE, NONE), |r| (r.rule, r.article));
                            (
                                rule,
                                article,
                                self.string(c.detail.as_deref().unwrap_or("")),
                            )
                        }
                    };
                    self.rechecks.push((rule, article, reason, c.status));
                    u32::try_from(self.rechecks.len() - 1).unwrap_or(NONE)
                } else {
                    NONE
                };
                if let Some(r) = self.rows.get_mut(i as usize) {
                    r.bytes_out = c.bytes_out;
                    r.bytes_in = c.bytes_in;
                    r.recheck = recheck;
                }
            }
            _ => {}
        }
    }
}

impl Fields for View<'_> {
    fn text(&self, f: Text) -> Option<&str> {
        let r = self.row;
        match f {
            Text::Kind => Some("decision"),
            Text::Decision => Some(if r.flags & DENY != 0 { "deny" } else { "allow" }),
            Text::Org => self.st.text(r.org),
            Text::Sub => self.st.text(r.sub),
            Text::Dataset => self.st.text(r.dataset),
            Text::Rule => self.st.text(r.rule),
            Text::Article => self.st.text(r.article),
            Text::Purpose => self.st.text(r.purpose),
            Text::RequestId => None,
        }
    }
    fn time_nanos(&self) -> Option<i128> {
        (self.row.flags & TIMED != 0).then_some(i128::from(self.row.time))
    }
    fn destination(&self) -> Option<Country> {
        self.row.destination
    }
    fn origins(&self) -> Cow<'_, [Country]> {
        Cow::Borrowed(
            self.st
                .origins
                .get(self.row.origins)
                .map_or(&[][..], Vec::as_slice),
        )
    }
    fn categories(&self) -> Option<Cow<'_, [Category]>> {
        (self.row.flags & TAGGED != 0).then(|| {
            Cow::Borrowed(
                self.st
                    .categories
                    .get(self.row.categories)
                    .map_or(&[][..], Vec::as_slice),
            )
        })
    }
}

/// Where a matching row's line is.
struct Loc {
    file: PathBuf,
    offset: u64,
    len: u32,
}

impl Index {
    /// Brings the index up to date with `files` (the log in chain order).
    pub fn refresh(&self, files: &[PathBuf]) -> Result<(), String> {
        self.current(files).map(drop)
    }

    /// The index, up to date with `files`, held for one answer.
    fn current(&self, files: &[PathBuf]) -> Result<std::sync::MutexGuard<'_, State>, String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "the officer's index is poisoned".to_owned())?;
        refresh(&mut st, files)?;
        Ok(st)
    }

    /// The number of decisions indexed.
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.rows.len())
    }

    /// True if no decision is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The page's overview of the decisions `c` matches.
    pub fn overview(&self, files: &[PathBuf], c: &Compiled<'_>) -> Result<Value, String> {
        let st = self.current(files)?;
        let st = &*st;
        let mut t = Tally::new(c.regions());
        let none = "";
        for row in &st.rows {
            let v = View { row, st };
            if !c.matches_fields(&v) {
                continue;
            }
            let categories = st
                .categories
                .get(row.categories)
                .map_or(&[][..], Vec::as_slice);
            let s = Seen {
                time: v.time_nanos(),
                destination: row.destination,
                origins: st.origins.get(row.origins).map_or(&[][..], Vec::as_slice),
                personal: row.flags & PERSONAL != 0,
                decision: if row.flags & DENY != 0 {
                    Effect::Deny
                } else {
                    Effect::Allow
                },
                status: row.status,
                rule: st.text(row.rule).unwrap_or(none),
                article: st.text(row.article).unwrap_or(none),
                reason: st.text(row.reason).unwrap_or(none),
                instrument: (row.instrument != NONE)
                    .then(|| st.instruments.get(row.instrument as usize))
                    .flatten(),
                dataset: st.text(row.dataset),
                categories,
                caller: (row.flags & CALLER != 0).then(|| {
                    (
                        st.text(row.purpose).unwrap_or(none),
                        st.text(row.org).unwrap_or(none),
                    )
                }),
            };
            let ended = match st.rechecks.get(row.recheck as usize) {
                Some((rule, article, reason, status)) => Ended::Refused(
                    st.text(*rule).unwrap_or(none),
                    st.text(*article).unwrap_or(none),
                    st.text(*reason).unwrap_or(none),
                    *status,
                ),
                None => Ended::Moved(row.bytes_out, row.bytes_in),
            };
            t.add(&s, ended);
        }
        Ok(t.finish())
    }

    /// The decisions `c` matches: up to `limit` of them (newest first when `desc`, read back
    /// from the log), and how many match in all.
    pub fn records(
        &self,
        files: &[PathBuf],
        c: &Compiled<'_>,
        limit: usize,
        desc: bool,
    ) -> Result<(Vec<Value>, usize), String> {
        let mut locs = Vec::new();
        let mut total = 0;
        {
            let st = self.current(files)?;
            let st = &*st;
            let mut take = |row: &Row| {
                if !c.matches_fields(&View { row, st }) {
                    return;
                }
                total += 1;
                if locs.len() < limit
                    && let Some(m) = st.files.get(usize::from(row.file))
                {
                    locs.push(Loc {
                        file: m.path.clone(),
                        offset: row.offset,
                        len: row.len,
                    });
                }
            };
            if desc {
                st.rows.iter().rev().for_each(&mut take);
            } else {
                st.rows.iter().for_each(&mut take);
            }
        }
        let mut out = Vec::with_capacity(locs.len());
        let mut open: Option<(PathBuf, File)> = None;
        for l in locs {
            let f = match &mut open {
                Some((p, f)) if *p == l.file => f,
                _ => {
                    let f = File::open(&l.file)
                        .map_err(|e| format!("cannot open `{}`: {e}", l.file.display()))?;
                    &mut open.insert((l.file.clone(), f)).1
                }
            };
            let mut buf = vec![0; l.len as usize];
            f.seek(SeekFrom::Start(l.offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| format!("cannot read `{}`: {e}", l.file.display()))?;
            if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                && c.matches(&v)
            {
                out.push(v);
            }
        }
        Ok((out, total))
    }
}

/// Follows the files: appended bytes are read, a rotation followed, anything else rebuilt.
fn refresh(st: &mut State, files: &[PathBuf]) -> Result<(), String> {
    let mut ids = Vec::with_capacity(files.len());
    for p in files {
        match std::fs::metadata(p) {
            Ok(m) => ids.push((p.clone(), m.dev(), m.ino(), m.len())),
            // The active file before the gateway's first record.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read `{}`: {e}", p.display())),
        }
    }
    let follows = ids.len() >= st.files.len()
        && st
            .files
            .iter()
            .zip(&ids)
            .all(|(m, (_, dev, ino, len))| m.dev == *dev && m.ino == *ino && m.read <= *len);
    if !follows {
        *st = State::default();
    }
    for (i, (path, dev, ino, len)) in ids.into_iter().enumerate() {
        let file = u16::try_from(i).map_err(|_| "too many log segments to index".to_owned())?;
        if i == st.files.len() {
            st.files.push(Mark {
                path: path.clone(),
                dev,
                ino,
                read: 0,
            });
        }
        let Some(mark) = st.files.get_mut(i) else {
            continue;
        };
        mark.path = path.clone();
        let from = mark.read;
        if from >= len {
            continue;
        }
        let f = File::open(&path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        r.seek(SeekFrom::Start(from))
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let mut offset = from;
        let mut chunk = Vec::with_capacity(4 << 20);
        loop {
            chunk.clear();
            // Whole lines, about 4 MiB at a time.
            let mut got = 0;
            while got < (4 << 20) {
                let n = r
                    .read_until(b'\n', &mut chunk)
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            // A torn last line (being written) waits for the next refresh.
            let whole = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            if whole > 0 {
                st.add_lines(file, offset, &chunk[..whole]);
                offset += whole as u64;
            }
            if got == 0 || whole < chunk.len() {
                break;
            }
        }
        if let Some(mark) = st.files.get_mut(i) {
            mark.read = offset;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::audit::query::Filter;
    use crate::audit::source::Source;
    use serde_json::json;
    use std::io::Write;

    fn line(v: Value) -> String {
        format!("{v}\n")
    }

    fn decision(
        seq: u64,
        time: &str,
        decision: &str,
        origin: &str,
        dest: &str,
        cat: &str,
        status: u16,
    ) -> Value {
        json!({"seq":seq,"kind":"decision","time":time,"request_id":format!("r{seq}"),
            "decision":decision,"origins":[origin],"destination":dest,"rule":"eu.x",
            "article":"GDPR Art. 45","reason":format!("because {status}"),"status":status,
            "dataset":"ds","tags":{"origins":[origin],"categories":[cat]},
            "caller":{"sub":"alice","org":"acme","jurisdiction":dest,"purpose":"training"}})
    }

    #[test]
    fn answers_as_the_streaming_reader_and_follows_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let active = dir.path().join("audit.log");
        let mut text = String::new();
        text += &line(decision(
            1,
            "2025-03-01T10:00:00Z",
            "allow",
            "DE",
            "US",
            "personal",
            0,
        ));
        text += &line(
            json!({"seq":2,"kind":"completion","request_id":"r1","decision_seq":1,"bytes_out":100,"bytes_in":0,"status":200}),
        );
        text += &line(decision(
            3,
            "2025-03-01T11:00:00Z",
            "deny",
            "FR",
            "US",
            "health",
            451,
        ));
        text += &line(decision(
            4,
            "2025-03-02T11:00:00Z",
            "allow",
            "DE",
            "FR",
            "personal",
            0,
        ));
        text += &line(decision(
            5,
            "2025-03-02T12:00:00Z",
            "allow",
            "GB",
            "US",
            "public",
            0,
        ));
        text += &line(decision(
            6,
            "2025-03-02T12:30:00Z",
            "deny",
            "DE",
            "US",
            "personal",
            401,
        ));
        std::fs::write(&active, &text).unwrap();
        let files = vec![active.clone()];
        let index = Index::default();
        let check = |index: &Index, files: &[PathBuf], f: Filter| {
            let c = f.compile().unwrap();
            let a = index.overview(files, &c).unwrap();
            let b = super::super::overview::build(&Source::Files(files.to_vec()), &f).unwrap();
            assert_eq!(a, b, "index and stream agree for {f:?}");
            let (recs, total) = index.records(files, &c, 100, true).unwrap();
            let want = Source::Files(files.to_vec())
                .query(
                    &Filter {
                        kind: Some("decision".into()),
                        ..f.clone()
                    },
                    100,
                )
                .unwrap();
            assert_eq!(total, want.len());
            assert_eq!(recs.len(), want.len());
            a
        };
        let all = check(&index, &files, Filter::default());
        assert_eq!(all["totals"]["decisions"], 5);
        assert_eq!(all["totals"]["allowed_cross_border"], 1);
        assert_eq!(all["totals"]["allowed_domestic"], 1);
        assert_eq!(all["totals"]["allowed_public"], 1);
        assert_eq!(all["totals"]["refused"], 1);
        assert_eq!(all["totals"]["auth_failures"], 1);
        assert_eq!(all["totals"]["bytes_out"], 100);
        let eu = check(
            &index,
            &files,
            Filter {
                origin: Some("EU".into()),
                category: Some("personal".into()),
                third_countries: Some("true".into()),
                ..Filter::default()
            },
        );
        assert_eq!(eu["totals"]["decisions"], 3);
        // Appended records are picked up; a torn last line waits.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&active)
            .unwrap();
        write!(
            f,
            "{}",
            line(decision(
                7,
                "2025-03-03T09:00:00Z",
                "deny",
                "DE",
                "CN",
                "personal",
                451
            ))
        )
        .unwrap();
        write!(f, "{{\"seq\":8,\"kind\":\"dec").unwrap();
        drop(f);
        assert_eq!(
            check(&index, &files, Filter::default())["totals"]["decisions"],
            6
        );
        // Rotation: the active file becomes a segment and a new one starts.
        let seg = dir.path().join("audit-000001.log");
        std::fs::rename(&active, &seg).unwrap();
        std::fs::write(
            &active,
            line(decision(
                9,
                "2025-03-04T09:00:00Z",
                "allow",
                "DE",
                "JP",
                "personal",
                0,
            )),
        )
        .unwrap();
        let files = vec![seg.clone(), active.clone()];
        assert_eq!(
            check(&index, &files, Filter::default())["totals"]["decisions"],
            7
        );
        // A removed segment rebuilds.
        std::fs::remove_file(&seg).unwrap();
        let files = vec![active];
        assert_eq!(
            check(&index, &files, Filter::default())["totals"]["decisions"],
            1
        );
    }
}
