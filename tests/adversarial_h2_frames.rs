//! Adversarial suite, HTTP/2 at the frame level: what the `h2` crate can't send, written
//! by hand (tests/common/h2raw.rs) — CONTINUATION floods, MadeYouReset (CVE-2025-8671),
//! CR/LF in header values, content-length ≠ DATA — plus idle-connection exhaustion and
//! SNI ≠ Host. Each case asserts the connection outcome, what reached the upstream
//! (RawUpstream's count of complete requests) and that the audit log verifies.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::h2raw::{self, CONTINUATION, DATA, END_HEADERS, END_STREAM, H2Raw, HEADERS};
use common::raw::{self, RawUpstream};
use common::{Gateway, Options};
use http::Request;

const CATALOG: &str = "  - id: mirror-customers\n    kind: dataset\n    match:\n      prefix: /mirror/eu-customers/\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics, training]\n";
const PATH: &str = "/mirror/eu-customers/a";

fn opts(up: &RawUpstream) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {}\n    jurisdiction: DE\n    timeout_secs: 2\n",
            up.url()
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n    uploads: true\n".into(),
        extra_catalog: CATALOG.into(),
        ..Options::default()
    }
}

async fn start() -> (RawUpstream, Gateway, String) {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(opts(&up));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    (up, gw, t)
}

/// A well-behaved request on a fresh `h2` connection: the gateway still serves others.
async fn served(gw: &Gateway, t: &str) -> u16 {
    let cfg = raw::tls_config(gw, None, &[&rustls::version::TLS13], &[b"h2"]);
    let tls = raw::tls_connect(gw, cfg).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client: h2::client::SendRequest<Bytes> = client.ready().await.unwrap();
    let req = Request::get(format!("https://localhost{PATH}"))
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let status = resp.await.unwrap().status().as_u16();
    task.abort();
    status
}

fn allows(gw: &Gateway) -> usize {
    gw.records()
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .count()
}

fn rss_kib(gw: &Gateway) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn assert_verifies(gw: &Gateway) {
    let out = common::verify(&gw.audit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn h2_continuation_flood_closes_the_connection_with_bounded_memory() {
    let (up, gw, t) = start().await;
    let before = rss_kib(&gw);
    let mut c = H2Raw::connect(&gw).await;
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    let head = h2raw::request("GET", PATH, &t, &[]);
    c.send(&h2raw::frame(HEADERS, END_STREAM, 1, &head))
        .await
        .unwrap();
    let mut pad = Vec::new();
    h2raw::literal(&mut pad, b"x-pad", &[b'a'; 16000]);
    let cont = h2raw::frame(CONTINUATION, 0, 1, &pad);
    let mut sent = 0usize;
    for _ in 0..4000 {
        // 64 MB in all if nothing stopped it.
        if c.send(&cont).await.is_err() {
            break;
        }
        sent += 1;
        if sent.is_multiple_of(64) {
            c.read_for(Duration::from_millis(1)).await;
            if c.closed {
                break;
            }
        }
    }
    c.read_for(Duration::from_secs(3)).await;
    assert!(
        c.closed,
        "the connection stays open after {sent} CONTINUATION frames"
    );
    assert!(sent < 4000, "all {sent} CONTINUATION frames were accepted");
    let grown = rss_kib(&gw).saturating_sub(before);
    assert!(grown < 32 * 1024, "gateway memory grew by {grown} KiB");
    assert_eq!(up.count(), 0, "{}", up.received());
    assert_eq!(served(&gw, &t).await, 200);
    assert_eq!(up.count(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_verifies(&gw);
    eprintln!(
        "continuation flood: closed after {sent} frames ({} KiB), goaway {:?}, rss +{grown} KiB",
        sent * 16,
        c.goaway().and_then(|g| g.error_code())
    );
}

/// MadeYouReset (CVE-2025-8671): the client makes the *server* reset streams with frames
/// that are stream errors — WINDOW_UPDATE of 0 on an open stream, DATA on a stream the
/// client already half-closed — so they do not count as client resets.
#[tokio::test]
async fn h2_made_you_reset_is_bounded_and_ends_in_goaway() {
    let (up, gw, t) = start().await;
    let bad_path = h2raw::request("GET", "/mirror/eu-customers/a\r\nx: y", &t, &[]);
    for variant in [
        "zero-window-update",
        "data-after-end-stream",
        "malformed-headers",
    ] {
        let base_up = up.count();
        let mut c = H2Raw::connect(&gw).await;
        let head = h2raw::request("GET", PATH, &t, &[]);
        let mut opened = 0u32;
        for i in 0..1000u32 {
            let id = 1 + 2 * i;
            let mut bytes = match variant {
                "malformed-headers" => {
                    h2raw::frame(HEADERS, END_HEADERS | END_STREAM, id, &bad_path)
                }
                _ => h2raw::frame(HEADERS, END_HEADERS | END_STREAM, id, &head),
            };
            bytes.extend(match variant {
                "zero-window-update" => h2raw::window_update(id, 0),
                "data-after-end-stream" => h2raw::frame(DATA, 0, id, b"x"),
                _ => Vec::new(),
            });
            if c.send(&bytes).await.is_err() {
                break;
            }
            opened += 1;
            if i.is_multiple_of(16) {
                c.read_for(Duration::from_millis(2)).await;
                if c.closed {
                    break;
                }
            }
        }
        c.read_for(Duration::from_secs(3)).await;
        let resets = c
            .frames
            .iter()
            .filter(|f| f.ty == h2raw::RST_STREAM)
            .count();
        let goaway = c.goaway().and_then(|g| g.error_code());
        let last = c
            .goaway()
            .map(|g| u32::from_be_bytes([g.payload[0], g.payload[1], g.payload[2], g.payload[3]]));
        eprintln!(
            "{variant}: {opened} streams sent, {resets} server resets, goaway {goaway:?} (last stream {last:?}), upstream {}",
            up.count() - base_up
        );
        assert!(
            goaway.is_some(),
            "{variant}: no GOAWAY after {opened} streams"
        );
        assert!(c.closed, "{variant}: the connection stays open");
        assert!(opened < 1000, "{variant}: all 1000 streams were taken");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Bounded work: the upstream saw at most what the gateway let through, each audited.
        let forwarded = up.count() - base_up;
        assert!(
            forwarded <= 300,
            "{variant}: {forwarded} requests forwarded"
        );
        assert!(up.count() <= allows(&gw), "{variant}: unaudited forward");
        assert_eq!(served(&gw, &t).await, 200, "{variant}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_verifies(&gw);
}

/// How the gateway answered a malformed request on stream `id`: a stream reset, a 400, or
/// (h2 is stricter than RFC 9113 §8.2.1 asks) GOAWAY PROTOCOL_ERROR naming a last stream
/// below `id`, i.e. the request was never processed.
fn refused(c: &H2Raw, id: u32) -> Option<String> {
    if let Some(code) = c.reset(id) {
        return Some(format!("RST_STREAM {code}"));
    }
    if c.status(id) == Some(400) {
        return Some("400".into());
    }
    let g = c.goaway()?;
    let last = u32::from_be_bytes([g.payload[0], g.payload[1], g.payload[2], g.payload[3]]);
    (last < id && g.error_code() == Some(1))
        .then(|| format!("GOAWAY PROTOCOL_ERROR, last stream {last}"))
}

#[tokio::test]
async fn h2_crlf_in_header_values_is_refused_and_nothing_is_forwarded() {
    let (up, gw, t) = start().await;
    let values: [&[u8]; 4] = [b"a\r\nx-injected: 1", b"a\nx-injected: 1", b"a\rb", b"a\0b"];
    let mut cases: Vec<Vec<u8>> = values
        .iter()
        .map(|v| h2raw::request("GET", PATH, &t, &[("x-note", v)]))
        .collect();
    // CR/LF smuggled into the path and into a pseudo-header.
    cases.push(h2raw::request(
        "GET",
        "/mirror/eu-customers/a\r\nx: y",
        &t,
        &[],
    ));
    cases.push(h2raw::block(&[
        (":method", b"GET"),
        (":scheme", b"https"),
        (":authority", b"localhost\r\nx-injected: 1"),
        (":path", PATH.as_bytes()),
    ]));
    for (i, head) in cases.iter().enumerate() {
        let mut c = H2Raw::connect(&gw).await;
        // A clean request first (stream 1), then the malformed one (stream 3).
        let ok = h2raw::request("GET", PATH, &t, &[]);
        c.send(&h2raw::frame(HEADERS, END_HEADERS | END_STREAM, 1, &ok))
            .await
            .unwrap();
        c.read_for(Duration::from_millis(500)).await;
        assert_eq!(c.status(1), Some(200), "case {i}: {:?}", c.frames);
        c.send(&h2raw::frame(HEADERS, END_HEADERS | END_STREAM, 3, head))
            .await
            .unwrap();
        c.read_for(Duration::from_millis(800)).await;
        let how = refused(&c, 3);
        assert!(how.is_some(), "case {i}: not refused: {:?}", c.frames);
        assert_ne!(c.status(3), Some(200), "case {i}");
        eprintln!("crlf case {i}: {}", how.unwrap_or_default());
        assert_eq!(
            up.count(),
            i + 1,
            "case {i}: only the clean requests reach the upstream"
        );
    }
    assert!(!up.received().contains("x-injected"), "{}", up.received());
    assert!(!up.received().contains("x-note"), "{}", up.received());
    assert_eq!(served(&gw, &t).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_verifies(&gw);
}

#[tokio::test]
async fn h2_content_length_other_than_data_length_is_refused() {
    let (up, gw, t) = start().await;
    let mut c = H2Raw::connect(&gw).await;
    // (declared content-length, DATA sent)
    let cases: [(&[u8], &[u8]); 3] = [(b"3", b"hello"), (b"10", b"hello"), (b"0", b"hello")];
    let mut id = 1;
    for (cl, body) in cases {
        let head = h2raw::request(
            "PUT",
            "/mirror/eu-customers/up",
            &t,
            &[("content-length", cl)],
        );
        let mut bytes = h2raw::frame(HEADERS, END_HEADERS, id, &head);
        bytes.extend(h2raw::frame(DATA, END_STREAM, id, body));
        c.send(&bytes).await.unwrap();
        c.read_for(Duration::from_secs(1)).await;
        let reset = c.reset(id);
        let status = c.status(id);
        eprintln!(
            "content-length {cl:?} with {} bytes: reset {reset:?}, status {status:?}",
            body.len()
        );
        assert!(
            reset.is_some() || status.is_some_and(|s| s >= 400),
            "content-length {cl:?}: reset {reset:?}, status {status:?}"
        );
        id += 2;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        up.count(),
        0,
        "a mis-framed body was forwarded:\n{}",
        up.received()
    );
    assert_eq!(served(&gw, &t).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_verifies(&gw);
}

#[tokio::test]
async fn idle_connections_are_closed_by_the_header_timeout() {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(Options {
        limits: "  header_timeout_secs: 2\n".into(),
        ..opts(&up)
    });
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    // Many idle TLS connections: handshake done, not a byte of HTTP sent (h1 and h2 ALPN).
    let mut idle = Vec::new();
    for i in 0..200 {
        let alpn: &[&[u8]] = if i % 2 == 0 { &[b"http/1.1"] } else { &[b"h2"] };
        let cfg = raw::tls_config(&gw, None, &[&rustls::version::TLS13], alpn);
        idle.push(raw::tls_connect(&gw, cfg).await.unwrap());
    }
    // While they hang, others are served.
    assert_eq!(served(&gw, &t).await, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut open = 0;
    for s in &mut idle {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 256];
        // Closed: EOF or an error; a 408 or an h2 GOAWAY/SETTINGS first is fine too.
        let mut closed = false;
        for _ in 0..4 {
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
        if !closed {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "{open} of 200 idle connections still open after the header timeout"
    );
    assert_eq!(served(&gw, &t).await, 200);
    assert_eq!(up.count(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_verifies(&gw);
}

#[tokio::test]
async fn sni_differing_from_host_routes_by_path_only() {
    let (up, gw, t) = start().await;
    // TLS SNI is `localhost` (tls_connect); the Host header names another site.
    let req = format!(
        "GET {PATH} HTTP/1.1\r\nhost: evil.example\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n"
    );
    let r = raw::tls(&gw, req.as_bytes()).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(up.count(), 1);
    let seen = up.received().to_ascii_lowercase();
    assert!(!seen.contains("evil.example"), "{seen}");
    assert!(
        seen.contains(&format!("host: {}", up.addr)),
        "the upstream sees its own host: {seen}"
    );
    let d = gw.decision(&r.request_id().unwrap());
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["upstream"], "mirror", "{d}");
    assert_eq!(d["path"], PATH);
    assert!(!d.to_string().contains("evil.example"), "{d}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_verifies(&gw);
}
