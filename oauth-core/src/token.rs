//! The token endpoint (RFC 6749 3.2, 4.1.3, 6; OAuth 2.1): client authentication and the
//! `authorization_code`, `refresh_token` and `client_credentials` grants.
//!
//! - Codes are single-use; a replayed code revokes the grant it issued (RFC 6749 4.1.2).
//! - Refresh tokens rotate by compare-and-swap. A retry of the just-rotated token within the
//!   grace window gets the same successor; a replay after it revokes the whole grant
//!   (RFC 9700 4.14).
//! - `client_credentials` is only for machine clients the operator created, and only when the
//!   server allows it; the token names the client (`sub` is `client:<id>`, `machine: true`),
//!   never a user, and has a grant of its own, so it is revocable.
//!
//! # Refresh rotation against theft
//!
//! Each refresh token of a grant has a generation; the grant records the current one. The
//! successor of generation *n* is derived, not random: `HMAC-SHA256(K, grant ‖ n+1 ‖ token)`,
//! where `K` is a 256-bit key only the server holds (the key store's `refresh-successor-v1`,
//! created on first start, shared by every replica on the same store, replaced with
//! [`AuthorizationServer::rotate_refresh_secret`]). Deriving it lets a client that lost the
//! response retry the token it just used, within the grace window (30 s), and get the same
//! successor back without the server ever keeping a token in clear. Since `K` never leaves the
//! server and the store holds only hashes, neither a holder of old tokens and access tokens
//! (whose `gid` names the grant) nor a reader of the database can compute a later token.
//!
//! Presenting any generation other than the current one is a reuse, except the exact previous
//! generation within the grace window, by the same authenticated client; a reuse revokes the
//! grant and every token of it (RFC 9700 4.14.2), and both cases are flow events.
//!
//! The known alternative (Cloudflare's provider) keeps the previous token valid until its
//! successor is first used, issuing a fresh random successor on each retry. It survives
//! arbitrarily late retries, but a thief who uses a stolen token before the victim's next
//! refresh is indistinguishable from the victim, for as long as the victim is idle. We bound
//! that window by time instead (the grace window) and keep detection for everything else.
//! - Every failure answers the RFC's error code with a description of what to fix, records a
//!   flow event, and writes nothing.
//!
//! ```
//! use oauth_core::token::{ClientCredentials, TokenRequest};
//!
//! let req = TokenRequest::from_pairs([("grant_type", "refresh_token"), ("refresh_token", "abc"), ("client_id", "c1")]).unwrap();
//! let creds = ClientCredentials::from_request(Some("Basic YzE6czM="), &req).unwrap(); // c1:s3
//! assert_eq!(creds.client_id(), Some("c1"));
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::client::{Client, GrantType};
use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::failure::Failure;
use crate::jwt::{AccessTokenClaims, mint};
use crate::params::{Params, clip};
use crate::policy::{resolve_resource, resolve_scopes};
use crate::secret::{
    AuthorizationCode, ClientSecret, ClientSecretHash, CodeVerifier, MAX_SECRET_LEN, RefreshToken, SecretCheck,
    SecretHash,
};
use crate::server::AuthorizationServer;
use crate::store::{AuthorizationCodeRecord, CodeRedemption, Grant};
use crate::types::{ClientId, GrantId, ResourceUri, ScopeSet, UserId};

/// Least time between two updates of a client's `last_used_at`.
const CLIENT_TOUCH_INTERVAL_SECS: i64 = 60;

/// A token request's parameters, as sent (form body).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `code`.
    pub code: Option<crate::secret::AuthorizationCode>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `code_verifier`.
    pub code_verifier: Option<CodeVerifier>,
    /// `refresh_token`.
    pub refresh_token: Option<RefreshToken>,
    /// `scope`.
    pub scope: Option<String>,
    /// `resource` (may repeat).
    pub resource: Vec<String>,
    /// `client_id` in the body.
    pub client_id: Option<String>,
    /// `client_secret` in the body (`client_secret_post`).
    pub client_secret: Option<ClientSecret>,
}

impl TokenRequest {
    /// Builds a request from form pairs: bounded, repeated parameters refused.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut p = Params::collect(pairs, &["resource"])?;
        Ok(Self {
            grant_type: p.take("grant_type"),
            code: p.take("code").map(crate::secret::AuthorizationCode::new),
            redirect_uri: p.take("redirect_uri"),
            code_verifier: p.take("code_verifier").map(CodeVerifier::new),
            refresh_token: p.take("refresh_token").map(RefreshToken::new),
            scope: p.take("scope"),
            resource: p.take_all("resource"),
            client_id: p.take("client_id"),
            client_secret: p.take("client_secret").map(ClientSecret::new),
        })
    }
}

/// How the client authenticated: HTTP Basic and/or form fields.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    id: Option<String>,
    secret: Option<ClientSecret>,
    method: &'static str,
}

impl ClientCredentials {
    /// Combines the `Authorization` header (if any) with `client_id`/`client_secret` from the
    /// body. Both Basic and a body secret is `invalid_request` (RFC 6749 2.3); a body
    /// `client_id` next to Basic must name the same client (the Python SDK sends both).
    pub fn from_request(authorization: Option<&str>, req: &TokenRequest) -> Result<Self, OAuthError> {
        Self::new(authorization, req.client_id.as_deref(), req.client_secret.as_ref().map(ClientSecret::secret))
    }

    /// As [`Self::from_request`], from the raw values.
    pub fn new(
        authorization: Option<&str>,
        body_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<Self, OAuthError> {
        let body_secret = body_secret.filter(|s| !s.is_empty());
        let basic = match authorization {
            Some(h) => parse_basic(h)?,
            None => None,
        };
        match basic {
            Some((id, secret)) => {
                if body_secret.is_some() {
                    return Err(OAuthError::invalid_request(
                        "the client authenticated with both HTTP Basic and client_secret in the body; use one method",
                    ));
                }
                if body_id.is_some_and(|b| b != id) {
                    return Err(OAuthError::invalid_client(
                        "client_id in the body differs from the client_id in HTTP Basic authentication",
                    ));
                }
                Ok(Self {
                    id: Some(id),
                    secret: secret.filter(|s| !s.is_empty()).map(ClientSecret::new),
                    method: "client_secret_basic",
                })
            }
            None => Ok(Self {
                id: body_id.map(str::to_owned),
                secret: body_secret.map(|s| ClientSecret::new(s.to_owned())),
                method: if body_secret.is_some() { "client_secret_post" } else { "none" },
            }),
        }
    }

    /// The client id presented, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Id, secret and method, for the fuzz targets' invariants.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn parts(&self) -> (Option<&str>, Option<&str>, &'static str) {
        (self.id.as_deref(), self.secret.as_ref().map(ClientSecret::secret), self.method)
    }
}

/// Parses `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
/// Other schemes are ignored (`Ok(None)`).
pub(crate) fn parse_basic(header: &str) -> Result<Option<(String, Option<String>)>, OAuthError> {
    let Some((scheme, value)) = header.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let bad = || {
        OAuthError::invalid_client(
            "the HTTP Basic credentials are malformed (expected base64 of client_id:client_secret)",
        )
    };
    if value.len() > 4 * MAX_SECRET_LEN {
        return Err(bad());
    }
    let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, Some(secret))))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits: `from_str_radix` alone would also take a sign ("%+A").
                let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A successful token response (RFC 6749 5.1). Sent with `Cache-Control: no-store`.
#[non_exhaustive]
pub struct TokenResponse {
    /// The access token (a JWT).
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes.
    pub scope: ScopeSet,
    /// The refresh token, when the client registered that grant.
    pub refresh_token: Option<RefreshToken>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token)
            .finish()
    }
}

impl Serialize for TokenResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("access_token", &self.access_token)?;
        m.serialize_entry("token_type", "Bearer")?;
        m.serialize_entry("expires_in", &self.expires_in)?;
        m.serialize_entry("scope", &self.scope.to_string())?;
        if let Some(rt) = &self.refresh_token {
            m.serialize_entry("refresh_token", rt.secret())?;
        }
        m.end()
    }
}

impl AuthorizationServer {
    /// Handles a token request. `authorization` is the raw `Authorization` header, if any.
    pub async fn token(&self, req: TokenRequest, authorization: Option<&str>) -> Result<TokenResponse, Error> {
        let step = match req.grant_type.as_deref() {
            Some("refresh_token") => FlowStep::Refresh,
            Some("client_credentials") => FlowStep::ClientCredentials,
            _ => FlowStep::CodeExchange,
        };
        let creds = match ClientCredentials::from_request(authorization, &req) {
            Ok(c) => c,
            Err(e) => return Err(self.fail_unauthenticated(step, Reason::ClientAuthFailed, None, e).await),
        };
        let client = self.authenticate_client(&creds, step).await?;
        let grant = match check_grant(req.grant_type.as_deref(), &client) {
            Ok(g) => g,
            Err(f) => return Err(self.reject(step, Some(&client.id), f).await),
        };
        let response = match grant {
            GrantType::AuthorizationCode => self.exchange_code(&client, req).await?,
            GrantType::RefreshToken => self.refresh(&client, req).await?,
            GrantType::ClientCredentials => self.client_credentials(&client, req).await?,
        };
        // `last_used_at` tells the operator a client is alive and keeps it from being swept;
        // minute precision is plenty, and it spares a busy client one write per request.
        let now = self.now();
        if client.last_used_at.is_none_or(|t| now.seconds_since(t) >= CLIENT_TOUCH_INTERVAL_SECS)
            && let Err(e) = self.stores().clients.touch_client(&client.id, now).await
        {
            tracing::warn!(client_id = %client.id, error = %e, "could not record client use");
        }
        Ok(response)
    }

    /// Authenticates a client at the token, revocation or introspection endpoint.
    pub async fn authenticate_client(&self, creds: &ClientCredentials, step: FlowStep) -> Result<Client, Error> {
        // Anyone can fail here at any rate: each failure is stored within the event budget.
        let id = match credential_id(creds) {
            Ok(id) => id,
            Err(f) => return Err(self.reject_unauthenticated(step, None, f).await),
        };
        let client = match self.resolve_client(&id).await? {
            Ok(c) => c,
            // 401 invalid_client is what makes Claude register again instead of staying
            // "not connected".
            Err((reason, msg)) => {
                return Err(self
                    .reject_unauthenticated(step, Some(&id), Failure::new(reason, OAuthError::invalid_client(msg)))
                    .await);
            }
        };
        let (hash, secret) = match credentials_for(&client, creds) {
            Ok(None) => return Ok(client),
            Ok(Some(pair)) => pair,
            Err(f) => return Err(self.reject_unauthenticated(step, Some(&id), f).await),
        };
        match ClientSecretHash::verify(secret.secret(), hash, self.pepper()).await {
            SecretCheck::Valid => {}
            SecretCheck::ValidRehash(new_hash) => {
                // A hash from before secrets were peppered HMACs: replace it, so that this
                // client's next request skips the password hash.
                let mut upgraded = client.clone();
                upgraded.secret_hash = Some(new_hash);
                if let Err(e) = self.stores().clients.update_client(&upgraded).await {
                    tracing::warn!(client_id = %id, error = %e, "could not rehash a client secret");
                }
            }
            _ => {
                let msg = format!("client secret for '{id}' is wrong (sent with {})", creds.method);
                return Err(self
                    .reject_unauthenticated(
                        step,
                        Some(&id),
                        Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)),
                    )
                    .await);
            }
        }
        if client.secret_expires_at.is_some_and(|t| t <= self.now()) {
            let msg = format!("client secret for '{id}' has expired");
            return Err(self
                .reject_unauthenticated(
                    step,
                    Some(&id),
                    Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)),
                )
                .await);
        }
        Ok(client)
    }

    async fn exchange_code(&self, client: &Client, mut req: TokenRequest) -> Result<TokenResponse, Error> {
        let step = FlowStep::CodeExchange;
        let reject = |f: Failure| self.reject(step, Some(&client.id), f);
        let (code, verifier) = match check_exchange_request(&mut req) {
            Ok(p) => p,
            Err(f) => return Err(reject(f).await),
        };
        let hash = code.hash();
        let redemption = self.stores().authorizations.redeem_code(&hash, self.now()).await?;
        let record = match redemption {
            CodeRedemption::Redeemed(r) => r,
            CodeRedemption::AlreadyRedeemed(r) => {
                // RFC 6749 4.1.2: revoke what the code issued.
                let revoked = self.stores().grants.revoke_grant(&r.grant_id, self.now()).await?;
                let e =
                    OAuthError::invalid_grant("authorization code was already used; the tokens it issued are revoked");
                let detail = format!("code {} replayed; grant {} revoked: {revoked}", hash.short(), r.grant_id);
                return Err(reject(Failure::new(Reason::CodeReused, e).noting(detail)).await);
            }
            unusable => return Err(reject(unusable_code(&unusable, &hash, self.config().code_ttl)).await),
        };
        if let Err(f) = check_redeemed_code(&record, client, &req, &verifier, &hash).and_then(|()| {
            self.check_resource(&req.resource, &record.resource).map_err(|e| Failure::new(Reason::ResourceMismatch, e))
        }) {
            return Err(reject(f).await);
        }

        let now = self.now();
        let with_refresh = client.allows_grant(GrantType::RefreshToken);
        let refresh = with_refresh.then(RefreshToken::generate);
        let grant = Grant {
            id: record.grant_id.clone(),
            client_id: client.id.clone(),
            user: record.user.clone(),
            scopes: record.scopes.clone(),
            resource: record.resource.clone(),
            auth_time: record.auth_time,
            created_at: now,
            generation: 0,
            has_refresh_token: with_refresh,
            rotated_at: None,
            refresh_expires_at: with_refresh.then(|| now.plus(self.config().refresh_token_ttl)),
            revoked_at: None,
        };
        self.stores().grants.create_grant(&grant, refresh.as_ref().map(RefreshToken::hash).as_ref()).await?;
        let response = self.issue(&grant, grant.scopes.clone(), refresh)?;
        let detail = format!("code {} exchanged; grant {}, scope '{}'", hash.short(), grant.id, grant.scopes);
        self.record(FlowEvent::success(now, step, detail).client(&client.id).user(&grant.user)).await;
        Ok(response)
    }

    /// Records `failure` of `step` and returns the client's error.
    async fn reject(&self, step: FlowStep, client: Option<&ClientId>, failure: Failure) -> Error {
        self.record(failure.event(self.now(), step, client)).await;
        Error::OAuth(failure.error)
    }

    /// As [`Self::reject`], for a failure before the client is authenticated: stored within
    /// the server's event budget, since anyone can send those at any rate.
    async fn reject_unauthenticated(&self, step: FlowStep, client: Option<&ClientId>, failure: Failure) -> Error {
        self.record_unauthenticated(failure.event(self.now(), step, client)).await;
        Error::OAuth(failure.error)
    }

    async fn refresh(&self, client: &Client, mut req: TokenRequest) -> Result<TokenResponse, Error> {
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
        let scopes = match check_refresh_grant(&grant, client, req.scope.as_deref(), &hash).and_then(|scopes| {
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

    /// `client_credentials` for a machine client: a token that names the client, never a
    /// user, backed by a grant of its own so that it can be revoked like any other.
    async fn client_credentials(&self, client: &Client, req: TokenRequest) -> Result<TokenResponse, Error> {
        let step = FlowStep::ClientCredentials;
        let cid = Some(&client.id);
        if !self.config().client_credentials {
            let e = OAuthError::unsupported_grant_type("the client_credentials grant is disabled on this server");
            return Err(self.fail(step, Reason::UnsupportedGrantType, cid, e, None).await);
        }
        if !client.is_machine_client() {
            let e = OAuthError::unauthorized_client(
                "client_credentials is only for machine clients that the operator created",
            );
            let detail = format!("a {:?} client, machine: {}", client.origin, client.machine);
            return Err(self.fail(step, Reason::UnauthorizedClient, cid, e, Some(detail)).await);
        }
        let cfg = self.config();
        let (scopes, _) = match resolve_scopes(
            req.scope.as_deref(),
            &cfg.scopes_supported,
            &cfg.default_scopes,
            client.scope.as_ref(),
        ) {
            Ok(s) => s,
            Err(e) => return Err(self.fail(step, Reason::InvalidScope, cid, e, None).await),
        };
        let resource = match resolve_resource(&cfg.resource, &req.resource) {
            Ok(r) => r.resource,
            Err(e) => return Err(self.fail(step, Reason::ResourceMismatch, cid, e, None).await),
        };
        let now = self.now();
        // One grant per token: RFC 7009 revokes exactly that token, and removing the client or
        // rotating its secret revokes them all. Swept like any grant without refresh tokens.
        let grant = Grant {
            id: GrantId::generate(),
            client_id: client.id.clone(),
            user: UserId::for_client(&client.id),
            scopes: scopes.clone(),
            resource,
            auth_time: now,
            created_at: now,
            generation: 0,
            has_refresh_token: false,
            rotated_at: None,
            refresh_expires_at: None,
            revoked_at: None,
        };
        self.stores().grants.create_grant(&grant, None).await?;
        let response = self.issue(&grant, scopes, None)?;
        self.record(
            FlowEvent::success(now, step, format!("machine token for scope '{}'; grant {}", grant.scopes, grant.id))
                .client(&client.id),
        )
        .await;
        Ok(response)
    }

    /// A `resource` at the token endpoint must resolve to the grant's resource.
    fn check_resource(&self, requested: &[String], bound: &ResourceUri) -> Result<(), OAuthError> {
        if requested.is_empty() {
            return Ok(());
        }
        let r = resolve_resource(&self.config().resource, requested)?;
        if &r.resource != bound {
            return Err(OAuthError::invalid_target(format!("resource differs from the authorized resource '{bound}'")));
        }
        Ok(())
    }

    /// Mints an access token for a grant.
    fn issue(
        &self,
        grant: &Grant,
        scopes: ScopeSet,
        refresh_token: Option<RefreshToken>,
    ) -> Result<TokenResponse, Error> {
        let cfg = self.config();
        let mut claims = AccessTokenClaims::new(
            cfg.issuer.as_str(),
            grant.user.as_str(),
            grant.resource.as_str(),
            grant.client_id.as_str(),
            scopes.to_string(),
            self.now(),
            cfg.access_token_ttl,
        );
        claims.gid = Some(grant.id.to_string());
        if grant.user.is_user() {
            claims.auth_time = Some(grant.auth_time.as_secs());
        } else {
            // A machine client's grant: no person signed in.
            claims.machine = true;
        }
        let access_token = mint(&claims, &self.keys())?;
        Ok(TokenResponse { access_token, expires_in: cfg.access_token_ttl.as_secs(), scope: scopes, refresh_token })
    }

    /// Records a failed step as a flow event and returns the client-facing error. `detail` adds
    /// what only the operator should see (hash prefixes, other clients' ids). Adapters use it
    /// for failures they detect before calling the server (a malformed body).
    pub(crate) async fn fail(
        &self,
        step: FlowStep,
        reason: Reason,
        client: Option<&ClientId>,
        error: OAuthError,
        detail: Option<String>,
    ) -> Error {
        let failure = Failure::new(reason, error);
        let failure = match detail {
            Some(d) => failure.noting(d),
            None => failure,
        };
        self.reject(step, client, failure).await
    }

    /// As [`fail`](Self::fail), for a failure before the client is authenticated: stored
    /// within the server's event budget, since anyone can send those at any rate.
    pub(crate) async fn fail_unauthenticated(
        &self,
        step: FlowStep,
        reason: Reason,
        client: Option<&ClientId>,
        error: OAuthError,
    ) -> Error {
        self.reject_unauthenticated(step, client, Failure::new(reason, error)).await
    }
}

/// The grant a token request names, if the client registered it (RFC 6749 4.1.3, 5.2).
fn check_grant(grant_type: Option<&str>, client: &Client) -> Result<GrantType, Failure> {
    let Some(name) = grant_type else {
        return Err(Failure::new(Reason::InvalidRequest, OAuthError::invalid_request("grant_type is missing")));
    };
    let Some(grant) = GrantType::parse(name) else {
        let msg = format!(
            "grant_type '{}' is not supported; supported: authorization_code, refresh_token, client_credentials",
            clip(name)
        );
        return Err(Failure::new(Reason::UnsupportedGrantType, OAuthError::unsupported_grant_type(msg)));
    };
    if !client.allows_grant(grant) {
        let msg = format!("client '{}' did not register the {} grant", client.id, grant.as_str());
        return Err(Failure::new(Reason::UnauthorizedClient, OAuthError::unauthorized_client(msg)));
    }
    Ok(grant)
}

/// The client id the credentials name (RFC 6749 2.3.1).
fn credential_id(creds: &ClientCredentials) -> Result<ClientId, Failure> {
    let raw = creds.id.as_deref().ok_or_else(|| {
        let e = OAuthError::invalid_client(
            "client authentication is missing: send client_id (and a secret for confidential clients)",
        );
        Failure::new(Reason::ClientAuthFailed, e)
    })?;
    ClientId::parse(raw).map_err(|e| Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(e.to_string())))
}

/// What `client` must prove: nothing (a public client that sent no secret), or the secret
/// sent against its stored hash. An inactive client, a public one that sent a secret and a
/// confidential one that sent none are refused.
fn credentials_for<'a>(
    client: &'a Client,
    creds: &'a ClientCredentials,
) -> Result<Option<(&'a String, &'a ClientSecret)>, Failure> {
    let id = &client.id;
    if !client.active {
        let msg = format!("client '{id}' is deactivated");
        return Err(Failure::new(Reason::ClientInactive, OAuthError::invalid_client(msg)));
    }
    match (&client.secret_hash, &creds.secret) {
        (None, None) => Ok(None),
        (None, Some(_)) => {
            let msg = format!(
                "client '{id}' is public (token_endpoint_auth_method 'none') and has no secret; do not send one"
            );
            Err(Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)))
        }
        (Some(_), None) => {
            let msg = format!(
                "client '{id}' is confidential: authenticate with {} (client_secret_basic and client_secret_post are accepted)",
                client.auth_method.as_str()
            );
            Err(Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)))
        }
        (Some(hash), Some(secret)) => Ok(Some((hash, secret))),
    }
}

/// The code and its verifier from an exchange request (RFC 6749 4.1.3, RFC 7636 4.5).
fn check_exchange_request(req: &mut TokenRequest) -> Result<(AuthorizationCode, CodeVerifier), Failure> {
    let code = req
        .code
        .take()
        .ok_or_else(|| Failure::new(Reason::InvalidRequest, OAuthError::invalid_request("code is missing")))?;
    let verifier = req.code_verifier.take().ok_or_else(|| {
        Failure::new(Reason::PkceMissing, OAuthError::invalid_request("code_verifier is missing: PKCE is required"))
    })?;
    if code.secret().len() > MAX_SECRET_LEN {
        return Err(Failure::new(Reason::CodeUnknown, OAuthError::invalid_grant("authorization code is unknown")));
    }
    Ok((code, verifier))
}

/// Why a code that was not redeemed now cannot be: never issued (or swept), or expired.
fn unusable_code(redemption: &CodeRedemption, hash: &SecretHash, code_ttl: std::time::Duration) -> Failure {
    match redemption {
        CodeRedemption::Expired { .. } => {
            let msg = format!(
                "authorization code has expired (codes live {} s); start the authorization again",
                code_ttl.as_secs()
            );
            Failure::new(Reason::CodeExpired, OAuthError::invalid_grant(msg))
        }
        _ => Failure::new(Reason::CodeUnknown, OAuthError::invalid_grant("authorization code is unknown"))
            .noting(format!("code {} was never issued or was swept", hash.short())),
    }
}

/// A redeemed code is this client's, sent to the same redirect URI, with the verifier of its
/// challenge (RFC 6749 4.1.3, RFC 7636 4.6).
fn check_redeemed_code(
    record: &AuthorizationCodeRecord,
    client: &Client,
    req: &TokenRequest,
    verifier: &CodeVerifier,
    hash: &SecretHash,
) -> Result<(), Failure> {
    if record.client_id != client.id {
        let e = OAuthError::invalid_grant("authorization code was issued to another client");
        let detail = format!("code {} belongs to client {}", hash.short(), record.client_id);
        return Err(Failure::new(Reason::CodeClientMismatch, e).noting(detail));
    }
    match req.redirect_uri.as_deref() {
        Some(sent) if sent != record.redirect_uri.as_str() => {
            let msg = format!(
                "redirect_uri '{}' differs from the one in the authorization request ('{}')",
                clip(sent),
                record.redirect_uri
            );
            return Err(Failure::new(Reason::RedirectUriMismatch, OAuthError::invalid_grant(msg)));
        }
        None if record.redirect_uri_explicit => {
            let msg =
                format!("redirect_uri is missing; send '{}' as in the authorization request", record.redirect_uri);
            return Err(Failure::new(Reason::RedirectUriMismatch, OAuthError::invalid_request(msg)));
        }
        _ => {}
    }
    if !record.code_challenge.verify(verifier) {
        let e =
            OAuthError::invalid_grant("code_verifier does not match the code_challenge of the authorization request");
        return Err(Failure::new(Reason::PkceMismatch, e));
    }
    Ok(())
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
fn unknown_refresh() -> Failure {
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

/// The grant is this client's, and the scope asked for, if any, narrows it (RFC 6749 6).
fn check_refresh_grant(
    grant: &Grant,
    client: &Client,
    scope: Option<&str>,
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
        Ok(requested) if requested.is_subset(&grant.scopes) && !requested.is_empty() => Ok(requested),
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

/// The id of the grant a token belongs to, for revocation (`gid` claim).
pub(crate) fn grant_id_of(claims: &AccessTokenClaims) -> Option<GrantId> {
    claims.gid.as_deref().and_then(|g| GrantId::parse(g).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_client(id: &str) -> Client {
        Client::new(
            ClientId::parse(id).unwrap(),
            crate::client::TokenEndpointAuthMethod::None,
            vec![crate::types::RedirectUri::parse("http://127.0.0.1:7777/callback").unwrap()],
            crate::client::ClientOrigin::Dynamic,
            crate::clock::UnixTime::from_secs(0),
        )
    }

    #[test]
    fn the_grant_must_be_named_supported_and_registered() {
        let client = public_client("c1");
        assert_eq!(check_grant(Some("authorization_code"), &client).unwrap(), GrantType::AuthorizationCode);
        assert_eq!(check_grant(Some("refresh_token"), &client).unwrap(), GrantType::RefreshToken);
        let table = [
            (None, Reason::InvalidRequest, "invalid_request"),
            (Some("password"), Reason::UnsupportedGrantType, "unsupported_grant_type"),
            (Some(""), Reason::UnsupportedGrantType, "unsupported_grant_type"),
            (Some("client_credentials"), Reason::UnauthorizedClient, "unauthorized_client"),
        ];
        for (grant, reason, code) in table {
            let f = check_grant(grant, &client).unwrap_err();
            assert_eq!((f.reason, f.error.code().as_str()), (reason, code), "{grant:?}");
        }
    }

    #[test]
    fn each_redeemed_code_check_names_its_reason() {
        let verifier = CodeVerifier::generate();
        let code = AuthorizationCode::generate();
        let t = crate::clock::UnixTime::from_secs(100);
        let record = |explicit: bool| AuthorizationCodeRecord {
            hash: code.hash(),
            grant_id: GrantId::generate(),
            client_id: ClientId::parse("c1").unwrap(),
            user: UserId::parse("u1").unwrap(),
            redirect_uri: crate::types::RedirectUri::parse("http://127.0.0.1:7777/callback").unwrap(),
            redirect_uri_explicit: explicit,
            code_challenge: crate::pkce::CodeChallenge::s256(&verifier),
            scopes: ScopeSet::parse("mcp:tools").unwrap(),
            resource: ResourceUri::parse("https://as.example.com/mcp").unwrap(),
            auth_time: t,
            issued_at: t,
            expires_at: t,
        };
        let request = |redirect: Option<&str>| TokenRequest {
            redirect_uri: redirect.map(str::to_owned),
            ..TokenRequest::default()
        };
        let (c1, c2) = (public_client("c1"), public_client("c2"));
        let hash = code.hash();
        let sent = Some("http://127.0.0.1:7777/callback");
        let reason = |r: Result<(), Failure>| r.err().map(|f| (f.reason, f.error.code()));
        use crate::ErrorCode::{InvalidGrant, InvalidRequest};
        assert_eq!(reason(check_redeemed_code(&record(true), &c1, &request(sent), &verifier, &hash)), None);
        assert_eq!(reason(check_redeemed_code(&record(false), &c1, &request(None), &verifier, &hash)), None);
        let table = [
            (record(true), &c2, request(sent), &verifier, (Reason::CodeClientMismatch, InvalidGrant)),
            (
                record(true),
                &c1,
                request(Some("http://127.0.0.1:7777/other")),
                &verifier,
                (Reason::RedirectUriMismatch, InvalidGrant),
            ),
            (record(true), &c1, request(None), &verifier, (Reason::RedirectUriMismatch, InvalidRequest)),
        ];
        for (rec, client, req, v, expected) in table {
            assert_eq!(reason(check_redeemed_code(&rec, client, &req, v, &hash)), Some(expected));
        }
        let other = CodeVerifier::generate();
        assert_eq!(
            reason(check_redeemed_code(&record(true), &c1, &request(sent), &other, &hash)),
            Some((Reason::PkceMismatch, InvalidGrant))
        );
        // Another client's code: the operator learns whose; the client does not.
        let f = check_redeemed_code(&record(true), &c2, &request(sent), &verifier, &hash).unwrap_err();
        assert!(f.operator_detail.is_some_and(|d| d.contains("belongs to client c1")));
        assert!(!f.error.description().contains("c1"));
        let ttl = std::time::Duration::from_secs(300);
        assert_eq!(unusable_code(&CodeRedemption::NotFound, &hash, ttl).reason, Reason::CodeUnknown);
        let expired = CodeRedemption::Expired { client_id: ClientId::parse("c1").unwrap() };
        assert!(unusable_code(&expired, &hash, ttl).error.description().contains("300 s"));
    }

    #[test]
    fn a_refresh_may_only_narrow_the_grant_of_its_own_client() {
        let grant: Grant = serde_json::from_value(serde_json::json!({
            "id": GrantId::generate(), "client_id": "c1", "user": "u1", "scopes": "mcp:tools mcp:admin",
            "resource": "https://as.example.com/mcp", "auth_time": 0, "created_at": 0, "generation": 0,
            "has_refresh_token": true, "rotated_at": null, "refresh_expires_at": 1000, "revoked_at": null,
        }))
        .unwrap();
        let hash = RefreshToken::generate().hash();
        let c1 = public_client("c1");
        let scopes = |s: Option<&str>| check_refresh_grant(&grant, &c1, s, &hash).map(|s| s.to_string());
        assert_eq!(scopes(None).unwrap(), grant.scopes.to_string());
        assert_eq!(scopes(Some("mcp:tools")).unwrap(), "mcp:tools");
        for wider in ["mcp:tools other", "other"] {
            assert_eq!(check_refresh_grant(&grant, &c1, Some(wider), &hash).unwrap_err().reason, Reason::InvalidScope);
        }
        let f = check_refresh_grant(&grant, &public_client("c2"), None, &hash).unwrap_err();
        // Another client's token is "unknown" to it, exactly like a token that never existed.
        assert_eq!((f.reason, f.error.description()), (Reason::RefreshUnknown, unknown_refresh().error.description()));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "my%20client:p%3Ass+word" → id "my client", secret "p:ss word"
        let h = format!("Basic {}", STANDARD.encode("my%20client:p%3Ass+word"));
        let c = ClientCredentials::new(Some(&h), None, None).unwrap();
        assert_eq!(c.client_id(), Some("my client"));
        assert_eq!(c.secret.as_ref().unwrap().secret(), "p:ss word");
    }

    #[test]
    fn a_percent_sign_needs_two_hex_digits() {
        // Found by the basic_auth fuzz target: "%+A" decoded to a newline.
        for bad in ["c1:p%+Ass", "c1:%-1", "c%+41:s", "c1:%4", "c1:%zz"] {
            let h = format!("Basic {}", STANDARD.encode(bad));
            assert_eq!(parse_basic(&h).unwrap_err().code(), crate::ErrorCode::InvalidClient, "{bad}");
        }
        let h = format!("Basic {}", STANDARD.encode("c%41:%7e%7E"));
        assert_eq!(parse_basic(&h).unwrap(), Some(("cA".to_owned(), Some("~~".to_owned()))));
    }

    #[test]
    fn conflicting_credentials_are_refused() {
        let h = format!("Basic {}", STANDARD.encode("a:b"));
        assert!(ClientCredentials::new(Some(&h), Some("a"), Some("b")).is_err());
        assert_eq!(
            ClientCredentials::new(Some(&h), Some("x"), None).unwrap_err().code(),
            crate::ErrorCode::InvalidClient
        );
        assert!(ClientCredentials::new(Some(&h), Some("a"), None).is_ok());
        assert!(ClientCredentials::new(Some("Basic !!!"), None, None).is_err());
        assert!(ClientCredentials::new(Some(&format!("Basic {}", STANDARD.encode("nocolon"))), None, None).is_err());
        // Bearer or other schemes are not client authentication.
        let c = ClientCredentials::new(Some("Bearer abc"), Some("pub"), None).unwrap();
        assert_eq!(c.client_id(), Some("pub"));
        assert_eq!(c.method, "none");
        // An empty body secret is no secret.
        assert!(ClientCredentials::new(None, Some("pub"), Some("")).unwrap().secret.is_none());
    }

    #[test]
    fn no_request_type_shows_a_secret_in_debug() {
        const SECRET: &str = "s3cr3t-value-that-must-not-show";
        let token = TokenRequest::from_pairs([
            ("grant_type", "authorization_code"),
            ("code", SECRET),
            ("code_verifier", SECRET),
            ("refresh_token", SECRET),
            ("client_secret", SECRET),
        ])
        .unwrap();
        let form = crate::revoke::TokenRequestForm::from_pairs([("token", SECRET), ("client_secret", SECRET)]).unwrap();
        let basic = format!("Basic {}", STANDARD.encode(format!("c1:{SECRET}")));
        let creds = ClientCredentials::new(Some(&basic), None, None).unwrap();
        let authorize =
            crate::authorize::AuthorizationRequest::from_pairs([("client_id", "c1"), ("state", "st")]).unwrap();
        for shown in [format!("{token:?}"), format!("{form:?}"), format!("{creds:?}"), format!("{authorize:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }

    #[test]
    fn token_response_serialises_and_redacts() {
        let r = TokenResponse {
            access_token: "at".into(),
            expires_in: 60,
            scope: ScopeSet::parse("a b").unwrap(),
            refresh_token: Some(RefreshToken::new("rt".into())),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"access_token":"at","token_type":"Bearer","expires_in":60,"scope":"a b","refresh_token":"rt"})
        );
        let d = format!("{r:?}");
        assert!(!d.contains("\"at\"") && !d.contains("rt\""), "{d}");
    }
}
