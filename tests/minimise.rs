//! Minimisation in transit, end to end: the quickstart's support tickets (CSV, JSON Lines,
//! Parquet) fetched through the real gateway whole from Germany and minimised for a US
//! importer holding SCCs, read back by pandas and pyarrow; pseudonyms stable across
//! downloads and different across keys; refusals still refused; a schema that does not
//! match its file fails `check`; a large CSV transformed in flat memory.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Gateway, Options};
use serde_json::Value;

const TICKETS: &str = "/datasets/eu-tickets/tickets";
const IDENTIFIERS: &[&str] = &["customer_id", "name", "email"];

/// A key file with one EU key.
fn keys(dir: &Path, id: &str, byte: u8) -> PathBuf {
    let p = dir.join(format!("{id}.yaml"));
    std::fs::write(
        &p,
        format!(
            "regions:\n  eu:\n    current: {id}\n    keys:\n      {id}: {}\n",
            hex::encode([byte; 32])
        ),
    )
    .unwrap();
    p
}

fn start(key: &Path) -> Gateway {
    Gateway::start(Options {
        extra_config: format!("transform:\n  keys: {}\n", key.display()),
        ..Options::default()
    })
}

/// The source rows of the tickets CSV, by column.
fn source() -> (Vec<String>, Vec<Vec<String>>) {
    let path = common::repo().join("examples/quickstart/store/datasets/eu-tickets/tickets.csv");
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn column<'a>(header: &[String], rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = header.iter().position(|h| h == name).unwrap();
    rows.iter().map(|r| r[i].as_str()).collect()
}

async fn get(gw: &Gateway, token: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = gw
        .client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.bytes().await.unwrap().to_vec())
}

/// No identifier value of the source, nor a contact in its free text, is in `bytes`.
fn assert_no_identifiers(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    let (header, rows) = source();
    for c in IDENTIFIERS {
        for v in column(&header, &rows, c) {
            assert!(!text.contains(v), "{what}: `{v}` of `{c}` is in the output");
        }
    }
    assert!(
        !text.contains("@example.invalid"),
        "{what}: an e-mail address is left"
    );
    assert!(!text.contains("+49 "), "{what}: a phone number is left");
}

/// The venv python, or None (skip) outside CI.
fn python() -> Option<PathBuf> {
    common::test_python()
}

/// pandas or pyarrow reads `path` through the gateway; columns and values as text.
fn read_with_python(py: &Path, gw: &Gateway, token: &str, kind: &str, path: &str) -> Value {
    let out = Command::new(py)
        .arg(common::repo().join("tests/clients/minimise.py"))
        .args([kind, &gw.url(path)])
        .env("TOKEN", token)
        .env("SSL_CERT_FILE", gw.dir.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The minimised columns have the declared granularity; identifiers are pseudonyms.
fn assert_minimised(v: &Value, what: &str) {
    let cols: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "ticket_id",
            "customer_id",
            "name",
            "email",
            "birth_date",
            "postcode",
            "age",
            "message",
            "label",
            "opened"
        ],
        "{what}: `city` (no granularity declared) is dropped"
    );
    let vals = |c: &str| -> Vec<String> {
        v["values"][c]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(vals("ticket_id").len(), 40, "{what}");
    for c in IDENTIFIERS {
        for p in vals(c) {
            assert!(p.starts_with("p-") && p.len() == 18, "{what}: {c} = {p}");
        }
    }
    for y in vals("birth_date") {
        assert!(
            y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()),
            "{what}: year {y}"
        );
    }
    for p in vals("postcode") {
        assert_eq!(p.chars().count(), 2, "{what}: postcode {p}");
    }
    for a in vals("age") {
        let (lo, hi) = a.split_once('-').unwrap();
        let (lo, hi): (u32, u32) = (lo.parse().unwrap(), hi.parse().unwrap());
        assert!(lo % 10 == 0 && hi == lo + 9, "{what}: age band {a}");
    }
    assert!(
        vals("message").iter().any(|m| m.contains("[redacted]")),
        "{what}"
    );
    let (header, rows) = source();
    assert_eq!(
        vals("label"),
        column(&header, &rows, "label"),
        "{what}: kept as is"
    );
}

#[tokio::test]
async fn tickets_leave_whole_in_germany_and_minimised_for_the_us() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys(tmp.path(), "eu-test-1", 7);
    let gw = start(&key);
    let de = gw.token("alice", "acme-de", "DE", "training");
    let us = gw.token("hana", "hooli-us", "US", "training");
    let none = gw.token("bob", "acme-us", "US", "training");
    let csv_path = format!("{TICKETS}.csv");

    // Germany: the file as it is.
    let (s, h_de, whole) = get(&gw, &de, &csv_path).await;
    assert_eq!(s, 200);
    assert!(h_de.get("bordergate-transform").is_none());
    let original = std::fs::read(gw.store.join("datasets/eu-tickets/tickets.csv")).unwrap();
    assert_eq!(whole, original);

    // The US with SCCs, for training: minimised, with its own ETag, twice the same bytes.
    let (s, h, first) = get(&gw, &us, &csv_path).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&first));
    let t = h["bordergate-transform"].to_str().unwrap();
    assert!(
        t.contains("pseudonymise=customer_id,name,email") && t.contains("key=eu-test-1"),
        "{t}"
    );
    assert!(
        t.contains("drop=city") && t.contains("redact=message"),
        "{t}"
    );
    assert_ne!(h["etag"], h_de["etag"]);
    assert_eq!(h["accept-ranges"], "none");
    assert_eq!(
        h["bordergate-decision"].to_str().unwrap().split(';').next(),
        Some("allow")
    );
    assert_no_identifiers(&first, "CSV");
    let (_, h2, second) = get(&gw, &us, &csv_path).await;
    assert_eq!(first, second, "pseudonyms are stable across downloads");
    assert_eq!(h["etag"], h2["etag"]);

    // The evidence: the decision names columns, methods and the key id (never the key);
    // the completion carries the digest of the bytes sent.
    let id = h["x-request-id"].to_str().unwrap();
    let d = gw.decision(id);
    assert_eq!(d["transform"]["key_id"], "eu-test-1");
    assert_eq!(d["transform"]["drop"], serde_json::json!(["city"]));
    assert_eq!(d["rule"], "eu.scc.us-training-minimised");
    let log = std::fs::read_to_string(&gw.audit).unwrap();
    assert!(
        !log.contains(&hex::encode([7u8; 32])),
        "the key is in the audit log"
    );
    let c = gw.completion(id).await;
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &first);
    assert_eq!(
        c["sent_sha256"],
        format!("sha256:{}", hex::encode(sha.as_ref()))
    );

    // JSON Lines alike.
    let (s, _, jl) = get(&gw, &us, &format!("{TICKETS}.jsonl")).await;
    assert_eq!(s, 200);
    assert_no_identifiers(&jl, "JSON Lines");
    let rows: Vec<Value> = String::from_utf8(jl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 40);
    assert!(rows.iter().all(|r| r.get("city").is_none()));

    // Parquet: footer first, row groups by Range from the store, transformed.
    let (s, h, pq) = get(&gw, &us, &format!("{TICKETS}.parquet")).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&pq));
    assert_eq!(h["content-type"], "application/vnd.apache.parquet");
    assert_no_identifiers(&pq, "Parquet");

    // Refused as before: no mechanism; and no Range on transformed data.
    let (s, _, body) = get(&gw, &none, &csv_path).await;
    assert_eq!(s, 451, "{}", String::from_utf8_lossy(&body));
    let r = gw
        .client()
        .get(gw.url(&csv_path))
        .bearer_auth(&us)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 416);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:bordergate:problem:transformed-range");

    // pandas and pyarrow, through the gateway.
    if let Some(py) = python() {
        let c = read_with_python(&py, &gw, &us, "csv", &csv_path);
        assert_minimised(&c, "pandas CSV");
        let p = read_with_python(&py, &gw, &us, "parquet", &format!("{TICKETS}.parquet"));
        assert_minimised(&p, "pyarrow Parquet");
        // One person, one pseudonym, in every format: joins still work.
        assert_eq!(c["values"]["customer_id"], p["values"]["customer_id"]);
    }

    // Another key: other pseudonyms.
    let other = keys(tmp.path(), "eu-test-2", 8);
    let gw2 = start(&other);
    let us2 = gw2.token("hana", "hooli-us", "US", "training");
    let (s, _, by_other) = get(&gw2, &us2, &csv_path).await;
    assert_eq!(s, 200);
    let pseudonyms = |b: &[u8]| -> Vec<String> {
        csv::Reader::from_reader(b)
            .records()
            .map(|r| r.unwrap()[1].to_string())
            .collect()
    };
    let (a, b) = (pseudonyms(&first), pseudonyms(&by_other));
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter().zip(&b).all(|(x, y)| x != y),
        "pseudonyms differ across keys"
    );
}

#[tokio::test]
async fn no_key_no_schema_no_transfer() {
    // No key for the EU region: refused, fail closed (nothing untransformed leaves).
    let gw = Gateway::start(Options {
        extra_catalog: "  - id: eu-notes
    kind: dataset
    match: { prefix: /datasets/eu-notes/ }
    origins: [DE]
    categories: [personal]
    purposes: [training]
"
        .into(),
        ..Options::default()
    });
    let us = gw.token("hana", "hooli-us", "US", "training");
    let (s, _, body) = get(&gw, &us, &format!("{TICKETS}.csv")).await;
    assert_eq!(s, 451, "{}", String::from_utf8_lossy(&body));
    let p: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(p["type"], "urn:bordergate:problem:transform-unavailable");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("no pseudonymisation key")
    );
    // No schema: the gateway cannot tell what to transform.
    std::fs::create_dir_all(gw.store.join("datasets/eu-notes")).unwrap();
    std::fs::write(gw.store.join("datasets/eu-notes/n.csv"), "a\n1\n").unwrap();
    let (s, _, body) = get(&gw, &us, "/datasets/eu-notes/n.csv").await;
    assert_eq!(s, 451);
    assert!(String::from_utf8_lossy(&body).contains("declares no schema"));
}

#[test]
fn check_refuses_a_schema_the_file_does_not_match() {
    let (dir, cfg, _, store) = common::prepare(&Options::default());
    let ok = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let f = store.join("datasets/eu-tickets/tickets.csv");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replacen("postcode", "zip", 1)).unwrap();
    let bad = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err =
        String::from_utf8_lossy(&bad.stderr).to_string() + &String::from_utf8_lossy(&bad.stdout);
    assert!(err.contains("`postcode`") && err.contains("`zip`"), "{err}");
    drop(dir);
}

/// Resident set size of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A CSV of `BORDERGATE_TRANSFORM_BYTES` (default 32 MiB, a debug build transforms slowly; `.ci/run` sets 2 GiB on the release build) transforms with
/// the gateway's RSS growing less than 64 MiB.
#[tokio::test]
async fn a_large_csv_transforms_in_flat_memory() {
    let size: u64 = std::env::var("BORDERGATE_TRANSFORM_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let key = keys(tmp.path(), "eu-big", 9);
    let gw = start(&key);
    // Written with a streaming writer, after the start-up check.
    let path = gw.store.join("datasets/eu-tickets/big.csv");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let (header, rows) = source();
    writeln!(w, "{}", header.join(",")).unwrap();
    let mut written = 0u64;
    let mut n = 0usize;
    let quote = |v: &str| {
        if v.contains([',', '"']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    };
    let mut line = String::new();
    while written < size {
        line.clear();
        for (i, v) in rows[n % rows.len()].iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            if i == 1 {
                line.push_str(&format!("C{n}"));
            } else {
                line.push_str(&quote(v));
            }
        }
        line.push('\n');
        written += line.len() as u64;
        w.write_all(line.as_bytes()).unwrap();
        n += 1;
    }
    w.flush().unwrap();
    drop(w);
    let us = gw.token("hana", "hooli-us", "US", "training");
    let pid = gw.child.id();
    let before = rss(pid);
    let sampler = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        });
        (stop, h)
    };
    let started = std::time::Instant::now();
    let mut r = gw
        .client()
        .get(gw.url("/datasets/eu-tickets/big.csv"))
        .bearer_auth(&us)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut got = 0u64;
    let mut lines = 0u64;
    while let Some(c) = r.chunk().await.unwrap() {
        got += c.len() as u64;
        lines += memchr::memchr_iter(b'\n', &c).count() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.1.join().unwrap();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "transformed {} MiB of CSV into {} MiB in {secs:.1} s ({:.0} MB/s); gateway RSS {} MiB before, peak {} MiB, growth {} MiB",
        size >> 20,
        got >> 20,
        size as f64 / secs / 1e6,
        before >> 20,
        peak >> 20,
        growth >> 20
    );
    assert_eq!(lines, n as u64 + 1, "every row arrived");
    assert!(growth < 64 << 20, "RSS grew by {} MiB", growth >> 20);
    let _ = std::fs::remove_file(&path);
}
