//! A transfer: one request classified into the movement of data it would make — which
//! data, from which origins, to which destination, for whom and why — and the one
//! decision on it.
//!
//! The live gateway, `policy explain`, `policy test`, `policy what-if`, the admin API and
//! the PIPL counter all classify with [`classify`] (or build a [`Transfer`] from tags they
//! were given) and decide with [`Transfer::decide`], so they cannot disagree. Catalog facts
//! that refuse a transfer before any regime is asked — a withdrawal, an upload whose
//! lineage is undeclared — are inputs of the decision, not checks of one caller.

pub mod claim;
pub mod question;
#[cfg(test)]
mod tests;

use time::{Date, OffsetDateTime};

use crate::catalog::{Catalog, Entry, EntryKind};
use crate::config::UndeclaredRecent;
use crate::lineage::RecentDownload;
use crate::lineage::digest::Sha256;
use crate::model::{Caller, Category, Country, Decision, DenyGround, Direction, Effect, Tags};
use crate::pipl::{Export, ExportCounter};
use crate::policy::explain::Explanation;
use crate::policy::volume::VolumeInfo;
use crate::policy::{PolicySet, Query, TraceStep};

/// Rule ids of the refusals a transfer decides before any regime is asked.
pub mod rules {
    /// The data was withdrawn (erasure, consent withdrawn) on or before the decision's day.
    pub const WITHDRAWN: &str = "catalog.withdrawn";
    pub const WITHDRAWN_ARTICLE: &str = "GDPR Art. 17";
    /// The instrument these refusals rest on (the pack's catalogue id of the GDPR): each
    /// cites a GDPR article.
    pub const INSTRUMENT: &str = "eu.gdpr";
    /// An upload across a border that declares no lineage cannot be classified.
    pub const LINEAGE_UNDECLARED: &str = "upload.lineage-undeclared";
    pub const LINEAGE_UNDECLARED_ARTICLE: &str = "GDPR Chapter V, Art. 44";
    /// An upload whose uploader recently downloaded personal data its declared lineage
    /// does not cover (refused with `lineage.undeclared_recent: refuse`).
    pub const UNDECLARED_RECENT: &str = "lineage.undeclared-recent";
    pub const UNDECLARED_RECENT_ARTICLE: &str = "GDPR Chapter V, Art. 44; Art. 5(2)";
}

/// Where a request is routed: the upstream's facts classification needs.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// The upstream's name (for the audit record).
    pub upstream: &'a str,
    /// Where the upstream stores data: the destination of uploads, the default origin of
    /// downloads whose data records none.
    pub jurisdiction: Country,
    /// Registry id of the organisation operating the upstream: the importer of uploads and,
    /// for PIPL, the exporter of downloads from China.
    pub operator: Option<&'a str>,
    /// Paths under the route need no catalog entry (public data).
    pub public: bool,
}

/// What the data of a request is, as the caller of [`classify`] knows it.
#[derive(Clone, Debug)]
pub enum Subject<'a> {
    /// A normalised, decoded request path, resolved in the catalog.
    Path(&'a str),
    /// A catalog entry named by id.
    Dataset(&'a str),
    /// Tags given directly (what-if questions without a catalog entry).
    Tags(Tags),
}

/// A request to classify.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    pub subject: Subject<'a>,
    pub direction: Direction,
    pub caller: &'a Caller,
    /// Catalog ids an upload declares it was derived from (`bordergate-lineage`); for
    /// tags given directly, the entries the data was derived from, either way.
    pub lineage: &'a [String],
    /// When the transfer happens (decides the PIPL counting year).
    pub at: OffsetDateTime,
    /// Content digests an upload declares; an upload matching a catalog artifact's digest
    /// is derived from that artifact, whatever else it declares.
    pub digests: &'a [Sha256],
    /// The uploader's recent personal-data downloads, to check the declared lineage
    /// against (none: not checked — tools asking questions, a check turned off).
    pub recent: Option<Recent<'a>>,
}

impl<'a> Ask<'a> {
    /// A plain download of `path` by `caller` at `at`: no lineage, digests or recent
    /// downloads to weigh.
    pub fn download(path: &'a str, caller: &'a Caller, at: OffsetDateTime) -> Ask<'a> {
        Ask {
            subject: Subject::Path(path),
            direction: Direction::Download,
            caller,
            lineage: &[],
            at,
            digests: &[],
            recent: None,
        }
    }
}

/// What the gateway saw an uploader download recently, and what to do about data the
/// declared lineage does not cover.
#[derive(Clone, Copy, Debug)]
pub struct Recent<'a> {
    pub downloads: &'a [RecentDownload],
    pub action: UndeclaredRecent,
    pub window_days: u32,
}

/// The uploader's recent personal-data downloads an upload's declared lineage does not
/// cover. A download is covered when its catalog entry is in the upload's lineage
/// (declared, matched by digest, or an ancestor of either), or when the upload's tags
/// already carry all its origins (other than the destination) and categories; a download
/// whose only origin is the upload's destination is not checked (the data goes back where
/// it came from).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unaccounted {
    /// `refuse`: the upload is refused; `flag`: it was decided with these downloads
    /// folded into its lineage, and flagged.
    pub action: UndeclaredRecent,
    pub window_days: u32,
    pub downloads: Vec<RecentDownload>,
}

impl Unaccounted {
    /// The catalog ids of the downloads (`personal data` for one without).
    pub fn datasets(&self) -> Vec<&str> {
        self.downloads
            .iter()
            .map(|d| d.dataset.as_deref().unwrap_or("personal data"))
            .collect()
    }
}

/// Why a request could not be classified: it is refused before any decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unclassified {
    /// The path matches no catalog entry and its route is not public.
    NotInCatalog,
    /// A named catalog id does not exist.
    UnknownDataset(String),
    /// The declared lineage names unknown catalog ids.
    BadLineage(String),
}

impl std::fmt::Display for Unclassified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unclassified::NotInCatalog => f.write_str("the path matches no catalog entry"),
            Unclassified::UnknownDataset(id) => {
                write!(f, "unknown catalog id `{}`", id.escape_default())
            }
            Unclassified::BadLineage(e) => write!(f, "declared lineage: {e}"),
        }
    }
}

/// The withdrawal of the data: of its own entry, or of an entry it lies under.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Withdrawn {
    /// The withdrawn catalog entry.
    pub entry: String,
    pub date: Date,
    pub reason: String,
}

impl Withdrawn {
    fn of(e: &Entry) -> Option<Withdrawn> {
        e.withdrawn.as_ref().map(|w| Withdrawn {
            entry: e.id.clone(),
            date: w.date,
            reason: w.reason.clone(),
        })
    }
}

/// The withdrawal that applies to catalog entry `e`: its own, or that of an entry its
/// prefix lies under (a withdrawn entry refuses every path it matches).
pub fn withdrawal_of(catalog: &Catalog, e: &Entry) -> Option<Withdrawn> {
    let inherited = match &e.matcher {
        crate::catalog::Matcher::Prefix(p) => catalog.resolve(p).and_then(|r| r.withdrawn),
        crate::catalog::Matcher::Regex(_) => None,
    };
    inherited
        .and_then(Withdrawn::of)
        .or_else(|| Withdrawn::of(e))
}

/// Every withdrawal the catalog records, by the id of the entry it applies to (what-if
/// replays records by their dataset id).
pub fn withdrawals(catalog: &Catalog) -> std::collections::HashMap<String, Withdrawn> {
    catalog
        .entries()
        .filter_map(|e| Some((e.id.clone(), withdrawal_of(catalog, e)?)))
        .collect()
}

/// An upload that crosses a border without declaring its lineage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UndeclaredCrossing {
    pub from: Country,
    pub to: Country,
}

/// One classified transfer: everything its decision depends on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transfer {
    pub direction: Direction,
    /// The catalog entry the data resolved to.
    pub dataset: Option<String>,
    /// Effective tags: the entry's (with its lineage), the declared lineage's, the
    /// default origin, and whatever upstream metadata added.
    pub tags: Tags,
    /// Where the data goes: the caller's jurisdiction on download, the upstream's on upload.
    pub destination: Country,
    /// Registry id of the importing organisation: the caller's organisation on download,
    /// the upstream's operator on upload.
    pub importer: Option<String>,
    /// The caller's purpose.
    pub purpose: String,
    /// The data's withdrawal, if the catalog records one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawal: Option<Withdrawn>,
    /// Set when an upload declares no lineage and crosses a border.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undeclared: Option<UndeclaredCrossing>,
    /// The uploader's recent downloads the upload's lineage does not cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unaccounted: Option<Unaccounted>,
    /// The PIPL export the transfer makes, if it is one.
    #[serde(skip)]
    pub export: Option<Export>,
}

/// The facts an [`Export`] is computed from, kept to recompute it when tags change.
struct ExportFacts<'a> {
    operator: Option<&'a str>,
    caller_org: &'a str,
    year: i32,
}

/// Classifies a request routed to `place` (none: no route is known, e.g. `policy explain
/// --dataset` of an entry matched by a regex).
pub fn classify(
    catalog: &Catalog,
    ask: &Ask<'_>,
    place: Option<Place<'_>>,
) -> Result<Transfer, Unclassified> {
    let caller = ask.caller;
    // Catalog facts are dated: the catalog as it stood on the day of the transfer.
    let dated = catalog.as_of(ask.at.date());
    let catalog: &Catalog = &dated;
    let (entry, mut tags, withdrawal) = match &ask.subject {
        Subject::Path(path) => match (catalog.resolve(path), place.is_some_and(|p| p.public)) {
            (Some(r), _) => (
                Some(r.entry),
                r.tags.into_owned(),
                r.withdrawn.and_then(Withdrawn::of),
            ),
            (None, true) => (
                None,
                Tags {
                    categories: [Category::Public].into(),
                    ..Tags::default()
                },
                None,
            ),
            (None, false) => return Err(Unclassified::NotInCatalog),
        },
        Subject::Dataset(id) => {
            let e = catalog
                .get(id)
                .ok_or_else(|| Unclassified::UnknownDataset(id.to_string()))?;
            (Some(e), e.tags.clone(), withdrawal_of(catalog, e))
        }
        Subject::Tags(t) => {
            let mut t = t.clone();
            // Data given by its tags may say what it was derived from: it carries those
            // entries' tags too, as a catalog entry's `derived_from` does. (An upload's
            // declared lineage is folded in below.)
            if ask.direction == Direction::Download && !ask.lineage.is_empty() {
                let ids: Vec<&str> = ask.lineage.iter().map(String::as_str).collect();
                let from = catalog
                    .lineage_tags(&ids)
                    .map_err(Unclassified::BadLineage)?;
                t.absorb(&from);
                t.lineage.extend(ask.lineage.iter().cloned());
            }
            (None, t, None)
        }
    };
    let stored_in = place.map(|p| p.jurisdiction);
    let (destination, importer) = match ask.direction {
        Direction::Download => (caller.jurisdiction, Some(caller.org.clone())),
        Direction::Upload => (
            stored_in.unwrap_or(caller.jurisdiction),
            place.and_then(|p| p.operator).map(str::to_string),
        ),
    };
    let mut undeclared = None;
    let mut unaccounted = None;
    match ask.direction {
        Direction::Download => {
            if let Some(j) = stored_in
                && tags.origins.is_empty()
            {
                // Data with no recorded origin is taken to originate where it is stored.
                tags.origins.insert(j);
            }
        }
        Direction::Upload => {
            let is_store = entry.is_some_and(|e| e.kind == EntryKind::Store);
            if is_store {
                tags = Tags::default();
            }
            // Artifacts the upload's content digests name are part of its lineage.
            let mut declared: Vec<String> = ask.lineage.to_vec();
            for d in ask.digests {
                if let Some(e) = catalog.by_digest(d)
                    && !declared.contains(&e.id)
                {
                    declared.push(e.id.clone());
                }
            }
            // Tags given directly already say what the data is; anything else undeclared
            // is unknown data.
            let given = matches!(ask.subject, Subject::Tags(_));
            if declared.is_empty() && !given {
                if caller.jurisdiction != destination {
                    undeclared = Some(UndeclaredCrossing {
                        from: caller.jurisdiction,
                        to: destination,
                    });
                } else {
                    tags.origins.insert(caller.jurisdiction);
                }
            } else if !declared.is_empty() {
                let ids: Vec<&str> = declared.iter().map(String::as_str).collect();
                let t = catalog
                    .lineage_tags(&ids)
                    .map_err(Unclassified::BadLineage)?;
                if is_store {
                    tags = t;
                } else {
                    tags.absorb(&t);
                }
                tags.lineage.extend(declared.iter().cloned());
            }
            if let Some(r) = ask.recent
                && undeclared.is_none()
            {
                unaccounted = unaccounted_downloads(catalog, &mut tags, destination, &r);
            }
        }
    }
    let dataset = entry.map(|e| e.id.clone());
    let mut t = Transfer {
        direction: ask.direction,
        dataset,
        tags,
        destination,
        importer,
        purpose: caller.purpose.clone(),
        withdrawal,
        undeclared,
        unaccounted,
        export: None,
    };
    t.export = t.export_of(
        catalog,
        &ExportFacts {
            operator: place.and_then(|p| p.operator),
            caller_org: &caller.org,
            year: crate::pipl::year_of(ask.at),
        },
    );
    Ok(t)
}

/// The downloads of `r` the upload's `tags` do not cover (see [`Unaccounted`]). With
/// `flag`, they are folded into `tags`: the upload is decided as derived from them.
fn unaccounted_downloads(
    catalog: &Catalog,
    tags: &mut Tags,
    destination: Country,
    r: &Recent<'_>,
) -> Option<Unaccounted> {
    let downloads: Vec<RecentDownload> = r
        .downloads
        .iter()
        .filter(|d| {
            // Data going back to its own (only) origin country crosses no border.
            let mut abroad = d.origins.iter().filter(|o| **o != destination).peekable();
            if abroad.peek().is_none() {
                return false;
            }
            let in_lineage = d
                .dataset
                .as_ref()
                .is_some_and(|id| tags.lineage.contains(id));
            let in_tags = abroad.all(|o| tags.origins.contains(o))
                && d.categories.is_subset(&tags.categories);
            !(in_lineage || in_tags)
        })
        .cloned()
        .collect();
    if downloads.is_empty() {
        return None;
    }
    if r.action == UndeclaredRecent::Flag {
        for d in &downloads {
            match d.dataset.as_deref().and_then(|id| catalog.get(id)) {
                Some(e) => {
                    tags.absorb(&e.tags);
                    tags.lineage.insert(e.id.clone());
                }
                None => {
                    tags.origins.extend(d.origins.iter().copied());
                    tags.categories.extend(d.categories.iter().copied());
                }
            }
        }
        tags.anonymity_assessed = false;
    }
    Some(Unaccounted {
        action: r.action,
        window_days: r.window_days,
        downloads,
    })
}

impl Transfer {
    /// The transfer with the catalog's withdrawal of its data (a replayed record of a
    /// dataset the catalog has withdrawn since, or withdraws from a later day).
    pub fn withdrawn(mut self, w: Option<Withdrawn>) -> Transfer {
        self.withdrawal = w;
        self
    }

    /// A transfer of data with `tags` (no catalog entry), e.g. a `policy test` case or a
    /// replayed audit record.
    pub fn of_tags(
        tags: Tags,
        direction: Direction,
        destination: Country,
        importer: Option<&str>,
        purpose: &str,
    ) -> Transfer {
        Transfer {
            direction,
            dataset: None,
            tags,
            destination,
            importer: importer.map(str::to_string),
            purpose: purpose.to_string(),
            withdrawal: None,
            undeclared: None,
            unaccounted: None,
            export: None,
        }
    }

    fn export_of(&self, catalog: &Catalog, f: &ExportFacts<'_>) -> Option<Export> {
        Export::of(
            catalog,
            &self.tags,
            self.destination,
            self.direction,
            self.dataset.as_deref(),
            f.operator,
            Some(f.caller_org),
            f.year,
        )
    }

    /// Adds the tags an upstream's response metadata declares (they may only add). Returns
    /// whether anything changed; the PIPL export is recomputed for the merged tags.
    pub fn absorb_upstream(
        &mut self,
        extra: &Tags,
        catalog: &Catalog,
        operator: Option<&str>,
        caller_org: &str,
        at: OffsetDateTime,
    ) -> bool {
        let before = (self.tags.origins.len(), self.tags.categories.len());
        self.tags.origins.extend(extra.origins.iter().copied());
        self.tags
            .categories
            .extend(extra.categories.iter().copied());
        if before == (self.tags.origins.len(), self.tags.categories.len()) {
            return false;
        }
        self.export = self.export_of(
            catalog,
            &ExportFacts {
                operator,
                caller_org,
                year: crate::pipl::year_of(at),
            },
        );
        true
    }

    /// Folds in the artifact `e` a download's content digest names (the upstream's
    /// `ETag`, `X-Linked-Etag`, `Content-Digest`): its purposes, derogations and lineage;
    /// its origins and categories are returned, to be added with
    /// [`Transfer::absorb_upstream`] (which recomputes the PIPL export). `None`: the
    /// transfer already is, or derives from, that artifact.
    pub fn absorb_artifact(&mut self, e: &Entry) -> Option<Tags> {
        if self.dataset.as_deref() == Some(e.id.as_str()) || self.tags.lineage.contains(&e.id) {
            return None;
        }
        let mut rest = e.tags.clone();
        let added = Tags {
            origins: std::mem::take(&mut rest.origins),
            categories: std::mem::take(&mut rest.categories),
            ..Tags::default()
        };
        self.tags.absorb(&rest);
        self.tags.lineage.insert(e.id.clone());
        Some(added)
    }

    /// The policy query of this transfer as of `date`.
    pub fn query<'a>(&'a self, date: Date, volume: Option<&'a VolumeInfo>) -> Query<'a> {
        Query {
            tags: &self.tags,
            purpose: &self.purpose,
            importer: self.importer.as_deref(),
            destination: self.destination,
            direction: self.direction,
            date,
            volume,
        }
    }

    /// The PIPL volume the decision considers, from `counter`.
    pub fn volume(&self, counter: &ExportCounter) -> Option<VolumeInfo> {
        self.export.as_ref().map(|e| counter.volume(e))
    }

    /// Decides the transfer as of `date`. `volume` is the exporter's PIPL volume (see
    /// [`Transfer::volume`]); `None` for a PIPL export means unknown (the highest band).
    pub fn decide(
        &self,
        policies: &PolicySet,
        date: Date,
        volume: Option<&VolumeInfo>,
    ) -> Decision {
        match self.refused_before_policies(policies, date) {
            Some(d) => d,
            None => policies.decide(&self.query(date, volume)),
        }
    }

    /// Decides the transfer with every rule considered (for `explain` and `policy test`).
    pub fn decide_with_trace(
        &self,
        policies: &PolicySet,
        date: Date,
        volume: Option<&VolumeInfo>,
    ) -> (Decision, Vec<TraceStep>) {
        match self.refused_before_policies(policies, date) {
            Some(d) => {
                let step = TraceStep {
                    origin: None,
                    regime: None,
                    rule: d.rule.clone(),
                    outcome: crate::policy::Outcome::Deny,
                    note: d.reason.clone(),
                };
                (d, vec![step])
            }
            None => policies.decide_with_trace(&self.query(date, volume)),
        }
    }

    /// Decides the transfer with its trace, why the deciding rule won and what would have
    /// made a refusal lawful (`policy explain`). `set` is mutable only to try remedies with
    /// a synthetic importer, removed again.
    pub fn explain(
        &self,
        set: &mut PolicySet,
        date: Date,
        volume: Option<&VolumeInfo>,
    ) -> Explanation {
        if self.refused_by_catalog(date) {
            let (decision, trace) = self.decide_with_trace(set, date, volume);
            let why = format!(
                "the catalog refuses this transfer before any regime is asked: `{}` decided; no mechanism or derogation can lift it",
                decision.rule
            );
            return Explanation {
                decision,
                trace,
                why,
                remedies: Vec::new(),
                volume: None,
            };
        }
        crate::policy::explain::explain(set, &self.query(date, volume))
    }

    /// True when the decision is a refusal of the transfer itself that no mechanism or
    /// derogation could lift (withdrawn data, undeclared lineage).
    pub fn refused_by_catalog(&self, date: Date) -> bool {
        self.withdrawn_on(date).is_some() || self.undeclared.is_some() || self.refused_lineage()
    }

    /// True when the upload is refused for recent downloads its lineage does not cover.
    fn refused_lineage(&self) -> bool {
        self.unaccounted
            .as_ref()
            .is_some_and(|u| u.action == UndeclaredRecent::Refuse)
    }

    /// The recent downloads an allowed upload was flagged for, if any.
    pub fn flagged(&self) -> Option<&Unaccounted> {
        self.unaccounted
            .as_ref()
            .filter(|u| u.action == UndeclaredRecent::Flag)
    }

    fn withdrawn_on(&self, date: Date) -> Option<&Withdrawn> {
        self.withdrawal.as_ref().filter(|w| w.date <= date)
    }

    fn refused_before_policies(&self, policies: &PolicySet, date: Date) -> Option<Decision> {
        let deny = |ground, rule: &str, article: &str, reason: String| Decision {
            effect: Effect::Deny,
            ground: Some(ground),
            rule: rule.to_string(),
            article: article.to_string(),
            reason,
            policy_version: policies.version.clone(),
            bases: Vec::new(),
            instrument: policies.instrument(rules::INSTRUMENT).cloned(),
            transform: None,
        };
        if let Some(w) = self.withdrawn_on(date) {
            return Some(deny(
                DenyGround::Withdrawn,
                rules::WITHDRAWN,
                rules::WITHDRAWN_ARTICLE,
                format!("`{}` was withdrawn on {}: {}", w.entry, w.date, w.reason),
            ));
        }
        if let Some(u) = self.undeclared {
            return Some(deny(
                DenyGround::Transfer,
                rules::LINEAGE_UNDECLARED,
                rules::LINEAGE_UNDECLARED_ARTICLE,
                format!(
                    "the upload declares no lineage, so its data cannot be classified and may not move from {} to {}",
                    u.from, u.to
                ),
            ));
        }
        if let Some(u) = self.unaccounted.as_ref().filter(|_| self.refused_lineage()) {
            let seen: Vec<String> = u.downloads.iter().map(RecentDownload::describe).collect();
            let declared: Vec<&str> = self.tags.lineage.iter().map(String::as_str).collect();
            return Some(deny(
                DenyGround::Lineage,
                rules::UNDECLARED_RECENT,
                rules::UNDECLARED_RECENT_ARTICLE,
                format!(
                    "the uploader downloaded {} within the last {} days, and the upload's declared lineage ({}) does not cover it; declare it in the lineage header",
                    seen.join(", "),
                    u.window_days,
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        format!("`{}`", declared.join("`, `"))
                    }
                ),
            ));
        }
        None
    }
}
