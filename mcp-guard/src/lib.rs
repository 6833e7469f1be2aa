#![doc = include_str!("../README.md")]

pub mod cache;
mod context;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod policy;
#[cfg(feature = "remote")]
pub mod remote;
pub mod session;
mod verifier;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use oauth_core::UnixTime;
use oauth_core::access::AccessEvent;
use oauth_core::challenge::BearerChallenge;
use oauth_core::events::{EventBudget, FlowStep, Reason};
use oauth_core::metadata::{ProtectedResourceMetadata, well_known_path, well_known_url};
use oauth_core::types::{ResourceUri, ScopeSet};
use tower::{Layer, Service};
use tower_http::cors::{Any, CorsLayer};

pub use crate::cache::{CacheStats, TokenCache, TokenCacheConfig};
pub use crate::context::{AuthContext, Caller, Rejection};
pub use crate::policy::ScopePolicy;
use crate::policy::TargetError;
pub use crate::session::SessionLimits;
use crate::session::{Lookup, Owner, Route, SESSION_HEADER, Sessions};
pub use crate::verifier::{LocalVerifier, TokenVerifier};

/// Largest JSON-RPC body the guard reads to find the methods and tools it calls, when the
/// policy needs them (rmcp's own default bound is the same).
pub const MAX_INSPECTED_BODY: usize = 4 * 1024 * 1024;

/// The guard's configuration: a [`tower::Layer`] producing [`McpGuard`].
#[derive(Debug, Clone)]
#[must_use]
pub struct McpGuardLayer {
    config: Arc<GuardConfig>,
}

/// What the guard was told, and (behind its own `Arc`) what it has seen since. A setter on a
/// shared layer copies the configuration and keeps the state: a clone configured further still
/// sees the sessions the original bound.
#[derive(Debug, Clone)]
struct GuardConfig {
    verifier: Arc<dyn TokenVerifier>,
    resource_metadata: String,
    challenge_scope: Option<String>,
    policy: ScopePolicy,
    machine_clients: bool,
    forward_authorization: bool,
    state: Arc<GuardState>,
}

/// The guard's runtime state, shared by every clone of the layer and of its services.
#[derive(Debug)]
struct GuardState {
    sessions: Sessions,
    seen: Mutex<HashSet<String>>,
    /// Refused requests are stored within this budget (and always logged), so that a flood of
    /// forged tokens cannot fill the event store.
    refusals: EventBudget,
}

impl GuardState {
    fn new(limits: SessionLimits) -> Self {
        Self { sessions: Sessions::new(limits), seen: Mutex::new(HashSet::new()), refusals: EventBudget::default() }
    }
}

/// How many token ids the guard remembers to record only the first accepted call of each.
const SEEN_CAPACITY: usize = 10_000;

impl McpGuardLayer {
    /// A guard for `resource`, checking tokens with `verifier`. The `resource_metadata` URL in
    /// challenges is the path-inserted RFC 9728 URL of `resource`.
    pub fn new(verifier: Arc<dyn TokenVerifier>, resource: &ResourceUri) -> Self {
        Self {
            config: Arc::new(GuardConfig {
                verifier,
                resource_metadata: well_known_url("oauth-protected-resource", resource.as_str()),
                challenge_scope: None,
                policy: ScopePolicy::default(),
                machine_clients: false,
                forward_authorization: false,
                state: Arc::new(GuardState::new(SessionLimits::default())),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut GuardConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Scopes every request needs. Default: none. They are also what the 401 challenge's
    /// `scope` asks for, unless [`Self::with_challenge_scope`] says otherwise.
    pub fn with_required_scopes(self, scopes: ScopeSet) -> Self {
        self.edit(|c| c.policy.required = scopes)
    }

    /// Scopes needed for one JSON-RPC method (`tools/list`, `resources/read`, …), in addition
    /// to the required ones.
    pub fn with_method_scopes(self, method: impl Into<String>, scopes: ScopeSet) -> Self {
        let method = method.into();
        self.edit(|c| {
            c.policy.per_method.insert(method, scopes);
        })
    }

    /// Scopes needed to call one tool (`tools/call` with this `name`), in addition to the
    /// required ones.
    pub fn with_tool_scopes(self, tool: impl Into<String>, scopes: ScopeSet) -> Self {
        let tool = tool.into();
        self.edit(|c| {
            c.policy.per_tool.insert(tool, scopes);
        })
    }

    /// The `scope` of the 401 challenge, which clients request at authorization. Default: the
    /// required scopes.
    pub fn with_challenge_scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.edit(|c| c.challenge_scope = Some(scope))
    }

    /// Accepts tokens of machine clients (`client_credentials`, created by the operator with
    /// `clients add --machine`), which have no person behind them. Default: refused with 401
    /// `invalid_token`, so that a tool written for people never runs for a machine. Tool
    /// handlers tell the two apart with [`AuthContext::caller`].
    pub fn with_machine_clients(self, accept: bool) -> Self {
        self.edit(|c| c.machine_clients = accept)
    }

    /// The URL sent as `resource_metadata` in challenges. Default: the path-inserted RFC 9728
    /// URL of the resource.
    pub fn with_resource_metadata_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.edit(|c| c.resource_metadata = url)
    }

    /// Bounds on the MCP sessions of one caller and in all, and their idle timeout. Default:
    /// [`SessionLimits::default`] (16 per caller, 10 000 in all, 10 minutes); see
    /// [`session`] for what the guard does with them. Set before the layer serves: the
    /// guard then starts a new session table under these bounds (and its other runtime state
    /// afresh), shared from there on by every clone.
    pub fn with_session_limits(self, limits: SessionLimits) -> Self {
        self.edit(|c| c.state = Arc::new(GuardState::new(limits)))
    }

    /// Hands the client's `Authorization` header on to the inner service. Default: `false`,
    /// the header is removed once the token is checked, and tool handlers read the caller from
    /// the [`AuthContext`] instead.
    ///
    /// **Risk**: a handler that sees the token can replay it, log it, or pass it on to another
    /// service (token passthrough, which the MCP security best practices forbid): anyone who
    /// reads the handler's logs or controls a service it calls can then act as the user here.
    pub fn dangerous_forward_authorization(self, forward: bool) -> Self {
        self.edit(|c| c.forward_authorization = forward)
    }
}

impl<S> Layer<S> for McpGuardLayer {
    type Service = McpGuard<S>;

    fn layer(&self, inner: S) -> McpGuard<S> {
        McpGuard { inner, config: self.config.clone() }
    }
}

/// The guard service: see [`McpGuardLayer`].
#[derive(Debug, Clone)]
pub struct McpGuard<S> {
    inner: S,
    config: Arc<GuardConfig>,
}

impl<S> McpGuard<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The guard's response future.
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, ResBody> Service<Request<Body>> for McpGuard<S>
where
    S: Service<Request<Body>, Response = axum::http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone was not driven to readiness; the ready one handles this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // Another clone ends evicted sessions, after its own readiness.
        let closer = self.inner.clone();
        let config = self.config.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let checked = config.check(req).await;
                close_sessions(&closer, config.state.sessions.take_evicted());
                let admitted = match checked {
                    Ok(a) => a,
                    Err(resp) => return Ok(*resp),
                };
                // A POST without a session may open one (`initialize`): it runs to completion
                // even if the client goes away, so that the session it opens is always bound
                // and counted against the bounds.
                let opens = admitted.session.is_none() && admitted.req.method() == Method::POST;
                let served = config.clone().serve(inner, admitted, closer);
                if opens {
                    match tokio::spawn(served).await {
                        Ok(r) => r,
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                } else {
                    served.await
                }
            }),
        }
    }
}

/// A request the guard lets through, with what its response needs.
struct Admitted {
    req: Request<Body>,
    /// Who the caller is; `None` for what passes unchecked (preflights).
    owner: Option<Owner>,
    /// The caller's own session the request carries.
    session: Option<Box<str>>,
}

/// Ends `evicted` sessions in the inner service, each with a `DELETE` of its own.
fn close_sessions<S, ResBody>(service: &S, evicted: Vec<session::Evicted>)
where
    S: Service<Request<Body>, Response = axum::http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    for e in evicted {
        let Some(req) = e.delete_request() else { continue };
        let mut service = service.clone();
        tokio::spawn(async move {
            if std::future::poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
                tracing::warn!("the MCP service was not ready to end an evicted session");
                return;
            }
            match service.call(req).await {
                Ok(r) if r.status().is_success() => tracing::debug!("ended an evicted MCP session"),
                Ok(r) => tracing::warn!(status = %r.status(), "the MCP service refused to end an evicted session"),
                Err(_) => tracing::warn!("the MCP service failed to end an evicted session"),
            }
        });
    }
}

impl GuardConfig {
    /// Calls the inner service and binds the session its response opens, or forgets the one it
    /// ended.
    async fn serve<S, ResBody>(
        self: Arc<Self>,
        mut inner: S,
        admitted: Admitted,
        closer: S,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = axum::http::Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ResBody: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
        ResBody::Error: Into<axum::BoxError>,
    {
        let Admitted { req, owner, session } = admitted;
        let route = Route::of(&req);
        let deleting = req.method() == Method::DELETE;
        let resp = inner.call(req).await?;
        let status = resp.status();
        match &session {
            Some(id) if status == StatusCode::NOT_FOUND || (deleting && status.is_success()) => {
                self.state.sessions.forget(id);
            }
            _ if status.is_success() => {
                let returned = resp.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok());
                if let Some(new) = returned
                    && let Some(owner) = owner
                    && session.as_deref() != Some(new)
                {
                    self.state.sessions.bind(new, owner, route, self.verifier.now().as_secs());
                    close_sessions(&closer, self.state.sessions.take_evicted());
                }
            }
            _ => {}
        }
        Ok(resp.map(Body::new))
    }

    /// The request, authenticated and with its [`AuthContext`], or the rejection to send.
    async fn check(&self, req: Request<Body>) -> Result<Admitted, Box<Response>> {
        if req.method() == Method::OPTIONS {
            return Ok(Admitted { req, owner: None, session: None });
        }
        let Some(token) = bearer_token(&req) else {
            tracing::debug!(path = %req.uri().path(), "MCP request without a bearer token: 401 challenge");
            let description = "this MCP server requires an OAuth access token";
            return Err(Box::new(self.challenge(StatusCode::UNAUTHORIZED, None, description)));
        };
        let ctx = self.authenticate(&token).await?;
        let owner = session::owner_of(&ctx);
        let session = self.session_of(req.headers(), &ctx, &owner).await?;
        let (target, mut req) = match policy::target(req, self.policy.needs_target()).await {
            Ok(t) => t,
            Err(e) => {
                let status = match e {
                    TargetError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    TargetError::Malformed(_) | TargetError::HeaderMismatch(_) => StatusCode::BAD_REQUEST,
                };
                let description = e.description();
                self.refuse(&ctx, Reason::InvalidRequest, format!("MCP request refused: {description}")).await;
                return Err(Box::new(json_error(status, "invalid_request", &description)));
            }
        };
        let needed = self.policy.scopes_for(&target);
        if !needed.difference(&ctx.scopes).is_empty() {
            let detail = format!("{} needs scope '{needed}', the token has '{}'", target.describe(), ctx.scopes);
            self.refuse(&ctx, Reason::InsufficientScope, detail.clone()).await;
            return Err(Box::new(self.insufficient_scope(&needed, &detail)));
        }
        if self.first_sighting(&ctx.token_id) {
            let event = AccessEvent::first_call(self.verifier.now(), &ctx.client_id, &ctx.subject, &target.describe());
            self.verifier.record(event).await;
        }
        if !self.forward_authorization {
            req.headers_mut().remove(header::AUTHORIZATION);
        }
        req.extensions_mut().insert(ctx);
        Ok(Admitted { req, owner: Some(owner), session })
    }

    /// The caller `token` names, or the challenge: refused by the verifier, or a machine's
    /// where only people are served.
    async fn authenticate(&self, token: &str) -> Result<AuthContext, Box<Response>> {
        let ctx = match self.verifier.verify(token).await {
            Ok(ctx) => ctx,
            Err(rejection) => return Err(Box::new(self.refused_token(token, &rejection).await)),
        };
        if ctx.is_machine() && !self.machine_clients {
            let detail = format!("machine client {} presented a client_credentials token", ctx.client_id);
            self.refuse(&ctx, Reason::MachineTokenRefused, detail).await;
            let description = "this MCP server accepts only tokens of signed-in users, not of machine clients";
            return Err(Box::new(self.challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"), description)));
        }
        Ok(ctx)
    }

    /// Records a token the verifier refused (within the refusal budget: anyone can forge
    /// one) and answers: 401 `invalid_token`, or 503 when the token could not be checked.
    async fn refused_token(&self, token: &str, rejection: &Rejection) -> Response {
        let event = AccessEvent::token_refused(self.verifier.now(), token, rejection.reason, &rejection.description);
        let claimed = event.event().client_id.as_ref().map(|c| c.as_str()).unwrap_or_default();
        if self.store_refusal(rejection.reason, claimed, event.event().at) {
            self.verifier.record(event).await;
        } else {
            event.event().trace();
        }
        if rejection.reason == Reason::Internal {
            // The token could not be checked (the authorization server is unreachable): a 401
            // would make the client throw its tokens away and sign in again.
            let mut resp =
                json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", &rejection.description);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return resp;
        }
        self.challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"), &rejection.description)
    }

    /// The session the request carries, if any, when it is the caller's; else the 404 that
    /// Streamable HTTP answers for an unknown session, the same whether the session exists for
    /// someone else or not at all.
    async fn session_of(
        &self,
        headers: &axum::http::HeaderMap,
        ctx: &AuthContext,
        owner: &Owner,
    ) -> Result<Option<Box<str>>, Box<Response>> {
        let mut values = headers.get_all(SESSION_HEADER).iter();
        let Some(first) = values.next() else { return Ok(None) };
        let Some(id) = first.to_str().ok().filter(|_| values.next().is_none()) else {
            let description = "a request carries at most one Mcp-Session-Id header, of visible ASCII";
            self.refuse(ctx, Reason::InvalidRequest, format!("MCP request refused: {description}")).await;
            return Err(Box::new(json_error(StatusCode::BAD_REQUEST, "invalid_request", description)));
        };
        let (reason, detail) = match self.state.sessions.lookup(id, owner, self.verifier.now().as_secs()) {
            Lookup::Yours => return Ok(Some(id.into())),
            Lookup::NotYours(creator) => (
                Reason::SessionNotYours,
                format!(
                    "a request carried the MCP session of {}, with a token of {}: refused",
                    creator.describe(),
                    owner.describe()
                ),
            ),
            Lookup::Unknown => (
                Reason::SessionUnknown,
                format!(
                    "a request carried an MCP session the guard does not know (ended after {} s unused, replaced by newer sessions of the same caller, or opened before a restart)",
                    self.state.sessions.limits().idle_timeout.as_secs()
                ),
            ),
        };
        self.refuse(ctx, reason, detail).await;
        Err(Box::new(json_error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "this MCP session does not exist (or has ended): send initialize to start a new one",
        )))
    }

    /// Records a refusal of an authenticated caller's request; stored at most once per reason
    /// and client per interval (as refused tokens are), logged always.
    async fn refuse(&self, ctx: &AuthContext, reason: Reason, detail: String) {
        let event = AccessEvent::refused(self.verifier.now(), &ctx.client_id, &ctx.subject, reason, detail);
        if self.store_refusal(reason, ctx.client_id.as_str(), event.event().at) {
            self.verifier.record(event).await;
        } else {
            event.event().trace();
        }
    }

    /// Whether a refusal for `reason` of a token claiming `client` is stored now, or only
    /// logged because one like it was stored within the budget's interval.
    fn store_refusal(&self, reason: Reason, client: &str, at: UnixTime) -> bool {
        self.state.refusals.admit(FlowStep::ResourceAccess, reason, client, at)
    }

    fn first_sighting(&self, token_id: &str) -> bool {
        let mut seen = self.state.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SEEN_CAPACITY {
            seen.clear();
        }
        seen.insert(token_id.to_owned())
    }

    fn challenge(&self, status: StatusCode, error: Option<&'static str>, description: &str) -> Response {
        let scope = self.challenge_scope.clone().unwrap_or_else(|| self.policy.required.to_string());
        let mut challenge = BearerChallenge::new(self.resource_metadata.as_str()).scope(scope);
        if let Some(e) = error {
            challenge = challenge.error(e, description);
        }
        with_challenge(json_error(status, error.unwrap_or("unauthorized"), description), &challenge)
    }

    fn insufficient_scope(&self, needed: &ScopeSet, description: &str) -> Response {
        let challenge = BearerChallenge::new(self.resource_metadata.as_str())
            .error(oauth_core::challenge::INSUFFICIENT_SCOPE, description)
            .scope(needed.to_string());
        with_challenge(json_error(StatusCode::FORBIDDEN, "insufficient_scope", description), &challenge)
    }
}

/// `resp` with `challenge` as its `WWW-Authenticate` header.
fn with_challenge(mut resp: Response, challenge: &BearerChallenge) -> Response {
    if let Ok(v) = HeaderValue::from_str(&challenge.to_string()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The bearer token of the `Authorization` header (RFC 6750 2.1), if any.
fn bearer_token<B>(req: &Request<B>) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    oauth_core::challenge::bearer_token(value).map(str::to_owned)
}

fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp =
        (status, Json(serde_json::json!({ "error": error, "error_description": description }))).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A router serving RFC 9728 metadata at `/.well-known/oauth-protected-resource/<path>` and at
/// `/.well-known/oauth-protected-resource`, with CORS for browser clients.
pub fn protected_resource_router<S: Clone + Send + Sync + 'static>(metadata: ProtectedResourceMetadata) -> Router<S> {
    let path = well_known_path("oauth-protected-resource", &metadata.resource);
    let metadata = Arc::new(metadata);
    let handler = move || {
        let metadata = metadata.clone();
        async move {
            let mut r = Json(metadata.as_ref().clone()).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r
        }
    };
    let mut router = Router::new().route("/.well-known/oauth-protected-resource", get(handler.clone()));
    if path != "/.well-known/oauth-protected-resource" {
        router = router.route(&path, get(handler));
    }
    router.layer(
        CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("mcp-protocol-version"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// A CORS layer for the MCP endpoint itself: any origin, the MCP headers allowed, and
/// `WWW-Authenticate` and `Mcp-Session-Id` exposed so browser clients can read the challenge.
/// Put it outside the guard so that preflights are answered before the token check.
pub fn mcp_cors_layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("mcp-protocol-version"),
            header::HeaderName::from_static("mcp-session-id"),
            header::HeaderName::from_static("mcp-method"),
            header::HeaderName::from_static("mcp-name"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE, header::HeaderName::from_static("mcp-session-id")])
        .max_age(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoTokens;

    #[async_trait::async_trait]
    impl TokenVerifier for NoTokens {
        async fn verify(&self, _: &str) -> Result<AuthContext, Rejection> {
            Err(Rejection::new(Reason::TokenMalformed, "no tokens here"))
        }
    }

    #[test]
    fn configuring_a_shared_layer_keeps_its_runtime_state() {
        let resource = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
        let layer = McpGuardLayer::new(Arc::new(NoTokens), &resource);
        let configured = layer.clone().with_challenge_scope("mcp:tools").with_machine_clients(true);
        // Another configuration, the same sessions, sightings and refusal budget.
        assert!(!Arc::ptr_eq(&layer.config, &configured.config));
        assert!(Arc::ptr_eq(&layer.config.state, &configured.config.state));
        assert_eq!(configured.config.challenge_scope.as_deref(), Some("mcp:tools"));
        assert!(layer.config.challenge_scope.is_none(), "the original keeps its own configuration");
        // New bounds are a new session table, on purpose.
        let bounded = configured.clone().with_session_limits(SessionLimits::default().with_per_caller(2));
        assert!(!Arc::ptr_eq(&configured.config.state, &bounded.config.state));
    }
}
