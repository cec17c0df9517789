//! The catalog file format and its validation into entries with effective tags.
//!
//! ```yaml
//! entries:
//!   - id: eu-customers
//!     kind: dataset                      # dataset | model | store
//!     match: { prefix: /datasets/eu-customers/ }   # or { regex: '^/x/v[0-9]+/.*$' }
//!     origins: [DE]
//!     categories: [personal]
//!     purposes: [analytics, training]    # omitted: any purpose (non-personal data only)
//!     lawful_basis: [contract]
//!     derogations: []                    # GDPR Art. 49(1): a name, or dated:
//!                                        # { kind: explicit-consent, from: 2025-01-01, until: 2026-06-30 }
//!     derived_from: []                   # catalog ids
//!     anonymity_assessment: { date: 2025-01-31, assessor: dpo, reference: DPIA-7 }
//!     withdrawn: { date: 2025-02-01, reason: erasure request }
//!     subjects: 60000                    # individuals whose personal information it holds (PIPL volumes)
//!     exporter: acme-cn                  # registry id of the data handler exporting it from China
//!     important_data: false              # important data (PRC Data Security Law Art. 21)
//!     digests: [sha256:9f86d0…]          # content digests of the artifact's files (uploads and
//!                                        # downloads carrying one are decided as this entry)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::lineage;
use super::path::check_decoded;
use super::{AnonymityAssessment, DerogationPeriod, Entry, EntryKind, Matcher, Withdrawal};
use crate::config::{Diagnostic, Diagnostics, parse_yaml};
use crate::model::{Category, Country, DEROGATIONS, Tags, check_purpose};

/// GDPR Art. 6(1) lawful bases an entry may record.
pub const LAWFUL_BASES: &[&str] = &[
    "consent",
    "contract",
    "legal-obligation",
    "vital-interests",
    "public-task",
    "legitimate-interests",
];

/// Largest compiled size of one catalog regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest compiled size of the set of all catalog regexes.
const REGEX_SET_SIZE_LIMIT: usize = 256 << 20;
/// Longest entry id.
const MAX_ID_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    entries: Vec<EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    id: Spanned<String>,
    kind: EntryKind,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "match")]
    matcher: MatchFile,
    #[serde(default)]
    origins: Vec<Spanned<String>>,
    #[serde(default)]
    categories: Vec<Spanned<String>>,
    #[serde(default)]
    purposes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    lawful_basis: Vec<Spanned<String>>,
    #[serde(default)]
    derogations: Vec<Spanned<DerogationFile>>,
    #[serde(default)]
    derived_from: Vec<Spanned<String>>,
    #[serde(default)]
    anonymity_assessment: Option<AssessmentFile>,
    #[serde(default)]
    withdrawn: Option<WithdrawnFile>,
    /// Number of individuals whose personal information the entry holds.
    #[serde(default)]
    subjects: Option<u64>,
    /// Registry id of the data handler exporting the data from China (PIPL volumes).
    #[serde(default)]
    exporter: Option<Spanned<String>>,
    /// Important data under the PRC Data Security Law Art. 21.
    #[serde(default)]
    important_data: bool,
    /// Known content digests of the entry's files (`sha256:<hex>`).
    #[serde(default)]
    digests: Vec<Spanned<String>>,
    /// The files' format and what each column holds (for transformations).
    #[serde(default)]
    schema: Option<super::schema::SchemaFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum MatchFile {
    Prefix(Spanned<String>),
    Regex(Spanned<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssessmentFile {
    date: Spanned<String>,
    assessor: Spanned<String>,
    reference: Spanned<String>,
}

/// A derogation recorded on the data: by name (in force whenever it is asked), or with
/// the days it is in force (both inclusive; e.g. consent given, consent withdrawn).
enum DerogationFile {
    Name(String),
    Dated(DatedDerogationFile),
}

impl<'de> Deserialize<'de> for DerogationFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DerogationFile, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DerogationFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a derogation name, or `{ kind, from, until }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DerogationFile, E> {
                Ok(DerogationFile::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<DerogationFile, A::Error> {
                DatedDerogationFile::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(DerogationFile::Dated)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatedDerogationFile {
    kind: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

impl DerogationFile {
    fn kind(&self) -> &str {
        match self {
            DerogationFile::Name(k) => k,
            DerogationFile::Dated(d) => &d.kind,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawnFile {
    date: Spanned<String>,
    reason: Spanned<String>,
}

/// A validated catalog, ready to be wrapped in [`super::Catalog`].
pub(super) struct Built {
    pub entries: Vec<Entry>,
    pub by_id: HashMap<String, usize>,
    pub prefixes: HashMap<String, usize>,
    pub regexes: Option<regex::RegexSet>,
    pub regex_entries: Vec<usize>,
    pub by_digest: HashMap<crate::lineage::digest::Sha256, usize>,
}

/// Collects diagnostics for one file.
pub(super) struct Errors<'p> {
    file: &'p Path,
    list: Vec<Diagnostic>,
}

impl<'p> Errors<'p> {
    pub(super) fn new(file: &'p Path) -> Errors<'p> {
        Errors {
            file,
            list: Vec::new(),
        }
    }
    pub(super) fn at<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) {
        self.line(line_of(s), msg);
    }
    pub(super) fn line(&mut self, line: usize, msg: impl Into<String>) {
        let line = (line > 0).then_some(line);
        self.list.push(Diagnostic::new(self.file, line, msg));
    }
}

fn line_of<T>(s: &Spanned<T>) -> usize {
    usize::try_from(s.referenced.line()).unwrap_or(0)
}

pub(super) fn esc(s: &str) -> String {
    s.escape_default().to_string()
}

fn parse_date(errs: &mut Errors, s: &Spanned<String>, what: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(&s.value, fmt) {
        Ok(d) => Some(d),
        Err(_) => {
            errs.at(
                s,
                format!(
                    "{what} date `{}` is not a date like 2025-01-31",
                    esc(&s.value)
                ),
            );
            None
        }
    }
}

fn non_empty(errs: &mut Errors, s: &Spanned<String>, what: &str) -> String {
    if s.value.trim().is_empty() {
        errs.at(s, format!("{what} must not be empty"));
    }
    s.value.clone()
}

fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

/// True if `p` starts with `^` and ends with an unescaped `$`.
fn is_anchored(p: &str) -> bool {
    if !p.starts_with('^') || !p.ends_with('$') || p.len() < 2 {
        return false;
    }
    let backslashes = p[..p.len() - 1]
        .bytes()
        .rev()
        .take_while(|&b| b == b'\\')
        .count();
    backslashes % 2 == 0
}

/// The last line of a regex error, in the house style (`error: unopened group`
/// becomes `unopened group`).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("invalid regex").trim();
    let last = last.strip_prefix("error: ").unwrap_or(last);
    last.trim_end_matches('.').to_lowercase()
}

/// Own tags of one entry, with every field checked.
fn own_tags(errs: &mut Errors, e: &EntryFile, id: &str) -> Tags {
    let mut t = Tags::default();
    for o in &e.origins {
        match Country::parse(&o.value) {
            Ok(c) => {
                t.origins.insert(c);
            }
            Err(m) => errs.at(o, format!("{m} in entry `{id}`")),
        }
    }
    for c in &e.categories {
        match Category::ALL.iter().find(|k| k.as_str() == c.value) {
            Some(k) => {
                t.categories.insert(*k);
            }
            None => {
                let known: Vec<&str> = Category::ALL.iter().map(|k| k.as_str()).collect();
                errs.at(
                    c,
                    format!(
                        "unknown category `{}` in entry `{id}` (known: {})",
                        esc(&c.value),
                        known.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(ps) = &e.purposes {
        let mut set = BTreeSet::new();
        for p in ps {
            match check_purpose(&p.value) {
                Ok(()) => {
                    set.insert(p.value.clone());
                }
                Err(m) => errs.at(p, format!("{m} in entry `{id}`")),
            }
        }
        t.purposes = Some(set);
    }
    for b in &e.lawful_basis {
        if LAWFUL_BASES.contains(&b.value.as_str()) {
            t.lawful_basis.insert(b.value.clone());
        } else {
            errs.at(
                b,
                format!(
                    "unknown lawful basis `{}` in entry `{id}` (known: {})",
                    esc(&b.value),
                    LAWFUL_BASES.join(", ")
                ),
            );
        }
    }
    for d in &e.derogations {
        let kind = d.value.kind();
        if DEROGATIONS.contains(&kind) {
            t.derogations.insert(kind.to_string());
        } else {
            errs.at(
                d,
                format!(
                    "unknown derogation `{}` in entry `{id}` (known: {})",
                    esc(kind),
                    DEROGATIONS.join(", ")
                ),
            );
        }
    }
    t.anonymity_assessed = e.anonymity_assessment.is_some();
    t
}

/// The days the dated derogations of an entry are in force.
fn derogation_periods(errs: &mut Errors, e: &EntryFile, id: &str) -> Vec<DerogationPeriod> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let mut out = Vec::new();
    for d in &e.derogations {
        let DerogationFile::Dated(x) = &d.value else {
            continue;
        };
        let mut day = |s: &Option<String>, what: &str| -> Option<time::Date> {
            let s = s.as_deref()?;
            time::Date::parse(s, fmt)
                .map_err(|_| {
                    errs.at(
                        d,
                        format!(
                            "derogation `{}` of entry `{id}`: `{what}` `{}` is not a date like 2025-01-31",
                            esc(&x.kind),
                            esc(s)
                        ),
                    )
                })
                .ok()
        };
        let from = day(&x.from, "from");
        let until = day(&x.until, "until");
        if let (Some(f), Some(u)) = (from, until)
            && u < f
        {
            errs.at(
                d,
                format!(
                    "derogation `{}` of entry `{id}` ends ({u}) before it starts ({f})",
                    esc(&x.kind)
                ),
            );
        }
        if x.from.is_none() && x.until.is_none() {
            errs.at(
                d,
                format!(
                    "derogation `{}` of entry `{id}` is dated but gives neither `from` nor `until` (write its name alone)",
                    esc(&x.kind)
                ),
            );
        }
        out.push(DerogationPeriod {
            kind: x.kind.clone(),
            from,
            until,
        });
    }
    out
}

/// Parses and validates catalog text, reporting every problem found.
pub(super) fn build(path: &Path, text: &str) -> Result<Built, Diagnostics> {
    let parsed: CatalogFile = parse_yaml(path, text).map_err(|d| Diagnostics(vec![d]))?;
    let mut errs = Errors {
        file: path,
        list: Vec::new(),
    };
    let n = parsed.entries.len();
    let mut entries = Vec::with_capacity(n);
    let mut by_id: HashMap<String, usize> = HashMap::with_capacity(n);
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    let mut by_digest = HashMap::new();
    let mut regex_sources: Vec<String> = Vec::new();
    let mut regex_entries = Vec::new();

    for (idx, e) in parsed.entries.iter().enumerate() {
        let id = e.id.value.clone();
        let line = line_of(&e.id);
        if !valid_id(&id) {
            errs.at(
                &e.id,
                format!(
                    "entry id `{}` must match [a-z0-9][a-z0-9._-]* (at most {MAX_ID_LEN} characters)",
                    esc(&id)
                ),
            );
        }
        if let Some(&first) = by_id.get(&id) {
            let first_line: &Entry = &entries[first];
            errs.line(
                line,
                format!(
                    "duplicate entry id `{}` (first at line {})",
                    esc(&id),
                    first_line.line
                ),
            );
        } else {
            by_id.insert(id.clone(), idx);
        }

        let matcher = match &e.matcher {
            MatchFile::Prefix(p) => {
                if let Err(why) = check_decoded(&p.value) {
                    errs.at(
                        p,
                        format!(
                            "prefix `{}` of entry `{id}` is not a normalised decoded path: {why}",
                            esc(&p.value)
                        ),
                    );
                } else {
                    let key = p.value.trim_end_matches('/').to_string();
                    if let Some(&other) = prefixes.get(&key) {
                        let o: &Entry = &entries[other];
                        errs.at(
                            p,
                            format!(
                                "prefix `{}` of entry `{id}` duplicates the prefix of entry `{}` (line {})",
                                esc(&p.value),
                                o.id,
                                o.line
                            ),
                        );
                    } else {
                        prefixes.insert(key, idx);
                    }
                }
                Matcher::Prefix(p.value.clone())
            }
            MatchFile::Regex(r) => {
                let src = &r.value;
                if !is_anchored(src) {
                    errs.at(
                        r,
                        format!(
                            "regex `{}` of entry `{id}` must be anchored: start with `^` and end with `$`",
                            esc(src)
                        ),
                    );
                } else {
                    // Compiling the pattern alone first proves its groups are balanced,
                    // so wrapping it cannot change how it splits into alternatives.
                    let alone = regex::RegexBuilder::new(src)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build();
                    let wrapped = format!(r"\A(?:{src})\z");
                    let checked = alone.and_then(|_| {
                        regex::RegexBuilder::new(&wrapped)
                            .size_limit(REGEX_SIZE_LIMIT)
                            .build()
                    });
                    match checked {
                        Ok(_) => {
                            regex_sources.push(wrapped);
                            regex_entries.push(idx);
                        }
                        Err(why) => {
                            let why = regex_reason(&why);
                            errs.at(
                                r,
                                format!(
                                    "regex `{}` of entry `{id}` does not compile: {}",
                                    esc(src),
                                    why
                                ),
                            );
                        }
                    }
                }
                Matcher::Regex(src.clone())
            }
        };

        let own = own_tags(&mut errs, e, &id);
        check_categories(&mut errs, e, &own, &id, line);
        let derogation_periods = derogation_periods(&mut errs, e, &id);

        let anonymity_assessment = e.anonymity_assessment.as_ref().and_then(|a| {
            let assessor = non_empty(&mut errs, &a.assessor, "anonymity assessment `assessor`");
            let reference = non_empty(&mut errs, &a.reference, "anonymity assessment `reference`");
            let date = parse_date(&mut errs, &a.date, "anonymity assessment")?;
            Some(AnonymityAssessment {
                date,
                assessor,
                reference,
            })
        });
        let withdrawn = e.withdrawn.as_ref().and_then(|w| {
            let reason = non_empty(&mut errs, &w.reason, "withdrawal `reason`");
            let date = parse_date(&mut errs, &w.date, "withdrawal")?;
            Some(Withdrawal { date, reason })
        });

        let mut digests = Vec::new();
        for d in &e.digests {
            match crate::lineage::digest::Sha256::parse(&d.value) {
                Ok(x) => match by_digest.get(&x) {
                    Some(&first) if first != idx => errs.at(
                        d,
                        format!(
                            "digest `{x}` of `{}` is also listed on `{}` (a digest names one artifact)",
                            esc(&id),
                            entries.get(first).map_or("", |f: &Entry| f.id.as_str())
                        ),
                    ),
                    _ => {
                        by_digest.insert(x, idx);
                        digests.push(x);
                    }
                },
                Err(m) => errs.at(d, m),
            }
        }
        let schema = e.schema.as_ref().and_then(|s| {
            let mut why = Vec::new();
            let built = s.build(&id, &mut why);
            for m in why {
                errs.line(line, m);
            }
            built.map(std::sync::Arc::new)
        });
        entries.push(Entry {
            schema,
            digests,
            id,
            kind: e.kind,
            tags: Tags::default(),
            withdrawn,
            own_tags: own,
            matcher,
            description: e.description.clone(),
            derived_from: e.derived_from.iter().map(|d| d.value.clone()).collect(),
            anonymity_assessment,
            derogation_periods,
            line,
            subjects: e.subjects,
            exporter: e
                .exporter
                .as_ref()
                .map(|x| non_empty(&mut errs, x, "`exporter`")),
            important_data: e.important_data,
        });
    }

    let named: Vec<(&Spanned<String>, &[Spanned<String>])> = parsed
        .entries
        .iter()
        .map(|e| (&e.id, e.derived_from.as_slice()))
        .collect();
    let sources = lineage::resolve(&mut errs, &named, &by_id);
    lineage::fold(&mut errs, &mut entries, &sources);
    // Important data stays important in everything derived from it.
    let important: Vec<bool> = entries
        .iter()
        .map(|e| {
            e.important_data
                || e.tags.lineage.iter().any(|id| {
                    by_id
                        .get(id)
                        .and_then(|j| entries.get(*j))
                        .is_some_and(|s| s.important_data)
                })
        })
        .collect();
    for (e, i) in entries.iter_mut().zip(important) {
        e.important_data = i;
    }

    let regexes = if regex_sources.is_empty() || !errs.list.is_empty() {
        None
    } else {
        match regex::RegexSetBuilder::new(&regex_sources)
            .size_limit(REGEX_SET_SIZE_LIMIT)
            .build()
        {
            Ok(set) => Some(set),
            Err(why) => {
                errs.line(
                    0,
                    format!("the catalog's regexes together are too large: {why}"),
                );
                None
            }
        }
    };

    if errs.list.is_empty() {
        Ok(Built {
            entries,
            by_id,
            prefixes,
            regexes,
            regex_entries,
            by_digest,
        })
    } else {
        Err(Diagnostics(errs.list))
    }
}

/// Checks the categories an entry declares against its kind.
fn check_categories(errs: &mut Errors, e: &EntryFile, own: &Tags, id: &str, line: usize) {
    if own.categories.contains(&Category::Public) && own.is_personal() {
        errs.line(
            line,
            format!("entry `{id}` is tagged `public` and also holds personal data"),
        );
    }
    match e.kind {
        EntryKind::Dataset if e.categories.is_empty() => errs.line(
            line,
            format!(
                "dataset `{id}` has no `categories`; use `public` if it holds no personal data"
            ),
        ),
        EntryKind::Model if e.categories.is_empty() && e.derived_from.is_empty() => errs.line(
            line,
            format!("model `{id}` has no `categories` and no `derived_from`"),
        ),
        EntryKind::Model if e.anonymity_assessment.is_some() && e.categories.is_empty() => errs
            .line(
                line,
                format!(
                    "model `{id}` has an `anonymity_assessment` but no `categories` of its own"
                ),
            ),
        _ => {}
    }
    if own.categories.contains(&Category::Anonymous)
        && e.kind == EntryKind::Model
        && e.anonymity_assessment.is_none()
    {
        errs.line(
            line,
            format!("model `{id}` is tagged `anonymous` without an `anonymity_assessment`"),
        );
    }
    if e.anonymity_assessment.is_some() && e.kind != EntryKind::Model {
        errs.line(
            line,
            format!("entry `{id}` has an `anonymity_assessment`, which only models may have"),
        );
    }
}
