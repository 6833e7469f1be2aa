//! The `refresh_token` grant (RFC 6749 6) with rotation against theft: see the
//! [`token`](crate::token) module for the rule.

use crate::client::Client;
use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::failure::Failure;
use crate::secret::{MAX_SECRET_LEN, RefreshToken, SecretHash};
use crate::server::AuthorizationServer;
use crate::store::Grant;
use crate::token::{TokenRequest, TokenResponse};
use crate::types::ScopeSet;

impl AuthorizationServer {
    pub(crate) async fn refresh(&self, client: &Client, mut req: TokenRequest) -> Result<TokenResponse, Error> {
        let step = FlowStep::Refresh;
        let reject = |f: Failure| self.reject(step, Some(&client.id), f);
        let token = match check_refresh_request(&mut req) {
            Ok(t) => t,
            Err(f) => return Err(reject(f).await),
        };
        let hash = token.hash();
        let Some((grant, generation)) = self.stores().grants.find_refresh_token(&hash).await? else {
            return Err(reject(unknown_refresh().noting(format!("refresh token {}", hash.short()))).await);
        };
        let scopes =
            match check_refresh_grant(&grant, client, req.scope.as_deref(), &self.config().scopes_supported, &hash)
                .and_then(|scopes| {
                    self.check_resource(&req.resource, &grant.resource)
                        .map(|()| scopes)
                        .map_err(|e| Failure::new(Reason::ResourceMismatch, e))
                }) {
                Ok(s) => s,
                Err(f) => return Err(reject(f).await),
            };
        let grant = match self.rotate(client, grant, generation, &token, scopes).await? {
            Rotation::Issued(response) => return Ok(response),
            Rotation::Refused(f) => return Err(reject(f).await),
            Rotation::Replayed(grant) => grant,
        };
        // Replay of a rotated token outside the grace window: revoke the family (RFC 9700 4.14).
        let revoked = self.stores().grants.revoke_grant(&grant.id, self.now()).await?;
        let e = OAuthError::invalid_grant(
            "refresh token was already used; for safety every token of this authorization is revoked; authorize again",
        );
        let detail = format!(
            "refresh token generation {generation} replayed (current {}); grant {} revoked: {revoked}",
            grant.generation, grant.id
        );
        Err(reject(Failure::new(Reason::RefreshReused, e).noting(detail)).await)
    }

    /// Rotates `grant` from `generation` to the next, or answers a retry within the grace
    /// window with the same successor. At most two rounds: a lost compare-and-swap re-reads
    /// the grant once and then finds this token one generation behind, inside the window.
    async fn rotate(
        &self,
        client: &Client,
        mut grant: Grant,
        generation: u64,
        token: &RefreshToken,
        scopes: ScopeSet,
    ) -> Result<Rotation, Error> {
        let step = FlowStep::Refresh;
        for _ in 0..2 {
            let now = self.now();
            if grant.revoked_at.is_some() {
                let f = Failure::new(Reason::GrantRevoked, unknown_refresh().error);
                return Ok(Rotation::Refused(f.noting(format!("grant {} is revoked", grant.id))));
            }
            let successor = token.successor(&self.refresh_secret(), grant.id.as_str(), generation + 1);
            let grace = crate::clock::duration_secs(self.config().refresh_grace);
            let detail = if generation == grant.generation {
                if grant.refresh_expires_at.is_some_and(|t| t <= now) {
                    let e = OAuthError::invalid_grant("refresh token has expired; authorize again");
                    return Ok(Rotation::Refused(Failure::new(Reason::RefreshExpired, e)));
                }
                let expires = now.plus(self.config().refresh_token_ttl);
                let grants = &self.stores().grants;
                if !grants.rotate_refresh_token(&grant.id, generation, &successor.hash(), now, expires).await? {
                    grant = match grants.grant(&grant.id).await? {
                        Some(g) => g,
                        None => return Ok(Rotation::Refused(unknown_refresh())),
                    };
                    continue;
                }
                format!("grant {} rotated to generation {}", grant.id, generation + 1)
            } else if generation + 1 == grant.generation
                && grant.rotated_at.is_some_and(|t| now.seconds_since(t) <= grace)
            {
                // A retry of the token rotated moments ago (the client lost the response):
                // the same successor again, not an error and not a new family member.
                format!(
                    "grant {} generation {generation} retried within the {} s grace window; same successor returned",
                    grant.id,
                    self.config().refresh_grace.as_secs()
                )
            } else {
                break;
            };
            let response = self.issue(&grant, scopes, Some(successor))?;
            self.record(FlowEvent::success(now, step, detail).client(&client.id).user(&grant.user)).await;
            return Ok(Rotation::Issued(response));
        }
        Ok(Rotation::Replayed(grant))
    }
}

/// What a refresh-token rotation came to.
enum Rotation {
    Issued(TokenResponse),
    Refused(Failure),
    /// The token is older than the current generation and outside the grace window.
    Replayed(Grant),
}

/// What a refresh token that cannot be used is told, whatever the reason: a stranger learns
/// nothing about which tokens exist.
pub(crate) fn unknown_refresh() -> Failure {
    Failure::new(Reason::RefreshUnknown, OAuthError::invalid_grant("refresh token is unknown, expired or revoked"))
}

/// The refresh token of a refresh request (RFC 6749 6).
fn check_refresh_request(req: &mut TokenRequest) -> Result<RefreshToken, Failure> {
    let token = req
        .refresh_token
        .take()
        .ok_or_else(|| Failure::new(Reason::InvalidRequest, OAuthError::invalid_request("refresh_token is missing")))?;
    if token.secret().len() > MAX_SECRET_LEN {
        return Err(unknown_refresh());
    }
    Ok(token)
}

/// The grant is this client's, and the scope asked for, if any, narrows it (RFC 6749 6);
/// scopes the server does not define are dropped, as at authorization.
pub(crate) fn check_refresh_grant(
    grant: &Grant,
    client: &Client,
    scope: Option<&str>,
    supported: &ScopeSet,
    hash: &SecretHash,
) -> Result<ScopeSet, Failure> {
    if grant.client_id != client.id {
        return Err(unknown_refresh().noting(format!(
            "refresh token {} belongs to client {}",
            hash.short(),
            grant.client_id
        )));
    }
    let Some(scope) = scope else {
        return Ok(grant.scopes.clone());
    };
    match ScopeSet::parse(scope) {
        // Clients resend the scope string they authorized with: what this server does not
        // define was dropped then, and is dropped again rather than failing the refresh.
        Ok(requested) if requested.intersection(supported).is_empty() => Ok(grant.scopes.clone()),
        Ok(requested) if requested.intersection(supported).is_subset(&grant.scopes) => {
            Ok(requested.intersection(supported))
        }
        Ok(requested) => {
            let msg = format!(
                "scope '{requested}' exceeds the granted scope '{}'; a refresh can only narrow it",
                grant.scopes
            );
            Err(Failure::new(Reason::InvalidScope, OAuthError::invalid_scope(msg)))
        }
        Err(e) => Err(Failure::new(Reason::InvalidScope, OAuthError::invalid_scope(e.to_string()))),
    }
}
