//! End to end: two gateways on one PostgreSQL audit table share their PIPL export volumes
//! (`<table>_pipl`): concurrent exports through both never take the fleet past a band, a
//! restarted gateway continues from the database, and a gateway that cannot read the
//! volumes does not start (or refuses the export). Each test uses its own tables. Without a
//! server the tests skip locally and fail in CI (`CI=true`).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::pg::{drop_tables, dsn, pg, table};
use common::{BIN, Gateway, Options, Upstream};

/// Datasets of 30,000 individuals each: three are exempt together (90,000), a fourth would
/// make 120,000 (the standard-contract band).
const DATASETS: usize = 8;
const SUBJECTS: u64 = 30_000;

fn catalog() -> String {
    (1..=DATASETS)
        .map(|i| {
            format!(
                "  - id: cn-{i}
    kind: dataset
    match:
      prefix: /cn/{i}/
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: {SUBJECTS}
"
            )
        })
        .collect()
}

fn registry(dir: &Path) -> PathBuf {
    let mut r =
        std::fs::read_to_string(common::repo().join("examples/quickstart/registry.yaml")).unwrap();
    r.push_str(
        "
  - id: acme-cn
    name: Acme China (exporting data handler, not a CIIO)
    country: CN
  - id: plain-au
    name: Importer without a PIPL mechanism
    country: AU
",
    );
    let p = dir.join("registry.yaml");
    std::fs::write(&p, r).unwrap();
    p
}

fn options(up: &Upstream, registry: &Path, dsn: &str, table: &str) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: cn-store\n    url: {}\n    jurisdiction: CN\n    operator: acme-cn\n",
            up.url()
        ),
        extra_routes: "  - prefix: /cn/\n    upstream: cn-store\n".into(),
        extra_catalog: catalog(),
        registry: Some(registry.to_path_buf()),
        extra_audit: format!(
            "  sink: postgres\n  postgres:\n    dsn: \"{dsn}\"\n    table: {table}\n"
        ),
        ..Options::default()
    }
}

async fn upstream() -> Upstream {
    Upstream::answering(b"id\n1\n").await
}

/// GET `path` as an Australian importer: (status, body).
async fn get(client: &reqwest::Client, url: String, token: &str) -> (u16, String) {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

struct Replica {
    gw: Gateway,
    client: reqwest::Client,
    token: String,
}

impl Replica {
    fn start(opts: Options) -> Replica {
        let gw = Gateway::start(opts);
        let client = gw.client();
        let token = gw.token("pipeline", "plain-au", "AU", "training");
        Replica { gw, client, token }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        get(&self.client, self.gw.url(path), &self.token).await
    }
}

fn file(i: usize) -> String {
    format!("/cn/{i}/part-1.csv")
}

/// `serve` with `opts`, expected to refuse to start: its stderr.
fn refused_start(opts: &Options) -> String {
    let (_dir, cfg, _, _) = common::prepare(opts);
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("BORDERGATE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_never_export_past_the_band_together_and_a_restart_continues() {
    let Some(c) = pg().await else { return };
    let t = table("fleet");
    let up = upstream().await;
    let keep = tempfile::tempdir().unwrap();
    let reg = registry(keep.path());
    let opts = options(&up, &reg, &dsn(), &t);
    // Each replica writes a chain of its own: one name each.
    let named = |name: &str| Options {
        extra_config: format!("name: {name}\n"),
        ..opts.clone()
    };
    let replicas = [
        Replica::start(named("pipl-a")),
        Replica::start(named("pipl-b")),
    ];

    // Every dataset once, all at the same time, alternating between the two gateways.
    let replicas = Arc::new(replicas);
    let mut tasks = Vec::new();
    for i in 1..=DATASETS {
        let r = replicas.clone();
        tasks.push(tokio::spawn(
            async move { (i, r[i % 2].get(&file(i)).await) },
        ));
    }
    let mut allowed = Vec::new();
    for task in tasks {
        let (i, (status, body)) = task.await.unwrap();
        match status {
            200 => allowed.push(i),
            451 => {
                let p: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(p["rule"], "cn.art38.no-basis", "{p}");
                let detail = p["detail"].as_str().unwrap();
                assert!(
                    detail.contains("120,000 individuals' non-sensitive"),
                    "{detail}"
                );
                assert!(detail.contains("band `contract`"), "{detail}");
            }
            s => panic!("unexpected {s} for cn-{i}: {body}"),
        }
    }
    // Alone, each gateway would have let three through (up to 180,000 individuals).
    assert_eq!(allowed.len(), 3, "allowed: {allowed:?}");
    assert_eq!(up.requests().len(), 3, "refused exports never reached it");
    let row = c
        .query_one(
            &format!(
                "SELECT count(*), sum(subjects)::int8 FROM {t}_pipl WHERE exporter = 'acme-cn'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, i64>(1), 90_000);
    // Every refusal is in the shared audit trail.
    let denied = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE kind = 'decision' AND decision = 'deny'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(denied.get::<_, i64>(0), (DATASETS - 3) as i64);

    // One gateway restarts: it continues from the database.
    let mut replicas = Arc::into_inner(replicas).unwrap();
    replicas[1].gw.stop();
    replicas[1] = Replica::start(named("pipl-b"));
    let refused = (1..=DATASETS).find(|i| !allowed.contains(i)).unwrap();
    for r in &replicas {
        let (s, body) = r.get(&file(refused)).await;
        assert_eq!(s, 451, "still past the band after a restart: {body}");
        assert!(body.contains("120,000 individuals"), "{body}");
        // A dataset already counted this year adds nobody.
        let (s, body) = r.get(&file(allowed[0])).await;
        assert_eq!(s, 200, "{body}");
    }
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {t}_pipl"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "nothing counted twice");
    // `policy explain` counts from the same ledger.
    let out = std::process::Command::new(BIN)
        .args(["policy", "explain", "--dataset", &format!("cn-{refused}")])
        .args([
            "--jurisdiction",
            "AU",
            "--org",
            "plain-au",
            "--purpose",
            "training",
        ])
        .args(["--exporter", "acme-cn", "--config"])
        .arg(&replicas[0].gw.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("120,000 individuals' non-sensitive"),
        "{text}"
    );
    drop(replicas);
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_that_cannot_count_does_not_start_or_export() {
    let Some(c) = pg().await else { return };
    let up = upstream().await;
    let keep = tempfile::tempdir().unwrap();
    let reg = registry(keep.path());

    // No database at all: the replica starts (a fleet restarts during outages), but
    // exports nothing — nor anything else — until it has counted.
    let dead = format!(
        "host=127.0.0.1 port={} user=postgres dbname=test connect_timeout=2",
        common::dead_port()
    );
    let r = Replica::start(options(&up, &reg, &dead, &table("dead")));
    let (s, body) = r.get(&file(1)).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("audit-unavailable"), "{body}");
    drop(r);

    // The audit table works, but the volumes cannot be read.
    let t = table("unreadable");
    c.batch_execute(&format!("CREATE TABLE {t}_pipl (x INT)"))
        .await
        .unwrap();
    let err = refused_start(&options(&up, &reg, &dsn(), &t));
    assert!(
        err.contains(&format!(
            "cannot count PIPL export volumes in postgres table `{t}_pipl`"
        )),
        "{err}"
    );
    drop_tables(&c, &t).await;

    // Another replica is stuck holding the exporter's lock: exports are refused (after the
    // lock timeout), other requests are not.
    let t = table("stuck");
    let r = Replica::start(options(&up, &reg, &dsn(), &t));
    let (s, body) = r.get(&file(1)).await;
    assert_eq!(s, 200, "{body}");
    let year = bordergate::pipl::year_of(time::OffsetDateTime::now_utc());
    let key = format!("bordergate-pipl:{t}_pipl:acme-cn:{year}");
    c.execute("SELECT pg_advisory_lock(hashtext($1))", &[&key])
        .await
        .unwrap();
    let (s, body) = r.get(&file(2)).await;
    assert_eq!(s, 503, "{body}");
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["type"], "urn:bordergate:problem:pipl-volume-unavailable");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was forwarded"),
        "{p}"
    );
    let eu = r
        .client
        .get(r.gw.url("/datasets/eu-customers/customers.csv"))
        .bearer_auth(r.gw.token("alice", "acme-de", "DE", "analytics"))
        .send()
        .await
        .unwrap();
    assert_eq!(eu.status(), 200, "only Chinese exports need the ledger");
    // Released: the next export is counted on a fresh session.
    c.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&key])
        .await
        .unwrap();
    let (s, body) = r.get(&file(2)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.requests().len(), 2);
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {t}_pipl"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "the refused export was not counted");
    drop(r);
    drop_tables(&c, &t).await;
}
