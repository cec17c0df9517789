//! Which replica this gateway is: its `name` (default: the host name) and `region`, and
//! the `fleet:` section (how often the replicas sharing a PostgreSQL audit table are
//! compared).

use std::sync::Arc;

use serde::Deserialize;

/// The name a replica takes when neither the file nor the host name gives a valid one.
pub const FALLBACK_NAME: &str = "gateway";

/// Longest replica name (a DNS label).
pub const MAX_NAME: usize = 63;

/// Longest region.
pub const MAX_REGION: usize = 64;

/// A replica as its audit records name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// 1–63 characters of `a-z 0-9 - _ .`.
    pub name: Arc<str>,
    /// Free text such as `eu-central`.
    pub region: Option<Arc<str>>,
}

/// The `fleet:` section: the comparison of the replicas' policy versions, read from the
/// shared PostgreSQL audit table (`audit.sink: postgres` only).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Seconds between two reads of the fleet's events; 0 turns the check off.
    #[serde(default = "default_check_secs")]
    pub check_secs: u64,
    /// How far back the first read looks for the replicas' last events, in days.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
}

fn default_check_secs() -> u64 {
    15
}

fn default_lookback_days() -> u32 {
    30
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            check_secs: default_check_secs(),
            lookback_days: default_lookback_days(),
        }
    }
}

/// Why `name` cannot name a replica, if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Some(format!(
            "`name` `{name}` must be 1 to {MAX_NAME} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    {
        return Some(format!(
            "`name` `{name}` holds `{c}`; use lower-case letters, digits, `-`, `_` and `.`"
        ));
    }
    None
}

/// Why `region` cannot be a region, if it cannot.
pub fn region_problem(region: &str) -> Option<String> {
    if region.trim().is_empty() || region.chars().count() > MAX_REGION {
        return Some(format!(
            "`region` `{region}` must be 1 to {MAX_REGION} characters long"
        ));
    }
    if region.chars().any(char::is_control) {
        return Some("`region` holds a control character".to_string());
    }
    None
}

/// The name a replica gets from a host name: lower-cased, anything outside `a-z 0-9 - _ .`
/// made `-`, cut to 63 characters; [`FALLBACK_NAME`] when nothing is left.
pub fn name_from_host(host: &str) -> String {
    let name: String = host
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '-',
        })
        .take(MAX_NAME)
        .collect();
    if name.is_empty() || name_problem(&name).is_some() {
        FALLBACK_NAME.to_string()
    } else {
        name
    }
}

/// The default name: the machine's host name (`/proc/sys/kernel/hostname`), else
/// [`FALLBACK_NAME`].
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| name_from_host(&h))
        .unwrap_or_else(|_| FALLBACK_NAME.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lower_case_labels() {
        for ok in ["gw-1", "a", "eu_central.gw-01", &"x".repeat(63)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        assert!(name_problem("").unwrap().contains("1 to 63"));
        assert!(name_problem(&"x".repeat(64)).unwrap().contains("1 to 63"));
        assert_eq!(
            name_problem("GW-1").unwrap(),
            "`name` `GW-1` holds `G`; use lower-case letters, digits, `-`, `_` and `.`"
        );
        assert!(name_problem("gw 1").unwrap().contains("holds ` `"));
        assert!(name_problem("gw/1").is_some());
    }

    #[test]
    fn regions_are_free_text_without_control_characters() {
        assert_eq!(region_problem("eu-central"), None);
        assert_eq!(region_problem("Frankfurt (DE)"), None);
        assert!(region_problem("").is_some());
        assert!(region_problem("  ").is_some());
        assert!(region_problem("eu\ncentral").is_some());
        assert!(region_problem(&"r".repeat(65)).is_some());
    }

    #[test]
    fn a_host_name_becomes_a_valid_name() {
        assert_eq!(name_from_host("Web-01.Example.COM\n"), "web-01.example.com");
        assert_eq!(name_from_host("host name"), "host-name");
        assert_eq!(name_from_host("\n"), FALLBACK_NAME);
        assert_eq!(name_from_host(&"H".repeat(80)), "h".repeat(63));
        assert_eq!(name_problem(&default_name()), None);
    }
}
