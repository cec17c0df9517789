//! The leaks an adversarial run found, each shown refused end to end against the real
//! gateway and a real upstream that records everything it receives: nothing reaches the
//! upstream, or leaves through the gateway, that the audit log did not allow.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Gateway, Options, Upstream};

/// A search API hosted in Germany that answers POST/PUT with EU personal data, labelled.
fn search_api() -> common::Responder {
    Arc::new(|s: &common::Seen| {
        let mut b = http::Response::builder().status(200);
        if s.method != "GET" || s.uri.contains("labelled") {
            b = b
                .header("x-data-origin", "DE")
                .header("x-data-categories", "personal");
        }
        b.body(Bytes::from_static(
            b"id,name,email\n1,Erika Mustermann,erika@example.de\n",
        ))
        .unwrap()
    })
}

fn search_options(url: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: search\n    url: {url}\n    jurisdiction: DE\n    timeout_secs: 5\n"
        ),
        extra_routes: "  - prefix: /h/\n    upstream: search\n    uploads: true\n".into(),
        extra_catalog: "  - id: eu-search\n    kind: dataset\n    match: { prefix: /h/eu/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n".into(),
        ..Options::default()
    }
}

/// Item 1: the response to an upload is data coming back; it is decided as a download of
/// the same path, with the upstream's labels, before its first byte.
#[tokio::test]
async fn the_response_to_an_upload_is_decided_like_a_download() {
    let up = Upstream::start(search_api()).await;
    let gw = Gateway::start(search_options(&up.url()));
    let us = gw.token("mallory", "acme-us", "US", "analytics");
    for method in ["POST", "PUT"] {
        let r = gw
            .client()
            .request(method.parse().unwrap(), gw.url("/h/eu/search"))
            .bearer_auth(&us)
            .header("bordergate-lineage", "public-wiki")
            .body("{\"q\": \"*\"}")
            .send()
            .await
            .unwrap();
        let status = r.status();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        assert_eq!(status, 451, "{method}: {body}");
        assert!(!body.contains("Mustermann"), "{method}: {body}");
        assert!(body.contains("eu.chapter-v.no-basis"), "{body}");
        // The upload itself was allowed and recorded before it was forwarded; the refused
        // response is on the completion.
        let d = gw.decision(&id);
        assert_eq!(d["decision"], "allow");
        assert_eq!(d["direction"], "upload");
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "refused", "{c}");
        assert_eq!(c["bytes_out"], 0);
        assert_eq!(c["recheck"]["of"], "upload-response");
        assert_eq!(c["recheck"]["decision"], "deny");
        assert_eq!(c["recheck"]["origins"], serde_json::json!(["DE"]));
    }
    // A caller in Germany gets the same answer.
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .post(gw.url("/h/eu/search"))
        .bearer_auth(&de)
        .header("bordergate-lineage", "public-wiki")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Mustermann"));
    // Every request the upstream saw has an allow record.
    let allows = gw
        .records()
        .iter()
        .filter(|r| {
            r["kind"] == "decision" && r["decision"] == "allow" && r["upstream"] == "search"
        })
        .count();
    assert_eq!(up.requests().len(), allows);
}

/// Item 6: every record has the gateway's own unique request id; a client's `X-Request-Id`
/// is kept beside it, never used as the id.
#[tokio::test]
async fn request_ids_are_the_gateways_and_unique() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = gw
            .client()
            .get(gw.url("/datasets/eu-customers/customers.csv"))
            .bearer_auth(&t)
            .header("x-request-id", "same-every-time")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-client-request-id"], "same-every-time");
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_ne!(id, "same-every-time");
        let d = gw.decision(id);
        assert_eq!(d["client_request_id"], "same-every-time");
        assert_eq!(gw.completion(id).await["outcome"], "complete");
    }
}

/// Item 6: a log emptied or cut between runs no longer restarts silently at seq 1 (its head
/// file names the last durable record), and a symlinked or world-writable log is refused.
#[tokio::test]
async fn a_log_emptied_between_runs_or_placed_unsafely_is_refused() {
    let mut gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .get(gw.url("/datasets/eu-customers/customers.csv"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    gw.stop();
    let serve = |config: &std::path::Path| {
        std::process::Command::new(common::BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("BORDERGATE_LOG", "warn")
            .output()
            .unwrap()
    };
    let kept = std::fs::read(&gw.audit).unwrap();
    std::fs::write(&gw.audit, b"").unwrap();
    let o = serve(&gw.config);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("records were removed"), "{err}");
    assert!(
        std::fs::read(&gw.audit).unwrap().is_empty(),
        "nothing was written"
    );
    // `audit verify` names it too.
    let v = std::process::Command::new(common::BIN)
        .args(["audit", "verify"])
        .arg(&gw.audit)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stderr).contains("truncated"));

    // A symlink in place of the log.
    std::fs::write(gw.dir.path().join("real.log"), &kept).unwrap();
    std::fs::remove_file(&gw.audit).unwrap();
    std::os::unix::fs::symlink(gw.dir.path().join("real.log"), &gw.audit).unwrap();
    let o = serve(&gw.config);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
}
