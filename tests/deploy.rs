//! The multi-replica deployment (docker-compose.yml, deploy/fleet/) without a Docker
//! engine: every bind-mounted host file exists, every gateway service's config passes the
//! real `bordergate check` in a copy of the container's file system (its mounts, empty
//! named volumes, its environment), the replicas have distinct valid names, the load
//! balancer knows each of them and the init job migrates the table they write.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{BIN, copy_dir, repo};
use serde_json::Value;

/// Where the image puts the repository's layout (the Dockerfile's WORKDIR).
const WORKDIR: &str = "/srv/bordergate";

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `(host, target)` of a volume entry; `host` starts with `.` for a bind mount.
fn mount(spec: &str) -> (&str, &str) {
    let mut parts = spec.split(':');
    (parts.next().unwrap(), parts.next().unwrap())
}

fn flag<'a>(cmd: &'a [String], name: &str) -> Option<&'a str> {
    let at = cmd.iter().position(|c| c == name)?;
    cmd.get(at + 1).map(String::as_str)
}

/// The gateway services: those whose command is `serve …`.
fn gateways(doc: &Value) -> Vec<(String, Value)> {
    doc["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| strings(&s["command"]).first().is_some_and(|c| c == "serve"))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

#[test]
fn every_bind_mounted_host_path_exists_and_named_volumes_are_declared() {
    let doc = compose();
    let declared = doc["volumes"].as_object().unwrap();
    let mut binds = 0;
    for (name, svc) in doc["services"].as_object().unwrap() {
        if let Some(df) = svc["build"]["dockerfile"].as_str() {
            assert!(repo().join(df).is_file(), "{name}: no {df}");
        }
        for spec in strings(&svc["volumes"]) {
            let (host, _) = mount(&spec);
            if host.starts_with('.') {
                assert!(
                    repo().join(host).exists(),
                    "{name}: `{host}` is mounted but missing"
                );
                binds += 1;
            } else {
                assert!(
                    declared.contains_key(host),
                    "{name}: volume `{host}` not declared"
                );
            }
        }
    }
    assert!(binds >= 20, "{binds}");
}

#[test]
fn every_gateway_config_passes_check_in_its_container_layout() {
    let doc = compose();
    let gws = gateways(&doc);
    let fleet: Vec<&(String, Value)> = gws
        .iter()
        .filter(|(_, s)| s["profiles"].is_null())
        .collect();
    assert_eq!(fleet.len(), 3, "three replicas: {gws:?}");
    let mut names = Vec::new();
    for (service, svc) in &gws {
        let cmd = strings(&svc["command"]);
        let config = flag(&cmd, "--config").unwrap();
        // The container's file system: its bind mounts copied, its named volumes empty.
        let root = tempfile::tempdir().unwrap();
        for spec in strings(&svc["volumes"]) {
            let (host, target) = mount(&spec);
            let Some(rel) = target.strip_prefix(WORKDIR) else {
                continue;
            };
            let to = root.path().join(rel.trim_start_matches('/'));
            let from = repo().join(host);
            if !host.starts_with('.') {
                std::fs::create_dir_all(&to).unwrap();
            } else if from.is_dir() {
                copy_dir(&from, &to);
            } else {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&from, &to).unwrap();
            }
        }
        let mut check = Command::new(BIN);
        check
            .args(["check", "--config"])
            .arg(root.path().join(config))
            .current_dir(root.path());
        if let Some(env) = svc["environment"].as_object() {
            for (k, v) in env {
                check.env(k, v.as_str().unwrap());
            }
        }
        let out = check.output().unwrap();
        assert!(
            out.status.success(),
            "{service}: `bordergate check --config {config}` failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok: "));
        if svc["profiles"].is_null() {
            let cfg = std::fs::read_to_string(root.path().join(config)).unwrap();
            assert!(
                cfg.contains("sink: postgres"),
                "{service}: not on the shared store"
            );
            names.push(flag(&cmd, "--name").unwrap().to_string());
        }
    }
    assert_eq!(names, ["gw-1", "gw-2", "gw-3"]);

    // The load balancer sends to each replica, and the init job migrates their table.
    let haproxy = std::fs::read_to_string(repo().join("deploy/fleet/haproxy.cfg")).unwrap();
    for n in &names {
        assert!(haproxy.contains(&format!("server {n} {n}:8443")), "{n}");
    }
    let init = strings(&doc["services"]["init"]["command"]).join(" ");
    assert!(
        init.contains("bordergate audit migrate --postgres postgres://admin"),
        "{init}"
    );
    assert!(
        init.contains("--table bordergate_audit --grant bordergate_gateway"),
        "{init}"
    );
    let roles = std::fs::read_to_string(repo().join("deploy/fleet/init-roles.sql")).unwrap();
    assert!(roles.contains("CREATE ROLE bordergate_gateway LOGIN"));
}
