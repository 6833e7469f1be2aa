#![doc = include_str!("../README.md")]

mod admin;
mod api;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench;
mod flow;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod initial_access;
#[cfg(feature = "metadata-documents")]
pub mod metadata_documents;
mod pages;
mod ratelimit;
mod secret_error;
#[cfg(feature = "serve")]
pub mod serve;
mod session;
mod shared;
#[cfg(feature = "upstream")]
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oauth_core::Authenticator;
use oauth_core::AuthorizeError;
use oauth_core::well_known_path;
use oauth_core::{AuthorizationServer, Error, OAuthError};
use tower_http::cors::{Any, CorsLayer};

use crate::api::{as_metadata, form_pairs, introspect, jwks, openid_configuration, register, revoke, token};
use crate::flow::{account_apps, account_apps_revoke, account_sign_in, authorize, consent, sign_in, sign_out};
use crate::ratelimit::Limiter;
use crate::session::Cookies;

pub use crate::admin::{AdminToken, MIN_ADMIN_TOKEN_LEN, admin_router};
pub use crate::health::{READY_WITHIN, health_router};
pub use crate::initial_access::{InitialAccessToken, MIN_INITIAL_ACCESS_TOKEN_LEN};
pub use crate::ratelimit::{IpRange, IpRangeError, Limit, RateLimits, RegistrationQuota, SignInBackoff};
pub use crate::secret_error::SecretError;
pub use oauth_core;

/// Largest request body accepted by any endpoint.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where a signed-in person sees and revokes the apps connected to their account, under the
/// issuer's path (`https://mcp.example.com/account/apps`). It sits beside the endpoints rather
/// than under the authorization endpoint because it belongs to no authorization request: a
/// person opens it on their own, bookmarks it, or follows a link from the consent page.
pub const ACCOUNT_APPS_PATH: &str = "/account/apps";

/// The standalone sign-in of the Connected apps page (a POST; the form is shown at
/// [`ACCOUNT_APPS_PATH`] to a browser that is not signed in).
pub const ACCOUNT_SIGN_IN_PATH: &str = "/account/sign-in";

/// Builds the authorization server's router.
///
/// ```no_run
/// # use std::sync::Arc;
/// # fn demo(server: Arc<oauth_core::AuthorizationServer>) {
/// use oauth_core::StoreAuthenticator;
///
/// let users = StoreAuthenticator::new(server.operator().stores().users.clone());
/// let app: axum::Router = oauth_axum::AuthRouter::new(server, Arc::new(users)).into_router();
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthRouter {
    server: Arc<AuthorizationServer>,
    authenticator: Arc<dyn Authenticator>,
    session_ttl: Duration,
    cors: bool,
    rate_limits: Option<RateLimits>,
    shared_limits: Option<Arc<dyn oauth_core::LimitStore>>,
    initial_access_token: Option<InitialAccessToken>,
}

/// How often the shared limits are swept of what limits no one.
const SHARED_LIMITS_SWEEP: Duration = Duration::from_secs(60);

impl AuthRouter {
    /// A router for `server`, signing users in with `authenticator`.
    pub fn new(server: Arc<AuthorizationServer>, authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            server,
            authenticator,
            session_ttl: Duration::from_secs(12 * 3600),
            cors: true,
            rate_limits: Some(RateLimits::default()),
            shared_limits: None,
            initial_access_token: None,
        }
    }

    /// Shares the rate limits and the per-account sign-in throttle with every replica through
    /// `store` (`Stores::limits`), for several replicas behind one balancer: registration and
    /// its hourly quotas, `/authorize` and sign-in per address, and the per-account backoff.
    /// Each request is counted by this replica first, so a flood is refused without a
    /// database write. The token endpoint's limit stays per replica: it guards the replica's
    /// processor time, as codes, refresh tokens and client secrets are 256-bit random values
    /// with nothing to guess. A store that fails refuses no one; this replica's limits hold.
    /// Default: `None`, each process counts alone, which is right for one replica. Costs a
    /// database write per limited request (registration, `/authorize`, sign-in), none on the
    /// token endpoint; the table is swept every minute and bounded by
    /// [`RateLimits::max_tracked`] rows.
    pub fn with_shared_limits(mut self, store: Option<Arc<dyn oauth_core::LimitStore>>) -> Self {
        self.shared_limits = store;
        self
    }

    /// Closes registration (RFC 7591 §3): `POST /register` then needs
    /// `Authorization: Bearer <token>`, else 401 `invalid_token`. Default: open registration,
    /// as MCP clients expect; metadata-document and pre-registered clients are not affected.
    pub fn with_initial_access_token(mut self, token: Option<InitialAccessToken>) -> Self {
        self.initial_access_token = token;
        self
    }

    /// Per-address rate limits on registration, sign-in and the token endpoints. Default:
    /// [`RateLimits::default`]. `None` turns them off (only behind a gateway that limits
    /// instead). They need the peer address: serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn with_rate_limits(mut self, limits: Option<RateLimits>) -> Self {
        self.rate_limits = limits;
        self
    }

    /// How long a browser stays signed in. Default 12 h. Longer sessions let whoever uses the
    /// browser approve new clients without a password for longer.
    pub fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// CORS for browser clients on metadata, registration, token, revocation, introspection
    /// and JWKS (any origin, no credentials). Default on; the pages never get CORS.
    pub fn with_cors(mut self, on: bool) -> Self {
        self.cors = on;
        self
    }

    /// The router, with its state applied, ready to merge into any app. Well-known routes are
    /// at the root; endpoints are under the issuer's path.
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let cfg = self.server.config().clone();
        let issuer = cfg.issuer.as_str().to_owned();
        let base = cfg.issuer.path();
        let p = |x: &str| format!("{base}{x}");
        let providers = self
            .server
            .upstreams()
            .iter()
            .map(|u| (u.provider().id.clone(), u.provider().display_name.clone()))
            .collect();
        let shared = Arc::new(Shared {
            cookies: Cookies::for_issuer(&issuer),
            pages: Pages {
                sign_in: p(&format!("{}/sign-in", cfg.paths.authorization)),
                consent: p(&format!("{}/consent", cfg.paths.authorization)),
                apps: p(ACCOUNT_APPS_PATH),
                apps_revoke: p(&format!("{ACCOUNT_APPS_PATH}/revoke")),
                account_sign_in: p(ACCOUNT_SIGN_IN_PATH),
                sign_out: p(&format!("{}/sign-out", cfg.paths.authorization)),
                upstream_start: p(&format!("{}/sign-in/upstream", cfg.paths.authorization)),
                upstream: format!("{}/upstream/", cfg.paths.authorization),
            },
            server: self.server,
            authenticator: self.authenticator,
            session_ttl: self.session_ttl,
            limiter: self.rate_limits.map(|l| Limiter::new(l).with_shared(self.shared_limits)),
            initial_access_token: self.initial_access_token,
            providers,
            issuer_base: issuer.trim_end_matches('/').to_owned(),
        });
        if shared.limiter.as_ref().is_some_and(|l| l.shared().is_some()) {
            spawn_limit_sweeper(Arc::downgrade(&shared));
        }

        let mut api = Router::new()
            .route(&well_known_path("oauth-authorization-server", &issuer), get(as_metadata))
            .route(&well_known_path("openid-configuration", &issuer), get(openid_configuration))
            .route(&p(&cfg.paths.token), post(token))
            .route(&p(&cfg.paths.revocation), post(revoke))
            .route(&p(&cfg.paths.introspection), post(introspect))
            .route(&p(&cfg.paths.jwks), get(jwks));
        if !base.is_empty() {
            // OpenID Discovery appends the suffix to the issuer; clients of MCP 2025-03-26 look
            // at the root of the MCP server's origin.
            api = api
                .route(&format!("{base}/.well-known/openid-configuration"), get(openid_configuration))
                .route("/.well-known/oauth-authorization-server", get(as_metadata));
        }
        if cfg.dynamic_registration {
            api = api.route(&p(&cfg.paths.registration), post(register));
        }
        if self.cors {
            api = api.layer(api_cors());
        }
        let pages = Router::new()
            .route(&p(&cfg.paths.authorization), get(authorize))
            .route(&shared.pages.sign_in, post(sign_in))
            .route(&shared.pages.consent, post(consent))
            .route(&shared.pages.apps, get(account_apps))
            .route(&shared.pages.apps_revoke, post(account_apps_revoke))
            .route(&shared.pages.account_sign_in, post(account_sign_in))
            .route(&shared.pages.sign_out, post(sign_out))
            .route(&shared.pages.upstream_start, post(flow::upstream_start))
            .route(&p(&format!("{}{{provider}}/callback", shared.pages.upstream)), get(flow::upstream_callback));
        api.merge(pages).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(shared)
    }
}

/// CORS of the API endpoints, for browser clients such as the MCP Inspector: any origin, no
/// credentials; never on the pages.
fn api_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("mcp-protocol-version")])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(3600))
}

/// Runs [`AuthorizationServer::sweep`] every `every` in a background task: expired pending
/// requests and codes, dead grants, old flow events, abandoned dynamically registered clients
/// and retired keys past retention. Failures are logged and retried at the next tick.
pub fn spawn_sweeper(server: Arc<AuthorizationServer>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match server.sweep().await {
                Ok(report) => tracing::debug!(?report, "swept expired records"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired records failed; retrying at the next tick"),
            }
        }
    })
}

/// Sweeps the shared limits every [`SHARED_LIMITS_SWEEP`] while the router lives.
fn spawn_limit_sweeper(shared: std::sync::Weak<Shared>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("the router was built outside a Tokio runtime: the shared limits are not swept");
        return;
    };
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(SHARED_LIMITS_SWEEP);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shared) = shared.upgrade() else { return };
            if let Some(limiter) = &shared.limiter {
                limiter.sweep_shared().await;
            }
        }
    });
}

/// The router with default options: [`AuthRouter::new`] then [`AuthRouter::into_router`].
pub fn router<S: Clone + Send + Sync + 'static>(
    server: Arc<AuthorizationServer>,
    authenticator: Arc<dyn Authenticator>,
) -> Router<S> {
    AuthRouter::new(server, authenticator).into_router()
}

#[derive(Debug)]
struct Shared {
    server: Arc<AuthorizationServer>,
    authenticator: Arc<dyn Authenticator>,
    cookies: Cookies,
    pages: Pages,
    session_ttl: Duration,
    limiter: Option<Limiter>,
    initial_access_token: Option<InitialAccessToken>,
    /// The upstream providers on the sign-in page: (id, display name).
    providers: Vec<(String, String)>,
    /// The issuer without a trailing slash: the callback URLs' origin and path prefix.
    issuer_base: String,
}

#[derive(Debug)]
struct Pages {
    sign_in: String,
    consent: String,
    apps: String,
    apps_revoke: String,
    account_sign_in: String,
    sign_out: String,
    /// Where the sign-in page's upstream buttons post.
    upstream_start: String,
    /// The path of each provider's callback is this, the provider id, and `/callback`.
    upstream: String,
}

type AppState = State<Arc<Shared>>;

/// The peer's socket address, when the app is served with connect info.
struct Peer(Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0)))
    }
}

/// Form fields of a page POST, bounded: unknown fields are ignored, repeated ones refused.
struct FormFields(std::collections::HashMap<String, String>);

impl FormFields {
    fn parse(headers: &HeaderMap, body: &[u8], names: &[&str]) -> Result<Self, OAuthError> {
        let mut map = std::collections::HashMap::new();
        for (k, v) in form_pairs(headers, body)? {
            if names.contains(&k.as_str()) && map.insert(k.clone(), v).is_some() {
                return Err(OAuthError::invalid_request(format!("field '{k}' is repeated")));
            }
        }
        Ok(Self(map))
    }

    fn take(&mut self, name: &str) -> String {
        self.0.remove(name).unwrap_or_default()
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = no_store(status);
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => pages::error_page(
            StatusCode::BAD_REQUEST,
            "Cannot return to the application",
            "the redirect address is not valid",
            "invalid_request",
        ),
    }
}

fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn authorize_error(e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::ShowToUser(e) => show_error(&e),
        AuthorizeError::Redirect { location, .. } => redirect(StatusCode::FOUND, &location),
        AuthorizeError::Internal(e) => internal(&e),
        other => internal(&Error::Config(other.to_string())),
    }
}

fn show_error(e: &OAuthError) -> Response {
    pages::error_page(
        StatusCode::BAD_REQUEST,
        "This connection request cannot be completed",
        e.description(),
        e.code().as_str(),
    )
}

fn expired() -> Response {
    show_error(&OAuthError::invalid_request(
        "this sign-in request has expired or was already completed; start again from the application",
    ))
}

fn csrf_failure() -> Response {
    pages::error_page(
        StatusCode::FORBIDDEN,
        "The form could not be accepted",
        "the form expired or was not sent from this page; go back to the application and connect again",
        "invalid_request",
    )
}

fn internal(e: &Error) -> Response {
    tracing::error!(error = %e, "internal error on an authorization page");
    pages::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "the server could not complete the request; try again",
        "server_error",
    )
}
