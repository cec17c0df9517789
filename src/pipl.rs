//! The PIPL export counter: individuals whose Chinese personal information each exporting
//! organisation provided abroad since 1 January, seeded from the audit trail at start-up and
//! counted as transfers are allowed.
//!
//! Counting rule (PIPL counts individuals, not requests; the gateway sees no row identities):
//! each counting unit — a catalog entry with its `subjects` — counts once per exporter and
//! calendar year, whoever receives it and however often; distinct units are summed (their
//! individuals may overlap, so the sum is an upper bound: conservative). A unit without
//! `subjects` makes the exporter's totals unbounded for the rest of the year (fail closed:
//! the security-assessment band). The year is the calendar year in China (UTC+8).
//!
//! On the PostgreSQL audit sink the fleet's counts live in a shared ledger ([`pg`]); this
//! counter is then the gateway's local view of it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Mutex;

use time::{OffsetDateTime, UtcOffset};

use crate::audit::record::view::DecisionView;
use crate::catalog::Catalog;
use crate::model::{Country, Direction, Tags};
use crate::policy::volume::{VolumeInfo, counts_towards};

pub mod pg;

/// Shards of the counter map; each lock is held for a few map operations, never across an await.
const SHARDS: usize = 16;

/// The country whose exports are counted (mainland China).
const CHINA: &str = "CN";

fn is_china(c: &Country) -> bool {
    c.as_str() == CHINA
}

/// The calendar year of `t` in China (UTC+8), which the volumes are counted by.
pub fn year_of(t: OffsetDateTime) -> i32 {
    let cst = UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC);
    t.to_offset(cst).year()
}

/// True when a transfer provides Chinese personal information abroad: CN-origin personal
/// data going to a destination outside mainland China.
pub fn is_export(tags: &Tags, destination: Country) -> bool {
    !is_china(&destination) && tags.origins.iter().any(is_china) && tags.is_personal()
}

/// One PIPL export as the counter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The exporting organisation (registry id); `None`: unidentified.
    pub exporter: Option<String>,
    pub year: i32,
    /// Counting units: catalog id and its number of subjects (`None`: unknown).
    pub units: Vec<(String, Option<u64>)>,
    /// The data is important data.
    pub important_data: bool,
    /// Adds to the (non-sensitive, sensitive) totals.
    pub counts: (bool, bool),
}

impl Export {
    /// Describes a transfer of data with `tags` to `destination`, or `None` when it is not a
    /// PIPL export. The exporter is the catalog entry's `exporter`; else, on download, the
    /// upstream's `operator` (the handler holding the data in China), on upload the caller's
    /// organisation. Units: on download the entry itself; on upload every Chinese source in
    /// the declared lineage (a source with `subjects`, or one derived from nothing).
    #[allow(clippy::too_many_arguments)]
    pub fn of(
        catalog: &Catalog,
        tags: &Tags,
        destination: Country,
        direction: Direction,
        dataset: Option<&str>,
        operator: Option<&str>,
        caller_org: Option<&str>,
        year: i32,
    ) -> Option<Export> {
        if !is_export(tags, destination) {
            return None;
        }
        let entry = dataset.and_then(|d| catalog.get(d));
        let exporter = entry
            .and_then(|e| e.exporter.as_deref())
            .or(match direction {
                Direction::Download => operator,
                Direction::Upload => caller_org,
            })
            .map(str::to_string);
        let mut units = Vec::new();
        let mut important = false;
        match direction {
            Direction::Download => {
                units.push((
                    dataset.unwrap_or("").to_string(),
                    entry.and_then(|e| e.subjects),
                ));
                important = entry.is_some_and(|e| e.important_data);
            }
            Direction::Upload => {
                for id in &tags.lineage {
                    let Some(src) = catalog.get(id) else {
                        units.push((id.clone(), None));
                        continue;
                    };
                    important |= src.important_data;
                    let chinese = src.tags.origins.iter().any(is_china) && src.tags.is_personal();
                    if chinese && (src.subjects.is_some() || src.derived_from.is_empty()) {
                        units.push((id.clone(), src.subjects));
                    }
                }
                if units.is_empty() {
                    // Chinese personal data with no Chinese source on record: unknown size.
                    units.push((String::new(), None));
                }
            }
        }
        Some(Export {
            exporter,
            year,
            units,
            important_data: important,
            counts: counts_towards(tags),
        })
    }
}

impl Export {
    /// The volume a decision about this export considers, given the exporter's `totals`
    /// (non-sensitive, sensitive, unbounded) this year and which unit ids are `counted`.
    pub(crate) fn volume(
        &self,
        totals: (u64, u64, bool),
        counted: impl Fn(&str) -> bool,
    ) -> VolumeInfo {
        let mut subjects = Some(0u64);
        let mut already = true;
        for (id, n) in &self.units {
            if !id.is_empty() && counted(id) {
                continue;
            }
            already = false;
            subjects = subjects.and_then(|s| n.map(|n| s.saturating_add(n)));
        }
        VolumeInfo {
            exporter: self.exporter.clone(),
            year: self.year,
            non_sensitive: totals.0,
            sensitive: totals.1,
            unbounded: totals.2,
            subjects: if already { Some(0) } else { subjects },
            already_counted: already,
            important_data: self.important_data,
        }
    }
}

/// One exporter's totals for one year.
#[derive(Debug, Default)]
struct Totals {
    year: i32,
    non_sensitive: u64,
    sensitive: u64,
    unbounded: bool,
    counted: HashSet<Box<str>>,
}

/// Cumulative individuals exported, per exporter and year; a small sharded map.
pub struct ExportCounter {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<Box<str>, Totals>>>,
}

impl Default for ExportCounter {
    fn default() -> Self {
        ExportCounter::new()
    }
}

impl std::fmt::Debug for ExportCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportCounter")
    }
}

impl ExportCounter {
    pub fn new() -> ExportCounter {
        ExportCounter {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, exporter: &str) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Totals>> {
        let i = (self.hasher.hash_one(exporter) as usize) % SHARDS;
        // A poisoned shard still holds consistent counts (updates are single statements).
        self.shards[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The volume a decision about `e` considers: the exporter's totals before it, and
    /// what it would add.
    pub fn volume(&self, e: &Export) -> VolumeInfo {
        let key = e.exporter.as_deref().unwrap_or("");
        Self::volume_in(&self.shard(key), key, e)
    }

    fn volume_in(map: &HashMap<Box<str>, Totals>, key: &str, e: &Export) -> VolumeInfo {
        let t = map.get(key).filter(|t| t.year == e.year);
        e.volume(
            t.map_or((0, 0, false), |t| {
                (t.non_sensitive, t.sensitive, t.unbounded)
            }),
            |id| t.is_some_and(|t| t.counted.contains(id)),
        )
    }

    /// Decides `e` on the exporter's volume and, when `decide` says the data moves, counts
    /// it in the same step, under the exporter's shard: two concurrent first exports cannot
    /// both be decided on the volume before either (the file sink's counterpart of
    /// [`crate::pipl::pg::Ledger::count`]). An export counted here whose record then fails
    /// to become durable stays counted: the count errs towards refusing.
    pub fn count<T>(&self, e: &Export, decide: impl FnOnce(&VolumeInfo) -> (T, bool)) -> T {
        let key = e.exporter.as_deref().unwrap_or("");
        let mut map = self.shard(key);
        let (out, moves) = decide(&Self::volume_in(&map, key, e));
        if moves {
            Self::add(&mut map, key, e);
        }
        out
    }

    /// Counts an export that took place; units already counted this year add nothing.
    pub fn record(&self, e: &Export) {
        let key = e.exporter.as_deref().unwrap_or("");
        let mut map = self.shard(key);
        Self::add(&mut map, key, e);
    }

    fn add(map: &mut HashMap<Box<str>, Totals>, key: &str, e: &Export) {
        let t = map.entry(key.into()).or_default();
        if t.year != e.year {
            *t = Totals {
                year: e.year,
                ..Totals::default()
            };
        }
        for (id, n) in &e.units {
            // A unit with no id cannot be recognised again: it counts every time.
            if !id.is_empty() && !t.counted.insert(id.as_str().into()) {
                continue;
            }
            match n {
                Some(n) => {
                    if e.counts.0 {
                        t.non_sensitive = t.non_sensitive.saturating_add(*n);
                    }
                    if e.counts.1 {
                        t.sensitive = t.sensitive.saturating_add(*n);
                    }
                }
                None => t.unbounded = true,
            }
        }
    }

    /// (non-sensitive, sensitive, unbounded) of `exporter` in `year`.
    pub fn totals(&self, exporter: &str, year: i32) -> (u64, u64, bool) {
        let map = self.shard(exporter);
        map.get(exporter)
            .filter(|t| t.year == year)
            .map_or((0, 0, false), |t| {
                (t.non_sensitive, t.sensitive, t.unbounded)
            })
    }

    /// Counts every export of `year` recorded in the audit log(s) `paths`: decision records of
    /// CN-origin personal data leaving China that were allowed (or not enforced, in shadow
    /// mode). Exporters and units are resolved against `catalog` and the upstreams'
    /// `operators` (name → registry id) as they are now. Returns the number of records counted.
    pub fn seed(
        &self,
        paths: &[PathBuf],
        catalog: &Catalog,
        operators: &HashMap<String, String>,
        year: i32,
    ) -> Result<usize, String> {
        let filter = crate::audit::query::Filter {
            // 1 January in China starts on 31 December UTC.
            from: Some(format!("{:04}-12-31", year - 1)),
            kind: Some("decision".into()),
            origin: Some(CHINA.into()),
            ..Default::default()
        };
        let mut n = 0;
        crate::audit::query::for_each(paths, &filter, |v| {
            let Ok(rec) = DecisionView::from_value(&v) else {
                return true;
            };
            if let Some(e) = export_of_record(&rec, catalog, operators, year) {
                self.record(&e);
                n += 1;
            }
            true
        })?;
        Ok(n)
    }
}

/// Counts this year's exports recorded in the audit trail at `audit_path` (a log file and
/// its rotated segments), so the volume bands survive a restart; exporters and units are
/// resolved against `catalog` and the upstreams' `operators`. Returns the number of records
/// counted (0 when there is no trail yet).
pub fn seed_from_trail(
    counter: &ExportCounter,
    catalog: &Catalog,
    operators: &HashMap<String, String>,
    audit_path: &std::path::Path,
    year: i32,
) -> Result<usize, String> {
    // Only a log file or a segment directory holds records (not, say, a device).
    if !(audit_path.is_file() || audit_path.is_dir()) {
        return Ok(0);
    }
    let files = crate::admin::AuditSource::file(audit_path.to_path_buf()).files()?;
    counter.seed(&files, catalog, operators, year)
}

/// The export a decision record describes, if it counts for `year`. The exporter is the one
/// the record names; a record without one gets the exporter [`Export::of`] derives now.
fn export_of_record(
    rec: &DecisionView<'_>,
    catalog: &Catalog,
    operators: &HashMap<String, String>,
    year: i32,
) -> Option<Export> {
    if year_of(rec.time()?) != year || !rec.moved() {
        return None;
    }
    let operator = rec
        .upstream
        .as_deref()
        .and_then(|u| operators.get(u))
        .map(String::as_str);
    let mut e = Export::of(
        catalog,
        &rec.tags()?,
        rec.destination?,
        rec.direction,
        rec.dataset.as_deref(),
        operator,
        rec.org(),
        year,
    )?;
    if let Some(x) = &rec.exporter {
        e.exporter = Some(x.to_string());
    }
    Some(e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
