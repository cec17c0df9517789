//! S3 SDKs unmodified against the gateway's own S3 API: boto3, s3fs and pyarrow with
//! `endpoint_url` = the gateway and a key from `bordergate s3-key create`, listing and
//! reading the file store and a moto S3 upstream — an allowed and a refused object each,
//! presigned URLs, a wrong secret, a skewed clock, upstreams that cannot be listed — with
//! the audit records naming the key.
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
    let mut cmd = Command::new(py);
    // A plain-http gateway has no certificate.
    let cert = gw.dir.path().join("cert.pem");
    if cert.exists() {
        cmd.env("AWS_CA_BUNDLE", cert);
    } else {
        cmd.env_remove("AWS_CA_BUNDLE");
    }
    let out = cmd
        .arg(common::repo().join("tests/clients/s3_sdk.py"))
        .arg(case)
        .env("GW", &gw.base)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
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
        ("MISSING", "eu-customers/absent.csv"),
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
    // After the decision: the store's own answers carry S3's codes too.
    let m = &v["get_missing"];
    assert_eq!(
        (m["code"].as_str(), m["status"].as_u64()),
        (Some("NoSuchKey"), Some(404)),
        "{m}"
    );
    let m = &v["get_past_end"];
    assert_eq!(
        (m["code"].as_str(), m["status"].as_u64()),
        (Some("InvalidRange"), Some(416)),
        "{m}"
    );
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

/// A moto_server on a free port as the object store (killed on drop), with one bucket
/// seeded straight against it and an IAM user whose keys only the gateway holds (as in
/// tests/clients.rs): moto checks signatures after the three seeding IAM calls.
struct Moto {
    proc: Option<Proc>,
    endpoint: String,
    keys: tempfile::TempDir,
}

impl Moto {
    /// Starts moto and seeds `bucket` with `objects` (`key=text`).
    fn start(py: &Path, bucket: &str, objects: &[String]) -> Moto {
        let port = common::dead_port();
        let moto = Command::new(py.parent().unwrap().join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(moto);
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let m = Moto {
            proc: Some(proc),
            endpoint: format!("http://127.0.0.1:{port}"),
            keys: tempfile::tempdir().unwrap(),
        };
        let seeded = Command::new(py)
            .arg(common::repo().join("tests/clients/clients.py"))
            .args(["s3_seed", &m.endpoint, bucket, &m.key_file("gw")])
            .args(objects)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&seeded.stdout).contains("\"ok\": true"),
            "{}\n{}",
            String::from_utf8_lossy(&seeded.stdout),
            String::from_utf8_lossy(&seeded.stderr)
        );
        m
    }

    /// The path stem of the key files `NAME.id` and `NAME.secret` (`gw`: the seeded user's).
    fn key_file(&self, name: &str) -> String {
        self.keys.path().join(name).to_str().unwrap().to_string()
    }

    /// An `upstreams:` item named `name` for `bucket`, signing with the keys `key`.
    fn upstream(&self, name: &str, bucket: &str, key: &str) -> String {
        let f = self.key_file(key);
        format!(
            "  - name: {name}\n    url: {}\n    jurisdiction: DE\n    s3:\n      region: us-east-1\n      bucket: {bucket}\n      access_key: {{file: {f}.id}}\n      secret_key: {{file: {f}.secret}}\n",
            self.endpoint
        )
    }

    /// Stops the store.
    fn stop(&mut self) {
        self.proc = None;
    }
}

/// Asserts botocore's error for an object in no catalog entry.
fn uncatalogued(r: &Value) {
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
}

/// The catalog entry of the moto bucket's `eu/` objects: German personal data for training.
const S3_EU_ENTRY: &str = "  - id: s3-eu-artifacts\n    kind: dataset\n    description: Training artifacts in the EU bucket\n    match: { prefix: /s3/eu/ }\n    origins: [DE]\n    categories: [personal]\n    purposes: [training]\n    lawful_basis: [contract]\n";

#[test]
fn boto3_reads_moto_behind_the_gateway_with_a_gateway_key() {
    let Some(py) = python() else { return };
    let moto = Moto::start(
        &py,
        "ml-artifacts",
        &[
            "eu/weights.bin=0123456789abcdef".into(),
            "us/other.txt=not in the catalog".into(),
        ],
    );
    let gw = Gateway::start(Options {
        extra_keys: S3_KEYS.into(),
        extra_upstreams: moto.upstream("s3", "ml-artifacts", "gw"),
        extra_routes: "  - prefix: /s3/\n    upstream: s3\n".into(),
        extra_catalog: S3_EU_ENTRY.into(),
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
    uncatalogued(&v["get_refused"]);
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

/// The listing decision records of the key `cred`, in order.
fn listings(gw: &Gateway, cred: &str) -> Vec<Value> {
    gw.records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["rule"] == "s3.list-objects-v2"
                && r["credential"] == format!("s3:{cred}").as_str()
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn boto3_s3fs_and_pyarrow_list_and_read_moto_behind_the_gateway() {
    let Some(py) = python() else { return };
    // Readable to a German training pipeline: `eu/` and `bulk/` (more keys than one
    // upstream page); `us/` is in no catalog entry; `eu/folder/` is a folder marker, not
    // an object a GET could name.
    let mut objects: Vec<String> = [
        "eu/weights.bin=0123456789abcdef",
        "eu/tokenizer.json={\"v\": 1}",
        "eu/extra/notes.txt=notes",
        "eu/folder/=",
        "us/other.txt=not in the catalog",
    ]
    .map(String::from)
    .into();
    objects.extend((0..1100).map(|i| format!("bulk/{i:04}.txt={i}")));
    let mut moto = Moto::start(&py, "ml-artifacts", &objects);
    // Keys the store does not know: it answers 403 to whatever the gateway signs with them.
    std::fs::write(moto.key_file("bad") + ".id", "AKIAIOSFODNN7EXAMPLE").unwrap();
    std::fs::write(moto.key_file("bad") + ".secret", "not-the-secret").unwrap();
    let gw = Gateway::start(Options {
        // pyarrow's S3FileSystem is given `scheme="http"`, the others the same endpoint.
        plaintext: true,
        extra_keys: S3_KEYS.into(),
        extra_upstreams: moto.upstream("s3", "ml-artifacts", "gw")
            + &moto.upstream("s3-bad-keys", "ml-artifacts", "bad"),
        extra_routes:
            "  - prefix: /s3/\n    upstream: s3\n  - prefix: /s3bad/\n    upstream: s3-bad-keys\n"
                .into(),
        extra_catalog: S3_EU_ENTRY.to_string()
            + &S3_EU_ENTRY
                .replace("s3-eu-artifacts", "s3-bulk")
                .replace("/s3/eu/", "/s3/bulk/"),
        ..Options::default()
    });
    let de = create_key(&gw, "s3-de", "acme-de", "DE");
    reloaded(&gw, 1);
    let env = [
        ("BUCKET", "s3"),
        ("ALLOWED", "eu/weights.bin"),
        ("REFUSED", "us/other.txt"),
        ("PREFIX", "eu/"),
        ("MANY", "bulk/"),
    ];
    let eu = ["eu/extra/notes.txt", "eu/tokenizer.json", "eu/weights.bin"];

    // boto3.
    let v = sdk(&py, &gw, "boto3_list", &de, &env);
    let l = ok(&v, "list");
    assert_eq!(strings(&l["keys"]), eu);
    assert_eq!(l["key_count"], 3);
    let d = ok(&v, "list_delimiter");
    assert_eq!(strings(&d["prefixes"]), ["bulk/", "eu/"], "no `us/`: {d}");
    assert_eq!(d["keys"], serde_json::json!([]));
    let d = ok(&v, "list_prefix_delimiter");
    assert_eq!(strings(&d["keys"]), ["eu/tokenizer.json", "eu/weights.bin"]);
    assert_eq!(strings(&d["prefixes"]), ["eu/extra/"]);
    let p = ok(&v, "list_paged");
    assert_eq!(
        (p["pages"].as_u64(), strings(&p["keys"])),
        (Some(3), eu.into())
    );
    // 1100 keys: two upstream pages gathered, two pages to the client.
    let m = ok(&v, "list_many");
    assert_eq!(m["key_counts"], serde_json::json!([1000, 100]));
    let bulk: Vec<String> = (0..1100).map(|i| format!("bulk/{i:04}.txt")).collect();
    assert_eq!(strings(&m["keys"]), bulk);
    assert_eq!(ok(&v, "get")["data"], "0123456789abcdef");
    uncatalogued(&v["get_refused"]);

    // The listings' records: one decision each, counting what was readable and withheld.
    let recs = listings(&gw, &de.0);
    let reasons: Vec<&str> = recs.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 1 + 1 + 1 + 3 + 2, "{reasons:#?}");
    assert!(recs.iter().all(|r| r["decision"] == "allow"), "{recs:#?}");
    assert_eq!(
        reasons[0],
        "listed 3 entries of bucket `s3` with prefix `eu/`: 3 objects readable, 0 withheld by policy"
    );
    assert_eq!(
        reasons[1],
        "listed 2 entries of bucket `s3` with prefix ``: 1103 objects readable, 1 withheld by policy"
    );
    let completions = gw
        .records()
        .into_iter()
        .filter(|c| {
            c["kind"] == "completion" && recs.iter().any(|r| r["request_id"] == c["request_id"])
        })
        .count();
    assert_eq!(completions, recs.len(), "one completion record per listing");

    // s3fs.
    let v = sdk(&py, &gw, "s3fs_list", &de, &env);
    assert_eq!(strings(&ok(&v, "ls")["entries"]), ["s3/bulk", "s3/eu"]);
    assert_eq!(
        strings(&ok(&v, "ls_prefix")["entries"]),
        ["s3/eu/extra", "s3/eu/tokenizer.json", "s3/eu/weights.bin"]
    );
    assert_eq!(
        strings(&ok(&v, "find")["entries"]),
        eu.map(|k| format!("s3/{k}"))
    );
    assert_eq!(ok(&v, "cat")["data"], "0123456789abcdef");
    assert_eq!(v["cat_refused"]["type"], "PermissionError", "{v}");

    // pyarrow.
    let v = sdk(&py, &gw, "pyarrow", &de, &env);
    let f = ok(&v, "files");
    assert_eq!(strings(&f["files"]), eu.map(|k| format!("s3/{k}")));
    assert_eq!(strings(&f["dirs"]), ["s3/eu/extra"]);
    assert_eq!(f["sizes"]["s3/eu/weights.bin"], 16);
    let t = ok(&v, "top");
    assert_eq!(strings(&t["dirs"]), ["s3/bulk", "s3/eu"]);
    assert_eq!(t["files"], serde_json::json!([]));
    assert_eq!(ok(&v, "read")["data"], "0123456789abcdef");
    // pyarrow asks HeadObject first: the status only (as s3fs).
    let r = &v["read_refused"];
    assert_eq!(r["type"], "OSError", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("ACCESS_DENIED during HeadObject"),
        "{r}"
    );

    // pyarrow against the file store of the same gateway.
    let files = [
        ("BUCKET", "datasets"),
        ("ALLOWED", "eu-customers/customers.csv"),
        ("REFUSED", "eu-clinical/records.csv"),
        ("PREFIX", "eu-customers/"),
    ];
    let v = sdk(&py, &gw, "pyarrow", &de, &files);
    assert_eq!(
        strings(&ok(&v, "files")["files"]),
        ["datasets/eu-customers/customers.csv"]
    );
    assert_eq!(
        strings(&ok(&v, "top")["dirs"]),
        [
            "datasets/eu-customers",
            "datasets/eu-tickets",
            "datasets/public-wiki"
        ]
    );
    let customers =
        std::fs::read_to_string(gw.store.join("datasets/eu-customers/customers.csv")).unwrap();
    assert_eq!(ok(&v, "read")["data"], customers.as_str());
    assert!(
        v["read_refused"]["error"]
            .as_str()
            .unwrap()
            .contains("ACCESS_DENIED"),
        "{v}"
    );

    // Fail closed: an upstream that refuses the gateway's keys, and one that is down.
    let v = sdk(&py, &gw, "list", &de, &[("BUCKET", "s3bad")]);
    let r = &v["list"];
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(false), Some(502)),
        "{r}"
    );
    assert_eq!(r["code"], "InternalError", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("`s3-bad-keys` could not be listed: it answered 403"),
        "{r}"
    );
    moto.stop();
    let v = sdk(&py, &gw, "list", &de, &[("BUCKET", "s3")]);
    let r = &v["list"];
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(false), Some(502)),
        "{r}"
    );
    assert!(
        r["error"].as_str().unwrap().contains("upstream `s3`"),
        "{r}"
    );
    let failed: Vec<Value> = gw
        .records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["credential"] == format!("s3:{}", de.0).as_str()
                && r["status"] == 502
        })
        .collect();
    let mut paths: Vec<&str> = failed.iter().map(|r| r["path"].as_str().unwrap()).collect();
    // botocore retries a 502 once.
    paths.dedup();
    assert_eq!(paths, ["/s3bad", "/s3"], "{failed:#?}");
    assert!(
        failed
            .iter()
            .all(|r| r["decision"] == "deny" && r["rule"] == "gateway.upstream-unavailable"),
        "{failed:#?}"
    );
}
