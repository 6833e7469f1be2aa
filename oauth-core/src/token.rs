//! The token endpoint (RFC 6749 3.2, 4.1.3, 6; OAuth 2.1).
//! Documented in the crate docs, "The token endpoint".

use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::client::{Client, GrantType};
use crate::client_assertion::ClientAssertion;
pub use crate::client_auth::ClientCredentials;
use crate::error::{Error, OAuthError, StoreError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::failure::Failure;
use crate::jwt::{AccessTokenClaims, mint};
use crate::params::{Params, clip};
use crate::policy::{resolve_resource, resolve_scopes};
use crate::secret::{AuthorizationCode, ClientSecret, CodeVerifier, MAX_SECRET_LEN, RefreshToken, SecretHash};
use crate::server::AuthorizationServer;
use crate::store::{AuthorizationCodeRecord, CodeRedemption, Grant, NewGrant};
use crate::types::{ClientId, GrantId, ResourceUri, ScopeSet, UserId};

/// What a code exchange issues: the grant and its first refresh token.
type Issued = (Grant, Option<RefreshToken>);

/// A store answered a code exchange as redeemed without asking for the grant to store.
#[derive(Debug, thiserror::Error)]
#[error("the store redeemed the code without storing its grant")]
struct ExchangeWithoutGrant;

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
    /// `client_assertion_type` (`private_key_jwt`).
    pub client_assertion_type: Option<String>,
    /// `client_assertion` (`private_key_jwt`).
    pub client_assertion: Option<ClientAssertion>,
    /// `assertion` (the jwt-bearer grant: an enterprise IdP's ID-JAG).
    pub assertion: Option<ClientAssertion>,
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
            client_assertion_type: p.take("client_assertion_type"),
            client_assertion: p.take("client_assertion").map(ClientAssertion::new),
            assertion: p.take("assertion").map(ClientAssertion::new),
        })
    }
}

impl ClientCredentials {
    /// Combines the `Authorization` header (if any) with `client_id`/`client_secret` from the
    /// body. Both Basic and a body secret is `invalid_request` (RFC 6749 2.3); a body
    /// `client_id` next to Basic must name the same client (the Python SDK sends both).
    pub fn from_request(authorization: Option<&str>, req: &TokenRequest) -> Result<Self, OAuthError> {
        Self::new(authorization, req.client_id.as_deref(), req.client_secret.as_ref().map(ClientSecret::secret))?
            .with_assertion(req.client_assertion_type.as_deref(), req.client_assertion.as_ref())
    }
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
            Some(crate::enterprise::JWT_BEARER_GRANT) => FlowStep::EnterpriseAssertion,
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
            GrantType::JwtBearer => self.enterprise_assertion(&client, req).await?,
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

    async fn exchange_code(&self, client: &Client, mut req: TokenRequest) -> Result<TokenResponse, Error> {
        let step = FlowStep::CodeExchange;
        let reject = |f: Failure| self.reject(step, Some(&client.id), f);
        let (code, verifier) = match check_exchange_request(&mut req) {
            Ok(p) => p,
            Err(f) => return Err(reject(f).await),
        };
        let hash = code.hash();
        let now = self.now();
        let with_refresh = client.allows_grant(GrantType::RefreshToken);
        // The checks that need the code's record run inside the store's transaction; what
        // they decide comes out through `outcome`: the grant and its refresh token, or why
        // the exchange is refused (the code is spent either way).
        let outcome: Mutex<Option<Result<Issued, Failure>>> = Mutex::new(None);
        let issue = |record: &AuthorizationCodeRecord| {
            let checked = check_redeemed_code(record, client, &req, &verifier, &hash).and_then(|()| {
                self.check_resource(&req.resource, &record.resource)
                    .map_err(|e| Failure::new(Reason::ResourceMismatch, e))
            });
            let (decided, stored) = match checked {
                Ok(()) => {
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
                    let stored = NewGrant::new(grant.clone(), refresh.as_ref().map(RefreshToken::hash));
                    (Ok((grant, refresh)), Some(stored))
                }
                Err(f) => (Err(f), None),
            };
            *outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(decided);
            stored
        };
        let redemption = self.stores().authorizations.exchange_code(&hash, now, &issue).await?;
        let in_flight = match redemption {
            CodeRedemption::Redeemed(r) => r.upstream,
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
        let decided = outcome.into_inner().unwrap_or_else(PoisonError::into_inner);
        let (grant, refresh) = match decided {
            Some(Ok(issued)) => issued,
            Some(Err(f)) => return Err(reject(f).await),
            // A store that reports a redemption without asking for the grant breaks the
            // contract; nothing was issued, so the client is told the server failed.
            None => return Err(Error::Store(StoreError::backend(ExchangeWithoutGrant))),
        };
        let response = self.issue(&grant, grant.scopes.clone(), refresh)?;
        if let Some(sealed) = in_flight {
            self.keep_upstream_tokens(&grant, &sealed).await;
        }
        let detail = format!("code {} exchanged; grant {}, scope '{}'", hash.short(), grant.id, grant.scopes);
        self.record(FlowEvent::success(now, step, detail).client(&client.id).user(&grant.user)).await;
        Ok(response)
    }

    /// Records `failure` of `step` and returns the client's error.
    pub(crate) async fn reject(&self, step: FlowStep, client: Option<&ClientId>, failure: Failure) -> Error {
        self.record(failure.event(self.now(), step, client)).await;
        Error::OAuth(failure.error)
    }

    /// As [`Self::reject`], for a failure before the client is authenticated: stored within
    /// the server's event budget, since anyone can send those at any rate.
    pub(crate) async fn reject_unauthenticated(
        &self,
        step: FlowStep,
        client: Option<&ClientId>,
        failure: Failure,
    ) -> Error {
        self.record_unauthenticated(failure.event(self.now(), step, client)).await;
        Error::OAuth(failure.error)
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
        let user = UserId::for_client(&client.id);
        let grant = Grant::access_only(client.id.clone(), user, scopes.clone(), resource, now, now);
        self.stores().grants.create_grant(&grant, None).await?;
        let response = self.issue(&grant, scopes, None)?;
        self.record(
            FlowEvent::success(
                now,
                step,
                format!(
                    "machine token for scope '{}'; grant {}; client authenticated with {}",
                    grant.scopes,
                    grant.id,
                    client.auth_method.as_str()
                ),
            )
            .client(&client.id),
        )
        .await;
        Ok(response)
    }

    /// A `resource` at the token endpoint must resolve to the grant's resource.
    pub(crate) fn check_resource(&self, requested: &[String], bound: &ResourceUri) -> Result<(), OAuthError> {
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
    pub(crate) fn issue(
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
            "grant_type '{}' is not supported; supported: authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer",
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

/// The id of the grant a token belongs to, for revocation (`gid` claim).
pub(crate) fn grant_id_of(claims: &AccessTokenClaims) -> Option<GrantId> {
    claims.gid.as_deref().and_then(|g| GrantId::parse(g).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refresh::{check_refresh_grant, unknown_refresh};

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
            upstream: None,
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
        let supported = ScopeSet::parse("mcp:tools mcp:admin mcp:write").unwrap();
        let check = |c: &Client, s: Option<&str>| check_refresh_grant(&grant, c, s, &supported, &hash);
        let scopes = |s: Option<&str>| check(&c1, s).map(|s| s.to_string());
        assert_eq!(scopes(None).unwrap(), grant.scopes.to_string());
        assert_eq!(scopes(Some("mcp:tools")).unwrap(), "mcp:tools");
        // What the client asked for at authorization and this server does not define.
        assert_eq!(scopes(Some("mcp:tools claudeai")).unwrap(), "mcp:tools");
        assert_eq!(scopes(Some("claudeai offline_access")).unwrap(), grant.scopes.to_string());
        for wider in ["mcp:tools mcp:write", "mcp:write", "mcp:write claudeai"] {
            assert_eq!(check(&c1, Some(wider)).unwrap_err().reason, Reason::InvalidScope, "{wider}");
        }
        let f = check(&public_client("c2"), None).unwrap_err();
        // Another client's token is "unknown" to it, exactly like a token that never existed.
        assert_eq!((f.reason, f.error.description()), (Reason::RefreshUnknown, unknown_refresh().error.description()));
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
        use base64::Engine as _;
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("c1:{SECRET}")));
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
