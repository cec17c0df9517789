//! Request-head guards and request-body limits: ambiguity and resource checks that run
//! before a request is decided, and the body wrapper that enforces `limits:` while it
//! streams and tells the forward phase how the client's body went.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::{Version, header, request::Parts};
use http_body::Frame;
use tokio::sync::oneshot;

use super::BoxError;
use super::body::{Hook, Hooked};
use super::pace::{Pace, PaceLimits, Stall};
use crate::config::Limits;
use crate::respond::Kind;

/// Why a request head was refused before its decision.
#[derive(Debug)]
pub struct Refusal {
    pub kind: Kind,
    pub detail: String,
}

fn refuse(kind: Kind, detail: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        detail: detail.into(),
    }
}

/// Longest `Range` header value accepted, in bytes.
const MAX_RANGE_BYTES: usize = 1024;

/// Checks the request head for ambiguity (`Host` / `:authority`) and for the configured
/// resource limits (`Content-Length`, `Range`).
pub fn check_head(parts: &Parts, limits: &Limits) -> Result<(), Refusal> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(refuse(Kind::BadRequest, "more than one `host` header"));
    }
    if let Some(h) = host
        && !valid_host(h.as_bytes())
    {
        return Err(refuse(
            Kind::BadRequest,
            "`host` is not a host[:port] (RFC 3986 reg-name, IPv4 or [IPv6])",
        ));
    }
    if let Some(a) = parts.uri.authority()
        && !valid_host(a.as_str().as_bytes())
    {
        return Err(refuse(
            Kind::BadRequest,
            "the request's authority is not a host[:port] (no userinfo)",
        ));
    }
    match parts.version {
        Version::HTTP_11 if host.is_none() => {
            return Err(refuse(Kind::BadRequest, "HTTP/1.1 request without `host`"));
        }
        _ => {}
    }
    // The authority of the target (HTTP/2 `:authority`; HTTP/1 absolute-form is refused
    // before this) and `Host` name one host, or the request is ambiguous.
    if let (Some(h), Some(a)) = (host, parts.uri.authority())
        && !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())
    {
        return Err(refuse(
            Kind::BadRequest,
            "`host` differs from the request's authority (`:authority`)",
        ));
    }
    // A body on GET/HEAD is what CL.0 desync rides on: a backend that ignores it reads
    // the body as the next request. Refused, never forwarded.
    if matches!(parts.method, http::Method::GET | http::Method::HEAD)
        && (parts.headers.contains_key(header::TRANSFER_ENCODING)
            || parts
                .headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"))
    {
        return Err(refuse(
            Kind::BadRequest,
            format!("a {} request may not carry a body", parts.method),
        ));
    }
    let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(cl) = lengths.next() {
        let n = std::str::from_utf8(cl.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| refuse(Kind::BadRequest, "malformed `content-length`"))?;
        if lengths.next().is_some() {
            return Err(refuse(Kind::BadRequest, "more than one `content-length`"));
        }
        if n > limits.max_body_bytes {
            return Err(refuse(
                Kind::PayloadTooLarge,
                format!(
                    "request body of {n} bytes is larger than the {} allowed",
                    limits.max_body_bytes
                ),
            ));
        }
    }
    let mut ranges = parts.headers.get_all(header::RANGE).iter();
    if let Some(r) = ranges.next() {
        if ranges.next().is_some() {
            return Err(refuse(Kind::BadRequest, "more than one `range` header"));
        }
        let b = r.as_bytes();
        let count = b.iter().filter(|c| **c == b',').count() + 1;
        if b.len() > MAX_RANGE_BYTES || count > limits.max_ranges {
            return Err(refuse(
                Kind::BadRequest,
                format!(
                    "`range` asks for {count} ranges; at most {} are served",
                    limits.max_ranges
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `v` is a `host [ ":" port ]` as RFC 9110 §7.2 and RFC 3986 §3.2.2 define it:
/// a reg-name (unreserved, percent-encoded or sub-delim characters, not empty), an IPv4
/// address (a reg-name by its characters) or an IPv6 literal in brackets; the port, when
/// present, 1 to 5 digits up to 65535. IPvFuture literals, userinfo, an empty host and an
/// empty port are refused: no client of a gateway needs them, and each is a way to make
/// two parsers see two hosts.
pub fn valid_host(v: &[u8]) -> bool {
    let port = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        let ok = std::str::from_utf8(literal)
            .ok()
            .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
        if !ok {
            return false;
        }
        match &rest[end + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        }
    } else {
        let (host, port) = match v.iter().rposition(|b| *b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        if host.is_empty() || !reg_name(host) {
            return false;
        }
        port
    };
    match port {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .is_some_and(|n| n <= 65535)
        }
    }
}

/// RFC 3986 reg-name: `*( unreserved / pct-encoded / sub-delims )`.
fn reg_name(h: &[u8]) -> bool {
    let mut i = 0;
    while i < h.len() {
        let b = h[i];
        if b == b'%' {
            if !(h.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && h.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// A request body broke a limit, or could not be read, while streaming.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyLimit {
    #[error("request body stalled: nothing received for {0} s")]
    Timeout(u64),
    #[error("request body too slow: {0}")]
    TooSlow(String),
    #[error("request body is larger than the {0} bytes allowed")]
    TooLarge(u64),
    /// The client's body broke off or its framing was broken (bad chunk sizes, a
    /// connection closed before the declared length).
    #[error("request body could not be read: {0}")]
    Broken(String),
}

impl BodyLimit {
    pub fn kind(&self) -> Kind {
        match self {
            BodyLimit::Timeout(_) | BodyLimit::TooSlow(_) => Kind::RequestTimeout,
            BodyLimit::TooLarge(_) => Kind::PayloadTooLarge,
            BodyLimit::Broken(_) => Kind::BadRequest,
        }
    }

    /// Finds a body limit in an error's source chain.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyLimit> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(b) = err.downcast_ref::<BodyLimit>() {
                return Some(b);
            }
            cur = err.source();
        }
        None
    }
}

/// What the forward phase learns of a request body while it streams to the upstream:
/// whether the gateway is waiting on the client (so a stall is the client's, not the
/// upstream's), and why the body failed, if it did. Shared by the body and the forward
/// phase through atomics; nothing is locked.
#[derive(Debug, Default)]
pub struct Upload {
    waiting: AtomicBool,
    failed: OnceLock<BodyLimit>,
}

impl Upload {
    /// A watch, and what resolves once the body ended (or was dropped).
    pub fn watch() -> (Arc<Upload>, oneshot::Sender<()>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Arc::new(Upload::default()), tx, rx)
    }

    /// Whether the gateway is waiting on the client for the next piece of the body.
    pub fn waiting_on_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Why the client's body failed, if it did.
    pub fn failed(&self) -> Option<&BodyLimit> {
        self.failed.get()
    }
}

/// A request body held to `limits:` as it streams: an idle limit, a minimum rate (see
/// [`super::pace`]) and a size cap. Any failure of the client's body — a limit, broken
/// chunk framing, a connection closed early — is a [`BodyLimit`], noted in the
/// [`Upload`] watch, so it is answered and recorded as the client's (408, 413, 400;
/// `aborted`), never as the upstream's. Trailers are dropped: a client can't smuggle
/// credentials, tags or framing after the body.
pub type Limited<B> = Hooked<B, BodyGuard>;

/// The hook of [`Limited`]: the pace, the bytes seen against the cap, the watch.
pub struct BodyGuard {
    pace: Pace,
    max: u64,
    seen: u64,
    upload: Arc<Upload>,
    ended: Option<oneshot::Sender<()>>,
}

/// The pace a request body is held to.
pub fn body_pace(limits: &Limits) -> PaceLimits {
    PaceLimits {
        idle: Duration::from_secs(limits.body_timeout_secs.max(1)),
        min_rate: limits.body_min_bytes_per_sec,
        window: Duration::from_secs(limits.body_rate_window_secs.max(1)),
        grace: Duration::from_secs(limits.body_rate_grace_secs),
    }
}

impl<B: http_body::Body> Limited<B> {
    /// A guarded body nobody watches.
    pub fn new(inner: B, limits: &Limits) -> Self {
        let (upload, ended, _) = Upload::watch();
        Self::watched(inner, limits, upload, ended)
    }

    /// A guarded body reporting to `upload`; `ended` fires when it ends (at once if it is
    /// empty).
    pub fn watched(
        inner: B,
        limits: &Limits,
        upload: Arc<Upload>,
        ended: oneshot::Sender<()>,
    ) -> Self {
        let ended = if inner.is_end_stream() {
            let _ = ended.send(());
            None
        } else {
            Some(ended)
        };
        Hooked::with_hook(
            inner,
            BodyGuard {
                pace: Pace::new(body_pace(limits)),
                max: limits.max_body_bytes,
                seen: 0,
                upload,
                ended,
            },
        )
    }
}

impl BodyGuard {
    fn fail(&mut self, b: BodyLimit) -> BoxError {
        let _ = self.upload.failed.set(b.clone());
        Box::new(b)
    }
}

impl Hook for BodyGuard {
    const KEEP_TRAILERS: bool = false;

    fn on_frame(&mut self, frame: &Frame<Bytes>) -> Result<(), BoxError> {
        self.upload.waiting.store(false, Ordering::Relaxed);
        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
        if let Err(s) = self.pace.on_data(n) {
            return Err(self.fail(stalled(s)));
        }
        self.seen = self.seen.saturating_add(n);
        if self.seen > self.max {
            return Err(self.fail(BodyLimit::TooLarge(self.max)));
        }
        Ok(())
    }

    fn on_pending(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        self.upload.waiting.store(true, Ordering::Relaxed);
        match self.pace.on_pending(cx) {
            Ok(()) => Ok(()),
            Err(s) => Err(self.fail(stalled(s))),
        }
    }

    fn map_error(&mut self, e: BoxError) -> BoxError {
        self.upload.waiting.store(false, Ordering::Relaxed);
        self.fail(BodyLimit::Broken(e.to_string()))
    }

    fn on_end(&mut self) {
        self.upload.waiting.store(false, Ordering::Relaxed);
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(());
        }
    }
}

fn stalled(s: Stall) -> BodyLimit {
    match s {
        Stall::Idle(d) => BodyLimit::Timeout(d.as_secs()),
        slow @ Stall::Slow { .. } => BodyLimit::TooSlow(slow.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn duplicate_or_missing_host_and_authority_mismatch_are_refused() {
        let l = Limits::default();
        let ok = http::Request::get("/a")
            .header("host", "x")
            .body(())
            .unwrap();
        assert!(check_head(&parts(ok), &l).is_ok());
        let two = http::Request::get("/a")
            .header("host", "x")
            .header("host", "y")
            .body(())
            .unwrap();
        assert_eq!(
            check_head(&parts(two), &l).unwrap_err().kind,
            Kind::BadRequest
        );
        let none = http::Request::get("/a").body(()).unwrap();
        assert!(check_head(&parts(none), &l).is_err());
        let h2 = http::Request::get("https://gw.example/a")
            .version(Version::HTTP_2)
            .header("host", "169.254.169.254")
            .body(())
            .unwrap();
        assert!(check_head(&parts(h2), &l).is_err());
        let h2ok = http::Request::get("https://gw.example/a")
            .version(Version::HTTP_2)
            .header("host", "GW.example")
            .body(())
            .unwrap();
        assert!(check_head(&parts(h2ok), &l).is_ok());
    }

    #[test]
    fn hosts_must_be_host_and_port() {
        for ok in [
            "gw.example",
            "GW.example:8443",
            "127.0.0.1",
            "127.0.0.1:9000",
            "[::1]",
            "[2001:db8::1]:443",
            "xn--bcher-kva.example",
            "a%41b",
            "localhost:1",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":443",
            "gw.example:",
            "gw.example:99999",
            "gw.example:12a",
            "user@gw.example",
            "gw.example/x",
            "gw.example?x",
            "gw.example#x",
            "gw example",
            "gw\\example",
            "gw.example:80:80",
            "[::1",
            "[::1]x",
            "[v1.x]",
            "[gw.example]",
            "a%4",
            "a%zz",
            "b\u{fc}cher.example",
            "gw.example\t",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
        let l = Limits::default();
        let bad = http::Request::get("/a")
            .header("host", "evil@gw.example")
            .body(())
            .unwrap();
        assert_eq!(
            check_head(&parts(bad), &l).unwrap_err().kind,
            Kind::BadRequest
        );
    }

    #[test]
    fn get_with_a_body_is_refused() {
        let l = Limits::default();
        let g = http::Request::get("/a")
            .header("host", "x")
            .header("content-length", "5")
            .body(())
            .unwrap();
        assert!(check_head(&parts(g), &l).is_err());
        let h = http::Request::head("/a")
            .header("host", "x")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        assert!(check_head(&parts(h), &l).is_err());
        let z = http::Request::get("/a")
            .header("host", "x")
            .header("content-length", "0")
            .body(())
            .unwrap();
        assert!(check_head(&parts(z), &l).is_ok());
    }

    #[test]
    fn body_and_range_limits() {
        let l = Limits {
            max_body_bytes: 10,
            max_ranges: 2,
            ..Limits::default()
        };
        let big = http::Request::put("/a")
            .header("host", "x")
            .header("content-length", "11")
            .body(())
            .unwrap();
        assert_eq!(
            check_head(&parts(big), &l).unwrap_err().kind,
            Kind::PayloadTooLarge
        );
        let ranges = http::Request::get("/a")
            .header("host", "x")
            .header("range", "bytes=0-1,2-3,4-5")
            .body(())
            .unwrap();
        assert_eq!(
            check_head(&parts(ranges), &l).unwrap_err().kind,
            Kind::BadRequest
        );
    }

    #[tokio::test]
    async fn streamed_body_over_the_cap_fails_and_trailers_are_dropped() {
        let l = Limits {
            max_body_bytes: 4,
            ..Limits::default()
        };
        let b = Limited::new(Full::new(Bytes::from_static(b"12345")), &l);
        let e = b.collect().await.unwrap_err();
        assert!(matches!(
            BodyLimit::find(e.as_ref()),
            Some(BodyLimit::TooLarge(4))
        ));
        let mut t = http::HeaderMap::new();
        t.insert("authorization", http::HeaderValue::from_static("Bearer x"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::trailers(t)),
        ];
        let s = StreamBody::new(futures_util::stream::iter(frames));
        let got = Limited::new(s, &Limits::default()).collect().await.unwrap();
        assert!(got.trailers().is_none());
        assert_eq!(got.to_bytes().as_ref(), b"ab");
    }

    #[tokio::test]
    async fn a_broken_body_is_the_clients_failure_and_the_end_is_signalled() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("invalid chunk size".into()),
        ];
        let (upload, ended, mut rx) = Upload::watch();
        let b = Limited::watched(
            StreamBody::new(futures_util::stream::iter(frames)),
            &Limits::default(),
            upload.clone(),
            ended,
        );
        let e = b.collect().await.unwrap_err();
        assert!(matches!(
            BodyLimit::find(e.as_ref()),
            Some(BodyLimit::Broken(_))
        ));
        assert_eq!(upload.failed().unwrap().kind(), Kind::BadRequest);
        // Dropped without an end: the receiver sees the sender go.
        assert!(rx.try_recv().is_err());

        let (upload, ended, rx) = Upload::watch();
        let b = Limited::watched(
            Full::new(Bytes::from_static(b"whole")),
            &Limits::default(),
            upload.clone(),
            ended,
        );
        assert_eq!(b.collect().await.unwrap().to_bytes().as_ref(), b"whole");
        assert!(rx.await.is_ok());
        assert!(upload.failed().is_none());
    }

    #[tokio::test]
    async fn stalled_body_times_out() {
        let l = Limits {
            body_timeout_secs: 1,
            ..Limits::default()
        };
        let s = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::convert::Infallible>,
        >());
        let e = Limited::new(s, &l).collect().await.unwrap_err();
        assert!(matches!(
            BodyLimit::find(e.as_ref()),
            Some(BodyLimit::Timeout(1))
        ));
    }
}
