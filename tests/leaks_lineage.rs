//! Issue 15, item 10 — lineage laundering, shown refused end to end against the real
//! gateway and real upstreams that record everything they receive: an upload's declared
//! lineage is checked against the uploader's recent personal-data downloads (also after a
//! restart, from the audit trail) and against the catalog's known content digests; a body
//! that does not match its declared digest never reaches the upstream whole.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use common::{Gateway, Options, Upstream};

/// The bytes of a model derived from EU customer data, known to the catalog by digest.
const EU_WEIGHTS: &[u8] = b"eu-derived weights v1: 0.12 0.98 -0.33\n";

fn sha256(b: &[u8]) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .try_into()
        .unwrap()
}

fn content_digest(b: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha256(b))
    )
}

/// A model registry: answers an upload with 201 and no body, a GET with the stored
/// artifact's bytes named by the Hugging Face header.
fn registry() -> common::Responder {
    Arc::new(|s: &common::Seen| {
        if s.method == "GET" {
            return http::Response::builder()
                .status(200)
                .header(
                    "x-linked-etag",
                    format!("\"{}\"", hex::encode(sha256(EU_WEIGHTS))),
                )
                .body(Bytes::from_static(EU_WEIGHTS))
                .unwrap();
        }
        http::Response::builder()
            .status(201)
            .body(Bytes::new())
            .unwrap()
    })
}

/// Two registries in the US: `hub` run by acme-us (no transfer mechanism), `globex`
/// run by globex-us (EU-US DPF); a public mirror in Germany; the EU model by digest.
fn options(hub: &str, extra_config: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: hub\n    url: {hub}\n    jurisdiction: US\n    operator: acme-us\n    timeout_secs: 5\n  - name: globex\n    url: {hub}\n    jurisdiction: US\n    operator: globex-us\n    timeout_secs: 5\n  - name: mirror\n    url: {hub}\n    jurisdiction: DE\n    timeout_secs: 5\n"
        ),
        extra_routes: "  - prefix: /hub/us/\n    upstream: hub\n    uploads: true\n  - prefix: /hub/globex/\n    upstream: globex\n    uploads: true\n  - prefix: /mirror/\n    upstream: mirror\n".into(),
        extra_catalog: format!(
            "  - id: hub-us\n    kind: store\n    match: {{ prefix: /hub/us/ }}\n  - id: hub-globex\n    kind: store\n    match: {{ prefix: /hub/globex/ }}\n  - id: public-mirror\n    kind: dataset\n    match: {{ prefix: /mirror/ }}\n    origins: [IE]\n    categories: [public]\n  - id: eu-weights\n    kind: model\n    match: {{ prefix: /models/eu-weights/ }}\n    derived_from: [eu-customers]\n    digests: [\"sha256:{}\"]\n",
            hex::encode(sha256(EU_WEIGHTS))
        ),
        extra_config: extra_config.into(),
        ..Options::default()
    }
}

/// Downloads EU customer data (personal, DE) as `token`.
async fn download_eu(gw: &Gateway, token: &str) {
    let r = gw
        .client()
        .get(gw.url("/datasets/eu-customers/customers.csv"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
}

/// PUTs `body` to `path` as `token` declaring `lineage`, with extra headers.
async fn upload(
    gw: &Gateway,
    token: &str,
    path: &str,
    lineage: &str,
    headers: &[(&str, String)],
    body: reqwest::Body,
) -> (u16, String, http::HeaderMap, String) {
    let mut req = gw
        .client()
        .put(gw.url(path))
        .bearer_auth(token)
        .header("bordergate-lineage", lineage);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let id = h["x-request-id"].to_str().unwrap().to_string();
    (status, id, h, r.text().await.unwrap())
}

/// Every upload the upstream received has an allow record naming its upstream.
fn only_allowed_reached(gw: &Gateway, up: &Upstream) {
    let allowed_puts = gw
        .records()
        .iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["decision"] == "allow"
                && r["method"] == "PUT"
                && matches!(r["upstream"].as_str(), Some("hub" | "globex"))
        })
        .count();
    let puts = up.requests().iter().filter(|s| s.method == "PUT").count();
    assert_eq!(puts, allowed_puts, "{:?}", up.requests());
}

#[tokio::test]
async fn public_lineage_after_an_eu_download_is_refused() {
    let up = Upstream::start(registry()).await;
    let gw = Gateway::start(options(&up.url(), ""));
    let alice = gw.token("alice", "acme-de", "DE", "training");
    download_eu(&gw, &alice).await;

    let (status, id, h, body) = upload(
        &gw,
        &alice,
        "/hub/us/support-bot-v2.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"weights"[..]),
    )
    .await;
    assert_eq!(status, 451, "{body}");
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["type"], "urn:bordergate:problem:lineage-unaccounted");
    assert_eq!(p["rule"], "lineage.undeclared-recent");
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("`eu-customers`"), "{detail}");
    assert!(detail.contains(&today), "{detail}");
    assert!(
        h["bordergate-decision"]
            .to_str()
            .unwrap()
            .contains("lineage.undeclared-recent")
    );
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["rule"], "lineage.undeclared-recent");
    assert_eq!(d["undeclared_recent"]["action"], "refuse");
    assert_eq!(
        d["undeclared_recent"]["downloads"][0]["dataset"],
        "eu-customers"
    );
    assert_eq!(
        d["undeclared_recent"]["downloads"][0]["origins"],
        serde_json::json!(["DE"])
    );

    // Declaring the EU data makes it an upload of EU personal data, decided by the regime:
    // acme-us has no transfer mechanism.
    let (status, _, _, body) = upload(
        &gw,
        &alice,
        "/hub/us/support-bot-v2.bin",
        "public-wiki,eu-customers",
        &[],
        reqwest::Body::from(&b"weights"[..]),
    )
    .await;
    assert_eq!(status, 451, "{body}");
    assert!(body.contains("eu.chapter-v.no-basis"), "{body}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // A caller with no such recent download uploads public-lineage data as before.
    let bob = gw.token("bob", "acme-de", "DE", "training");
    let (status, id, _, body) = upload(
        &gw,
        &bob,
        "/hub/us/wiki-embeddings.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"embeddings"[..]),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "allow");
    assert!(d.get("undeclared_recent").is_none(), "{d}");
    // Same subject in another organisation is another principal.
    let alice_other = gw.token("alice", "acme-fr", "DE", "training");
    let (status, _, _, body) = upload(
        &gw,
        &alice_other,
        "/hub/us/wiki-embeddings.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"embeddings"[..]),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(up.requests().len(), 2);
    assert!(
        up.requests()
            .iter()
            .all(|s| s.body.as_ref() == b"embeddings")
    );
    only_allowed_reached(&gw, &up);
}

#[tokio::test]
async fn the_check_survives_a_restart_seeded_from_the_trail() {
    let up = Upstream::start(registry()).await;
    let keep = tempfile::tempdir().unwrap();
    let audit = keep.path().join("audit.log");
    let opts = Options {
        audit_path: Some(audit.clone()),
        ..options(&up.url(), "")
    };
    let mut gw = Gateway::start(opts.clone());
    let alice = gw.token("alice", "acme-de", "DE", "training");
    download_eu(&gw, &alice).await;
    gw.stop();

    let gw = Gateway::start(opts);
    let alice = gw.token("alice", "acme-de", "DE", "training");
    let (status, id, _, body) = upload(
        &gw,
        &alice,
        "/hub/us/support-bot-v2.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"weights"[..]),
    )
    .await;
    assert_eq!(status, 451, "{body}");
    assert!(body.contains("lineage.undeclared-recent"), "{body}");
    assert_eq!(gw.decision(&id)["rule"], "lineage.undeclared-recent");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    // The trail still verifies across both runs.
    let v = common::verify(&audit);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[tokio::test]
async fn flag_decides_with_the_recent_data_and_says_so() {
    let up = Upstream::start(registry()).await;
    let gw = Gateway::start(options(
        &up.url(),
        "lineage:\n  window_days: 7\n  undeclared_recent: flag\n",
    ));
    let alice = gw.token("alice", "acme-de", "DE", "training");
    download_eu(&gw, &alice).await;

    // To globex-us (EU-US DPF) the upload of EU personal data is lawful: allowed, flagged.
    let (status, id, h, body) = upload(
        &gw,
        &alice,
        "/hub/globex/support-bot-v2.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"weights"[..]),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        h["bordergate-lineage-flag"],
        "undeclared-recent; datasets=\"eu-customers\""
    );
    let d = gw.decision(&id);
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["undeclared_recent"]["action"], "flag");
    assert_eq!(d["undeclared_recent"]["window_days"], 7);
    assert_eq!(
        d["undeclared_recent"]["downloads"][0]["dataset"],
        "eu-customers"
    );
    // Decided as derived from the recent data.
    assert!(
        d["tags"]["origins"]
            .as_array()
            .unwrap()
            .contains(&"DE".into())
    );
    assert!(
        d["tags"]["lineage"]
            .as_array()
            .unwrap()
            .contains(&"eu-customers".into())
    );

    // To acme-us (no mechanism) flagging does not launder: the regime refuses.
    let (status, id, _, body) = upload(
        &gw,
        &alice,
        "/hub/us/support-bot-v2.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"weights"[..]),
    )
    .await;
    assert_eq!(status, 451, "{body}");
    assert!(body.contains("eu.chapter-v.no-basis"), "{body}");
    assert_eq!(gw.decision(&id)["undeclared_recent"]["action"], "flag");
    assert_eq!(up.requests().len(), 1);
    only_allowed_reached(&gw, &up);
}

#[tokio::test]
async fn a_known_artifact_reuploaded_under_public_lineage_is_refused() {
    let up = Upstream::start(registry()).await;
    let gw = Gateway::start(options(&up.url(), ""));
    // No recent download: only the digest gives the weights away.
    let bob = gw.token("bob", "acme-de", "DE", "training");
    let hexd = hex::encode(sha256(EU_WEIGHTS));
    for (name, value) in [
        ("content-digest", content_digest(EU_WEIGHTS)),
        ("x-amz-content-sha256", hexd.clone()),
    ] {
        let (status, id, _, body) = upload(
            &gw,
            &bob,
            "/hub/us/innocent.bin",
            "public-wiki",
            &[(name, value)],
            reqwest::Body::from(EU_WEIGHTS),
        )
        .await;
        assert_eq!(status, 451, "{name}: {body}");
        assert!(body.contains("eu.chapter-v.no-basis"), "{body}");
        let d = gw.decision(&id);
        assert!(
            d["tags"]["lineage"]
                .as_array()
                .unwrap()
                .contains(&"eu-weights".into()),
            "{d}"
        );
        assert!(
            d["tags"]["origins"]
                .as_array()
                .unwrap()
                .contains(&"DE".into())
        );
    }
    // A Git LFS object path names it too.
    let (status, _, _, body) = upload(
        &gw,
        &bob,
        &format!("/hub/us/repo.git/info/lfs/objects/{hexd}"),
        "public-wiki",
        &[],
        reqwest::Body::from(EU_WEIGHTS),
    )
    .await;
    assert_eq!(status, 451, "{body}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // Unreadable or disagreeing digests are refused, not ignored.
    let (status, _, _, body) = upload(
        &gw,
        &bob,
        "/hub/us/innocent.bin",
        "public-wiki",
        &[("content-digest", "sha-256=not-base64".into())],
        reqwest::Body::from(EU_WEIGHTS),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _, body) = upload(
        &gw,
        &bob,
        "/hub/us/innocent.bin",
        "public-wiki",
        &[
            ("content-digest", content_digest(b"other")),
            ("x-amz-content-sha256", hexd),
        ],
        reqwest::Body::from(EU_WEIGHTS),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

#[tokio::test]
async fn a_body_that_does_not_match_its_declared_digest_never_arrives_whole() {
    let up = Upstream::start(registry()).await;
    let gw = Gateway::start(options(&up.url(), ""));
    let bob = gw.token("bob", "acme-de", "DE", "training");
    // Declares the digest of harmless bytes, sends other (EU) bytes: 256 KiB, so the body
    // crosses in many frames.
    let mut real = EU_WEIGHTS.repeat(256 * 1024 / EU_WEIGHTS.len() + 1);
    real.truncate(256 * 1024);
    let claimed = content_digest(b"harmless");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        real.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let bodies = [
        ("content-length", reqwest::Body::from(real.clone())),
        (
            "chunked",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        ),
    ];
    for (how, body) in bodies {
        let (status, id, _, text) = upload(
            &gw,
            &bob,
            "/hub/globex/innocent.bin",
            "public-wiki",
            &[("content-digest", claimed.clone())],
            body,
        )
        .await;
        assert_eq!(status, 400, "{how}: {text}");
        let p: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["type"], "urn:bordergate:problem:digest-mismatch", "{how}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("sha256:{}", hex::encode(sha256(&real)))),
            "{text}"
        );
        // Allowed and forwarded, then cut: the completion says so.
        assert_eq!(gw.decision(&id)["decision"], "allow");
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "aborted", "{how}: {c}");
        assert_eq!(c["status"], 400);
        assert!(
            c["detail"].as_str().unwrap().contains("cut before its end"),
            "{c}"
        );
    }
    // HTTP/1.1 clients alike, with a length and chunked.
    let head = |framing: &str| {
        format!(
            "PUT /hub/globex/h1.bin HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {bob}\r\nbordergate-lineage: public-wiki\r\ncontent-digest: {claimed}\r\n{framing}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let mut with_length = head(&format!("content-length: {}", real.len()));
    with_length.extend_from_slice(&real);
    let mut chunked = head("transfer-encoding: chunked");
    for c in real.chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for (how, req) in [
        ("http/1.1 length", with_length),
        ("http/1.1 chunked", chunked),
    ] {
        let (status, text) = common::raw_request(&gw, &req).await;
        assert_eq!(status, 400, "{how}: {text}");
        assert!(text.contains("digest-mismatch"), "{how}: {text}");
    }
    // The upstream may have seen the request start, never its whole body.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for s in up.requests() {
        assert_ne!(
            s.body.as_ref(),
            real.as_slice(),
            "the upstream got the whole body"
        );
        assert!(s.body.len() < real.len());
    }
    // Into the file store: nothing is stored, not even in part.
    let (status, id, _, text) = upload(
        &gw,
        &bob,
        "/registry/us/innocent.bin",
        "public-wiki",
        &[("content-digest", claimed.clone())],
        reqwest::Body::from(real.clone()),
    )
    .await;
    assert_eq!(status, 400, "file store: {text}");
    assert_eq!(gw.completion(&id).await["outcome"], "aborted");
    let dir = gw.store.join("registry/us");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().contains("innocent")),
        "{left:?}"
    );
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().starts_with(".bordergate-tmp-")),
        "{left:?}"
    );
    // The same bytes with their own digest go through whole.
    let (status, _, _, text) = upload(
        &gw,
        &bob,
        "/hub/globex/innocent.bin",
        "public-wiki",
        &[("content-digest", content_digest(&real))],
        reqwest::Body::from(real.clone()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert!(
        up.requests()
            .iter()
            .any(|s| s.body.as_ref() == real.as_slice())
    );
}

#[tokio::test]
async fn a_download_whose_response_names_a_known_artifact_is_decided_as_it() {
    let up = Upstream::start(registry()).await;
    let gw = Gateway::start(options(&up.url(), ""));
    // The mirror's catalog entry says public; its answer names the EU weights' digest.
    let us = gw.token("mallory", "acme-us", "US", "training");
    let r = gw
        .client()
        .get(gw.url("/mirror/weights.bin"))
        .bearer_auth(&us)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert_eq!(status, 451);
    assert!(!body.windows(EU_WEIGHTS.len()).any(|w| w == EU_WEIGHTS));
    let c = gw.completion(&id).await;
    assert_eq!(c["outcome"], "refused", "{c}");
    assert_eq!(c["bytes_out"], 0);
    assert_eq!(c["recheck"]["origins"], serde_json::json!(["DE"]));
    // In the EU the same download is allowed, and counts as a download of EU personal
    // data for the caller's later uploads.
    let de = gw.token("carol", "acme-de", "DE", "training");
    let r = gw
        .client()
        .get(gw.url("/mirror/weights.bin"))
        .bearer_auth(&de)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), EU_WEIGHTS);
    let (status, _, _, body) = upload(
        &gw,
        &de,
        "/hub/us/retrained.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"retrained"[..]),
    )
    .await;
    assert_eq!(status, 451, "{body}");
    assert!(body.contains("lineage.undeclared-recent"), "{body}");
    only_allowed_reached(&gw, &up);
}

/// A search API in Germany that answers a POST with EU personal data, labelled.
fn search_api() -> common::Responder {
    Arc::new(|_: &common::Seen| {
        http::Response::builder()
            .status(200)
            .header("x-data-origin", "DE")
            .header("x-data-categories", "personal")
            .body(Bytes::from_static(
                b"id,name,email\n1,Erika Mustermann,erika@example.de\n",
            ))
            .unwrap()
    })
}

#[tokio::test]
async fn data_in_the_response_to_an_upload_counts_as_a_download() {
    let up = Upstream::start(registry()).await;
    let search = Upstream::start(search_api()).await;
    let keep = tempfile::tempdir().unwrap();
    let mut opts = options(&up.url(), "");
    opts.audit_path = Some(keep.path().join("audit.log"));
    opts.extra_upstreams.push_str(&format!(
        "  - name: search\n    url: {}\n    jurisdiction: DE\n    timeout_secs: 5\n",
        search.url()
    ));
    opts.extra_routes
        .push_str("  - prefix: /h/\n    upstream: search\n    uploads: true\n");
    opts.extra_catalog.push_str("  - id: eu-search\n    kind: dataset\n    match: { prefix: /h/eu/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n");
    let mut gw = Gateway::start(opts.clone());
    let dave = gw.token("dave", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .post(gw.url("/h/eu/search"))
        .bearer_auth(&dave)
        .header("bordergate-lineage", "public-wiki")
        .body("{\"q\": \"*\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Mustermann"));
    for restarted in [false, true] {
        if restarted {
            gw.stop();
            gw = Gateway::start(opts.clone());
        }
        let dave = gw.token("dave", "acme-de", "DE", "analytics");
        let (status, _, _, body) = upload(
            &gw,
            &dave,
            "/hub/us/ranker.bin",
            "public-wiki",
            &[],
            reqwest::Body::from(&b"ranker"[..]),
        )
        .await;
        assert_eq!(status, 451, "restarted {restarted}: {body}");
        assert!(body.contains("lineage.undeclared-recent"), "{body}");
        assert!(body.contains("`eu-search`"), "{body}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

fn pg_dsn() -> String {
    std::env::var("BORDERGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A client for clean-up, or None (after a note) when no server runs outside CI.
async fn pg() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&pg_dsn(), tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) => {
            common::skip(
                &format!("no PostgreSQL at `{}`: {e}", pg_dsn()),
                "start one (trust auth, database `test`) or set BORDERGATE_TEST_POSTGRES",
            );
            None
        }
    }
}

/// With the PostgreSQL store, a replica started later reads the whole fleet's trail: a
/// download through one replica refuses the laundering upload through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_the_postgres_store_share_what_they_served() {
    let Some(c) = pg().await else { return };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let t = format!("bgt_lineage_{}", &id[..10]);
    let up = Upstream::start(registry()).await;
    let opts = Options {
        extra_audit: format!(
            "  sink: postgres\n  postgres:\n    dsn: {}\n    table: {t}\n",
            pg_dsn()
        ),
        ..options(&up.url(), "")
    };
    let named = |name: &str| Options {
        extra_config: format!("name: {name}\n"),
        ..opts.clone()
    };
    let a = Gateway::start(named("replica-a"));
    let alice = a.token("alice", "acme-de", "DE", "training");
    download_eu(&a, &alice).await;
    // Replica B starts after the download and has served nothing itself.
    let b = Gateway::start(named("replica-b"));
    let alice = b.token("alice", "acme-de", "DE", "training");
    let r = b
        .client()
        .put(b.url("/hub/us/support-bot-v2.bin"))
        .bearer_auth(&alice)
        .header("bordergate-lineage", "public-wiki")
        .body("weights")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 451, "{body}");
    assert!(body.contains("lineage.undeclared-recent"), "{body}");
    assert!(body.contains("`eu-customers`"), "{body}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    drop((a, b));
    common::pg::drop_tables(&c, &t).await;
}

/// An exact copy of a known artifact uploaded with no digest at all: the gateway hashes the
/// body as it streams and decides the upload again as the artifact before its end.
#[tokio::test]
async fn a_known_artifact_uploaded_without_a_digest_is_recognised_by_its_bytes() {
    let up = Upstream::start(registry()).await;
    let gw = Gateway::start(options(&up.url(), ""));
    let bob = gw.token("bob", "acme-de", "DE", "training");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        EU_WEIGHTS.chunks(8).map(|c| Ok(c.to_vec())).collect();
    let bodies = [
        ("/hub/us/innocent.bin", reqwest::Body::from(EU_WEIGHTS)),
        (
            "/hub/us/innocent.bin",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        ),
        ("/registry/us/innocent.bin", reqwest::Body::from(EU_WEIGHTS)),
    ];
    for (path, body) in bodies {
        let (status, id, h, text) = upload(&gw, &bob, path, "public-wiki", &[], body).await;
        assert_eq!(status, 451, "{path}: {text}");
        assert!(text.contains("eu.chapter-v.no-basis"), "{text}");
        assert!(
            h["bordergate-decision"]
                .to_str()
                .unwrap()
                .starts_with("deny")
        );
        // Allowed on its declaration, refused on its content: on the completion.
        assert_eq!(gw.decision(&id)["decision"], "allow");
        let c = gw.completion(&id).await;
        assert_eq!(c["outcome"], "refused", "{c}");
        assert_eq!(c["recheck"]["of"], "upload-content", "{c}");
        assert_eq!(c["recheck"]["decision"], "deny");
        assert_eq!(c["recheck"]["origins"], serde_json::json!(["DE"]));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        up.requests().iter().all(|s| s.body.as_ref() != EU_WEIGHTS),
        "the upstream got the whole artifact"
    );
    assert!(!gw.store.join("registry/us/innocent.bin").exists());

    // To an importer with a mechanism it is lawful: allowed, and the completion says why.
    let (status, id, _, text) = upload(
        &gw,
        &bob,
        "/hub/globex/copy.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(EU_WEIGHTS),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let c = gw.completion(&id).await;
    assert_eq!(c["outcome"], "complete", "{c}");
    assert_eq!(c["recheck"]["of"], "upload-content");
    assert_eq!(c["recheck"]["decision"], "allow");
    assert!(up.requests().iter().any(|s| s.body.as_ref() == EU_WEIGHTS));
    // Other bytes are not held up.
    let (status, id, _, text) = upload(
        &gw,
        &bob,
        "/hub/us/wiki.bin",
        "public-wiki",
        &[],
        reqwest::Body::from(&b"wiki embeddings"[..]),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert!(gw.completion(&id).await.get("recheck").is_none());
}
