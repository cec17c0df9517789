//! Adversarial suite, TLS and HTTP/2: protocol versions, plaintext on the TLS port,
//! upstream certificate verification, client certificates and certificate-bound tokens
//! (RFC 8705), and frame-level HTTP/2 (authority confusion, rapid reset, bad headers).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::raw::{self, RawUpstream};
use common::{Gateway, Options};
use http::Request;

const CATALOG: &str = "  - id: mirror-customers\n    kind: dataset\n    match:\n      prefix: /mirror/eu-customers/\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics, training]\n";

fn opts(url: &str, up_extra: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {url}\n    jurisdiction: DE\n    timeout_secs: 2\n{up_extra}"
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n".into(),
        extra_catalog: CATALOG.into(),
        ..Options::default()
    }
}

async fn h2_client(gw: &Gateway) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let cfg = raw::tls_config(gw, None, &[&rustls::version::TLS13], &[b"h2"]);
    let tls = raw::tls_connect(gw, cfg).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

#[tokio::test]
async fn tls_versions_and_plaintext_on_the_tls_port() {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(opts(&up.url(), ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = raw::tls_config(&gw, None, &[v], &[b"http/1.1"]);
        assert!(raw::tls_connect(&gw, cfg).await.is_ok(), "{v:?}");
    }
    // TLS 1.0 / 1.1: refused in the handshake (openssl, when it can still offer them).
    for flag in ["-tls1", "-tls1_1"] {
        let out = std::process::Command::new("openssl")
            .args(["s_client", flag, "-connect", &gw.addr.to_string()])
            .stdin(std::process::Stdio::null())
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains("Cipher is ECDHE") || text.contains("Cipher is (NONE)"),
                "{flag}: {text}"
            );
        }
    }
    // Plain HTTP on the TLS port: no HTTP answer, nothing forwarded, nothing audited.
    let before = gw.records().len();
    let req = format!(
        "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\n\r\n"
    );
    let r = raw::tcp(gw.addr, req.as_bytes()).await;
    assert!(!r.text().contains("HTTP/1.1 200"), "{}", r.text());
    assert_eq!(up.count(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(gw.records().len() <= before + 1);
}

/// A self-signed HTTPS upstream (`localhost`), returning its CA PEM.
async fn https_upstream() -> (
    std::net::SocketAddr,
    String,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = ck.cert.pem();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let count = c2.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                if let Ok(n) = tls.read(&mut buf).await
                    && n > 0
                {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = tls.write_all(raw::OK).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, pem, count)
}

#[tokio::test]
async fn upstream_certificates_are_always_verified() {
    let (addr, pem, count) = https_upstream().await;
    let url = format!("https://localhost:{}", addr.port());
    // Without its CA configured: 502, nothing sent.
    let gw = Gateway::start(opts(&url, ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = raw::tls(&gw, format!("GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n").as_bytes()).await;
    assert_eq!(r.status(), 502, "{}", r.text());
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
    let c = gw.completion(&r.request_id().unwrap()).await;
    assert_eq!(c["outcome"], "upstream-error");
    drop(gw);
    // With the CA configured: served.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("up-ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let gw = Gateway::start(opts(&url, &format!("    ca: {}\n", ca.display())));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = raw::tls(&gw, format!("GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n").as_bytes()).await;
    assert_eq!(r.status(), 200, "{}", r.text());
}

struct Pki {
    dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    der: Vec<u8>,
    other_cert: std::path::PathBuf,
    other_key: std::path::PathBuf,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mk = |name: &str| {
        let k = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![format!("{name}.example")]).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&k, &ca).unwrap();
        (c, k)
    };
    let (c1, k1) = mk("pipeline");
    let (c2, k2) = mk("other");
    let w = |n: &str, s: String| {
        let f = dir.path().join(n);
        std::fs::write(&f, s).unwrap();
        f
    };
    Pki {
        ca: w("client-ca.pem", ca.pem()),
        cert: w("c1.pem", c1.pem()),
        key: w("k1.pem", k1.serialize_pem()),
        der: c1.der().to_vec(),
        other_cert: w("c2.pem", c2.pem()),
        other_key: w("k2.pem", k2.serialize_pem()),
        dir,
    }
}

#[tokio::test]
async fn client_certificates_and_certificate_bound_tokens() {
    use base64::Engine;
    let pki = pki();
    let _keep = &pki.dir;
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(Options {
        extra_tls: format!("    client_ca: {}\n", pki.ca.display()),
        ..opts(&up.url(), "")
    });
    let now = common::now();
    let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pki.der);
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb.as_ref());
    let claims = format!(
        r#"{{"sub":"pipe","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"bordergate","iat":{now},"exp":{},"cnf":{{"x5t#S256":"{x5t}"}}}}"#,
        now + 300
    );
    let bound = common::hs256_jwt(&gw.secret(), r#"{"alg":"HS256","kid":"dev"}"#, &claims);
    let unbound = gw.token("alice", "acme-de", "DE", "analytics");
    let send = |c: Option<(&'static std::path::Path, &'static std::path::Path)>, t: String| {
        send_with(&gw, c, t)
    };
    let leak = |p: &std::path::Path| -> &'static std::path::Path {
        Box::leak(p.to_path_buf().into_boxed_path())
    };
    let mine = Some((leak(&pki.cert), leak(&pki.key)));
    let other = Some((leak(&pki.other_cert), leak(&pki.other_key)));
    // Bound token with its certificate: served.
    assert_eq!(send(mine, bound.clone()).await.status(), 200);
    // Bound token without a certificate, or with another valid one: 401, nothing forwarded.
    let r = send(None, bound.clone()).await;
    assert_eq!(r.status(), 401, "{}", r.text());
    let d = gw
        .records()
        .into_iter()
        .find(|x| x["request_id"] == r.request_id().unwrap().as_str())
        .unwrap();
    assert!(d["rule"].as_str().unwrap().starts_with("auth."), "{d}");
    assert_eq!(send(other, bound.clone()).await.status(), 401);
    // Unbound tokens need no certificate (client certificates are optional here).
    assert_eq!(send(None, unbound.clone()).await.status(), 200);
    assert_eq!(send(other, unbound).await.status(), 200);
    assert_eq!(up.count(), 3);
}

async fn send_with(
    gw: &Gateway,
    client: Option<(&'static std::path::Path, &'static std::path::Path)>,
    t: String,
) -> raw::RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = raw::tls_config(gw, client, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut s = raw::tls_connect(gw, cfg).await.unwrap();
    let req = format!(
        "GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    raw::RawResponse { bytes: buf }
}

#[tokio::test]
async fn h2_authority_confusion_and_connection_specific_headers() {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(opts(&up.url(), ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let (mut client, _task) = h2_client(&gw).await;
    let send = |client: &mut h2::client::SendRequest<Bytes>, req: Request<()>| {
        let (resp, _) = client.send_request(req, true).unwrap();
        resp
    };
    // :authority != host: refused.
    let req = Request::get("https://localhost/mirror/eu-customers/a")
        .header("host", "169.254.169.254")
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let resp = send(&mut client, req).await.unwrap();
    assert_eq!(resp.status(), 400);
    // Consistent authority: served, and the upstream sees its own host.
    let req = Request::get("https://localhost/mirror/eu-customers/a")
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let resp = send(&mut client, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Ambiguous paths over h2 too.
    let req = Request::get("https://localhost/mirror/eu-customers/%2e%2e/x")
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let resp = send(&mut client, req).await.unwrap();
    assert_eq!(resp.status(), 400);
    // Connection-specific headers (H2.TE): the h2 layer refuses the stream or the
    // request; either way nothing reaches the upstream.
    for (n, v) in [
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive"),
        ("upgrade", "h2c"),
    ] {
        let req = Request::get("https://localhost/mirror/eu-customers/a")
            .header("authorization", format!("Bearer {t}"))
            .header(n, v)
            .body(())
            .unwrap();
        // The client library itself may refuse to send these.
        let Ok(c) = client.clone().ready().await else {
            break;
        };
        client = c;
        if let Ok((resp, _)) = client.send_request(req, true)
            && let Ok(r) = resp.await
        {
            assert_ne!(r.status(), 200, "{n}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.count(), 1, "{}", up.received());
}

#[tokio::test]
async fn h2_rapid_reset_flood_is_bounded_and_every_forward_is_audited() {
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(opts(&up.url(), ""));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let (client, _task) = h2_client(&gw).await;
    let mut client = client;
    let mut sent = 0;
    // Open streams and reset them at once (CVE-2023-44487), far past the pending-reset cap.
    for _ in 0..2000 {
        let Ok(c) = client.clone().ready().await else {
            break;
        };
        client = c;
        let req = Request::get("https://localhost/mirror/eu-customers/a")
            .header("authorization", format!("Bearer {t}"))
            .body(())
            .unwrap();
        match client.send_request(req, false) {
            Ok((resp, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                drop(resp);
                sent += 1;
            }
            Err(_) => break,
        }
    }
    // The gateway must either have shut the connection (GOAWAY) or kept up; it stays healthy.
    assert!(sent > 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Every request the upstream saw was audited as allowed.
    let allows = gw
        .records()
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .count();
    assert!(
        up.count() <= allows,
        "upstream {} > allows {allows}",
        up.count()
    );
    // And a fresh connection is served normally.
    let (client, _t2) = h2_client(&gw).await;
    let mut client = client.ready().await.unwrap();
    let req = Request::get("https://localhost/mirror/eu-customers/a")
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert!(common::verify(&gw.audit).status.success());
}
