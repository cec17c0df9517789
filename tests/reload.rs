//! Hot reload end to end, with the real binary: every input reloads by itself when it
//! changes — with a relative `--config`, through renames, symlinks and a Kubernetes
//! `..data` swap — a file written in pieces is never served half-written, a set that
//! fails validation or its own pack tests is refused with an audit event while the old
//! set keeps deciding, and a replaced key stops validating tokens.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Gateway, Options, copy_dir, repo};
use serde_json::Value;

const CUSTOMERS: &str = "/datasets/eu-customers/customers.csv";
const CLINICAL: &str = "/datasets/eu-clinical/records.csv";
const WIKI: &str = "/datasets/public-wiki/sample.txt";

async fn get(gw: &Gateway, client: &reqwest::Client, path: &str, token: &str) -> (u16, String) {
    let r = client
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (r.status().as_u16(), id)
}

async fn status(gw: &Gateway, client: &reqwest::Client, token: &str) -> (u16, String) {
    get(gw, client, CUSTOMERS, token).await
}

/// The audit events named `name`.
fn events(gw: &Gateway, name: &str) -> Vec<Value> {
    gw.records()
        .into_iter()
        .filter(|r| r["kind"] == "event" && r["event"] == name)
        .collect()
}

/// Waits for the `n`th audit event named `name` (counting from 1).
async fn nth_event(gw: &Gateway, name: &str, n: usize) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Some(e) = events(gw, name).into_iter().nth(n - 1) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all: Vec<Value> = gw
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "event")
        .collect();
    panic!("no `{name}` event #{n} among {all:#?}");
}

/// Sends the request until its status and decision record satisfy `want` (20 s at
/// most) and returns that record. A reload's event is written before its set goes into
/// force, so the first answer of the new set comes after it in the log.
async fn until(
    gw: &Gateway,
    client: &reqwest::Client,
    path: &str,
    token: &str,
    want: impl Fn(u16, &Value) -> bool,
) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, id) = get(gw, client, path, token).await;
        let d = gw.decision(&id);
        if want(s, &d) {
            return d;
        }
        assert!(Instant::now() < end, "still {s}: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway deciding with a copy of the repository's policy pack (with its `tests/`
/// unless `tests` is false); the copy's directory is returned with it.
fn with_pack(tests: bool) -> (tempfile::TempDir, PathBuf, Arc<Gateway>) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("policies");
    copy_dir(&repo().join("policies"), &dir);
    if !tests {
        std::fs::remove_dir_all(dir.join("tests")).unwrap();
    }
    let gw = Gateway::start(Options {
        policies: Some(dir.clone()),
        ..Options::default()
    });
    (t, dir, Arc::new(gw))
}

/// The decision of the GB caller's request for EU health data, refused by the
/// organisation overlay (company policy, not the law: 403).
async fn clinical_to_gb(gw: &Gateway, client: &reqwest::Client, token: &str) -> Value {
    let (s, id) = get(gw, client, CLINICAL, token).await;
    let d = gw.decision(&id);
    assert_eq!(s, 403, "company policy refuses: {d}");
    assert_eq!(d["rule"], "org.special-stays-in-eea");
    d
}

/// Starts the real binary as the quickstart does: from its work dir with a relative
/// `--config`. `setup` edits the work dir first.
fn start_relative(opts: Options, setup: impl FnOnce(&Path)) -> Gateway {
    let (dir, config, audit, store) = common::prepare(&opts);
    setup(dir.path());
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(common::BIN)
        .current_dir(dir.path())
        .args(["serve", "--config", "gateway.yaml"])
        .env("BORDERGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in out.lines() {});
    let base = line
        .trim()
        .strip_prefix("bordergate listening on ")
        .unwrap_or_else(|| {
            let err = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
            panic!("gateway did not start: {line}{err}")
        })
        .to_string();
    let addr = base.trim_start_matches("https://").parse().unwrap();
    Gateway {
        child,
        dir,
        addr,
        base,
        config,
        audit,
        store,
    }
}

/// `text` without the part from `from` up to (not including) `to`.
fn cut(text: &str, from: &str, to: &str) -> String {
    let a = text.find(from).unwrap();
    let b = a + text[a..].find(to).unwrap();
    format!("{}{}", &text[..a], &text[b..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_takes_effect_and_an_invalid_one_is_refused() {
    let (_t, dir, gw) = with_pack(true);
    let client = gw.client();
    let token = gw.token("pipeline", "globex-us", "US", "analytics");
    let (s, id) = status(&gw, &client, &token).await;
    assert_eq!(s, 200, "globex-us is DPF-certified");
    let v1 = gw.decision(&id)["policy_version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw.decision(&id)["rule"], "eu.adequacy.us-dpf");

    // Requests keep flowing while the policies change; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let bg = {
        let (gw, stop, errors, done, token) = (
            gw.clone(),
            stop.clone(),
            errors.clone(),
            done.clone(),
            token.clone(),
        );
        tokio::spawn(async move {
            let client = gw.client();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .get(gw.url(CUSTOMERS))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 || r.status() == 451 => {
                        if r.bytes().await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Withdraw the EU-US DPF decision, with the pack's case that expects it: each file
    // written to a temporary file, then renamed in.
    let replace = |name: &str, text: String| {
        let tmp = dir.join(format!(".{}.tmp", name.replace('/', "-")));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    };
    let cases = std::fs::read_to_string(dir.join("tests/eu.yaml")).unwrap();
    let dpf_case = cases
        .lines()
        .find(|l| l.contains("rule: eu.adequacy.us-dpf"))
        .unwrap();
    let no_dpf = cases.replace(
        dpf_case,
        "  - { name: no DPF decision, to: US, org: dpf-us, expect: deny, rule: eu.chapter-v.no-basis }",
    );
    replace("tests/eu.yaml", no_dpf.replace(", reason: as a whole", ""));
    // The dated history cases and the upload cases rely on the removed decision too: set
    // them aside.
    let _ = std::fs::remove_file(dir.join("tests/history.yaml"));
    let _ = std::fs::remove_file(dir.join("tests/uploads.yaml"));
    let eu = std::fs::read_to_string(dir.join("eu.yaml")).unwrap();
    replace(
        "eu.yaml",
        cut(
            &eu,
            "  - id: eu.adequacy.us-dpf\n",
            "  - id: eu.adequacy.us-privacy-shield\n",
        ),
    );
    let mut flipped = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, id) = status(&gw, &client, &token).await;
        if s == 451 {
            flipped = Some(id);
            break;
        }
    }
    let id = flipped.unwrap_or_else(|| {
        panic!(
            "the valid change took effect: {:#?}",
            events(&gw, "reload-refused")
        )
    });
    let d = gw.decision(&id);
    assert_eq!(d["rule"], "eu.chapter-v.no-basis");
    let v2 = d["policy_version"].as_str().unwrap().to_string();
    assert_ne!(
        v1, v2,
        "each decision names the policy version that decided it"
    );
    let reload = nth_event(&gw, "reload", 1).await;
    assert_eq!(reload["policy_version"], v2.as_str());
    let detail = reload["detail"].as_str().unwrap();
    for f in ["eu.yaml` changed", "tests/eu.yaml` changed"] {
        assert!(detail.contains(f), "the cause names {f}: {detail}");
    }

    // An invalid set is refused; the previous one keeps deciding.
    std::fs::write(
        dir.join("zz-broken.yaml"),
        "id: zz\nname: broken\nlaw: x\nmembers: [XZ]\n",
    )
    .unwrap();
    let refused = nth_event(&gw, "reload-refused", 1).await;
    assert_eq!(refused["policy_version"], v2.as_str());
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("zz-broken.yaml"), "{detail}");
    let (s, id) = status(&gw, &client, &token).await;
    assert_eq!(s, 451);
    assert_eq!(gw.decision(&id)["policy_version"], v2.as_str());

    stop.store(true, Ordering::Relaxed);
    bg.await.unwrap();
    assert!(done.load(Ordering::Relaxed) > 0);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no request was dropped");
    // Every decision record names a version that was in force.
    for r in gw.records().iter().filter(|r| r["kind"] == "decision") {
        let v = r["policy_version"].as_str().unwrap();
        assert!(v == v1 || v == v2, "{v}");
    }
}

/// (a) The quickstart's way to start: a relative `--config`, relative paths inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_relative_config_a_registry_edit_reloads_by_itself() {
    let gw = start_relative(
        Options {
            registry: Some("registry.yaml".into()),
            ..Options::default()
        },
        |d| {
            std::fs::copy(
                repo().join("examples/quickstart/registry.yaml"),
                d.join("registry.yaml"),
            )
            .unwrap();
        },
    );
    let client = gw.client();
    let token = gw.token("pipeline", "globex-us", "US", "analytics");
    let (s, id) = status(&gw, &client, &token).await;
    assert_eq!(s, 200, "globex-us is DPF-certified");
    assert_eq!(gw.decision(&id)["rule"], "eu.adequacy.us-dpf");

    // Globex's DPF list entry is withdrawn: the registry is edited in place.
    let registry = gw.dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let dpf = "      - kind: dpf\n        reference: DPF list entry (EU-US), Globex Inc.\n        categories: [personal, pseudonymous]\n        valid_from: 2023-07-17\n";
    assert!(text.contains(dpf));
    std::fs::write(&registry, text.replace(dpf, "")).unwrap();

    let d = until(&gw, &client, CUSTOMERS, &token, |s, _| s == 451).await;
    assert_eq!(
        d["rule"], "eu.chapter-v.no-basis",
        "globex-us no longer receives EU data"
    );
    let reload = nth_event(&gw, "reload", 1).await;
    let detail = reload["detail"].as_str().unwrap();
    assert!(detail.contains("`registry.yaml` changed"), "{detail}");
    assert_eq!(d["policy_version"], reload["policy_version"]);
}

/// The files watched follow the config: a config naming another catalog is watched on
/// that one, and the one it no longer names is not an input any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_naming_another_catalog_moves_the_watch_to_it() {
    let gw = start_relative(Options::default(), |_| {});
    let d = gw.dir.path();
    let full = std::fs::read_to_string(d.join("catalog.yaml")).unwrap();
    let without = cut(&full, "  - id: public-wiki\n", "  - id: support-bot\n");
    std::fs::write(d.join("catalog-v2.yaml"), without).unwrap();
    let client = gw.client();
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(get(&gw, &client, WIKI, &token).await.0, 200);

    let cfg = std::fs::read_to_string(d.join("gateway.yaml")).unwrap();
    let cfg = cfg.replace("catalog: catalog.yaml", "catalog: catalog-v2.yaml");
    std::fs::write(d.join("gateway.yaml"), cfg).unwrap();
    until(&gw, &client, WIKI, &token, |s, _| s == 403).await;
    let first = nth_event(&gw, "reload", 1).await;
    let detail = first["detail"].as_str().unwrap();
    for f in ["`gateway.yaml` changed", "`catalog-v2.yaml` added"] {
        assert!(detail.contains(f), "{detail}");
    }

    std::fs::write(d.join("catalog.yaml"), "not: [a catalog").unwrap();
    std::fs::write(d.join("catalog-v2.yaml"), &full).unwrap();
    until(&gw, &client, WIKI, &token, |s, _| s == 200).await;
    let second = nth_event(&gw, "reload", 2).await;
    assert_eq!(
        second["detail"],
        "new configuration and policies in force (file change: `catalog-v2.yaml` changed)"
    );
    assert!(events(&gw, "reload-refused").is_empty());
}

/// (b) An overlay rewritten in place in two pieces, with a pause longer than a short
/// debounce: the first piece alone would let EU health data go to GB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_written_in_two_pieces_is_never_served_half_written() {
    // Without the pack's tests: only waiting for the set to settle keeps the first
    // piece out.
    let (_t, dir, gw) = with_pack(false);
    let client = gw.client();
    let token = gw.token("analyst", "wayne-gb", "GB", "research");
    let v1 = clinical_to_gb(&gw, &client, &token).await["policy_version"].clone();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let (gw, seen, stop, token) = (gw.clone(), seen.clone(), stop.clone(), token.clone());
        tokio::spawn(async move {
            let client = gw.client();
            while !stop.load(Ordering::Relaxed) {
                let r = get(&gw, &client, CLINICAL, &token).await;
                seen.lock().unwrap().push(r);
            }
        })
    };

    // The same rules in the other order: the marketing rule, a pause, then the rule
    // that keeps special-category data in the EEA.
    let overlay = dir.join("org/example-corp.yaml");
    let text = std::fs::read_to_string(&overlay).unwrap();
    let special = text.find("  - id: org.special-stays-in-eea\n").unwrap();
    let marketing = text
        .find("  - id: org.no-transfer-for-marketing\n")
        .unwrap();
    let first = format!("{}{}", &text[..special], &text[marketing..]);
    let second = &text[special..marketing];
    let mut f = std::fs::File::create(&overlay).unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.sync_data().unwrap();
    // Longer than the old 250 ms debounce, well within `reload::SETTLE`.
    tokio::time::sleep(Duration::from_millis(400)).await;
    f.write_all(second.as_bytes()).unwrap();
    drop(f);

    let reload = nth_event(&gw, "reload", 1).await;
    let d = until(&gw, &client, CLINICAL, &token, |_, d| {
        d["policy_version"] == reload["policy_version"]
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    bg.await.unwrap();
    assert_eq!(d["status"], 403);
    assert_eq!(d["rule"], "org.special-stays-in-eea");
    assert_eq!(d["policy_version"], reload["policy_version"]);
    assert_ne!(d["policy_version"], v1, "the rewritten overlay is in force");
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() > 5,
        "requests ran during the rewrite: {}",
        seen.len()
    );
    let allowed: Vec<_> = seen.iter().filter(|(s, _)| *s != 403).collect();
    assert!(allowed.is_empty(), "served half-written: {allowed:?}");
    assert!(
        events(&gw, "reload-refused").is_empty(),
        "the first piece was never even tried"
    );
    assert_eq!(
        events(&gw, "reload").len(),
        1,
        "one reload, of the whole file"
    );
}

/// (c) The pack's own test cases run before a set goes into force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fails_a_pack_test_is_refused_naming_the_case() {
    let (_t, dir, gw) = with_pack(true);
    let client = gw.client();
    let token = gw.token("analyst", "wayne-gb", "GB", "research");
    let v1 = clinical_to_gb(&gw, &client, &token).await["policy_version"].clone();

    // A valid overlay without the rule keeping special-category data in the EEA.
    let overlay = dir.join("org/example-corp.yaml");
    let text = std::fs::read_to_string(&overlay).unwrap();
    let tmp = dir.join("org/.example-corp.yaml.tmp");
    std::fs::write(
        &tmp,
        cut(
            &text,
            "  - id: org.special-stays-in-eea\n",
            "  - id: org.no-transfer-for-marketing\n",
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &overlay).unwrap();

    let refused = nth_event(&gw, "reload-refused", 1).await;
    assert_eq!(refused["policy_version"], v1);
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("example-corp.yaml` changed"), "{detail}");
    assert!(
        detail.contains("policy test case fails")
            && detail.contains("`overlay keeps special-category data in the EEA`"),
        "{detail}"
    );
    let d = clinical_to_gb(&gw, &client, &token).await;
    assert_eq!(d["policy_version"], v1, "the old set keeps deciding");
    assert!(events(&gw, "reload").is_empty());
}

/// (d) A replaced HS secret: tokens of the old one fail without SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_key_stops_validating_old_tokens_by_itself() {
    let gw = Gateway::start(Options::default());
    let client = gw.client();
    let old = gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(status(&gw, &client, &old).await.0, 200);

    let secret = gw.dir.path().join("hs256.secret");
    let tmp = gw.dir.path().join("hs256.secret.new");
    std::fs::write(
        &tmp,
        format!("{}\n", uuid::Uuid::new_v4().simple().to_string().repeat(2)),
    )
    .unwrap();
    std::fs::rename(&tmp, &secret).unwrap();

    let d = until(&gw, &client, CUSTOMERS, &old, |s, _| s == 401).await;
    assert_eq!(d["status"], 401, "a token of the removed key");
    let reload = nth_event(&gw, "reload", 1).await;
    let detail = reload["detail"].as_str().unwrap();
    assert!(detail.contains("hs256.secret` changed"), "{detail}");
    let new = gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(status(&gw, &client, &new).await.0, 200);
}

/// An Ed25519 key pair and its public key as PEM (SPKI).
fn ed25519() -> (aws_lc_rs::signature::Ed25519KeyPair, String) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(kp.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    (
        kp,
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
    )
}

/// A token for `alice` of `acme-de` signed with `kp` as key `ed`.
fn ed25519_jwt(kp: &aws_lc_rs::signature::Ed25519KeyPair) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = common::now();
    let claims = format!(
        r#"{{"sub":"alice","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iss":"bordergate-dev","aud":"bordergate","iat":{now},"exp":{}}}"#,
        now + 600
    );
    let input = format!(
        "{}.{}",
        b64.encode(r#"{"alg":"EdDSA","kid":"ed"}"#),
        b64.encode(claims)
    );
    let sig = kp.sign(input.as_bytes());
    format!("{input}.{}", b64.encode(sig.as_ref()))
}

/// (d) A public key file given a new key: tokens of the removed one fail by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_public_key_stops_validating_its_tokens_by_itself() {
    let (old_key, old_pem) = ed25519();
    let (new_key, new_pem) = ed25519();
    let gw = start_relative(
        Options {
            extra_keys: "    - kid: ed\n      alg: EdDSA\n      public_key: keys/ed.pem\n".into(),
            ..Options::default()
        },
        |d| {
            std::fs::create_dir(d.join("keys")).unwrap();
            std::fs::write(d.join("keys/ed.pem"), &old_pem).unwrap();
        },
    );
    let client = gw.client();
    let (old, new) = (ed25519_jwt(&old_key), ed25519_jwt(&new_key));
    assert_eq!(status(&gw, &client, &old).await.0, 200);
    assert_eq!(status(&gw, &client, &new).await.0, 401);

    // Deleted, then written anew (as some deploy tools do).
    let pem = gw.dir.path().join("keys/ed.pem");
    std::fs::remove_file(&pem).unwrap();
    std::fs::write(&pem, new_pem).unwrap();
    until(&gw, &client, CUSTOMERS, &old, |s, _| s == 401).await;
    let reload = nth_event(&gw, "reload", 1).await;
    let detail = reload["detail"].as_str().unwrap();
    assert!(detail.contains("`keys/ed.pem` changed"), "{detail}");
    assert_eq!(status(&gw, &client, &new).await.0, 200);
}

/// A renewed listener certificate is a reload (the snapshot carries the TLS config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_reloads() {
    let gw = Gateway::start(Options::default());
    let d = gw.dir.path();
    for f in ["cert.pem", "key.pem"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    let renewed = Command::new(common::BIN)
        .args(["certs", "dev", "--config"])
        .arg(&gw.config)
        .status();
    assert!(renewed.unwrap().success());
    let reload = nth_event(&gw, "reload", 1).await;
    let detail = reload["detail"].as_str().unwrap();
    for f in ["cert.pem` changed", "key.pem` changed"] {
        assert!(detail.contains(f), "{detail}");
    }
    assert!(events(&gw, "reload-refused").is_empty());
    // New connections get the renewed certificate: a client trusting only it connects.
    let pem = std::fs::read(d.join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let r = client
        .get(gw.url("/datasets/public-wiki/sample.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "served with the renewed certificate");
}

/// (e) The catalog in a Kubernetes ConfigMap volume: files are symlinks into `..data`,
/// itself a symlink that kubelet swaps to a new timestamped directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_data_swap_of_the_catalog_reloads() {
    fn version(d: &Path, stamp: &str, text: &str) {
        std::fs::create_dir(d.join(stamp)).unwrap();
        std::fs::write(d.join(stamp).join("catalog.yaml"), text).unwrap();
    }
    /// As kubelet does: a new `..data` symlink renamed over the old, then the old
    /// directory removed.
    fn swap(d: &Path, from: &str, to: &str) {
        symlink(to, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(d.join(from)).unwrap();
    }
    let full = Arc::new(Mutex::new(String::new()));
    let gw = start_relative(Options::default(), |d| {
        let text = std::fs::read_to_string(d.join("catalog.yaml")).unwrap();
        std::fs::remove_file(d.join("catalog.yaml")).unwrap();
        version(d, "..2026_01_01", &text);
        symlink("..2026_01_01", d.join("..data")).unwrap();
        symlink("..data/catalog.yaml", d.join("catalog.yaml")).unwrap();
        *full.lock().unwrap() = text;
    });
    let d = gw.dir.path().to_path_buf();
    let full = full.lock().unwrap().clone();
    let client = gw.client();
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(get(&gw, &client, WIKI, &token).await.0, 200);

    // The next version no longer lists the public wiki.
    let without = cut(&full, "  - id: public-wiki\n", "  - id: support-bot\n");
    version(&d, "..2026_02_01", &without);
    swap(&d, "..2026_01_01", "..2026_02_01");
    let refused = until(&gw, &client, WIKI, &token, |s, _| s == 403).await;
    assert_eq!(refused["dataset"], Value::Null, "no longer in the catalog");
    let reload = nth_event(&gw, "reload", 1).await;
    let detail = reload["detail"].as_str().unwrap();
    assert!(detail.contains("`catalog.yaml` changed"), "{detail}");

    // And the one after that, in yet another directory: the watch followed the swap.
    version(&d, "..2026_03_01", &full);
    swap(&d, "..2026_02_01", "..2026_03_01");
    until(&gw, &client, WIKI, &token, |s, _| s == 200).await;
    nth_event(&gw, "reload", 2).await;
}
