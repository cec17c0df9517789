//! S3 SDKs unmodified against the gateway's own S3 API: boto3 and s3fs with
//! `endpoint_url` = the gateway and a key from `bordergate s3-key create`, listing and
//! reading the file store — an allowed and a refused object each, presigned URLs, a wrong
//! secret, a skewed clock — with the audit records naming the key.
//!
//! The SDKs live in the client venv `.ci/run` creates (`BORDERGATE_TEST_PYTHON`); without
//! it these tests skip, except in CI.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Gateway, Options};
use serde_json::Value;

/// The venv python, or None (skip) outside CI.
fn python() -> Option<PathBuf> {
    common::test_python()
}

/// `auth.s3_keys` of the test gateway, placed after the harness's dev key (its lines sit
/// at the `auth:` level).
const S3_KEYS: &str = "  s3_keys:\n    path: s3-keys.json\n    derivation_secret: { file: s3-derive.secret }\n    generate_dev_secret: true\n";

/// Runs `bordergate s3-key ARGS --config` of `gw` and returns its stdout.
fn s3_key(gw: &Gateway, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("s3-key")
        .args(args)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "s3-key {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Issues a key and returns (id, secret).
fn create_key(gw: &Gateway, sub: &str, org: &str, jurisdiction: &str) -> (String, String) {
    let out = s3_key(
        gw,
        &[
            "create",
            "--sub",
            sub,
            "--org",
            org,
            "--jurisdiction",
            jurisdiction,
            "--purpose",
            "training",
        ],
    );
    let var = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
}

/// Waits until the gateway has reloaded `n` times (the key file is one of its inputs).
fn reloaded(gw: &Gateway, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let seen = gw
            .records()
            .iter()
            .filter(|r| r["kind"] == "event" && r["event"] == "reload")
            .count();
        if seen >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the gateway did not reload: {:#?}", gw.records());
}

/// Runs one SDK case of tests/clients/s3_sdk.py.
fn sdk(py: &Path, gw: &Gateway, case: &str, key: &(String, String), env: &[(&str, &str)]) -> Value {
    let out = Command::new(py)
        .arg(common::repo().join("tests/clients/s3_sdk.py"))
        .arg(case)
        .env("GW", &gw.base)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("AWS_CA_BUNDLE", gw.dir.path().join("cert.pem"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "{case} printed no result\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ok<'a>(v: &'a Value, what: &str) -> &'a Value {
    assert_eq!(v[what]["ok"], true, "{what}: {}", v[what]);
    &v[what]
}

#[test]
fn boto3_and_s3fs_list_and_read_the_file_store_through_the_gateway() {
    let Some(py) = python() else { return };
    let gw = Gateway::start(Options {
        extra_keys: S3_KEYS.into(),
        ..Options::default()
    });
    // A German pipeline training: it may read eu-customers and the public wiki, not the
    // clinical records (their purpose is research).
    let de = create_key(&gw, "s3-de", "acme-de", "DE");
    reloaded(&gw, 1);
    let env = [
        ("BUCKET", "datasets"),
        ("ALLOWED", "eu-customers/customers.csv"),
        ("REFUSED", "eu-clinical/records.csv"),
    ];
    let v = sdk(&py, &gw, "boto3", &de, &env);
    let readable = serde_json::json!([
        "eu-customers/customers.csv",
        "eu-tickets/tickets.csv",
        "eu-tickets/tickets.jsonl",
        "eu-tickets/tickets.parquet",
        "public-wiki/sample.txt"
    ]);
    assert_eq!(ok(&v, "list")["keys"], readable);
    let d = ok(&v, "list_delimiter");
    assert_eq!(d["keys"], serde_json::json!([]));
    assert_eq!(
        d["prefixes"],
        serde_json::json!(["eu-customers/", "eu-tickets/", "public-wiki/"])
    );
    assert_eq!(d["key_count"], 3);
    let p = ok(&v, "list_paged");
    assert_eq!(p["keys"], readable);
    assert_eq!(p["pages"], 5);
    let customers =
        std::fs::read_to_string(gw.store.join("datasets/eu-customers/customers.csv")).unwrap();
    assert_eq!(ok(&v, "get")["data"], customers.as_str());
    assert_eq!(ok(&v, "get_range")["data"], &customers[..4]);
    assert_eq!(ok(&v, "head")["length"], customers.len());
    // Refused: the error botocore raises names the rule.
    let r = &v["get_refused"];
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["code"], "AccessDenied", "{r}");
    assert_eq!(r["status"], 403, "{r}");
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains("(rule "), "{msg}");
    // A presigned URL, fetched with requests.
    let pre = ok(&v, "presigned");
    assert_eq!(pre["status"], 200);
    assert_eq!(pre["body"], customers.as_str());
    let pre = ok(&v, "presigned_refused");
    assert_eq!(pre["status"], 403);
    assert!(
        pre["body"]
            .as_str()
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    let v2 = ok(&v, "presigned_v2");
    assert_eq!(v2["status"], 501);
    assert!(v2["body"].as_str().unwrap().contains("s3v4"), "{v2}");
    // Wrong secret, skewed clock.
    let w = &v["wrong_secret"];
    assert_eq!(w["code"], "SignatureDoesNotMatch", "{w}");
    assert_eq!(w["status"], 403);
    let s = &v["skewed"];
    assert_eq!(s["code"], "RequestTimeTooSkewed", "{s}");

    // The audit: one record per listing, the key named as the credential, the refusal's rule.
    let cred = format!("s3:{}", de.0);
    let mine: Vec<Value> = gw
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["credential"] == cred.as_str())
        .collect();
    assert!(mine.iter().all(|r| r["caller"]["sub"] == "s3-de"));
    let listings = mine
        .iter()
        .filter(|r| r["rule"] == "s3.list-objects-v2")
        .count();
    assert_eq!(listings, 7, "list, delimiter, five pages: {mine:#?}");
    assert!(mine.iter().any(|r| {
        r["rule"] == "s3.list-objects-v2"
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("1 withheld by policy")
    }));
    let refused: Vec<&Value> = mine
        .iter()
        .filter(|r| r["decision"] == "deny" && r["path"] == "/datasets/eu-clinical/records.csv")
        .collect();
    assert_eq!(refused.len(), 2, "GetObject and the presigned URL");
    assert!(refused.iter().all(|r| r["status"] == 403));
    let denied_auth = gw
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["rule"] == "auth.s3.signature-does-not-match")
        .count();
    assert_eq!(denied_auth, 1);

    // s3fs: the same listing, a read, a refusal.
    let v = sdk(&py, &gw, "s3fs", &de, &env);
    assert_eq!(
        ok(&v, "ls")["entries"],
        serde_json::json!([
            "datasets/eu-customers",
            "datasets/eu-tickets",
            "datasets/public-wiki"
        ])
    );
    assert_eq!(
        ok(&v, "find")["entries"],
        serde_json::json!([
            "datasets/eu-customers/customers.csv",
            "datasets/eu-tickets/tickets.csv",
            "datasets/eu-tickets/tickets.jsonl",
            "datasets/eu-tickets/tickets.parquet",
            "datasets/public-wiki/sample.txt"
        ])
    );
    assert_eq!(ok(&v, "cat")["data"], customers.as_str());
    let r = &v["cat_refused"];
    assert_eq!(r["ok"], false, "{r}");
    // s3fs asks HeadObject first: a HEAD answer has no body, so it shows the status only.
    assert_eq!(r["type"], "PermissionError", "{r}");

    // A revoked key is refused from the next reload.
    s3_key(&gw, &["revoke", &de.0]);
    reloaded(&gw, 2);
    let listed = s3_key(&gw, &["list"]);
    assert!(
        listed.contains(&de.0) && !listed.contains(&de.1),
        "{listed}"
    );
    let v = sdk(&py, &gw, "boto3", &de, &env);
    assert_eq!(v["list"]["code"], "InvalidAccessKeyId", "{}", v["list"]);
}

/// A child process killed on drop.
struct Proc(std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn boto3_reads_moto_behind_the_gateway_with_a_gateway_key() {
    let Some(py) = python() else { return };
    // moto as the object store; the gateway holds its keys (as in tests/clients.rs).
    let port = common::dead_port();
    let moto = Command::new(py.parent().unwrap().join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _moto = Proc(moto);
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("gw");
    let key_file = key_file.to_str().unwrap();
    let seeded = Command::new(&py)
        .arg(common::repo().join("tests/clients/clients.py"))
        .args([
            "s3_seed",
            &endpoint,
            "ml-artifacts",
            key_file,
            "eu/weights.bin=0123456789abcdef",
            "us/other.txt=not in the catalog",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&seeded.stdout).contains("\"ok\": true"),
        "{}",
        String::from_utf8_lossy(&seeded.stdout)
    );
    let gw = Gateway::start(Options {
        extra_keys: S3_KEYS.into(),
        extra_upstreams: format!(
            "  - name: s3\n    url: {endpoint}\n    jurisdiction: DE\n    s3:\n      region: us-east-1\n      bucket: ml-artifacts\n      access_key: {{file: {key_file}.id}}\n      secret_key: {{file: {key_file}.secret}}\n"
        ),
        extra_routes: "  - prefix: /s3/\n    upstream: s3\n".into(),
        extra_catalog: "  - id: s3-eu-artifacts\n    kind: dataset\n    description: Training artifacts in the EU bucket\n    match: { prefix: /s3/eu/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [training]\n    lawful_basis: [contract]\n".into(),
        ..Options::default()
    });
    let de = create_key(&gw, "s3-de", "acme-de", "DE");
    reloaded(&gw, 1);
    let us = create_key(&gw, "s3-us", "acme-us", "US");
    reloaded(&gw, 2);
    let env = [
        ("BUCKET", "s3"),
        ("ALLOWED", "eu/weights.bin"),
        ("REFUSED", "us/other.txt"),
    ];
    let v = sdk(&py, &gw, "get", &de, &env);
    assert_eq!(ok(&v, "get")["data"], "0123456789abcdef");
    assert_eq!(ok(&v, "get_range")["data"], "4567");
    let r = &v["get_refused"];
    assert_eq!(
        (r["code"].as_str(), r["status"].as_u64()),
        (Some("AccessDenied"), Some(403)),
        "{r}"
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("matches no catalog entry"),
        "{r}"
    );
    // The same object, refused to a US pipeline with the transfer rule in botocore's error.
    let v = sdk(&py, &gw, "get", &us, &env);
    let r = &v["get"];
    assert_eq!(r["status"], 451, "{r}");
    assert!(r["error"].as_str().unwrap().contains("(rule "), "{r}");
    let refused = gw
        .records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["credential"] == format!("s3:{}", us.0).as_str()
                && r["status"] == 451
        })
        .count();
    assert_eq!(refused, 2, "get and get_range");
}
