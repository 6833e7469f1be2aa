//! The guard's configuration, as a [`tower::Layer`].

use std::sync::Arc;

use oauth_core::well_known_url;
use oauth_core::{ResourceUri, ScopeSet};
use tower::Layer;

use crate::guard::{Guard, GuardConfig, GuardState};
use crate::policy::ScopePolicy;
use crate::service::McpGuard;
use crate::session::SessionLimits;
use crate::verifier::TokenVerifier;

/// The guard's configuration: a [`tower::Layer`] producing [`McpGuard`].
///
/// Every service the layer makes, and every clone of them, shares one runtime state (the
/// sessions bound to their callers, the calls already recorded, the budget for refusals); a
/// setter called on a clone of the layer copies the configuration and keeps that state.
#[derive(Debug, Clone)]
#[must_use]
pub struct McpGuardLayer {
    guard: Guard,
}

impl McpGuardLayer {
    /// A guard for `resource`, checking tokens with `verifier`. The `resource_metadata` URL in
    /// challenges is the path-inserted RFC 9728 URL of `resource`.
    pub fn new(verifier: Arc<dyn TokenVerifier>, resource: &ResourceUri) -> Self {
        let config = GuardConfig {
            verifier,
            resource_metadata: well_known_url("oauth-protected-resource", resource.as_str()),
            challenge_scope: None,
            policy: ScopePolicy::default(),
            machine_clients: false,
            forward_authorization: false,
        };
        let state = GuardState::new(SessionLimits::default());
        Self { guard: Guard { config: Arc::new(config), state: Arc::new(state) } }
    }

    fn edit(mut self, f: impl FnOnce(&mut GuardConfig)) -> Self {
        f(Arc::make_mut(&mut self.guard.config));
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

    /// A scope hierarchy: a token with `scope` also holds `implies` (and what those imply),
    /// for every scope requirement of this guard. For example `notes:admin` implying
    /// `notes:write`, which implies `notes:read`. Tool handlers that check scopes themselves
    /// see the token's own scopes in [`crate::AuthContext::scopes`]; use
    /// [`ScopePolicy::holds`] there for the same answer.
    pub fn with_implied_scopes(self, scope: impl Into<String>, implies: ScopeSet) -> Self {
        let scope = scope.into();
        self.edit(|c| {
            c.policy.implied.insert(scope, implies);
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
    /// handlers tell the two apart with [`AuthContext::caller`](crate::AuthContext::caller).
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
    /// [`session`](crate::session) for what the guard does with them. Set before the layer
    /// serves: the guard then starts a new session table under these bounds (and its other
    /// runtime state afresh), shared from there on by every clone.
    pub fn with_session_limits(mut self, limits: SessionLimits) -> Self {
        self.guard.state = Arc::new(GuardState::new(limits));
        self
    }

    /// Hands the client's `Authorization` header on to the inner service. Default: `false`,
    /// the header is removed once the token is checked, and tool handlers read the caller from
    /// the [`AuthContext`](crate::AuthContext) instead.
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
        McpGuard::new(inner, self.guard.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthContext, Rejection};
    use oauth_core::Reason;

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
        assert!(!Arc::ptr_eq(&layer.guard.config, &configured.guard.config));
        assert!(Arc::ptr_eq(&layer.guard.state, &configured.guard.state));
        assert_eq!(configured.guard.config.challenge_scope.as_deref(), Some("mcp:tools"));
        assert!(layer.guard.config.challenge_scope.is_none(), "the original keeps its own configuration");
        // New bounds are a new session table, on purpose.
        let bounded = configured.clone().with_session_limits(SessionLimits::default().with_per_caller(2));
        assert!(!Arc::ptr_eq(&configured.guard.state, &bounded.guard.state));
        // The services of one layer share its state.
        let (a, b) = (bounded.layer(()), bounded.layer(()));
        assert!(Arc::ptr_eq(&a.guard().state, &b.guard().state));
    }
}
