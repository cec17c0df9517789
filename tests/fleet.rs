//! Two real gateways named `gw-a` and `gw-b` on one PostgreSQL audit table, serving
//! different policy packs: each one's admin API shows both replicas and their versions and
//! the drift, the webhook gets one drift alert (and one when the fleet agrees again), and
//! every record in the table names its replica.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/admin.rs"]
mod support;

use std::time::Duration;

use common::{Options, Upstream, pg};
use serde_json::Value;
use support::Admined;

fn options(name: &str, table: &str, hook: &str, policies: Option<std::path::PathBuf>) -> Options {
    Options {
        policies,
        extra_audit: format!(
            "  sink: postgres\n  postgres:\n    dsn: \"{}\"\n    table: {table}\n",
            pg::dsn()
        ),
        extra_config: format!(
            "name: {name}\nregion: eu-central\nfleet:\n  check_secs: 1\nalerts:\n  webhook_url: {hook}/hooks/fleet\n  refusals_per_window: 0\n"
        ),
        ..Options::default()
    }
}

/// The alert webhook: answers every post with 200.
async fn webhook() -> Upstream {
    Upstream::answering(b"ok").await
}

/// A copy of the pack that differs by one line (so its version differs), for `who`.
fn changed_pack(who: &str) -> tempfile::TempDir {
    let pack = tempfile::tempdir().unwrap();
    common::copy_dir(&common::repo().join("policies"), pack.path());
    let uk = pack.path().join("uk.yaml");
    let mut text = std::fs::read_to_string(&uk).unwrap();
    text.push_str(&format!("# changed on {who} only\n"));
    std::fs::write(&uk, text).unwrap();
    pack
}

async fn fleet(a: &Admined, token: &str) -> Value {
    let r = a.get("/fleet", Some(token)).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls `a`'s `/fleet` until `done` holds for its fleet.
async fn fleet_until(a: &Admined, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = fleet(a, token).await;
        if done(&last["fleet"]) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the fleet never got there: {last:#}");
}

fn texts(hook: &Upstream, about: &str) -> Vec<String> {
    hook.requests()
        .iter()
        .map(|s| {
            let v: Value = serde_json::from_slice(&s.body).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .filter(|t| t.contains(about))
        .collect()
}

fn member<'v>(fleet: &'v Value, name: &str) -> &'v Value {
    fleet["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["replica"] == name)
        .unwrap_or_else(|| panic!("no {name} in {fleet:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_two_policy_versions_are_shown_and_alerted_once() {
    let Some(c) = pg::pg().await else { return };
    let t = pg::table("fleet");
    let hook = webhook().await;

    // gw-b serves a pack that differs by one line, so its version differs.
    let pack = changed_pack("gw-b");

    let a = support::start(options("gw-a", &t, &hook.url(), None));
    let mut b = support::start(options("gw-b", &t, &hook.url(), Some(pack.path().into())));
    let token = a.officer();
    let token_b = b.officer();
    assert_eq!(a.get("/fleet", None).await.status(), 401);
    a.traffic().await;
    b.traffic().await;

    let va: Value = a.get("/readyz", None).await.json().await.unwrap();
    let vb: Value = b.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(
        (&va["replica"], &vb["replica"]),
        (&"gw-a".into(), &"gw-b".into())
    );
    let (version_a, version_b) = (va["policy_version"].clone(), vb["policy_version"].clone());
    assert_ne!(version_a, version_b);

    let both_live = |f: &Value| {
        f["replicas"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|m| m["live"] == true).count() == 2)
    };
    for (who, tok) in [(&a, &token), (&b, &token_b)] {
        let got = fleet_until(who, tok, both_live).await;
        let f = &got["fleet"];
        assert_eq!(f["drift"], true, "{got:#}");
        let mut want = vec![version_a.clone(), version_b.clone()];
        want.sort_by_key(|v| v.as_str().unwrap().to_string());
        assert_eq!(f["versions"], Value::Array(want));
        assert_eq!(member(f, "gw-a")["policy_version"], version_a);
        assert_eq!(member(f, "gw-b")["policy_version"], version_b);
        assert_eq!(member(f, "gw-b")["region"], "eu-central");
    }
    let metrics = a.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("bordergate_fleet_policy_versions 2"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        r#"bordergate_policy_version_info{{replica="gw-a",version={version_a}}} 1"#
    )));

    // One alert for the fleet, from the replica whose name sorts first, for a few checks.
    for _ in 0..50 {
        if !texts(&hook, "policy drift").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drift = texts(&hook, "policy drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(drift[0].contains("2 policy versions"), "{}", drift[0]);
    assert!(drift[0].contains("gw-b sha256:"), "{}", drift[0]);

    // Every record in the table names its replica; both wrote decisions.
    let rows = c
        .query(&format!("SELECT line FROM {t} ORDER BY seq"), &[])
        .await
        .unwrap();
    let lines: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect();
    for l in &lines {
        assert!(
            l["replica"] == "gw-a" || l["replica"] == "gw-b",
            "no replica in {l}"
        );
        assert_eq!(l["region"], "eu-central");
    }
    for name in ["gw-a", "gw-b"] {
        assert!(
            lines
                .iter()
                .any(|l| l["kind"] == "decision" && l["replica"] == name),
            "no decision of {name}"
        );
        let start = lines
            .iter()
            .find(|l| l["event"] == "start" && l["replica"] == name)
            .unwrap();
        assert!(
            start["policy_version"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }

    // gw-b shuts down: no longer live, one version again, and the officer is told.
    assert!(b.gw.stop().success());
    let got = fleet_until(&a, &token, |f| f["drift"] == false).await;
    assert_eq!(member(&got["fleet"], "gw-b")["live"], false);
    assert_eq!(member(&got["fleet"], "gw-b")["last_event"], "shutdown");
    for _ in 0..50 {
        if !texts(&hook, "one policy version again").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(texts(&hook, "one policy version again").len(), 1);
    assert_eq!(texts(&hook, "policy drift").len(), 1);
    drop(a);
    pg::drop_tables(&c, &t).await;
}

/// A replica killed without a `shutdown` event (kill -9) leaves the fleet once its session
/// is gone: the drift it caused ends, and the view says it is not connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_leaves_the_fleet_with_its_session() {
    let Some(c) = pg::pg().await else { return };
    let t = pg::table("fleetkill");
    let hook = webhook().await;
    let pack = changed_pack("gw-k");

    let a = support::start(options("gw-a", &t, &hook.url(), None));
    let mut k = support::start(options("gw-k", &t, &hook.url(), Some(pack.path().into())));
    let token = a.officer();
    a.traffic().await;
    k.traffic().await;
    let got = fleet_until(&a, &token, |f| f["drift"] == true).await;
    assert_eq!(member(&got["fleet"], "gw-k")["connected"], true, "{got:#}");

    k.gw.child.kill().unwrap();
    k.gw.child.wait().unwrap();
    let got = fleet_until(&a, &token, |f| f["drift"] == false).await;
    let gone = member(&got["fleet"], "gw-k");
    assert_eq!(
        (&gone["live"], &gone["connected"]),
        (&false.into(), &false.into()),
        "{got:#}"
    );
    assert_ne!(gone["last_event"], "shutdown", "it had no time to say so");
    assert_eq!(member(&got["fleet"], "gw-a")["live"], true);
    drop(a);
    drop(k);
    pg::drop_tables(&c, &t).await;
}
