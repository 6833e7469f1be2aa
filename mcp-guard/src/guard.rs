//! The checks in front of the inner service: what the guard was told ([`GuardConfig`]), what
//! it has seen since ([`GuardState`]), and the decision for one request ([`Guard::check`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use oauth_core::AccessEvent;
use oauth_core::BearerChallenge;
use oauth_core::ScopeSet;
use oauth_core::UnixTime;
use oauth_core::{EventBudget, FlowStep, Reason};
use tower::BoxError;

use crate::context::{AuthContext, Rejection};
use crate::policy::{self, ScopePolicy, TargetError};
use crate::response::{Refusal, json_error, unavailable, with_challenge};
use crate::session::{self, Lookup, Owner, SESSION_HEADER, SessionLimits, Sessions};
use crate::verifier::TokenVerifier;

/// How many token ids the guard remembers to record only the first accepted call of each.
const SEEN_CAPACITY: usize = 10_000;

/// What the guard was told: settings only, copied when a shared layer is configured further.
#[derive(Debug, Clone)]
pub(crate) struct GuardConfig {
    pub(crate) verifier: Arc<dyn TokenVerifier>,
    pub(crate) resource_metadata: String,
    pub(crate) challenge_scope: Option<String>,
    pub(crate) policy: ScopePolicy,
    pub(crate) machine_clients: bool,
    pub(crate) forward_authorization: bool,
}

/// What the guard has seen: shared by every clone of the layer and of its services.
#[derive(Debug)]
pub(crate) struct GuardState {
    pub(crate) sessions: Sessions,
    seen: Mutex<HashSet<String>>,
    /// Refused requests are stored within this budget (and always logged), so that a flood of
    /// forged tokens cannot fill the event store.
    refusals: EventBudget,
}

impl GuardState {
    pub(crate) fn new(limits: SessionLimits) -> Self {
        Self { sessions: Sessions::new(limits), seen: Mutex::new(HashSet::new()), refusals: EventBudget::default() }
    }
}

/// The configuration and the state, each behind its own `Arc`.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) config: Arc<GuardConfig>,
    pub(crate) state: Arc<GuardState>,
}

/// A request the guard lets through, with what its response needs.
pub(crate) struct Admitted<B> {
    pub(crate) req: Request<B>,
    /// Who the caller is; `None` for what passes unchecked (preflights).
    pub(crate) owner: Option<Owner>,
    /// The caller's own session the request carries.
    pub(crate) session: Option<Box<str>>,
}

/// Most of a refused request's body read before the refusal is sent.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Longest a refusal waits for that body.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and discards a refused request's body, within [`DRAIN_LIMIT`] and [`DRAIN_TIME`]. The
/// HTTP/1 server keeps a connection open only once the request body was read: refused unread,
/// the connection closes just as the client sends its next request on it (the discovery that
/// follows a 401), and that request fails with "server disconnected". A larger or slower body
/// still closes the connection, as before.
async fn drain<B>(body: B)
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    let limited = http_body_util::Limited::new(body, DRAIN_LIMIT);
    let _ = tokio::time::timeout(DRAIN_TIME, http_body_util::BodyExt::collect(limited)).await;
}

impl Guard {
    /// The request, authenticated and with its [`AuthContext`], or the refusal to send.
    pub(crate) async fn check<B>(&self, req: Request<B>) -> Result<Admitted<B>, Refusal>
    where
        B: http_body::Body<Data = Bytes> + From<Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        if req.method() == Method::OPTIONS {
            return Ok(Admitted { req, owner: None, session: None });
        }
        let Some(token) = bearer_token(req.headers()) else {
            tracing::debug!(path = %req.uri().path(), "MCP request without a bearer token: 401 challenge");
            let description = "this MCP server requires an OAuth access token";
            drain(req.into_body()).await;
            return Err(self.challenge(StatusCode::UNAUTHORIZED, None, description));
        };
        let ctx = match self.authenticate(&token).await {
            Ok(ctx) => ctx,
            Err(refusal) => {
                drain(req.into_body()).await;
                return Err(refusal);
            }
        };
        let owner = session::owner_of(&ctx);
        let session = match self.session_of(req.headers(), &ctx, &owner).await {
            Ok(s) => s,
            Err(refusal) => {
                drain(req.into_body()).await;
                return Err(refusal);
            }
        };
        let config = &self.config;
        let (target, mut req) = match policy::target(req, config.policy.needs_target()).await {
            Ok(t) => t,
            Err(e) => {
                let status = match e {
                    TargetError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    TargetError::Malformed(_) | TargetError::HeaderMismatch(_) => StatusCode::BAD_REQUEST,
                };
                let description = e.description();
                self.refuse(&ctx, Reason::InvalidRequest, format!("MCP request refused: {description}")).await;
                return Err(json_error(status, "invalid_request", &description));
            }
        };
        let needed = config.policy.scopes_for(&target);
        if !needed.difference(&config.policy.holds(&ctx.scopes)).is_empty() {
            // The challenge names every scope the operation needs, not only the missing ones
            // and not the token's (RFC 6750 3.1, MCP 2026-07-28): clients add it to theirs.
            let detail = format!("{} needs scope '{needed}', the token has '{}'", target.describe(), ctx.scopes);
            self.refuse(&ctx, Reason::InsufficientScope, detail.clone()).await;
            return Err(self.insufficient_scope(&needed, &detail));
        }
        if self.first_sighting(&ctx.token_id) {
            let event = AccessEvent::first_call(self.now(), &ctx.client_id, &ctx.subject, &target.describe());
            config.verifier.record(event).await;
        }
        if !config.forward_authorization {
            req.headers_mut().remove(header::AUTHORIZATION);
        }
        req.extensions_mut().insert(ctx);
        Ok(Admitted { req, owner: Some(owner), session })
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.config.verifier.now()
    }

    /// The caller `token` names, or the challenge: refused by the verifier, or a machine's
    /// where only people are served.
    async fn authenticate(&self, token: &str) -> Result<AuthContext, Refusal> {
        let ctx = match self.config.verifier.verify(token).await {
            Ok(ctx) => ctx,
            Err(rejection) => return Err(self.refused_token(token, &rejection).await),
        };
        if ctx.is_machine() && !self.config.machine_clients {
            let detail = format!("machine client {} presented a client_credentials token", ctx.client_id);
            self.refuse(&ctx, Reason::MachineTokenRefused, detail).await;
            let description = "this MCP server accepts only tokens of signed-in users, not of machine clients";
            return Err(self.challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"), description));
        }
        Ok(ctx)
    }

    /// Records a token the verifier refused (within the refusal budget: anyone can forge
    /// one) and answers: 401 `invalid_token`, or 503 when the token could not be checked.
    async fn refused_token(&self, token: &str, rejection: &Rejection) -> Refusal {
        let event = AccessEvent::token_refused(self.now(), token, rejection.reason, &rejection.description);
        let claimed = event.event().client_id.as_ref().map(|c| c.as_str()).unwrap_or_default();
        if self.store_refusal(rejection.reason, claimed, event.event().at) {
            self.config.verifier.record(event).await;
        } else {
            event.event().trace();
        }
        if rejection.reason == Reason::Internal {
            // The token could not be checked (the authorization server is unreachable): a 401
            // would make the client throw its tokens away and sign in again.
            return unavailable(&rejection.description);
        }
        self.challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"), &rejection.description)
    }

    /// The session the request carries, if any, when it is the caller's; else the 404 that
    /// Streamable HTTP answers for an unknown session, the same whether the session exists for
    /// someone else or not at all.
    async fn session_of(
        &self,
        headers: &HeaderMap,
        ctx: &AuthContext,
        owner: &Owner,
    ) -> Result<Option<Box<str>>, Refusal> {
        let mut values = headers.get_all(SESSION_HEADER).iter();
        let Some(first) = values.next() else { return Ok(None) };
        let Some(id) = first.to_str().ok().filter(|_| values.next().is_none()) else {
            let description = "a request carries at most one Mcp-Session-Id header, of visible ASCII";
            self.refuse(ctx, Reason::InvalidRequest, format!("MCP request refused: {description}")).await;
            return Err(json_error(StatusCode::BAD_REQUEST, "invalid_request", description));
        };
        let sessions = &self.state.sessions;
        let (reason, detail) = match sessions.lookup(id, owner, self.now().as_secs()) {
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
                    sessions.limits().idle_timeout.as_secs()
                ),
            ),
        };
        self.refuse(ctx, reason, detail).await;
        Err(json_error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "this MCP session does not exist (or has ended): send initialize to start a new one",
        ))
    }

    /// Records a refusal of an authenticated caller's request; stored at most once per reason
    /// and client per interval (as refused tokens are), logged always.
    async fn refuse(&self, ctx: &AuthContext, reason: Reason, detail: String) {
        let event = AccessEvent::refused(self.now(), &ctx.client_id, &ctx.subject, reason, detail);
        if self.store_refusal(reason, ctx.client_id.as_str(), event.event().at) {
            self.config.verifier.record(event).await;
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

    fn challenge(&self, status: StatusCode, error: Option<&'static str>, description: &str) -> Refusal {
        let config = &self.config;
        let scope = config.challenge_scope.clone().unwrap_or_else(|| config.policy.required.to_string());
        let mut challenge = BearerChallenge::new(config.resource_metadata.as_str()).scope(scope);
        if let Some(e) = error {
            challenge = challenge.error(e, description);
        }
        with_challenge(json_error(status, error.unwrap_or("unauthorized"), description), &challenge)
    }

    fn insufficient_scope(&self, needed: &ScopeSet, description: &str) -> Refusal {
        let challenge = BearerChallenge::new(self.config.resource_metadata.as_str())
            .error(oauth_core::INSUFFICIENT_SCOPE, description)
            .scope(needed.to_string());
        with_challenge(json_error(StatusCode::FORBIDDEN, "insufficient_scope", description), &challenge)
    }
}

/// The bearer token of the `Authorization` header (RFC 6750 2.1), if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    oauth_core::bearer_token(value).map(str::to_owned)
}
