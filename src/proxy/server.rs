//! The proxy listener's connections: rustls (HTTP/1.1 and HTTP/2 by ALPN) over the shared
//! accept loop ([`crate::net`]), per-connection limits, `408` for slow request heads, raw
//! request lines watched for what the HTTP parser drops ([`super::rawline`]), and graceful
//! shutdown that flushes the audit log.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::Gateway;
use super::pace::{Pace, PaceLimits};
use super::rawline::{Flags, LineScan};
use crate::audit::{Record, record::EventRecord};
use crate::net::{Peer, Serve};

/// Serves connections until `shutdown` resolves, then lets in-flight requests finish for
/// up to `grace` and flushes the audit log.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<crate::net::Tls>,
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
    let refused = Arc::new(RefusedHeads::default());
    let flusher = tokio::spawn(flush_refused(gateway.clone(), refused.clone()));
    let conns = Arc::new(Connections {
        gateway: gateway.clone(),
        builder,
        refused: refused.clone(),
        first_byte: header_timeout,
        max_line: limits.max_header_bytes.max(8192),
        send: PaceLimits {
            idle: Duration::from_secs(limits.send_timeout_secs.max(1)),
            min_rate: limits.send_min_bytes_per_sec,
            window: Duration::from_secs(limits.body_rate_window_secs.max(1)),
            grace: Duration::from_secs(limits.body_rate_grace_secs),
        },
    });
    crate::net::serve("proxy", listener, tls, conns, grace, shutdown).await;
    flusher.abort();
    refused.flush(&gateway);
    gateway.audit().shutdown().await;
}

/// What serves each proxy connection.
struct Connections {
    gateway: Arc<Gateway>,
    builder: Builder<TokioExecutor>,
    refused: Arc<RefusedHeads>,
    /// A connection that sends not one byte within this time is closed (the HTTP layer's
    /// header timeout only starts once bytes arrive, and protocol sniffing has none).
    first_byte: Duration,
    /// The longest HTTP/1 line the raw request-line scanner follows (the HTTP layer's
    /// buffer).
    max_line: usize,
    /// The pace a client must take responses at.
    send: PaceLimits,
}

impl Serve for Connections {
    async fn serve<I>(&self, io: I, peer: Peer, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (io, heard, mut returned, flags) = Watched::new(io, self.max_line, self.send);
        let Peer { addr, proto, cert } = peer;
        let gw = self.gateway.clone();
        let served = Arc::new(AtomicU64::new(0));
        let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let gw = gw.clone();
            let cert = cert.clone();
            // HTTP/1 requests on a connection come one after another, in the order the
            // scanner saw their request lines.
            let raw = (req.version() <= http::Version::HTTP_11)
                .then(|| flags.of(served.fetch_add(1, Ordering::Relaxed)))
                .flatten();
            if let Some(r) = raw {
                req.extensions_mut().insert(r);
            }
            async move {
                let mut resp = gw.handle_with_cert(req, addr, proto, cert.as_deref()).await;
                if raw.is_some() {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let result = {
            // Dropped at the end of this block, which hands the IO back through `returned`.
            let mut conn =
                pin!(watcher.watch(self.builder.serve_connection(TokioIo::new(io), svc)));
            tokio::select! {
                r = &mut conn => r,
                () = silent_for(&heard, self.first_byte) => {
                    tracing::debug!(peer = %addr, "connection sent nothing within the header timeout; closed");
                    return;
                }
            }
        };
        let Err(e) = result else { return };
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
        let Some(h) = e.downcast_ref::<hyper::Error>() else {
            return;
        };
        self.refused.count(h);
        if h.is_timeout() {
            // A request head began but did not finish in time: answer 408.
            if let Ok(Returned {
                mut io,
                unanswered: true,
            }) = returned.try_recv()
            {
                let answer = crate::respond::Problem::new(
                    crate::respond::Kind::RequestTimeout,
                    "the request head did not arrive within the header timeout",
                )
                .into_http1_close();
                let _ = io.write_all(&answer).await;
                let _ = io.shutdown().await;
            }
        }
    }
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

/// A connection's IO as the HTTP layer sees it: notes whether the peer ever spoke and
/// whether a request head is arriving unanswered, and hands the IO back when the HTTP
/// layer drops it, so the listener can still answer `408` after a slow request head.
/// Nothing is locked: the flags live in the wrapper, and only "spoke" is shared (one
/// atomic, set per read that brought bytes).
struct Watched<I> {
    /// Always `Some` until dropped.
    io: Option<I>,
    /// Bytes were read since the last write: a request head is arriving.
    unanswered: bool,
    /// Set once any byte was read.
    heard: Arc<AtomicBool>,
    back: Option<oneshot::Sender<Returned<I>>>,
    /// The raw HTTP/1 request lines (see [`super::rawline`]).
    scan: LineScan,
    /// The pace at which the client takes what is written to it: a client that stops
    /// reading, or reads a trickle, fails the write and the connection closes.
    send: Pace,
}

/// The IO of a dropped [`Watched`], and whether a request head was arriving unanswered.
struct Returned<I> {
    io: I,
    unanswered: bool,
}

impl<I> Watched<I> {
    /// Wraps `io`; returns the flag "the peer sent a byte", where the IO comes back, and
    /// what the request-line scanner (lines up to `max_line` bytes) tells requests.
    fn new(
        io: I,
        max_line: usize,
        send: PaceLimits,
    ) -> (
        Self,
        Arc<AtomicBool>,
        oneshot::Receiver<Returned<I>>,
        Arc<Flags>,
    ) {
        let (tx, rx) = oneshot::channel();
        let heard = Arc::new(AtomicBool::new(false));
        let (scan, flags) = LineScan::new(max_line);
        let w = Watched {
            io: Some(io),
            unanswered: false,
            heard: heard.clone(),
            back: Some(tx),
            scan,
            send: Pace::new(send),
        };
        (w, heard, rx, flags)
    }

    fn io(&mut self) -> std::io::Result<Pin<&mut I>>
    where
        I: Unpin,
    {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| std::io::Error::other("connection already handed back"))
    }
}

impl<I> Drop for Watched<I> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // Nobody waiting: the IO is dropped (closed) here instead.
            let _ = back.send(Returned {
                io,
                unanswered: self.unanswered,
            });
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = this.io()?.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.unanswered = true;
            this.heard.store(true, Ordering::Relaxed);
            this.scan.feed(&buf.filled()[before..]);
        }
        r
    }
}

impl<I> Watched<I> {
    /// Holds a write's outcome to the send pace: bytes taken count, a wait on the client
    /// is timed, and a broken limit fails the write.
    fn paced<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
        taken: impl Fn(&T) -> u64,
    ) -> Poll<std::io::Result<T>> {
        let stall = match &r {
            Poll::Ready(Ok(t)) => self.send.on_data(taken(t)).err(),
            Poll::Ready(Err(_)) => None,
            Poll::Pending => self.send.on_pending(cx).err(),
        };
        match stall {
            None => r,
            Some(s) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client is not taking the response: {s}"),
            ))),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.unanswered = false;
        let r = self.io()?.poll_write(cx, data);
        self.paced(cx, r, |n| *n as u64)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = self.io()?.poll_flush(cx);
        self.paced(cx, r, |()| 0)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.io()?.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.unanswered = false;
        let r = self.io()?.poll_write_vectored(cx, bufs);
        self.paced(cx, r, |n| *n as u64)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }
}

/// Resolves if the connection has not sent a byte `within` its start; otherwise never.
async fn silent_for(heard: &AtomicBool, within: Duration) {
    tokio::time::sleep(within).await;
    if heard.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    fn test_pace() -> PaceLimits {
        PaceLimits {
            idle: Duration::from_secs(60),
            min_rate: 0,
            window: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn the_io_comes_back_on_drop_with_an_unanswered_head() {
        let (client, server) = duplex(1024);
        let (mut w, heard, mut back, _) = Watched::new(server, 8192, test_pace());
        let mut client = client;
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 16];
        let n = w.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HT");
        assert!(heard.load(Ordering::Relaxed));
        assert!(back.try_recv().is_err(), "handed back while still in use");
        drop(w);
        let Returned { mut io, unanswered } = back.try_recv().unwrap();
        assert!(unanswered);
        // The handed-back IO is the connection itself.
        io.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        drop(io);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 408 Request Timeout\r\n\r\n");
    }

    #[tokio::test]
    async fn a_write_answers_what_was_read() {
        let (mut client, server) = duplex(1024);
        let (mut w, heard, mut back, _) = Watched::new(server, 8192, test_pace());
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        w.read_exact(&mut buf).await.unwrap();
        w.write_all(b"pong").await.unwrap();
        drop(w);
        assert!(heard.load(Ordering::Relaxed));
        assert!(!back.try_recv().unwrap().unanswered);
    }

    #[tokio::test]
    async fn silence_is_noticed_only_when_nothing_was_read() {
        let (_client, server) = duplex(1024);
        let (_w, heard, _back, _) = Watched::new(server, 8192, test_pace());
        let within = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), silent_for(&heard, within))
                .await
                .is_ok()
        );
        heard.store(true, Ordering::Relaxed);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), silent_for(&heard, within))
                .await
                .is_err()
        );
    }
}
