//! Claims taken on faith (issue 15, item 9) and withdrawn entries under a live prefix
//! (item 3), each shown refused end to end against the real gateway and a real upstream
//! that records everything it receives: nothing reaches the upstream that the audit log did
//! not allow.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Gateway, Options, Upstream};
use serde_json::Value;

const EU_ROWS: &[u8] = b"id,name,email\n1,Erika Mustermann,erika@example.de\n";

/// An API hosted in Germany that answers every GET with EU personal data.
fn eu_api() -> common::Responder {
    Arc::new(|_: &common::Seen| {
        http::Response::builder()
            .status(200)
            .body(Bytes::from_static(EU_ROWS))
            .unwrap()
    })
}

/// The `eu-api` upstream at `url`, routed at `/h/`, its `/h/eu/` catalogued as EU personal
/// data; `auth` is extra YAML under `auth:` (two-space keys).
fn api_options(url: &str, auth: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: eu-api\n    url: {url}\n    jurisdiction: DE\n    timeout_secs: 5\n"
        ),
        extra_routes: "  - prefix: /h/\n    upstream: eu-api\n".into(),
        extra_catalog: "  - id: eu-api\n    kind: dataset\n    match: { prefix: /h/eu/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n".into(),
        // Inserted after the `auth.keys` items: keys of `auth` itself.
        extra_keys: auth.into(),
        ..Options::default()
    }
}

async fn get(gw: &Gateway, path: &str, token: &str) -> (u16, String, String) {
    let r = gw
        .client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (status, id, r.text().await.unwrap())
}

/// Every request the upstream `name` saw has an allow record naming it.
fn upstream_saw_only_allowed(gw: &Gateway, up: &Upstream, name: &str) {
    let allows = gw
        .records()
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "allow" && r["upstream"] == name)
        .count();
    assert_eq!(
        up.requests().len(),
        allows,
        "upstream requests vs allow records"
    );
}

fn problem(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not problem+json: {body}"))
}

/// Item 9 (a), default `refuse`: acme-us (US in the registry) claiming DE is refused with
/// its own problem type and a deny record naming the rule; its own country is decided as
/// usual; an organisation the registry does not list keeps its claim.
#[tokio::test]
async fn a_jurisdiction_claim_the_registry_contradicts_is_refused() {
    let up = Upstream::start(eu_api()).await;
    let gw = Gateway::start(api_options(&up.url(), ""));
    let liar = gw.token("mallory", "acme-us", "DE", "analytics");
    let (status, id, body) = get(&gw, "/h/eu/rows.csv", &liar).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("Mustermann"));
    let p = problem(&body);
    assert_eq!(p["type"], "urn:bordergate:problem:jurisdiction-mismatch");
    assert_eq!(p["rule"], "auth.jurisdiction-mismatch");
    assert_eq!(p["article"], "GDPR Art. 44");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("places `acme-us` in US"),
        "{p}"
    );
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["status"], 403);
    assert_eq!(d["rule"], "auth.jurisdiction-mismatch");
    assert_eq!(d["caller"]["org"], "acme-us");
    assert_eq!(d["caller"]["jurisdiction"], "DE");
    assert!(d["reason"].as_str().unwrap().contains("registry"), "{d}");

    // The registry's own country: decided on its merits (no mechanism → 451).
    let honest = gw.token("bob", "acme-us", "US", "analytics");
    let (status, _, body) = get(&gw, "/h/eu/rows.csv", &honest).await;
    assert_eq!(status, 451, "{body}");
    assert_eq!(problem(&body)["rule"], "eu.chapter-v.no-basis");

    // Not in the registry: its claim stands (documented), and DE to DE is allowed.
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let (status, _, body) = get(&gw, "/h/eu/rows.csv", &de).await;
    assert_eq!(status, 200);
    assert!(body.contains("Mustermann"));
    upstream_saw_only_allowed(&gw, &up, "eu-api");
    assert_eq!(up.requests().len(), 1);

    // `policy explain` takes a principal and answers as the gateway does.
    let out = std::process::Command::new(common::BIN)
        .args(["policy", "explain", "--json", "--config"])
        .arg(&gw.config)
        .args(["--path", "/h/eu/rows.csv", "--jurisdiction", "DE"])
        .args(["--org", "acme-us", "--purpose", "analytics"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["rule"], "auth.jurisdiction-mismatch", "{v}");
    assert_eq!(v["status"], 403);
}

/// Item 9 (a), `registry`: the registry's country is the destination and the record keeps
/// both values; `trust` is the old behaviour.
#[tokio::test]
async fn registry_mode_decides_on_the_registry_country_and_records_both() {
    let up = Upstream::start(eu_api()).await;
    let gw = Gateway::start(api_options(&up.url(), "  jurisdiction_claim: registry\n"));
    let liar = gw.token("mallory", "acme-us", "DE", "analytics");
    let (status, id, body) = get(&gw, "/h/eu/rows.csv", &liar).await;
    assert_eq!(status, 451, "{body}");
    assert!(!body.contains("Mustermann"));
    assert_eq!(problem(&body)["rule"], "eu.chapter-v.no-basis");
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["destination"], "US");
    assert_eq!(d["caller"]["jurisdiction"], "US");
    assert_eq!(d["caller"]["claimed_jurisdiction"], "DE");

    // globex-us is DPF certified: allowed, but as a transfer to the US.
    let dpf = gw.token("carol", "globex-us", "DE", "analytics");
    let (status, id, body) = get(&gw, "/h/eu/rows.csv", &dpf).await;
    assert_eq!(status, 200, "{body}");
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["destination"], "US");
    assert_eq!(d["caller"]["claimed_jurisdiction"], "DE");
    assert_ne!(d["rule"], "eu.same-bloc");
    upstream_saw_only_allowed(&gw, &up, "eu-api");
    assert_eq!(up.requests().len(), 1);
    drop(gw);

    let gw = Gateway::start(api_options(&up.url(), "  jurisdiction_claim: trust\n"));
    let liar = gw.token("mallory", "acme-us", "DE", "analytics");
    let (status, id, _) = get(&gw, "/h/eu/rows.csv", &liar).await;
    assert_eq!(status, 200, "trust takes the claim as it is");
    assert_eq!(gw.decision(&id)["destination"], "DE");
    assert!(
        gw.decision(&id)["caller"]
            .get("claimed_jurisdiction")
            .is_none()
    );
}

/// A token for alice of acme-de signed with the gateway's development secret, with the
/// given time claims (JSON members, e.g. `"iat":1,"exp":2`).
fn timed_token(gw: &Gateway, times: &str) -> String {
    let claims = format!(
        r#"{{"sub":"alice","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"bordergate",{times}}}"#
    );
    common::hs256_jwt(&gw.secret(), r#"{"alg":"HS256","kid":"dev"}"#, &claims)
}

/// Item 9 (b): a token issued in the future, one living longer than the maximum, and one
/// without `iat` while a maximum is set are 401s with their own rule; `bordergate token`
/// will not mint what the gateway would refuse; `max_token_lifetime_secs: 0` lifts the
/// maximum (and the need for `iat`) but never the future check.
#[tokio::test]
async fn token_lifetimes_are_bounded_and_iat_is_checked() {
    let up = Upstream::start(eu_api()).await;
    let gw = Gateway::start(api_options(&up.url(), ""));
    let now = common::now();
    let day = 24 * 3600;
    let cases = [
        (
            format!(r#""iat":{},"exp":{}"#, now + 3600, now + 7200),
            "issued-in-future",
        ),
        (
            format!(r#""iat":{},"exp":{}"#, now - 60, now + 2 * day),
            "lifetime-too-long",
        ),
        (format!(r#""exp":{}"#, now + 600), "missing-claim"),
        (
            format!(r#""iat":"yesterday","exp":{}"#, now + 600),
            "invalid-claim",
        ),
    ];
    for (times, code) in &cases {
        let t = timed_token(&gw, times);
        let r = gw
            .client()
            .get(gw.url("/h/eu/rows.csv"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{times}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains(&format!("error_description=\"{code}\"")),
            "{challenge}"
        );
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let p = problem(&r.text().await.unwrap());
        assert_eq!(p["type"], "urn:bordergate:problem:unauthenticated");
        assert_eq!(p["rule"], format!("auth.{code}"));
        let d = gw.decision(&id);
        assert_eq!(d["decision"], "deny");
        assert_eq!(d["rule"], format!("auth.{code}"));
    }
    // Within the bounds: a day exactly, issued within the leeway.
    let ok = timed_token(
        &gw,
        &format!(r#""iat":{},"exp":{}"#, now + 10, now + 10 + day),
    );
    assert_eq!(get(&gw, "/h/eu/rows.csv", &ok).await.0, 200);
    upstream_saw_only_allowed(&gw, &up, "eu-api");
    assert_eq!(up.requests().len(), 1);

    let out = std::process::Command::new(common::BIN)
        .args([
            "token",
            "--sub",
            "a",
            "--org",
            "acme-de",
            "--jurisdiction",
            "DE",
        ])
        .args(["--purpose", "analytics", "--ttl", "2d", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_token_lifetime_secs"));
    drop(gw);

    let up = Upstream::start(eu_api()).await;
    let gw = Gateway::start(api_options(&up.url(), "  max_token_lifetime_secs: 0\n"));
    for times in [
        format!(r#""iat":{},"exp":{}"#, now - 60, now + 30 * day),
        format!(r#""exp":{}"#, now + 600),
    ] {
        let t = timed_token(&gw, &times);
        assert_eq!(get(&gw, "/h/eu/rows.csv", &t).await.0, 200, "{times}");
    }
    let future = timed_token(
        &gw,
        &format!(r#""iat":{},"exp":{}"#, now + 3600, now + 7200),
    );
    assert_eq!(get(&gw, "/h/eu/rows.csv", &future).await.0, 401);
    upstream_saw_only_allowed(&gw, &up, "eu-api");
}

/// Item 3: a withdrawn entry under a live prefix refuses its paths (451, the withdrawal
/// rule, nothing at the upstream); a withdrawal dated in the future is not yet in force; a
/// sibling path under the prefix is still served.
#[tokio::test]
async fn a_withdrawn_entry_under_a_live_prefix_is_refused() {
    let up = Upstream::start(Arc::new(|s: &common::Seen| {
        http::Response::builder()
            .status(200)
            .body(Bytes::from(format!("wiki text of {}\n", s.uri)))
            .unwrap()
    }))
    .await;
    let gw = Gateway::start(Options {
        extra_upstreams: format!(
            "  - name: wiki\n    url: {}\n    jurisdiction: IE\n    timeout_secs: 5\n",
            up.url()
        ),
        extra_routes: "  - prefix: /datasets/public-wiki/\n    upstream: wiki\n".into(),
        extra_catalog: "  - id: public-wiki-old\n    kind: dataset\n    match: { regex: '^/datasets/public-wiki/old-.*$' }\n    origins: [IE]\n    categories: [public]\n    withdrawn: { date: 2020-01-01, reason: licence withdrawn }\n  - id: public-wiki-later\n    kind: dataset\n    match: { regex: '^/datasets/public-wiki/later-.*$' }\n    origins: [IE]\n    categories: [public]\n    withdrawn: { date: 2999-01-01, reason: licence ends }\n".into(),
        ..Options::default()
    });
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let (status, id, body) = get(&gw, "/datasets/public-wiki/old-dump.csv", &t).await;
    assert_eq!(status, 451, "{body}");
    assert!(!body.contains("wiki text"));
    let p = problem(&body);
    assert_eq!(p["type"], "urn:bordergate:problem:data-withdrawn");
    assert_eq!(p["rule"], "catalog.withdrawn");
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["rule"], "catalog.withdrawn");
    assert!(
        d["reason"].as_str().unwrap().contains("public-wiki-old"),
        "{d}"
    );
    assert!(
        up.requests().is_empty(),
        "the withdrawn path reached the upstream"
    );

    for path in [
        "/datasets/public-wiki/later-dump.csv",
        "/datasets/public-wiki/sample.txt",
    ] {
        let (status, _, body) = get(&gw, path, &t).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("wiki text"));
    }
    upstream_saw_only_allowed(&gw, &up, "wiki");
    assert_eq!(up.requests().len(), 2);
    assert!(up.requests().iter().all(|s| !s.uri.contains("old-")));
}

/// An upstream as many are: a 304 to a matching `If-None-Match` without the tag headers of
/// its 200, which labels the rows `x-data-origin: DE`, `x-data-categories: personal`.
fn revalidating_api() -> common::Responder {
    Arc::new(|s: &common::Seen| {
        let etag = "\"rows-v1\"";
        if s.headers.get("if-none-match").is_some_and(|v| v == etag) {
            return http::Response::builder()
                .status(304)
                .header("etag", etag)
                .body(Bytes::new())
                .unwrap();
        }
        http::Response::builder()
            .status(200)
            .header("etag", etag)
            .header("last-modified", "Tue, 21 Oct 2025 07:28:00 GMT")
            .header("x-data-origin", "DE")
            .header("x-data-categories", "personal")
            .body(Bytes::from_static(EU_ROWS))
            .unwrap()
    })
}

/// Item 9 (d): a conditional GET is decided on the full, tagged response, never on a bare
/// 304: a refused US caller with `If-None-Match` gets the refusal, not a 304 that says the
/// data exists; an allowed caller still gets its 304 (from the gateway), without the body.
#[tokio::test]
async fn a_304_is_decided_like_the_200_it_stands_for() {
    let up = Upstream::start(revalidating_api()).await;
    // Catalogued as public: only the upstream's labels say the rows are EU personal data.
    let gw = Gateway::start(Options {
        extra_upstreams: format!(
            "  - name: labelled\n    url: {}\n    jurisdiction: DE\n    timeout_secs: 5\n",
            up.url()
        ),
        extra_routes: "  - prefix: /l/\n    upstream: labelled\n".into(),
        extra_catalog: "  - id: labelled\n    kind: dataset\n    match: { prefix: /l/ }\n    origins: [IE]\n    categories: [public]\n    purposes: [analytics]\n".into(),
        ..Options::default()
    });
    let cond = |t: &str, inm: &str| {
        gw.client()
            .get(gw.url("/l/rows.csv"))
            .bearer_auth(t.to_string())
            .header("if-none-match", inm.to_string())
    };
    let us = gw.token("mallory", "acme-us", "US", "analytics");
    for inm in ["\"rows-v1\"", "W/\"rows-v1\"", "*"] {
        let r = cond(&us, inm).send().await.unwrap();
        assert_eq!(r.status(), 451, "{inm}");
        assert!(r.headers().get("etag").is_none());
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        assert!(!body.contains("Mustermann"));
        assert_eq!(problem(&body)["rule"], "eu.chapter-v.no-basis");
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "refused", "{c}");
        assert_eq!(c["status"], 451);
        assert_eq!(c["recheck"]["decision"], "deny");
    }
    // HEAD alike.
    let r = gw
        .client()
        .head(gw.url("/l/rows.csv"))
        .bearer_auth(&us)
        .header("if-none-match", "\"rows-v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);

    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let r = cond(&de, "\"rows-v1\"").send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "\"rows-v1\"");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(r.bytes().await.unwrap().is_empty());
    let c = gw.completion(&id).await;
    assert_eq!(c["status"], 304);
    assert_eq!(c["outcome"], "complete");
    assert_eq!(c["bytes_out"], 0);
    // A tag that no longer matches: the full rows; If-Modified-Since as well.
    let r = cond(&de, "\"rows-v0\"").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Mustermann"));
    let r = gw
        .client()
        .get(gw.url("/l/rows.csv"))
        .bearer_auth(&de)
        .header("if-modified-since", "Wed, 22 Oct 2025 07:28:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = gw
        .client()
        .get(gw.url("/l/rows.csv"))
        .bearer_auth(&de)
        .header("if-match", "\"rows-v0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(
        problem(&r.text().await.unwrap())["type"],
        "urn:bordergate:problem:precondition-failed"
    );

    // The upstream was never asked a condition, so it never answered a bare 304, and it
    // saw only requests the log allowed.
    let seen = up.requests();
    for s in &seen {
        for h in [
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
        ] {
            assert!(s.headers.get(h).is_none(), "{h} reached the upstream");
        }
    }
    upstream_saw_only_allowed(&gw, &up, "labelled");
}

/// A fresh Ed25519 key pair.
fn ed25519() -> aws_lc_rs::signature::Ed25519KeyPair {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// A JWKS document of the given (kid, key) pairs.
fn jwks(keys: &[(&str, &aws_lc_rs::signature::Ed25519KeyPair)]) -> String {
    use aws_lc_rs::signature::KeyPair;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, k)| {
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                "kid": kid, "x": b64.encode(k.public_key().as_ref()),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// A token of alice (acme-de, DE) signed with `key` as `kid`.
fn ed25519_jwt(kid: &str, key: &aws_lc_rs::signature::Ed25519KeyPair) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = common::now();
    let claims = format!(
        r#"{{"sub":"alice","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"bordergate","iat":{now},"exp":{}}}"#,
        now + 600
    );
    let input = format!(
        "{}.{}",
        b64.encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#)),
        b64.encode(claims)
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64.encode(sig.as_ref()))
}

/// Waits (20 s at most) until `token` gets `want` on the EU API.
async fn until_status(gw: &Gateway, token: &str, want: u16) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (s, id, _) = get(gw, "/h/eu/rows.csv", token).await;
        if s == want {
            return id;
        }
        assert!(std::time::Instant::now() < end, "still {s}, want {want}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The audit `reload` events so far.
fn reloads(gw: &Gateway) -> Vec<Value> {
    gw.records()
        .into_iter()
        .filter(|r| r["kind"] == "event" && r["event"] == "reload")
        .collect()
}

/// Item 9 (c): the JWKS file is watched: a key removed from it — by an atomic rename over
/// the file or by rewriting it in place — stops validating its tokens within seconds,
/// without SIGHUP, and the reload is in the audit log naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_jwks_file_stops_validating_by_itself() {
    let (k1, k2, k3) = (ed25519(), ed25519(), ed25519());
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("keys.jwks");
    std::fs::write(&file, jwks(&[("k1", &k1), ("k2", &k2)])).unwrap();
    let up = Upstream::start(eu_api()).await;
    let gw = Gateway::start(api_options(
        &up.url(),
        &format!("  jwks: {}\n", file.display()),
    ));
    let (t1, t2, t3) = (
        ed25519_jwt("k1", &k1),
        ed25519_jwt("k2", &k2),
        ed25519_jwt("k3", &k3),
    );
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t1).await.0, 200);
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t2).await.0, 200);
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t3).await.0, 401);
    assert!(reloads(&gw).is_empty());

    // Atomically: a new file renamed over the old one, without k1.
    let tmp = keys.path().join(".keys.jwks.tmp");
    std::fs::write(&tmp, jwks(&[("k2", &k2), ("k3", &k3)])).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let id = until_status(&gw, &t1, 401).await;
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["rule"], "auth.unknown-key");
    let r = reloads(&gw);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0]["detail"].as_str().unwrap().contains("keys.jwks"),
        "{}",
        r[0]
    );
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t2).await.0, 200);
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t3).await.0, 200);

    // In place: the same file truncated and written again, without k2.
    std::fs::write(&file, jwks(&[("k3", &k3)])).unwrap();
    until_status(&gw, &t2, 401).await;
    assert!(reloads(&gw).len() >= 2);
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t1).await.0, 401);
    assert_eq!(get(&gw, "/h/eu/rows.csv", &t3).await.0, 200);
    upstream_saw_only_allowed(&gw, &up, "eu-api");
}
