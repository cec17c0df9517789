//! The officer's page at a million records: how long the admin listener takes to build its
//! index, and to answer what the page's first paint asks (the overview and the 200 newest
//! records), unfiltered and for "EU personal data to the US, third countries only", against
//! streaming the log as every load did before the index.
//!
//! `cargo bench --bench officer` (set `OFFICER_RECORDS` for another size, `OFFICER_STREAM=0`
//! to skip the streamed baseline; `cargo test --bench officer` runs it in the dev profile);
//! results in bench/results/officer.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bordergate::admin::index::Index;
use bordergate::admin::overview;
use bordergate::audit::place::Regions;
use bordergate::audit::query::Filter;
use bordergate::audit::source::Source;
use bordergate::policy::PolicySet;

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        best = best.min(t.elapsed());
    }
    match last {
        Some(v) => (best, v),
        None => (best, f()),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), String> {
    let records: usize = std::env::var("OFFICER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("audit.log");
    let t = Instant::now();
    let decisions = bordergate::audit::synthetic::officer_log(
        &log,
        records,
        time::OffsetDateTime::now_utc(),
        60,
    )?;
    let size = std::fs::metadata(&log).map_err(|e| e.to_string())?.len();
    println!(
        "log: {records} records, {decisions} decisions, {} MB, written in {}",
        size / 1_000_000,
        ms(t.elapsed())
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = PolicySet::load(
        &root.join("policies"),
        &root.join("examples/quickstart/registry.yaml"),
    )
    .map_err(|d| d.to_string())?;
    let regions = Arc::new(Regions::from_policies(&set));
    let files = vec![log.clone()];
    let index = Index::default();
    let t = Instant::now();
    index.refresh(&files)?;
    let build = t.elapsed();
    println!("index built in {} ({} decisions)", ms(build), index.len());

    let all = Filter {
        regions: Some(regions.clone()),
        ..Filter::default()
    };
    let question = Filter {
        origin: Some("EU".into()),
        destination: Some("US".into()),
        category: Some("personal".into()),
        third_countries: Some("true".into()),
        regions: Some(regions.clone()),
        ..Filter::default()
    };
    println!(
        "| filter | overview (index) | 200 newest records (index) | first paint (both) | overview, streamed as before |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, f) in [
        ("none", &all),
        ("EU → US, personal, third countries", &question),
    ] {
        let c = f.compile()?;
        let (ov, _) = best(5, || index.overview(&files, &c));
        let (recs, _) = best(5, || index.records(&files, &c, 200, true));
        // The streamed baseline reads the whole log: skipped with OFFICER_STREAM=0.
        let stream = if std::env::var("OFFICER_STREAM").is_ok_and(|v| v == "0") {
            Duration::ZERO
        } else {
            best(1, || overview::build(&Source::Files(files.clone()), f)).0
        };
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(ov),
            ms(recs),
            ms(ov + recs),
            ms(stream)
        );
    }
    Ok(())
}
