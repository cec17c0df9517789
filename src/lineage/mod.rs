//! What the gateway knows of where an upload's data came from, beyond what its uploader
//! declares: each principal's recent personal-data downloads ([`RecentDownloads`], held in
//! memory, bounded, seeded at start-up from the audit trail — the file log or the shared
//! PostgreSQL store — and updated as downloads are served) and the content digests of
//! catalog artifacts ([`digest`]).
//!
//! A principal is the token's subject within its organisation, as the audit record names
//! the caller (`caller.sub`, `caller.org`). A download counts from the moment its body
//! starts to flow (a 2xx answer to a GET whose decision moved data — allowed, or refused in
//! shadow mode): a client that aborts half way has still received personal data. On
//! seeding, a download counts unless its completion says no data left (refused on the
//! upstream's answer, a non-2xx status); one without a completion (a crash) counts. The
//! response body of an upload is a download too (decided as one on the completion's
//! `recheck`), and counts the same way.

pub mod digest;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::record::RecheckOf;
use crate::audit::record::view::RecordView;
use crate::model::{Caller, Category, Country, Direction, Effect, Tags};

/// Shards of the index; each lock is held for a few map operations, never across an await.
const SHARDS: usize = 16;

/// Distinct downloads kept per principal; beyond it the newest is folded into the last
/// slot (its dataset forgotten, its origins and categories kept), never dropped.
const PER_PRINCIPAL: usize = 64;

/// One personal-data download by a principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentDownload {
    /// The catalog entry the download resolved to (`None`: folded, or no entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(default)]
    pub origins: BTreeSet<Country>,
    #[serde(default)]
    pub categories: BTreeSet<Category>,
    /// When the download's decision was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl RecentDownload {
    /// The download of `dataset` with `tags` at `at`.
    pub fn of(dataset: Option<&str>, tags: &Tags, at: OffsetDateTime) -> RecentDownload {
        RecentDownload {
            dataset: dataset.map(str::to_string),
            origins: tags.origins.clone(),
            categories: tags.categories.clone(),
            at,
        }
    }

    fn same_data(&self, o: &RecentDownload) -> bool {
        self.dataset == o.dataset && self.origins == o.origins && self.categories == o.categories
    }

    /// `dataset (DE; personal) on 2026-12-03`, for reasons.
    pub fn describe(&self) -> String {
        let join = |v: Vec<String>| v.join(", ");
        format!(
            "{} ({}; {}) on {}",
            self.dataset
                .as_deref()
                .map_or_else(|| "personal data".to_string(), |d| format!("`{d}`")),
            join(self.origins.iter().map(|c| c.to_string()).collect()),
            join(
                self.categories
                    .iter()
                    .map(|c| c.as_str().to_string())
                    .collect()
            ),
            self.at.date()
        )
    }
}

/// The key of a principal: unambiguous for any subject and organisation.
fn key(sub: &str, org: &str) -> String {
    format!("{}:{org}{sub}", org.len())
}

/// One principal's downloads and the time of the newest.
#[derive(Debug, Default)]
struct Seen {
    newest: Option<OffsetDateTime>,
    downloads: Vec<RecentDownload>,
}

/// The recent personal-data downloads of every principal; a sharded map, bounded in size.
pub struct RecentDownloads {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Seen>>>,
    per_shard: usize,
}

impl std::fmt::Debug for RecentDownloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecentDownloads")
    }
}

impl Default for RecentDownloads {
    fn default() -> Self {
        RecentDownloads::new(crate::config::LineageConfig::default().max_principals)
    }
}

impl RecentDownloads {
    /// An empty index holding at most about `max_principals` principals.
    pub fn new(max_principals: usize) -> RecentDownloads {
        RecentDownloads {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_principals.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, k: &str) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        let i = (self.hasher.hash_one(k) as usize) % SHARDS;
        // A poisoned shard still holds consistent entries (updates are single statements).
        self.shards[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a download by `sub` of `org`; entries older than `since` are pruned.
    pub fn record(&self, sub: &str, org: &str, d: RecentDownload, since: OffsetDateTime) {
        let k = key(sub, org);
        let mut map = self.shard(&k);
        if !map.contains_key(&k) && map.len() >= self.per_shard {
            // Full: forget what is out of the window, then, if need be, the principal
            // whose newest download is oldest.
            map.retain(|_, s| s.newest.is_some_and(|n| n >= since));
            if map.len() >= self.per_shard
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.newest)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
                tracing::warn!(
                    "lineage index full: the oldest principal's recent downloads were forgotten (raise lineage.max_principals)"
                );
            }
        }
        let s = map.entry(k).or_default();
        s.newest = s.newest.max(Some(d.at));
        s.downloads.retain(|x| x.at >= since);
        if let Some(x) = s.downloads.iter_mut().find(|x| x.same_data(&d)) {
            x.at = x.at.max(d.at);
        } else if s.downloads.len() < PER_PRINCIPAL {
            s.downloads.push(d);
        } else if let Some(last) = s.downloads.last_mut() {
            last.dataset = None;
            last.origins.extend(d.origins);
            last.categories.extend(d.categories);
            last.at = last.at.max(d.at);
        }
    }

    /// The downloads by `sub` of `org` since `since`.
    pub fn of(&self, sub: &str, org: &str, since: OffsetDateTime) -> Vec<RecentDownload> {
        let k = key(sub, org);
        let map = self.shard(&k);
        map.get(&k).map_or_else(Vec::new, |s| {
            s.downloads
                .iter()
                .filter(|d| d.at >= since)
                .cloned()
                .collect()
        })
    }

    /// Records the download `caller` is served, if it is one of personal data.
    pub fn served(
        &self,
        caller: &Caller,
        dataset: Option<&str>,
        tags: &Tags,
        at: OffsetDateTime,
        since: OffsetDateTime,
    ) {
        if tags.is_personal() {
            self.record(
                &caller.sub,
                &caller.org,
                RecentDownload::of(dataset, tags, at),
                since,
            );
        }
    }

    /// Adds the personal-data downloads recorded since `since` in the audit log(s) `paths`.
    /// Returns the number of downloads added.
    pub fn seed(&self, paths: &[PathBuf], since: OffsetDateTime) -> Result<usize, String> {
        let from = since
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?;
        let filter = crate::audit::query::Filter {
            from: Some(from),
            ..Default::default()
        };
        let mut seeder = Seeder::new(self, since);
        crate::audit::query::for_each(paths, &filter, |v| {
            if let Ok(r) = RecordView::from_value(&v) {
                seeder.feed(&r);
            }
            true
        })?;
        Ok(seeder.finish())
    }

    /// Adds the personal-data downloads recorded since `since` in the PostgreSQL store
    /// `table` (the whole fleet's trail). Returns the number of downloads added.
    pub async fn seed_postgres(
        &self,
        conn: &str,
        table: &str,
        since: OffsetDateTime,
    ) -> Result<usize, String> {
        let from = since
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?;
        let mut seeder = Seeder::new(self, since);
        crate::audit::postgres::dump::for_each_line_since(conn, table, &from, &mut |line| {
            if let Ok(r) = RecordView::parse(line.as_bytes()) {
                seeder.feed(&r);
            }
        })
        .await?;
        Ok(seeder.finish())
    }
}

/// Reads records in log order into an index: a decision waits for its completion to say
/// whether data was served.
struct Seeder<'i> {
    index: &'i RecentDownloads,
    since: OffsetDateTime,
    /// Decisions waiting for their completion, by sequence number; a completion follows
    /// its decision closely, so this holds about as many as were in flight.
    pending: HashMap<u64, (String, String, RecentDownload, Direction)>,
    added: usize,
}

impl<'i> Seeder<'i> {
    fn new(index: &'i RecentDownloads, since: OffsetDateTime) -> Seeder<'i> {
        Seeder {
            index,
            since,
            pending: HashMap::new(),
            added: 0,
        }
    }

    fn add(&mut self, sub: &str, org: &str, d: RecentDownload) {
        if d.categories.iter().any(|c| c.is_personal()) {
            self.index.record(sub, org, d, self.since);
            self.added += 1;
        }
    }

    fn feed(&mut self, r: &RecordView<'_>) {
        match r {
            RecordView::Decision(d) => {
                let moved = d.decision == Effect::Allow || !d.enforced;
                if !moved || d.method == "HEAD" {
                    return;
                }
                let (Some(caller), Some(at)) = (&d.caller, d.time()) else {
                    return;
                };
                let tags = match d.direction {
                    Direction::Download => d.tags().unwrap_or_default(),
                    // An upload's response body is known by its completion's recheck.
                    Direction::Upload => Tags::default(),
                };
                let rd = RecentDownload::of(d.dataset.as_deref(), &tags, at);
                let (sub, org) = (caller.sub.to_string(), caller.org.to_string());
                match d.seq {
                    Some(seq) => {
                        self.pending.insert(seq, (sub, org, rd, d.direction));
                    }
                    None if d.direction == Direction::Download => self.add(&sub, &org, rd),
                    None => {}
                }
            }
            RecordView::Completion(c) => {
                let Some((sub, org, mut rd, direction)) =
                    c.decision_seq.and_then(|s| self.pending.remove(&s))
                else {
                    return;
                };
                let crashed = c.outcome == Some(crate::audit::Outcome::UnknownCrashed);
                let served = (200..300).contains(&c.status) && !c.refused();
                match (&c.recheck, direction) {
                    (Some(r), Direction::Download) if r.of == RecheckOf::UpstreamMetadata => {
                        rd.origins.extend(r.origins.iter().copied());
                        rd.categories.extend(r.categories.iter().copied());
                    }
                    (Some(r), Direction::Upload) if r.of == RecheckOf::UploadResponse => {
                        rd.origins.extend(r.origins.iter().copied());
                        rd.categories.extend(r.categories.iter().copied());
                    }
                    (_, Direction::Upload) => return,
                    _ => {}
                }
                if served || crashed {
                    self.add(&sub, &org, rd);
                }
            }
            _ => {}
        }
    }

    /// Downloads with no completion (yet) count: data may have moved. (An upload's
    /// response is known only by its completion.) Returns the number added.
    fn finish(mut self) -> usize {
        for (_, (sub, org, rd, direction)) in std::mem::take(&mut self.pending) {
            if direction == Direction::Download {
                self.add(&sub, &org, rd);
            }
        }
        self.added
    }
}

/// Seeds `index` from the audit trail at `audit_path` (a log file and its rotated
/// segments) with the personal-data downloads since `since`. Returns the number added (0
/// when there is no trail yet).
pub fn seed_from_trail(
    index: &RecentDownloads,
    audit_path: &std::path::Path,
    since: OffsetDateTime,
) -> Result<usize, String> {
    if !(audit_path.is_file() || audit_path.is_dir()) {
        return Ok(0);
    }
    let files = crate::admin::AuditSource::file(audit_path.to_path_buf()).files()?;
    index.seed(&files, since)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::Duration;

    fn c(s: &str) -> Country {
        Country::parse(s).unwrap()
    }

    fn dl(dataset: &str, origin: &str, at: OffsetDateTime) -> RecentDownload {
        RecentDownload {
            dataset: Some(dataset.into()),
            origins: [c(origin)].into(),
            categories: [Category::Personal].into(),
            at,
        }
    }

    #[test]
    fn downloads_are_kept_per_principal_within_the_window() {
        let idx = RecentDownloads::new(100);
        let now = OffsetDateTime::now_utc();
        let since = now - Duration::days(30);
        idx.record(
            "alice",
            "acme",
            dl("eu", "DE", now - Duration::days(40)),
            since,
        );
        idx.record("alice", "acme", dl("eu", "DE", now), since);
        idx.record(
            "alice",
            "acme",
            dl("eu", "DE", now - Duration::days(1)),
            since,
        );
        assert_eq!(
            idx.of("alice", "acme", since).len(),
            1,
            "one entry per dataset"
        );
        assert_eq!(idx.of("alice", "acme", since)[0].at, now);
        assert!(idx.of("alice", "other", since).is_empty());
        // `sub`/`org` boundaries cannot be shifted.
        assert!(idx.of("ealice", "acm", since).is_empty());
        assert!(idx.of("alice", "acme", now + Duration::days(1)).is_empty());
    }

    #[test]
    fn seeding_counts_what_was_served_and_what_may_have_been() {
        let now = OffsetDateTime::now_utc();
        let t = |d: i64| {
            (now - Duration::days(d))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let decision = |seq: u64, sub: &str, dataset: &str, days: i64, extra: &str| {
            format!(
                r#"{{"seq":{seq},"kind":"decision","time":"{}","caller":{{"sub":"{sub}","org":"acme","jurisdiction":"DE","purpose":"p"}},"method":"GET","dataset":"{dataset}","tags":{{"origins":["DE"],"categories":["personal"]}},"decision":"allow"{extra}}}"#,
                t(days)
            )
        };
        let completion = |seq: u64, of: u64, status: u16, extra: &str| {
            format!(
                r#"{{"seq":{seq},"kind":"completion","time":"{}","decision_seq":{of},"status":{status}{extra}}}"#,
                t(0)
            )
        };
        let lines = [
            // Served.
            decision(1, "served", "eu", 1, ""),
            completion(2, 1, 200, r#","outcome":"complete""#),
            // Refused on the upstream's answer; a 404: nothing left.
            decision(3, "refused", "eu", 1, ""),
            completion(4, 3, 451, r#","outcome":"refused""#),
            decision(5, "missing", "eu", 1, ""),
            completion(6, 5, 404, ""),
            // Crashed, or no completion at all: may have moved.
            decision(7, "crashed", "eu", 1, ""),
            completion(8, 7, 0, r#","outcome":"unknown-crashed""#),
            decision(9, "open", "eu", 1, ""),
            // Out of the window; refused up front; public data.
            decision(10, "old", "eu", 40, ""),
            decision(11, "denied", "eu", 1, r#","decision":"deny""#)
                .replace(r#","decision":"allow""#, ""),
            decision(12, "public", "wiki", 1, "").replace(r#"["personal"]"#, r#"["public"]"#),
            // An upload whose response body was EU personal data.
            decision(13, "searcher", "search", 1, r#","direction":"upload""#),
            completion(
                14,
                13,
                200,
                r#","recheck":{"of":"upload-response","decision":"allow","rule":"r","article":"a","reason":"x","origins":["FR"],"categories":["health"]}"#,
            ),
            // An upload without data coming back.
            decision(15, "uploader", "store", 1, r#","direction":"upload""#),
            completion(16, 15, 201, ""),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let idx = RecentDownloads::new(100);
        let since = now - Duration::days(30);
        let n = seed_from_trail(&idx, &path, since).unwrap();
        let has = |sub: &str| !idx.of(sub, "acme", since).is_empty();
        assert!(has("served") && has("crashed") && has("open"));
        assert!(!has("refused") && !has("missing"));
        assert!(!has("old") && !has("denied") && !has("public") && !has("uploader"));
        let s = idx.of("searcher", "acme", since);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].origins, [c("FR")].into());
        assert_eq!(n, 4);
        // No trail yet: nothing, no error.
        assert_eq!(
            seed_from_trail(&idx, &dir.path().join("none.log"), since).unwrap(),
            0
        );
    }

    #[test]
    fn the_index_is_bounded_without_dropping_a_principals_data() {
        let idx = RecentDownloads::new(16);
        let now = OffsetDateTime::now_utc();
        let since = now - Duration::days(30);
        for i in 0..(PER_PRINCIPAL + 5) {
            idx.record("a", "o", dl(&format!("d{i}"), "DE", now), since);
        }
        idx.record("a", "o", dl("last", "FR", now), since);
        let got = idx.of("a", "o", since);
        assert_eq!(got.len(), PER_PRINCIPAL);
        let last = got.last().unwrap();
        assert_eq!(last.dataset, None);
        assert!(last.origins.contains(&c("FR")));
        for i in 0..200 {
            idx.record(&format!("p{i}"), "o", dl("d", "DE", now), since);
        }
        let total: usize = idx.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 16, "{total}");
    }
}
