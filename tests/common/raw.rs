//! Raw-socket helpers for the adversarial suite: a client that sends exact bytes over TCP or
//! TLS (optionally with a client certificate), and an upstream that records the raw bytes
//! it received and counts the requests in them.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Gateway;

/// A response read off a raw socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub bytes: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).to_string()
    }
    /// Status codes of every response in the bytes (pipelining gives several).
    pub fn statuses(&self) -> Vec<u16> {
        let t = self.text();
        let mut out = Vec::new();
        for (i, _) in t.match_indices("HTTP/1.") {
            if let Some(code) = t[i..]
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
            {
                out.push(code);
            }
        }
        out
    }
    pub fn status(&self) -> u16 {
        self.statuses().first().copied().unwrap_or(0)
    }
    /// A header value of the first response (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let t = self.text();
        let head = t.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    pub fn request_id(&self) -> Option<String> {
        self.header("x-request-id")
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    chunks: &[&[u8]],
    pause: Duration,
    wait: Duration,
) -> RawResponse {
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if s.write_all(c).await.is_err() {
            break;
        }
        let _ = s.flush().await;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    RawResponse { bytes: buf }
}

/// A TLS client config trusting the gateway's dev certificate, with an optional client
/// certificate (PEM cert, PEM key) and a fixed TLS version set.
pub fn tls_config(
    gw: &Gateway,
    client: Option<(&std::path::Path, &std::path::Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let cert =
        rustls_pki_types::CertificateDer::from_pem_file(gw.dir.path().join("cert.pem")).unwrap();
    roots.add(cert).unwrap();
    let b = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots);
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some((c, k)) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(c)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(k).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// Opens a TLS connection to the gateway with `cfg`.
pub async fn tls_connect(
    gw: &Gateway,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(gw.addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// Sends exact bytes over TLS (HTTP/1.1 ALPN) and reads until the gateway closes (or `wait`).
pub async fn tls(gw: &Gateway, request: &[u8]) -> RawResponse {
    tls_chunks(gw, &[request], Duration::ZERO, Duration::from_secs(5)).await
}

/// Sends `chunks` over TLS with `pause` between them, then reads for up to `wait`.
pub async fn tls_chunks(
    gw: &Gateway,
    chunks: &[&[u8]],
    pause: Duration,
    wait: Duration,
) -> RawResponse {
    let cfg = tls_config(
        gw,
        None,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let mut s = tls_connect(gw, cfg).await.unwrap();
    exchange(&mut s, chunks, pause, wait).await
}

/// Sends exact bytes over plain TCP to `addr`.
pub async fn tcp(addr: SocketAddr, request: &[u8]) -> RawResponse {
    tcp_chunks(addr, &[request], Duration::ZERO, Duration::from_secs(5)).await
}

pub async fn tcp_chunks(
    addr: SocketAddr,
    chunks: &[&[u8]],
    pause: Duration,
    wait: Duration,
) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    exchange(&mut s, chunks, pause, wait).await
}

/// What the raw upstream received.
#[derive(Default)]
pub struct RawLog {
    /// Every byte received, per connection.
    pub connections: Vec<Vec<u8>>,
}

/// An HTTP/1.1 upstream on raw sockets: records every byte, counts request heads, and
/// answers each request with `response` (exact bytes).
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<RawLog>>,
    pub requests: Arc<AtomicUsize>,
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

/// Parses one request from `buf`: returns its total length, or None if incomplete.
/// Lenient like a naive backend: Content-Length, else chunked, else no body.
fn request_len(buf: &[u8]) -> Option<usize> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let mut cl = None;
    let mut chunked = false;
    for l in head.lines().skip(1) {
        if let Some(v) = l.strip_prefix("content-length:") {
            cl = v.trim().parse::<usize>().ok();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        let mut i = end;
        loop {
            let line_end = find(&buf[i..], b"\r\n")? + i;
            let size_s = String::from_utf8_lossy(&buf[i..line_end]).to_string();
            let size =
                usize::from_str_radix(size_s.split(';').next().unwrap_or("").trim(), 16).ok()?;
            i = line_end + 2;
            if size == 0 {
                // trailers until an empty line
                loop {
                    let le = find(&buf[i..], b"\r\n")? + i;
                    let empty = le == i;
                    i = le + 2;
                    if empty {
                        return Some(i);
                    }
                }
            }
            if buf.len() < i + size + 2 {
                return None;
            }
            i += size + 2;
        }
    }
    let n = end + cl.unwrap_or(0);
    (buf.len() >= n).then_some(n)
}

impl RawUpstream {
    pub async fn start(response: &'static [u8]) -> RawUpstream {
        Self::start_with(response, false).await
    }

    /// Like [`RawUpstream::start`], but closes (resets) the connection right after each
    /// response: with a short body this is an upstream dying mid-body.
    pub async fn start_closing(response: &'static [u8]) -> RawUpstream {
        Self::start_with(response, true).await
    }

    async fn start_with(response: &'static [u8], close: bool) -> RawUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(RawLog::default()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (log2, req2) = (log.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let log = log2.clone();
                let requests = req2.clone();
                tokio::spawn(async move {
                    let idx = {
                        let mut l = log.lock().unwrap();
                        l.connections.push(Vec::new());
                        l.connections.len() - 1
                    };
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        log.lock().unwrap().connections[idx].extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(len) = request_len(&pending) {
                            pending.drain(..len);
                            requests.fetch_add(1, Ordering::SeqCst);
                            if s.write_all(response).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawUpstream {
            addr,
            log,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// All bytes received, over all connections, as text.
    pub fn received(&self) -> String {
        let l = self.log.lock().unwrap();
        l.connections
            .iter()
            .map(|c| String::from_utf8_lossy(c).to_string())
            .collect::<Vec<_>>()
            .join("\n--- next connection ---\n")
    }
}

/// A plain `200 ok` with a small body.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
