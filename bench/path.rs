//! Criterion microbenchmarks of the request path's parts, each against the real code:
//! RS256 token verification cold (every token new) and cached (the pipeline's case: one
//! token, many requests); path normalisation plus catalog match with 10,000 datasets;
//! audit append with 1, 16 and 64 concurrent writers sharing the group commit on the
//! benchmarked disk; and one complete in-process request through every phase (token,
//! classification, decision, durable audit, the file store, the completion record).
//!
//! `cargo bench --bench path`; a group alone: `cargo bench --bench path -- token`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bordergate::audit::{AuditLog, CompletionRecord, Outcome, Record};
use bordergate::auth::Authenticator;
use bordergate::catalog::path;
use bordergate::config::AuthConfig;
use bordergate::policy::synthetic;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const ISS: &str = "https://issuer.bench";

/// An RS256 key pair: the public key as PEM and the signer.
fn rs256() -> (String, EncodingKey) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let key = EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).unwrap();
    (kp.public_key_pem(), key)
}

/// An authenticator for `public_pem` (a new one has an empty token cache).
fn authenticator(public_pem: &str) -> (Authenticator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("rs.pem");
    std::fs::write(&pem, public_pem).unwrap();
    let yaml = format!(
        "issuer: {ISS}\naudience: bordergate\nkeys:\n  - kid: rs\n    alg: RS256\n    public_key: {}\n",
        pem.display()
    );
    let cfg: AuthConfig = serde_saphyr::from_str(&yaml).unwrap();
    (Authenticator::from_config(&cfg).unwrap(), dir)
}

fn rs256_token(key: &EncodingKey, sub: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": ISS, "aud": "bordergate", "sub": sub, "org": "acme-de",
        "jurisdiction": "DE", "purpose": "training", "iat": now, "exp": now + 3600,
    });
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rs".into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

fn tokens(c: &mut Criterion) {
    let (public, key) = rs256();
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    g.bench_function("RS256 verify, cold", |b| {
        // Every token new to the authenticator (made here: only when this one runs).
        let fresh: Vec<Vec<u8>> = (0..2048)
            .map(|i| format!("Bearer {}", rs256_token(&key, &format!("u{i}"))).into_bytes())
            .collect();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let (a, _d) = authenticator(&public);
                let n = left.min(fresh.len() as u64);
                let start = Instant::now();
                for t in &fresh[..n as usize] {
                    assert!(black_box(a.verify_shared(Some(t)).is_ok()));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    let (auth, _d) = authenticator(&public);
    let one = format!("Bearer {}", rs256_token(&key, "pipeline")).into_bytes();
    assert!(auth.verify_shared(Some(&one)).is_ok());
    g.bench_function("RS256 verify, cached", |b| {
        b.iter(|| black_box(auth.verify_shared(Some(black_box(&one))).is_ok()))
    });
    g.finish();
}

fn catalog_match(c: &mut Criterion) {
    let cat = synthetic::catalog(10_000, Some(100)).unwrap_or_else(|d| panic!("{d}"));
    let paths: Vec<String> = (0..1024)
        .map(|i| {
            format!(
                "/datasets/ds-{}/train/part-{i:05}.parquet",
                (i * 7919) % 10_000
            )
        })
        .collect();
    let mut g = c.benchmark_group("catalog");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("normalise + match, 10k datasets", |b| {
        b.iter(|| {
            i = (i + 1) % paths.len();
            let p = path::normalize(black_box(&paths[i])).unwrap();
            black_box(cat.resolve(&p.decoded).map(|r| r.entry.id.len()))
        })
    });
    g.finish();
}

fn completion(i: u64) -> Record {
    Record::Completion(CompletionRecord {
        time: "2026-12-03T06:00:00.000000Z".into(),
        request_id: format!("0193a1b2-c3d4-7e5f-8a9b-{i:012x}"),
        decision_seq: i,
        status: 200,
        bytes_in: 0,
        bytes_out: 1024,
        duration_ms: 1,
        outcome: Outcome::Complete,
        detail: None,
        recheck: None,
        sent_sha256: None,
    })
}

fn audit_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // On the benchmarked disk (the target directory), not a tmpfs.
    let base = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-audit");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let log =
        rt.block_on(async { Arc::new(AuditLog::open(&dir.path().join("a.log"), 512).unwrap()) });
    let mut g = c.benchmark_group("audit append (durable)");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    for writers in [1u64, 16, 64] {
        g.throughput(Throughput::Elements(writers));
        g.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &w| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut set = tokio::task::JoinSet::new();
                        for i in 0..w {
                            let log = Arc::clone(&log);
                            set.spawn(async move { log.append(completion(i)).await.is_ok() });
                        }
                        while let Some(r) = set.join_next().await {
                            assert!(matches!(r, Ok(true)));
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    rt.block_on(log.shutdown());
}

fn request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = rt.block_on(async { common::inproc::InProc::start(common::Options::default()) });
    let token = gw.token("alice", "acme-de", "DE", "training");
    const PATH: &str = "/datasets/eu-customers/customers.csv";
    let probe = rt.block_on(gw.send("GET", PATH, Some(&token), &[], b""));
    assert_eq!(probe.status, 200, "{:?}", probe.body);
    let mut g = c.benchmark_group("request (in process)");
    g.throughput(Throughput::Elements(1));
    let us = gw.token("bob", "acme-us", "US", "training");
    let refused = rt.block_on(gw.send("GET", PATH, Some(&us), &[], b""));
    assert_eq!(refused.status, 451, "{:?}", refused.body);
    for (name, token, status) in [
        ("GET allowed, file store, durable audit", &token, 200),
        ("GET refused (451), durable audit", &us, 451),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let a = gw.send("GET", PATH, Some(token), &[], b"").await;
                        assert_eq!(black_box(a.status), status);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tokens, catalog_match, audit_append, request);
criterion_main!(benches);
