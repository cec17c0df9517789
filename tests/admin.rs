//! End-to-end tests of the admin listener: health, metrics, role-checked audit endpoints,
//! the officer's page, and that the proxy port serves none of it.

mod common;
#[path = "support/admin.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use common::Options;
use serde_json::Value;
use support::start;

#[tokio::test]
async fn livez_readyz_and_metrics_without_personal_data() {
    let a = start(Options::default());
    let r = a.get("/livez", None).await;
    assert_eq!(r.status(), 200);
    let r = a.get("/readyz", None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["audit"], "ok");
    assert!(v["policy_version"].as_str().unwrap().starts_with("sha256:"));

    a.traffic().await;
    // The completion record (and its byte count) is written when the body ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = a.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let m = r.text().await.unwrap();
    for want in [
        r#"bordergate_requests_total{decision="allow",status="200"} 1"#,
        r#"bordergate_requests_total{decision="deny",status="451"} 1"#,
        r#"bordergate_requests_total{decision="deny",status="401"} 1"#,
        r#"destination="US"} 1"#,
        "bordergate_request_duration_seconds_count 3",
        "bordergate_audit_fsync_duration_seconds_bucket",
        "bordergate_audit_batch_records_count",
        "bordergate_policy_reloads_total",
        "bordergate_transfer_bases_expiring",
        "bordergate_audit_healthy 1",
    ] {
        assert!(m.contains(want), "missing `{want}` in\n{m}");
    }
    let out = m
        .lines()
        .find(|l| l.starts_with(r#"bordergate_transfer_bytes_total{direction="out"}"#))
        .unwrap();
    assert_ne!(out.rsplit(' ').next(), Some("0"), "{out}");
    for secret in [
        "alice",
        "bob",
        "acme",
        "/datasets",
        "customers.csv",
        "eu-customers",
    ] {
        assert!(!m.contains(secret), "`{secret}` must not be a label:\n{m}");
    }
}

#[tokio::test]
async fn audit_endpoints_need_the_officer_role() {
    let a = start(Options::default());
    a.traffic().await;
    let plain = a.gw.token("alice", "acme-de", "DE", "analytics");
    for path in ["/audit/records", "/audit/verify", "/audit/report"] {
        let r = a.get(path, None).await;
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = a.get(path, Some("not-a-token")).await;
        assert_eq!(r.status(), 401, "{path}");
        let r = a.get(path, Some(&plain)).await;
        assert_eq!(r.status(), 403, "{path}");
        let p: Value = r.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains("compliance-officer"));
    }
    let officer = a.officer();
    let r = a.get("/audit/records?kind=decision", Some(&officer)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 3, "{v}");

    let r = a
        .get(
            "/audit/records?decision=deny&destination=US",
            Some(&officer),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["records"][0]["status"], 451);

    let r = a
        .get(
            "/audit/records?kind=decision&order=desc&limit=1",
            Some(&officer),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["truncated"], true);
    assert_eq!(v["records"][0]["status"], 401, "newest first: {v}");

    let r = a.get("/audit/records?colour=red", Some(&officer)).await;
    assert_eq!(r.status(), 400);

    let r = a.get("/audit/verify", Some(&officer)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_u64().unwrap() >= 4);

    let r = a.get("/audit/report", Some(&officer)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["totals"]["decisions"], 3, "{v}");
    // The 401 is an authentication failure, counted apart from the legal refusal (451).
    assert_eq!(v["totals"]["refused"], 1);
    assert_eq!(v["totals"]["auth_failures"], 1);
    assert_eq!(v["verification"]["ok"], true);
    assert!(
        !v.to_string().contains("alice"),
        "no caller identity in the report"
    );
}

#[tokio::test]
async fn the_proxy_port_never_serves_admin_paths() {
    let a = start(Options::default());
    let officer = a.officer();
    let c = a.gw.client();
    for path in [
        "/audit/records",
        "/audit/verify",
        "/audit/report",
        "/metrics",
        "/readyz",
        "/",
    ] {
        let r = c
            .get(a.gw.url(path))
            .bearer_auth(&officer)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 200, "{path} on the proxy port");
        let body = r.text().await.unwrap();
        assert!(!body.contains("\"records\""), "{path}: {body}");
        assert!(!body.contains("bordergate_requests"), "{path}: {body}");
    }
}

#[tokio::test]
async fn the_page_is_served_with_its_assets_and_a_strict_policy() {
    let a = start(Options::default());
    let r = a.get("/", None).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("/ui/app.js") && html.contains("/ui/app.css"));
    assert!(
        !html.contains("http://") || html.contains("http://www.w3.org"),
        "no remote assets"
    );
    for asset in ["/ui/app.js", "/ui/app.css"] {
        let r = a.get(asset, None).await;
        assert_eq!(r.status(), 200, "{asset}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("https://"), "{asset} loads nothing remote");
    }
    assert_eq!(a.get("/ui/nope.js", None).await.status(), 404);
    let r =
        a.gw.client()
            .post(a.url("/audit/records"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn readyz_fails_when_the_audit_log_cannot_be_written() {
    let a = start(Options {
        audit_path: Some(PathBuf::from("/dev/full")),
        ..Options::default()
    });
    let mut last = Value::Null;
    for _ in 0..50 {
        let r = a.get("/readyz", None).await;
        let code = r.status();
        last = r.json().await.unwrap();
        if code == 503 {
            assert_eq!(last["ready"], false);
            assert_eq!(last["audit"], "write-failing");
            let m = a.get("/metrics", None).await.text().await.unwrap();
            assert!(m.contains("bordergate_audit_healthy 0"), "{m}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readyz stayed ready on /dev/full: {last}");
}

/// The officer's `/audit/verify` answer.
#[allow(clippy::unwrap_used)] // Tests may unwrap.
async fn verify(a: &support::Admined) -> Value {
    let r = a.get("/audit/verify", Some(&a.officer())).await;
    r.json().await.unwrap()
}

/// A gateway signing checkpoints with a new key, its `audit:` section extended by `extra`;
/// the key's directory must outlive it.
#[allow(clippy::unwrap_used)] // Tests may unwrap.
fn signing(
    extra: &str,
) -> (
    tempfile::TempDir,
    bordergate::audit::checkpoint::PublicKey,
    support::Admined,
) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("checkpoint.key");
    let (der, public) = bordergate::audit::checkpoint::generate().unwrap();
    std::fs::write(&key, der).unwrap();
    let a = start(Options {
        extra_audit: format!("  checkpoint_key: {}\n{extra}", key.display()),
        ..Options::default()
    });
    (keys, public, a)
}

/// A gateway signing checkpoints and rotating small segments: `/audit/verify` checks every
/// signature with the configured key across all segments, `/audit/report` renders the
/// Art. 30 record in every format, and tampering with a rotated segment is caught.
#[tokio::test]
async fn verify_checks_signed_checkpoints_across_segments() {
    let (_keys, public, a) = signing("  checkpoint_every: 2\n  rotate_bytes: 3000\n");
    for _ in 0..3 {
        a.traffic().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let officer = a.officer();

    let r = a.get("/audit/verify", Some(&officer)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["signatures"]["checked"], true, "{v:#}");
    assert_eq!(v["signatures"]["status"], "valid", "{v:#}");
    assert_eq!(v["signatures"]["key_id"], public.id.as_str());
    assert!(v["signatures"]["valid"].as_u64().unwrap() >= 2, "{v:#}");
    assert_eq!(v["checkpoints"], v["signatures"]["valid"]);
    assert!(v["signed_to"].as_u64().is_some());
    let files = v["files"].as_array().unwrap();
    assert!(files.len() >= 2, "rotated segments are verified too: {v:#}");
    assert!(v["summary"].as_str().unwrap().contains("signed checkpoint"));

    // Records come from every segment: the first decision sits in a rotated one.
    let r = a
        .get("/audit/records?kind=decision&order=asc", Some(&officer))
        .await;
    let recs: Value = r.json().await.unwrap();
    assert_eq!(recs["count"], 9, "{recs:#}");

    // The Art. 30 record, in each format, headed by the signed verification.
    let v: Value = a
        .get("/audit/report?from=2000-01-01", Some(&officer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["verification"]["ok"], true, "{v:#}");
    assert!(v["verification"]["checkpoints"].as_u64().unwrap() >= 2);
    assert_eq!(v["refusals"][0]["destination"], "US", "{v:#}");
    assert_eq!(v["refusals"][0]["count"], 3);
    assert_eq!(v["totals"]["decisions"], 9);
    assert!(v["files"].as_array().unwrap().len() >= 2);
    for (format, ctype, want) in [
        ("md", "text/markdown", "# Record of transfers"),
        ("html", "text/html", "<h1>Record of transfers"),
        ("csv", "text/csv", "type,destination,article"),
    ] {
        let r = a
            .get(&format!("/audit/report?format={format}"), Some(&officer))
            .await;
        assert_eq!(r.status(), 200, "{format}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(ctype), "{format}: {ct}");
        let body = r.text().await.unwrap();
        assert!(body.contains(want), "{format}: {body}");
        assert!(body.contains("signed checkpoint"), "{format}: {body}");
        assert!(!body.contains("bob"), "no caller identity: {body}");
    }
    let r = a.get("/audit/report?format=pdf", Some(&officer)).await;
    assert_eq!(r.status(), 400);
    // The report takes the records' filters (destination included); an unknown origin is an error.
    let r = a.get("/audit/report?origin=Atlantis", Some(&officer)).await;
    assert_eq!(r.status(), 400);
    let csv = a
        .get(
            "/audit/report?format=csv&destination=US&origin=EU",
            Some(&officer),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains("# filters: origin: EU; destination: US"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .filter(|l| l.starts_with("transfer,") || l.starts_with("refusal,"))
            .all(|l| l.split(',').nth(1) == Some("US")),
        "{csv}"
    );
    let r = a.get("/audit/report?from=yesterday", Some(&officer)).await;
    assert_eq!(r.status(), 400);

    // Tamper with the oldest rotated segment: verify names it.
    let seg = a.gw.audit.with_file_name("audit-000001.log");
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, text.replacen("acme-de", "acme-xx", 1)).unwrap();
    let v: Value = a
        .get("/audit/verify", Some(&officer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], false, "{v:#}");
    assert_eq!(v["damage"][0]["kind"], "modified", "{v:#}");
    assert!(
        v["damage"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("audit-000001.log")
    );
}

/// A gateway that has not signed its first checkpoint yet: `/audit/verify` says pending, and
/// `bordergate audit verify` with the same key and grace gives the same verdict.
#[tokio::test]
async fn a_young_log_awaits_its_first_checkpoint_in_admin_and_cli_alike() {
    let (_keys, public, a) =
        signing("  checkpoint_every: 1000\n  checkpoint_interval_secs: 3600\n");
    a.traffic().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = verify(&a).await;
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["checkpoints"], 0, "{v:#}");
    assert_eq!(v["signatures"]["status"], "pending", "{v:#}");
    let b64 = public.to_base64();
    let cli = |grace: &str| {
        std::process::Command::new(common::BIN)
            .args([
                "audit",
                "verify",
                "--pubkey",
                &b64,
                "--checkpoint-grace",
                grace,
            ])
            .arg(&a.gw.audit)
            .output()
            .unwrap()
    };
    let o = cli("3605");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli("0");
    assert_eq!(o.status.code(), Some(1));
}

/// Without a key the signatures are reported as unchecked, not as valid.
#[tokio::test]
async fn verify_without_a_key_says_signatures_are_unchecked() {
    let a = start(Options::default());
    a.traffic().await;
    let v = verify(&a).await;
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["signatures"]["checked"], false);
    assert_eq!(v["signatures"]["status"], "unchecked");
}

/// The admin API's `/policy/explain` answers from the serving snapshot through the same
/// classification and decision as the gateway: its rule is the one the gateway records.
#[tokio::test]
async fn policy_explain_on_the_admin_api_agrees_with_the_gateway() {
    let a = start(Options::default());
    let officer = a.officer();
    let plain = a.gw.token("alice", "acme-de", "DE", "analytics");
    let q = "/policy/explain?path=/datasets/eu-customers/customers.csv&jurisdiction=US&org=acme-us&purpose=analytics";
    assert_eq!(a.get(q, Some(&plain)).await.status(), 403);
    let r = a.get(q, Some(&officer)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["decision"]["effect"], "deny");
    assert_eq!(v["transfer"]["destination"], "US");
    assert!(
        v["remedies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "dpf")
    );
    let us = a.gw.token("bob", "acme-us", "US", "analytics");
    let g =
        a.gw.client()
            .get(a.gw.url("/datasets/eu-customers/customers.csv"))
            .bearer_auth(&us)
            .send()
            .await
            .unwrap();
    assert_eq!(g.status(), 451);
    let p: Value = g.json().await.unwrap();
    assert_eq!(p["rule"], v["decision"]["rule"]);
    // Refused before classification, and questions that cannot be asked.
    let v: Value = a
        .get(
            "/policy/explain?path=/nowhere&jurisdiction=DE&org=acme-de&purpose=analytics",
            Some(&officer),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["decision"]["rule"], "gateway.not-in-catalog");
    let r = a
        .get(
            "/policy/explain?dataset=nope&jurisdiction=DE&org=x&purpose=analytics",
            Some(&officer),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = a
        .get("/policy/explain?path=/x&colour=red", Some(&officer))
        .await;
    assert_eq!(r.status(), 400);
}
