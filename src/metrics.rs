//! Process-wide Prometheus metrics: lock-free counters and histograms updated on the request
//! path and by the audit writer, rendered as OpenMetrics text for the admin listener.
//!
//! Updating a metric is a few relaxed atomic adds on memory that exists before the first
//! request: label combinations are fixed arrays (decision × status, destination country),
//! and the only open label, the policy rule id, is looked up in a copy-on-write map read
//! without locks. No label ever carries a path, a subject or an organisation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::model::{Country, Effect};

/// Distinct rule ids counted separately; later ones are counted as `other`.
const MAX_RULES: usize = 2048;
/// Status codes 100..=599 are counted one by one; anything else as 0.
const STATUS_SLOTS: usize = 500;
/// Slot 0: no destination; then `AA`..`ZZ`.
const COUNTRY_SLOTS: usize = 1 + 26 * 26;

/// Request latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// fdatasync latency buckets, seconds.
const FSYNC_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];
/// Records per audit batch.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The decision a request ended with, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Decided {
    Allow = 0,
    Deny = 1,
    /// Answered before any decision was recorded.
    None = 2,
}

impl Decided {
    const ALL: [Decided; 3] = [Decided::Allow, Decided::Deny, Decided::None];

    fn as_str(self) -> &'static str {
        match self {
            Decided::Allow => "allow",
            Decided::Deny => "deny",
            Decided::None => "none",
        }
    }

    /// The label of a policy effect.
    pub fn of(e: Effect) -> Decided {
        match e {
            Effect::Allow => Decided::Allow,
            Effect::Deny => Decided::Deny,
        }
    }

    /// Decodes [`Decided`] stored as a `u8`.
    pub fn from_u8(v: u8) -> Decided {
        match v {
            0 => Decided::Allow,
            1 => Decided::Deny,
            _ => Decided::None,
        }
    }
}

/// A histogram of fixed buckets kept in atomics (no lock on observe).
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in millionths of the unit.
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        // Saturating float-to-int cast; negative values count as 0.
        self.sum_micros
            .fetch_add((v * 1_000_000.0) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets = Vec::with_capacity(self.counts.len());
        let mut count = 0;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        (sum, count, buckets)
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Decision counts of one rule, by destination country.
#[derive(Debug)]
struct ByCountry(Box<[AtomicU64]>);

impl ByCountry {
    fn new() -> Self {
        ByCountry((0..COUNTRY_SLOTS).map(|_| AtomicU64::new(0)).collect())
    }
}

fn country_slot(c: Option<Country>) -> usize {
    let Some(c) = c else { return 0 };
    let b = c.as_str().as_bytes();
    match (b.first(), b.get(1)) {
        (Some(a @ b'A'..=b'Z'), Some(z @ b'A'..=b'Z')) => {
            1 + usize::from(a - b'A') * 26 + usize::from(z - b'A')
        }
        _ => 0,
    }
}

fn slot_country(i: usize) -> String {
    if i == 0 {
        return "none".into();
    }
    let i = i - 1;
    let a = char::from(b'A' + (i / 26) as u8);
    let z = char::from(b'A' + (i % 26) as u8);
    format!("{a}{z}")
}

/// Rule id → counts; read lock-free, replaced whole when a new rule id first appears.
#[derive(Debug, Default)]
struct RuleTable {
    map: ArcSwap<HashMap<Box<str>, Arc<ByCountry>>>,
    grow: Mutex<()>,
}

impl RuleTable {
    fn counters(&self, rule: &str) -> Arc<ByCountry> {
        if let Some(c) = self.map.load().get(rule) {
            return c.clone();
        }
        // First sighting of this rule id: copy, insert, swap (rare; bounded by MAX_RULES).
        let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.map.load_full();
        if let Some(c) = cur.get(rule) {
            return c.clone();
        }
        let key: &str = if cur.len() >= MAX_RULES {
            "other"
        } else {
            rule
        };
        if let Some(c) = cur.get(key) {
            return c.clone();
        }
        let mut next = HashMap::clone(&cur);
        let c = Arc::new(ByCountry::new());
        next.insert(key.into(), c.clone());
        self.map.store(Arc::new(next));
        c
    }

    fn add(&self, rule: &str, dest: Option<Country>) {
        let slot = country_slot(dest);
        let guard = self.map.load();
        if let Some(c) = guard.get(rule) {
            c.0[slot].fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(guard);
        self.counters(rule).0[slot].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    /// Decision × status code.
    requests: Box<[AtomicU64]>,
    decisions: RuleTable,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency: AtomicHistogram,
    fsync: AtomicHistogram,
    batch: AtomicHistogram,
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    jwks_fetch_ok: AtomicU64,
    jwks_fetch_failed: AtomicU64,
    /// Unix seconds of the last successful JWKS fetch (0: none).
    jwks_last_ok: AtomicU64,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn status_slot(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status - 99),
        _ => 0,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            requests: (0..Decided::ALL.len() * (STATUS_SLOTS + 1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            decisions: RuleTable::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: AtomicHistogram::new(&LATENCY_BUCKETS),
            fsync: AtomicHistogram::new(&FSYNC_BUCKETS),
            batch: AtomicHistogram::new(&BATCH_BUCKETS),
            reloads_ok: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            jwks_fetch_ok: AtomicU64::new(0),
            jwks_fetch_failed: AtomicU64::new(0),
            jwks_last_ok: AtomicU64::new(0),
        }
    }

    /// One answered request: its decision, status and time to the response head.
    pub fn request(&self, decided: Decided, status: u16, took: Duration) {
        let i = decided as usize * (STATUS_SLOTS + 1) + status_slot(status);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took.as_secs_f64());
    }

    /// One recorded decision, by rule id and destination country.
    pub fn decision(&self, rule: &str, destination: Option<Country>) {
        self.decisions.add(rule, destination);
    }

    /// Bytes of one finished transfer.
    pub fn transfer(&self, bytes_in: u64, bytes_out: u64) {
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// One audit batch made durable: its size and its fdatasync time.
    pub fn audit_commit(&self, records: usize, fsync: Duration) {
        self.batch.observe(records as f64);
        self.fsync.observe(fsync.as_secs_f64());
    }

    /// One configuration reload, accepted or refused.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One fetch of the identity provider's JWKS (`auth.jwks_url`), successful or not.
    pub fn jwks_fetch(&self, ok: bool) {
        if ok {
            self.jwks_fetch_ok.fetch_add(1, Ordering::Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.jwks_last_ok.store(now, Ordering::Relaxed);
        } else {
            self.jwks_fetch_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests counted so far with this decision and status.
    pub fn requests_with(&self, decided: Decided, status: u16) -> u64 {
        self.requests[decided as usize * (STATUS_SLOTS + 1) + status_slot(status)]
            .load(Ordering::Relaxed)
    }

    /// Audit batches committed so far.
    pub fn audit_batches(&self) -> u64 {
        self.batch.count()
    }
}

/// Values computed at scrape time from the gateway's current state.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// Transfer mechanisms already past their `valid_until`.
    pub bases_expired: u64,
    /// Transfer mechanisms whose `valid_until` falls within 30 days.
    pub bases_expiring_30d: u64,
    /// 1 if the audit log accepts records.
    pub audit_healthy: bool,
    /// This replica's name and the policy version it serves.
    pub replica: String,
    pub policy_version: String,
    /// The fleet sharing the audit table, when the fleet check runs.
    pub fleet: Option<FleetScrape>,
}

/// What the last fleet check saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct FleetScrape {
    /// Distinct policy versions among the live replicas (more than 1: drift).
    pub versions: u64,
    /// Live replicas.
    pub live: u64,
}

#[derive(Debug)]
struct Encode(&'static Metrics, Scrape);

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, String)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &AtomicHistogram,
) -> Result<(), std::fmt::Error> {
    let (sum, count, buckets) = h.snapshot();
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

impl Collector for Encode {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0;
        let mut rows = Vec::new();
        for d in Decided::ALL {
            for s in 0..=STATUS_SLOTS {
                let v = m.requests[d as usize * (STATUS_SLOTS + 1) + s].load(Ordering::Relaxed);
                if v > 0 {
                    let status = if s == 0 {
                        "other".to_string()
                    } else {
                        (s + 99).to_string()
                    };
                    rows.push((
                        vec![("decision", d.as_str().to_string()), ("status", status)],
                        v,
                    ));
                }
            }
        }
        counter(
            &mut enc,
            "bordergate_requests",
            "Requests answered on the proxy port, by decision and HTTP status.",
            &rows,
        )?;

        let mut rows = Vec::new();
        let table = m.decisions.map.load_full();
        let mut rules: Vec<_> = table.iter().collect();
        rules.sort_by(|a, b| a.0.cmp(b.0));
        for (rule, by) in rules {
            for (i, c) in by.0.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    rows.push((
                        vec![("rule", rule.to_string()), ("destination", slot_country(i))],
                        v,
                    ));
                }
            }
        }
        counter(
            &mut enc,
            "bordergate_decisions",
            "Recorded decisions, by policy rule id and destination country.",
            &rows,
        )?;

        counter(
            &mut enc,
            "bordergate_transfer_bytes",
            "Body bytes of finished transfers: in (request bodies) and out (response bodies).",
            &[
                (
                    vec![("direction", "in".to_string())],
                    m.bytes_in.load(Ordering::Relaxed),
                ),
                (
                    vec![("direction", "out".to_string())],
                    m.bytes_out.load(Ordering::Relaxed),
                ),
            ],
        )?;
        histogram(
            &mut enc,
            "bordergate_request_duration_seconds",
            "Time from the request head to the response head on the proxy port.",
            &m.latency,
        )?;
        histogram(
            &mut enc,
            "bordergate_audit_fsync_duration_seconds",
            "Time of each audit batch's fdatasync.",
            &m.fsync,
        )?;
        histogram(
            &mut enc,
            "bordergate_audit_batch_records",
            "Records per audit batch (group commit).",
            &m.batch,
        )?;
        counter(
            &mut enc,
            "bordergate_policy_reloads",
            "Configuration and policy reloads, accepted or refused.",
            &[
                (
                    vec![("result", "ok".to_string())],
                    m.reloads_ok.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "refused".to_string())],
                    m.reloads_refused.load(Ordering::Relaxed),
                ),
            ],
        )?;
        counter(
            &mut enc,
            "bordergate_jwks_fetches",
            "Fetches of the identity provider's JWKS (`auth.jwks_url`), by result.",
            &[
                (
                    vec![("result", "ok".to_string())],
                    m.jwks_fetch_ok.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "error".to_string())],
                    m.jwks_fetch_failed.load(Ordering::Relaxed),
                ),
            ],
        )?;
        let g = enc.encode_descriptor(
            "bordergate_jwks_last_success_timestamp_seconds",
            "Unix time of the last successful JWKS fetch (0: none yet, or no `jwks_url`).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(m.jwks_last_ok.load(Ordering::Relaxed)).unwrap_or(i64::MAX))
            .encode(g)?;
        let mut g = enc.encode_descriptor(
            "bordergate_transfer_bases_expiring",
            "Transfer mechanisms of the registry that have expired or expire within 30 days.",
            None,
            MetricType::Gauge,
        )?;
        for (within, v) in [
            ("expired", self.1.bases_expired),
            ("30d", self.1.bases_expiring_30d),
        ] {
            let labels = [("within", within)];
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                .encode(g.encode_family(&labels)?)?;
        }
        let g = enc.encode_descriptor(
            "bordergate_audit_healthy",
            "1 while the audit log accepts records.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.1.audit_healthy)).encode(g)?;
        if !self.1.policy_version.is_empty() {
            let mut g = enc.encode_descriptor(
                "bordergate_policy_version_info",
                "The policy version this replica serves (always 1).",
                None,
                MetricType::Gauge,
            )?;
            let labels = [
                ("replica", self.1.replica.as_str()),
                ("version", self.1.policy_version.as_str()),
            ];
            ConstGauge::new(1i64).encode(g.encode_family(&labels)?)?;
        }
        if let Some(f) = self.1.fleet {
            for (name, help, v) in [
                (
                    "bordergate_fleet_policy_versions",
                    "Distinct policy versions among the live replicas sharing the audit table (more than 1: drift).",
                    f.versions,
                ),
                (
                    "bordergate_fleet_replicas",
                    "Live replicas sharing the audit table, as the last fleet check saw them.",
                    f.live,
                ),
            ] {
                let g = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(g)?;
            }
        }
        Ok(())
    }
}

/// Renders every metric, with the scrape-time values, as OpenMetrics text.
pub fn render(metrics: &'static Metrics, scrape: Scrape) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Encode(metrics, scrape)));
    let mut out = String::with_capacity(8192);
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked() -> &'static Metrics {
        Box::leak(Box::new(Metrics::new()))
    }

    #[test]
    fn renders_the_replica_version_and_the_fleet() {
        let m = leaked();
        let text = render(m, Scrape::default()).unwrap();
        assert!(!text.contains("bordergate_policy_version_info"), "{text}");
        assert!(!text.contains("bordergate_fleet"), "{text}");
        let scrape = Scrape {
            replica: "gw-1".into(),
            policy_version: "sha256:ab".into(),
            fleet: Some(FleetScrape {
                versions: 2,
                live: 3,
            }),
            ..Scrape::default()
        };
        let text = render(m, scrape).unwrap();
        assert!(
            text.contains(
                r#"bordergate_policy_version_info{replica="gw-1",version="sha256:ab"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("bordergate_fleet_policy_versions 2"),
            "{text}"
        );
        assert!(text.contains("bordergate_fleet_replicas 3"), "{text}");
    }

    #[test]
    fn renders_requests_decisions_and_histograms() {
        let m = leaked();
        m.request(Decided::Allow, 200, Duration::from_millis(3));
        m.request(Decided::Deny, 451, Duration::from_millis(1));
        m.request(Decided::Deny, 451, Duration::from_millis(1));
        m.decision("eu.adequacy", Some(Country::parse("CH").unwrap()));
        m.decision("eu.default-deny", Some(Country::parse("US").unwrap()));
        m.decision("auth.missing", None);
        m.transfer(5, 1234);
        m.audit_commit(3, Duration::from_micros(800));
        m.reload(true);
        m.jwks_fetch(true);
        m.jwks_fetch(false);
        m.jwks_fetch(false);
        let text = render(m, Scrape::default()).unwrap();
        assert!(
            text.contains(r#"bordergate_requests_total{decision="deny",status="451"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"bordergate_requests_total{decision="allow",status="200"} 1"#));
        assert!(
            text.contains(r#"bordergate_decisions_total{rule="eu.adequacy",destination="CH"} 1"#)
        );
        assert!(
            text.contains(
                r#"bordergate_decisions_total{rule="auth.missing",destination="none"} 1"#
            )
        );
        assert!(text.contains(r#"bordergate_transfer_bytes_total{direction="out"} 1234"#));
        assert!(text.contains("bordergate_request_duration_seconds_count 3"));
        assert!(
            text.contains(r#"bordergate_audit_batch_records_bucket{le="4.0"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"bordergate_policy_reloads_total{result="ok"} 1"#));
        assert!(text.contains(r#"bordergate_jwks_fetches_total{result="error"} 2"#));
        assert!(!text.contains("bordergate_jwks_last_success_timestamp_seconds 0\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    /// `docs/metrics.md` names every metric the registry renders (with every optional part
    /// present), so a metric added in code and not in the doc fails here.
    #[test]
    fn docs_metrics_md_names_every_metric() {
        let m = leaked();
        m.jwks_fetch(true);
        let scrape = Scrape {
            replica: "gw-1".into(),
            policy_version: "v".into(),
            fleet: Some(FleetScrape {
                versions: 1,
                live: 1,
            }),
            ..Scrape::default()
        };
        let text = render(m, scrape).unwrap();
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
            .unwrap_or_default();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(names.len() > 10, "{text}");
        let missing: Vec<&&str> = names
            .iter()
            .filter(|n| {
                // Counters render as `<name>_total`; the doc names them so.
                !doc.contains(&format!("`{n}`")) && !doc.contains(&format!("`{n}_total`"))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "docs/metrics.md does not name {missing:?}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = AtomicHistogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(9.0);
        let (sum, count, b) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 11.0).abs() < 1e-9);
        assert_eq!(b, vec![(1.0, 1), (2.0, 1), (f64::INFINITY, 1)]);
    }

    #[test]
    fn rule_ids_are_bounded() {
        let m = leaked();
        for i in 0..(MAX_RULES + 10) {
            m.decision(&format!("r{i}"), None);
        }
        assert_eq!(m.decisions.map.load().len(), MAX_RULES + 1);
        let other = m.decisions.map.load().get("other").unwrap().0[0].load(Ordering::Relaxed);
        assert_eq!(other, 10);
    }

    #[test]
    fn country_slots_round_trip() {
        for c in ["AD", "DE", "US", "ZW"] {
            let s = country_slot(Some(Country::parse(c).unwrap()));
            assert_eq!(slot_country(s), c);
        }
        assert_eq!(slot_country(country_slot(None)), "none");
    }
}
