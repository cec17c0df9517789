//! The accept loop every listener shares: TCP accept with backoff, TLS handshake with a
//! timeout, one task per connection, and graceful shutdown. What serves a connection is
//! the listener's [`Serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause after a failed accept (out of file descriptors, say); doubled on each
/// further failure up to [`BACKOFF_MAX`], reset by the next accepted connection.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where a listener's TLS configuration comes from, asked once per connection: the
/// gateway's current snapshot, so a reload that renews a certificate takes effect for new
/// connections without a restart.
#[derive(Clone)]
pub struct Tls(Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>);

impl Tls {
    pub fn new(f: impl Fn() -> Arc<rustls::ServerConfig> + Send + Sync + 'static) -> Tls {
        Tls(Arc::new(f))
    }

    /// One configuration for the listener's lifetime.
    pub fn fixed(cfg: Arc<rustls::ServerConfig>) -> Tls {
        Tls::new(move || cfg.clone())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from((self.0)())
    }
}

/// Who is on the other end of an accepted connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The TLS client certificate (DER), when one was presented.
    pub cert: Option<Arc<[u8]>>,
}

/// Serves one accepted (and, with TLS, handshaken) connection of a listener.
pub trait Serve: Send + Sync + 'static {
    /// Serves `io` until it ends; `watcher` is to be handed the HTTP connection so a
    /// graceful shutdown can drain it.
    fn serve<I>(&self, io: I, peer: Peer, watcher: Watcher) -> impl Future<Output = ()> + Send
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// Accepts connections on `listener` and serves each with `server` in a task of its own,
/// until `shutdown` resolves; then stops accepting and gives the open connections up to
/// `grace` to finish. `name` labels the listener in the service log.
pub async fn serve<S: Serve>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Tls>,
    server: Arc<S>,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut backoff = BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => {
                backoff = BACKOFF_MIN;
                a
            }
            // The connection died in the backlog: nothing wrong with the listener.
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(listener = name, error = %e, "connection failed before accept");
                continue;
            }
            Err(e) => {
                tracing::warn!(listener = name, error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = next_backoff(backoff);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            name,
            stream,
            addr,
            tls.clone(),
            server.clone(),
            graceful.watcher(),
        ));
    }
    drop(listener);
    tracing::info!(
        listener = name,
        grace_secs = grace.as_secs(),
        "shutting down: waiting for in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "grace period ended with requests still in flight"
        );
    }
}

/// Handshakes (with TLS) and serves one connection.
async fn connection<S: Serve>(
    name: &'static str,
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<Tls>,
    server: Arc<S>,
    watcher: Watcher,
) {
    let Some(acceptor) = tls.map(|t| t.acceptor()) else {
        let peer = Peer {
            addr,
            proto: "http",
            cert: None,
        };
        return server.serve(stream, peer, watcher).await;
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(listener = name, peer = %addr, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = name, peer = %addr, "tls handshake timed out");
            return;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::from(c.as_ref()));
    let peer = Peer {
        addr,
        proto: "https",
        cert,
    };
    server.serve(stream, peer, watcher).await;
}

/// Errors of one pending connection, not of the listener: accept again at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each connection with its peer's scheme, then closes.
    struct Echo;

    impl Serve for Echo {
        async fn serve<I>(&self, mut io: I, peer: Peer, _watcher: Watcher)
        where
            I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        {
            let _ = io.write_all(peer.proto.as_bytes()).await;
            let _ = io.shutdown().await;
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut d = BACKOFF_MIN;
        let mut seen = vec![d];
        for _ in 0..8 {
            d = next_backoff(d);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(100));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().unwrap(), BACKOFF_MAX);
    }

    #[test]
    fn only_per_connection_errors_skip_the_backoff() {
        use std::io::{Error, ErrorKind};
        assert!(is_connection_error(&Error::from(
            ErrorKind::ConnectionAborted
        )));
        assert!(is_connection_error(&Error::from(
            ErrorKind::ConnectionReset
        )));
        assert!(!is_connection_error(&Error::other("too many open files")));
    }

    #[tokio::test]
    async fn serves_each_connection_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            "test",
            listener,
            None,
            Arc::new(Echo),
            Duration::from_secs(1),
            async {
                let _ = stopped.await;
            },
        ));
        for _ in 0..3 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "http");
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
