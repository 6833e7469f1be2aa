//! What the guard hands on: the caller of an admitted request ([`AuthContext`]), and why a
//! token was refused ([`Rejection`]). A leaf module but for the upstream handle: the cache,
//! the verifiers and the layer all use these types.

use std::sync::Arc;

use oauth_core::Reason;
use oauth_core::UnixTime;
use oauth_core::{ClientId, GrantId, ScopeSet, UserId};

use crate::upstream::UpstreamToken;

/// Who is calling: put into the request extensions for tool handlers.
///
/// A person, or a machine client the operator created (a `client_credentials` token), which
/// the guard lets through only where the resource accepts machine clients. Ask
/// [`Self::caller`] (or [`Self::user`]) rather than reading [`Self::subject`] as a user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthContext {
    /// The token's `sub`: the user, or `client:<client_id>` for a machine client, a namespace
    /// no user id can have ([`UserId::is_user`]).
    pub subject: UserId,
    /// The client the token was issued to.
    pub client_id: ClientId,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// When the token expires.
    pub expires_at: UnixTime,
    /// The token's issuer.
    pub issuer: Arc<str>,
    /// The token's unique id (`jti`).
    pub token_id: Arc<str>,
    /// The grant the token belongs to (`gid`), when the issuer says: what
    /// [`TokenCache::invalidate_grant`](crate::TokenCache::invalidate_grant) matches on.
    pub grant_id: Option<GrantId>,
    /// The grant's upstream tokens, when the embedded server keeps them: [`Self::upstream`].
    pub(crate) upstream: Option<UpstreamToken>,
}

impl AuthContext {
    /// A context from verified values.
    pub fn new(
        subject: UserId,
        client_id: ClientId,
        scopes: ScopeSet,
        expires_at: UnixTime,
        issuer: impl Into<Arc<str>>,
        token_id: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            subject,
            client_id,
            scopes,
            expires_at,
            issuer: issuer.into(),
            token_id: token_id.into(),
            grant_id: None,
            upstream: None,
        }
    }

    /// Sets the grant the token belongs to.
    #[must_use]
    pub fn with_grant_id(mut self, grant_id: GrantId) -> Self {
        self.grant_id = Some(grant_id);
        self
    }

    /// Whether the token has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Who is calling: a person, or a machine client with no person behind it.
    pub fn caller(&self) -> Caller<'_> {
        if self.subject.is_user() { Caller::User(&self.subject) } else { Caller::Machine(&self.client_id) }
    }

    /// The signed-in person, or `None` for a machine client.
    pub fn user(&self) -> Option<&UserId> {
        self.subject.is_user().then_some(&self.subject)
    }

    /// Whether a machine client is calling.
    pub fn is_machine(&self) -> bool {
        !self.subject.is_user()
    }

    /// The person's tokens at the upstream provider they signed in with, for a tool that
    /// calls the provider's APIs for them: present for a person's token when the embedded
    /// authorization server keeps upstream tokens (its vault is configured), `None` for a
    /// machine client and for tokens of an external authorization server. Never forward the
    /// client's own token instead.
    pub fn upstream(&self) -> Option<&UpstreamToken> {
        self.upstream.as_ref()
    }
}

/// Who is behind a request: see [`AuthContext::caller`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A person who signed in and approved the client.
    User(&'a UserId),
    /// A machine client the operator created, calling on its own behalf.
    Machine(&'a ClientId),
}

/// Why a token was refused: a flow-event reason and a description for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The stable reason.
    pub reason: Reason,
    /// What failed, sent as `error_description`. Never a secret.
    pub description: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(reason: Reason, description: impl Into<String>) -> Self {
        Self { reason, description: description.into() }
    }
}
