//! End to end: PIPL volume bands counted per exporter, enforced, and seeded from the audit
//! trail after a restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Gateway, Options, Upstream};

const CATALOG: &str = "  - id: cn-a
    kind: dataset
    match:
      prefix: /cn/a/
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 60000
  - id: cn-b
    kind: dataset
    match:
      prefix: /cn/b/
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 50000
";

fn registry(dir: &Path) -> std::path::PathBuf {
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
  - id: contract-au
    name: Importer with a filed PIPL standard contract
    country: AU
    mechanisms:
      - kind: pipl-standard-contract
        reference: CAC filing 2025-001
        categories: [personal]
        valid_from: 2024-01-01
",
    );
    let p = dir.join("registry.yaml");
    std::fs::write(&p, r).unwrap();
    p
}

fn options(up: &Upstream, registry: &Path, audit: &Path) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: cn-store\n    url: {}\n    jurisdiction: CN\n    operator: acme-cn\n",
            up.url()
        ),
        extra_routes: "  - prefix: /cn/\n    upstream: cn-store\n".into(),
        extra_catalog: CATALOG.into(),
        registry: Some(registry.to_path_buf()),
        audit_path: Some(audit.to_path_buf()),
        ..Options::default()
    }
}

/// The data host in China: every object is a two-line CSV.
async fn cn_store() -> Upstream {
    Upstream::answering(b"id\n1\n").await
}

async fn get(gw: &Gateway, org: &str, path: &str) -> (u16, String, String) {
    let t = gw.token("pipeline", org, "AU", "training");
    let r = gw
        .client()
        .get(gw.url(path))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let decision = r
        .headers()
        .get("bordergate-decision")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, decision, r.text().await.unwrap())
}

#[tokio::test]
async fn crossing_100k_requires_a_standard_contract_and_survives_a_restart() {
    let up = cn_store().await;
    let keep = tempfile::tempdir().unwrap();
    let reg = registry(keep.path());
    let audit = keep.path().join("audit.log");

    let mut gw = Gateway::start(options(&up, &reg, &audit));
    // 60,000 individuals: exempt, twice (the same individuals count once).
    for _ in 0..2 {
        let (s, d, body) = get(&gw, "plain-au", "/cn/a/part-1.csv").await;
        assert_eq!(s, 200, "{body}");
        assert!(d.contains("rule=\"cn.volume-exempt\""), "{d}");
    }
    // Another 50,000 would make 110,000: the standard-contract band.
    let (s, _, body) = get(&gw, "plain-au", "/cn/b/part-1.csv").await;
    assert_eq!(s, 451, "{body}");
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert_eq!(p["rule"], "cn.art38.no-basis", "{p}");
    assert!(
        detail.contains("110,000 individuals' non-sensitive"),
        "{detail}"
    );
    assert!(detail.contains("band `contract`"), "{detail}");
    assert!(
        detail.contains("requires a filed CAC standard contract or a PIPL certification"),
        "{detail}"
    );
    // The importer with a filed standard contract may have it.
    let (s, d, body) = get(&gw, "contract-au", "/cn/b/part-1.csv").await;
    assert_eq!(s, 200, "{body}");
    assert!(d.contains("rule=\"cn.standard-contract\""), "{d}");
    assert_eq!(
        up.requests().len(),
        3,
        "the refused request never reached the upstream"
    );
    gw.stop();

    // Restart on the same audit log: 110,000 are counted from the trail.
    let gw = Gateway::start(options(&up, &reg, &audit));
    let (s, _, body) = get(&gw, "plain-au", "/cn/a/part-1.csv").await;
    assert_eq!(s, 451, "the band persists across a restart: {body}");
    assert!(body.contains("110,000 individuals"), "{body}");
    let (s, d, body) = get(&gw, "contract-au", "/cn/a/part-1.csv").await;
    assert_eq!(s, 200, "{body}");
    assert!(d.contains("cn.standard-contract"), "{d}");

    // `policy explain` shows the volume it considered, counted from the same trail.
    let out = std::process::Command::new(common::BIN)
        .args([
            "policy",
            "explain",
            "--dataset",
            "cn-a",
            "--jurisdiction",
            "AU",
        ])
        .args([
            "--org",
            "plain-au",
            "--purpose",
            "training",
            "--exporter",
            "acme-cn",
        ])
        .arg("--config")
        .arg(&gw.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("volume:   Cumulative export volume of `acme-cn`"),
        "{text}"
    );
    assert!(
        text.contains("110,000 individuals' non-sensitive"),
        "{text}"
    );
    assert!(text.contains("cn.art38.no-basis"), "{text}");
}

/// Two first exports decided at the same moment on one replica's file sink: the second is
/// decided on the first's count, so 60,000 + 50,000 individuals never both leave without a
/// contract (repeated, each round on a fresh gateway, to give a race its chances).
#[tokio::test]
async fn concurrent_first_exports_cannot_both_stay_under_100k() {
    let up = cn_store().await;
    let keep = tempfile::tempdir().unwrap();
    let reg = registry(keep.path());
    for round in 0..3 {
        let audit = keep.path().join(format!("audit-{round}.log"));
        let gw = Gateway::start(options(&up, &reg, &audit));
        let ((a, _, ba), (b, _, bb)) = tokio::join!(
            get(&gw, "plain-au", "/cn/a/part-1.csv"),
            get(&gw, "plain-au", "/cn/b/part-1.csv")
        );
        let mut got = [a, b];
        got.sort_unstable();
        assert_eq!(got, [200, 451], "round {round}: {ba} / {bb}");
        // What the trail says agrees: one allowed export of the two.
        let allowed = gw
            .records()
            .into_iter()
            .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
            .filter(|r| r["dataset"] == "cn-a" || r["dataset"] == "cn-b")
            .count();
        assert_eq!(allowed, 1, "round {round}");
        drop(gw);
    }
}
