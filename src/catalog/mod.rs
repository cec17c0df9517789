//! The dataset catalog: path normalisation and matching, datasets, models and stores
//! with their residency tags, and lineage.
//!
//! A catalog is loaded and validated whole ([`Catalog::load`]), with every entry's
//! effective tags (own tags with the lineage folded in) computed once; resolving a
//! request path is then a handful of hash lookups and at most one [`regex::RegexSet`]
//! pass, with no allocation unless several entries overlap.

mod file;
mod lineage;
pub mod path;
pub mod schema;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use crate::config::{Diagnostic, Diagnostics};
use crate::model::Tags;

/// Largest catalog file accepted.
const MAX_CATALOG_BYTES: usize = 16 * 1024 * 1024;

/// What a catalog entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Data to be downloaded.
    Dataset,
    /// A model artifact; its tags fold in the data it was trained on.
    Model,
    /// An upload target; with no origins, the upstream's jurisdiction is used.
    Store,
}

/// How an entry matches request paths (always against the decoded path).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Matcher {
    /// Segment-bounded prefix: `/eu` matches `/eu` and `/eu/x`, never `/eu-mirror`.
    Prefix(String),
    /// A regular expression anchored with `^` and `$`.
    Regex(String),
}

/// An entry taken out of use; requests for it are refused by the proxy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Withdrawal {
    pub date: time::Date,
    pub reason: String,
}

/// An anonymity assessment of a model on record (EDPB Opinion 28/2024).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AnonymityAssessment {
    pub date: time::Date,
    pub assessor: String,
    pub reference: String,
}

/// The days a derogation recorded on an entry is in force (both inclusive; `None`: open).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DerogationPeriod {
    pub kind: String,
    pub from: Option<time::Date>,
    pub until: Option<time::Date>,
}

impl DerogationPeriod {
    pub fn in_force(&self, day: time::Date) -> bool {
        self.from.is_none_or(|f| f <= day) && self.until.is_none_or(|u| day <= u)
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub id: String,
    pub kind: EntryKind,
    /// Effective tags: own tags with the lineage folded in.
    pub tags: Tags,
    pub withdrawn: Option<Withdrawal>,
    /// The tags written on the entry itself, before lineage.
    pub own_tags: Tags,
    pub matcher: Matcher,
    pub description: Option<String>,
    /// Catalog ids this entry was directly derived from.
    pub derived_from: Vec<String>,
    pub anonymity_assessment: Option<AnonymityAssessment>,
    /// The dated derogations among the entry's own (`derogations` with `from`/`until`).
    pub derogation_periods: Vec<DerogationPeriod>,
    /// Line of the entry in the catalog file.
    pub line: usize,
    /// Individuals whose personal information the entry holds (PIPL volumes); `None`: unknown.
    pub subjects: Option<u64>,
    /// Registry id of the data handler exporting the data from China; `None`: the
    /// upstream's operator.
    pub exporter: Option<String>,
    /// Important data (PRC Data Security Law Art. 21), on the entry or anything it derives from.
    pub important_data: bool,
    /// Known content digests of the entry's files.
    pub digests: Vec<crate::lineage::digest::Sha256>,
    /// The declared format and columns of the entry's files, if any.
    pub schema: Option<std::sync::Arc<schema::Schema>>,
}

/// The entry a path resolved to, and the tags of every entry that matched it.
pub struct Resolution<'a> {
    pub entry: &'a Entry,
    pub tags: Cow<'a, Tags>,
    /// The matching entry withdrawn earliest, if any: a withdrawn entry refuses the path
    /// even when a more specific live entry wins, and entries nested under a withdrawn
    /// prefix inherit its withdrawal.
    pub withdrawn: Option<&'a Entry>,
}

/// Of two entries, the one withdrawn earlier (entries without a withdrawal don't count).
fn earliest<'a>(a: Option<&'a Entry>, b: &'a Entry) -> Option<&'a Entry> {
    let Some(wb) = &b.withdrawn else {
        return a;
    };
    match a.and_then(|e| e.withdrawn.as_ref().map(|w| (e, w))) {
        Some((e, wa)) if wa.date <= wb.date => Some(e),
        _ => Some(b),
    }
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// `sha256:` and the hex digest of the catalog file's bytes.
    pub version: String,
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    /// Prefix without its trailing slash (`""` for `/`) → entry index.
    prefixes: HashMap<String, usize>,
    /// All regex entries in one set; `regex_entries[i]` is the entry of pattern `i`.
    regexes: Option<regex::RegexSet>,
    regex_entries: Vec<usize>,
    /// Known content digest → entry index.
    by_digest: HashMap<crate::lineage::digest::Sha256, usize>,
    /// The days on which every dated fact (anonymity assessments, dated derogations) is in
    /// force, so the folded tags hold as they are; a question about another day is asked of
    /// the catalog as it stood then ([`Catalog::as_of`]).
    facts_hold: (Option<time::Date>, Option<time::Date>),
    /// The catalog of the last other day asked (the gateway asks one day at a time).
    then: DayCache,
}

/// The catalog as it stood on one day, kept for the next question about that day (read
/// without a lock: the gateway asks on every request when a dated fact has lapsed).
#[derive(Debug, Default)]
struct DayCache(arc_swap::ArcSwapOption<(time::Date, std::sync::Arc<Catalog>)>);

impl Clone for DayCache {
    fn clone(&self) -> DayCache {
        DayCache::default()
    }
}

/// A catalog as of a day: the loaded one when every dated fact holds that day, else the
/// catalog as it stood then.
pub enum Dated<'a> {
    Live(&'a Catalog),
    Then(std::sync::Arc<Catalog>),
}

impl std::ops::Deref for Dated<'_> {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        match self {
            Dated::Live(c) => c,
            Dated::Then(c) => c,
        }
    }
}

/// The first and last day on which every dated fact of `entries` is in force.
fn facts_hold(entries: &[Entry]) -> (Option<time::Date>, Option<time::Date>) {
    let from = entries
        .iter()
        .flat_map(|e| {
            e.anonymity_assessment
                .as_ref()
                .map(|a| a.date)
                .into_iter()
                .chain(e.derogation_periods.iter().filter_map(|p| p.from))
        })
        .max();
    let until = entries
        .iter()
        .flat_map(|e| e.derogation_periods.iter().filter_map(|p| p.until))
        .min();
    (from, until)
}

impl Catalog {
    /// Reads, parses and validates a catalog file, reporting every problem with its line.
    pub fn load(path: &Path) -> Result<Catalog, Diagnostics> {
        let one = |m: String| Diagnostics(vec![Diagnostic::new(path, None, m)]);
        let bytes = std::fs::read(path).map_err(|e| one(format!("cannot read file: {e}")))?;
        if bytes.len() > MAX_CATALOG_BYTES {
            return Err(one(format!(
                "file is larger than {MAX_CATALOG_BYTES} bytes"
            )));
        }
        let text =
            std::str::from_utf8(&bytes).map_err(|_| one("file is not valid utf-8".into()))?;
        Catalog::parse(path, text)
    }

    /// Parses and validates catalog text that came from `path` (used in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Catalog, Diagnostics> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
        let version = format!("sha256:{}", hex::encode(digest.as_ref()));
        let built = file::build(path, text)?;
        let facts_hold = facts_hold(&built.entries);
        Ok(Catalog {
            version,
            entries: built.entries,
            by_id: built.by_id,
            prefixes: built.prefixes,
            regexes: built.regexes,
            regex_entries: built.regex_entries,
            by_digest: built.by_digest,
            facts_hold,
            then: DayCache::default(),
        })
    }

    /// The catalog as it stood on `date`. An anonymity assessment dated later does not
    /// count yet: the model carries the tags of the data it was trained on (its own
    /// `anonymous` claim rests on the assessment), and so does everything derived from
    /// it. A dated derogation counts only on its days. The loaded catalog itself, without
    /// a copy, when every dated fact holds on `date`.
    pub fn as_of(&self, date: time::Date) -> Dated<'_> {
        let (from, until) = self.facts_hold;
        if from.is_none_or(|f| f <= date) && until.is_none_or(|u| date <= u) {
            return Dated::Live(self);
        }
        if let Some(then) = self.then.0.load().as_deref()
            && then.0 == date
        {
            return Dated::Then(then.1.clone());
        }
        let c = std::sync::Arc::new(self.refold(date));
        self.then
            .0
            .store(Some(std::sync::Arc::new((date, c.clone()))));
        Dated::Then(c)
    }

    /// A copy with the facts not in force on `date` taken out and the lineage folded again.
    fn refold(&self, date: time::Date) -> Catalog {
        let mut c = self.clone();
        for e in &mut c.entries {
            if e.anonymity_assessment
                .as_ref()
                .is_some_and(|a| a.date > date)
            {
                e.anonymity_assessment = None;
                e.own_tags.anonymity_assessed = false;
                e.own_tags
                    .categories
                    .remove(&crate::model::Category::Anonymous);
            }
            for p in e.derogation_periods.iter().filter(|p| !p.in_force(date)) {
                e.own_tags.derogations.remove(&p.kind);
            }
            e.derogation_periods.retain(|p| p.in_force(date));
        }
        c.facts_hold = facts_hold(&c.entries);
        let sources: Vec<std::collections::BTreeSet<usize>> = c
            .entries
            .iter()
            .map(|e| {
                e.derived_from
                    .iter()
                    .filter_map(|d| c.by_id.get(d).copied())
                    .collect()
            })
            .collect();
        // The lineage was checked when the catalog loaded; folding it again finds nothing new.
        let mut errs = file::Errors::new(Path::new("catalog"));
        lineage::fold(&mut errs, &mut c.entries, &sources);
        c
    }

    /// Resolves a decoded, normalised path (see [`path::normalize`]). The most specific
    /// entry wins (longest prefix; regexes only when no prefix matches); when several
    /// entries match, the tags are the most restrictive union of them all.
    pub fn resolve(&self, path: &str) -> Option<Resolution<'_>> {
        if !path.starts_with('/') {
            return None;
        }
        let mut best: Option<usize> = None;
        let mut count = 0usize;
        for i in self.prefix_matches(path) {
            best.get_or_insert(i);
            count += 1;
        }
        let regex_hits = match &self.regexes {
            Some(set) if set.is_match(path) => Some(set.matches(path)),
            _ => None,
        };
        if let Some(hits) = &regex_hits {
            for k in hits.iter() {
                best.get_or_insert(self.regex_entries[k]);
                count += 1;
            }
        }
        let entry = &self.entries[best?];
        if count == 1 {
            return Some(Resolution {
                entry,
                tags: Cow::Borrowed(&entry.tags),
                withdrawn: earliest(None, entry),
            });
        }
        let mut tags = entry.tags.clone();
        let mut withdrawn = earliest(None, entry);
        let others = self.prefix_matches(path).chain(
            regex_hits
                .iter()
                .flat_map(|h| h.iter().map(|k| self.regex_entries[k])),
        );
        for i in others {
            if !std::ptr::eq(&self.entries[i], entry) {
                let other = &self.entries[i];
                tags.absorb(&other.tags);
                tags.anonymity_assessed &= other.tags.anonymity_assessed;
                withdrawn = earliest(withdrawn, other);
            }
        }
        Some(Resolution {
            entry,
            tags: Cow::Owned(tags),
            withdrawn,
        })
    }

    /// Indices of prefix entries matching `path`, longest prefix first.
    fn prefix_matches<'a>(&'a self, path: &'a str) -> impl Iterator<Item = usize> + 'a {
        let start = path.trim_end_matches('/');
        std::iter::successors(Some(start), |cur| {
            if cur.is_empty() {
                None
            } else {
                Some(&cur[..cur.rfind('/').unwrap_or(0)])
            }
        })
        .filter_map(|key| self.prefixes.get(key).copied())
    }

    /// True when some entry lists content digests.
    pub fn has_digests(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The entry that lists content digest `d`.
    pub fn by_digest(&self, d: &crate::lineage::digest::Sha256) -> Option<&Entry> {
        self.by_digest.get(d).and_then(|&i| self.entries.get(i))
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// Tags of data derived from the named entries (for uploads declaring lineage): the
    /// most restrictive union of their effective tags, with the ids in `lineage`. The
    /// result carries no anonymity assessment of its own.
    pub fn lineage_tags(&self, ids: &[&str]) -> Result<Tags, String> {
        let mut out: Option<Tags> = None;
        for id in ids {
            let entry = self.get(id).ok_or_else(|| {
                format!("unknown catalog id `{}` in lineage", id.escape_default())
            })?;
            match &mut out {
                None => out = Some(entry.tags.clone()),
                Some(t) => t.absorb(&entry.tags),
            }
            if let Some(t) = &mut out {
                t.lineage.insert(entry.id.clone());
            }
        }
        let mut tags = out.unwrap_or_default();
        tags.anonymity_assessed = false;
        Ok(tags)
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod tests;
