//! The fleet: the replicas that share one PostgreSQL audit table, each with the policy
//! version its last `start`, `listen`, `reload` or `shutdown` event reported. Replicas on
//! different versions answer the same request differently; [`check`] reads the events
//! every `fleet.check_secs`, and the drift is shown (`/fleet`, metrics, the officer's page)
//! and sent to the alert webhook once per change.
//!
//! A replica whose last event is `shutdown` is not live and does not count; nor is one
//! whose audit writer holds no session on the database (killed, crashed, cut off: its
//! chain's advisory lock is free), until it connects again.

pub mod check;
pub mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::record::{EventView, RecordView};

/// One replica as its events describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub replica: String,
    pub region: Option<String>,
    /// The policy version it last reported.
    pub policy_version: Option<String>,
    /// Its last event (`start`, `reload`, `shutdown`, …).
    pub last_event: String,
    /// That event's time (RFC 3339).
    pub last_seen: String,
    /// False after a `shutdown`, and while its audit writer holds no session.
    pub live: bool,
    /// Whether its audit writer's session holds its chain's lock (absent: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    #[serde(skip)]
    at: Option<OffsetDateTime>,
}

/// What the events read so far say about every replica.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    members: BTreeMap<String, Member>,
}

/// The fleet at one check: every replica, and the versions the live ones serve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FleetView {
    /// By name.
    pub replicas: Vec<Member>,
    /// Distinct policy versions of the live replicas, sorted.
    pub versions: Vec<String>,
    /// More than one version among the live replicas.
    pub drift: bool,
    /// When the table was last read (RFC 3339).
    pub checked: String,
    /// Why the last read failed, if it did (the rest is from the read before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Fleet {
    /// The fleet that `lines` (event lines of the audit table, in any order) describe.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Fleet {
        let mut f = Fleet::default();
        f.observe_all(lines);
        f
    }

    /// Takes in more lines; lines already seen change nothing.
    pub fn observe_all<'a>(&mut self, lines: impl IntoIterator<Item = &'a str>) {
        let mut events: Vec<(OffsetDateTime, u64, EventView<'_>)> = lines
            .into_iter()
            .filter_map(|l| match RecordView::parse(l.as_bytes()) {
                Ok(RecordView::Event(e)) => Some(e),
                _ => None,
            })
            .filter_map(|e| Some((e.time()?, e.seq.unwrap_or(0), e)))
            .collect();
        events.sort_by_key(|(at, seq, _)| (*at, *seq));
        for (at, _, e) in events {
            self.observe(at, &e);
        }
    }

    fn observe(&mut self, at: OffsetDateTime, e: &EventView<'_>) {
        let Some(name) = e.replica.as_deref() else {
            return;
        };
        if !matches!(
            &*e.event,
            "start" | "listen" | "reload" | "reload-refused" | "shutdown"
        ) {
            return;
        }
        let m = self
            .members
            .entry(name.to_owned())
            .or_insert_with(|| Member {
                replica: name.to_owned(),
                region: None,
                policy_version: None,
                last_event: String::new(),
                last_seen: String::new(),
                live: false,
                connected: None,
                at: None,
            });
        if m.at.is_some_and(|t| t > at) {
            return;
        }
        m.at = Some(at);
        m.last_event = e.event.to_string();
        m.last_seen = e.time.to_string();
        m.live = e.event != "shutdown";
        m.region = e.region.as_deref().map(str::to_owned);
        if let Some(v) = e.policy_version.as_deref() {
            m.policy_version = Some(v.to_owned());
        }
    }

    /// The newest event time read so far.
    pub fn newest(&self) -> Option<OffsetDateTime> {
        self.members.values().filter_map(|m| m.at).max()
    }

    /// Names of every replica seen.
    pub fn names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// The fleet as shown and alerted on. `connected`: the replicas whose writer holds a
    /// session now, when that could be read.
    pub fn view(
        &self,
        checked: OffsetDateTime,
        connected: Option<&std::collections::BTreeSet<String>>,
    ) -> FleetView {
        let replicas: Vec<Member> = self
            .members
            .values()
            .map(|m| {
                let mut m = m.clone();
                if let Some(set) = connected {
                    let on = set.contains(&m.replica);
                    m.connected = Some(on);
                    m.live &= on;
                }
                m
            })
            .collect();
        let mut versions: Vec<String> = replicas
            .iter()
            .filter(|m| m.live)
            .filter_map(|m| m.policy_version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        FleetView {
            drift: versions.len() > 1,
            replicas,
            versions,
            checked: checked.format(&Rfc3339).unwrap_or_default(),
            error: None,
        }
    }
}

impl FleetView {
    /// Live replicas.
    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.replicas.iter().filter(|m| m.live)
    }

    /// The message the officer gets when the live replicas' versions change.
    pub fn alert_text(&self) -> String {
        if !self.drift {
            return format!(
                "bordergate: the fleet serves one policy version again ({}): {} live replica(s)",
                self.versions.first().map_or("none", String::as_str),
                self.live().count()
            );
        }
        let who: Vec<String> = self
            .live()
            .map(|m| {
                format!(
                    "{} {}",
                    m.replica,
                    m.policy_version.as_deref().unwrap_or("unknown")
                )
            })
            .collect();
        format!(
            "bordergate: policy drift: the live replicas serve {} policy versions, so the same request may be answered differently: {}",
            self.versions.len(),
            who.join(", ")
        )
    }
}

/// The fleet as the last check saw it, shared with the admin listener; empty until the
/// first check (and always without `audit.sink: postgres`).
#[derive(Debug, Default)]
pub struct Watch(ArcSwapOption<FleetView>);

impl Watch {
    pub fn get(&self) -> Option<Arc<FleetView>> {
        self.0.load_full()
    }

    pub fn set(&self, v: FleetView) {
        self.0.store(Some(Arc::new(v)));
    }
}

#[cfg(test)]
mod tests;
