#![doc = include_str!("../README.md")]

mod admin;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod initial_access;
#[cfg(feature = "metadata-documents")]
pub mod metadata_documents;
mod pages;
mod ratelimit;
mod secret_error;
#[cfg(feature = "serve")]
pub mod serve;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use oauth_core::account::ClientIdentity;
use oauth_core::authorize::{AuthorizationPrompt, AuthorizationRequest, AuthorizeError, ConsentDecision};
use oauth_core::metadata::well_known_path;
use oauth_core::refusals::{Endpoint, Limited};
use oauth_core::registration::RegistrationRequest;
use oauth_core::revoke::TokenRequestForm;
use oauth_core::token::TokenRequest;
use oauth_core::users::Authenticator;
use oauth_core::{AuthorizationServer, Error, OAuthError};
use tower_http::cors::{Any, CorsLayer};

use crate::ratelimit::{Class, Limiter};
use crate::session::{Cookies, Session};

pub use crate::admin::{AdminToken, MIN_ADMIN_TOKEN_LEN, admin_router};
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
/// use oauth_core::users::StoreAuthenticator;
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
    initial_access_token: Option<InitialAccessToken>,
}

impl AuthRouter {
    /// A router for `server`, signing users in with `authenticator`.
    pub fn new(server: Arc<AuthorizationServer>, authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            server,
            authenticator,
            session_ttl: Duration::from_secs(12 * 3600),
            cors: true,
            rate_limits: Some(RateLimits::default()),
            initial_access_token: None,
        }
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
        let shared = Arc::new(Shared {
            cookies: Cookies::for_issuer(&issuer),
            pages: Pages {
                sign_in: p(&format!("{}/sign-in", cfg.paths.authorization)),
                consent: p(&format!("{}/consent", cfg.paths.authorization)),
                apps: p(ACCOUNT_APPS_PATH),
                apps_revoke: p(&format!("{ACCOUNT_APPS_PATH}/revoke")),
                account_sign_in: p(ACCOUNT_SIGN_IN_PATH),
                sign_out: p(&format!("{}/sign-out", cfg.paths.authorization)),
            },
            server: self.server,
            authenticator: self.authenticator,
            session_ttl: self.session_ttl,
            limiter: self.rate_limits.map(Limiter::new),
            initial_access_token: self.initial_access_token,
        });

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
            .route(&shared.pages.sign_out, post(sign_out));
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
}

#[derive(Debug)]
struct Pages {
    sign_in: String,
    consent: String,
    apps: String,
    apps_revoke: String,
    account_sign_in: String,
    sign_out: String,
}

type AppState = State<Arc<Shared>>;

async fn as_metadata(State(s): AppState) -> Response {
    cacheable(Json(s.server.metadata()))
}

async fn openid_configuration(State(s): AppState) -> Response {
    cacheable(Json(s.server.openid_configuration()))
}

async fn jwks(State(s): AppState) -> Response {
    cacheable(Json(s.server.jwks()))
}

fn cacheable(body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

async fn register(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Registration, &peer, &headers) {
        return limited;
    }
    if let Some(refused) = s.registration_closed(&headers).await {
        return refused;
    }
    let req = match RegistrationRequest::from_json(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(&s.server.refuse_malformed(Endpoint::Registration, e).await);
        }
    };
    match s.server.register(req).await {
        Ok(resp) => no_store((StatusCode::CREATED, Json(resp))),
        Err(e) => api_error(&e),
    }
}

async fn token(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Token, &peer, &headers) {
        return limited;
    }
    let req = match form_pairs(&headers, &body).and_then(TokenRequest::from_pairs) {
        Ok(r) => r,
        Err(e) => {
            return api_error(&s.server.refuse_malformed(Endpoint::Token, e).await);
        }
    };
    match s.server.token(req, authorization(&headers)).await {
        Ok(resp) => no_store(Json(resp)),
        Err(e) => api_error(&e),
    }
}

async fn revoke(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Token, &peer, &headers) {
        return limited;
    }
    let form = match form_pairs(&headers, &body).and_then(TokenRequestForm::from_pairs) {
        Ok(f) => f,
        Err(e) => return api_error(&s.server.refuse_malformed(Endpoint::Revocation, e).await),
    };
    match s.server.revoke(form, authorization(&headers)).await {
        Ok(()) => no_store(StatusCode::OK),
        Err(e) => api_error(&e),
    }
}

async fn introspect(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Token, &peer, &headers) {
        return limited;
    }
    let form = match form_pairs(&headers, &body).and_then(TokenRequestForm::from_pairs) {
        Ok(f) => f,
        Err(e) => {
            return api_error(&s.server.refuse_malformed(Endpoint::Introspection, e).await);
        }
    };
    match s.server.introspect(form, authorization(&headers)).await {
        Ok(resp) => no_store(Json(resp)),
        Err(e) => api_error(&e),
    }
}

/// `GET /authorize`: validate, then sign-in page, consent page, or straight back to the client.
async fn authorize(State(s): AppState, peer: Peer, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(limited) = s.limited(Class::Authorize, &peer, &headers) {
        return limited;
    }
    let query = uri.query().unwrap_or_default();
    let req = match AuthorizationRequest::from_pairs(url::form_urlencoded::parse(query.as_bytes())) {
        Ok(r) => r,
        Err(e) => return show_authorize_error(&headers, &e),
    };
    match s.server.authorize(req).await {
        Ok(prompt) => match s.session_for(&headers, Some(&prompt.client.id)).await {
            Some(session) => s.after_sign_in(&headers, prompt, &session, Vec::new()).await,
            None => s.sign_in_page(&headers, &prompt, "", None, StatusCode::OK),
        },
        Err(AuthorizeError::ShowToUser(e)) => show_authorize_error(&headers, &e),
        Err(e) => authorize_error(e),
    }
}

/// Whether the client asks for JSON and not HTML.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// "45 s", "3 min 20 s", "15 min".
fn human_duration(secs: u64) -> String {
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// An `/authorize` error that must not be redirected: a page for a browser, JSON for a client
/// that asks for JSON and not HTML. mcp-remote probes a cached registration that way and
/// registers again only on a JSON `invalid_client`; a page would leave it stuck.
fn show_authorize_error(headers: &HeaderMap, e: &OAuthError) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if accept.contains("application/json") && !accept.contains("text/html") {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        return no_store((status, Json(e)));
    }
    show_error(e)
}

/// `POST …/sign-in`.
async fn sign_in(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::SignIn, &peer, &headers) {
        return limited;
    }
    let mut form = match FormFields::parse(&headers, &body, &["pending", "csrf", "username", "password"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    let pending = form.take("pending");
    if !s.csrf_ok(&headers, &pending, &form.take("csrf")) {
        return csrf_failure();
    }
    let prompt = match s.server.pending_authorization(&pending).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(),
        Err(e) => return internal(&e),
    };
    let username = form.take("username");
    let password = form.take("password");
    if let Some(blocked) = s.account_blocked(&headers, &prompt, &username).await {
        return blocked;
    }
    let user = match s.authenticator.authenticate(&username, &password).await {
        Ok(u) => u,
        Err(e) => return internal(&e),
    };
    s.account_result(&username, user.is_some());
    let Some(user) = user else {
        s.server.record_failed_sign_in(&username, Some(&prompt.client.id)).await;
        if let Some(blocked) = s.account_blocked(&headers, &prompt, &username).await {
            return blocked;
        }
        return s.sign_in_page(&headers, &prompt, &username, Some("Wrong username or password."), StatusCode::OK);
    };
    let (token, session) = match s.server.start_session(&user, s.session_ttl, Some(&prompt.client.id)).await {
        Ok(started) => started,
        Err(e) => return internal(&e),
    };
    let cookie = s.cookies.set_session(token.secret(), s.session_ttl.as_secs());
    s.after_sign_in(&headers, prompt, &Session::from(session), vec![cookie]).await
}

/// `POST …/consent`.
async fn consent(State(s): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let mut form = match FormFields::parse(&headers, &body, &["pending", "csrf", "decision"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    let pending = form.take("pending");
    if !s.csrf_ok(&headers, &pending, &form.take("csrf")) {
        return csrf_failure();
    }
    let prompt = match s.server.pending_authorization(&pending).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(),
        Err(e) => return internal(&e),
    };
    let Some(session) = s.session_for(&headers, Some(&prompt.client.id)).await else {
        // Signed out meanwhile (expired, signed out elsewhere, or the user was removed,
        // disabled or given a new password): sign in again.
        return s.sign_in_page(&headers, &prompt, "", Some("Your session ended; sign in again."), StatusCode::OK);
    };
    let Some(user) = session.user_id() else { return csrf_failure() };
    let result = match form.take("decision").as_str() {
        "approve" => s.server.consent_given(&prompt, &user, session.auth_time).await,
        "deny" => s.server.deny(&pending, Some(&user)).await,
        _ => return show_error(&OAuthError::invalid_request("decision must be 'approve' or 'deny'")),
    };
    match result {
        Ok(location) => redirect(StatusCode::SEE_OTHER, &location),
        Err(e) => authorize_error(e),
    }
}

/// `POST …/sign-out`: ends the browser's session on the server and deletes its cookie, then
/// shows the sign-in page of the pending request (or, with none, a signed-out page). The form
/// carries the CSRF token of the page it is on (bound to `pending`, which may be empty).
async fn sign_out(State(s): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let mut form = match FormFields::parse(&headers, &body, &["pending", "csrf"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    let pending = form.take("pending");
    if !s.csrf_ok(&headers, &pending, &form.take("csrf")) {
        return csrf_failure();
    }
    let prompt = match pending.is_empty() {
        true => None,
        false => match s.server.pending_authorization(&pending).await {
            Ok(p) => p,
            Err(e) => return internal(&e),
        },
    };
    if let Some(token) = s.cookies.session_value(&headers)
        && let Err(e) = s.server.end_session(&token, prompt.as_ref().map(|p| &p.client.id)).await
    {
        return internal(&e);
    }
    let cleared = [s.cookies.clear_session()];
    match prompt {
        Some(prompt) => with_cookies(s.sign_in_page(&headers, &prompt, "", None, StatusCode::OK), &cleared),
        None => pages::page(StatusCode::OK, &pages::SignedOut {}, &cleared),
    }
}

impl Shared {
    /// The 429 answer when this client address is over its limit for `class`.
    fn limited(&self, class: Class, peer: &Peer, headers: &HeaderMap) -> Option<Response> {
        let limiter = self.limiter.as_ref()?;
        let Some(addr) = limiter.client_addr(peer.0, headers) else {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "rate limits are off: the peer address is unknown; serve the app with into_make_service_with_connect_info::<SocketAddr>()"
                );
            });
            return None;
        };
        let refused = limiter.check(class, addr, std::time::Instant::now()).err()?;
        let secs = refused.wait.as_secs().max(1);
        let (who, detail) = if refused.total {
            ("all clients together", format!("the server-wide registration quota is used up; retry in {secs} s"))
        } else {
            ("this address", format!("{:?} limit for {addr} reached; retry in {secs} s", refused.class))
        };
        tracing::warn!(target: "oauth::flow", client_addr = %addr, class = ?refused.class, "rate limited: {detail}");
        if refused.first {
            // One event per run of refusals, so that a flood cannot fill the event table.
            let limited = match class {
                Class::Registration | Class::RegistrationHourly => Limited::Registration,
                Class::Authorize => Limited::Authorization,
                Class::SignIn => Limited::SignIn,
                Class::Token => Limited::Token,
            };
            let server = self.server.clone();
            tokio::spawn(async move { server.record_rate_limited(limited, detail).await });
        }
        let description = format!("too many requests from {who}; retry in {secs} s");
        let mut resp = if matches!(class, Class::SignIn | Class::Authorize) && !wants_json(headers) {
            pages::error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &description,
                "temporarily_unavailable",
            )
        } else {
            no_store((
                StatusCode::TOO_MANY_REQUESTS,
                Json(OAuthError::new(oauth_core::ErrorCode::TemporarilyUnavailable, description)),
            ))
        };
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// The sign-in page with 429 when the account is blocked after too many wrong passwords,
    /// from whatever addresses; the password is then not even checked.
    async fn account_blocked(
        &self,
        headers: &HeaderMap,
        prompt: &AuthorizationPrompt,
        username: &str,
    ) -> Option<Response> {
        let (secs, message) = self.account_block(username, Some(&prompt.client.id)).await?;
        let mut resp = self.sign_in_page(headers, prompt, username, Some(&message), StatusCode::TOO_MANY_REQUESTS);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// [`Self::account_blocked`] for the Connected apps sign-in: one throttle per account,
    /// whichever form the guesses come through.
    async fn account_page_blocked(&self, headers: &HeaderMap, username: &str) -> Option<Response> {
        let (secs, message) = self.account_block(username, None).await?;
        let mut resp = self.account_sign_in_page(headers, username, Some(&message));
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// When the account is blocked: the seconds to wait and what to tell the person, with a
    /// flow event the first time.
    async fn account_block(
        &self,
        username: &str,
        client: Option<&oauth_core::types::ClientId>,
    ) -> Option<(u64, String)> {
        let limiter = self.limiter.as_ref()?;
        let (wait, first) = limiter.account_blocked(username, std::time::Instant::now())?;
        let secs = wait.as_secs().max(1);
        if first {
            self.server.record_sign_in_throttled(username, wait, client).await;
        }
        let retry = self.server.now().plus(std::time::Duration::from_secs(secs)).as_secs();
        let when = format!("{:02}:{:02}:{:02} UTC", retry / 3600 % 24, retry / 60 % 60, retry % 60);
        let message =
            format!("Too many failed sign-ins for this account. Try again in {} (at {when}).", human_duration(secs));
        Some((secs, message))
    }

    /// Counts a wrong password against the account, or clears it after a success.
    fn account_result(&self, username: &str, ok: bool) {
        let Some(limiter) = self.limiter.as_ref() else { return };
        if ok {
            limiter.account_succeeded(username);
        } else {
            limiter.account_failed(username, std::time::Instant::now());
        }
    }

    /// 401 `invalid_token` when registration needs an initial access token the request lacks.
    async fn registration_closed(&self, headers: &HeaderMap) -> Option<Response> {
        let token = self.initial_access_token.as_ref()?;
        if token.admits(headers) {
            return None;
        }
        self.server.record_initial_access_token_refused(headers.contains_key(header::AUTHORIZATION)).await;
        let err = OAuthError::new(
            oauth_core::ErrorCode::InvalidToken,
            "registration on this server needs an initial access token: send it as 'Authorization: Bearer <token>'",
        );
        let mut resp = no_store((StatusCode::UNAUTHORIZED, Json(err)));
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        Some(resp)
    }

    /// The signed-in user of this browser: its session cookie names a stored, unexpired session
    /// whose user still exists, is enabled and has not changed password since.
    #[allow(dead_code)] // The shape pages without a pending request use.
    async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.session_for(headers, None).await
    }

    /// [`Self::session`], recording a refused session against `client`'s connection attempt.
    async fn session_for(&self, headers: &HeaderMap, client: Option<&oauth_core::types::ClientId>) -> Option<Session> {
        let token = self.cookies.session_value(headers)?;
        match self.server.check_session(&token, self.authenticator.as_ref(), client).await {
            Ok(session) => session.map(Session::from),
            Err(e) => {
                // Fail closed: an unreadable session store signs nobody in.
                tracing::error!(error = %e, "checking a sign-in session failed; treated as signed out");
                None
            }
        }
    }

    fn csrf_ok(&self, headers: &HeaderMap, pending: &str, submitted: &str) -> bool {
        let nonce = self.cookies.csrf_nonce(headers);
        let ok =
            session::csrf_valid(&self.server.derive_secret(session::CSRF_KEY), nonce.as_deref(), pending, submitted);
        if !ok {
            // Cookie missing: third-party cookies blocked, the page opened in another browser, or
            // a cross-site post. Token wrong: a stale page or a forged form.
            let why = if nonce.is_none() { "the CSRF cookie is missing" } else { "the CSRF token does not match" };
            tracing::warn!(target: "oauth::flow", step = "sign_in", reason = "csrf_failed", "form refused: {why}");
        }
        ok
    }

    /// The browser's CSRF nonce, and the `Set-Cookie` for it when it is new.
    fn csrf_nonce(&self, headers: &HeaderMap, cookies: &mut Vec<String>) -> String {
        match self.cookies.csrf_nonce(headers) {
            Some(n) => n,
            None => {
                let n = oauth_core::secret::ClientSecret::generate().secret().to_owned();
                cookies.push(self.cookies.set_csrf(&n));
                n
            }
        }
    }

    fn sign_in_page(
        &self,
        headers: &HeaderMap,
        prompt: &AuthorizationPrompt,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Response {
        let mut cookies = Vec::new();
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf = session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, &prompt.pending.id);
        let host = prompt.pending.redirect_uri.display_host();
        let page = pages::SignIn {
            client_name: prompt.client.display_name(),
            redirect_host: &host,
            action: &self.pages.sign_in,
            pending: &prompt.pending.id,
            csrf: &csrf,
            username,
            error,
            for_account: false,
        };
        pages::page(status, &page, &cookies)
    }

    /// Signed in: approve directly when consent is not needed, else show the consent page.
    async fn after_sign_in(
        &self,
        headers: &HeaderMap,
        prompt: AuthorizationPrompt,
        session: &Session,
        mut cookies: Vec<String>,
    ) -> Response {
        let Some(user) = session.user_id() else { return csrf_failure() };
        let decision = match self.server.consent_decision(&prompt, &user).await {
            Ok(d) => d,
            Err(e) => return internal(&e),
        };
        if !decision.ask() {
            return match self.server.consent_skipped(&prompt, &user, session.auth_time, decision).await {
                Ok(location) => with_cookies(redirect(StatusCode::SEE_OTHER, &location), &cookies),
                Err(e) => authorize_error(e),
            };
        }
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf = session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, &prompt.pending.id);
        let host = prompt.pending.redirect_uri.display_host();
        let resource = prompt.pending.resource.to_string();
        let identity = ClientIdentity::of(&prompt.client);
        let scopes = self.server.describe_scopes(&prompt.pending.scopes);
        let page = pages::Consent {
            client_name: prompt.client.display_name(),
            about: pages::About::new(&identity),
            asked_again: decision == ConsentDecision::AskAgain,
            redirect_host: &host,
            resource: &resource,
            scopes: &scopes,
            user_name: &session.name,
            action: &self.pages.consent,
            sign_out: &self.pages.sign_out,
            pending: &prompt.pending.id,
            csrf: &csrf,
        };
        pages::page(StatusCode::OK, &page, &cookies)
    }
}

/// The binding of the account sign-in form's CSRF token (there is no pending request).
const ACCOUNT_SIGN_IN_CSRF: &str = "account sign-in";

/// The binding of the Connected apps forms' CSRF token: the signed-in user, so that a token
/// from one person's page is no good in another's session.
fn apps_csrf_binding(user: &oauth_core::types::UserId) -> String {
    format!("account apps|{user}")
}

/// `GET <issuer path>/account/apps`: the signed-in person's connected apps, or the sign-in form.
async fn account_apps(State(s): AppState, headers: HeaderMap) -> Response {
    match s.session(&headers).await {
        Some(session) => s.apps_page(&headers, &session).await,
        None => s.account_sign_in_page(&headers, "", None),
    }
}

/// `POST <issuer path>/account/sign-in`: the standalone sign-in of the Connected apps page,
/// rate-limited as the sign-in of an authorization request.
async fn account_sign_in(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::SignIn, &peer, &headers) {
        return limited;
    }
    let mut form = match FormFields::parse(&headers, &body, &["csrf", "username", "password"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    if !s.csrf_ok(&headers, ACCOUNT_SIGN_IN_CSRF, &form.take("csrf")) {
        return csrf_failure();
    }
    let username = form.take("username");
    if let Some(blocked) = s.account_page_blocked(&headers, &username).await {
        return blocked;
    }
    let user = match s.authenticator.authenticate(&username, &form.take("password")).await {
        Ok(u) => u,
        Err(e) => return internal(&e),
    };
    s.account_result(&username, user.is_some());
    let Some(user) = user else {
        s.server.record_failed_sign_in(&username, None).await;
        if let Some(blocked) = s.account_page_blocked(&headers, &username).await {
            return blocked;
        }
        return s.account_sign_in_page(&headers, &username, Some("Wrong username or password."));
    };
    let token = match s.server.start_session(&user, s.session_ttl, None).await {
        Ok((token, _)) => token,
        Err(e) => return internal(&e),
    };
    let cookie = s.cookies.set_session(token.secret(), s.session_ttl.as_secs());
    with_cookies(redirect(StatusCode::SEE_OTHER, &s.pages.apps), &[cookie])
}

/// `POST <issuer path>/account/apps/revoke`: revokes the signed-in person's grants to one
/// client and withdraws the remembered consent, then shows the list again.
async fn account_apps_revoke(State(s): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let mut form = match FormFields::parse(&headers, &body, &["client", "csrf"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    let Some(session) = s.session(&headers).await else {
        return s.account_sign_in_page(&headers, "", Some("Your session ended; sign in again."));
    };
    let Some(user) = session.user_id() else { return csrf_failure() };
    if !s.csrf_ok(&headers, &apps_csrf_binding(&user), &form.take("csrf")) {
        return csrf_failure();
    }
    let client = match oauth_core::types::ClientId::parse(&form.take("client")) {
        Ok(c) => c,
        Err(e) => return show_error(&OAuthError::invalid_request(e.to_string())),
    };
    match s.server.revoke_connected_app(&user, &client).await {
        Ok(_) => redirect(StatusCode::SEE_OTHER, &s.pages.apps),
        Err(e) => internal(&e),
    }
}

impl Shared {
    fn account_sign_in_page(&self, headers: &HeaderMap, username: &str, error: Option<&str>) -> Response {
        let mut cookies = Vec::new();
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf = session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, ACCOUNT_SIGN_IN_CSRF);
        let page = pages::SignIn {
            client_name: "",
            redirect_host: "",
            action: &self.pages.account_sign_in,
            pending: "",
            csrf: &csrf,
            username,
            error,
            for_account: true,
        };
        pages::page(StatusCode::OK, &page, &cookies)
    }

    async fn apps_page(&self, headers: &HeaderMap, session: &Session) -> Response {
        let Some(user) = session.user_id() else { return csrf_failure() };
        let apps = match self.server.connected_apps(&user).await {
            Ok(a) => a,
            Err(e) => return internal(&e),
        };
        let mut cookies = Vec::new();
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf =
            session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, &apps_csrf_binding(&user));
        let rows = apps.iter().map(|a| pages::AppRow::new(a, self.server.describe_scopes(&a.scopes))).collect();
        let page =
            pages::Apps { user_name: &session.name, apps: rows, revoke_action: &self.pages.apps_revoke, csrf: &csrf };
        pages::page(StatusCode::OK, &page, &cookies)
    }
}

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

/// Pairs of an `application/x-www-form-urlencoded` body.
fn form_pairs(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded, not '{}'",
            clip(ct)
        )));
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// An API error: RFC 6749 5.2 JSON, `no-store`; `invalid_client` is 401 with
/// `WWW-Authenticate`, which is what makes Claude register again.
fn api_error(e: &Error) -> Response {
    if !matches!(e, Error::OAuth(_)) {
        tracing::error!(error = %e, "internal error answered with server_error");
    }
    let oauth = e.to_oauth();
    let status = StatusCode::from_u16(oauth.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = no_store((status, Json(&oauth)));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth\""));
    }
    resp
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
