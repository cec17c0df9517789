//! The command line as an operator uses it: check, token, certs, and the shipped files.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{BIN, Options, repo};

/// A catalog entry with an unknown country code.
const BROKEN_ENTRY: &str = "  - id: broken\n    kind: dataset\n    match:\n      prefix: /datasets/broken/\n    origins: [XZ]\n    categories: [personal]\n    purposes: [analytics]\n";

#[test]
fn check_accepts_the_quickstart_and_the_test_config() {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(repo().join("examples/quickstart/gateway.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));
    let (_dir, cfg, _, _) = common::prepare(&Options::default());
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let opts = Options {
        extra_catalog: BROKEN_ENTRY.into(),
        ..Options::default()
    };
    let (dir, cfg, _, _) = common::prepare(&opts);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let catalog = dir.path().join("catalog.yaml");
    let text = std::fs::read_to_string(&catalog).unwrap();
    let line = text.lines().position(|l| l.contains("XZ")).unwrap() + 1;
    assert!(err.contains("`XZ`"), "{err}");
    assert!(
        err.contains(&format!("{}:{line}", catalog.display())),
        "{err}"
    );

    // Unknown fields and duplicate keys in the config itself.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listen:\n  address: 127.0.0.1:1\n  plaintext: true\n  plaintext: false\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4", bad.display())), "{err}");
}

#[test]
fn serve_refuses_an_admin_address_without_an_admin_section() {
    let (_dir, cfg, _, _) = common::prepare(&Options::default());
    let out = Command::new(BIN)
        .args(["serve", "--admin-listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`--admin-listen` given but the config has no `admin:` section"),
        "{err}"
    );
}

#[test]
fn token_refuses_what_the_gateway_would_refuse() {
    let (_dir, cfg, _, _) = common::prepare(&Options::default());
    let ok = Command::new(BIN)
        .args([
            "token",
            "--sub",
            "a",
            "--org",
            "acme-de",
            "--jurisdiction",
            "DE",
            "--purpose",
            "analytics",
            "--ttl",
            "5m",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
    let bad = Command::new(BIN)
        .args([
            "token",
            "--sub",
            "a",
            "--org",
            "acme-de",
            "--jurisdiction",
            "Germany",
            "--purpose",
            "analytics",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn docker_compose_mounts_only_files_that_exist() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc: serde_json::Value = {
        // The compose file is YAML; read it with the same YAML crate as everything else.
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Any(serde_json::Value);
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let _ = Any;
        v
    };
    let svc = &doc["services"]["bordergate"];
    let dockerfile = svc["build"]["dockerfile"].as_str().unwrap();
    assert!(repo().join(dockerfile).is_file());
    let mut checked = 0;
    for v in svc["volumes"].as_array().unwrap() {
        let spec = v.as_str().unwrap();
        let host = spec.split(':').next().unwrap();
        if host.starts_with('.') {
            assert!(repo().join(host).exists(), "{host} is mounted but missing");
            checked += 1;
        }
    }
    assert!(checked >= 4);
    // The config it mounts names files that are mounted too.
    let cmd: Vec<&str> = svc["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let cfg = cmd[cmd.iter().position(|c| *c == "--config").unwrap() + 1];
    assert!(repo().join(cfg).is_file());
    let dockerfile_text = std::fs::read_to_string(repo().join(dockerfile)).unwrap();
    for line in dockerfile_text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        for src in line
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .split_last()
            .unwrap()
            .1
        {
            assert!(repo().join(src).exists(), "Dockerfile copies missing {src}");
        }
    }
}

#[test]
fn readme_first_screen_has_the_two_commands_ci_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let first: String = readme.lines().take(30).collect::<Vec<_>>().join("\n");
    assert!(first.contains("cargo run --release -- serve"));
    assert!(first.contains("cargo test"));
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim() == "cargo test" || l.trim().starts_with("cargo test 2>&1"))
    );
}

#[test]
fn the_example_configs_share_no_port_and_no_audit_log() {
    let read = |name: &str| -> (Vec<String>, std::path::PathBuf) {
        let path = repo().join("examples").join(name).join("gateway.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let port =
            |a: &serde_json::Value| a.as_str().unwrap().rsplit(':').next().unwrap().to_owned();
        let mut ports = vec![port(&v["listen"]["address"])];
        if !v["admin"]["address"].is_null() {
            ports.push(port(&v["admin"]["address"]));
        }
        let dir = path.parent().unwrap();
        let log = dir.join(v["audit"]["path"].as_str().unwrap());
        // Normalise `..` without touching the file system (the logs need not exist).
        let mut norm = std::path::PathBuf::new();
        for c in log.components() {
            match c {
                std::path::Component::ParentDir => {
                    norm.pop();
                }
                c => norm.push(c),
            }
        }
        (ports, norm)
    };
    let (qp, ql) = read("quickstart");
    let (pp, pl) = read("pipelines");
    for p in &pp {
        assert!(!qp.contains(p), "both examples listen on port {p}");
    }
    assert_ne!(ql, pl, "both examples write the audit log {}", ql.display());
}

#[test]
fn check_reports_the_errors_of_every_file_in_one_run() {
    let opts = Options {
        extra_catalog: BROKEN_ENTRY.into(),
        extra_routes: "  - prefix: /archive/\n    upstream: eu-stor\n".into(),
        extra_config: "lineage:\n  window_days: 99999\n".into(),
        ..Options::default()
    };
    let (dir, cfg, _, _) = common::prepare(&opts);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line_of = |file: &std::path::Path, needle: &str| {
        let text = std::fs::read_to_string(file).unwrap();
        text.lines().position(|l| l.trim() == needle).unwrap() + 1
    };
    let catalog = dir.path().join("catalog.yaml");
    for (file, needle, says) in [
        (&cfg, "upstream: eu-stor", "did you mean `eu-store`?"),
        (&cfg, "window_days: 99999", "`lineage.window_days` 99999"),
        (&catalog, "origins: [XZ]", "unknown country code `XZ`"),
    ] {
        let at = format!("{}:{}: ", file.display(), line_of(file, needle));
        assert!(
            err.lines().any(|l| l.starts_with(&at) && l.contains(says)),
            "no `{at}… {says}` in:\n{err}"
        );
    }
    // The catalog's entry also lacks a valid origin: four in all.
    assert!(err.contains("error: 4 problem(s) found"), "{err}");
}

/// The exit codes the README's table promises: 0 fine, 1 the command found problems, 2 it
/// could not run.
#[test]
fn exit_codes_say_found_problems_apart_from_could_not_run() {
    let code = |args: &[&str]| Command::new(BIN).args(args).output().unwrap().status.code();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.log");
    let missing = missing.to_str().unwrap();
    let missing_cfg = dir.path().join("missing.yaml");
    let missing_cfg = missing_cfg.to_str().unwrap();
    assert_eq!(code(&["audit", "verify", missing]), Some(2));
    assert_eq!(code(&["audit", "repair", missing]), Some(2));
    assert_eq!(code(&["check", "--config", missing_cfg]), Some(2));
    assert_eq!(
        code(&["audit", "verify", "--no-such-flag", missing]),
        Some(2)
    );
    let damaged = dir.path().join("damaged.log");
    std::fs::write(&damaged, "not a record\n").unwrap();
    assert_eq!(
        code(&["audit", "verify", damaged.to_str().unwrap()]),
        Some(1)
    );
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(code(&["audit", "verify", empty.to_str().unwrap()]), Some(0));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "listen: {}\n").unwrap();
    assert_eq!(code(&["check", "--config", bad.to_str().unwrap()]), Some(1));
}
