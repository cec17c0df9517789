//! Test harness: starts the real `bordergate` binary on an ephemeral port with a config in
#![allow(clippy::unwrap_used)]
//! a temporary directory, a copy of the quickstart store, and (optionally) a real HTTP
//! upstream that records what reaches it.
#![allow(dead_code)]

pub mod h2raw;
pub mod inproc;
pub mod pg;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub const BIN: &str = env!("CARGO_BIN_EXE_bordergate");

/// Whether this is CI (`CI=true`), where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips a test whose prepared environment (the client venv, chromium, PostgreSQL,
/// fiu-utils) is missing: outside CI it prints `SKIPPED: <test>: <why>; <how to enable>`
/// where a plain `cargo test` shows it (to the terminal, past libtest's output capture),
/// and the caller returns; in CI it fails the test, which must run there.
pub fn skip(why: &str, how: &str) {
    if in_ci() {
        panic!("required in CI: {why}; {how}");
    }
    report_skip(why, how);
}

/// The client venv's python (`BORDERGATE_TEST_PYTHON`), or None after [`skip`].
pub fn test_python() -> Option<std::path::PathBuf> {
    match std::env::var_os("BORDERGATE_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(std::path::PathBuf::from(p)),
        _ => {
            skip(
                "BORDERGATE_TEST_PYTHON is not set",
                "set it to a python with tests/clients/requirements.txt installed (.ci/run, block `client test venv`, makes one)",
            );
            None
        }
    }
}

/// [`skip`] for what CI may not provide either (privileges such as mounting a tmpfs):
/// reported, never failed.
pub fn report_skip(why: &str, how: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // `writeln!` on the handle, not `eprintln!`: libtest captures only the print macros.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}; {how}");
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// How to start a gateway.
#[derive(Clone)]
pub struct Options {
    /// `enforce` or `shadow`.
    pub mode: &'static str,
    /// Extra YAML items appended to `upstreams:` (each starting with `  - name:`).
    pub extra_upstreams: String,
    /// Extra YAML items appended to `routes:`.
    pub extra_routes: String,
    /// Extra YAML items appended to the catalog's `entries:` list.
    pub extra_catalog: String,
    /// Audit log path (default: `audit.log` in the work dir).
    pub audit_path: Option<PathBuf>,
    /// Serve plain HTTP (`plaintext: true`) instead of TLS.
    pub plaintext: bool,
    /// Extra YAML lines under `listen.tls:` (each starting with four spaces).
    pub extra_tls: String,
    /// YAML lines under `limits:` (each starting with two spaces).
    pub limits: String,
    /// Extra YAML items appended to `auth.keys:` (each starting with `    - kid:`).
    pub extra_keys: String,
    /// Extra top-level YAML appended to the config (e.g. an `alerts:` section).
    pub extra_config: String,
    /// Policy directory (default: the repository's `policies/`).
    pub policies: Option<PathBuf>,
    /// Extra YAML lines under `audit:` (each starting with two spaces), e.g. `  sink: postgres`.
    pub extra_audit: String,
    /// Transfer-mechanism registry (default: examples/quickstart/registry.yaml).
    pub registry: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: "enforce",
            extra_upstreams: String::new(),
            extra_routes: String::new(),
            extra_catalog: String::new(),
            audit_path: None,
            plaintext: false,
            extra_tls: String::new(),
            limits: String::new(),
            extra_keys: String::new(),
            extra_config: String::new(),
            policies: None,
            extra_audit: String::new(),
            registry: None,
        }
    }
}

/// A running gateway; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub base: String,
    pub config: PathBuf,
    pub audit: PathBuf,
    pub store: PathBuf,
}

/// Writes a work dir (config, catalog, store copy) and returns its paths.
pub fn prepare(opts: &Options) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    copy_dir(&repo().join("examples/quickstart/store"), &store);
    let mut catalog =
        std::fs::read_to_string(repo().join("examples/quickstart/catalog.yaml")).unwrap();
    if !catalog.ends_with('\n') {
        catalog.push('\n');
    }
    catalog.push_str(&opts.extra_catalog);
    std::fs::write(d.join("catalog.yaml"), catalog).unwrap();
    let audit = opts
        .audit_path
        .clone()
        .unwrap_or_else(|| d.join("audit.log"));
    let listen = if opts.plaintext {
        "  plaintext: true\n".to_string()
    } else {
        format!(
            "  tls:\n    cert: cert.pem\n    key: key.pem\n    generate_dev_cert: true\n{}",
            opts.extra_tls
        )
    };
    let limits = if opts.limits.is_empty() {
        String::new()
    } else {
        format!("limits:\n{}", opts.limits)
    };
    let config = format!(
        r#"listen:
  address: 127.0.0.1:0
{listen}  grace_secs: 5
auth:
  issuer: bordergate-dev
  audience: bordergate
  leeway_secs: 30
  keys:
    - kid: dev
      alg: HS256
      secret:
        file: hs256.secret
      generate_dev_secret: true
{extra_keys}upstreams:
  - name: eu-store
    url: file://{store}
    jurisdiction: DE
  - name: us-registry
    url: file://{store}
    jurisdiction: US
    operator: acme-us
{extra_up}
routes:
  - prefix: /datasets/
    upstream: eu-store
  - prefix: /models/
    upstream: eu-store
  - prefix: /registry/us/
    upstream: us-registry
    uploads: true
{extra_routes}
catalog: catalog.yaml
policies: {policies}
registry: {registry}
audit:
  path: {audit}
{extra_audit}mode: {mode}
{limits}
{extra_config}"#,
        store = store.display(),
        policies = opts
            .policies
            .clone()
            .unwrap_or_else(|| repo().join("policies"))
            .display(),
        audit = audit.display(),
        registry = opts
            .registry
            .clone()
            .unwrap_or_else(|| repo().join("examples/quickstart/registry.yaml"))
            .display(),
        mode = opts.mode,
        extra_config = opts.extra_config,
        extra_audit = opts.extra_audit,
        extra_up = opts.extra_upstreams,
        extra_routes = opts.extra_routes,
        extra_keys = opts.extra_keys,
    );
    let cfg = d.join("gateway.yaml");
    std::fs::write(&cfg, config).unwrap();
    (dir, cfg, audit, store)
}

/// Runs `serve --config config` and waits for its listening line.
fn spawn(config: &Path) -> (Child, SocketAddr, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("BORDERGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bordergate");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "gateway did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let url = line
        .strip_prefix("bordergate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    let addr: SocketAddr = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    (child, addr, url)
}

impl Gateway {
    pub fn start(opts: Options) -> Gateway {
        let (dir, config, audit, store) = prepare(&opts);
        let (child, addr, base) = spawn(&config);
        Gateway {
            child,
            dir,
            addr,
            base,
            config,
            audit,
            store,
        }
    }

    /// Starts the gateway again on its config (after it stopped or was killed).
    pub fn respawn(&mut self) {
        let (child, addr, base) = spawn(&self.config);
        self.child = child;
        self.addr = addr;
        self.base = base;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Mints a token with `bordergate token`.
    pub fn token(&self, sub: &str, org: &str, jurisdiction: &str, purpose: &str) -> String {
        let out = Command::new(BIN)
            .args([
                "token",
                "--sub",
                sub,
                "--org",
                org,
                "--jurisdiction",
                jurisdiction,
            ])
            .args(["--purpose", purpose, "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The HS256 development secret.
    pub fn secret(&self) -> Vec<u8> {
        let mut v = std::fs::read(self.dir.path().join("hs256.secret")).unwrap();
        while v.last() == Some(&b'\n') {
            v.pop();
        }
        v
    }

    /// A real HTTPS client trusting the gateway's development certificate.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.dir.path().join("cert.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Every audit record so far, parsed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        read_records(&self.audit)
    }

    /// The decision record of a request id.
    pub fn decision(&self, request_id: &str) -> serde_json::Value {
        self.records()
            .into_iter()
            .find(|r| r["kind"] == "decision" && r["request_id"] == request_id)
            .unwrap_or_else(|| panic!("no decision record for {request_id}"))
    }

    /// Waits until the completion record of a request id is on disk.
    pub async fn completion(&self, request_id: &str) -> serde_json::Value {
        for _ in 0..100 {
            if let Some(r) = self
                .records()
                .into_iter()
                .find(|r| r["kind"] == "completion" && r["request_id"] == request_id)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no completion record for {request_id}");
    }

    /// Stops the gateway with SIGTERM and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `bordergate audit verify FILE`.
pub fn verify(path: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap()
}

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A real HTTP/1.1 upstream on an ephemeral port that records every request and answers
/// through `respond`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

pub type Responder = Arc<dyn Fn(&Seen) -> http::Response<Bytes> + Send + Sync>;

impl Upstream {
    pub async fn start(respond: Responder) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen2.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        let respond = respond.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let s = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            };
                            let resp = respond(&s);
                            seen.lock().unwrap().push(s);
                            Ok::<_, std::convert::Infallible>(resp.map(Full::new))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, seen }
    }

    /// An upstream that answers every request 200 with `body`.
    pub async fn answering(body: &'static [u8]) -> Upstream {
        Upstream::start(Arc::new(move |_s: &Seen| {
            http::Response::builder()
                .status(200)
                .body(Bytes::from_static(body))
                .unwrap()
        }))
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A free local port with nothing listening on it.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sends raw bytes over TLS to the gateway and returns (status, full response text).
/// For request targets a real client would normalise (`/../`, `%2F`).
pub async fn raw_request(gw: &Gateway, request: &[u8]) -> (u16, String) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let cert =
        rustls_pki_types::CertificateDer::from_pem_file(gw.dir.path().join("cert.pem")).unwrap();
    roots.add(cert).unwrap();
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A minimal HS256 JWT signed with `secret`, from raw header and claims JSON.
pub fn hs256_jwt(secret: &[u8], header: &str, claims: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let sig = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64.encode(sig.as_ref()))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
