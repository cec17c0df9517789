//! Adversarial suite, HTTP/1.1 on raw sockets: byte-exact requests through the real gateway
//! to an upstream that records the raw bytes it received. Each case asserts the status,
//! what reached the upstream (usually nothing) and the audit record. See docs/hardening.md.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::raw::{self, RawResponse, RawUpstream};
use common::{Gateway, Options};
use serde_json::Value;

const MIRROR_CATALOG: &str = "  - id: mirror-customers\n    kind: dataset\n    match:\n      prefix: /mirror/eu-customers/\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics, training]\n";

fn mirror_opts(up: &RawUpstream) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {}\n    jurisdiction: DE\n    timeout_secs: 2\n",
            up.url()
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n    uploads: true\n".into(),
        extra_catalog: MIRROR_CATALOG.into(),
        ..Options::default()
    }
}

struct Fx {
    gw: Gateway,
    up: RawUpstream,
    de: String,
    us: String,
}

async fn fixture() -> Fx {
    fixture_with(|o| o).await
}

async fn fixture_with(f: impl FnOnce(Options) -> Options) -> Fx {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(f(mirror_opts(&up)));
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let us = gw.token("bob", "acme-us", "US", "analytics");
    Fx { gw, up, de, us }
}

fn get(target: &str, token: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n{extra}connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The decision record of a raw response, if the gateway made one.
fn decision_of(gw: &Gateway, r: &RawResponse) -> Option<Value> {
    let id = r.request_id()?;
    gw.records()
        .into_iter()
        .find(|x| x["kind"] == "decision" && x["request_id"] == id.as_str())
}

/// Invariant 5's oracle: every request the upstream saw was audited as allowed, and every
/// allowed request that completed cleanly was seen. (An allowed request whose body broke
/// mid-stream is aborted upstream and never completes there: its completion says so.)
async fn assert_oracle(fx: &Fx) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recs = fx.gw.records();
    let allows: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["kind"] == "decision" && r["decision"] == "allow" && r["upstream"] == "mirror"
        })
        .collect();
    let clean = allows
        .iter()
        .filter(|d| {
            recs.iter().any(|c| {
                c["kind"] == "completion"
                    && c["decision_seq"] == d["seq"]
                    && c["outcome"] == "complete"
            })
        })
        .count();
    let seen = fx.up.count();
    assert!(
        seen <= allows.len() && seen >= clean,
        "upstream saw {seen} requests; audited allows {}, completed cleanly {clean}; upstream received:\n{}",
        allows.len(),
        fx.up.received()
    );
}

#[tokio::test]
async fn path_and_request_target_confusion_is_refused_before_anything_moves() {
    let fx = fixture().await;
    let targets = [
        "/mirror/eu-customers/../../datasets/eu-clinical/records.csv",
        "/mirror/eu-customers/%2e%2e/%2e%2e/datasets/eu-clinical/records.csv",
        "/mirror/eu-customers/%2E%2e/x",
        "/mirror/eu-customers/.%2E/x",
        "/mirror/eu-customers/./a",
        "/mirror/eu-customers%2fa",
        "/mirror/eu-customers%2Fa",
        "/mirror/eu-customers/%5c..%5cx",
        "/mirror//eu-customers/a",
        "/mirror/eu-customers/..;/x",
        "/mirror/eu-customers/a;jsessionid=1",
        "/mirror/eu-customers/a%3bx",
        "/mirror/eu-customers/a%23b",
        "/mirror/eu-customers/a%00b",
        "/mirror/eu-customers/a%0ab",
        "/mirror/eu-customers/a%0d%0aX-Data-Origin:%20US",
        "/mirror/eu-customers/%252e%252e/x",
        "/mirror/eu-customers/%25",
        "/mirror/eu-customers/%c0%ae%c0%ae/x",
        "/mirror/eu-customers/%ef%bc%8e%ef%bc%8e/x",
        "/mirror/eu-customers/%ef%bc%8fx",
        "/mirror/eu-customers/%ff",
        "/mirror/eu-customers/%zz",
        "/mirror/eu-customers/%",
        "/mirror/eu-customers/%e2%80%ae",
        "/mirror/eu-customers/a%1b[31mred",
    ];
    for t in targets {
        let r = raw::tls(&fx.gw, &get(t, &fx.de, "")).await;
        assert_eq!(r.status(), 400, "{t}: {}", r.text());
        let d = decision_of(&fx.gw, &r).unwrap_or_else(|| panic!("{t}: no decision record"));
        assert_eq!(d["decision"], "deny", "{t}");
        assert_eq!(d["status"], 400, "{t}");
        // The audited path is printable ASCII: the log can't be forged through it.
        let p = d["path"].as_str().unwrap();
        assert!(p.bytes().all(|b| (0x20..0x7f).contains(&b)), "{t}: {p:?}");
    }
    // Raw bytes no origin-form allows: hyper answers 400 itself; nothing moves.
    // A raw `#` would end the target in the HTTP parser; the gateway sees the raw request
    // line and refuses it (400), recorded, before anything is decided or forwarded.
    let before = fx.up.count();
    let r = raw::tls(
        &fx.gw,
        &get("/mirror/eu-customers/a#/../../eu-clinical", &fx.de, ""),
    )
    .await;
    assert_eq!(r.status(), 400, "{}", r.text());
    let d = decision_of(&fx.gw, &r).unwrap();
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["status"], 400);
    assert_eq!(fx.up.count(), before);
    assert!(!fx.up.received().contains('#'));
    for t in [
        "/mirror/eu-customers/a\\..\\x",
        "/mirror/eu-customers/a b",
        "/mirror/eu-customers/\u{ff0e}\u{ff0e}/x",
        "*",
    ] {
        let r = raw::tls(&fx.gw, &get(t, &fx.de, "")).await;
        assert!(
            r.status() == 400 || r.status() == 403,
            "{t:?}: {}",
            r.text()
        );
    }
    // Case variants and prefixes without a segment boundary match nothing: default deny.
    for t in [
        "/MIRROR/eu-customers/a",
        "/mirror/EU-customers/a",
        "/mirror/eu-customers-evil/a",
        "/mirror/eu-customersx",
        "/mirror/other?x=/mirror/eu-customers/a",
    ] {
        let r = raw::tls(&fx.gw, &get(t, &fx.de, "")).await;
        assert_eq!(r.status(), 403, "{t}: {}", r.text());
        assert_eq!(decision_of(&fx.gw, &r).unwrap()["decision"], "deny");
    }
    // Absolute-form targets, whatever their authority.
    for t in [
        "https://localhost/mirror/eu-customers/a",
        "http://169.254.169.254/mirror/eu-customers/a",
    ] {
        let r = raw::tls(&fx.gw, &get(t, &fx.de, "")).await;
        assert_eq!(r.status(), 400, "{t}: {}", r.text());
    }
    // Nothing above was forwarded (the raw `#` is refused too).
    assert_eq!(fx.up.count(), 0, "{}", fx.up.received());
    // The canonical form is what is forwarded: unreserved escapes are decoded once.
    let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/%61b%7Ec", &fx.de, "")).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(
        fx.up
            .received()
            .contains("GET /mirror/eu-customers/ab~c HTTP/1.1")
    );
    assert_eq!(
        decision_of(&fx.gw, &r).unwrap()["path"],
        "/mirror/eu-customers/ab~c"
    );
    assert_oracle(&fx).await;
}

#[tokio::test]
async fn http1_framing_and_smuggling_never_let_an_unaudited_request_through() {
    let fx = fixture().await;
    let de = &fx.de;
    let us = &fx.us;
    let smuggled = format!(
        "GET /mirror/eu-customers/smuggled HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {us}\r\n\r\n"
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            ),
        ),
        (
            "duplicate differing CL",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 0\r\ncontent-length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "CL list",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 0, 5\r\n\r\nhello"
            ),
        ),
        (
            "CL plus sign",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: +5\r\n\r\nhello"
            ),
        ),
        (
            "TE obfuscated xchunked",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE space before colon",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE chunked then identity",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "duplicate TE",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "chunk size overflow",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\n\r\n10000000000000001\r\nx\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "chunk junk",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "bare LF head",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\nhost: localhost\nauthorization: Bearer {de}\n\n{smuggled}"
            ),
        ),
        (
            "obs-fold",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nx-data-origin: DE\r\n US\r\n\r\n"
            ),
        ),
        (
            "control byte in header",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nx-a: b\x01c\r\n\r\n"
            ),
        ),
        (
            "NUL in header",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nx-a: b\x00c\r\n\r\n"
            ),
        ),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.0\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "GET with a body holding a request",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "pipelined allow then deny",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\n\r\n{smuggled}"
            ),
        ),
        (
            "trailers carrying auth and tags",
            format!(
                "POST /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\ntrailer: authorization, x-data-origin\r\n\r\n5\r\nhello\r\n0\r\nauthorization: Bearer {us}\r\nx-data-origin: US\r\n\r\n"
            ),
        ),
        (
            "h2c upgrade",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            ),
        ),
        (
            "websocket upgrade",
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
            ),
        ),
        (
            "CONNECT",
            format!(
                "CONNECT 169.254.169.254:80 HTTP/1.1\r\nhost: 169.254.169.254:80\r\nauthorization: Bearer {de}\r\n\r\n"
            ),
        ),
    ];
    for (name, req) in &cases {
        let r = raw::tls(&fx.gw, req.as_bytes()).await;
        let statuses = r.statuses();
        assert!(
            !statuses.is_empty() || r.bytes.is_empty(),
            "{name}: {}",
            r.text()
        );
        // Whatever was answered, no 2xx answered a request the policy refused.
        assert_oracle(&fx).await;
        let seen = fx.up.received().to_ascii_lowercase();
        // A smuggled request may travel as body bytes of an audited request; it must never
        // start a request of its own (the count oracle above) nor its own head line.
        assert!(
            !seen.starts_with("get /mirror/eu-customers/smuggled")
                && !seen.contains("\r\n\r\nget /mirror/eu-customers/smuggled"),
            "{name}: smuggled request reached the upstream:\n{seen}"
        );
        assert!(
            !seen.contains("transfer-encoding: chunked, identity"),
            "{name}"
        );
        assert!(!seen.contains("upgrade"), "{name}: {seen}");
        assert!(!seen.contains("http2-settings"), "{name}");
        assert!(!seen.contains("x-data-origin"), "{name}");
        assert!(
            !seen.contains(&de.to_ascii_lowercase()),
            "{name}: the caller's token reached the upstream"
        );
    }
    // Expect: 100-continue on a refused upload: refused before the body is read.
    let req = format!(
        "PUT /registry/us/model.bin HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 1000000\r\nexpect: 100-continue\r\n\r\n"
    );
    let r = raw::tls_chunks(
        &fx.gw,
        &[req.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(r.status(), 451, "{}", r.text());
    assert!(!r.text().contains("100 Continue"), "{}", r.text());
    assert!(!fx.gw.store.join("registry/us/model.bin").exists());
}

#[tokio::test]
async fn hop_by_hop_and_forged_trust_headers_never_reach_the_upstream() {
    let fx = fixture().await;
    let forged = "x-forwarded-for: 10.0.0.1\r\nX-Forwarded-Host: evil.example\r\nx-forwarded-proto: http\r\nforwarded: for=10.0.0.1;host=evil\r\nx-real-ip: 10.0.0.1\r\nx-original-url: /datasets/eu-clinical/records.csv\r\nx-rewrite-url: /datasets/eu-clinical/\r\nx-http-method-override: PUT\r\nx-method-override: DELETE\r\ncookie: session=steal\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\nx-data-origin: US\r\nX-DATA-CATEGORIES: public\r\nx_data_origin: US\r\nx_forwarded_for: 10.9.9.9\r\nx_original_url: /admin\r\nbordergate-lineage: eu-customers\r\nbordergate_lineage: eu-customers\r\nBordergate-Decision: allow\r\nx-bordergate-tags: public\r\nx-residency: US\r\nkeep-alive: timeout=99\r\nte: trailers\r\nproxy-connection: keep-alive\r\nx-secret-internal: 1\r\nconnection: x-secret-internal, x-request-id\r\nuser-agent: sqlmap/1.0 (magic admin)\r\n";
    let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/a", &fx.de, forged)).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    let seen = fx.up.received().to_ascii_lowercase();
    for bad in [
        "10.0.0.1",
        "10.9.9.9",
        "evil",
        "x-original-url",
        "x_original_url",
        "x-rewrite-url",
        "override",
        "cookie",
        "proxy-authorization",
        "authorization",
        "bearer",
        "x-data-",
        "x_data_",
        "bordergate",
        "x-residency",
        "keep-alive",
        "\r\nte:",
        "proxy-connection",
        "x-secret-internal",
        "x_forwarded_for",
        "forwarded: for",
        "x-forwarded-proto: http\r\n",
    ] {
        assert!(!seen.contains(bad), "`{bad}` reached the upstream:\n{seen}");
    }
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https"), "{seen}");
    let d = decision_of(&fx.gw, &r).unwrap();
    assert_eq!(
        d["origins"],
        serde_json::json!(["DE"]),
        "tags come from the catalog only"
    );
    assert_eq!(d["method"], "GET");
    // Two Authorization headers: refused, not first-wins.
    let two = format!("authorization: Bearer {}\r\n", fx.us);
    let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/a", &fx.de, &two)).await;
    assert_eq!(r.status(), 401, "{}", r.text());
    assert_eq!(decision_of(&fx.gw, &r).unwrap()["status"], 401);
    assert_oracle(&fx).await;
}

#[tokio::test]
async fn host_and_authority_confusion() {
    let fx = fixture().await;
    let de = &fx.de;
    // Duplicate Host, missing Host, absolute-form authority != Host.
    let dup = format!(
        "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nhost: 169.254.169.254\r\nauthorization: Bearer {de}\r\nconnection: close\r\n\r\n"
    );
    let r = raw::tls(&fx.gw, dup.as_bytes()).await;
    assert_eq!(r.status(), 400, "{}", r.text());
    let missing = format!(
        "GET /mirror/eu-customers/a HTTP/1.1\r\nauthorization: Bearer {de}\r\nconnection: close\r\n\r\n"
    );
    let r = raw::tls(&fx.gw, missing.as_bytes()).await;
    assert_eq!(r.status(), 400, "{}", r.text());
    let abs = format!(
        "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nconnection: close\r\n\r\n"
    );
    let r = raw::tls(&fx.gw, abs.as_bytes()).await;
    assert_eq!(r.status(), 400, "{}", r.text());
    assert_eq!(fx.up.count(), 0);
    // The upstream is chosen by path, never by Host: a metadata-service Host goes nowhere.
    let r = raw::tls(
        &fx.gw,
        format!(
            "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: 169.254.169.254\r\nauthorization: Bearer {de}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text());
    let seen = fx.up.received().to_ascii_lowercase();
    assert!(!seen.contains("169.254"), "{seen}");
    assert!(seen.contains(&format!("host: {}", fx.up.addr)), "{seen}");
    // Odd methods.
    for m in ["TRACE", "OPTIONS", "DELETE", "PATCH", "PROPFIND", "FOO"] {
        let r = raw::tls(
            &fx.gw,
            format!(
                "{m} /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(r.status(), 405, "{m}: {}", r.text());
        assert_eq!(decision_of(&fx.gw, &r).unwrap()["status"], 405);
    }
    assert_oracle(&fx).await;
}

#[tokio::test]
async fn slow_and_oversized_requests_get_the_right_status() {
    let fx = fixture_with(|o| Options {
        limits: "  header_timeout_secs: 1\n  body_timeout_secs: 1\n  max_uri_bytes: 1024\n  max_body_bytes: 1000\n  max_header_bytes: 16384\n  max_headers: 20\n  max_ranges: 2\n".into(),
        ..o
    })
    .await;
    let de = &fx.de;
    // Slowloris: a head that never finishes.
    let r = raw::tls_chunks(
        &fx.gw,
        &[
            b"GET /mirror/eu-customers/a HTTP/1.1\r\nhost: local",
            b"host\r\nx-a: b",
        ],
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status(), 408, "{}", r.text());
    // Slow body: the head is complete, the body stalls.
    let head = format!(
        "PUT /mirror/eu-customers/up HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 100\r\n\r\nhello"
    );
    let r = raw::tls_chunks(
        &fx.gw,
        &[head.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(6),
    )
    .await;
    assert_eq!(r.status(), 408, "{}", r.text());
    let id = r.request_id().unwrap();
    let c = fx.gw.completion(&id).await;
    assert_eq!(c["status"], 408);
    assert_ne!(c["outcome"], "complete");
    // Long target: 414 and audited.
    let long = format!("/mirror/eu-customers/{}", "a".repeat(2000));
    let r = raw::tls(&fx.gw, &get(&long, de, "")).await;
    assert_eq!(r.status(), 414, "{}", r.text());
    assert_eq!(decision_of(&fx.gw, &r).unwrap()["status"], 414);
    // Too many header fields, and too large a head: 431 from the HTTP layer.
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/a", de, &many)).await;
    assert_eq!(r.status(), 431, "{}", r.text());
    let big = format!("x-big: {}\r\n", "b".repeat(20000));
    let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/a", de, &big)).await;
    assert_eq!(r.status(), 431, "{}", r.text());
    // Declared body too large: 413 before anything is read or forwarded.
    let r = raw::tls(
        &fx.gw,
        format!(
            "PUT /mirror/eu-customers/up HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 5000\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 413, "{}", r.text());
    assert_eq!(decision_of(&fx.gw, &r).unwrap()["status"], 413);
    // Streamed (chunked) body over the cap: 413, and the upstream request is aborted.
    let chunk = "x".repeat(600);
    let r = raw::tls(
        &fx.gw,
        format!(
            "PUT /mirror/eu-customers/up HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 413, "{}", r.text());
    // Multi-range amplification: refused, never forwarded.
    let r = raw::tls(
        &fx.gw,
        &get(
            "/mirror/eu-customers/a",
            de,
            "range: bytes=0-0,1-1,2-2,3-3,4-4\r\n",
        ),
    )
    .await;
    assert_eq!(r.status(), 400, "{}", r.text());
    assert_eq!(decision_of(&fx.gw, &r).unwrap()["status"], 400);
    // Refused heads are counted in the audit log as one aggregated event.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ev: Vec<Value> = fx
        .gw
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "event" && r["event"] == "refused-before-routing")
        .collect();
    assert!(!ev.is_empty(), "no aggregated event for refused heads");
    // Nothing that was refused reached the upstream: the only upstream request is the
    // chunked upload, aborted mid-body.
    let seen = fx.up.received();
    assert!(!seen.contains("range:"), "{seen}");
    assert!(fx.up.count() == 0, "{seen}");
}

#[tokio::test]
async fn jwt_attack_list() {
    use base64::Engine;
    let fx = fixture().await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let secret = fx.gw.secret();
    let now = common::now();
    let good_claims = format!(
        r#"{{"sub":"mallory","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"bordergate","iat":{now},"exp":{}}}"#,
        now + 300
    );
    let hs = |h: &str, c: &str| common::hs256_jwt(&secret, h, c);
    let sig_of_good = hs(r#"{"alg":"HS256","kid":"dev"}"#, &good_claims);
    let parts: Vec<&str> = sig_of_good.split('.').collect();
    let mut tokens: Vec<(&str, String)> = vec![];
    for alg in ["none", "None", "NONE", "nOnE"] {
        tokens.push((
            "alg none",
            format!(
                "{}.{}.",
                b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
                b64(&good_claims)
            ),
        ));
    }
    tokens.extend([
        (
            "RS/HS confusion",
            hs(r#"{"alg":"RS256","kid":"dev"}"#, &good_claims),
        ),
        (
            "HS384 with the HS256 key",
            hs(r#"{"alg":"HS384","kid":"dev"}"#, &good_claims),
        ),
        (
            "embedded jwk",
            hs(
                r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#,
                &good_claims,
            ),
        ),
        (
            "jku",
            hs(
                &format!(
                    r#"{{"alg":"HS256","kid":"x","jku":"{}/jwks"}}"#,
                    fx.up.url()
                ),
                &good_claims,
            ),
        ),
        (
            "x5u",
            hs(
                &format!(
                    r#"{{"alg":"HS256","kid":"x","x5u":"{}/cert"}}"#,
                    fx.up.url()
                ),
                &good_claims,
            ),
        ),
        (
            "kid path traversal",
            hs(
                r#"{"alg":"HS256","kid":"../../../../dev/null"}"#,
                &good_claims,
            ),
        ),
        (
            "kid sql",
            hs(r#"{"alg":"HS256","kid":"' OR '1'='1"}"#, &good_claims),
        ),
        (
            "unknown crit",
            hs(
                r#"{"alg":"HS256","kid":"dev","crit":["exp2"],"exp2":1}"#,
                &good_claims,
            ),
        ),
        (
            "ECDSA zero signature",
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"ES256","kid":"dev"}"#),
                b64(&good_claims),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8; 64])
            ),
        ),
        ("stripped signature", format!("{}.{}.", parts[0], parts[1])),
        (
            "truncated signature",
            format!("{}.{}.{}", parts[0], parts[1], &parts[2][..10]),
        ),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        (
            "signature of other claims",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&good_claims.replace("mallory", "admin")),
                parts[2]
            ),
        ),
        (
            "expired beyond leeway",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace(
                    &format!("\"exp\":{}", now + 300),
                    &format!("\"exp\":{}", now - 120),
                ),
            ),
        ),
        (
            "missing exp",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace(&format!(",\"exp\":{}", now + 300), ""),
            ),
        ),
        (
            "missing aud",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace(",\"aud\":\"bordergate\"", ""),
            ),
        ),
        (
            "wrong aud",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"aud\":\"bordergate\"", "\"aud\":\"other\""),
            ),
        ),
        (
            "missing iss",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"iss\":\"bordergate-dev\",", ""),
            ),
        ),
        (
            "future nbf",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"iat\"", &format!("\"nbf\":{},\"iat\"", now + 3600)),
            ),
        ),
        (
            "jurisdiction as number",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"DE\"", "276"),
            ),
        ),
        (
            "jurisdiction as array",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"DE\"", "[\"DE\",\"US\"]"),
            ),
        ),
        (
            "sub as object",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"mallory\"", "{\"a\":1}"),
            ),
        ),
        (
            "claims not an object",
            hs(r#"{"alg":"HS256","kid":"dev"}"#, "[1,2,3]"),
        ),
        (
            "oversized token",
            hs(
                r#"{"alg":"HS256","kid":"dev"}"#,
                &good_claims.replace("\"mallory\"", &format!("\"{}\"", "m".repeat(20000))),
            ),
        ),
    ]);
    for (name, tok) in &tokens {
        let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/a", tok, "")).await;
        assert!(
            r.status() == 401 || r.status() == 431,
            "{name}: {}",
            r.text()
        );
        if r.status() == 401 {
            let d = decision_of(&fx.gw, &r).unwrap_or_else(|| panic!("{name}: no record"));
            assert_eq!(d["decision"], "deny", "{name}");
            assert!(
                d["rule"].as_str().unwrap().starts_with("auth."),
                "{name}: {d}"
            );
            assert!(d["caller"].is_null(), "{name}");
        }
    }
    // Tokens anywhere but the Authorization header are not tokens.
    let good = fx.de.clone();
    let r = raw::tls(
        &fx.gw,
        format!("GET /mirror/eu-customers/a?access_token={good} HTTP/1.1\r\nhost: localhost\r\ncookie: token={good}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 401, "{}", r.text());
    // Lower-case scheme and extra spaces are not a second parser's business either way,
    // but a Basic credential never authenticates.
    let r = raw::tls(
        &fx.gw,
        b"GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Basic YWxpY2U6eA==\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 401);
    // Unknown-kid flood on one keep-alive connection: every one refused, nothing fetched,
    // and a valid caller is still served promptly afterwards.
    let mut flood = Vec::new();
    for i in 0..500 {
        let tok = hs(
            &format!(r#"{{"alg":"HS256","kid":"rand-{i}"}}"#),
            &good_claims,
        );
        flood.extend(format!("GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {tok}\r\n\r\n").bytes());
    }
    flood.extend(get("/mirror/eu-customers/a", &good, ""));
    let started = std::time::Instant::now();
    let r = raw::tls_chunks(&fx.gw, &[&flood], Duration::ZERO, Duration::from_secs(30)).await;
    let st = r.statuses();
    assert_eq!(st.len(), 501, "{}", &r.text()[..200]);
    assert!(st[..500].iter().all(|s| *s == 401));
    assert_eq!(st[500], 200);
    assert!(started.elapsed() < Duration::from_secs(20));
    // jku / x5u were never fetched: the upstream saw only the one allowed request.
    assert_oracle(&fx).await;
    assert!(!fx.up.received().contains("/jwks"));
}

#[tokio::test]
async fn log_injection_stays_escaped_in_the_audit_log() {
    let fx = fixture().await;
    let secret = fx.gw.secret();
    let now = common::now();
    let evil =
        "ev\\r\\nil\\u001b[31m\\\"},{\\\"kind\\\":\\\"decision\\\",\\\"decision\\\":\\\"allow\\\"";
    let claims = format!(
        r#"{{"sub":"{evil}","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"bordergate","iat":{now},"exp":{}}}"#,
        now + 300
    );
    let tok = common::hs256_jwt(&secret, r#"{"alg":"HS256","kid":"dev"}"#, &claims);
    let r = raw::tls(
        &fx.gw,
        &get(
            "/mirror/eu-customers/a",
            &tok,
            "user-agent: x\x1b[2J\"}\r\n",
        ),
    )
    .await;
    assert!(matches!(r.status(), 200 | 400 | 401), "{}", r.text());
    let r2 = raw::tls(
        &fx.gw,
        &get(
            "/mirror/eu-customers/%0d%0a%7b%22kind%22:%22decision%22%7d%1b[0m",
            &fx.de,
            "",
        ),
    )
    .await;
    assert_eq!(r2.status(), 400);
    let r3 = raw::tls(
        &fx.gw,
        &get("/mirror/eu-customers/%e2%80%ae%e2%81%a6gpj.exe", &fx.de, ""),
    )
    .await;
    assert_eq!(r3.status(), 400);
    let bytes = std::fs::read(&fx.gw.audit).unwrap();
    assert!(!bytes.contains(&0x1b), "raw ESC in the audit log");
    assert!(!bytes.contains(&b'\r'), "raw CR in the audit log");
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        assert!(v["seq"].is_u64());
    }
    let verdict = common::verify(&fx.gw.audit);
    assert!(
        verdict.status.success(),
        "{}",
        String::from_utf8_lossy(&verdict.stdout)
    );
    // Exactly one decision record per request: nothing was injected.
    let decisions = fx
        .gw
        .records()
        .iter()
        .filter(|r| r["kind"] == "decision")
        .count();
    let answered = [&r, &r2, &r3]
        .iter()
        .filter(|r| r.request_id().is_some())
        .count();
    assert_eq!(decisions, answered);
}

#[tokio::test]
async fn upstream_redirects_to_another_region_are_never_followed_or_passed_on() {
    for resp in [
        &b"HTTP/1.1 302 Found\r\nlocation: https://us-east-1.bucket.example/eu-customers/a?X-Amz-Signature=abc\r\ncontent-length: 0\r\n\r\n"[..],
        b"HTTP/1.1 307 Temporary Redirect\r\nlocation: //us.example/a\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 301 Moved\r\nlocation: http://169.254.169.254/latest\r\ncontent-length: 0\r\n\r\n",
    ] {
        let up = RawUpstream::start(resp).await;
        let gw = Gateway::start(mirror_opts(&up));
        let t = gw.token("alice", "acme-de", "DE", "analytics");
        let r = raw::tls(&gw, &get("/mirror/eu-customers/a", &t, "")).await;
        assert_eq!(r.status(), 502, "{}", r.text());
        assert!(r.header("location").is_none(), "{}", r.text());
        assert_eq!(up.count(), 1, "the redirect was followed");
        let id = r.request_id().unwrap();
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "upstream-error");
        assert!(c["detail"].as_str().unwrap().contains("redirect"), "{c}");
    }
}

#[tokio::test]
async fn uploads_into_another_jurisdictions_prefix_are_refused() {
    let fx = fixture().await;
    for (lineage, status) in [
        ("", 451),
        ("bordergate-lineage: eu-customers\r\n", 451),
        ("bordergate-lineage: eu-clinical\r\n", 403),
    ] {
        let req = format!(
            "PUT /registry/us/stolen.bin HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-length: 5\r\n{lineage}connection: close\r\n\r\nhello",
            fx.de
        );
        let r = raw::tls(&fx.gw, req.as_bytes()).await;
        assert_eq!(r.status(), status, "{lineage}: {}", r.text());
        let d = decision_of(&fx.gw, &r).unwrap();
        assert_eq!(d["direction"], "upload");
        assert_eq!(d["destination"], "US");
        assert!(!fx.gw.store.join("registry/us/stolen.bin").exists());
    }
    // Lineage claimed through a forged underscore variant is not lineage.
    let req = format!(
        "PUT /registry/us/stolen.bin HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-length: 5\r\nbordergate_lineage: public-wiki\r\nconnection: close\r\n\r\nhello",
        fx.de
    );
    let r = raw::tls(&fx.gw, req.as_bytes()).await;
    assert_eq!(r.status(), 451, "{}", r.text());
}

#[tokio::test]
async fn existence_oracles_answer_the_same_for_present_and_absent() {
    let fx = fixture().await;
    let strip = |r: &RawResponse| {
        let t = r.text();
        let body = t.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v["request_id"] = Value::Null;
        (r.status(), v)
    };
    // A refused caller can't tell an existing file from a missing one.
    let a = raw::tls(
        &fx.gw,
        &get("/datasets/eu-customers/customers.csv", &fx.us, ""),
    )
    .await;
    let b = raw::tls(
        &fx.gw,
        &get("/datasets/eu-customers/no-such-file.csv", &fx.us, ""),
    )
    .await;
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(a.status(), 451);
    // Nor an uncatalogued existing path from a missing one.
    std::fs::create_dir_all(fx.gw.store.join("datasets/secret")).unwrap();
    std::fs::write(fx.gw.store.join("datasets/secret/x.csv"), "s").unwrap();
    let a = raw::tls(&fx.gw, &get("/datasets/secret/x.csv", &fx.de, "")).await;
    let b = raw::tls(&fx.gw, &get("/datasets/secret/y.csv", &fx.de, "")).await;
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(a.status(), 403);
    // And without a token, everything is the same 401.
    let a = raw::tls(&fx.gw, b"GET /datasets/eu-customers/customers.csv HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await;
    let b = raw::tls(
        &fx.gw,
        b"GET /datasets/nothing/here HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(strip(&a), strip(&b));
}

#[tokio::test]
async fn malformed_request_floods_are_aggregated_and_every_forwarded_request_is_audited() {
    let fx = fixture().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = fx.gw.addr;
        let _ = addr;
        let req: Vec<u8> = match i % 4 {
            0 => b"GET /x HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n".to_vec(),
            1 => b"\x16\x03\x01garbage\r\n\r\n".to_vec(),
            2 => get("/mirror/eu-customers/%2e%2e/x", &fx.de, ""),
            _ => get("/mirror/eu-customers/ok", &fx.de, ""),
        };
        let gw_ref = &fx.gw;
        tasks.push(async move { raw::tls(gw_ref, &req).await });
    }
    let results = futures_util::future::join_all(tasks).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    assert_eq!(ok, 50);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recs = fx.gw.records();
    let decisions = recs.iter().filter(|r| r["kind"] == "decision").count();
    assert_eq!(
        decisions, 100,
        "one record per request that reached the gateway"
    );
    let refused: u64 = recs
        .iter()
        .filter(|r| r["kind"] == "event" && r["event"] == "refused-before-routing")
        .map(|r| {
            r["detail"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=').and_then(|(_, v)| v.parse::<u64>().ok()))
                .sum::<u64>()
        })
        .sum();
    assert!(refused >= 50, "malformed heads counted: {refused}");
    assert!(
        recs.len() < 200,
        "the flood was aggregated, not one record each"
    );
    assert_oracle(&fx).await;
    assert!(common::verify(&fx.gw.audit).status.success());
}

#[test]
fn yaml_alias_bombs_are_refused_by_the_loader() {
    let bomb = "  - id: bomb\n    kind: dataset\n    description: &a [x, x, x, x, x, x, x, x, x]\n    match: { prefix: /datasets/bomb/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n";
    let mut lol = String::from("lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        lol.push_str(&format!(
            "lol{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
        ));
    }
    let opts = Options {
        extra_catalog: bomb.into(),
        ..Options::default()
    };
    let (_dir, cfg, _, _) = common::prepare(&opts);
    let catalog = cfg.parent().unwrap().join("catalog.yaml");
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    text.push('\n');
    std::fs::write(&catalog, format!("{lol}{text}")).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    // serve refuses to start on it too: fail closed.
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("catalog.yaml"));
}

#[tokio::test]
async fn policy_and_catalog_errors_fail_closed() {
    let fx = fixture().await;
    // Break the catalog and reload: the old set keeps serving, the refusal is audited.
    let catalog = fx.gw.dir.path().join("catalog.yaml");
    std::fs::write(&catalog, "entries:\n  - id: x\n    kind: dataset\n    match: { prefix: /mirror/ }\n    origins: [XZ]\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &fx.gw.child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ev = fx
        .gw
        .records()
        .into_iter()
        .any(|r| r["event"] == "reload-refused");
    assert!(ev, "no reload-refused event");
    let r = raw::tls(&fx.gw, &get("/mirror/eu-customers/a", &fx.us, "")).await;
    assert_eq!(r.status(), 451, "the previous policy still refuses");
    // Starting on a broken catalog refuses to serve at all.
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--config"])
        .arg(&fx.gw.config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_oracle(&fx).await;
}

#[tokio::test]
async fn plaintext_listener_same_rules_over_tcp() {
    let fx = fixture_with(|o| Options {
        plaintext: true,
        ..o
    })
    .await;
    assert!(fx.gw.base.starts_with("http://"));
    let de = &fx.de;
    // GET with a body (CL.0 desync carrier): refused, never forwarded.
    let r = raw::tcp(
        fx.gw.addr,
        format!("GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {de}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nGET /").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 400, "{}", r.text());
    assert_eq!(decision_of(&fx.gw, &r).unwrap()["status"], 400);
    // An allowed request is forwarded once and recorded with proto http.
    let r = raw::tcp(fx.gw.addr, &get("/mirror/eu-customers/a", de, "")).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(fx.up.received().contains("x-forwarded-proto: http\r\n"));
    assert_oracle(&fx).await;
}
