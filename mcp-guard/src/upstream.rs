//! The person's upstream token, for tool handlers: [`UpstreamToken`], on the caller's
//! [`AuthContext`](crate::AuthContext) when the embedded authorization server keeps upstream
//! tokens (its vault is configured).
//!
//! A tool that calls the provider's APIs for the person asks the handle, never the request:
//! the client's own token is for this server only, and forwarding it (token passthrough) is
//! what the MCP security practices forbid. The handle answers with the provider's token of
//! this request's grant, refreshed when due (once across replicas), or exchanged (RFC 8693)
//! for a token of another API at the same provider.

use std::fmt;
use std::sync::Arc;

use oauth_core::upstream::{ExchangeTarget, ExchangedToken, UpstreamAccess, UpstreamError};
use oauth_core::{AuthorizationServer, ClientId, GrantId, Reason};

/// The upstream tokens of one grant, as the vault keeps them: see the [module](self).
///
/// Present on [`AuthContext::upstream`](crate::AuthContext::upstream) for a person's token of
/// a server with a vault, whether or not that person signed in upstream: [`Self::access`]
/// then says [`UpstreamTokenError::NotSignedInUpstream`]. A machine client never has one.
#[derive(Clone)]
pub struct UpstreamToken {
    server: Arc<AuthorizationServer>,
    grant: GrantId,
    client: ClientId,
}

impl UpstreamToken {
    pub(crate) fn new(server: Arc<AuthorizationServer>, grant: GrantId, client: ClientId) -> Self {
        Self { server, grant, client }
    }

    /// The grant whose tokens these are.
    pub fn grant(&self) -> &GrantId {
        &self.grant
    }

    /// The provider's current access token for this grant: the one in the vault, or a new one
    /// when it is within a minute of expiring (one refresh across replicas; an upstream
    /// `invalid_grant` ends this grant too, so the client signs in again).
    pub async fn access(&self) -> Result<UpstreamAccess, UpstreamTokenError> {
        match self.server.upstream_access_token(&self.grant).await {
            Ok(Ok(access)) => Ok(access),
            Ok(Err(e)) if e.reason == Reason::UpstreamTokenUnavailable => {
                Err(UpstreamTokenError::NotSignedInUpstream(e))
            }
            Ok(Err(e)) => Err(self.refused(e).await),
            Err(e) => Err(UpstreamTokenError::Server(e)),
        }
    }

    /// Who the provider says the person is: its OpenID userinfo (GitHub: its user API), called
    /// with [`Self::access`]'s token.
    pub async fn userinfo(&self) -> Result<UpstreamUserinfo, UpstreamTokenError> {
        let access = self.access().await?;
        let provider = self.provider(&access)?;
        match provider.userinfo(access.access_token()).await {
            Ok(claims) => Ok(UpstreamUserinfo { provider: access.provider, claims }),
            Err(e) => Err(self.refused(e).await),
        }
    }

    /// [`Self::access`]'s token exchanged at the provider (RFC 8693) for a token of `target`,
    /// for a downstream API of the provider's that accepts such tokens. The person's token
    /// goes only to the provider that issued it. The exchanged token is not kept: cache it for
    /// its `expires_in` if the API is called often.
    pub async fn exchange(&self, target: &ExchangeTarget) -> Result<ExchangedToken, UpstreamTokenError> {
        let access = self.access().await?;
        let provider = self.provider(&access)?;
        match provider.exchange_token(access.access_token(), target).await {
            Ok(token) => Ok(token),
            Err(e) => Err(self.refused(e).await),
        }
    }

    fn provider(&self, access: &UpstreamAccess) -> Result<&oauth_core::upstream::UpstreamClient, UpstreamTokenError> {
        self.server.upstream(&access.provider).map(Arc::as_ref).ok_or_else(|| {
            UpstreamTokenError::NotSignedInUpstream(UpstreamError::unavailable(format!(
                "provider '{}' is no longer configured",
                access.provider
            )))
        })
    }

    /// A refusal by the provider, recorded for this grant's client (within the event budget: a
    /// tool can be called in a loop): `diagnose` shows it.
    async fn refused(&self, e: UpstreamError) -> UpstreamTokenError {
        // An ended grant is recorded where it is revoked.
        if e.reason != Reason::UpstreamGrantEnded {
            self.server.record_upstream_tool_failure(&e, &self.client).await;
        }
        UpstreamTokenError::Refused(e)
    }
}

impl fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamToken").field("grant", &self.grant).finish_non_exhaustive()
    }
}

/// Two handles are equal when they are for one grant of one server.
impl PartialEq for UpstreamToken {
    fn eq(&self, other: &Self) -> bool {
        self.grant == other.grant && Arc::ptr_eq(&self.server, &other.server)
    }
}

impl Eq for UpstreamToken {}

/// What [`UpstreamToken::userinfo`] answers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamUserinfo {
    /// The provider's id.
    pub provider: String,
    /// Its claims, as it sent them.
    pub claims: serde_json::Value,
}

/// Why a tool has no upstream token.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpstreamTokenError {
    /// The vault holds nothing for this grant: the person signed in with a local password, or
    /// the grant ended. The detail says which; tell the person to sign in upstream.
    NotSignedInUpstream(UpstreamError),
    /// The provider refused or could not be reached (a refresh, the userinfo, an exchange),
    /// with its reason; recorded as a flow event.
    Refused(UpstreamError),
    /// The authorization server's store failed.
    Server(oauth_core::Error),
}

impl UpstreamTokenError {
    /// The flow-event reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotSignedInUpstream(e) | Self::Refused(e) => e.reason,
            Self::Server(_) => Reason::Internal,
        }
    }

    /// What to tell the person: nothing internal.
    pub fn told(&self) -> &str {
        match self {
            Self::NotSignedInUpstream(_) => "You did not sign in through an identity provider.",
            Self::Refused(e) => &e.told,
            Self::Server(_) => "The server could not read its store. Try again later.",
        }
    }
}

impl fmt::Display for UpstreamTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSignedInUpstream(e) | Self::Refused(e) => e.fmt(f),
            Self::Server(e) => write!(f, "the authorization server's store failed: {e}"),
        }
    }
}

impl std::error::Error for UpstreamTokenError {}
