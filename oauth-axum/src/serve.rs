//! Serving a router on a TCP listener with the limits a public server needs: what
//! `axum::serve` leaves out.
//!
//! `axum::serve` sets no timer on hyper, so hyper's header-read timeout never fires, and it
//! accepts every connection. A client that sends half a request and then nothing keeps its
//! connection (and a file descriptor) forever; a few thousand of them and the process can no
//! longer accept anyone, or open its database. [`serve`] closes a connection whose request head
//! does not arrive within [`ServeConfig::header_read_timeout`] (10 s by default), which in
//! hyper also bounds how long a kept-alive connection may sit idle waiting for its next request;
//! caps the connections served at once ([`ServeConfig::max_connections`], 512 by default:
//! connections past the cap wait in the listen backlog until one closes, they are not dropped);
//! sets `TCP_NODELAY`; hands handlers the peer address as
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which the per-address rate limits
//! read; and on shutdown stops accepting, lets in-flight requests finish for up to
//! [`ServeConfig::shutdown_grace`], then returns.
//!
//! A request body or a long response (an MCP event stream) is not bound by these timeouts: only
//! the wait for a request's head is.
//!
//! ```no_run
//! # async fn demo(router: axum::Router) -> std::io::Result<()> {
//! use oauth_axum::serve::{ServeConfig, serve};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Until the future completes; in a binary, `async { let _ = tokio::signal::ctrl_c().await; }`.
//! let shutdown = std::future::pending::<()>();
//! serve(listener, router, ServeConfig::default(), shutdown).await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// The largest connection cap: far above any file-descriptor limit.
const MAX_CAP: usize = 1 << 20;

/// Limits for [`serve`]. The defaults suit a server on the internet; each setter says what it
/// protects against.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// How long a connection may take to send a request's head (request line and headers),
    /// and how long a kept-alive connection may wait for its next request.
    pub header_read_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
    /// How long in-flight requests may run on after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServeConfig {
    /// How long a connection may take to send a request's head, and stay idle between
    /// requests. Default 10 s. Longer lets slow clients hold connections longer; a client on a
    /// bad mobile link sends a request head in well under a second.
    #[must_use]
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How many connections are served at once (at least 1). Default 512. Each one holds a
    /// file descriptor: keep it well below the process's limit (`ulimit -n`), leaving room for
    /// the database and outbound fetches. Connections past the cap wait in the listen backlog.
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, MAX_CAP);
        self
    }

    /// How long in-flight requests may run on after the shutdown signal. Default 10 s; an
    /// open event stream is cut when it ends.
    #[must_use]
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// Serves `router` on `listener` under `config`'s limits until `shutdown` completes, then
/// lets in-flight requests finish (up to the grace period) and returns. Errors accepting a
/// connection (such as running out of file descriptors) are logged and retried, never
/// returned.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let max = config.max_connections.clamp(1, MAX_CAP);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut full_since_logged = false;
    loop {
        // A slot first, then accept: past the cap, new connections wait in the kernel's backlog.
        let permit = if let Ok(p) = slots.clone().try_acquire_owned() {
            p
        } else {
            if !full_since_logged {
                tracing::warn!(max_connections = max, "connection limit reached; new connections wait");
                full_since_logged = true;
            }
            tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off, connections already open keep working.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if slots.available_permits() > max / 2 {
            full_since_logged = false;
        }
        // Small JSON-RPC answers go out at once: without TCP_NODELAY, Nagle's algorithm holds
        // each one until the client's delayed ACK, some 40 ms per request under load.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        spawn_connection(&builder, tcp, peer, router.clone(), permit, stopped.clone());
    }
    drop(listener);
    let _ = stop.send(());
    let all = u32::try_from(max).unwrap_or(u32::MAX); // max <= MAX_CAP < u32::MAX
    if tokio::time::timeout(config.shutdown_grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(grace = ?config.shutdown_grace, "connections still open after the shutdown grace period");
    }
    Ok(())
}

/// Serves one accepted connection on its own task, holding its slot until it closes; it
/// finishes its requests and closes when `stopped` changes (shutdown).
fn spawn_connection(
    builder: &hyper::server::conn::http1::Builder,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stopped: watch::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let connection = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
    tokio::spawn(async move {
        let _permit = permit;
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            r = connection.as_mut() => r,
            _ = stopped.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, %peer, "connection closed with an error");
        }
    });
}
