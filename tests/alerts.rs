//! Alerts reach the officer's webhook: refusal surges and expired transfer bases, with
//! no caller identity in the message.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, Options, Upstream};

#[tokio::test]
async fn refusal_surges_and_expired_bases_reach_the_webhook() {
    let hook = Upstream::start(Arc::new(|_s: &common::Seen| {
        http::Response::builder()
            .status(200)
            .body(Bytes::from_static(b"ok"))
            .unwrap()
    }))
    .await;
    let gw = Gateway::start(Options {
        extra_config: format!(
            "alerts:\n  webhook_url: {}/hooks/compliance\n  refusals_per_window: 2\n  window_secs: 1\n  expiring_within_days: 30\n",
            hook.url()
        ),
        ..Options::default()
    });
    let t = gw.token("mallory-the-analyst", "acme-us", "US", "analytics");
    for _ in 0..5 {
        let r = gw
            .client()
            .get(gw.url("/datasets/eu-customers/customers.csv"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 451);
    }
    let mut texts = Vec::new();
    for _ in 0..100 {
        texts = hook
            .requests()
            .iter()
            .map(|s| {
                assert_eq!(s.method, "POST");
                assert_eq!(s.uri, "/hooks/compliance");
                let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
                v["text"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>();
        if texts.iter().any(|t| t.contains("refused transfers")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let surge = texts
        .iter()
        .find(|t| t.contains("refused transfers"))
        .unwrap_or_else(|| panic!("no refusal alert in {texts:?}"));
    assert!(surge.contains("threshold 2"), "{surge}");
    // The quickstart registry has an SCC that expired on 2025-06-30.
    let bases = texts
        .iter()
        .find(|t| t.contains("expired"))
        .unwrap_or_else(|| panic!("no expiry alert in {texts:?}"));
    assert!(
        bases.contains("umbrella-in") && bases.contains("2025-06-30"),
        "{bases}"
    );
    assert!(
        texts.iter().all(|t| !t.contains("mallory")),
        "no caller identity in alerts"
    );
}

#[test]
fn check_refuses_a_webhook_that_is_not_http() {
    let (_dir, cfg, _, _) = common::prepare(&Options {
        extra_config: "alerts:\n  webhook_url: ftp://example.invalid/x\n".into(),
        ..Options::default()
    });
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("alerts.webhook_url"));
}
