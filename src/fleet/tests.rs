//! The fleet computed from event lines.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

use super::*;

fn ev(seq: u64, time: &str, event: &str, replica: &str, version: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "seq": seq, "kind": "event", "time": time, "event": event, "detail": "",
        "replica": replica,
    });
    if let Some(p) = version {
        v["policy_version"] = p.into();
    }
    v.to_string()
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

#[test]
fn live_replicas_on_two_versions_are_drift() {
    let lines = [
        ev(1, "2026-03-01T10:00:00Z", "start", "gw-1", Some("sha256:a")),
        ev(1, "2026-03-01T10:00:01Z", "start", "gw-2", Some("sha256:a")),
        ev(
            2,
            "2026-03-01T10:05:00Z",
            "reload",
            "gw-2",
            Some("sha256:b"),
        ),
        // Newest first, as the query returns them: order must not matter.
        ev(1, "2026-03-01T10:00:02Z", "start", "gw-3", Some("sha256:a")),
    ];
    let mut rev: Vec<&str> = lines.iter().map(String::as_str).collect();
    rev.reverse();
    let f = Fleet::from_lines(rev);
    let v = f.view(at("2026-03-01T10:06:00Z"), None);
    assert!(v.drift);
    assert_eq!(v.versions, ["sha256:a", "sha256:b"]);
    let by: Vec<(&str, &str, &str, bool)> = v
        .replicas
        .iter()
        .map(|m| {
            (
                &*m.replica,
                m.policy_version.as_deref().unwrap(),
                &*m.last_event,
                m.live,
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("gw-1", "sha256:a", "start", true),
            ("gw-2", "sha256:b", "reload", true),
            ("gw-3", "sha256:a", "start", true),
        ]
    );
    assert_eq!(v.checked, "2026-03-01T10:06:00Z");
    assert_eq!(f.newest(), Some(at("2026-03-01T10:05:00Z")));
    let text = v.alert_text();
    assert!(text.contains("2 policy versions"), "{text}");
    assert!(text.contains("gw-2 sha256:b"), "{text}");
}

#[test]
fn a_replica_that_shut_down_does_not_count_until_it_starts_again() {
    let mut f = Fleet::from_lines(
        [
            ev(1, "2026-03-01T10:00:00Z", "start", "gw-1", Some("sha256:a")),
            ev(
                1,
                "2026-03-01T10:00:00Z",
                "start",
                "gw-2",
                Some("sha256:old"),
            ),
            ev(
                9,
                "2026-03-01T11:00:00Z",
                "shutdown",
                "gw-2",
                Some("sha256:old"),
            ),
        ]
        .iter()
        .map(String::as_str),
    );
    let v = f.view(at("2026-03-01T12:00:00Z"), None);
    assert!(!v.drift, "{v:?}");
    assert_eq!(v.versions, ["sha256:a"]);
    assert_eq!(v.replicas.len(), 2);
    assert!(!v.replicas[1].live);
    assert!(
        v.alert_text()
            .contains("one policy version again (sha256:a)")
    );

    // Restarted on the old version: drift again. Lines read twice change nothing.
    let again = ev(
        10,
        "2026-03-01T12:00:00Z",
        "start",
        "gw-2",
        Some("sha256:old"),
    );
    f.observe_all([again.as_str(), again.as_str()]);
    assert!(f.view(at("2026-03-01T12:00:01Z"), None).drift);
    // An older line read late does not undo a newer one.
    let stale = ev(9, "2026-03-01T11:00:00Z", "shutdown", "gw-2", None);
    f.observe_all([stale.as_str()]);
    assert!(f.view(at("2026-03-01T12:00:02Z"), None).drift);
}

#[test]
fn lines_without_a_replica_or_of_other_kinds_are_ignored() {
    let decision = r#"{"seq":3,"kind":"decision","time":"2026-03-01T10:00:00Z","decision":"allow","replica":"gw-9","policy_version":"sha256:z"}"#;
    let old = r#"{"seq":1,"kind":"event","time":"2026-03-01T10:00:00Z","event":"start","policy_version":"sha256:z"}"#;
    let repair = ev(
        2,
        "2026-03-01T10:00:00Z",
        "repair",
        "gw-8",
        Some("sha256:z"),
    );
    let f = Fleet::from_lines([decision, old, "not json", repair.as_str()]);
    let v = f.view(at("2026-03-01T10:00:00Z"), None);
    assert!(v.replicas.is_empty(), "{v:?}");
    assert!(!v.drift);
    // A listen event keeps the version when a later event carries none.
    let f = Fleet::from_lines(
        [
            ev(
                1,
                "2026-03-01T10:00:00Z",
                "listen",
                "gw-1",
                Some("sha256:a"),
            ),
            ev(2, "2026-03-01T10:00:01Z", "reload-refused", "gw-1", None),
        ]
        .iter()
        .map(String::as_str),
    );
    let v = f.view(at("2026-03-01T10:00:02Z"), None);
    assert_eq!(v.replicas[0].policy_version.as_deref(), Some("sha256:a"));
    assert_eq!(v.replicas[0].last_event, "reload-refused");
}

#[test]
fn a_replica_without_a_session_is_not_live() {
    // gw-2 was killed on the new version: no shutdown event, but its session is gone.
    let lines = [
        ev(1, "2026-03-01T10:00:00Z", "start", "gw-1", Some("sha256:a")),
        ev(1, "2026-03-01T10:00:01Z", "start", "gw-2", Some("sha256:b")),
    ];
    let f = Fleet::from_lines(lines.iter().map(String::as_str));
    assert!(f.view(at("2026-03-01T10:01:00Z"), None).drift);
    let connected: std::collections::BTreeSet<String> = ["gw-1".to_string()].into();
    let v = f.view(at("2026-03-01T10:01:00Z"), Some(&connected));
    assert!(!v.drift, "{v:?}");
    assert_eq!(v.versions, ["sha256:a"]);
    let gw2 = v.replicas.iter().find(|m| m.replica == "gw-2").unwrap();
    assert_eq!((gw2.live, gw2.connected), (false, Some(false)));
    assert_eq!(gw2.last_event, "start", "its last event is still shown");
    assert_eq!(v.live().count(), 1);
}
