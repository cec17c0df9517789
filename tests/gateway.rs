//! End to end: the real binary, real files, a real HTTP upstream, real clients; each test
//! checks what a user sees — status, body, headers and the audit records.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Gateway, Options, Upstream};
use serde_json::Value;

const CUSTOMERS: &str = "/datasets/eu-customers/customers.csv";
const CLINICAL: &str = "/datasets/eu-clinical/records.csv";
const MODEL: &str = "/models/support-bot/model.safetensors";

async fn get(gw: &Gateway, token: &str, path: &str) -> reqwest::Response {
    gw.client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn rid(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

async fn problem(r: reqwest::Response) -> Value {
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "refusals are problem+json"
    );
    r.json().await.unwrap()
}

#[tokio::test]
async fn same_country_download_is_allowed_streamed_and_audited() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw, &t, CUSTOMERS).await;
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    assert!(
        r.headers()["bordergate-decision"]
            .to_str()
            .unwrap()
            .starts_with("allow")
    );
    assert!(r.headers().contains_key("audit-receipt"));
    let body = r.bytes().await.unwrap();
    let on_disk = std::fs::read(gw.store.join("datasets/eu-customers/customers.csv")).unwrap();
    assert_eq!(body.as_ref(), on_disk.as_slice());

    let d = gw.decision(&id);
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["caller"]["sub"], "alice");
    assert_eq!(d["caller"]["org"], "acme-de");
    assert_eq!(d["caller"]["jurisdiction"], "DE");
    assert_eq!(d["caller"]["purpose"], "analytics");
    assert_eq!(d["dataset"], "eu-customers");
    assert_eq!(d["path"], CUSTOMERS);
    assert_eq!(d["destination"], "DE");
    assert_eq!(d["origins"], serde_json::json!(["DE"]));
    assert!(d["policy_version"].as_str().unwrap().starts_with("sha256:"));
    assert!(!d["rule"].as_str().unwrap().is_empty());
    let c = gw.completion(&id).await;
    assert_eq!(c["outcome"], "complete");
    assert_eq!(c["status"], 200);
    assert_eq!(c["bytes_out"], on_disk.len() as u64);
    assert_eq!(c["decision_seq"], d["seq"]);
    // The token never reaches the log.
    let log = std::fs::read_to_string(&gw.audit).unwrap();
    assert!(!log.contains(&t));
}

#[tokio::test]
async fn eu_data_to_an_adequate_country_is_allowed_citing_art_45() {
    let gw = Gateway::start(Options::default());
    for (org, cc) in [("cyberdyne-jp", "JP"), ("wayne-gb", "GB")] {
        let t = gw.token("u", org, cc, "analytics");
        let r = get(&gw, &t, CUSTOMERS).await;
        assert_eq!(r.status(), 200, "{cc}");
        let d = gw.decision(&rid(&r));
        assert_eq!(d["decision"], "allow");
        assert!(d["article"].as_str().unwrap().contains("45"), "{d}");
    }
}

#[tokio::test]
async fn eu_personal_data_to_us_org_without_mechanism_is_451_citing_chapter_v() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("bob", "acme-us", "US", "analytics");
    let r = get(&gw, &t, CUSTOMERS).await;
    assert_eq!(r.status(), 451);
    let id = rid(&r);
    assert!(
        r.headers()["bordergate-decision"]
            .to_str()
            .unwrap()
            .starts_with("deny")
    );
    let p = problem(r).await;
    assert_eq!(p["type"], "urn:bordergate:problem:transfer-refused");
    assert_eq!(p["status"], 451);
    assert!(p["article"].as_str().unwrap().contains("Chapter V"), "{p}");
    assert!(!p["rule"].as_str().unwrap().is_empty());
    assert!(!p["detail"].as_str().unwrap().is_empty());
    assert_eq!(p["request_id"], id.as_str());
    assert!(
        !p.to_string().contains("bob"),
        "no personal data in the problem"
    );
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["status"], 451);
    assert_eq!(d["rule"], p["rule"]);
    assert_eq!(d["article"], p["article"]);
    assert!(
        gw.records()
            .iter()
            .all(|r| r["kind"] != "completion" || r["request_id"] != id.as_str()),
        "nothing was forwarded"
    );
}

#[tokio::test]
async fn dpf_certified_org_is_allowed_and_scc_validity_is_dated() {
    let gw = Gateway::start(Options::default());
    let dpf = gw.token("carol", "globex-us", "US", "analytics");
    let r = get(&gw, &dpf, CUSTOMERS).await;
    assert_eq!(r.status(), 200);
    let d = gw.decision(&rid(&r));
    assert!(d["article"].as_str().unwrap().contains("45"), "{d}");

    let scc = gw.token("dev", "initech-in", "IN", "training");
    let r = get(&gw, &scc, CUSTOMERS).await;
    assert_eq!(r.status(), 200);
    let d = gw.decision(&rid(&r));
    assert!(d["article"].as_str().unwrap().contains("46(2)(c)"), "{d}");

    let expired = gw.token("dev", "umbrella-in", "IN", "training");
    let r = get(&gw, &expired, CUSTOMERS).await;
    assert_eq!(r.status(), 451);
    let p = problem(r).await;
    assert!(p["article"].as_str().unwrap().contains("Chapter V"), "{p}");
}

#[tokio::test]
async fn purpose_mismatch_is_403() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "marketing");
    let r = get(&gw, &t, CUSTOMERS).await;
    assert_eq!(r.status(), 403);
    let id = rid(&r);
    let p = problem(r).await;
    assert_eq!(p["type"], "urn:bordergate:problem:purpose-refused");
    assert!(p["article"].as_str().unwrap().contains("5(1)(b)"), "{p}");
    assert_eq!(gw.decision(&id)["status"], 403);
}

#[tokio::test]
async fn special_category_health_data() {
    let gw = Gateway::start(Options::default());
    // Within the EEA, for its permitted purpose.
    let fr = gw.token("doc", "hospital-fr", "FR", "research");
    assert_eq!(get(&gw, &fr, CLINICAL).await.status(), 200);
    let de = gw.token("doc", "lab-de", "DE", "research");
    assert_eq!(get(&gw, &de, CLINICAL).await.status(), 200);
    // Not for another purpose.
    let other = gw.token("doc", "lab-de", "DE", "training");
    assert_eq!(get(&gw, &other, CLINICAL).await.status(), 403);
    // A DPF certification that does not cover health data does not carry it to the US.
    let us = gw.token("carol", "globex-us", "US", "research");
    let r = get(&gw, &us, CLINICAL).await;
    assert_eq!(r.status(), 451);
    let id = rid(&r);
    let d = gw.decision(&id);
    assert!(
        d["tags"]["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "health"),
        "{d}"
    );
}

#[tokio::test]
async fn a_model_inherits_the_tags_of_the_data_it_was_derived_from() {
    let gw = Gateway::start(Options::default());
    let us = gw.token("bob", "acme-us", "US", "training");
    let r = get(&gw, &us, MODEL).await;
    assert_eq!(r.status(), 451);
    let d = gw.decision(&rid(&r));
    assert_eq!(d["dataset"], "support-bot");
    assert_eq!(d["origins"], serde_json::json!(["DE"]));
    assert!(
        d["tags"]["lineage"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "eu-customers"),
        "{d}"
    );

    let de = gw.token("alice", "acme-de", "DE", "training");
    let r = get(&gw, &de, MODEL).await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert!(header.is_object(), "a real safetensors file came through");
}

#[tokio::test]
async fn upload_of_an_eu_derived_model_to_a_us_registry_is_refused_and_nothing_written() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "training");
    let target = gw.store.join("registry/us/support-bot-v2.safetensors");
    let r = gw
        .client()
        .put(gw.url("/registry/us/support-bot-v2.safetensors"))
        .bearer_auth(&t)
        .header("bordergate-lineage", "support-bot")
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    let id = rid(&r);
    let d = gw.decision(&id);
    assert_eq!(d["direction"], "upload");
    assert_eq!(d["destination"], "US");
    assert_eq!(d["origins"], serde_json::json!(["DE"]));
    assert!(!target.exists(), "nothing may be written upstream");

    // No lineage declared: unknown data, refused across the border.
    let r = gw
        .client()
        .put(gw.url("/registry/us/unknown.bin"))
        .bearer_auth(&t)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    assert_eq!(gw.decision(&rid(&r))["rule"], "upload.lineage-undeclared");
    assert!(!gw.store.join("registry/us/unknown.bin").exists());

    // A US caller uploading its own data to the US registry is not a transfer.
    let us = gw.token("bob", "acme-us", "US", "training");
    let r = gw
        .client()
        .put(gw.url("/registry/us/own.bin"))
        .bearer_auth(&us)
        .body("local data")
        .send()
        .await
        .unwrap();
    assert!(r.status() == 201 || r.status() == 204, "{}", r.status());
    let id = rid(&r);
    assert_eq!(
        std::fs::read_to_string(gw.store.join("registry/us/own.bin")).unwrap(),
        "local data"
    );
    let c = gw.completion(&id).await;
    assert_eq!(c["bytes_in"], 10);
}

#[tokio::test]
async fn a_path_outside_the_catalog_is_refused() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    for path in [
        "/datasets/unknown/x.csv",
        "/elsewhere/x",
        "/datasets/eu-customers-mirror/customers.csv",
    ] {
        let r = get(&gw, &t, path).await;
        assert_eq!(r.status(), 403, "{path}");
        let id = rid(&r);
        let p = problem(r).await;
        assert_eq!(p["type"], "urn:bordergate:problem:not-in-catalog", "{path}");
        assert_eq!(gw.decision(&id)["decision"], "deny");
    }
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_bearer_challenge() {
    let gw = Gateway::start(Options::default());
    let secret = gw.secret();
    let now = common::now();
    let claims = |exp: u64, aud: &str| {
        format!(
            r#"{{"sub":"a","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"{aud}","exp":{exp},"iat":{now}}}"#
        )
    };
    let good_header = r#"{"alg":"HS256","typ":"JWT","kid":"dev"}"#;
    let good = common::hs256_jwt(&secret, good_header, &claims(now + 600, "bordergate"));
    assert_eq!(
        get(&gw, &good, CUSTOMERS).await.status(),
        200,
        "hand-made token is valid"
    );

    let bad_sig = common::hs256_jwt(
        b"another secret",
        good_header,
        &claims(now + 600, "bordergate"),
    );
    let expired = common::hs256_jwt(&secret, good_header, &claims(now - 3600, "bordergate"));
    let wrong_aud = common::hs256_jwt(&secret, good_header, &claims(now + 600, "someone-else"));
    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims(now + 600, "bordergate"))
        )
    };
    for (name, tok) in [
        ("bad signature", bad_sig),
        ("expired", expired),
        ("wrong audience", wrong_aud),
        ("alg none", none),
        ("garbage", "not.a.jwt".into()),
    ] {
        let r = get(&gw, &tok, CUSTOMERS).await;
        assert_eq!(r.status(), 401, "{name}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer "), "{name}: {challenge}");
        assert!(challenge.contains("invalid_token"), "{name}: {challenge}");
        let id = rid(&r);
        let p = problem(r).await;
        assert_eq!(p["type"], "urn:bordergate:problem:unauthenticated");
        let d = gw.decision(&id);
        assert_eq!(d["decision"], "deny");
        assert_eq!(d["status"], 401);
        assert!(d["caller"].is_null());
    }
    let r = gw.client().get(gw.url(CUSTOMERS)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"bordergate\""
    );
}

#[tokio::test]
async fn ambiguous_paths_are_400_and_never_reach_the_store() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    for target in [
        "/datasets/eu-customers/..%2f..%2fetc/passwd",
        "/datasets/eu-customers%2fcustomers.csv",
        "/datasets/eu-customers/../eu-clinical/records.csv",
        "/datasets/eu-customers/%2e%2e/eu-clinical/records.csv",
        "/datasets//eu-customers/customers.csv",
        "/datasets/eu-customers/customers.csv%00",
        "/datasets/eu-customers/%zz",
        "/datasets/eu-customers/..%5ccustomers.csv",
    ] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = common::raw_request(&gw, req.as_bytes()).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(
            text.contains("urn:bordergate:problem:bad-path"),
            "{target}: {text}"
        );
    }
    let log = gw.records();
    assert!(
        log.iter()
            .filter(|r| r["kind"] == "decision")
            .all(|r| r["status"] == 400)
    );
    assert!(log.iter().all(|r| r["kind"] != "completion"));
}

#[tokio::test]
async fn range_requests_on_a_large_file_stream_exact_bytes() {
    let gw = Gateway::start(Options::default());
    // A 1 GiB file (sparse) with a marker near the end.
    let path = gw.store.join("datasets/eu-customers/big.bin");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        f.seek(SeekFrom::Start((1 << 30) - 100)).unwrap();
        f.write_all(b"the-end-marker").unwrap();
    }
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .get(gw.url("/datasets/eu-customers/big.bin"))
        .bearer_auth(&t)
        .header(
            "range",
            format!("bytes={}-{}", (1u64 << 30) - 100, (1u64 << 30) - 87),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!(
            "bytes {}-{}/{}",
            (1u64 << 30) - 100,
            (1u64 << 30) - 87,
            1u64 << 30
        )
    );
    let id = rid(&r);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"the-end-marker");
    let c = gw.completion(&id).await;
    assert_eq!(c["status"], 206);
    assert_eq!(c["bytes_out"], 14);

    // The whole GiB streams through with flat memory.
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let before = rss(gw.child.id());
    let mut r = gw
        .client()
        .get(gw.url("/datasets/eu-customers/big.bin"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut total = 0u64;
    let mut peak = before;
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len() as u64;
        if total % (64 << 20) < chunk.len() as u64 {
            peak = peak.max(rss(gw.child.id()));
        }
    }
    assert_eq!(total, 1 << 30);
    assert!(
        peak - before < 64 * 1024,
        "RSS grew by {} KiB",
        peak - before
    );
}

fn mirror_options(upstream_url: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {upstream_url}\n    jurisdiction: DE\n    timeout_secs: 2\n"
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n".into(),
        extra_catalog: "  - id: mirror-customers\n    kind: dataset\n    match:\n      prefix: /mirror/eu-customers/\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics, training]\n".into(),
        ..Options::default()
    }
}

fn ok_responder() -> common::Responder {
    Arc::new(|s: &common::Seen| {
        let mut b = http::Response::builder()
            .status(200)
            .header("etag", "\"v1\"")
            .header("connection", "x-internal")
            .header("x-internal", "secret");
        if s.uri.contains("us-mixed") {
            b = b.header("x-data-origin", "US");
        }
        if s.uri.contains("health") {
            b = b.header("x-data-categories", "health");
        }
        b.body(Bytes::from_static(b"id,name\n1,Test Person\n"))
            .unwrap()
    })
}

#[tokio::test]
async fn http_upstream_gets_clean_headers_and_never_the_token() {
    let up = Upstream::start(ok_responder()).await;
    let gw = Gateway::start(mirror_options(&up.url()));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .get(gw.url("/mirror/eu-customers/part%201.csv?rev=3"))
        .bearer_auth(&t)
        .header("x-data-origin", "DE")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "pipeline-run-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The gateway's id is its own and unique; the client's is kept beside it.
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "pipeline-run-42");
    assert_eq!(r.headers()["x-client-request-id"], "pipeline-run-42");
    assert_eq!(r.headers()["etag"], "\"v1\"");
    assert!(
        r.headers().get("x-internal").is_none(),
        "Connection-named response header stripped"
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.uri, "/mirror/eu-customers/part%201.csv?rev=3");
    assert!(s.headers.get("authorization").is_none());
    assert!(s.headers.get("x-data-origin").is_none());
    assert!(s.headers.get("x-hop").is_none());
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "https");
    assert_eq!(s.headers["x-request-id"], id.as_str());
    assert_eq!(s.headers["x-client-request-id"], "pipeline-run-42");
    assert_eq!(
        s.headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    let d = gw.decision(&id);
    assert_eq!(d["upstream"], "mirror");
    assert_eq!(d["client_request_id"], "pipeline-run-42");
}

#[tokio::test]
async fn upstream_metadata_adds_tags_and_can_turn_an_allow_into_a_refusal() {
    let up = Upstream::start(ok_responder()).await;
    let gw = Gateway::start(mirror_options(&up.url()));
    // The catalog says DE; the upstream adds a US origin: a DE caller still gets it.
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw, &de, "/mirror/eu-customers/us-mixed.csv").await;
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let origins = gw.decision(&id)["origins"].clone();
    assert_eq!(origins, serde_json::json!(["DE"]));
    // The upstream adds health data: the DPF org no longer gets it. The request keeps its
    // one decision record (the allow written before forwarding); the re-decision and the
    // tags it added are on the completion, which ends `refused` with nothing sent.
    let dpf = gw.token("carol", "globex-us", "US", "analytics");
    let r = get(&gw, &dpf, "/mirror/eu-customers/health.csv").await;
    assert_eq!(r.status(), 451);
    let id = rid(&r);
    let p = problem(r).await;
    assert_eq!(p["type"], "urn:bordergate:problem:transfer-refused");
    let decisions: Vec<_> = gw
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["request_id"] == id.as_str())
        .collect();
    assert_eq!(decisions.len(), 1, "one decision record per request");
    assert_eq!(decisions[0]["decision"], "allow");
    let c = gw.completion(&id).await;
    assert_eq!(c["outcome"], "refused");
    assert_eq!(c["status"], 451);
    assert_eq!(c["bytes_out"], 0);
    assert_eq!(c["recheck"]["decision"], "deny");
    assert_eq!(c["recheck"]["rule"], p["rule"]);
    assert_eq!(c["recheck"]["categories"], serde_json::json!(["health"]));
}

#[tokio::test]
async fn upstream_down_is_502_and_audited() {
    let port = common::dead_port();
    let gw = Gateway::start(mirror_options(&format!("http://127.0.0.1:{port}")));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw, &t, "/mirror/eu-customers/a.csv").await;
    assert_eq!(r.status(), 502);
    let id = rid(&r);
    let p = problem(r).await;
    assert_eq!(p["type"], "urn:bordergate:problem:upstream-unavailable");
    assert_eq!(gw.decision(&id)["decision"], "allow");
    let c = gw.completion(&id).await;
    assert_eq!(c["outcome"], "upstream-error");
    assert_eq!(c["status"], 502);
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    // Accepts connections but never answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let gw = Gateway::start(mirror_options(&format!("http://{addr}")));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw, &t, "/mirror/eu-customers/a.csv").await;
    assert_eq!(r.status(), 504);
    let c = gw.completion(&rid(&r)).await;
    assert_eq!(c["outcome"], "upstream-error");
}

#[tokio::test]
async fn audit_log_not_writable_is_503_and_nothing_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let mut opts = mirror_options(&up.url());
    opts.audit_path = Some("/dev/full".into());
    let gw = Gateway::start(opts);
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw, &t, "/mirror/eu-customers/a.csv").await;
    assert_eq!(r.status(), 503);
    let p = problem(r).await;
    assert_eq!(p["type"], "urn:bordergate:problem:audit-unavailable");
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    let r = get(&gw, &t, CUSTOMERS).await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn a_tampered_log_is_caught_by_audit_verify() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let us = gw.token("bob", "acme-us", "US", "analytics");
    for tok in [&t, &us, &t] {
        let r = get(&gw, tok, CUSTOMERS).await;
        let _ = r.bytes().await;
    }
    let mut gw = gw;
    assert!(gw.stop().success());
    let out = common::verify(&gw.audit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A compliance-relevant edit: turn the refusal into an allow.
    let text = std::fs::read_to_string(&gw.audit).unwrap();
    let line_no = text
        .lines()
        .position(|l| l.contains("\"decision\":\"deny\""))
        .unwrap();
    let tampered: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == line_no {
                l.replace("\"decision\":\"deny\"", "\"decision\":\"allow\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&gw.audit, tampered.join("\n") + "\n").unwrap();
    let out = common::verify(&gw.audit);
    assert!(!out.status.success());
    let msg =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains(&format!("line {}", line_no + 1)), "{msg}");
    assert!(msg.to_lowercase().contains("modified"), "{msg}");
}

#[tokio::test]
async fn shadow_mode_audits_and_reports_but_does_not_enforce() {
    let gw = Gateway::start(Options {
        mode: "shadow",
        ..Options::default()
    });
    let t = gw.token("bob", "acme-us", "US", "analytics");
    let r = get(&gw, &t, CUSTOMERS).await;
    assert_eq!(r.status(), 200);
    let h = r.headers()["bordergate-decision"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(h.starts_with("deny") && h.contains("shadow"), "{h}");
    let d = gw.decision(&rid(&r));
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["enforced"], false);
}

#[tokio::test]
async fn sigterm_drains_and_leaves_a_verifiable_log() {
    let mut gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw, &t, CUSTOMERS).await;
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let _ = r.bytes().await;
    assert!(gw.stop().success());
    let recs = gw.records();
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "completion" && r["request_id"] == id.as_str())
    );
    assert!(common::verify(&gw.audit).status.success());
    // A restart continues the chain.
    let audit = gw.audit.clone();
    let gw2 = Gateway::start(Options {
        audit_path: Some(audit.clone()),
        ..Options::default()
    });
    let t2 = gw2.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(get(&gw2, &t2, CUSTOMERS).await.status(), 200);
    drop(gw2);
    let out = common::verify(&audit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn head_and_not_modified_transfers_complete() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .head(gw.url(CUSTOMERS))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let c = gw.completion(&rid(&r)).await;
    assert_eq!(c["outcome"], "complete");
    assert_eq!(c["bytes_out"], 0);
    let r = gw
        .client()
        .get(gw.url(CUSTOMERS))
        .bearer_auth(&t)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let c = gw.completion(&rid(&r)).await;
    assert_eq!(c["outcome"], "complete");
    assert_eq!(c["status"], 304);
}
