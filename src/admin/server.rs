//! The admin listener's connections: HTTP/1.1 and HTTP/2 over the shared accept loop
//! ([`crate::net`]), TCP with optional TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::Admin;
use crate::net::{Peer, Serve};

/// How long open admin connections may take to finish once the listener stops.
const GRACE: Duration = Duration::from_secs(5);

/// Serves admin connections until `shutdown` resolves.
pub async fn serve(
    admin: Arc<Admin>,
    listener: TcpListener,
    tls: Option<crate::net::Tls>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    let conns = Arc::new(AdminConnections { admin, builder });
    crate::net::serve("admin", listener, tls, conns, GRACE, shutdown).await;
}

/// What serves each admin connection.
struct AdminConnections {
    admin: Arc<Admin>,
    builder: Builder<TokioExecutor>,
}

impl Serve for AdminConnections {
    async fn serve<I>(&self, io: I, peer: Peer, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admin = self.admin.clone();
        let svc = service_fn(move |req| {
            let admin = admin.clone();
            async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
        });
        let conn = self.builder.serve_connection(TokioIo::new(io), svc);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(peer = %peer.addr, error = %e, "admin connection ended with an error");
        }
    }
}
