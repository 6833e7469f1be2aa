//! Token revocation (RFC 7009).
//! Documented in the crate docs, "Revocation".

use crate::client_assertion::ClientAssertion;
use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep};
use crate::params::Params;
use crate::secret::{ClientSecret, MAX_SECRET_LEN, PresentedToken, RefreshToken};
use crate::server::AuthorizationServer;
use crate::token::{ClientCredentials, grant_id_of};
use crate::types::GrantId;

/// A revocation or introspection request's parameters.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TokenRequestForm {
    /// `token`.
    pub token: Option<PresentedToken>,
    /// `token_type_hint`.
    pub token_type_hint: Option<String>,
    /// `client_id` in the body.
    pub client_id: Option<String>,
    /// `client_secret` in the body.
    pub client_secret: Option<ClientSecret>,
    /// `client_assertion_type` (`private_key_jwt`).
    pub client_assertion_type: Option<String>,
    /// `client_assertion` (`private_key_jwt`).
    pub client_assertion: Option<ClientAssertion>,
}

impl TokenRequestForm {
    /// Builds the request from form pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut p = Params::collect(pairs, &[])?;
        Ok(Self {
            token: p.take("token").map(PresentedToken::new),
            token_type_hint: p.take("token_type_hint"),
            client_id: p.take("client_id"),
            client_secret: p.take("client_secret").map(ClientSecret::new),
            client_assertion_type: p.take("client_assertion_type"),
            client_assertion: p.take("client_assertion").map(ClientAssertion::new),
        })
    }

    pub(crate) fn credentials(&self, authorization: Option<&str>) -> Result<ClientCredentials, OAuthError> {
        ClientCredentials::new(
            authorization,
            self.client_id.as_deref(),
            self.client_secret.as_ref().map(ClientSecret::secret),
        )?
        .with_assertion(self.client_assertion_type.as_deref(), self.client_assertion.as_ref())
    }
}

impl AuthorizationServer {
    /// Revokes a token (RFC 7009). Succeeds for unknown tokens.
    pub async fn revoke(&self, form: TokenRequestForm, authorization: Option<&str>) -> Result<(), Error> {
        let step = FlowStep::Revocation;
        let creds = match form.credentials(authorization) {
            Ok(c) => c,
            Err(e) => {
                return Err(self.fail_unauthenticated(step, crate::events::Reason::ClientAuthFailed, None, e).await);
            }
        };
        let client = self.authenticate_client(&creds, step).await?;
        let Some(token) = form.token.filter(|t| t.secret().len() <= crate::jwt::MAX_TOKEN_LEN) else {
            return Err(self
                .fail(
                    step,
                    crate::events::Reason::InvalidRequest,
                    Some(&client.id),
                    OAuthError::invalid_request("token is missing"),
                    None,
                )
                .await);
        };
        let access_first = form.token_type_hint.as_deref() == Some("access_token");
        let grant = if access_first {
            match self.grant_of_access_token(token.secret()) {
                Some(g) => Some(g),
                None => self.grant_of_refresh_token(token.secret()).await?,
            }
        } else {
            match self.grant_of_refresh_token(token.secret()).await? {
                Some(g) => Some(g),
                None => self.grant_of_access_token(token.secret()),
            }
        };
        let Some((grant_id, owner)) = grant else {
            tracing::debug!(client_id = %client.id, "revocation of an unknown token: nothing to do");
            return Ok(());
        };
        if owner != client.id.as_str() {
            tracing::warn!(client_id = %client.id, owner = %owner, "client tried to revoke another client's token; ignored");
            return Ok(());
        }
        let now = self.now();
        let revoked = self.stores().grants.revoke_grant(&grant_id, now).await?;
        self.record(FlowEvent::success(now, step, format!("grant {grant_id} revoked: {revoked}")).client(&client.id))
            .await;
        Ok(())
    }

    async fn grant_of_refresh_token(&self, token: &str) -> Result<Option<(GrantId, String)>, Error> {
        if token.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let hash = RefreshToken::new(token.to_owned()).hash();
        Ok(self.stores().grants.find_refresh_token(&hash).await?.map(|(g, _)| (g.id, g.client_id.to_string())))
    }

    fn grant_of_access_token(&self, token: &str) -> Option<(GrantId, String)> {
        // Signature, issuer and audience must verify; expiry does not matter for revocation.
        let claims = self.verify_access_token_ignoring_expiry(token).ok()?;
        Some((grant_id_of(&claims)?, claims.client_id))
    }
}
