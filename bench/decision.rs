//! Criterion benchmarks: decision latency for the whole shipped pack with a generated
//! 10,000-entry catalog, and `policy what-if` throughput over a generated 1M-record log.

use std::hint::black_box;
use std::path::PathBuf;

use bordergate::catalog::Catalog;
use bordergate::model::Direction;
use bordergate::policy::synthetic::{self, QUICKSTART, audit_log};
use bordergate::policy::{PolicySet, Query, whatif};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pack() -> PolicySet {
    let r = root();
    match PolicySet::load(&r.join("policies"), &r.join("policies/tests/registry.yaml")) {
        Ok(p) => p,
        Err(d) => panic!("{d}"),
    }
}

fn catalog(n: usize) -> Catalog {
    synthetic::catalog(n, None).unwrap_or_else(|d| panic!("{d}"))
}

fn decisions(c: &mut Criterion) {
    let set = pack();
    let cat = catalog(10_000);
    let entries: Vec<_> = cat.entries().collect();
    let dests = ["US", "DE", "JP", "AU", "CN", "GB", "IN"]
        .map(|d| bordergate::model::Country::parse(d).unwrap_or_else(|e| panic!("{e}")));
    let orgs = ["dpf-us", "scc-xx", "none-xx", "bcr-xx", "pipl-sc"];
    let day = time::macros::date!(2026 - 03 - 01);
    let mut g = c.benchmark_group("decision");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("resolve+decide, 10k-entry catalog, whole pack", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let e = entries[i % entries.len()];
            let path = format!("/datasets/{}/part-0.parquet", e.id);
            let res = cat.resolve(black_box(&path));
            let tags = res.map(|r| r.tags.into_owned()).unwrap_or_default();
            let d = set.decide(&Query {
                tags: &tags,
                purpose: "analytics",
                importer: Some(orgs[i % orgs.len()]),
                destination: dests[i % dests.len()],
                direction: Direction::Download,
                date: day,
                volume: None,
            });
            black_box(d.effect)
        })
    });
    g.finish();
}

fn what_if(c: &mut Criterion) {
    let set = pack();
    let registry = root().join("examples/quickstart/registry.yaml");
    let quick = match PolicySet::load(&root().join("policies"), &registry) {
        Ok(p) => p,
        Err(d) => panic!("{d}"),
    };
    const N: usize = 1_000_000;
    let log = audit_log(&quick, QUICKSTART, N, time::macros::date!(2026 - 03 - 01));
    let mut g = c.benchmark_group("what-if");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    let opts = whatif::Options {
        keep: 50,
        threads: 2,
        ..whatif::Options::default()
    };
    g.bench_function("replay 1M decision records, 2 threads", |b| {
        b.iter(|| {
            let r = whatif::replay_reader(&set, black_box(&log[..]), &opts);
            black_box(r.map(|r| r.changed).unwrap_or(0))
        })
    });
    g.finish();
}

criterion_group!(benches, decisions, what_if);
criterion_main!(benches);
