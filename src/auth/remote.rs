//! Keys fetched from the identity provider's JWKS endpoint (`auth.jwks_url`).
//!
//! One background task per endpoint fetches the set over verified HTTPS and refreshes
//! it when `Cache-Control: max-age` says (bounded by `jwks_refresh_min_secs` and
//! `jwks_refresh_max_secs`), or early when a token names a `kid` the set lacks — at
//! most once per `jwks_unknown_kid_cooldown_secs`, however many such tokens arrive, so
//! random `kid`s cannot make the gateway hammer the identity provider. A refresh that
//! brings a different set replaces it whole: new keys verify, removed keys stop
//! verifying, and tokens verified with the old set are verified again.
//!
//! Fail closed: until a first fetch succeeds, and once `jwks_max_stale_secs` have passed
//! since the last successful one, no token is accepted on these keys (401, and `/readyz`
//! says why). A failed fetch keeps the last good set until then.
//!
//! A source outlives the snapshots that use it: a reload with the same settings keeps
//! its keys, schedule and task; the task ends once no snapshot uses the source.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderMap, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::AuthError;
use super::keys::{self, Key};
use crate::config::AuthConfig;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest a fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Generations of fetched sets; 0 is never one (it names the configured keys).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The clock sources count from, one for the process so their times compare.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Sources in use, shared by the snapshots whose settings are the same.
static SOURCES: LazyLock<Mutex<Vec<Weak<Source>>>> = LazyLock::new(Default::default);

/// Checks a `jwks_url`: an absolute `https://` URL with a host and no credentials.
pub fn check_url(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url)
        .map_err(|e| format!("`jwks_url` `{}` is not a URL: {e}", url.escape_default()))?;
    if u.scheme() != "https" {
        return Err(format!(
            "`jwks_url` `{}` is not https: keys fetched over plain HTTP could be replaced in transit",
            url.escape_default()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`jwks_url` `{}` has no host", url.escape_default()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("`jwks_url` must not carry credentials".into());
    }
    if u.fragment().is_some() {
        return Err("`jwks_url` must not have a fragment".into());
    }
    Ok(())
}

/// What a source is: the endpoint, how it is trusted, and its timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    url: String,
    ca: Option<PathBuf>,
    /// SHA-256 of the CA bundle as read: a renewed bundle makes a new source.
    ca_digest: Option<Vec<u8>>,
    refresh_min: Duration,
    refresh_max: Duration,
    cooldown: Duration,
    max_stale: Duration,
}

impl Settings {
    /// The settings of `cfg`'s `jwks_url`, if it has one.
    pub(crate) fn of(cfg: &AuthConfig) -> Result<Option<Settings>, String> {
        let Some(url) = &cfg.jwks_url else {
            return Ok(None);
        };
        check_url(url)?;
        let ca_digest = match &cfg.jwks_ca {
            Some(p) => {
                let b = std::fs::read(p)
                    .map_err(|e| format!("cannot read `jwks_ca` `{}`: {e}", p.display()))?;
                Some(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &b)
                        .as_ref()
                        .to_vec(),
                )
            }
            None => None,
        };
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Ok(Some(Settings {
            url: url.clone(),
            ca: cfg.jwks_ca.clone(),
            ca_digest,
            refresh_min: secs(cfg.jwks_refresh_min_secs),
            refresh_max: secs(cfg.jwks_refresh_max_secs.max(cfg.jwks_refresh_min_secs)),
            cooldown: secs(cfg.jwks_unknown_kid_cooldown_secs),
            max_stale: secs(cfg.jwks_max_stale_secs),
        }))
    }

    /// The settings of a JWKS endpoint named by discovery (the sign-in provider's
    /// `jwks_uri`), with the default timings of `auth.jwks_*`.
    pub(crate) fn for_url(url: &str, ca: Option<PathBuf>) -> Result<Settings, String> {
        let mut cfg: AuthConfig = serde_json::from_value(serde_json::json!({
            "issuer": "-",
            "audience": "-",
        }))
        .map_err(|e| format!("cannot build the JWKS settings: {e}"))?;
        cfg.jwks_url = Some(url.to_owned());
        cfg.jwks_ca = ca;
        Settings::of(&cfg)?.ok_or_else(|| "no JWKS URL".to_owned())
    }
}

/// One fetched set of keys.
pub(crate) struct KeySet {
    /// Distinct for every different set fetched (the verified-token cache's tag).
    pub generation: u64,
    pub keys: Vec<Key>,
    pub by_kid: HashMap<String, usize>,
    /// The document's keys as parsed, to tell a changed set from the same one.
    doc: serde_json::Value,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The keys of one JWKS endpoint, kept fresh by a background task.
pub(crate) struct Source {
    settings: Settings,
    uri: Uri,
    client: HttpsClient,
    set: ArcSwapOption<KeySet>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last successful fetch, plus one; 0: never.
    last_ok: AtomicU64,
    /// Milliseconds since `epoch` of the last early fetch asked for, plus one; 0: never.
    last_early: AtomicU64,
    /// Why the last fetch failed (cleared by a success).
    last_error: Mutex<Option<String>>,
    wake: Arc<tokio::sync::Notify>,
    started: AtomicBool,
}

impl Drop for Source {
    fn drop(&mut self) {
        // Lets the task see that nobody uses the source any more.
        self.wake.notify_one();
    }
}

/// The source for `settings`: the one in use if there is one, else a new one — which
/// starts with the keys of a source of the same endpoint (a reload that only changes
/// the timings does not wait for a fetch). Its task is started when a tokio runtime is
/// at hand (not in `bordergate check`).
pub(crate) fn source(settings: Settings) -> Result<Arc<Source>, String> {
    let mut all = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    let live: Vec<Arc<Source>> = all.iter().filter_map(Weak::upgrade).collect();
    let s = match live.iter().find(|s| s.settings == settings) {
        Some(s) => s.clone(),
        None => {
            let s = Source::new(settings)?;
            if let Some(o) = live.iter().find(|o| {
                o.settings.url == s.settings.url && o.settings.ca_digest == s.settings.ca_digest
            }) {
                s.set.store(o.set.load_full());
                s.last_ok
                    .store(o.last_ok.load(Ordering::Acquire), Ordering::Release);
            }
            let s = Arc::new(s);
            all.push(Arc::downgrade(&s));
            s
        }
    };
    drop(all);
    s.start();
    Ok(s)
}

impl Source {
    fn new(settings: Settings) -> Result<Source, String> {
        let uri: Uri = settings
            .url
            .parse()
            .map_err(|e| format!("`jwks_url`: {e}"))?;
        let client =
            https_client(settings.ca.as_deref()).map_err(|e| format!("`jwks_url`: {e}"))?;
        Ok(Source {
            settings,
            uri,
            client,
            set: ArcSwapOption::empty(),
            epoch: *EPOCH,
            last_ok: AtomicU64::new(0),
            last_early: AtomicU64::new(0),
            last_error: Mutex::new(None),
            wake: Arc::new(tokio::sync::Notify::new()),
            started: AtomicBool::new(false),
        })
    }

    fn start(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        rt.spawn(run(Arc::downgrade(self), self.wake.clone()));
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the last successful fetch, if there was one.
    fn age_ms(&self) -> Option<u64> {
        match self.last_ok.load(Ordering::Acquire) {
            0 => None,
            t => Some(self.now_ms().saturating_sub(t - 1)),
        }
    }

    fn max_stale_ms(&self) -> u64 {
        u64::try_from(self.settings.max_stale.as_millis()).unwrap_or(u64::MAX)
    }

    /// The keys to verify with now, or why there are none.
    pub(crate) fn current(&self) -> Result<Arc<KeySet>, AuthError> {
        let set = self.set.load_full().ok_or(AuthError::KeysUnavailable)?;
        match self.age_ms() {
            Some(age) if age <= self.max_stale_ms() => Ok(set),
            Some(age) => Err(AuthError::KeysStale(age / 1000)),
            None => Err(AuthError::KeysUnavailable),
        }
    }

    /// The generation of the usable set, if there is one (no reference is taken).
    pub(crate) fn generation(&self) -> Option<u64> {
        let age = self.age_ms()?;
        if age > self.max_stale_ms() {
            return None;
        }
        self.set.load().as_ref().map(|s| s.generation)
    }

    /// Asks for an early fetch (a token named an unknown `kid`, or there are no usable
    /// keys); granted at most once per cool-down.
    pub(crate) fn ask_refresh(&self) {
        let now = self.now_ms() + 1;
        let prev = self.last_early.load(Ordering::Acquire);
        let cooldown = u64::try_from(self.settings.cooldown.as_millis()).unwrap_or(u64::MAX);
        if prev != 0 && now.saturating_sub(prev) < cooldown {
            return;
        }
        if self
            .last_early
            .compare_exchange(prev, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::debug!(url = %self.settings.url, "fetching the JWKS early");
            self.wake.notify_one();
        }
    }

    /// Whether tokens can be verified with these keys, or why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let why = error.map(|e| format!(": {e}")).unwrap_or_default();
        match self.current() {
            Ok(_) => Ok(()),
            Err(AuthError::KeysStale(age)) => Err(format!(
                "keys from `{}` are stale: last fetched {age} s ago{why}",
                self.settings.url
            )),
            Err(_) => Err(format!(
                "keys from `{}` not fetched yet{why}",
                self.settings.url
            )),
        }
    }

    /// One fetch; returns when the next one is due.
    async fn refresh(&self) -> Duration {
        match self.fetch().await {
            Ok((doc, keys, skipped, max_age)) => {
                crate::metrics::global().jwks_fetch(true);
                self.accept(doc, keys, &skipped);
                next_refresh(max_age, &self.settings)
            }
            Err(e) => {
                crate::metrics::global().jwks_fetch(false);
                tracing::warn!(url = %self.settings.url, error = %e, "cannot fetch the JWKS; keeping the last keys fetched");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                self.settings.refresh_min
            }
        }
    }

    /// Puts a fetched set in force (a new generation only if it differs from the last).
    fn accept(&self, doc: serde_json::Value, keys: Vec<Key>, skipped: &[String]) {
        self.last_ok.store(self.now_ms() + 1, Ordering::Release);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.set.load().as_ref().is_some_and(|s| s.doc == doc) {
            return;
        }
        for s in skipped {
            tracing::warn!(url = %self.settings.url, "JWKS key skipped: {s}");
        }
        let by_kid = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((k.kid.clone()?, i)))
            .collect();
        tracing::info!(url = %self.settings.url, keys = keys.len(), "JWKS keys in force");
        self.set.store(Some(Arc::new(KeySet {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            keys,
            by_kid,
            doc,
        })));
    }

    /// As if `bytes` had just been fetched.
    #[cfg(test)]
    pub(crate) fn fetched(&self, bytes: &[u8]) {
        let doc = serde_json::from_slice(bytes).unwrap_or_default();
        match keys::remote_jwks(bytes) {
            Ok((keys, skipped)) => self.accept(doc, keys, &skipped),
            Err(e) => panic!("{e}"),
        }
    }

    #[allow(clippy::type_complexity)]
    async fn fetch(
        &self,
    ) -> Result<(serde_json::Value, Vec<Key>, Vec<String>, Option<Duration>), String> {
        let url = &self.settings.url;
        let req = http::Request::get(self.uri.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(header::USER_AGENT, "bordergate")
            .body(Empty::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let get = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("cannot fetch `{url}`: {}", chain(&e)))?;
            if resp.status() != http::StatusCode::OK {
                return Err(format!("`{url}` answered {}", resp.status()));
            }
            let max_age = max_age(resp.headers());
            let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("cannot read `{url}`: {e}"))?
                .to_bytes();
            Ok((body, max_age))
        };
        let (body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, get)
            .await
            .map_err(|_| {
                format!(
                    "`{url}` did not answer within {} s",
                    FETCH_TIMEOUT.as_secs()
                )
            })??;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("`{url}`: not JSON: {e}"))?;
        let (keys, skipped) = keys::remote_jwks(&body).map_err(|e| format!("`{url}`: {e}"))?;
        Ok((doc, keys, skipped, max_age))
    }
}

/// An HTTPS-only HTTP/1.1 client to an identity provider, verified with `ca` (default:
/// the Mozilla roots), connections bounded by the fetch timeout.
pub(crate) fn https_client<B>(
    ca: Option<&std::path::Path>,
) -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut tls = crate::tls::upstream_client_config(ca, None, None)?;
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// The task of one source: fetch, wait until due or asked, again — until the source is
/// dropped.
async fn run(source: Weak<Source>, wake: Arc<tokio::sync::Notify>) {
    let mut delay = Duration::ZERO;
    loop {
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wake.notified() => {}
            }
        }
        let Some(s) = source.upgrade() else {
            return;
        };
        delay = s.refresh().await;
    }
}

/// When the next scheduled fetch is due: `max-age`, bounded by the settings (no
/// `max-age`: the longest interval).
fn next_refresh(max_age: Option<Duration>, s: &Settings) -> Duration {
    max_age
        .unwrap_or(s.refresh_max)
        .clamp(s.refresh_min, s.refresh_max)
}

/// `max-age` of a `Cache-Control` header; `no-cache`/`no-store` count as 0.
fn max_age(h: &HeaderMap) -> Option<Duration> {
    let mut age = None;
    for v in h.get_all(header::CACHE_CONTROL) {
        let Ok(v) = v.to_str() else { continue };
        for d in v.split(',').map(str::trim) {
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "no-cache" | "no-store" => return Some(Duration::ZERO),
                "max-age" => {
                    if let Ok(n) = value.trim().trim_matches('"').parse::<u64>() {
                        age = Some(Duration::from_secs(n));
                    }
                }
                _ => {}
            }
        }
    }
    age
}

/// An error and its causes, one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            url: "https://idp.test/jwks".into(),
            ca: None,
            ca_digest: None,
            refresh_min: Duration::from_secs(60),
            refresh_max: Duration::from_secs(3600),
            cooldown: Duration::from_secs(30),
            max_stale: Duration::from_secs(86400),
        }
    }

    #[test]
    fn max_age_is_bounded_by_the_refresh_settings() {
        let s = settings();
        let mut h = HeaderMap::new();
        assert_eq!(max_age(&h), None);
        assert_eq!(next_refresh(None, &s), Duration::from_secs(3600));
        h.insert(
            header::CACHE_CONTROL,
            "public, Max-Age=300".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(300)));
        assert_eq!(next_refresh(max_age(&h), &s), Duration::from_secs(300));
        h.insert(header::CACHE_CONTROL, "max-age=5".parse().unwrap());
        assert_eq!(next_refresh(max_age(&h), &s), Duration::from_secs(60));
        h.insert(header::CACHE_CONTROL, "max-age=999999".parse().unwrap());
        assert_eq!(next_refresh(max_age(&h), &s), Duration::from_secs(3600));
        h.insert(
            header::CACHE_CONTROL,
            "no-store, max-age=999".parse().unwrap(),
        );
        assert_eq!(next_refresh(max_age(&h), &s), Duration::from_secs(60));
        h.insert(header::CACHE_CONTROL, "max-age=soon".parse().unwrap());
        assert_eq!(max_age(&h), None);
    }

    #[test]
    fn only_https_urls_without_credentials_are_accepted() {
        check_url("https://idp.example/.well-known/jwks.json").unwrap();
        for bad in [
            "http://idp.example/jwks",
            "file:///etc/jwks.json",
            "https://user:pw@idp.example/jwks",
            "https://idp.example/jwks#x",
            "idp.example/jwks",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_keys_before_a_fetch_and_early_fetches_are_rate_limited() {
        let s = Source::new(settings()).unwrap();
        assert_eq!(s.current().err(), Some(AuthError::KeysUnavailable));
        assert_eq!(s.generation(), None);
        let why = s.readiness().unwrap_err();
        assert!(why.contains("not fetched yet"), "{why}");
        s.ask_refresh();
        let first = s.last_early.load(Ordering::Acquire);
        assert_ne!(first, 0);
        for _ in 0..1000 {
            s.ask_refresh();
        }
        assert_eq!(
            s.last_early.load(Ordering::Acquire),
            first,
            "one early fetch per cool-down"
        );
    }

    #[test]
    fn a_fetched_set_goes_stale_after_max_stale() {
        let mut s = Source::new(Settings {
            max_stale: Duration::from_secs(2),
            ..settings()
        })
        .unwrap();
        s.set.store(Some(Arc::new(KeySet {
            generation: 7,
            keys: Vec::new(),
            by_kid: HashMap::new(),
            doc: serde_json::Value::Null,
        })));
        s.last_ok.store(s.now_ms() + 1, Ordering::Release);
        assert_eq!(s.generation(), Some(7));
        assert!(s.current().is_ok());
        s.readiness().unwrap();
        // As if the last success were five seconds ago.
        s.epoch = Instant::now().checked_sub(Duration::from_secs(5)).unwrap();
        s.last_ok.store(1, Ordering::Release);
        assert!(matches!(s.current(), Err(AuthError::KeysStale(a)) if a >= 4));
        assert_eq!(s.generation(), None);
        assert!(s.readiness().unwrap_err().contains("stale"));
    }
}
