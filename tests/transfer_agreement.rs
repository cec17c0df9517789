//! Property: the live gateway and `policy explain` decide every request alike. Random
//! requests (path, caller, purpose, direction, declared lineage) go through the gateway in
//! process and through the `bordergate policy explain --path … --json` command against the
//! same config; the decision record and the explanation must name the same effect and rule.

#![allow(clippy::unwrap_used)]

mod common;

use common::Options;
use common::inproc::InProc;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

const PATHS: &[&str] = &[
    "/datasets/eu-customers/customers.csv",
    "/datasets/eu-clinical/records.csv",
    "/datasets/public-wiki/sample.txt",
    "/models/support-bot/model.safetensors",
    "/registry/us/model.bin",
    "/datasets/erased/a.csv",
    "/datasets/erased-later/a.csv",
    "/datasets/unknown/x",
    "/nowhere/x",
];
const PLACES: &[&str] = &["DE", "FR", "IE", "US", "IN", "JP", "GB", "CH", "BR"];
const ORGS: &[&str] = &[
    "acme-us",
    "globex-us",
    "initech-in",
    "umbrella-in",
    "cyberdyne-jp",
    "wayne-gb",
    "acme-de",
];
const PURPOSES: &[&str] = &["analytics", "training", "research", "marketing"];
const LINEAGE: &[&str] = &[
    "eu-customers",
    "public-wiki",
    "eu-clinical",
    "support-bot",
    "nope",
];

#[derive(Debug, Clone)]
struct Req {
    path: &'static str,
    place: &'static str,
    org: &'static str,
    purpose: &'static str,
    upload: bool,
    lineage: Vec<&'static str>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(PATHS),
        prop::sample::select(PLACES),
        prop::sample::select(ORGS),
        prop::sample::select(PURPOSES),
        any::<bool>(),
        prop::sample::subsequence(LINEAGE, 0..3),
    )
        .prop_map(|(path, place, org, purpose, upload, lineage)| Req {
            path,
            place,
            org,
            purpose,
            upload,
            lineage: if upload { lineage } else { Vec::new() },
        })
}

fn explain(gw: &InProc, r: &Req) -> (String, String) {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["policy", "explain", "--json", "--config"])
        .arg(&gw.config)
        .args(["--path", r.path, "--jurisdiction", r.place, "--org", r.org])
        .args(["--purpose", r.purpose]);
    if r.upload {
        cmd.arg("--upload");
        if !r.lineage.is_empty() {
            cmd.args(["--lineage", &r.lineage.join(",")]);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{r:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["decision"]["effect"].as_str().unwrap().to_string(),
        v["decision"]["rule"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_gateway_and_explain_decide_every_request_alike() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gw = rt.block_on(async {
        InProc::start(Options {
            extra_catalog: "  - id: erased\n    kind: dataset\n    match: { prefix: /datasets/erased/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n    withdrawn: { date: 2020-01-01, reason: erasure request }\n  - id: erased-later\n    kind: dataset\n    match: { prefix: /datasets/erased-later/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n    withdrawn: { date: 2999-01-01, reason: contract ends }\n".into(),
            ..Options::default()
        })
    });
    let cases = std::env::var("BORDERGATE_AGREEMENT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(PropConfig {
        cases,
        failure_persistence: None,
        ..PropConfig::default()
    });
    // Each case is its own principal: `policy explain` does not see anyone's downloads, so
    // a case must not inherit the lineage check of an earlier case's download.
    let cases_run = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&request(), |r| {
            let n = cases_run.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let token = gw.token(&format!("prop-{n}"), r.org, r.place, r.purpose);
            let lineage = r.lineage.join(",");
            let mut headers = Vec::new();
            if !lineage.is_empty() {
                headers.push(("bordergate-lineage", lineage.as_str()));
            }
            let method = if r.upload { "PUT" } else { "GET" };
            let (id, status) = rt.block_on(async {
                let body: &'static [u8] = if r.upload { b"x" } else { b"" };
                let a = gw.send(method, r.path, Some(&token), &headers, body).await;
                let id = a.headers["x-request-id"].to_str().unwrap().to_string();
                (id, a.status)
            });
            let d = rt.block_on(gw.record("decision", &id));
            let (effect, rule) = explain(&gw, &r);
            prop_assert_eq!(
                d["decision"].as_str().unwrap(),
                effect.as_str(),
                "{:?} (status {})",
                r,
                status
            );
            prop_assert_eq!(d["rule"].as_str().unwrap(), rule.as_str(), "{:?}", r);
            Ok(())
        })
        .unwrap();
}
