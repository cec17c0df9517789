//! The gateway's configuration file: its model, the one YAML loader every file goes
//! through, secrets from the environment or a file, and validation that reports every
//! error with its file and line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::model::Country;

/// One problem found while loading files, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All the problems found in a set of files.
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Largest YAML file any loader accepts.
const MAX_YAML_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and parses one YAML file. Duplicate keys, unknown fields (with
/// `deny_unknown_fields` on the type) and alias bombs are errors that carry the line.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, Diagnostic> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::new(path, None, format!("cannot read file: {e}")))?;
    if meta.len() > MAX_YAML_BYTES {
        return Err(Diagnostic::new(
            path,
            None,
            format!("file is larger than {MAX_YAML_BYTES} bytes"),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(path, None, format!("cannot read file: {e}")))?;
    parse_yaml(path, &text)
}

/// Parses YAML text that came from `path` (used for messages only).
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let msg = e.to_string();
        let line = yaml_error_line(&msg);
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        Diagnostic::new(path, line, first)
    })
}

/// Finds the line number in a serde-saphyr error message (`line N` or `:N:`).
fn yaml_error_line(msg: &str) -> Option<usize> {
    let re = regex::Regex::new(r"line (\d+)|:(\d+):\d+").ok()?;
    let caps = re.captures(msg)?;
    caps.get(1)
        .or_else(|| caps.get(2))
        .and_then(|m| m.as_str().parse().ok())
}

/// A secret given by reference, never inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    /// Name of an environment variable holding the secret.
    Env(String),
    /// A file holding the secret (relative to the config file).
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret, trimming one trailing newline.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(|v| v.into_bytes())
                .map_err(|_| format!("environment variable `{name}` is not set")),
            SecretRef::File(p) => std::fs::read(p)
                .map(|mut v| {
                    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        v.pop();
                    }
                    v
                })
                .map_err(|e| format!("cannot read secret file `{}`: {e}", p.display())),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    pub auth: AuthConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// The dataset catalog file.
    pub catalog: PathBuf,
    /// The directory of jurisdiction policy files.
    pub policies: PathBuf,
    /// The transfer-mechanism registry; defaults to `registry.yaml` in the policies directory.
    #[serde(default)]
    pub registry: Option<PathBuf>,
    pub audit: AuditConfig,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub tags: TagHeaders,
    #[serde(default)]
    pub limits: Limits,
    /// The admin listener (health, metrics, audit endpoints, the officer's page); off if absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Webhook alerts for the compliance officer; off if absent.
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
    /// `bordergate check` reports legal bases and registry mechanisms ending within this
    /// many days.
    #[serde(default = "default_policy_horizon")]
    pub policy_horizon_days: u32,
    /// Where this file was read from (set by [`Config::load`]).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub address: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsListen>,
    /// Must be set to serve plain HTTP (no `tls`).
    #[serde(default)]
    pub plaintext: bool,
    /// Seconds in-flight transfers may take to finish on shutdown.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

fn default_policy_horizon() -> u32 {
    90
}

fn default_grace() -> u64 {
    30
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListen {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Generate a development certificate and key at these paths if they are missing.
    #[serde(default)]
    pub generate_dev_cert: bool,
    /// CA bundle for client certificates (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Require a client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    /// Clock-skew allowance for `exp` and `nbf`, at most 300 s.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// A JWKS document (file) with public keys.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
}

fn default_leeway() -> u64 {
    30
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default)]
    pub kid: Option<String>,
    /// HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA.
    pub alg: String,
    /// Shared secret for HS* keys.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Generate a random HS256 development secret into `secret.file` if missing.
    #[serde(default)]
    pub generate_dev_secret: bool,
    /// PEM public key for asymmetric algorithms.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// `http://…`, `https://…` or `file://DIR`.
    pub url: String,
    /// Where the upstream stores data: the destination of uploads, the default origin of downloads.
    pub jurisdiction: Country,
    /// Registry id of the organisation operating the upstream (the importer of uploads).
    #[serde(default)]
    pub operator: Option<String>,
    /// CA bundle to verify an https upstream (default: the platform and Mozilla roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Seconds to wait for the upstream's response head.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// Origins (`https://host[:port]`) a redirect from this upstream may lead to. The
    /// gateway follows such redirects itself (GET and HEAD, same data, no new decision)
    /// and streams the result; a redirect to any other host is refused.
    #[serde(default)]
    pub follow_redirects_to: Vec<String>,
    /// An S3-compatible object store: the gateway signs requests with these credentials.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// Credentials and addressing of an S3-compatible upstream; only the gateway holds them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub region: String,
    pub access_key: SecretRef,
    pub secret_key: SecretRef,
    /// The bucket every route to this upstream maps into; without it the first path
    /// segment below the route prefix names the bucket.
    #[serde(default)]
    pub bucket: Option<String>,
}

fn default_upstream_timeout() -> u64 {
    30
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Segment-bounded path prefix, starting with `/`.
    pub prefix: String,
    pub upstream: String,
    /// Paths under this route need no catalog entry (public data). Default false.
    #[serde(default)]
    pub public: bool,
    /// PUT and POST are accepted on this route.
    #[serde(default)]
    pub uploads: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: AuditSinkKind,
    /// The JSON Lines file of the file sink (required by it; unused by `sink: postgres`).
    #[serde(default)]
    pub path: PathBuf,
    /// The PostgreSQL store of `sink: postgres`.
    #[serde(default)]
    pub postgres: Option<PostgresAuditConfig>,
    /// Most records written per fdatasync.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// PKCS#8 Ed25519 key that signs checkpoints (`bordergate audit keygen`); none: no checkpoints.
    #[serde(default)]
    pub checkpoint_key: Option<PathBuf>,
    /// A checkpoint after this many records …
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// … or this many seconds after the last one, whichever comes first (and at shutdown).
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_interval_secs: u64,
    /// Also append every checkpoint to this file, for copying off the host.
    #[serde(default)]
    pub checkpoint_export: Option<PathBuf>,
    /// Rotate the log once it reaches this many bytes.
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    /// Rotate the log once its segment is this many seconds old.
    #[serde(default)]
    pub rotate_secs: Option<u64>,
    /// Keep at most this many rotated segments (older ones are removed, and recorded as removed).
    #[serde(default)]
    pub retain_segments: Option<usize>,
    /// Remove rotated segments older than this many days.
    #[serde(default)]
    pub retain_days: Option<u64>,
}

impl AuditConfig {
    /// What is wrong with the sink settings (`path` for the file sink, `postgres` for postgres).
    pub fn sink_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        match self.sink {
            AuditSinkKind::File => {
                if self.path.as_os_str().is_empty() {
                    errs.push("`audit.path` is required by `sink: file`".into());
                }
            }
            AuditSinkKind::Postgres => {
                let Some(pg) = &self.postgres else {
                    errs.push("`audit.sink: postgres` needs an `audit.postgres` section".into());
                    return errs;
                };
                match (&pg.url, &pg.dsn) {
                    (Some(_), Some(_)) => errs.push(
                        "`audit.postgres` has both `url` and `dsn`; choose one".into(),
                    ),
                    (None, None) => errs.push("`audit.postgres` needs `url` or `dsn`".into()),
                    (None, Some(d)) if dsn_has_password(d) => errs.push(
                        "`audit.postgres.dsn` holds a password; give it as `url: {env: …}` or `url: {file: …}`"
                            .into(),
                    ),
                    _ => {}
                }
                if !valid_table_name(&pg.table) {
                    errs.push(format!(
                        "`audit.postgres.table` `{}` is not a lower-case SQL name (a-z, 0-9, _)",
                        pg.table
                    ));
                }
                let file_only = self.checkpoint_key.is_some()
                    || self.checkpoint_export.is_some()
                    || self.rotate_bytes.is_some()
                    || self.rotate_secs.is_some()
                    || self.retain_segments.is_some()
                    || self.retain_days.is_some();
                if file_only {
                    errs.push("checkpoints, rotation and retention apply to `sink: file` only; remove them with `sink: postgres`".into());
                }
            }
        }
        errs
    }

    /// The log as people name it: the file, or `postgres table <t>`.
    pub fn describe(&self) -> String {
        match (&self.sink, &self.postgres) {
            (AuditSinkKind::Postgres, Some(p)) => format!("postgres table {}", p.table),
            _ => self.path.display().to_string(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_checkpoint_secs() -> u64 {
    60
}

fn default_batch() -> usize {
    512
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSinkKind {
    #[default]
    File,
    /// A PostgreSQL table shared by every gateway (`audit.postgres`).
    Postgres,
}

/// Where `audit.sink: postgres` writes: a connection given by reference (`url`), or a `dsn`
/// without a password (trust, peer or `.pgpass` authentication).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresAuditConfig {
    /// A `postgres://…` URL or `key=value` connection string, from an env var or a file.
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// A connection string without a password, inline.
    #[serde(default)]
    pub dsn: Option<String>,
    /// The records table; `<table>_head` holds the chain head.
    #[serde(default = "default_pg_table")]
    pub table: String,
}

fn default_pg_table() -> String {
    "bordergate_audit".into()
}

impl PostgresAuditConfig {
    /// The connection string, read from its reference.
    pub fn connection_string(&self) -> Result<String, String> {
        match (&self.url, &self.dsn) {
            (Some(u), _) => {
                let v = u.read()?;
                String::from_utf8(v)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| "the `audit.postgres.url` secret is not UTF-8".into())
            }
            (None, Some(d)) => Ok(d.clone()),
            (None, None) => Err("`audit.postgres` needs `url` or `dsn`".into()),
        }
    }
}

/// True if a connection string carries a password (`password=…` or `user:pass@`).
pub fn dsn_has_password(dsn: &str) -> bool {
    let lower = dsn.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let rest = &dsn[dsn.find("://").map_or(0, |i| i + 3)..];
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
        userinfo.is_some_and(|u| u.contains(':')) || lower.contains("password=")
    } else {
        lower.contains("password")
    }
}

/// True if `name` is a plain lower-case SQL identifier (what `audit.postgres.table` may be).
pub fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 48
}

/// The admin listener: a port of its own, never the proxy's.
/// Webhook alerts (Slack-compatible JSON `{"text": …}`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where to POST messages (`https://…` verified, or `http://…`).
    pub webhook_url: String,
    /// CA bundle to verify an https webhook (default: the Mozilla roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Alert when more refusals than this happen within one window (0: never).
    #[serde(default = "default_refusals_per_window")]
    pub refusals_per_window: u64,
    /// Length of the refusal-counting window, in seconds.
    #[serde(default = "default_alert_window")]
    pub window_secs: u64,
    /// Report registry mechanisms that expired or end within this many days.
    #[serde(default = "default_expiring_days")]
    pub expiring_within_days: u32,
}

fn default_refusals_per_window() -> u64 {
    100
}
fn default_alert_window() -> u64 {
    60
}
fn default_expiring_days() -> u32 {
    30
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// Its own certificate; default: the proxy listener's `tls`.
    #[serde(default)]
    pub tls: Option<TlsListen>,
    /// Must be set to serve plain HTTP when neither listener has `tls`.
    #[serde(default)]
    pub plaintext: bool,
    /// Most records one `/audit/records` answer returns.
    #[serde(default = "default_admin_max_records")]
    pub max_records: usize,
}

fn default_admin_max_records() -> usize {
    5000
}

/// Header names through which upstream responses and uploads carry tag information.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagHeaders {
    /// Upstream response header adding origin countries (comma-separated).
    #[serde(default = "default_origin_header")]
    pub upstream_origins: String,
    /// Upstream response header adding data categories (comma-separated).
    #[serde(default = "default_categories_header")]
    pub upstream_categories: String,
    /// Request header in which an upload declares the catalog ids it was derived from.
    #[serde(default = "default_lineage_header")]
    pub lineage: String,
}

fn default_origin_header() -> String {
    "x-data-origin".into()
}
fn default_categories_header() -> String {
    "x-data-categories".into()
}
fn default_lineage_header() -> String {
    "bordergate-lineage".into()
}

impl Default for TagHeaders {
    fn default() -> Self {
        TagHeaders {
            upstream_origins: default_origin_header(),
            upstream_categories: default_categories_header(),
            lineage: default_lineage_header(),
        }
    }
}

/// Request limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds a client may take to send its request head.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Longest request target, in bytes.
    #[serde(default = "default_max_uri")]
    pub max_uri_bytes: usize,
    /// Largest token accepted, in bytes.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    /// Seconds a client may pause between two pieces of a request body (408 after).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Largest request body, in bytes (413 above).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Largest request head (HTTP/1 head, HTTP/2 header list), in bytes (431 above).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request head (431 above).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Most ranges in a `Range` header (400 above).
    #[serde(default = "default_max_ranges")]
    pub max_ranges: usize,
}

fn default_header_timeout() -> u64 {
    10
}
fn default_max_uri() -> usize {
    8192
}
fn default_max_token() -> usize {
    8192
}
fn default_body_timeout() -> u64 {
    30
}
fn default_max_body() -> u64 {
    64 << 30
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_ranges() -> usize {
    16
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout_secs: default_header_timeout(),
            max_uri_bytes: default_max_uri(),
            max_token_bytes: default_max_token(),
            body_timeout_secs: default_body_timeout(),
            max_body_bytes: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_ranges: default_max_ranges(),
        }
    }
}

impl Config {
    /// Loads the file, resolves relative paths against its directory and validates it.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let mut cfg: Config = load_yaml(path).map_err(|d| Diagnostics(vec![d]))?;
        cfg.source = path.to_path_buf();
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        cfg.resolve_paths(&base);
        let errors = cfg.validate();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(Diagnostics(errors))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut self.listen.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                fix(ca);
            }
        }
        for k in &mut self.auth.keys {
            if let Some(SecretRef::File(p)) = &mut k.secret {
                fix(p);
            }
            if let Some(p) = &mut k.public_key {
                fix(p);
            }
        }
        if let Some(j) = &mut self.auth.jwks {
            fix(j);
        }
        for u in &mut self.upstreams {
            if let Some(dir) = u.url.strip_prefix("file://") {
                let p = Path::new(dir);
                if p.is_relative() {
                    u.url = format!("file://{}", base.join(p).display());
                }
            }
            if let Some(s3) = &mut u.s3 {
                for r in [&mut s3.access_key, &mut s3.secret_key] {
                    if let SecretRef::File(p) = r {
                        fix(p);
                    }
                }
            }
            for p in [&mut u.ca, &mut u.client_cert, &mut u.client_key]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
        fix(&mut self.catalog);
        fix(&mut self.policies);
        match &mut self.registry {
            Some(r) => fix(r),
            None => self.registry = Some(self.policies.join("registry.yaml")),
        }
        if !self.audit.path.as_os_str().is_empty() {
            fix(&mut self.audit.path);
        }
        if let Some(SecretRef::File(p)) = self.audit.postgres.as_mut().and_then(|p| p.url.as_mut())
        {
            fix(p);
        }
        if let Some(ca) = self.alerts.as_mut().and_then(|a| a.ca.as_mut()) {
            fix(ca);
        }
        if let Some(tls) = self.admin.as_mut().and_then(|a| a.tls.as_mut()) {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                fix(ca);
            }
        }
        for p in [
            &mut self.audit.checkpoint_key,
            &mut self.audit.checkpoint_export,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    /// The registry path (always set after [`Config::load`]).
    pub fn registry_path(&self) -> PathBuf {
        self.registry
            .clone()
            .unwrap_or_else(|| self.policies.join("registry.yaml"))
    }

    fn validate(&self) -> Vec<Diagnostic> {
        let mut errs = Vec::new();
        let mut err = |m: String| errs.push(Diagnostic::new(&self.source, None, m));
        if self.listen.tls.is_none() && !self.listen.plaintext {
            err(
                "`listen` has no `tls`; set `plaintext: true` to serve plain HTTP on purpose"
                    .into(),
            );
        }
        if self.listen.tls.is_some() && self.listen.plaintext {
            err("`listen` has both `tls` and `plaintext: true`; choose one".into());
        }
        if let Some(tls) = &self.listen.tls
            && tls.require_client_cert
            && tls.client_ca.is_none()
        {
            err("`require_client_cert` needs `client_ca`".into());
        }
        if self.auth.leeway_secs > 300 {
            err(format!(
                "auth leeway `{}` s is more than the 300 s allowed",
                self.auth.leeway_secs
            ));
        }
        if self.auth.keys.is_empty() && self.auth.jwks.is_none() {
            err("`auth` has no `keys` and no `jwks`: no token could ever be valid".into());
        }
        for k in &self.auth.keys {
            let hs = k.alg.starts_with("HS");
            if hs && k.secret.is_none() {
                err(format!("key with alg `{}` needs a `secret`", k.alg));
            }
            if !hs && k.public_key.is_none() {
                err(format!("key with alg `{}` needs a `public_key`", k.alg));
            }
            if k.generate_dev_secret && !matches!(k.secret, Some(SecretRef::File(_))) {
                err("`generate_dev_secret` needs `secret: {file: …}`".into());
            }
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.upstreams {
            if !names.insert(u.name.as_str()) {
                err(format!("duplicate upstream `{}`", u.name));
            }
            let ok = u.url.starts_with("http://")
                || u.url.starts_with("https://")
                || u.url.starts_with("file://");
            if !ok {
                err(format!(
                    "upstream `{}` url `{}` is not http://, https:// or file://",
                    u.name, u.url
                ));
            } else if !u.url.starts_with("file://") && u.url.parse::<http::Uri>().is_err() {
                err(format!(
                    "upstream `{}` url `{}` is not a valid URL",
                    u.name, u.url
                ));
            }
            for o in &u.follow_redirects_to {
                if let Err(e) = crate::proxy::upstream::redirect_origin(o) {
                    err(format!("upstream `{}` follow_redirects_to: {e}", u.name));
                }
            }
            if u.s3.is_some() && u.url.starts_with("file://") {
                err(format!("upstream `{}` has `s3` but a file:// url", u.name));
            }
        }
        let mut prefixes = std::collections::HashSet::new();
        for r in &self.routes {
            if !r.prefix.starts_with('/') {
                err(format!("route prefix `{}` must start with `/`", r.prefix));
            }
            if !prefixes.insert(r.prefix.trim_end_matches('/')) {
                err(format!("duplicate route prefix `{}`", r.prefix));
            }
            if !names.contains(r.upstream.as_str()) {
                err(format!(
                    "route `{}` names unknown upstream `{}`",
                    r.prefix, r.upstream
                ));
            }
        }
        if let Some(a) = &self.alerts
            && a.webhook_url.parse::<http::Uri>().map_or(true, |u| {
                !matches!(u.scheme_str(), Some("http" | "https")) || u.authority().is_none()
            })
        {
            err(format!(
                "`alerts.webhook_url` `{}` is not an http(s) URL",
                a.webhook_url
            ));
        }
        if self.audit.batch_max == 0 {
            err("`audit.batch_max` must be at least 1".into());
        }
        if let Some(a) = &self.admin {
            let tls = a.tls.is_some() || self.listen.tls.is_some();
            if a.plaintext && a.tls.is_some() {
                err("`admin` has both `tls` and `plaintext: true`; choose one".into());
            } else if !tls && !a.plaintext {
                err("`admin` has no `tls` (and neither has `listen`); set `plaintext: true` to serve plain HTTP on purpose".into());
            }
            if a.address == self.listen.address && a.address.port() != 0 {
                err(format!(
                    "`admin.address` `{}` is the proxy's address; the admin listener needs a port of its own",
                    a.address
                ));
            }
            if a.max_records == 0 {
                err("`admin.max_records` must be at least 1".into());
            }
        }
        if self.audit.checkpoint_every == 0 || self.audit.checkpoint_interval_secs == 0 {
            err(
                "`audit.checkpoint_every` and `audit.checkpoint_interval_secs` must be at least 1"
                    .into(),
            );
        }
        if self.audit.rotate_bytes == Some(0) || self.audit.rotate_secs == Some(0) {
            err("`audit.rotate_bytes` and `audit.rotate_secs` must be at least 1".into());
        }
        for e in self.audit.sink_problems() {
            err(e);
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_with_a_line() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: String,
        }
        let e = parse_yaml::<T>(Path::new("x.yaml"), "a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("uplicate"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    fn audit(yaml: &str) -> AuditConfig {
        parse_yaml::<AuditConfig>(Path::new("g.yaml"), yaml).unwrap()
    }

    #[test]
    fn the_postgres_sink_needs_a_connection_without_an_inline_password() {
        let ok = audit("sink: postgres\npostgres:\n  url: {env: PG_URL}\n");
        assert!(ok.sink_problems().is_empty(), "{:?}", ok.sink_problems());
        assert_eq!(ok.describe(), "postgres table bordergate_audit");
        let ok = audit(
            "sink: postgres\npostgres:\n  dsn: host=127.0.0.1 user=postgres dbname=test\n  table: t1\n",
        );
        assert!(ok.sink_problems().is_empty());
        for (yaml, want) in [
            ("sink: postgres\n", "needs an `audit.postgres` section"),
            ("sink: postgres\npostgres: {}\n", "needs `url` or `dsn`"),
            (
                "sink: postgres\npostgres: {dsn: 'postgres://u:secret@h/db'}\n",
                "holds a password",
            ),
            (
                "sink: postgres\npostgres: {dsn: 'host=h password=x'}\n",
                "holds a password",
            ),
            (
                "sink: postgres\npostgres: {dsn: 'host=h', table: 'A; drop'}\n",
                "not a lower-case SQL name",
            ),
            (
                "sink: postgres\npostgres: {dsn: 'host=h'}\nrotate_bytes: 10\n",
                "apply to `sink: file` only",
            ),
            ("sink: file\n", "`audit.path` is required"),
        ] {
            let p = audit(yaml).sink_problems();
            assert!(p.iter().any(|e| e.contains(want)), "{yaml}: {p:?}");
        }
        assert!(audit("path: a.log\n").sink_problems().is_empty());
        assert!(!dsn_has_password("postgres://user@host/db"));
        assert!(!dsn_has_password(
            "host=127.0.0.1 user=postgres dbname=test"
        ));
    }
}
