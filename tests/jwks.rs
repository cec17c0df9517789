//! Keys from the identity provider, end to end with the real binary: a JWKS served over
//! HTTPS by a real server with a test CA (`auth.jwks_url`) — tokens of its keys are
//! accepted, a rotation is picked up, unknown `kid`s cause at most one fetch per
//! cool-down, keys outlive an outage until stale, and a gateway started during an outage
//! is not ready and refuses tokens until the keys arrive. And JWKS and policy files that
//! change by themselves, in place or by a Kubernetes ConfigMap `..data` swap.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/admin.rs"]
mod support;

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use bytes::Bytes;
use common::{Options, repo};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::{Admined, CUSTOMERS, start};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An Ed25519 signing key with its `kid`.
struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    fn new(kid: &str) -> SigningKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        SigningKey {
            kid: kid.into(),
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
            "kid": self.kid, "x": B64.encode(self.pair.public_key().as_ref()),
        })
    }

    /// A token for `alice` of `acme-de`, processing in DE, signed as `kid`.
    fn token_as(&self, kid: &str) -> String {
        let now = common::now();
        let claims = json!({
            "sub": "alice", "org": "acme-de", "jurisdiction": "DE", "purpose": "analytics",
            "iss": "bordergate-dev", "aud": "bordergate", "iat": now, "exp": now + 600,
        });
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn token(&self) -> String {
        self.token_as(&self.kid)
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// A test CA and a server certificate for 127.0.0.1 it issued.
struct Pki {
    dir: tempfile::TempDir,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("idp-ca.pem"), ca.pem()).unwrap();
        let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Pki {
            dir,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("idp-ca.pem")
    }
}

/// A real HTTPS JWKS endpoint that counts the requests it answers; it can be stopped
/// (every connection cut) and started again on the same port.
struct Idp {
    addr: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    doc: Arc<Mutex<String>>,
    cache_control: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Idp {
    /// An endpoint on `port` (0: any) serving `doc`, not started.
    fn new(pki: &Pki, port: u16, doc: String) -> Idp {
        Idp {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            acceptor: pki.acceptor.clone(),
            doc: Arc::new(Mutex::new(doc)),
            cache_control: Arc::new(Mutex::new("max-age=3600".into())),
            hits: Arc::new(AtomicUsize::new(0)),
            tasks: Arc::default(),
        }
    }

    async fn started(pki: &Pki, doc: String) -> Idp {
        let mut idp = Idp::new(pki, 0, doc);
        idp.start().await;
        idp
    }

    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (acceptor, doc, cc, hits, tasks) = (
            self.acceptor.clone(),
            self.doc.clone(),
            self.cache_control.clone(),
            self.hits.clone(),
            self.tasks.clone(),
        );
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, doc, cc, hits) =
                    (acceptor.clone(), doc.clone(), cc.clone(), hits.clone());
                let conn = tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let body = doc.lock().unwrap().clone();
                        let cc = cc.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .header("cache-control", cc)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
                conns.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Stops listening and cuts every connection.
    fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn serve(&self, doc: String) {
        *self.doc.lock().unwrap() = doc;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("https://{}/jwks", self.addr)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gateway fetching its keys from `url`, trusting the test CA, with `timings`
/// (`auth` lines, each starting with two spaces).
fn gateway(pki: &Pki, url: &str, timings: &str) -> Admined {
    start(Options {
        extra_keys: format!(
            "  jwks_url: {url}\n  jwks_ca: {}\n{timings}",
            pki.ca().display()
        ),
        ..Options::default()
    })
}

/// The status and problem body of a download with `token`.
async fn fetch(a: &Admined, token: &str) -> (u16, Value) {
    let r =
        a.gw.client()
            .get(a.gw.url(CUSTOMERS))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn readyz(a: &Admined) -> (u16, Value) {
    let r = a.get("/readyz", None).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `probe` every 50 ms until `want` holds (20 s at most); returns the last answer.
async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    mut probe: impl FnMut() -> F,
    want: impl Fn(&T) -> bool,
) -> T {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = probe().await;
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < end, "still {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_served_keys_are_accepted_and_a_rotation_is_picked_up() {
    let pki = Pki::new();
    let (a_key, b_key) = (SigningKey::new("2026-a"), SigningKey::new("2026-b"));
    let idp = Idp::started(&pki, jwks(&[&a_key])).await;
    let a = gateway(&pki, &idp.url(), "  jwks_unknown_kid_cooldown_secs: 1\n");
    let (s, v) = until(|| readyz(&a), |(s, _)| *s == 200).await;
    assert_eq!((s, &v["keys"]), (200, &json!("ok")), "{v}");
    assert_eq!(fetch(&a, &a_key.token()).await.0, 200);
    // Signed by a key the set does not hold, under a kid it does: refused.
    assert_eq!(fetch(&a, &b_key.token_as("2026-a")).await.0, 401);

    // The identity provider rotates: key b in, key a out. The first token of b makes
    // the gateway look again (once the cool-down allows).
    idp.serve(jwks(&[&b_key]));
    let b_token = b_key.token();
    let (s, _) = until(|| fetch(&a, &b_token), |(s, _)| *s == 200).await;
    assert_eq!(s, 200);
    let (s, p) = fetch(&a, &a_key.token()).await;
    assert_eq!(s, 401, "the removed key no longer verifies, cached or not");
    assert_eq!(p["rule"], "auth.unknown-key", "{p}");

    let m = a.get("/metrics", None).await.text().await.unwrap();
    assert!(
        m.contains(r#"bordergate_jwks_fetches_total{result="ok"}"#),
        "{m}"
    );
    let last = m
        .lines()
        .find(|l| l.starts_with("bordergate_jwks_last_success_timestamp_seconds"))
        .unwrap();
    let t: u64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(t + 60 > common::now(), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_cause_at_most_one_fetch_per_cool_down() {
    let pki = Pki::new();
    let key = SigningKey::new("k1");
    let idp = Idp::started(&pki, jwks(&[&key])).await;
    let a = gateway(&pki, &idp.url(), "  jwks_unknown_kid_cooldown_secs: 600\n");
    until(|| readyz(&a), |(s, _)| *s == 200).await;
    let before = idp.hits();
    assert_eq!(before, 1, "one fetch at start");

    for i in 0..40 {
        let (s, p) = fetch(&a, &key.token_as(&format!("random-{i}"))).await;
        assert_eq!(s, 401);
        assert_eq!(p["rule"], "auth.unknown-key", "{p}");
    }
    until(|| async { idp.hits() }, |n| *n > before).await;
    // The early fetch is done; the flood asked for no other.
    assert_eq!(fetch(&a, &key.token_as("one-more")).await.0, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(idp.hits(), before + 1, "one fetch for 41 unknown kids");
    assert_eq!(fetch(&a, &key.token()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outlive_an_outage_until_stale_then_tokens_are_refused() {
    let pki = Pki::new();
    let key = SigningKey::new("k1");
    let mut idp = Idp::started(&pki, jwks(&[&key])).await;
    *idp.cache_control.lock().unwrap() = "max-age=1".into();
    let a = gateway(
        &pki,
        &idp.url(),
        "  jwks_refresh_min_secs: 1\n  jwks_refresh_max_secs: 1\n  jwks_max_stale_secs: 5\n",
    );
    until(|| readyz(&a), |(s, _)| *s == 200).await;
    let token = key.token();
    assert_eq!(fetch(&a, &token).await.0, 200);
    // Refreshed on schedule while the endpoint is up.
    until(|| async { idp.hits() }, |n| *n >= 2).await;

    idp.stop();
    let down = Instant::now();
    assert_eq!(
        fetch(&a, &token).await.0,
        200,
        "the last keys fetched still serve"
    );
    let (s, p) = until(|| fetch(&a, &token), |(s, _)| *s == 401).await;
    assert!(
        down.elapsed() >= Duration::from_secs(3),
        "{:?}",
        down.elapsed()
    );
    assert_eq!(s, 401);
    assert_eq!(p["rule"], "auth.keys-stale", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("stale"), "{p}");
    let (s, v) = readyz(&a).await;
    assert_eq!(s, 503);
    let why = v["keys"].as_str().unwrap();
    assert!(why.contains("stale") && why.contains(&idp.url()), "{why}");

    // Back up: fresh keys, ready again.
    idp.start().await;
    until(|| fetch(&a, &token), |(s, _)| *s == 200).await;
    until(|| readyz(&a), |(s, _)| *s == 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_during_an_outage_is_not_ready_until_the_keys_arrive() {
    let pki = Pki::new();
    let key = SigningKey::new("k1");
    let mut idp = Idp::new(&pki, common::dead_port(), jwks(&[&key]));
    let a = gateway(
        &pki,
        &idp.url(),
        "  jwks_refresh_min_secs: 1\n  jwks_unknown_kid_cooldown_secs: 1\n",
    );
    let (s, v) = readyz(&a).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["ready"], false);
    let why = v["keys"].as_str().unwrap();
    assert!(why.contains("not fetched yet"), "{why}");
    let (s, p) = fetch(&a, &key.token()).await;
    assert_eq!(s, 401);
    assert_eq!(p["rule"], "auth.keys-unavailable", "{p}");
    // The gateway's own keys still work.
    let dev = a.gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(fetch(&a, &dev).await.0, 200);

    idp.start().await;
    until(|| readyz(&a), |(s, _)| *s == 200).await;
    assert_eq!(fetch(&a, &key.token()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_the_jwks_settings_and_names_jwks_url_for_a_url_in_jwks() {
    let (_dir, config, _, _) = common::prepare(&Options {
        extra_keys: "  jwks: https://idp.example/jwks\n".into(),
        ..Options::default()
    });
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use `jwks_url`"), "{err}");

    let (_dir, config, _, _) = common::prepare(&Options {
        extra_keys: "  jwks_url: http://idp.example/jwks\n  jwks_refresh_min_secs: 10\n  jwks_refresh_max_secs: 5\n".into(),
        ..Options::default()
    });
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not https"), "{err}");
    assert!(err.contains("less than `jwks_refresh_min_secs`"), "{err}");

    // Valid settings check out without a fetch (the endpoint need not be up); a CA
    // bundle that cannot be read does not.
    let check = |extra: String| {
        let (dir, config, _, _) = common::prepare(&Options {
            extra_keys: extra,
            ..Options::default()
        });
        let out = std::process::Command::new(common::BIN)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        drop(dir);
        out
    };
    let url = format!("https://127.0.0.1:{}/jwks", common::dead_port());
    let pki = Pki::new();
    let out = check(format!(
        "  jwks_url: {url}\n  jwks_ca: {}\n",
        pki.ca().display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(format!(
        "  jwks_url: {url}\n  jwks_ca: /nonexistent/ca.pem\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read `jwks_ca`"), "{err}");
}

/// Writes `text` to `path` atomically (a new file renamed over the old).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_to_the_jwks_file_is_accepted_without_sighup() {
    let (old, new) = (SigningKey::new("old"), SigningKey::new("new"));
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&old])).unwrap();
    let a = start(Options {
        extra_keys: format!("  jwks: {}\n", file.display()),
        ..Options::default()
    });
    assert_eq!(fetch(&a, &old.token()).await.0, 200);
    assert_eq!(fetch(&a, &new.token()).await.0, 401);
    replace(&file, &jwks(&[&old, &new]));
    let new_token = new.token();
    until(|| fetch(&a, &new_token), |(s, _)| *s == 200).await;
    assert_eq!(fetch(&a, &old.token()).await.0, 200);
}

/// A directory laid out as kubelet lays out a ConfigMap volume: `files` in `..<stamp>`,
/// `..data` pointing at it, and each visible file a symlink through `..data`.
fn configmap(dir: &Path, stamp: &str, files: &[(String, String)]) {
    std::fs::create_dir_all(dir.join(stamp)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(stamp).join(name), text).unwrap();
        let visible = dir.join(name);
        if std::fs::symlink_metadata(&visible).is_err() {
            symlink(format!("..data/{name}"), visible).unwrap();
        }
    }
}

/// As kubelet updates one: a new `..data_tmp` symlink renamed over `..data`, then the
/// old directory removed.
fn swap(dir: &Path, from: &str, to: &str) {
    symlink(to, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(from)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_swaps_of_the_policy_directory_and_the_jwks_file_are_picked_up() {
    let t = tempfile::tempdir().unwrap();
    // The policy pack's law files as one flat ConfigMap.
    let pol = t.path().join("policies");
    let mut laws = Vec::new();
    for e in std::fs::read_dir(repo().join("policies")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_file() && name.ends_with(".yaml") && !name.starts_with("registry") {
            laws.push((name, std::fs::read_to_string(&p).unwrap()));
        }
    }
    configmap(&pol, "..2026_12_03_01", &laws);
    symlink("..2026_12_03_01", pol.join("..data")).unwrap();
    // The keys as another.
    let keys = t.path().join("keys");
    let (old, new) = (SigningKey::new("old"), SigningKey::new("new"));
    configmap(
        &keys,
        "..2026_12_03_01",
        &[("jwks.json".into(), jwks(&[&old]))],
    );
    symlink("..2026_12_03_01", keys.join("..data")).unwrap();

    let a = start(Options {
        policies: Some(pol.clone()),
        extra_keys: format!("  jwks: {}\n", keys.join("jwks.json").display()),
        ..Options::default()
    });
    let (_, v) = readyz(&a).await;
    let version = v["policy_version"].as_str().unwrap().to_string();
    assert_eq!(fetch(&a, &old.token()).await.0, 200);
    assert_eq!(fetch(&a, &new.token()).await.0, 401);

    // A new version of the pack: the EU file gains a comment.
    let mut next = laws.clone();
    for (name, text) in &mut next {
        if name == "eu.yaml" {
            text.push_str("\n# revised 2026-12-03\n");
        }
    }
    configmap(&pol, "..2026_12_03_02", &next);
    swap(&pol, "..2026_12_03_01", "..2026_12_03_02");
    let (_, v) = until(
        || readyz(&a),
        |(_, v)| v["policy_version"].as_str() != Some(version.as_str()),
    )
    .await;
    assert_eq!(v["ready"], true, "{v}");
    let reload = until(
        || async {
            a.gw.records()
                .into_iter()
                .find(|r| r["kind"] == "event" && r["event"] == "reload")
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let detail = reload["detail"].as_str().unwrap();
    assert!(detail.contains("eu.yaml` changed"), "{detail}");

    // A new version of the keys: `new` added.
    configmap(
        &keys,
        "..2026_12_03_02",
        &[("jwks.json".into(), jwks(&[&old, &new]))],
    );
    swap(&keys, "..2026_12_03_01", "..2026_12_03_02");
    let (old_token, new_token) = (old.token(), new.token());
    until(|| fetch(&a, &new_token), |(s, _)| *s == 200).await;
    // And the one after: the watch followed the swap; `old` removed.
    configmap(
        &keys,
        "..2026_12_03_03",
        &[("jwks.json".into(), jwks(&[&new]))],
    );
    swap(&keys, "..2026_12_03_02", "..2026_12_03_03");
    until(|| fetch(&a, &old_token), |(s, _)| *s == 401).await;
    assert_eq!(fetch(&a, &new.token()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_directory_that_is_itself_a_symlink_through_data_is_followed() {
    // A ConfigMap mounted with `items: [{key: …, path: policies/eu.yaml}, …]`: the
    // visible `policies` is a symlink to `..data/policies`, a directory.
    let t = tempfile::tempdir().unwrap();
    let cm = t.path().join("cm");
    let version = |stamp: &str, extra: &str| {
        let dir = cm.join(stamp).join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(repo().join("policies")).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_file() && name.ends_with(".yaml") && !name.starts_with("registry") {
                let mut text = std::fs::read_to_string(&p).unwrap();
                if name == "eu.yaml" {
                    text.push_str(extra);
                }
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
    };
    version("..2026_12_03_01", "");
    symlink("..2026_12_03_01", cm.join("..data")).unwrap();
    symlink("..data/policies", cm.join("policies")).unwrap();
    let a = start(Options {
        policies: Some(cm.join("policies")),
        ..Options::default()
    });
    let (_, v) = readyz(&a).await;
    let first = v["policy_version"].as_str().unwrap().to_string();

    let mut seen = vec![first];
    for (i, (from, to)) in [
        ("..2026_12_03_01", "..2026_12_03_02"),
        ("..2026_12_03_02", "..2026_12_03_03"),
    ]
    .into_iter()
    .enumerate()
    {
        version(to, &format!("\n# revision {i}\n"));
        swap(&cm, from, to);
        let (_, v) = until(
            || readyz(&a),
            |(_, v)| !seen.iter().any(|s| v["policy_version"].as_str() == Some(s)),
        )
        .await;
        assert_eq!(v["ready"], true, "{v}");
        seen.push(v["policy_version"].as_str().unwrap().to_string());
    }
}
