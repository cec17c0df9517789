//! Hot reload end to end: a valid policy change takes effect without dropping a request;
//! an invalid one is refused with an audit event and the old set keeps deciding.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gateway, Options, copy_dir, repo};

const CUSTOMERS: &str = "/datasets/eu-customers/customers.csv";

async fn status(gw: &Gateway, client: &reqwest::Client, token: &str) -> (u16, String) {
    let r = client
        .get(gw.url(CUSTOMERS))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (r.status().as_u16(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_takes_effect_and_an_invalid_one_is_refused() {
    let policies = tempfile::tempdir().unwrap();
    let dir = policies.path().join("policies");
    copy_dir(&repo().join("policies"), &dir);
    let gw = Arc::new(Gateway::start(Options {
        policies: Some(dir.clone()),
        ..Options::default()
    }));
    let client = gw.client();
    let token = gw.token("pipeline", "globex-us", "US", "analytics");
    let (s, id) = status(&gw, &client, &token).await;
    assert_eq!(s, 200, "globex-us is DPF-certified");
    let v1 = gw.decision(&id)["policy_version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw.decision(&id)["rule"], "eu.adequacy.us-dpf");

    // Requests keep flowing while the policies change; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let bg = {
        let (gw, stop, errors, done, token) = (
            gw.clone(),
            stop.clone(),
            errors.clone(),
            done.clone(),
            token.clone(),
        );
        tokio::spawn(async move {
            let client = gw.client();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .get(gw.url(CUSTOMERS))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 || r.status() == 451 => {
                        if r.bytes().await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Withdraw the EU-US DPF decision: written to a temporary file, then renamed in.
    let eu = std::fs::read_to_string(dir.join("eu.yaml")).unwrap();
    let start = eu.find("  - id: eu.adequacy.us-dpf\n").unwrap();
    let end = eu.find("  - id: eu.adequacy.us-privacy-shield\n").unwrap();
    std::fs::write(
        dir.join(".eu.yaml.tmp"),
        format!("{}{}", &eu[..start], &eu[end..]),
    )
    .unwrap();
    std::fs::rename(dir.join(".eu.yaml.tmp"), dir.join("eu.yaml")).unwrap();
    let mut flipped = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, id) = status(&gw, &client, &token).await;
        if s == 451 {
            flipped = Some(id);
            break;
        }
    }
    let id = flipped.expect("the valid change took effect");
    let d = gw.decision(&id);
    assert_eq!(d["rule"], "eu.chapter-v.no-basis");
    let v2 = d["policy_version"].as_str().unwrap().to_string();
    assert_ne!(
        v1, v2,
        "each decision names the policy version that decided it"
    );
    assert!(gw.records().iter().any(|r| r["kind"] == "event"
        && r["event"] == "reload"
        && r["policy_version"] == v2.as_str()));

    // An invalid set is refused; the previous one keeps deciding.
    std::fs::write(
        dir.join("zz-broken.yaml"),
        "id: zz\nname: broken\nlaw: x\nmembers: [XZ]\n",
    )
    .unwrap();
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refused = gw
            .records()
            .into_iter()
            .find(|r| r["kind"] == "event" && r["event"] == "reload-refused");
        if refused.is_some() {
            break;
        }
    }
    let refused = refused.expect("the invalid change was refused with an audit event");
    assert_eq!(refused["policy_version"], v2.as_str());
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("zz-broken.yaml"),
        "{refused}"
    );
    let (s, id) = status(&gw, &client, &token).await;
    assert_eq!(s, 451);
    assert_eq!(gw.decision(&id)["policy_version"], v2.as_str());

    stop.store(true, Ordering::Relaxed);
    bg.await.unwrap();
    assert!(done.load(Ordering::Relaxed) > 0);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no request was dropped");
    // Every decision record names a version that was in force.
    for r in gw.records().iter().filter(|r| r["kind"] == "decision") {
        let v = r["policy_version"].as_str().unwrap();
        assert!(v == v1 || v == v2, "{v}");
    }
}
