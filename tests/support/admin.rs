//! Starts a gateway with an admin listener (shared by tests/admin.rs and tests/browser.rs).
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, BIN, Gateway, Options};

pub const CUSTOMERS: &str = "/datasets/eu-customers/customers.csv";

/// A gateway with an admin listener; `admin` is its base URL.
pub struct Admined {
    pub gw: Gateway,
    pub admin: String,
}

pub fn start(opts: Options) -> Admined {
    start_in(opts, "address: 127.0.0.1:0", "", |_| {})
}

/// [`start`] with another build of the gateway (the browser test's release build).
pub fn start_bin(opts: Options, bin: &str) -> Admined {
    start_with(opts, bin, "address: 127.0.0.1:0", "", |_| {})
}

/// A gateway whose `admin:` section is `address` plus `extra` (YAML lines indented by two
/// spaces), with `prepare` called on its work dir before it starts.
pub fn start_in(
    opts: Options,
    address: &str,
    extra: &str,
    prepare: impl FnOnce(&std::path::Path),
) -> Admined {
    start_with(opts, BIN, address, extra, prepare)
}

fn start_with(
    opts: Options,
    bin: &str,
    address: &str,
    extra: &str,
    prepare: impl FnOnce(&std::path::Path),
) -> Admined {
    let (dir, config, audit, store) = common::prepare(&opts);
    prepare(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("admin:\n  {address}\n{extra}"));
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("BORDERGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut next = || match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the gateway did not print its listening lines: {err}");
        }
    };
    let proxy = next();
    let admin = next();
    let base = proxy
        .strip_prefix("bordergate listening on ")
        .unwrap()
        .to_string();
    let admin = admin
        .strip_prefix("bordergate admin listening on ")
        .unwrap_or_else(|| panic!("unexpected line: {admin}"))
        .to_string();
    let addr = base.trim_start_matches("https://").parse().unwrap();
    Admined {
        gw: Gateway {
            child,
            dir,
            addr,
            base,
            config,
            audit,
            store,
        },
        admin,
    }
}

impl Admined {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.admin, path)
    }

    pub fn officer(&self) -> String {
        let out = Command::new(BIN)
            .args(["token", "--sub", "olivia", "--org", "acme-de"])
            .args(["--jurisdiction", "DE", "--purpose", "analytics"])
            .args(["--role", "compliance-officer", "--config"])
            .arg(&self.gw.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.gw.client().get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    /// A few proxy requests: allowed, refused (451) and unauthenticated.
    pub async fn traffic(&self) {
        let c = self.gw.client();
        let de = self.gw.token("alice", "acme-de", "DE", "analytics");
        let us = self.gw.token("bob", "acme-us", "US", "analytics");
        let r = c
            .get(self.gw.url(CUSTOMERS))
            .bearer_auth(&de)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        let r = c
            .get(self.gw.url(CUSTOMERS))
            .bearer_auth(&us)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 451);
        let r = c.get(self.gw.url(CUSTOMERS)).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
}
