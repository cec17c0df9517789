//! Fault injection through the real binary: kill -9 under load (repeated), a torn tail at
//! every byte offset of the last record, disk full (small tmpfs), EIO on fdatasync
//! (fiu-utils), and an upstream reset mid-body. Full runs: see docs/hardening.md.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::raw::{self, RawUpstream};
use common::{Gateway, Options};
use serde_json::Value;

const CATALOG: &str = "  - id: mirror-customers\n    kind: dataset\n    match:\n      prefix: /mirror/eu-customers/\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics, training]\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn opts(up: &RawUpstream, audit: &Path) -> Options {
    Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {}\n    jurisdiction: DE\n    timeout_secs: 2\n",
            up.url()
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n".into(),
        extra_catalog: CATALOG.into(),
        audit_path: Some(audit.to_path_buf()),
        ..Options::default()
    }
}

fn assert_chain(audit: &Path) -> Vec<Value> {
    let out = common::verify(audit);
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = common::read_records(audit);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(
            r["seq"].as_u64().unwrap(),
            i as u64 + recs[0]["seq"].as_u64().unwrap(),
            "sequence gap at record {i}"
        );
    }
    recs
}

/// Mixed allow/deny load through the gateway until `stop` is set; returns the request ids of
/// every response that started.
async fn load(
    gw: &Gateway,
    tokens: &[String],
    concurrency: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let client = gw.client();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let tok = tokens[w % tokens.len()].clone();
        let url = gw.url(if w % 3 == 0 {
            "/mirror/eu-customers/a"
        } else {
            "/datasets/eu-customers/customers.csv"
        });
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(&url).bearer_auth(&tok).send().await {
                    Ok(r) => {
                        if let Some(id) = r.headers().get("x-request-id") {
                            ids.push(id.to_str().unwrap().to_string());
                        }
                        let _ = r.bytes().await;
                    }
                    Err(_) => break,
                }
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_mixed_load_loses_nothing_and_chains_on() {
    let rounds = env_usize("BORDERGATE_KILL_ROUNDS", 2);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let up = RawUpstream::start(raw::OK).await;
    for round in 0..rounds {
        let mut gw = Gateway::start(opts(&up, &audit));
        let tokens = vec![
            gw.token("alice", "acme-de", "DE", "analytics"),
            gw.token("bob", "acme-us", "US", "analytics"),
        ];
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let pid = gw.child.id();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700 + 200 * (round as u64 % 3))).await;
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop2.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let ids = load(&gw, &tokens, 64, stop).await;
        killer.await.unwrap();
        let _ = gw.child.wait();
        assert!(
            !ids.is_empty(),
            "round {round}: no response before the kill"
        );
        let recs = common::read_records(&audit);
        let decided: HashSet<&str> = recs
            .iter()
            .filter(|r| r["kind"] == "decision")
            .filter_map(|r| r["request_id"].as_str())
            .collect();
        for id in &ids {
            assert!(
                decided.contains(id.as_str()),
                "round {round}: response {id} started without a durable decision"
            );
        }
        let allows = recs
            .iter()
            .filter(|r| {
                r["kind"] == "decision" && r["decision"] == "allow" && r["upstream"] == "mirror"
            })
            .count();
        assert!(
            up.count() <= allows,
            "round {round}: upstream saw {} > audited allows {allows}",
            up.count()
        );
        // Restart on the same log: it opens (repairing a torn tail), chains on and verifies.
        drop(gw);
        let gw = Gateway::start(opts(&up, &audit));
        let t = gw.token("alice", "acme-de", "DE", "analytics");
        let r = gw
            .client()
            .get(gw.url("/datasets/eu-customers/customers.csv"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "round {round}: gateway did not serve after restart"
        );
        let _ = r.bytes().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let recs = assert_chain(&audit);
        // In-flight requests of the crash get an `unknown-crashed` completion on open.
        let completed: HashSet<u64> = recs
            .iter()
            .filter(|r| r["kind"] == "completion")
            .filter_map(|r| r["decision_seq"].as_u64())
            .collect();
        let last_restart = recs
            .iter()
            .rposition(|r| r["kind"] == "event" && r["event"] == "listen")
            .unwrap();
        let open = recs[..last_restart]
            .iter()
            .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
            .filter(|r| !completed.contains(&r["seq"].as_u64().unwrap()))
            .count();
        assert_eq!(
            open, 0,
            "round {round}: every allowed request in flight at the crash gets an `unknown-crashed` completion"
        );
        drop(gw);
    }
}

#[tokio::test]
async fn torn_tail_at_every_byte_offset_is_repaired_and_chains_on() {
    let step = env_usize("BORDERGATE_TORN_STEP", 61).max(1);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let up = RawUpstream::start(raw::OK).await;
    {
        let mut gw = Gateway::start(opts(&up, &audit));
        let t = gw.token("alice", "acme-de", "DE", "analytics");
        for _ in 0..3 {
            let r = gw
                .client()
                .get(gw.url("/datasets/eu-customers/customers.csv"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap();
            let _ = r.bytes().await;
        }
        gw.stop();
    }
    let full = std::fs::read(&audit).unwrap();
    let body = &full[..full.len() - 1];
    let last_start = body
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap();
    let mut offsets: Vec<usize> = (last_start..full.len()).step_by(step).collect();
    offsets.push(full.len() - 1);
    for cut in offsets {
        let torn = dir.path().join(format!("torn-{cut}.log"));
        std::fs::write(&torn, &full[..cut]).unwrap();
        let gw = Gateway::start(opts(&up, &torn));
        let t = gw.token("alice", "acme-de", "DE", "analytics");
        let r = gw
            .client()
            .get(gw.url("/datasets/eu-customers/customers.csv"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "cut at {cut}");
        let _ = r.bytes().await;
        drop(gw);
        let recs = assert_chain(&torn);
        assert!(recs.len() >= 4, "cut at {cut}");
    }
}

/// Mounts a tmpfs of `size` at `dir` (root only); false when that is not possible here.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn disk_full_refuses_with_503_forwards_nothing_and_recovers_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "48k") {
        common::report_skip(
            "cannot mount a tmpfs here",
            "run as root with mount privileges (CI containers may not have them)",
        );
        return;
    }
    let _guard = Unmount(mnt.clone());
    let audit = mnt.join("audit.log");
    let up = RawUpstream::start(raw::OK).await;
    let gw = Gateway::start(opts(&up, &audit));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let client = gw.client();
    let mut saw_503 = false;
    for _ in 0..400 {
        let r = get_a(&client, &gw, &t).await;
        let s = r.status().as_u16();
        let _ = r.bytes().await;
        if s == 503 {
            saw_503 = true;
            break;
        }
        assert_eq!(s, 200);
    }
    assert!(saw_503, "the tmpfs never filled");
    // The failed batch was rolled back, which frees a few bytes: take every last one, so the
    // disk is truly full for what follows.
    use std::io::Write;
    let mut filler = std::fs::File::create(mnt.join("filler")).unwrap();
    while filler.write_all(&[0u8; 64]).is_ok() {}
    // tmpfs allocates whole pages: the log's last page may still hold a batch smaller than
    // the one refused (a lone decision after a decision with completions). Such a batch is
    // rightly written and its request served; keep asking until not even that fits.
    let mut refused_in_a_row = 0;
    for _ in 0..200 {
        while filler.write_all(&[0u8; 1]).is_ok() {}
        let r = get_a(&client, &gw, &t).await;
        let s = r.status().as_u16();
        let _ = r.bytes().await;
        refused_in_a_row = if s == 503 { refused_in_a_row + 1 } else { 0 };
        if refused_in_a_row == 3 {
            break;
        }
    }
    assert_eq!(refused_in_a_row, 3, "the log never filled up");
    let before_full = up.count();
    // While full: every request refused with 503, nothing forwarded. Each refused batch is
    // rolled back, which frees what its partial write took; the filler takes it again, so
    // the disk stays full (a smaller batch could otherwise fit, rightly, in those bytes).
    for _ in 0..20 {
        while filler.write_all(&[0u8; 1]).is_ok() {}
        let r = get_a(&client, &gw, &t).await;
        assert_eq!(r.status(), 503);
    }
    assert_eq!(
        up.count(),
        before_full,
        "forwarded while the audit log was full"
    );
    // Space returns: served again, and the chain has no gap.
    assert!(
        Command::new("mount")
            .args(["-o", "remount,size=8m"])
            .arg(&mnt)
            .status()
            .unwrap()
            .success()
    );
    let mut ok = false;
    for _ in 0..50 {
        let r = get_a(&client, &gw, &t).await;
        if r.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "did not recover after space returned");
    drop(gw);
    assert_chain(&audit);
}

/// Starts the binary under a wrapper command (e.g. `fiu-run -x`) and waits for its address.
fn spawn_wrapped(wrapper: &[&str], config: &Path) -> Option<(Child, std::net::SocketAddr)> {
    let mut child = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(common::BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("BORDERGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok()?;
    let addr = line
        .trim()
        .strip_prefix("bordergate listening on https://")?
        .parse()
        .ok()?;
    Some((child, addr))
}

#[tokio::test]
async fn eio_on_fdatasync_stops_forwarding_and_never_retries() {
    if Command::new("fiu-run").arg("-h").output().is_err() {
        common::skip(
            "fiu-utils is not installed",
            "apt-get install fiu-utils, as .ci/run does",
        );
        return;
    }
    let up = RawUpstream::start(raw::OK).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let o = opts(&up, &audit);
    let (_work, config, _, _) = common::prepare(&o);
    let Some((mut child, addr)) = spawn_wrapped(&["fiu-run", "-x"], &config) else {
        eprintln!("skipping: could not start the gateway under fiu-run");
        return;
    };
    let pem = std::fs::read(config.parent().unwrap().join("cert.pem")).unwrap();
    let tok = {
        let out = Command::new(common::BIN)
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
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let url = format!("https://localhost:{}/mirror/eu-customers/a", addr.port());
    let client = reqwest::Client::builder()
        .resolve("localhost", addr)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = client.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.count();
    let pid = child.id().to_string();
    let enable = Command::new("fiu-ctrl")
        .args(["-c", "enable name=posix/io/sync/fdatasync", &pid])
        .status()
        .unwrap();
    assert!(enable.success());
    for _ in 0..3 {
        let r = client.get(&url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.status(), 503, "forwarded after an fdatasync failure");
    }
    // The fault clears, but a failed fsync is never retried: still refusing.
    let _ = Command::new("fiu-ctrl")
        .args(["-c", "disable name=posix/io/sync/fdatasync", &pid])
        .status();
    let r = client.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 503, "retried after a failed fdatasync");
    assert_eq!(
        up.count(),
        seen,
        "forwarded while the audit log was failing"
    );
    let _ = child.kill();
    let _ = child.wait();
    // A restart re-checks the tail and the chain verifies.
    let gw = Gateway::start(opts(&up, &audit));
    drop(gw);
    assert_chain(&audit);
}

#[tokio::test]
async fn upstream_reset_mid_body_is_a_broken_transfer_never_a_truncated_success() {
    let up = RawUpstream::start_closing(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\ncontent-type: application/octet-stream\r\n\r\nonly-a-few-bytes",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(opts(&up, &dir.path().join("audit.log")));
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let r = gw
        .client()
        .get(gw.url("/mirror/eu-customers/a"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        r.bytes().await.is_err(),
        "client saw a truncated body as a success"
    );
    let c = gw.completion(&id).await;
    assert_ne!(c["outcome"], "complete", "{c}");
    assert!(c["bytes_out"].as_u64().unwrap() < 100000);
    // Same over h2/chunked framing: raw HTTP/1.1 client sees no terminating success.
    let r = raw::tls(&gw, format!("GET /mirror/eu-customers/a HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\n\r\n").as_bytes()).await;
    let text = r.text();
    let body_len = text.split("\r\n\r\n").nth(1).map(str::len).unwrap_or(0);
    assert!(body_len < 100000, "{text}");
}

/// One GET of the mirrored dataset.
async fn get_a(client: &reqwest::Client, gw: &Gateway, t: &str) -> reqwest::Response {
    client
        .get(gw.url("/mirror/eu-customers/a"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap()
}
