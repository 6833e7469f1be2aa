//! OAuth 2.1 for a remote MCP server, in a few lines.
//!
//! [`McpAuth::builder`] takes the URL clients reach the server at and a store, and
//! [`build`](McpAuthBuilder::build) does the wiring, in the only order that works: the signing
//! keys, the token cache watching the store for revocations and the verifier that uses that
//! same cache, the Client ID Metadata Document fetcher, the startup self-check against the
//! exact protected-resource metadata that will be served, and the sweeper. What comes out is
//! two pieces to mount in an axum app:
//!
//! - [`McpAuth::protect`] wraps the MCP endpoint: CORS outside, then the guard (bearer
//!   validation, `WWW-Authenticate` challenges, the scope policy, MCP session bounds), and the
//!   caller's [`AuthContext`] in the request extensions. [`McpAuth::mcp_service`] builds rmcp's
//!   Streamable HTTP service already set up to agree with the guard and protects it.
//! - [`McpAuth::routes`] carries the authorization server's endpoints and pages, both
//!   protected-resource metadata URLs, CORS and the rate limits.
//!
//! [`serve`] runs the app with what the rate limits need (the peer address) and what a
//! directly exposed server needs (a header-read timeout, a connection cap).
//!
//! ```no_run
//! # use mcp_oauth::McpAuth;
//! # async fn run(mcp: impl tower::Service<axum::http::Request<axum::body::Body>, Response = axum::http::Response<axum::body::Body>, Error = std::convert::Infallible, Future: Send + 'static> + Clone + Send + Sync + 'static) -> Result<(), Box<dyn std::error::Error>> {
//! let auth = McpAuth::builder("https://mcp.example.com").database("sqlite://data/oauth.db?mode=rwc").build().await?;
//! let app = auth.routes().nest_service(auth.mcp_path(), auth.protect(mcp));
//! mcp_oauth::serve(tokio::net::TcpListener::bind("0.0.0.0:8080").await?, app).await?;
//! # Ok(()) }
//! ```
//!
//! This crate is the front door over the others, as `axum` sits over `axum-core`: `oauth-core`
//! (the protocol, no framework), `oauth-axum` (the authorization server's router), `mcp-guard`
//! (the tower layer), `oauth-store-sql` (SQLite and PostgreSQL). A standalone authorization
//! server, or a guard in front of another server's tokens, uses those directly; everything
//! the builder does is also reachable there.

mod builder;
mod first_user;
#[cfg(feature = "metrics")]
pub mod metrics;

use std::sync::Arc;

use axum::Router;
use mcp_guard::McpGuardLayer;
use tower::Layer as _;

pub use builder::McpAuthBuilder;
pub use first_user::write_secret_file;
#[cfg(feature = "external")]
pub use mcp_guard::remote::{IssuerProfile, PRESETS as ISSUER_PRESETS};
pub use mcp_guard::{AuthContext, Caller, SessionLimits, UpstreamToken, UpstreamTokenError};
pub use oauth_axum::serve::ServeConfig;
pub use oauth_axum::{AdminToken, IpRange, RateLimits};
pub use oauth_core::Authenticator;
pub use oauth_core::KeyEncryption;
pub use oauth_core::KnownClient;
pub use oauth_core::ScopeSet;
pub use oauth_core::{AuthorizationServer, Error, Stores};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use oauth_store_sql::SqlStoreOptions;

/// The MCP endpoint behind the guard, with CORS outside it.
pub type Protected<S> = tower_http::cors::Cors<mcp_guard::McpGuard<S>>;

/// OAuth for one MCP server: what [`McpAuthBuilder::build`] wired, ready to mount.
///
/// Cheap to clone: every clone shares the same server, cache and session bounds.
#[derive(Debug, Clone)]
pub struct McpAuth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The embedded authorization server; `None` when tokens come from another one.
    server: Option<Arc<AuthorizationServer>>,
    guard: McpGuardLayer,
    routes: Router,
    mcp_path: String,
    mcp_url: String,
    public_url: String,
    session_limits: SessionLimits,
    #[cfg(feature = "metrics")]
    metrics: Option<metrics::Metrics>,
}

impl McpAuth {
    /// A builder for the MCP server clients reach at `public_url`: an origin such as
    /// `https://mcp.example.com` (or `http://127.0.0.1:8080` for local use), which is also the
    /// embedded authorization server's issuer.
    pub fn builder(public_url: impl Into<String>) -> McpAuthBuilder {
        McpAuthBuilder::new(public_url.into())
    }

    /// `service` (the MCP endpoint) behind the guard, with the CORS layer browser-based
    /// clients need outside it. Mount it at [`Self::mcp_path`].
    pub fn protect<S>(&self, service: S) -> Protected<S> {
        mcp_guard::mcp_cors_layer().layer(self.inner.guard.layer(service))
    }

    /// The guard alone, for a stack the author assembles (put a CORS layer that exposes
    /// `WWW-Authenticate` outside it; [`Self::protect`] does).
    pub fn guard(&self) -> &McpGuardLayer {
        &self.inner.guard
    }

    /// The authorization server's endpoints and pages, the protected-resource metadata at both
    /// of its URLs, CORS and the rate limits; in external mode, the metadata only.
    pub fn routes(&self) -> Router {
        self.inner.routes.clone()
    }

    /// Where the MCP endpoint is mounted (`/mcp` unless set).
    pub fn mcp_path(&self) -> &str {
        &self.inner.mcp_path
    }

    /// The public origin: the embedded authorization server's issuer.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The MCP endpoint's full URL: what a person pastes into their client.
    pub fn mcp_url(&self) -> &str {
        &self.inner.mcp_url
    }

    /// The MCP session bounds the guard enforces.
    pub fn session_limits(&self) -> SessionLimits {
        self.inner.session_limits
    }

    /// The metrics the builder was given, to serve on an internal listener
    /// ([`Metrics::render`](metrics::Metrics::render)) when `/metrics` is not served here.
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> Option<&metrics::Metrics> {
        self.inner.metrics.as_ref()
    }

    /// The embedded authorization server (for the operator's functions: clients, users,
    /// `diagnose`); `None` when tokens come from an external one.
    pub fn server(&self) -> Option<&Arc<AuthorizationServer>> {
        self.inner.server.as_ref()
    }

    /// Creates the first user, `username`, when the embedded server has no user at all, with a
    /// generated password written to `password_file` (created with mode 0600, its directory
    /// too). Returns whether it did; a server that has users is left alone. The password is
    /// never printed or logged: tell the person where the file is.
    pub async fn create_first_user(
        &self,
        username: &str,
        password_file: impl AsRef<std::path::Path>,
    ) -> Result<bool, Error> {
        let Some(server) = &self.inner.server else {
            return Err(Error::Config("users live in the authorization server; this one is external".into()));
        };
        first_user::create(server, username, password_file.as_ref()).await
    }

    /// rmcp's Streamable HTTP service for the MCP server `factory` makes, protected: the
    /// public host is among its allowed hosts (with the loopback names), and its session
    /// keep-alive is the guard's idle timeout, so neither keeps a session the other has ended.
    #[cfg(feature = "rmcp")]
    pub fn mcp_service<M, F>(
        &self,
        factory: F,
    ) -> Protected<
        rmcp::transport::streamable_http_server::StreamableHttpService<
            M,
            rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
        >,
    >
    where
        M: rmcp::ServerHandler,
        F: Fn() -> Result<M, std::io::Error> + Send + Sync + 'static,
    {
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
        let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()];
        let public = url::Url::parse(&self.inner.public_url).ok();
        if let Some(host) = public.as_ref().and_then(url::Url::host_str)
            && !hosts.iter().any(|h| h == host)
        {
            hosts.push(host.to_owned());
        }
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(self.inner.session_limits.idle_timeout);
        self.protect(StreamableHttpService::new(
            factory,
            Arc::new(sessions),
            StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
        ))
    }
}

/// Serves `app` on `listener` until Ctrl-C, with [`ServeConfig::default`]: the peer address in
/// every request (the per-address rate limits need it), a 10 s header-read timeout and a cap
/// on open connections. Other limits and another shutdown
/// signal: [`serve_with`].
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    let shutdown = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: serve until the process ends.
            std::future::pending::<()>().await;
        }
    };
    serve_with(listener, app, ServeConfig::default(), shutdown).await
}

/// Serves `app` on `listener` under `config`'s limits until `shutdown` completes, then lets
/// in-flight requests finish (up to the grace period). Accept errors (out of file descriptors)
/// are logged and retried, never returned.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    oauth_axum::serve::serve(listener, app, config, shutdown).await
}
