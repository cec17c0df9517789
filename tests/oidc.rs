//! Sign-in to the admin page through a real OpenID Connect provider: oidc-provider (panva)
//! in Node (tests/oidc/provider.mjs, pinned by tests/oidc/package-lock.json), the real
//! gateway, and an HTTP client that follows the redirects with a cookie jar as a browser
//! would. The officer ends on the page with a session that reads `/audit/records` and
//! logs out; a user without the role, a tampered `state`, `nonce` or cookie, and a
//! provider that is not the configured issuer are refused.
//!
//! Needs `node` and `npm ci` in tests/oidc (`.ci/run` does both). Without them these tests
//! are reported ignored, with the reason, outside CI; in CI (`CI=true`) they fail.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/admin.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libtest_mimic::{Arguments, Failed, Trial};
use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;

use common::Options;
use support::Admined;

const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";
const SESSION_SECRET: &[u8] = b"replicas-share-this-session-secret-0123456789";
const SESSION: &str = "__Host-bordergate-session";
const SIGN_IN: &str = "__Secure-bordergate-signin";

fn dir() -> PathBuf {
    common::repo().join("tests/oidc")
}

/// Why the tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("`node` is not on the PATH".into());
    }
    if !dir()
        .join("node_modules/oidc-provider/package.json")
        .exists()
    {
        return Some("oidc-provider is not installed: run `npm ci` in tests/oidc".into());
    }
    None
}

/// The provider: its process and issuer.
struct Idp {
    child: Child,
    issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider and a gateway signing officers in through it.
struct World {
    idp: Idp,
    admin: Admined,
    /// The certificates the client trusts: the provider's and the gateway's.
    roots: Vec<Vec<u8>>,
    /// The provider's certificate and key (removed after it stops).
    _work: tempfile::TempDir,
}

/// A free port on the loopback interface (the redirect URL must be known before start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_idp(work: &Path, redirect: &str) -> Idp {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(work.join("idp-cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(work.join("idp-key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let mut child = Command::new("node")
        .arg(dir().join("provider.mjs"))
        .arg(work.join("idp-cert.pem"))
        .arg(work.join("idp-key.pem"))
        .arg(redirect)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the provider printed its issuer");
    let v: Value = serde_json::from_str(&line).unwrap();
    Idp {
        child,
        issuer: v["issuer"].as_str().unwrap().to_string(),
    }
}

/// Starts the provider and the gateway; `issuer` overrides the configured issuer.
fn world(issuer: Option<&str>) -> World {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let redirect = format!("https://127.0.0.1:{port}/oidc/callback");
    let idp = start_idp(work.path(), &redirect);
    let issuer = issuer.map_or(idp.issuer.clone(), |s| s.replace("{issuer}", &idp.issuer));
    let oidc = format!(
        "  oidc:\n    issuer: {issuer}\n    client_id: bordergate-admin\n    client_secret: {{file: client.secret}}\n    redirect_url: {redirect}\n    scopes: [openid, profile, roles]\n    role_claim: roles\n    officer_role: compliance-officer\n    session_secret: {{file: session.secret}}\n    session_ttl_secs: 600\n    ca: {ca}\n",
        ca = work.path().join("idp-cert.pem").display(),
    );
    let admin = support::start_in(
        Options::default(),
        &format!("address: 127.0.0.1:{port}"),
        &oidc,
        |d| {
            std::fs::write(d.join("session.secret"), SESSION_SECRET).unwrap();
            std::fs::write(d.join("client.secret"), CLIENT_SECRET).unwrap();
        },
    );
    let roots = vec![
        std::fs::read(work.path().join("idp-cert.pem")).unwrap(),
        std::fs::read(admin.gw.dir.path().join("cert.pem")).unwrap(),
    ];
    World {
        idp,
        admin,
        roots,
        _work: work,
    }
}

/// A browser: a cookie jar, no automatic redirects (each hop is looked at).
struct Browser {
    jar: Arc<Jar>,
    http: reqwest::Client,
}

impl World {
    fn browser(&self) -> Browser {
        let jar = Arc::new(Jar::default());
        let mut b = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none());
        for pem in &self.roots {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        Browser {
            jar,
            http: b.build().unwrap(),
        }
    }

    /// A client with no cookie jar and no redirects.
    fn bare(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for pem in &self.roots {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        b.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        self.admin.url(path)
    }
}

/// Where a sign-in stopped: the callback URL the provider sent the browser to.
struct AtCallback {
    url: reqwest::Url,
}

impl Browser {
    /// Follows redirects from `url` until a page answers or the provider sends the browser
    /// back to the gateway's callback (returned without following it).
    async fn follow(
        &self,
        w: &World,
        mut url: reqwest::Url,
    ) -> Result<AtCallback, reqwest::Response> {
        for _ in 0..10 {
            if url.as_str().starts_with(&w.url("/oidc/callback")) {
                return Ok(AtCallback { url });
            }
            let r = self.http.get(url.clone()).send().await.unwrap();
            if r.status().is_redirection() {
                let loc = r.headers()["location"].to_str().unwrap();
                url = url.join(loc).unwrap();
                continue;
            }
            // The provider's interaction: log in as the user the caller names.
            return Err(r);
        }
        panic!("too many redirects");
    }

    /// Signs `user` in at the provider, up to the provider's redirect to the callback.
    async fn sign_in_at_idp(&self, w: &World, user: &str) -> AtCallback {
        let r = self.http.get(w.url("/oidc/login")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{:?}", r.text().await);
        let to = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(to.as_str().starts_with(&w.idp.issuer), "{to}");
        let q: Vec<(String, String)> = to.query_pairs().into_owned().collect();
        let has =
            |k: &str, v: Option<&str>| q.iter().any(|(n, x)| n == k && v.is_none_or(|v| x == v));
        assert!(has("code_challenge_method", Some("S256")), "{to}");
        assert!(has("response_type", Some("code")), "{to}");
        assert!(has("state", None) && has("nonce", None) && has("code_challenge", None));
        let page = match self.follow(w, to).await {
            Ok(at) => return at,
            Err(page) => page,
        };
        let interaction = page.url().clone();
        assert!(
            interaction.path().starts_with("/interaction/"),
            "{interaction}"
        );
        let login = interaction
            .join(&format!("{}/login?user={user}", interaction.path()))
            .unwrap();
        let r = self.http.post(login).send().await.unwrap();
        assert_eq!(r.status(), 303, "{:?}", r.text().await);
        let next = interaction
            .join(r.headers()["location"].to_str().unwrap())
            .unwrap();
        match self.follow(w, next).await {
            Ok(at) => at,
            Err(r) => panic!(
                "the provider did not send the browser back: {} {:?}",
                r.status(),
                r.text().await
            ),
        }
    }

    /// The value of cookie `name` the jar would send to the admin listener at `path`.
    fn cookie(&self, w: &World, path: &str, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&w.url(path)).unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }
}

async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    (status, r.json().await.unwrap())
}

/// The officer signs in, reads the records with the session alone, and signs out.
async fn officer_signs_in_reads_and_logs_out(w: &World) {
    let b = w.browser();
    let r = b.get(&w.url("/oidc/session")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["signed_in"], false);
    let at = b.sign_in_at_idp(w, "olivia").await;
    let r = b.get(at.url.as_str()).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/");
    let set: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set.iter().find(|c| c.starts_with(SESSION)).unwrap();
    for want in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(want), "{session}");
    }
    assert!(
        b.cookie(w, "/oidc/callback", SIGN_IN).is_none(),
        "the sign-in cookie is used once"
    );

    // The page, then what its script reads: no bearer token, only the cookie.
    let page = b.get(&w.url("/")).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/oidc/login"));
    let s: Value = b.get(&w.url("/oidc/session")).await.json().await.unwrap();
    assert_eq!(s["signed_in"], true, "{s}");
    assert_eq!(s["sub"], "olivia");
    assert_eq!(s["name"], "Olivia Officer");
    assert_eq!(s["role"], "compliance-officer");
    w.admin.traffic().await;
    let r = b.get(&w.url("/audit/records?kind=decision")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["count"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(b.get(&w.url("/audit/verify")).await.status(), 200);

    // Logout is a POST from the page's own origin only.
    let origin = w.url("");
    let r = b.http.post(w.url("/oidc/logout")).send().await.unwrap();
    let (status, p) = problem(r).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (403, Some("urn:bordergate:problem:cross-origin-refused"))
    );
    let r = b
        .http
        .post(w.url("/oidc/logout"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        b.get(&w.url("/audit/records")).await.status(),
        200,
        "still signed in"
    );
    let r = b
        .http
        .post(w.url("/oidc/logout"))
        .header("origin", origin.trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        b.cookie(w, "/", SESSION).is_none(),
        "logout clears the cookie"
    );
    let (status, p) = problem(b.get(&w.url("/audit/records")).await).await;
    assert_eq!(status, 401, "{p}");
    let s: Value = b.get(&w.url("/oidc/session")).await.json().await.unwrap();
    assert_eq!(s["signed_in"], false);
}

/// A user the provider knows, without the officer role: refused, no session.
async fn user_without_the_role_is_refused(w: &World) {
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "mallory").await;
    let (status, p) = problem(b.get(at.url.as_str()).await).await;
    assert_eq!(status, 403);
    assert_eq!(p["type"], "urn:bordergate:problem:role-required");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`roles`") && detail.contains("compliance-officer"),
        "{detail}"
    );
    assert!(b.cookie(w, "/", SESSION).is_none());
    assert_eq!(b.get(&w.url("/audit/records")).await.status(), 401);
    // A browser gets a page saying why.
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "mallory").await;
    let r = b
        .http
        .get(at.url.as_str())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Role required") && html.contains("role-required"),
        "{html}"
    );
}

/// Re-signs a sign-in cookie with `nonce` changed, as only a holder of the session secret
/// could (the derivation of the gateway's cookie key).
fn with_nonce(sealed: &str, nonce: &str) -> String {
    let key = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SESSION_SECRET),
        b"bordergate admin sign-in cookie v1",
    );
    let payload = sealed.split('.').nth(1).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["nonce"] = Value::String(nonce.into());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_ref()),
    )
    .unwrap()
}

/// Sends the callback with only the sign-in cookie given (or none), from a client
/// without the jar.
async fn callback_with(w: &World, at: &AtCallback, cookie: Option<&str>) -> (u16, Value) {
    let mut r = w.bare().get(at.url.as_str());
    if let Some(c) = cookie {
        r = r.header("cookie", format!("{SIGN_IN}={c}"));
    }
    problem(r.send().await.unwrap()).await
}

/// `state`, `nonce`, the sign-in cookie and the session cookie, each tampered with.
async fn tampering_is_refused(w: &World) {
    let failed = "urn:bordergate:problem:sign-in-failed";

    // Another `state` than the one this browser's sign-in started with.
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "olivia").await;
    let sealed = b.cookie(w, "/oidc/callback", SIGN_IN).unwrap();
    let mut bent = at.url.clone();
    let pairs: Vec<(String, String)> = at.url.query_pairs().into_owned().collect();
    bent.query_pairs_mut()
        .clear()
        .extend_pairs(pairs.iter().map(|(k, v)| {
            (
                k.as_str(),
                if k == "state" {
                    "forged-state"
                } else {
                    v.as_str()
                },
            )
        }));
    let (status, p) = callback_with(w, &AtCallback { url: bent }, Some(&sealed)).await;
    assert_eq!((status, p["type"].as_str()), (401, Some(failed)), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("`state`"), "{p}");

    // A sign-in cookie with one byte changed.
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "olivia").await;
    let sealed = b.cookie(w, "/oidc/callback", SIGN_IN).unwrap();
    let mut bytes = sealed.into_bytes();
    let i = bytes.len() - 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let (status, p) = callback_with(w, &at, Some(&String::from_utf8(bytes).unwrap())).await;
    assert_eq!((status, p["type"].as_str()), (401, Some(failed)), "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("sign-in cookie"),
        "{p}"
    );

    // No sign-in cookie at all (a callback URL carried to another browser).
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "olivia").await;
    let (status, p) = callback_with(w, &at, None).await;
    assert_eq!((status, p["type"].as_str()), (401, Some(failed)), "{p}");

    // A validly signed cookie whose nonce is not the one the provider put in the ID token.
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "olivia").await;
    let sealed = b.cookie(w, "/oidc/callback", SIGN_IN).unwrap();
    let (status, p) = callback_with(w, &at, Some(&with_nonce(&sealed, "another-nonce"))).await;
    assert_eq!((status, p["type"].as_str()), (401, Some(failed)), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("nonce"), "{p}");

    // A session cookie with its payload changed, and one signed with another secret.
    let b = w.browser();
    let at = b.sign_in_at_idp(w, "olivia").await;
    assert_eq!(b.get(at.url.as_str()).await.status(), 303);
    let session = b.cookie(w, "/", SESSION).unwrap();
    let parts: Vec<&str> = session.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = Value::String("mallory".into());
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let other = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-replica-secret-0123456789abcdef"),
    )
    .unwrap();
    let bare = w.bare();
    for (what, value) in [
        ("genuine", session.as_str()),
        ("edited", &forged),
        ("foreign", &other),
    ] {
        let r = bare
            .get(w.url("/audit/records"))
            .header("cookie", format!("{SESSION}={value}"))
            .send()
            .await
            .unwrap();
        let want = if what == "genuine" { 200 } else { 401 };
        assert_eq!(r.status(), want, "{what} session cookie");
    }
}

/// A provider whose discovery names another issuer than the configured one.
async fn unknown_issuer_is_refused() {
    let w = world(Some("{issuer}/realms/other"));
    let b = w.browser();
    let (status, p) = problem(b.get(&w.url("/oidc/login")).await).await;
    assert_eq!(status, 502, "{p}");
    assert_eq!(
        p["type"],
        "urn:bordergate:problem:identity-provider-unavailable"
    );
    assert!(b.cookie(&w, "/oidc/callback", SIGN_IN).is_none());
}

/// A test that builds its world on a runtime of its own; ignored when `skip`.
fn trial<F, Fut>(name: &'static str, skip: bool, f: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    Trial::test(name, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(e.to_string()))?
            .block_on(f());
        Ok(())
    })
    .with_ignored_flag(skip)
}

fn main() {
    let args = Arguments::from_args();
    let why = missing();
    if let Some(why) = &why {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            eprintln!(
                "tests/oidc: {why}; in CI these tests must run (.ci/run installs node and runs `npm ci` in tests/oidc)"
            );
            std::process::exit(101);
        }
        eprintln!("tests/oidc: skipped (reported ignored): {why}");
    }
    let skip = why.is_some();
    let trials = vec![
        trial(
            "officer_signs_in_reads_the_records_and_logs_out",
            skip,
            || async {
                officer_signs_in_reads_and_logs_out(&world(None)).await;
            },
        ),
        trial("user_without_the_role_is_refused", skip, || async {
            user_without_the_role_is_refused(&world(None)).await;
        }),
        trial(
            "tampered_state_nonce_and_cookies_are_refused",
            skip,
            || async {
                tampering_is_refused(&world(None)).await;
            },
        ),
        trial(
            "a_provider_that_is_not_the_issuer_is_refused",
            skip,
            || async {
                unknown_issuer_is_refused().await;
            },
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
