//! Verifiers for tokens issued by an authorization server in another process: another replica
//! of the embedded server, or an external one (Keycloak, Auth0, Entra, any RFC 8414 server).
//!
//! - [`JwksVerifier`] checks JWT access tokens locally against the server's published keys:
//!   RFC 9068 ones by default, or an identity provider's own shape through an
//!   [`IssuerProfile`] (presets for Keycloak, Entra, Auth0 and Okta; see [`profile`]). The keys are fetched once and again only when a token names a key not seen yet (a
//!   rotation), at most once per [`JwksVerifier::with_min_refresh_interval`]; the network is
//!   never on the path of a token signed by a known key.
//! - [`IntrospectionVerifier`] asks the server about each token (RFC 7662), for opaque tokens
//!   or when a revocation must be seen within a bound: its cache's `max_age` is that bound.
//!
//! Both check what [`LocalVerifier`](crate::LocalVerifier) checks: the issuer, the audience
//! (this resource), the expiry, and they hand tool handlers the same [`AuthContext`].
//!
//! Every request goes through [`oauth_fetch`] configured for operator URLs: no proxy, no
//! redirects, 10 s including DNS, 256 KiB. The issuer, the `jwks_uri` and the introspection
//! endpoint must be https (plain http only to loopback, as in development); anything else is
//! refused when the verifier is built ([`RemoteError::Config`]), since a token check over plain
//! http can be answered by anyone on the path.
//!
//! The introspection verifier remembers refusals for a short time
//! ([`IntrospectionVerifier::with_negative_cache`]) and asks the server at most a few times at
//! once ([`IntrospectionVerifier::with_max_concurrent`]), so a stream of junk bearer tokens
//! cannot drive the authorization server into rate limiting every caller.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mcp_guard::remote::RemoteError> {
//! use std::sync::Arc;
//! use mcp_guard::McpGuardLayer;
//! use mcp_guard::remote::JwksVerifier;
//! use oauth_core::ResourceUri;
//!
//! let resource = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
//! // Reads the issuer's RFC 8414 metadata, checks its `issuer`, and fetches its `jwks_uri`.
//! let verifier = JwksVerifier::discover("https://auth.example.com", &resource).await?;
//! let guard = McpGuardLayer::new(Arc::new(verifier), &resource);
//!
//! // Keycloak's default tokens (typ JWT, the client in azp), with an Audience mapper adding
//! // the MCP URL to `aud`.
//! use mcp_guard::remote::IssuerProfile;
//! let keycloak =
//!     JwksVerifier::discover_with("https://sso.example.com/realms/notes", &resource, IssuerProfile::keycloak())
//!         .await?;
//! # Ok(()) }
//! ```

pub mod profile;

pub use profile::{ClaimTest, IssuerProfile, PRESETS};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oauth_core::ClientSecret;
use oauth_core::Reason;
use oauth_core::well_known_url;
use oauth_core::{AccessTokenClaims, JwtRules};
use oauth_core::{ClientId, ResourceUri, ScopeSet, UserId};
use oauth_core::{Clock, SystemClock, UnixTime};
use oauth_core::{Jwks, VerifyingKeys};
use oauth_core::{TokenValidation, VerifyError};
use oauth_fetch::discovery::DiscoveryError;
use oauth_fetch::{FetchConfig, Fetcher, Method, Request};
use serde::Deserialize;

use crate::cache::{TokenCache, TokenCacheConfig};
use crate::context::{AuthContext, Rejection};
use crate::verifier::{TokenVerifier, context_from_claims, through_cache};

/// Largest document read from the authorization server (metadata, JWKS, introspection).
const MAX_DOCUMENT: usize = 256 * 1024;
/// Time limit of one request to the authorization server, resolution included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long an introspection refusal is remembered by default.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Most refusals remembered by default.
const NEGATIVE_ENTRIES: usize = 10_000;
/// Introspection requests in flight at once by default.
const MAX_CONCURRENT: usize = 8;

/// A remote verifier could not be set up: the message says which document and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// A document could not be fetched.
    #[error("{url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A document was fetched but cannot be used.
    #[error("{url}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A URL that is never fetched: plain http outside loopback, not a URL, user info.
    #[error("{url}: {reason}")]
    Config {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

fn http_client() -> Fetcher {
    Fetcher::new(
        FetchConfig::operator_urls()
            .with_timeout(TIMEOUT)
            .with_max_body(MAX_DOCUMENT)
            .with_user_agent(concat!("mcp-guard/", env!("CARGO_PKG_VERSION"))),
    )
}

/// Refuses, before anything is sent, a URL the verifiers never fetch.
fn checked(http: &Fetcher, url: &str) -> Result<(), RemoteError> {
    match http.config().check_url(url) {
        Ok(_) => Ok(()),
        Err(e) => Err(RemoteError::Config { url: url.to_owned(), reason: e.to_string() }),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &Fetcher, url: &str) -> Result<T, RemoteError> {
    checked(http, url)?;
    let resp =
        http.get_json(url).await.map_err(|e| RemoteError::Fetch { url: url.to_owned(), reason: e.to_string() })?;
    if !resp.status.is_success() {
        return Err(RemoteError::Fetch { url: url.to_owned(), reason: format!("answered {}", resp.status) });
    }
    serde_json::from_slice(&resp.body).map_err(|e| RemoteError::Invalid { url: url.to_owned(), reason: e.to_string() })
}

#[derive(Debug, Deserialize)]
struct DiscoveredMetadata {
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

/// The issuer's RFC 8414 metadata (OpenID configuration as a fallback), stating exactly
/// `issuer` ([`oauth_fetch::discovery`]).
async fn discover(http: &Fetcher, issuer: &str) -> Result<DiscoveredMetadata, RemoteError> {
    checked(http, issuer)?;
    let found = oauth_fetch::discovery::discover(http, issuer).await.map_err(|e| match e {
        DiscoveryError::Fetch { url, error } => RemoteError::Fetch { url, reason: error.to_string() },
        DiscoveryError::Status { url, status } => RemoteError::Fetch { url, reason: format!("answered {status}") },
        other => RemoteError::Invalid { url: other.url().to_owned(), reason: other.to_string() },
    })?;
    serde_json::from_value(found.document).map_err(|e| RemoteError::Invalid { url: found.url, reason: e.to_string() })
}

// ---------------------------------------------------------------------------------------------
// JWKS

/// Verifies JWT access tokens against a remote authorization server's JWKS: RFC 9068 ones by
/// default, or those of an identity provider read through an [`IssuerProfile`].
#[derive(Debug, Clone)]
pub struct JwksVerifier {
    inner: Arc<JwksInner>,
    validation: TokenValidation,
    /// How tokens are read when the profile is not the strict one: the rules their header and
    /// registered claims must meet, and the profile that maps the rest.
    mapped: Option<Arc<(JwtRules, IssuerProfile)>>,
    min_refresh: Duration,
    cache: Option<TokenCache>,
}

/// What clones share: the keys and when they were last fetched.
#[derive(Debug)]
struct JwksInner {
    http: Fetcher,
    jwks_uri: String,
    keys: RwLock<Arc<VerifyingKeys>>,
    last_fetch: Mutex<Instant>,
    refreshing: tokio::sync::Mutex<()>,
}

impl JwksVerifier {
    /// Reads `issuer`'s metadata, checks that it states exactly that issuer, and uses its
    /// `jwks_uri`. Tokens must be issued by `issuer` for `resource`, as RFC 9068 says
    /// ([`IssuerProfile::rfc9068`]).
    pub async fn discover(issuer: &str, resource: &ResourceUri) -> Result<Self, RemoteError> {
        Self::discover_with(issuer, resource, IssuerProfile::rfc9068()).await
    }

    /// [`Self::discover`] for tokens read as `profile` says (Keycloak's, Entra's, …).
    /// [`RemoteError::Config`] when the profile cannot be used with `issuer` (an Entra issuer
    /// of no single tenant, an Entra profile without the API's application id as an audience,
    /// Okta's org authorization server).
    pub async fn discover_with(
        issuer: &str,
        resource: &ResourceUri,
        profile: IssuerProfile,
    ) -> Result<Self, RemoteError> {
        let mapped = mapping(issuer, resource, profile)?;
        let http = http_client();
        let meta = discover(&http, issuer).await?;
        let jwks_uri = meta.jwks_uri.ok_or_else(|| RemoteError::Invalid {
            url: well_known_url("oauth-authorization-server", issuer),
            reason: "the metadata has no jwks_uri; use introspection".into(),
        })?;
        Self::with_http(http, issuer, resource, jwks_uri, mapped).await
    }

    /// RFC 9068 tokens of `issuer` for `resource`, verified with the keys at `jwks_uri`.
    pub async fn new(issuer: &str, resource: &ResourceUri, jwks_uri: impl Into<String>) -> Result<Self, RemoteError> {
        Self::new_with(issuer, resource, jwks_uri, IssuerProfile::rfc9068()).await
    }

    /// [`Self::new`] for tokens read as `profile` says.
    pub async fn new_with(
        issuer: &str,
        resource: &ResourceUri,
        jwks_uri: impl Into<String>,
        profile: IssuerProfile,
    ) -> Result<Self, RemoteError> {
        let mapped = mapping(issuer, resource, profile)?;
        Self::with_http(http_client(), issuer, resource, jwks_uri.into(), mapped).await
    }

    async fn with_http(
        http: Fetcher,
        issuer: &str,
        resource: &ResourceUri,
        jwks_uri: String,
        mapped: Option<Arc<(JwtRules, IssuerProfile)>>,
    ) -> Result<Self, RemoteError> {
        checked(&http, issuer)?;
        let set: Jwks = get_json(&http, &jwks_uri).await?;
        let keys = VerifyingKeys::from_jwks(&set);
        if keys.is_empty() {
            return Err(RemoteError::Invalid {
                url: jwks_uri,
                reason: "no usable signing key (asymmetric, with a kid)".into(),
            });
        }
        tracing::info!(jwks_uri = %jwks_uri, keys = keys.len(), "loaded the authorization server's keys");
        Ok(Self {
            inner: Arc::new(JwksInner {
                http,
                jwks_uri,
                keys: RwLock::new(Arc::new(keys)),
                last_fetch: Mutex::new(Instant::now()),
                refreshing: tokio::sync::Mutex::new(()),
            }),
            validation: TokenValidation::new(issuer, resource.as_str()),
            mapped,
            min_refresh: Duration::from_secs(30),
            cache: Some(TokenCache::new(TokenCacheConfig::default())),
        })
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default: 60 s.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.validation = self.validation.with_leeway(leeway);
        if let Some(mapped) = &mut self.mapped {
            let (rules, _) = Arc::make_mut(mapped);
            *rules = rules.clone().with_leeway(leeway);
        }
        self
    }

    /// The profile tokens are read with.
    pub fn profile(&self) -> IssuerProfile {
        self.mapped.as_ref().map_or_else(IssuerProfile::rfc9068, |m| m.1.clone())
    }

    /// The least time between two fetches of the JWKS for an unknown `kid`. Default: 30 s, so a
    /// stream of tokens with made-up key ids cannot make this server hammer the authorization
    /// server.
    #[must_use]
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// Replaces the verified-token cache. Default: [`TokenCacheConfig::default`]. Revocations at
    /// the remote server are not seen before a token's `exp` (a JWT carries no revocation);
    /// use [`IntrospectionVerifier`] where they must be.
    #[must_use]
    pub fn with_cache(mut self, cache: TokenCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Turns the cache off: every request pays for a signature check.
    #[must_use]
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// How many keys are loaded.
    pub fn key_count(&self) -> usize {
        self.keys().len()
    }

    fn keys(&self) -> Arc<VerifyingKeys> {
        match self.inner.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches the JWKS again, unless it was fetched less than `min_refresh` ago; returns whether
    /// the keys changed.
    async fn refresh(&self) -> bool {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        {
            let mut last = self.inner.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < self.min_refresh {
                return false;
            }
            *last = Instant::now();
        }
        match get_json::<Jwks>(&self.inner.http, &self.inner.jwks_uri).await {
            Ok(set) => {
                let keys = VerifyingKeys::from_jwks(&set);
                if keys.is_empty() {
                    tracing::warn!(jwks_uri = %self.inner.jwks_uri, "the refreshed JWKS has no usable key; keeping the old keys");
                    return false;
                }
                tracing::info!(jwks_uri = %self.inner.jwks_uri, keys = keys.len(), "reloaded the authorization server's keys");
                match self.inner.keys.write() {
                    Ok(mut k) => *k = Arc::new(keys),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the authorization server's keys");
                false
            }
        }
    }

    async fn verify_uncached(&self, token: &str, now: UnixTime) -> Result<AuthContext, Rejection> {
        let refused = |e: VerifyError| Rejection::new(e.reason(), e.to_string());
        let Some(mapped) = &self.mapped else {
            let claims = match self.keys().verify(token, &self.validation, now) {
                Err(VerifyError::UnknownKey(Some(_))) if self.refresh().await => {
                    self.keys().verify(token, &self.validation, now)
                }
                other => other,
            }
            .map_err(refused)?;
            return strict_context(claims);
        };
        let (rules, profile) = &**mapped;
        let jwt = match self.keys().verify_jwt(token, rules, now) {
            Err(VerifyError::UnknownKey(Some(_))) if self.refresh().await => self.keys().verify_jwt(token, rules, now),
            other => other,
        }
        .map_err(refused)?;
        profile.context(&jwt, token)
    }
}

/// The rules of `profile` for tokens of `issuer` for `resource`; `None` for the strict profile,
/// which takes the RFC 9068 path.
fn mapping(
    issuer: &str,
    resource: &ResourceUri,
    profile: IssuerProfile,
) -> Result<Option<Arc<(JwtRules, IssuerProfile)>>, RemoteError> {
    if profile.is_strict() {
        return Ok(None);
    }
    let rules = profile.rules(issuer, resource.as_str()).map_err(|reason| RemoteError::Config {
        url: issuer.to_owned(),
        reason: format!("the {} profile: {reason}", profile.name()),
    })?;
    Ok(Some(Arc::new((rules, profile))))
}

/// The caller of a strict RFC 9068 token. RFC 9068 2.2: a token obtained with no resource
/// owner (client credentials) has the client's identifier as its `sub`; other servers than
/// this project's mark it so, not with `machine: true`, and it must not pass for a person.
fn strict_context(claims: AccessTokenClaims) -> Result<AuthContext, Rejection> {
    let client_credentials = !claims.machine && claims.sub == claims.client_id;
    let mut ctx = context_from_claims(claims)?;
    if client_credentials {
        ctx.subject = UserId::for_client(&ctx.client_id);
    }
    Ok(ctx)
}

#[async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &str) -> Result<AuthContext, Rejection> {
        let now = SystemClock.now();
        through_cache(self.cache.as_ref(), token, now, self.verify_uncached(token, now)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Introspection

/// Asks the authorization server whether each token is active (RFC 7662), authenticating as a
/// confidential client with `client_secret_basic`.
#[derive(Debug, Clone)]
pub struct IntrospectionVerifier {
    http: Fetcher,
    endpoint: String,
    client_id: String,
    client_secret: Arc<ClientSecret>,
    issuer: String,
    resource: String,
    cache: Option<TokenCache>,
    refusals: Option<Arc<Refusals>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Introspection refusals remembered for a short time, keyed by the token's SHA-256 (the
/// token itself is not kept); bounded in size.
#[derive(Debug)]
struct Refusals {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<[u8; 32], (Instant, Rejection)>>,
}

impl Refusals {
    fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { ttl, max_entries: max_entries.max(1), entries: Mutex::new(HashMap::new()) }
    }

    fn key(token: &str) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Rejection> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).filter(|(until, _)| *until > now).map(|(_, r)| r.clone())
    }

    fn put(&self, key: [u8; 32], rejection: Rejection, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= self.max_entries
                && let Some(first) = entries.iter().min_by_key(|(_, (until, _))| *until).map(|(k, _)| *k)
            {
                entries.remove(&first);
            }
        }
        entries.insert(key, (now + self.ttl, rejection));
    }
}

/// The members of an RFC 7662 response the guard uses.
#[derive(Debug, Deserialize)]
struct Introspected {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

impl IntrospectionVerifier {
    /// Reads `issuer`'s metadata (its `issuer` checked exactly) and uses its introspection
    /// endpoint, authenticating as `client_id` with `client_secret`. Tokens must be for
    /// `resource`.
    pub async fn discover(
        issuer: &str,
        resource: &ResourceUri,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
    ) -> Result<Self, RemoteError> {
        let http = http_client();
        let meta = discover(&http, issuer).await?;
        let endpoint = meta.introspection_endpoint.ok_or_else(|| RemoteError::Invalid {
            url: well_known_url("oauth-authorization-server", issuer),
            reason: "the metadata has no introspection_endpoint".into(),
        })?;
        Ok(Self::new(issuer, resource, endpoint, client_id, client_secret)?.with_http(http))
    }

    /// Introspects at `endpoint`, as `client_id` with `client_secret`. Tokens must be issued by
    /// `issuer` for `resource`. Accepted tokens are cached for at most 60 s (and never past
    /// their `exp`): a token revoked at the server is refused within that bound. Refused
    /// tokens are remembered for 30 s, and at most 8 introspection requests are in flight.
    /// `issuer` and `endpoint` must be https (plain http only to loopback).
    pub fn new(
        issuer: &str,
        resource: &ResourceUri,
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
    ) -> Result<Self, RemoteError> {
        let http = http_client();
        let endpoint = endpoint.into();
        checked(&http, issuer)?;
        checked(&http, &endpoint)?;
        Ok(Self {
            http,
            endpoint,
            client_id: client_id.into(),
            client_secret: Arc::new(client_secret),
            issuer: issuer.to_owned(),
            resource: resource.as_str().to_owned(),
            cache: Some(TokenCache::new(TokenCacheConfig::default().with_max_age(Duration::from_secs(60)))),
            refusals: Some(Arc::new(Refusals::new(NEGATIVE_TTL, NEGATIVE_ENTRIES))),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT)),
        })
    }

    fn with_http(mut self, http: Fetcher) -> Self {
        self.http = http;
        self
    }

    /// Replaces the cache; its `max_age` is how stale a revocation may be seen. Default: 60 s.
    #[must_use]
    pub fn with_cache(mut self, cache: TokenCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Asks the server on every request for a token it has not refused (see
    /// [`Self::with_negative_cache`]).
    #[must_use]
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Remembers each refused token (inactive, another audience, …) for `ttl`, at most
    /// `max_entries` of them. Default: 30 s, 10 000. A token the server refused does not become
    /// valid, and without this a stranger repeating a junk token makes one introspection call
    /// per request. Failures to reach the server are not remembered.
    #[must_use]
    pub fn with_negative_cache(mut self, ttl: Duration, max_entries: usize) -> Self {
        self.refusals = Some(Arc::new(Refusals::new(ttl, max_entries)));
        self
    }

    /// Introspection requests in flight at once. Default: 8. A request that waits longer than
    /// the request time limit (10 s) for its turn is answered as a failure to reach the server.
    #[must_use]
    pub fn with_max_concurrent(mut self, n: usize) -> Self {
        self.in_flight = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    async fn introspect(&self, token: &str, now: UnixTime) -> Result<AuthContext, Rejection> {
        let key = Refusals::key(token);
        let refused = |r: &Refusals| r.get(&key, Instant::now());
        if let Some(rejection) = self.refusals.as_deref().and_then(refused) {
            return Err(rejection);
        }
        let unreachable = |why: String| {
            tracing::error!(endpoint = %self.endpoint, reason = %why, "token introspection failed");
            Rejection::new(Reason::Internal, "the authorization server could not be asked about the token")
        };
        let Ok(Ok(_turn)) = tokio::time::timeout(TIMEOUT, self.in_flight.acquire()).await else {
            return Err(unreachable("too many introspection requests are waiting".into()));
        };
        // The same token may have been refused while this request waited for its turn.
        if let Some(rejection) = self.refusals.as_deref().and_then(refused) {
            return Err(rejection);
        }
        let answer = self.ask(token).await.map_err(unreachable)?;
        let verdict = self.judge(answer, now);
        if let (Err(rejection), Some(refusals)) = (&verdict, &self.refusals) {
            refusals.put(key, rejection.clone(), Instant::now());
        }
        verdict
    }

    /// The server's answer about `token`, or why there is none.
    async fn ask(&self, token: &str) -> Result<Introspected, String> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        // RFC 6749 2.3.1: the id and secret are form-encoded before Basic encoding.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let request = Request::new(Method::POST, self.endpoint.as_str())
            .basic_auth(enc(&self.client_id), enc(self.client_secret.secret()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form);
        let resp = self.http.send(request).await.map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("the introspection endpoint answered {}", resp.status));
        }
        serde_json::from_slice(&resp.body).map_err(|e| format!("not an RFC 7662 response: {e}"))
    }

    fn judge(&self, a: Introspected, now: UnixTime) -> Result<AuthContext, Rejection> {
        if !a.active {
            return Err(Rejection::new(
                Reason::GrantRevoked,
                "the authorization server says the token is not active (expired, revoked or unknown)",
            ));
        }
        if a.token_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("refresh_token")) {
            return Err(Rejection::new(Reason::TokenMalformed, "a refresh token is not an access token"));
        }
        if let Some(iss) = &a.iss
            && iss != &self.issuer
        {
            return Err(Rejection::new(
                Reason::TokenIssuerMismatch,
                format!("the token was issued by {iss}, expected {}", self.issuer),
            ));
        }
        let audiences: Vec<String> = match &a.aud {
            Some(serde_json::Value::String(s)) => s.split(", ").map(str::to_owned).collect(),
            Some(serde_json::Value::Array(v)) => v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|x| x == &self.resource) {
            return Err(Rejection::new(
                Reason::TokenAudienceMismatch,
                format!(
                    "the token is for {}, not {}",
                    if audiences.is_empty() { "no audience".into() } else { audiences.join(", ") },
                    self.resource
                ),
            ));
        }
        let exp =
            a.exp.ok_or_else(|| Rejection::new(Reason::TokenMalformed, "the introspection response has no exp"))?;
        if exp <= now.as_secs() {
            return Err(Rejection::new(Reason::TokenExpired, format!("the token expired at {exp}")));
        }
        let malformed = |what: &str| {
            Rejection::new(Reason::TokenMalformed, format!("the introspected {what} is missing or malformed"))
        };
        let subject = a.sub.as_deref().and_then(|s| UserId::parse(s).ok()).ok_or_else(|| malformed("sub"))?;
        let client_id =
            a.client_id.as_deref().and_then(|s| ClientId::parse(s).ok()).ok_or_else(|| malformed("client_id"))?;
        let scopes = ScopeSet::parse(a.scope.as_deref().unwrap_or_default()).map_err(|_| malformed("scope"))?;
        Ok(AuthContext::new(
            subject,
            client_id,
            scopes,
            UnixTime::from_secs(exp),
            self.issuer.clone(),
            a.jti.unwrap_or_default(),
        ))
    }
}

#[async_trait]
impl TokenVerifier for IntrospectionVerifier {
    async fn verify(&self, token: &str) -> Result<AuthContext, Rejection> {
        if token.len() > oauth_core::MAX_TOKEN_LEN {
            return Err(Rejection::new(Reason::TokenMalformed, "the token is too long"));
        }
        let now = SystemClock.now();
        through_cache(self.cache.as_ref(), token, now, self.introspect(token, now)).await
    }
}
