//! End to end: a live gateway names the legal instrument of every decision (header, problem
//! body, audit record), and the scope of an adequacy decision over the recipient's legal
//! regime decides: a Canadian public body is refused where a PIPEDA organisation is allowed,
//! and a recipient whose regime the registry does not declare is refused, saying what to
//! declare.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Gateway, Options, repo};
use serde_json::Value;

const CUSTOMERS: &str = "/datasets/eu-customers/customers.csv";

async fn get(gw: &Gateway, org: &str, cc: &str) -> reqwest::Response {
    let t = gw.token("pipeline", org, cc, "analytics");
    gw.client()
        .get(gw.url(CUSTOMERS))
        .bearer_auth(t)
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn rid(r: &reqwest::Response) -> String {
    header(r, "x-request-id")
}

/// A gateway on the quickstart registry plus a Canadian recipient that declares no legal
/// regime (the registry lives in the returned directory).
fn gateway() -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let mut registry =
        std::fs::read_to_string(repo().join("examples/quickstart/registry.yaml")).unwrap();
    registry.push_str(
        "\n  - id: maple-ca\n    name: Maple Data Co.\n    country: CA\n    mechanisms: []\n",
    );
    let path = dir.path().join("registry.yaml");
    std::fs::write(&path, registry).unwrap();
    let gw = Gateway::start(Options {
        registry: Some(path),
        ..Options::default()
    });
    (dir, gw)
}

#[tokio::test]
async fn an_allowed_transfer_names_its_instrument_in_the_header_and_the_record() {
    let (_registry, gw) = gateway();
    let r = get(&gw, "globex-us", "US").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "bordergate-instrument"), "eu.adequacy-2023-1795");
    assert!(header(&r, "bordergate-decision").contains("rule=\"eu.adequacy.us-dpf\""));
    let d = gw.decision(&rid(&r));
    assert_eq!(d["rule"], "eu.adequacy.us-dpf");
    let i = &d["instrument"];
    assert_eq!(i["id"], "eu.adequacy-2023-1795");
    assert_eq!(i["kind"], "adequacy");
    assert_eq!(i["date"], "2023-07-10");
    assert!(
        i["reference"]
            .as_str()
            .unwrap()
            .starts_with("Commission Implementing Decision (EU) 2023/1795, OJ L 231"),
        "{i}"
    );

    // Clauses: the SCC decision and the module the importer signed.
    let r = get(&gw, "initech-in", "IN").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "bordergate-instrument"),
        "eu.scc-2021-914; module=1"
    );
    let d = gw.decision(&rid(&r));
    assert_eq!(d["instrument"]["id"], "eu.scc-2021-914");
    assert_eq!(d["instrument"]["module"], 1);
}

#[tokio::test]
async fn a_refusal_names_its_instrument_in_the_header_the_body_and_the_record() {
    let (_registry, gw) = gateway();
    let r = get(&gw, "acme-us", "US").await;
    assert_eq!(r.status(), 451);
    assert_eq!(header(&r, "bordergate-instrument"), "eu.gdpr");
    let id = rid(&r);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["rule"], "eu.chapter-v.no-basis");
    assert_eq!(p["instrument"]["id"], "eu.gdpr");
    assert_eq!(p["instrument"]["kind"], "statute");
    assert!(
        p["instrument"]["reference"]
            .as_str()
            .unwrap()
            .contains("Regulation (EU) 2016/679"),
        "{p}"
    );
    let d = gw.decision(&id);
    assert_eq!(d["instrument"], p["instrument"]);
}

#[tokio::test]
async fn a_canadian_public_body_is_refused_where_a_pipeda_organisation_is_allowed() {
    let (_registry, gw) = gateway();
    let r = get(&gw, "tyrell-ca", "CA").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "bordergate-instrument"), "eu.adequacy-2002-2");
    let d = gw.decision(&rid(&r));
    assert_eq!(d["rule"], "eu.adequacy.ca");
    assert_eq!(d["instrument"]["id"], "eu.adequacy-2002-2");
    assert!(
        d["instrument"]["reference"]
            .as_str()
            .unwrap()
            .contains("2002/2/EC, OJ L 2, 4.1.2002")
    );

    let r = get(&gw, "statcan-ca", "CA").await;
    assert_eq!(r.status(), 451);
    let id = rid(&r);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["rule"], "eu.chapter-v.no-basis");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "Commission Decision 2002/2/EC (Canada, organisations subject to PIPEDA) covers only a recipient that is an organisation subject to PIPEDA"
        ) && detail.contains("`statcan-ca` is declared as a public body"),
        "{detail}"
    );
    assert_eq!(gw.decision(&id)["reason"], detail);
}

#[tokio::test]
async fn a_recipient_whose_regime_is_unknown_is_refused_saying_what_to_declare() {
    let (_registry, gw) = gateway();
    let r = get(&gw, "maple-ca", "CA").await;
    assert_eq!(r.status(), 451);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["rule"], "eu.chapter-v.no-basis");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "the registry declares no legal regime for `maple-ca`: declare it in the registry (`regimes:`, one or more of pipeda, public-body"
        ),
        "{detail}"
    );
}
