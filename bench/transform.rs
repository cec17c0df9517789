//! Criterion microbenchmarks of minimisation in transit, in process (no network, no
//! audit): the CSV transformer over the quickstart's tickets repeated with a distinct
//! customer id per row (the rows of bench/transform.sh) under the rule
//! eu.scc.us-training-minimised, and its parts — one pseudonym, the redaction of one
//! message. MB/s are of source bytes. `cargo bench --bench transform`.
//!
//! The end-to-end figures (through the gateway, against untransformed streaming in the
//! same run) come from bench/transform.sh.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use bordergate::catalog::Catalog;
use bordergate::catalog::schema::ColumnKind;
use bordergate::transform::batch::{self, Batches};
use bordergate::transform::tabular::{Csv, Transformer};
use bordergate::transform::{Keyring, Method, Plan, Redactor, Requirement};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const QUICKSTART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart");

/// `bytes` of CSV: the quickstart's tickets over and over, customer ids C0, C1, ...
fn rows(bytes: usize) -> Vec<u8> {
    let src = std::fs::read_to_string(format!(
        "{QUICKSTART}/store/datasets/eu-tickets/tickets.csv"
    ))
    .unwrap();
    let mut lines = src.lines();
    let header = lines.next().unwrap();
    let body: Vec<(String, String)> = lines
        .map(|l| {
            let (id, rest) = l.split_once(',').unwrap();
            let (_, rest) = rest.split_once(',').unwrap();
            (format!("{id},"), format!(",{rest}\n"))
        })
        .collect();
    let mut out = format!("{header}\n").into_bytes();
    let mut n = 0usize;
    while out.len() < bytes {
        let (a, b) = &body[n % body.len()];
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(format!("C{n}").as_bytes());
        out.extend_from_slice(b.as_bytes());
        n += 1;
    }
    out
}

fn plan() -> Plan {
    let path = Path::new(QUICKSTART).join("catalog.yaml");
    let catalog = Catalog::load(&path).unwrap();
    let schema = catalog.get("eu-tickets").unwrap().schema.clone().unwrap();
    let req = Requirement {
        methods: vec![
            (ColumnKind::Identifier, Method::Pseudonymise),
            (ColumnKind::QuasiIdentifier, Method::Generalise),
            (ColumnKind::Special, Method::Drop),
            (ColumnKind::FreeText, Method::Redact),
        ],
    };
    let ring = Keyring::of(&[("eu", "eu-bench", &[7u8; 32])]).unwrap();
    Plan::new(
        &req,
        Some(&schema),
        "/datasets/eu-tickets/big.csv",
        &ring,
        "eu",
        &Arc::new(Redactor::standard()),
    )
    .unwrap()
}

fn transform(c: &mut Criterion) {
    let input = rows(16 << 20);
    let plan = plan();
    let mut g = c.benchmark_group("csv");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("minimised", |b| {
        let mut out = Vec::with_capacity(input.len());
        b.iter(|| {
            out.clear();
            let mut t = Csv::new(plan.clone());
            for piece in input.chunks(64 << 10) {
                t.feed(piece, &mut out).unwrap();
            }
            t.finish(&mut out).unwrap();
            black_box(out.len())
        });
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    g.bench_function("minimised-batches", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut batches = Batches::new(
                Box::new(Csv::new(plan.clone())),
                batch::window(),
                rt.handle().clone(),
                |o: Vec<u8>| {
                    n += o.len();
                    Ok(())
                },
            );
            for piece in input.chunks(64 << 10) {
                batches.feed(piece).unwrap();
            }
            batches.finish().unwrap();
            black_box(n)
        });
    });
    g.finish();

    let key = plan.key.clone().unwrap();
    let mut g = c.benchmark_group("parts");
    g.bench_function("pseudonym", |b| {
        let mut s = String::new();
        b.iter(|| {
            s.clear();
            key.hash
                .pseudonym_into(black_box("fakey.schein1@example.invalid"), &mut s);
            black_box(s.len())
        });
    });
    let r = Redactor::standard();
    for (name, text) in [
        (
            "redact-contact",
            "Cannot log in since the update. Contact me at fakey.schein1@example.invalid or +49 74 9843470.",
        ),
        (
            "redact-clean",
            "My router drops the connection every evening, since the update last week.",
        ),
    ] {
        g.bench_function(name, |b| {
            let mut s = String::new();
            b.iter(|| {
                s.clear();
                r.redact_into(black_box(text), &mut s);
                black_box(s.len())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, transform);
criterion_main!(benches);
