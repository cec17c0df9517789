//! The transport leaks of issue 15, end to end against the real gateway: slow and broken
//! request bodies (item 5), the record of a fully delivered file-store download (item 6),
//! trust and identity headers (item 4), redirects that leave the origin (item 7) and
//! malformed `Host` values (item 8). Each case asserts what the client sees and that
//! nothing reached the upstream that the audit log did not allow.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{self, RawResponse, RawUpstream};
use common::{Gateway, Options, Upstream};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CATALOG: &str = "  - id: mirror-customers\n    kind: dataset\n    match:\n      prefix: /mirror/eu-customers/\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics, training]\n";

/// An upstream in Germany that takes uploads and answers with a short receipt.
fn receipt() -> common::Responder {
    Arc::new(|s: &common::Seen| {
        http::Response::builder()
            .status(200)
            .body(Bytes::from(format!("got {}", s.body.len())))
            .unwrap()
    })
}

fn mirror(url: &str, timeout_secs: u64, limits: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {url}\n    jurisdiction: DE\n    timeout_secs: {timeout_secs}\n"
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n    uploads: true\n".into(),
        extra_catalog: CATALOG.into(),
        limits: limits.into(),
        ..Options::default()
    }
}

fn allows(gw: &Gateway, upstream: &str) -> usize {
    gw.records()
        .iter()
        .filter(|r| {
            r["kind"] == "decision" && r["decision"] == "allow" && r["upstream"] == upstream
        })
        .count()
}

fn decision_of(gw: &Gateway, r: &RawResponse) -> Value {
    let id = r
        .request_id()
        .unwrap_or_else(|| panic!("no request id: {}", r.text()));
    gw.decision(&id)
}

fn problem_type(r: &RawResponse) -> String {
    let t = r.text();
    let body = t.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    v["type"].as_str().unwrap_or("").to_string()
}

/// Sends `head`, then `pieces` with `pause` before each, while reading the answer; stops
/// writing when the gateway stops reading. Returns the answer and how long it took.
async fn upload(
    gw: &Gateway,
    head: String,
    pieces: Vec<Vec<u8>>,
    pause: Duration,
) -> (RawResponse, Duration) {
    let cfg = raw::tls_config(
        gw,
        None,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let s = raw::tls_connect(gw, cfg).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let _ = wr.flush().await;
        for p in pieces {
            tokio::time::sleep(pause).await;
            if wr.write_all(&p).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        // Keep the connection open: the answer decides when it ends.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut buf = Vec::new();
    let deadline = started + Duration::from_secs(30);
    loop {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline.into(), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if complete(&buf) {
            break;
        }
    }
    let took = started.elapsed();
    writer.abort();
    (RawResponse { bytes: buf }, took)
}

/// Whether `buf` holds a whole response (head and `content-length` body).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    len.is_some_and(|n| buf.len() >= end + 4 + n)
}

fn put_head(t: &str, path: &str, framing: &str) -> String {
    format!(
        "PUT {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nbordergate-lineage: public-wiki\r\n{framing}\r\n"
    )
}

/// Item 5: a PUT at one byte a second is cut by the minimum rate — not by the idle limit,
/// which it never breaks — answered 408 and recorded `aborted`; the upstream never got
/// the whole body.
#[tokio::test]
async fn a_trickling_upload_is_cut_by_the_minimum_rate_and_recorded_aborted() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(
        &up.url(),
        30,
        "  body_timeout_secs: 30\n  body_min_bytes_per_sec: 100\n  body_rate_window_secs: 2\n  body_rate_grace_secs: 2\n",
    ));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let head = put_head(
        &t,
        "/mirror/eu-customers/trickle.bin",
        "content-length: 60\r\n",
    );
    let (r, took) = upload(&gw, head, vec![b"x".to_vec(); 60], Duration::from_secs(1)).await;
    assert_eq!(r.status(), 408, "{}", r.text());
    assert_eq!(problem_type(&r), "urn:bordergate:problem:request-timeout");
    assert!(r.text().contains("too slow"), "{}", r.text());
    assert!(took < Duration::from_secs(12), "cut after {took:?}");
    let d = decision_of(&gw, &r);
    assert_eq!(d["decision"], "allow");
    let c = gw.completion(d["request_id"].as_str().unwrap()).await;
    assert_eq!(c["outcome"], "aborted", "{c}");
    assert_eq!(c["status"], 408, "{c}");
    assert!(c["bytes_in"].as_u64().unwrap() < 60, "{c}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = up.requests();
    assert!(seen.len() <= allows(&gw, "mirror"));
    assert!(
        seen.iter().all(|s| s.body.len() < 60),
        "a whole body arrived"
    );
}

/// Item 5: a body that stops is cut by the idle limit, 408, `aborted`, on an http
/// upstream and on the file store, and the store keeps nothing.
#[tokio::test]
async fn a_stalled_upload_is_answered_408_and_recorded_aborted() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(
        &up.url(),
        30,
        "  body_timeout_secs: 1\n  body_min_bytes_per_sec: 0\n",
    ));
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let us = gw.token("bob", "acme-us", "US", "training");
    for (t, path) in [
        (&de, "/mirror/eu-customers/stalled.bin"),
        (&us, "/registry/us/stalled.bin"),
    ] {
        let head = put_head(t, path, "content-length: 100\r\n");
        let (r, took) = upload(&gw, head, vec![vec![b'y'; 10]], Duration::ZERO).await;
        assert_eq!(r.status(), 408, "{path}: {}", r.text());
        assert_eq!(problem_type(&r), "urn:bordergate:problem:request-timeout");
        assert!(took < Duration::from_secs(8), "{path}: {took:?}");
        let d = decision_of(&gw, &r);
        assert_eq!(d["decision"], "allow", "{path}: {d}");
        let c = gw.completion(d["request_id"].as_str().unwrap()).await;
        assert_eq!(c["outcome"], "aborted", "{path}: {c}");
        assert_eq!(c["status"], 408, "{path}: {c}");
        assert_eq!(c["bytes_in"], 10, "{path}: {c}");
    }
    assert!(!gw.store.join("registry/us/stalled.bin").exists());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = up.requests();
    assert!(seen.len() <= allows(&gw, "mirror"));
    assert!(
        seen.iter().all(|s| s.body.len() < 100),
        "a whole body arrived"
    );
}

/// Item 5: broken chunk framing is the client's fault: 400, `aborted`, never a 502 or an
/// `upstream-error`; the upstream never sees a complete body.
#[tokio::test]
async fn broken_chunk_framing_is_400_and_aborted() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(&up.url(), 30, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let us = gw.token("bob", "acme-us", "US", "training");
    for (t, path) in [
        (&t, "/mirror/eu-customers/chunks.bin"),
        (&us, "/registry/us/chunks.bin"),
    ] {
        for junk in [
            &b"zz\r\nxx\r\n"[..],
            b"5\r\nhelloXX\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            let head = put_head(t, path, "transfer-encoding: chunked\r\n");
            let mut first = b"5\r\nhello\r\n".to_vec();
            first.extend_from_slice(junk);
            let (r, _) = upload(&gw, head, vec![first], Duration::from_millis(100)).await;
            let junk = String::from_utf8_lossy(junk);
            assert_eq!(r.status(), 400, "{path} {junk:?}: {}", r.text());
            assert_eq!(problem_type(&r), "urn:bordergate:problem:bad-request");
            let d = decision_of(&gw, &r);
            let c = gw.completion(d["request_id"].as_str().unwrap()).await;
            assert_eq!(c["outcome"], "aborted", "{path} {junk:?}: {c}");
            assert_eq!(c["status"], 400, "{c}");
        }
    }
    assert!(!gw.store.join("registry/us/chunks.bin").exists());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = up.requests();
    assert!(seen.len() <= allows(&gw, "mirror"));
    assert!(
        seen.iter().all(|s| s.body.as_ref() != b"hello"),
        "a body the client never finished arrived whole"
    );
}

/// Item 5: `timeout_secs` is the wait for the response head once the request is sent in
/// full; a steady upload that takes three times as long still succeeds.
#[tokio::test]
async fn a_steady_upload_longer_than_timeout_secs_succeeds() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(&up.url(), 1, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let total = 30 * 10_000;
    let head = put_head(
        &t,
        "/mirror/eu-customers/steady.bin",
        &format!("content-length: {total}\r\n"),
    );
    let (r, took) = upload(
        &gw,
        head,
        vec![vec![b's'; 10_000]; 30],
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(r.text().ends_with(&format!("got {total}")), "{}", r.text());
    assert!(took >= Duration::from_secs(3), "{took:?}");
    let d = decision_of(&gw, &r);
    let c = gw.completion(d["request_id"].as_str().unwrap()).await;
    assert_eq!(c["outcome"], "complete", "{c}");
    assert_eq!(c["bytes_in"], total, "{c}");
    let seen = up.requests();
    assert_eq!(seen.len(), allows(&gw, "mirror"));
    assert_eq!(seen[0].body.len(), total);
}

/// Item 5: an upstream that takes none of an upload is cut by its idle limit (504), not
/// left hanging, and the client is not blamed.
#[tokio::test]
async fn an_upstream_that_reads_nothing_is_cut_by_its_idle_limit() {
    // Accepts connections and never reads from them.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let held2 = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            held2.lock().unwrap().push(s);
        }
    });
    let mut o = mirror(&format!("http://{addr}"), 30, "");
    o.extra_upstreams = o.extra_upstreams.replace(
        "timeout_secs: 30\n",
        "timeout_secs: 30\n    idle_timeout_secs: 2\n",
    );
    let gw = Gateway::start(o);
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let total = 64 << 20;
    let head = put_head(
        &t,
        "/mirror/eu-customers/big.bin",
        &format!("content-length: {total}\r\n"),
    );
    let pieces = vec![vec![b'z'; 1 << 20]; 64];
    let (r, took) = upload(&gw, head, pieces, Duration::ZERO).await;
    assert_eq!(r.status(), 504, "{}", r.text());
    assert_eq!(problem_type(&r), "urn:bordergate:problem:upstream-timeout");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let d = decision_of(&gw, &r);
    let c = gw.completion(d["request_id"].as_str().unwrap()).await;
    assert_eq!(c["outcome"], "upstream-error", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("took none"), "{c}");
}

/// A reqwest client speaking HTTP/1.1 only.
fn http1_client(gw: &Gateway) -> reqwest::Client {
    let pem = std::fs::read(gw.dir.path().join("cert.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .build()
        .unwrap()
}

/// Item 6: a file-store download over 256 KiB, delivered whole, is `complete` with the
/// exact `bytes_out` on HTTP/1.1 and on h2; a client that leaves half-way is `aborted`.
#[tokio::test]
async fn a_whole_file_store_download_is_complete_on_http1_and_h2() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let len = 1 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(gw.store.join("datasets/eu-customers/big.bin"), &data).unwrap();
    for (client, version) in [
        (http1_client(&gw), reqwest::Version::HTTP_11),
        (gw.client(), reqwest::Version::HTTP_2),
    ] {
        let r = client
            .get(gw.url("/datasets/eu-customers/big.bin"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.as_ref(), &data[..], "{version:?}");
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "complete", "{version:?}: {c}");
        assert_eq!(c["bytes_out"], len, "{version:?}: {c}");
        assert_eq!(c["status"], 200);
    }
    // A client that reads part of a larger file and goes away.
    let big = 64 << 20;
    let f = std::fs::File::create(gw.store.join("datasets/eu-customers/huge.bin")).unwrap();
    f.set_len(big).unwrap();
    let cfg = raw::tls_config(&gw, None, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut s = raw::tls_connect(&gw, cfg).await.unwrap();
    s.write_all(
        format!(
            "GET /datasets/eu-customers/huge.bin HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while got.len() < 512 * 1024 {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got[..512]).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let id = RawResponse { bytes: got.clone() }.request_id().unwrap();
    drop(s);
    let c = gw.completion(&id).await;
    assert_eq!(c["outcome"], "aborted", "{c}");
    assert!(c["bytes_out"].as_u64().unwrap() < big, "{c}");
}

/// Item 4: trust and identity headers a client sends never reach the upstream, whatever
/// their spelling (`_` for `-`, any case), on HTTP/1.1 and h2; the upstream sees only
/// the gateway's own `X-Forwarded-For` and `X-Forwarded-Proto`.
#[tokio::test]
async fn client_trust_and_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(&up.url(), 5, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let forged = [
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "X-Forwarded-Uri",
        "X-Forwarded-Path",
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Access-Token",
        "X-Forwarded-Server",
        "X-Forwarded-Scheme",
        "X-Forwarded-Ssl",
        "X-Forwarded-Method",
        "X-Forwarded-Preferred-Username",
        "x_forwarded_user",
        "X_Forwarded_Email",
        "x_forwarded_for",
        "x-FORWARDED-gRoUpS",
        "X-Gateway-Principal",
        "x_gateway_principal",
        "Remote-User",
        "remote_user",
        "REMOTE-USER",
        "X-Remote-User",
        "X-Remote-Groups",
        "x_remote_user",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
        "x_auth_request_user",
        "X-User",
        "X-User-Id",
        "x_user",
        "X-Envoy-Original-Path",
        "X-Envoy-External-Address",
        "x_envoy_original_path",
        "True-Client-IP",
        "true_client_ip",
        "X-Client-IP",
        "x_client_ip",
    ];
    let mut head = format!(
        "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nconnection: close\r\n"
    );
    for (i, n) in forged.iter().enumerate() {
        head.push_str(&format!("{n}: mallory-{i}\r\n"));
    }
    head.push_str("\r\n");
    let r = raw::tls(&gw, head.as_bytes()).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    // The same over h2 (reqwest negotiates it).
    let mut req = gw
        .client()
        .get(gw.url("/mirror/eu-customers/a"))
        .bearer_auth(&t);
    for (i, n) in forged.iter().enumerate() {
        req = req.header(*n, format!("mallory-{i}"));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen.len(), allows(&gw, "mirror"));
    for s in &seen {
        for (name, value) in &s.headers {
            let v = value.to_str().unwrap_or("");
            assert!(!v.contains("mallory"), "{name}: {v} reached the upstream");
            let dashed = name.as_str().replace('_', "-");
            if dashed.starts_with("x-forwarded-") {
                assert!(
                    name == "x-forwarded-for" || name == "x-forwarded-proto",
                    "{name} reached the upstream"
                );
            }
        }
        let xff: Vec<_> = s.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff.len(), 1);
        assert_eq!(xff[0], "127.0.0.1");
        assert_eq!(s.headers.get_all("x-forwarded-proto").iter().count(), 1);
    }
}

const REDIRECTS: [&[u8]; 6] = [
    b"HTTP/1.1 302 Found\r\nlocation: /\\evil.example/x\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nlocation: \\\\evil.example/x\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nlocation: http:/\\evil.example/x\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nlocation: /\t/evil.example/x\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nlocation: /r4/fine\r\nlocation: https://evil.example/x\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nlocation: /r5/other\r\ncontent-length: 0\r\n\r\n",
];

/// Item 7: redirects a browser would follow to another host — backslashes, a tab, a
/// second `Location` — are refused (502 `upstream-unavailable`, no `Location` passed
/// on); a redirect that stays on the gateway's origin is relayed.
#[tokio::test]
async fn redirects_that_leave_the_origin_are_refused() {
    let mut ups = Vec::new();
    let mut extra_up = String::new();
    let mut extra_routes = String::new();
    for (i, resp) in REDIRECTS.iter().enumerate() {
        let up = RawUpstream::start(resp).await;
        extra_up.push_str(&format!(
            "  - name: r{i}\n    url: {}\n    jurisdiction: DE\n    timeout_secs: 5\n",
            up.url()
        ));
        extra_routes.push_str(&format!(
            "  - prefix: /r{i}/\n    upstream: r{i}\n    public: true\n"
        ));
        ups.push(up);
    }
    let gw = Gateway::start(Options {
        extra_upstreams: extra_up,
        extra_routes,
        ..Options::default()
    });
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    for (i, up) in ups.iter().enumerate() {
        let r = raw::tls(
            &gw,
            format!(
                "GET /r{i}/start HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let d = decision_of(&gw, &r);
        assert_eq!(d["decision"], "allow", "r{i}");
        let c = gw.completion(d["request_id"].as_str().unwrap()).await;
        if i == 5 {
            assert_eq!(r.status(), 302, "{}", r.text());
            assert_eq!(r.header("location").as_deref(), Some("/r5/other"));
            assert_eq!(c["outcome"], "complete", "{c}");
            continue;
        }
        assert_eq!(r.status(), 502, "r{i}: {}", r.text());
        assert_eq!(
            problem_type(&r),
            "urn:bordergate:problem:upstream-unavailable"
        );
        assert!(r.header("location").is_none(), "r{i}: {}", r.text());
        assert!(!r.text().contains("evil.example"), "r{i}: {}", r.text());
        assert_eq!(c["status"], 502, "r{i}: {c}");
        assert_eq!(c["outcome"], "upstream-error", "r{i}: {c}");
        assert_eq!(c["bytes_out"], 0, "r{i}: {c}");
        assert_eq!(up.count(), 1, "r{i}");
    }
}

/// Item 8: `Host` values that are not a host[:port], more than one `Host`, and an h2
/// `Host` or `:authority` that disagree are refused with a 400 problem before anything
/// is decided; each refusal has its deny record and nothing reaches the upstream.
#[tokio::test]
async fn malformed_hosts_are_refused_on_http1_and_h2() {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(mirror(&up.url(), 5, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    for host in [
        "host: evil@localhost\r\n",
        "host: localhost:99999\r\n",
        "host: localhost:\r\n",
        "host: localhost:80:80\r\n",
        "host: [::1\r\n",
        "host: [v7.x]\r\n",
        "host: local/host\r\n",
        "host: localhost?x\r\n",
        "host: localhost#x\r\n",
        "host: local host\r\n",
        "host: lo\\calhost\r\n",
        "host: \r\n",
        "host: localhost\r\nhost: evil.example\r\n",
    ] {
        let r = raw::tls(
            &gw,
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\n{host}authorization: Bearer {t}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(r.status(), 400, "{host:?}: {}", r.text());
        assert_eq!(
            problem_type(&r),
            "urn:bordergate:problem:bad-request",
            "{host:?}"
        );
        let d = decision_of(&gw, &r);
        assert_eq!(d["decision"], "deny", "{host:?}");
        assert_eq!(d["status"], 400, "{host:?}");
    }
    // Well-formed hosts are served.
    for host in ["localhost", "LOCALHOST:8443", "127.0.0.1:1", "[::1]:443"] {
        let r = raw::tls(
            &gw,
            format!(
                "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(r.status(), 200, "{host}: {}", r.text());
    }
    assert_eq!(up.count(), 4);

    // h2: a `host` that disagrees with `:authority`, a malformed `host`, userinfo in
    // `:authority`.
    let cfg = raw::tls_config(&gw, None, &[&rustls::version::TLS13], &[b"h2"]);
    let tls = raw::tls_connect(&gw, cfg).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client: h2::client::SendRequest<Bytes> = client;
    let cases: [(&str, Option<&str>); 3] = [
        (
            "https://localhost/mirror/eu-customers/a",
            Some("evil.example"),
        ),
        (
            "https://localhost/mirror/eu-customers/a",
            Some("local host"),
        ),
        ("https://user@localhost/mirror/eu-customers/a", None),
    ];
    for (uri, host) in cases {
        let mut b = http::Request::get(uri).header("authorization", format!("Bearer {t}"));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(b.body(()).unwrap(), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 400, "{uri} {host:?}");
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        let v: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            v["type"], "urn:bordergate:problem:bad-request",
            "{uri} {host:?}"
        );
        assert_eq!(gw.decision(&id)["decision"], "deny");
    }
    task.abort();
    assert_eq!(up.count(), 4, "nothing more reached the upstream");
    assert_eq!(up.count(), allows(&gw, "mirror"));
}

/// Item 8: a raw `#` in an HTTP/1.1 request target, which the HTTP parser would strip, is
/// refused with a 400 problem and its deny record — also after a request with a body on
/// the same connection, and when pipelined — and nothing of it reaches the upstream; the
/// connection is closed after the refusal. `%23` is an ordinary (refused-as-ambiguous)
/// path byte, and a `#` in a header value is nothing special.
#[tokio::test]
async fn a_raw_fragment_in_the_request_target_is_refused() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(&up.url(), 5, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let get = |target: &str, close: bool| {
        format!(
            "GET {target} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nx-note: a#b\r\n{}\r\n",
            if close { "connection: close\r\n" } else { "" }
        )
    };
    // Alone.
    let r = raw::tls(&gw, get("/mirror/eu-customers/a#/../../x", true).as_bytes()).await;
    assert_eq!(r.status(), 400, "{}", r.text());
    assert_eq!(problem_type(&r), "urn:bordergate:problem:bad-path");
    assert!(r.text().contains("raw `#`"), "{}", r.text());
    let d = decision_of(&gw, &r);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["status"], 400);
    assert_eq!(up.requests().len(), 0);

    // After an upload on the same connection, whose body looks like a request line with
    // a `#`: the body is skipped, the real second request is refused, a third is not
    // served (the connection closes after the refusal).
    let body = "GET /x#y HTTP/1.1\r\n\r\n";
    let upload = format!(
        "PUT /mirror/eu-customers/u HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nbordergate-lineage: public-wiki\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let pipelined = format!(
        "{upload}{}{}",
        get("/mirror/eu-customers/b#c", false),
        get("/mirror/eu-customers/c", true)
    );
    let r = raw::tls(&gw, pipelined.as_bytes()).await;
    assert_eq!(r.statuses(), vec![200, 400], "{}", r.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "only the upload was forwarded");
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].body.as_ref(), body.as_bytes());
    assert_eq!(seen.len(), allows(&gw, "mirror"));
    // The refusal was recorded like any other malformed request.
    let denies = gw
        .records()
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "deny" && r["status"] == 400)
        .count();
    assert_eq!(denies, 2);

    // Without a `#`, the same requests are served.
    let r = raw::tls(&gw, get("/mirror/eu-customers/a", true).as_bytes()).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(up.requests().len(), allows(&gw, "mirror"));
}

/// Item 5, the response direction: a client that stops taking a download, or takes a
/// trickle of it, is cut by `send_timeout_secs` / `send_min_bytes_per_sec` (only time the
/// gateway waits on the client counts) and the transfer is recorded `aborted`.
#[tokio::test]
async fn a_client_that_stops_reading_or_reads_a_trickle_is_cut() {
    let gw = Gateway::start(Options {
        limits: "  send_timeout_secs: 2\n  send_min_bytes_per_sec: 100000\n  body_rate_window_secs: 1\n  body_rate_grace_secs: 1\n".into(),
        ..Options::default()
    });
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let big: u64 = 256 << 20;
    let f = std::fs::File::create(gw.store.join("datasets/eu-customers/huge.bin")).unwrap();
    f.set_len(big).unwrap();
    for trickle in [false, true] {
        let cfg = raw::tls_config(&gw, None, &[&rustls::version::TLS13], &[b"http/1.1"]);
        let mut s = raw::tls_connect(&gw, cfg).await.unwrap();
        s.write_all(
            format!(
                "GET /datasets/eu-customers/huge.bin HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let mut head = vec![0u8; 1024];
        let n = s.read(&mut head).await.unwrap();
        let id = RawResponse {
            bytes: head[..n].to_vec(),
        }
        .request_id()
        .unwrap();
        let mut got = n as u64;
        let mut buf = vec![0u8; 512];
        // Reads 512 bytes per 500 ms (the TLS layer beneath takes at most a record of 16 KiB
        // per read: ≤ 32 KB/s), or nothing at all, until the gateway gives up.
        let ended = loop {
            if started.elapsed() > Duration::from_secs(60) {
                break false;
            }
            // The client's own buffers hold megabytes after the cut: the record says it.
            if gw
                .records()
                .iter()
                .any(|r| r["kind"] == "completion" && r["request_id"] == id.as_str())
            {
                break true;
            }
            if !trickle {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => got += n as u64,
                Err(_) => break true,
            }
        };
        assert!(ended, "trickle={trickle}: never cut");
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "aborted", "trickle={trickle}: {c}");
        assert!(c["bytes_out"].as_u64().unwrap() < big, "{c}");
        assert!(got < big);
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "trickle={trickle}: cut after {:?}",
            started.elapsed()
        );
    }
}

/// Item 8: a second `bordergate-lineage` header whose value is not ASCII is refused (the
/// upload is never decided on the first alone), on HTTP/1.1 and h2; nothing is forwarded.
#[tokio::test]
async fn a_second_lineage_header_that_is_not_ascii_is_refused() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(&up.url(), 5, ""));
    let t = gw.token("alice", "acme-de", "DE", "training");
    for h2 in [false, true] {
        let client = client_speaking(&gw, h2);
        let r = client
            .put(gw.url("/registry/us/weights.bin"))
            .bearer_auth(&t)
            .header("bordergate-lineage", "public-wiki")
            .header(
                "bordergate-lineage",
                http::HeaderValue::from_bytes(b"eu-customers-\xe9").unwrap(),
            )
            .body("weights")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "h2={h2}");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap_or("").contains("lineage"),
            "h2={h2}: {body}"
        );
        assert_eq!(gw.decision(&id)["decision"], "deny", "h2={h2}");
    }
    assert!(
        std::fs::read_dir(gw.dir.path().join("store/registry/us"))
            .unwrap()
            .all(|e| e.unwrap().file_name() != "weights.bin"),
        "the upload reached the registry"
    );
    assert!(up.requests().is_empty());
}

/// Item 8: a GET with a body is refused on h2 as on HTTP/1.1; the upstream sees nothing.
#[tokio::test]
async fn a_get_with_a_body_is_refused_on_h2_as_on_http1() {
    let up = Upstream::start(receipt()).await;
    let gw = Gateway::start(mirror(&up.url(), 5, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    for h2 in [false, true] {
        let client = client_speaking(&gw, h2);
        let r = client
            .get(gw.url("/mirror/eu-customers/a.csv"))
            .bearer_auth(&t)
            .body("smuggled")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "h2={h2}");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(gw.decision(&id)["decision"], "deny", "h2={h2}");
    }
    assert!(up.requests().is_empty(), "a GET body reached the upstream");
    assert_eq!(allows(&gw, "mirror"), 0);
}

/// A client of `gw` that speaks h2 (prior knowledge) or HTTP/1.1 only.
fn client_speaking(gw: &Gateway, h2: bool) -> reqwest::Client {
    let pem = std::fs::read(gw.dir.path().join("cert.pem")).unwrap();
    let b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    let b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}
