//! Token introspection (RFC 7662), for resource servers that do not verify JWTs themselves.
//! Documented in the crate docs, "Introspection".

use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::revoke::TokenRequestForm;
use crate::secret::{MAX_SECRET_LEN, RefreshToken};
use crate::server::AuthorizationServer;
use crate::store::Grant;
use crate::token::grant_id_of;

/// An introspection response (RFC 7662 2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IntrospectionResponse {
    /// Whether the token is active.
    pub active: bool,
    /// Scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl IntrospectionResponse {
    /// `{"active": false}`.
    pub fn inactive() -> Self {
        Self::default()
    }
}

impl AuthorizationServer {
    /// Introspects a token (RFC 7662). The caller must be an authenticated confidential client.
    pub async fn introspect(
        &self,
        form: TokenRequestForm,
        authorization: Option<&str>,
    ) -> Result<IntrospectionResponse, Error> {
        let step = FlowStep::Introspection;
        let creds = match form.credentials(authorization) {
            Ok(c) => c,
            Err(e) => return Err(self.fail_unauthenticated(step, Reason::ClientAuthFailed, None, e).await),
        };
        let caller = self.authenticate_client(&creds, step).await?;
        if caller.is_public() {
            return Err(self
                .fail_unauthenticated(
                    step,
                    Reason::ClientAuthFailed,
                    Some(&caller.id),
                    OAuthError::invalid_client("introspection needs a confidential client (one with a secret)"),
                )
                .await);
        }
        let Some(token) = form.token.filter(|t| t.secret().len() <= crate::jwt::MAX_TOKEN_LEN) else {
            return Err(self
                .fail(
                    step,
                    Reason::InvalidRequest,
                    Some(&caller.id),
                    OAuthError::invalid_request("token is missing"),
                    None,
                )
                .await);
        };
        if let Ok(claims) = self.verify_access_token(token.secret()) {
            return self.introspect_access_token(&caller, claims).await;
        }
        if token.secret().len() <= MAX_SECRET_LEN {
            let hash = RefreshToken::new(token.secret().to_owned()).hash();
            if let Some((grant, generation)) = self.stores().grants.find_refresh_token(&hash).await? {
                return Ok(self.introspect_refresh_token(&caller, &grant, generation).await);
            }
        }
        Ok(IntrospectionResponse::inactive())
    }

    /// A valid access token: active unless its grant is revoked. RFC 7662 section 4: no token
    /// scanning. A resource server the operator registered for it may ask about any access
    /// token; a client only about its own.
    async fn introspect_access_token(
        &self,
        caller: &Client,
        claims: crate::jwt::AccessTokenClaims,
    ) -> Result<IntrospectionResponse, Error> {
        if !caller.introspection && claims.client_id != caller.id.as_str() {
            let what = format!("asked about an access token of client {}", crate::params::clip(&claims.client_id));
            self.refuse_introspection(caller, what).await;
            return Ok(IntrospectionResponse::inactive());
        }
        if let Some(gid) = grant_id_of(&claims) {
            let grant = self.stores().grants.grant(&gid).await?;
            if grant.is_none_or(|g| g.revoked_at.is_some()) {
                return Ok(IntrospectionResponse::inactive());
            }
        }
        Ok(IntrospectionResponse {
            active: true,
            scope: Some(claims.scope),
            client_id: Some(claims.client_id),
            token_type: Some("Bearer".into()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            sub: Some(claims.sub),
            aud: Some(claims.aud.describe()),
            iss: Some(claims.iss),
            jti: Some(claims.jti),
        })
    }

    /// A stored refresh token: its own client's business only, resource servers included;
    /// active while it is the grant's current generation, unrevoked and unexpired.
    async fn introspect_refresh_token(&self, caller: &Client, grant: &Grant, generation: u64) -> IntrospectionResponse {
        let step = FlowStep::Introspection;
        if grant.client_id != caller.id {
            self.refuse_introspection(caller, format!("asked about a refresh token of client {}", grant.client_id))
                .await;
            return IntrospectionResponse::inactive();
        }
        let now = self.now();
        let current = generation == grant.generation
            && grant.revoked_at.is_none()
            && grant.refresh_expires_at.is_some_and(|t| t > now);
        if !current {
            return IntrospectionResponse::inactive();
        }
        let detail = format!("refresh token of grant {} is active", grant.id);
        self.record(FlowEvent::success(now, step, detail).client(&caller.id)).await;
        IntrospectionResponse {
            active: true,
            scope: Some(grant.scopes.to_string()),
            client_id: Some(grant.client_id.to_string()),
            token_type: Some("refresh_token".into()),
            exp: grant.refresh_expires_at.map(crate::clock::UnixTime::as_secs),
            iat: Some(grant.rotated_at.unwrap_or(grant.created_at).as_secs()),
            sub: Some(grant.user.to_string()),
            aud: Some(grant.resource.to_string()),
            iss: Some(self.config().issuer.to_string()),
            jti: None,
        }
    }

    /// Records a question about another client's token. Any confidential client, a
    /// self-registered one too, can ask as often as it likes: stored within the budget.
    async fn refuse_introspection(&self, caller: &Client, what: String) {
        let event = FlowEvent::failure(self.now(), FlowStep::Introspection, Reason::IntrospectionNotEntitled, what);
        self.record_unauthenticated(event.client(&caller.id)).await;
    }
}
