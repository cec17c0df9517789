//! The listener: TCP accept, TLS (rustls, HTTP/1.1 and HTTP/2 by ALPN), per-connection
//! limits, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Gateway;
use crate::audit::{Record, record::EventRecord};

/// Serves connections until `shutdown` resolves, then lets in-flight requests finish for
/// up to `grace` and flushes the audit log.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let limits = gateway.state().config.limits.clone();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(limits.max_headers.max(1))
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let refused = Arc::new(RefusedHeads::default());
    let flusher = tokio::spawn(flush_refused(gateway.clone(), refused.clone()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    let tls_stream = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    };
                    let cert: Option<Arc<[u8]>> = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::from(c.as_ref()));
                    let conn = Conn {
                        peer,
                        proto: "https",
                        cert,
                        refused,
                        first_byte: header_timeout,
                    };
                    serve_one(gw, &builder, watcher, tls_stream, conn).await;
                }
                None => {
                    let conn = Conn {
                        peer,
                        proto: "http",
                        cert: None,
                        refused,
                        first_byte: header_timeout,
                    };
                    serve_one(gw, &builder, watcher, stream, conn).await
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: waiting for in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period ended with requests still in flight");
    }
    flusher.abort();
    refused.flush(&gateway);
    gateway.audit().shutdown().await;
}

/// What a connection brings to each of its requests.
struct Conn {
    peer: SocketAddr,
    proto: &'static str,
    /// The TLS client certificate (DER), when one was presented.
    cert: Option<Arc<[u8]>>,
    refused: Arc<RefusedHeads>,
    /// A connection that sends not one byte within this time is closed (the HTTP layer's
    /// header timeout only starts once bytes arrive, and protocol sniffing has none).
    first_byte: Duration,
}

/// Requests refused by the HTTP layer before they reached the gateway (malformed or
/// oversized heads, slow heads): counted here and written to the audit log as one
/// aggregated event per second, so a flood can't flood the log.
#[derive(Default)]
struct RefusedHeads {
    malformed: AtomicU64,
    too_large: AtomicU64,
    timed_out: AtomicU64,
}

impl RefusedHeads {
    fn count(&self, e: &hyper::Error) {
        let c = if e.is_timeout() {
            &self.timed_out
        } else if e.is_parse_too_large() {
            &self.too_large
        } else if e.is_parse() || e.is_parse_status() {
            &self.malformed
        } else {
            return;
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn flush(&self, gw: &Gateway) {
        let m = self.malformed.swap(0, Ordering::Relaxed);
        let l = self.too_large.swap(0, Ordering::Relaxed);
        let t = self.timed_out.swap(0, Ordering::Relaxed);
        if m + l + t == 0 {
            return;
        }
        gw.audit().append_nowait(Record::Event(EventRecord::new(
            "refused-before-routing",
            format!("malformed={m} too_large={l} timed_out={t}"),
        )));
    }
}

async fn flush_refused(gw: Arc<Gateway>, refused: Arc<RefusedHeads>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        refused.flush(&gw);
    }
}

/// The connection's IO, shared so the listener can still answer `408` after the HTTP
/// layer gave up on a slow request head. The lock is per connection and uncontended.
struct SharedIo<I>(Arc<Mutex<IoState<I>>>);

struct IoState<I> {
    io: I,
    /// Bytes read since the last write: non-zero while a request head is arriving.
    unanswered: u64,
    /// Whether any byte was ever read.
    spoke: bool,
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("connection state poisoned")
}

impl<I: AsyncRead + Unpin> AsyncRead for SharedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Ok(mut st) = self.0.lock() else {
            return Poll::Ready(Err(poisoned()));
        };
        let before = buf.filled().len();
        let r = Pin::new(&mut st.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        st.unanswered += n;
        st.spoke |= n > 0;
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SharedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let Ok(mut st) = self.0.lock() else {
            return Poll::Ready(Err(poisoned()));
        };
        st.unanswered = 0;
        Pin::new(&mut st.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Ok(mut st) = self.0.lock() else {
            return Poll::Ready(Err(poisoned()));
        };
        Pin::new(&mut st.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Ok(mut st) = self.0.lock() else {
            return Poll::Ready(Err(poisoned()));
        };
        Pin::new(&mut st.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let Ok(mut st) = self.0.lock() else {
            return Poll::Ready(Err(poisoned()));
        };
        st.unanswered = 0;
        Pin::new(&mut st.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0
            .lock()
            .map(|st| st.io.is_write_vectored())
            .unwrap_or(false)
    }
}

const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

async fn serve_one<I>(
    gw: Arc<Gateway>,
    builder: &Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    c: Conn,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(Mutex::new(IoState {
        io,
        unanswered: 0,
        spoke: false,
    }));
    let Conn {
        peer,
        proto,
        cert,
        refused,
        first_byte,
    } = c;
    let svc = service_fn(move |req| {
        let gw = gw.clone();
        let cert = cert.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                gw.handle_with_cert(req, peer, proto, cert.as_deref()).await,
            )
        }
    });
    let conn = builder.serve_connection(TokioIo::new(SharedIo(shared.clone())), svc);
    let mut conn = Box::pin(watcher.watch(conn));
    let result = tokio::select! {
        r = &mut conn => r,
        () = silent_for(&shared, first_byte) => {
            tracing::debug!(%peer, "connection sent nothing within the header timeout; closed");
            return;
        }
    };
    drop(conn);
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            refused.count(h);
            if h.is_timeout() {
                // A request head began but did not finish in time: answer 408.
                let st = Arc::try_unwrap(shared)
                    .ok()
                    .and_then(|m| m.into_inner().ok());
                if let Some(mut st) = st
                    && st.unanswered > 0
                {
                    let _ = st.io.write_all(REQUEST_TIMEOUT).await;
                    let _ = st.io.shutdown().await;
                }
            }
        }
    }
}

/// Resolves if the connection has not sent a byte `within` its start; otherwise never.
async fn silent_for<I>(shared: &Mutex<IoState<I>>, within: Duration) {
    tokio::time::sleep(within).await;
    if shared.lock().map(|st| st.spoke).unwrap_or(false) {
        std::future::pending::<()>().await;
    }
}
