//! The gateway's configuration file: its model (every section, secrets given by
//! reference, defaults), loaded through the one YAML loader, with command-line
//! overrides and validation that reports every error with its file and line.

mod audit;
mod diagnostics;
mod load;
mod oidc;
#[cfg(test)]
mod reference;
mod replica;
mod spans;
mod validate;
mod yaml;

pub use audit::{
    AuditConfig, AuditSinkKind, PostgresAuditConfig, dsn_has_password, valid_table_name,
};
pub use diagnostics::{Diagnostic, Diagnostics, FileDiagnostics, did_you_mean, suggestion};
pub use load::Overrides;
pub use oidc::{CALLBACK_PATH, MAX_SESSION_TTL_SECS, OidcConfig, https_url};
pub use replica::{FleetConfig, Replica, default_name, name_from_host};
pub use spans::{Lines, line_of};
pub use yaml::{MAX_YAML_BYTES, load_yaml, parse_yaml, read_yaml};

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::Country;

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

/// The `transform:` section: where pseudonymisation keys come from (a key file and the
/// `BORDERGATE_PSEUDONYM_KEY_<REGION>` environment variables) and the patterns free text
/// is redacted by (default: e-mail addresses, phone numbers, IBANs).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// The key file (see [`crate::transform::keys`]).
    #[serde(default)]
    pub keys: Option<PathBuf>,
    /// Redaction patterns; absent: the defaults.
    #[serde(default)]
    pub redact: Option<Vec<crate::transform::redact::Pattern>>,
    /// Development only: create the key file with a random key per region when missing.
    #[serde(default)]
    pub generate_dev_keys: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This replica's name, written into every audit record (default: the host name;
    /// always set after [`Config::load`]).
    #[serde(default)]
    pub name: Option<String>,
    /// Where this replica runs (free text such as `eu-central`), written beside its name.
    #[serde(default)]
    pub region: Option<String>,
    /// How the replicas sharing a PostgreSQL audit table are compared; with
    /// `audit.sink: postgres` the defaults apply when absent.
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
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
    /// Checks of an upload's declared lineage against the uploader's recent downloads.
    #[serde(default)]
    pub lineage: LineageConfig,
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
    /// Minimisation in transit: pseudonymisation keys and redaction patterns.
    #[serde(default)]
    pub transform: TransformConfig,
    /// Where this file was read from (set by [`Config::load`]).
    #[serde(skip)]
    pub source: PathBuf,
    /// The line of every key of the file (set by [`Config::load`]); see [`Config::line_of`].
    #[serde(skip)]
    pub lines: Lines,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

impl Mode {
    /// As the config spells it: `enforce`, `shadow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
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
    /// The identity provider's JWKS endpoint (`https://…`), fetched and refreshed in the
    /// background (see `auth::remote`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// CA bundle to verify the JWKS endpoint (default: the Mozilla roots).
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Shortest time between two scheduled fetches, whatever `Cache-Control` says.
    #[serde(default = "default_jwks_refresh_min")]
    pub jwks_refresh_min_secs: u64,
    /// Longest time between two scheduled fetches (also used without `max-age`).
    #[serde(default = "default_jwks_refresh_max")]
    pub jwks_refresh_max_secs: u64,
    /// Shortest time between two fetches caused by a token naming an unknown `kid`.
    #[serde(default = "default_jwks_cooldown")]
    pub jwks_unknown_kid_cooldown_secs: u64,
    /// How long fetched keys stay usable after the last successful fetch; then tokens
    /// are refused until a fetch succeeds.
    #[serde(default = "default_jwks_max_stale")]
    pub jwks_max_stale_secs: u64,
    /// Longest lifetime (`exp` − `iat`) a token may claim, in seconds; default 24 h. While
    /// set, a token must carry `iat`. `0` sets no maximum (`iat` is then optional, and only
    /// checked not to lie in the future).
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// What to do when a token's `jurisdiction` disagrees with the registry's country for
    /// its `org` (default `refuse`).
    #[serde(default)]
    pub jurisdiction_claim: JurisdictionClaim,
    /// S3 access keys the gateway issues (`bordergate s3-key`), for SDKs that sign with
    /// SigV4 instead of sending a token.
    #[serde(default)]
    pub s3_keys: Option<S3KeysConfig>,
}

/// `auth.s3_keys`: the key file and the secret every key's secret derives from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3KeysConfig {
    /// The key file `bordergate s3-key` writes (JSON; missing means no key issued yet).
    pub path: PathBuf,
    /// The derivation secret (at least 32 bytes).
    pub derivation_secret: SecretRef,
    /// Generate a random derivation secret into `derivation_secret.file` if missing.
    #[serde(default)]
    pub generate_dev_secret: bool,
}

fn default_leeway() -> u64 {
    30
}

fn default_jwks_refresh_min() -> u64 {
    60
}

fn default_jwks_refresh_max() -> u64 {
    3600
}

fn default_jwks_cooldown() -> u64 {
    30
}

fn default_jwks_max_stale() -> u64 {
    24 * 60 * 60
}

/// Default of [`AuthConfig::max_token_lifetime_secs`]: one day.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;

fn default_max_token_lifetime() -> u64 {
    DEFAULT_MAX_TOKEN_LIFETIME_SECS
}

/// How a caller's `jurisdiction` claim is held against the registry's country for the
/// caller's organisation. An organisation the registry does not list is taken at its claim
/// in every mode (the registry only knows the organisations that hold mechanisms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JurisdictionClaim {
    /// A claim other than the registry's country is refused (403 `jurisdiction-mismatch`).
    #[default]
    Refuse,
    /// The registry's country is the destination; the record keeps the claim beside it.
    Registry,
    /// The claim is the destination, whatever the registry says.
    Trust,
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
    /// Seconds to wait for the upstream's response head once the request is sent in full
    /// (its head and all of its body): the time an upload takes to stream is not counted.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// Seconds to wait for a connection to an http(s) upstream (default: `timeout_secs`,
    /// at most 10).
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
    /// Longest pause the upstream may make in either direction, in seconds: not taking
    /// any of an upload it is being sent, or not sending the next piece of its response
    /// body (504 before the response head; the transfer is cut after it).
    #[serde(default = "default_upstream_idle")]
    pub idle_timeout_secs: u64,
    /// Minimum rate of the upstream's response body, in bytes per second averaged over
    /// 10-second windows after a 10-second grace period, counting only time spent waiting
    /// on the upstream (a slow client does not count against it); 0 turns it off.
    #[serde(default)]
    pub min_bytes_per_sec: u64,
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
fn default_upstream_idle() -> u64 {
    60
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

/// The admin listener: a port of its own, never the proxy's.
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
    /// Sign-in through the organisation's OpenID Connect provider (besides pasted tokens).
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

fn default_admin_max_records() -> usize {
    5000
}

/// What an upload whose uploader recently downloaded personal data its declared lineage does
/// not cover gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UndeclaredRecent {
    /// Refused (451, `lineage.undeclared-recent`): fail closed.
    #[default]
    Refuse,
    /// Decided as if the recent downloads were declared too, and flagged on the record and
    /// in the `bordergate-lineage-flag` response header.
    Flag,
}

/// The `lineage:` section: checks of an upload's declared lineage against what the
/// gateway saw the uploader download (see `crate::lineage`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// How far back an uploader's personal-data downloads count; 0 turns the check off.
    #[serde(default = "default_lineage_window")]
    pub window_days: u32,
    #[serde(default)]
    pub undeclared_recent: UndeclaredRecent,
    /// Principals the in-memory index holds at most (the least recently active beyond it
    /// are forgotten, with a warning).
    #[serde(default = "default_lineage_principals")]
    pub max_principals: usize,
}

fn default_lineage_window() -> u32 {
    30
}
fn default_lineage_principals() -> usize {
    100_000
}

impl Default for LineageConfig {
    fn default() -> Self {
        LineageConfig {
            window_days: default_lineage_window(),
            undeclared_recent: UndeclaredRecent::default(),
            max_principals: default_lineage_principals(),
        }
    }
}

impl LineageConfig {
    /// The start of the window for a decision at `at`; `None` when the check is off.
    pub fn since(&self, at: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        (self.window_days > 0).then(|| at - time::Duration::days(i64::from(self.window_days)))
    }
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
    /// Minimum rate of a request body, in bytes per second averaged over
    /// `body_rate_window_secs`, after `body_rate_grace_secs` (408 below); only time the
    /// gateway spends waiting on the client counts, never time the upstream takes to read
    /// it. 0 turns it off.
    #[serde(default = "default_body_min_rate")]
    pub body_min_bytes_per_sec: u64,
    /// The window the request-body rate is averaged over, in seconds.
    #[serde(default = "default_body_rate_window")]
    pub body_rate_window_secs: u64,
    /// Waiting time at the start of a request body during which its rate is not checked.
    #[serde(default = "default_body_rate_window")]
    pub body_rate_grace_secs: u64,
    /// Seconds a client may take none of a response the gateway is sending it (the
    /// connection is closed after).
    #[serde(default = "default_send_timeout")]
    pub send_timeout_secs: u64,
    /// Minimum rate at which a client takes a response, in bytes per second, averaged
    /// over `body_rate_window_secs` after `body_rate_grace_secs`, counting only time the
    /// gateway waits on the client; slower, the connection is closed. 0 turns it off.
    #[serde(default = "default_body_min_rate")]
    pub send_min_bytes_per_sec: u64,
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
fn default_body_min_rate() -> u64 {
    500
}
fn default_body_rate_window() -> u64 {
    10
}
fn default_send_timeout() -> u64 {
    60
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
            body_min_bytes_per_sec: default_body_min_rate(),
            body_rate_window_secs: default_body_rate_window(),
            body_rate_grace_secs: default_body_rate_window(),
            send_timeout_secs: default_send_timeout(),
            send_min_bytes_per_sec: default_body_min_rate(),
            max_body_bytes: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_ranges: default_max_ranges(),
        }
    }
}

impl Config {
    /// This replica: its name (the host name's when the file gives none) and region.
    pub fn replica(&self) -> Replica {
        let name = self.name.clone().unwrap_or_else(default_name);
        Replica {
            name: name.into(),
            region: self.region.as_deref().map(Into::into),
        }
    }

    /// The fleet check's settings, or `None` when it does not run (a file sink, or
    /// `fleet.check_secs: 0`).
    pub fn fleet_check(&self) -> Option<FleetConfig> {
        if self.audit.sink != AuditSinkKind::Postgres {
            return None;
        }
        let f = self.fleet.clone().unwrap_or_default();
        (f.check_secs > 0).then_some(f)
    }

    /// The registry path (always set after [`Config::load`]).
    pub fn registry_path(&self) -> PathBuf {
        self.registry
            .clone()
            .unwrap_or_else(|| self.policies.join("registry.yaml"))
    }

    /// The line of a key path of this file (`upstreams[2].url`, `listen.tls.cert`; see
    /// [`Lines`]), or of its nearest enclosing key when the file leaves it out.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.near(key)
    }

    /// A problem about the key path `key` of this file, placed on its line.
    pub fn diagnostic(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.source, self.line_of(key), message)
    }

    /// A collector for problems of this file, placed by key path.
    pub fn diagnostics(&self) -> FileDiagnostics<'_> {
        FileDiagnostics::new(&self.source, &self.lines)
    }
}
