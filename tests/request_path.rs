//! The request path in process: each phase's outcome as a client and an officer see it
//! (status, problem body, headers, the one decision record and its completion), driven
//! through `Gateway::handle` with no socket.

#![allow(clippy::unwrap_used)]

mod common;

use common::Options;
use common::inproc::InProc;

fn withdrawn_catalog() -> String {
    "  - id: erased-2020\n    kind: dataset\n    match: { prefix: /datasets/erased/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n    withdrawn: { date: 2020-01-01, reason: erasure request }\n  - id: erased-later\n    kind: dataset\n    match: { prefix: /datasets/erased-later/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n    withdrawn: { date: 2999-01-01, reason: contract ends }\n".into()
}

#[tokio::test]
async fn an_allowed_download_has_one_decision_then_its_completion() {
    let gw = InProc::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let a = gw
        .send(
            "GET",
            "/datasets/eu-customers/customers.csv",
            Some(&t),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(a.body.starts_with(b"customer_id") || !a.body.is_empty());
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(
        a.headers["bordergate-decision"]
            .to_str()
            .unwrap()
            .starts_with("allow; rule=\"eu.intra-eea\"")
    );
    assert!(a.headers.contains_key("audit-receipt"));
    let d = gw.record("decision", &id).await;
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["status"], 0);
    assert_eq!(d["dataset"], "eu-customers");
    assert_eq!(d["destination"], "DE");
    assert_eq!(d["upstream"], "eu-store");
    let c = gw.record("completion", &id).await;
    assert_eq!(c["outcome"], "complete");
    assert_eq!(c["bytes_out"], a.body.len());
    assert_eq!(c["decision_seq"], d["seq"]);
}

#[tokio::test]
async fn each_phase_refuses_with_its_problem_and_a_deny_record() {
    let gw = InProc::start(Options::default());
    let us = gw.token("bob", "acme-us", "US", "analytics");
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    // (method, path, token, status, problem type, recorded rule)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "DELETE",
            "/datasets/eu-customers/a",
            Some(&de),
            405,
            "method-not-allowed",
            "gateway.method-not-allowed",
        ),
        (
            "GET",
            "/datasets/%2e%2e/etc/passwd",
            Some(&de),
            400,
            "bad-path",
            "gateway.bad-path",
        ),
        (
            "GET",
            "/datasets/eu-customers/customers.csv",
            None,
            401,
            "unauthenticated",
            "auth.missing-token",
        ),
        (
            "GET",
            "/nowhere/x",
            Some(&de),
            403,
            "not-in-catalog",
            "gateway.not-in-catalog",
        ),
        (
            "GET",
            "/datasets/unknown/x",
            Some(&de),
            403,
            "not-in-catalog",
            "gateway.not-in-catalog",
        ),
        (
            "PUT",
            "/datasets/eu-customers/x",
            Some(&de),
            405,
            "method-not-allowed",
            "gateway.method-not-allowed",
        ),
        (
            "GET",
            "/datasets/eu-customers/customers.csv",
            Some(&us),
            451,
            "transfer-refused",
            "eu.chapter-v.no-basis",
        ),
        (
            "PUT",
            "/registry/us/model.bin",
            Some(&de),
            451,
            "transfer-refused",
            "upload.lineage-undeclared",
        ),
    ];
    for (method, path, token, status, ty, rule) in cases {
        let a = gw.send(method, path, *token, &[], b"").await;
        assert_eq!(a.status, *status, "{method} {path}: {:?}", a.body);
        let p = a.json();
        assert_eq!(
            p["type"],
            format!("urn:bordergate:problem:{ty}"),
            "{method} {path}"
        );
        let id = p["request_id"].as_str().unwrap().to_string();
        assert_eq!(a.headers["x-request-id"], id.as_str());
        let d = gw.record("decision", &id).await;
        assert_eq!(d["decision"], "deny", "{method} {path}");
        assert_eq!(d["rule"], *rule, "{method} {path}");
        assert_eq!(d["status"], *status);
        assert!(
            !gw.records()
                .iter()
                .any(|r| r["kind"] == "completion" && r["request_id"] == id.as_str()),
            "a refusal has no completion"
        );
    }
    // The phase-specific headers travel with the problem.
    let a = gw
        .send("DELETE", "/datasets/eu-customers/a", Some(&de), &[], b"")
        .await;
    assert_eq!(a.headers["allow"], "GET, HEAD, PUT, POST");
    let a = gw
        .send("PUT", "/datasets/eu-customers/x", Some(&de), &[], b"")
        .await;
    assert_eq!(a.headers["allow"], "GET, HEAD");
    let a = gw
        .send("GET", "/datasets/eu-customers/a", None, &[], b"")
        .await;
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=")
    );
    let a = gw
        .send(
            "GET",
            "/datasets/eu-customers/customers.csv",
            Some(&us),
            &[],
            b"",
        )
        .await;
    assert!(
        a.headers["bordergate-decision"]
            .to_str()
            .unwrap()
            .starts_with("deny;")
    );
    assert!(a.headers.contains_key("link"));
}

#[tokio::test]
async fn a_withdrawal_refuses_from_its_date_on() {
    let gw = InProc::start(Options {
        extra_catalog: withdrawn_catalog(),
        ..Options::default()
    });
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let a = gw
        .send("GET", "/datasets/erased/a.csv", Some(&de), &[], b"")
        .await;
    assert_eq!(a.status, 451);
    let p = a.json();
    assert_eq!(p["type"], "urn:bordergate:problem:data-withdrawn");
    assert_eq!(p["rule"], "catalog.withdrawn");
    assert_eq!(p["article"], "GDPR Art. 17");
    // Withdrawn only from 2999: served today (the store has no such file: 404, but allowed).
    let a = gw
        .send("GET", "/datasets/erased-later/a.csv", Some(&de), &[], b"")
        .await;
    assert_eq!(a.status, 404);
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(gw.record("decision", &id).await["decision"], "allow");
}

#[tokio::test]
async fn uploads_are_classified_by_their_declared_lineage() {
    let gw = InProc::start(Options::default());
    let de = gw.token("alice", "acme-de", "DE", "training");
    let a = gw
        .send(
            "PUT",
            "/registry/us/public-model.bin",
            Some(&de),
            &[("bordergate-lineage", "public-wiki")],
            b"weights",
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    let d = gw.record("decision", &id).await;
    assert_eq!(d["direction"], "upload");
    assert_eq!(d["destination"], "US");
    assert_eq!(d["tags"]["lineage"], serde_json::json!(["public-wiki"]));
    let c = gw.record("completion", &id).await;
    assert_eq!(c["bytes_in"], 7);
    let a = gw
        .send(
            "PUT",
            "/registry/us/eu-model.bin",
            Some(&de),
            &[("bordergate-lineage", "eu-customers")],
            b"weights",
        )
        .await;
    assert_eq!(a.status, 451);
    assert_eq!(a.json()["rule"], "eu.chapter-v.no-basis");
    let a = gw
        .send(
            "PUT",
            "/registry/us/x.bin",
            Some(&de),
            &[("bordergate-lineage", "no-such-dataset")],
            b"weights",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no-such-dataset")
    );
}

#[tokio::test]
async fn shadow_mode_forwards_a_refusal_and_records_it_unenforced() {
    let gw = InProc::start(Options {
        mode: "shadow",
        ..Options::default()
    });
    let us = gw.token("bob", "acme-us", "US", "analytics");
    let a = gw
        .send(
            "GET",
            "/datasets/eu-customers/customers.csv",
            Some(&us),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(
        a.headers["bordergate-decision"]
            .to_str()
            .unwrap()
            .ends_with("; mode=shadow")
    );
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    let d = gw.record("decision", &id).await;
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["enforced"], false);
}
