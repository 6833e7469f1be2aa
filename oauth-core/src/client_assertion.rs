//! JWT client authentication, `private_key_jwt` (RFC 7523 2.2 and 3, RFC 7521 4.2): the
//! client signs a short-lived JWT with its private key and sends it as `client_assertion`;
//! the server verifies it with the public keys the client registered inline (`jwks`) or
//! publishes (`jwks_uri`, fetched through the SSRF-safe fetcher and cached).
//!
//! What an assertion must be, each refused with 401 `invalid_client` and its own detail:
//! - signed with RS256, PS256, ES256 or EdDSA (never `none` or an HMAC: the algorithm comes
//!   from the key, and the header must agree), by a key of the client's set (by `kid`, or its
//!   only key of that algorithm), and with the client's registered
//!   `token_endpoint_auth_signing_alg` when it registered one;
//! - `iss` and `sub` both the client id; `aud` the issuer, the token endpoint, or the endpoint
//!   it is presented to;
//! - `exp` in the future and no further than [`MAX_ASSERTION_LIFETIME`] ahead; `nbf` and `iat`
//!   not in the future (all within the configured leeway);
//! - a `jti` never seen before: the mark is kept in the shared limit store until the
//!   assertion expires, so a replay at another replica is refused too.
//!
//! An unknown `kid` fetches the `jwks_uri` again (a client that rotated its key), at most once
//! every [`JWKS_REFETCH_INTERVAL`] per URL.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::client::Client;
use crate::clock::UnixTime;
use crate::error::{Error, OAuthError};
use crate::events::{FlowStep, Reason};
use crate::failure::Failure;
use crate::jwks::Jwks;
use crate::jwt::{Audience, MAX_TOKEN_LEN};
use crate::metadata_document::{DocumentFetchError, MetadataDocumentFetcher};
use crate::secret::SecretHash;
use crate::server::AuthorizationServer;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The algorithms a client assertion may be signed with, as advertised.
pub const ASSERTION_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];
/// How far ahead an assertion's `exp` may be: a longer-lived assertion is refused, which also
/// bounds how long its `jti` is remembered.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(600);
/// How often, at most, an unknown `kid` fetches a client's `jwks_uri` again.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest `jti` accepted.
pub(crate) const MAX_JTI_LEN: usize = 256;
/// Keys of one client's set that are considered; the rest are ignored.
pub(crate) const MAX_CLIENT_KEYS: usize = 16;
/// `jwks_uri` sets kept in the cache.
const MAX_CACHED_SETS: usize = 1024;
/// Bounds on how long a fetched set is kept, whatever its `Cache-Control` says.
const MIN_KEYS_CACHE: Duration = Duration::from_secs(60);
const MAX_KEYS_CACHE: Duration = Duration::from_secs(3600);

/// A `client_assertion` as received: a JWT, never shown in `Debug`.
#[derive(Clone)]
pub struct ClientAssertion(String);

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientAssertion([redacted])")
    }
}

impl ClientAssertion {
    /// Wraps a received assertion.
    pub fn new(jwt: impl Into<String>) -> Self {
        Self(jwt.into())
    }

    /// The JWT.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks `client_assertion_type` and `client_assertion` as received: both or neither,
    /// the JWT-bearer type, a bounded size. `Ok(None)` when neither was sent.
    pub(crate) fn from_params(kind: Option<&str>, assertion: Option<&Self>) -> Result<Option<Self>, OAuthError> {
        match (kind, assertion) {
            (None, None) => Ok(None),
            (Some(_), None) | (None, Some(_)) => Err(OAuthError::invalid_request(
                "client_assertion_type and client_assertion are sent together (RFC 7521 4.2)",
            )),
            (Some(k), Some(_)) if k != CLIENT_ASSERTION_TYPE => Err(OAuthError::invalid_client(format!(
                "client_assertion_type '{}' is not supported; use {CLIENT_ASSERTION_TYPE}",
                crate::params::clip(k)
            ))),
            (Some(_), Some(a)) if a.0.len() > MAX_TOKEN_LEN => {
                Err(OAuthError::invalid_client(format!("the client assertion is longer than {MAX_TOKEN_LEN} bytes")))
            }
            (Some(_), Some(a)) => Ok(Some(a.clone())),
        }
    }

    /// The client the assertion claims to come from (`sub`, which must equal `iss`), read
    /// before anything is verified: only to find the client whose keys verify it.
    pub(crate) fn claimed_client(&self) -> Result<String, OAuthError> {
        #[derive(Deserialize)]
        struct Claimed {
            sub: Option<String>,
        }
        let bad = || OAuthError::invalid_client("the client assertion is not a JWT with a sub claim naming the client");
        let claimed: Claimed = jsonwebtoken::dangerous::insecure_decode_claims(&self.0).map_err(|_| bad())?;
        claimed.sub.filter(|s| !s.is_empty()).ok_or_else(bad)
    }
}

/// One usable public key of a client.
pub(crate) struct ClientKey {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The usable signature keys of `set` (asymmetric, of an accepted algorithm), at most
/// [`MAX_CLIENT_KEYS`] of them.
pub(crate) fn usable_keys(set: &Jwks) -> Vec<ClientKey> {
    use jsonwebtoken::jwk::PublicKeyUse;
    set.0
        .keys
        .iter()
        .filter(|jwk| jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature))
        .filter_map(|jwk| {
            let alg = crate::jwks::algorithm(jwk.common.key_algorithm, &jwk.algorithm)?;
            if !accepted(alg) {
                return None;
            }
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(ClientKey { kid: jwk.common.key_id.clone(), alg, key })
        })
        .take(MAX_CLIENT_KEYS)
        .collect()
}

pub(crate) fn accepted(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA)
}

/// The name of an accepted algorithm, as in [`ASSERTION_ALGORITHMS`].
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::PS256 => "PS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "another algorithm",
    }
}

/// Whether `alg` names an accepted assertion algorithm (for registration).
pub(crate) fn is_assertion_algorithm(alg: &str) -> bool {
    ASSERTION_ALGORITHMS.contains(&alg)
}

/// Checks a client's key material as registered or described: `jwks` or `jwks_uri`, not both;
/// a set with at least one usable key; an https `jwks_uri`.
pub(crate) fn check_key_material(jwks: Option<&Jwks>, jwks_uri: Option<&str>) -> Result<(), OAuthError> {
    match (jwks, jwks_uri) {
        (Some(_), Some(_)) => {
            Err(OAuthError::invalid_client_metadata("jwks and jwks_uri must not both be present (RFC 7591 2)"))
        }
        (None, None) => Err(OAuthError::invalid_client_metadata(
            "private_key_jwt needs the client's public keys: send jwks_uri (or jwks)",
        )),
        (Some(set), None) if usable_keys(set).is_empty() => Err(OAuthError::invalid_client_metadata(format!(
            "jwks holds no usable signature key (accepted: {})",
            ASSERTION_ALGORITHMS.join(", ")
        ))),
        (Some(_), None) => Ok(()),
        (None, Some(uri)) => {
            let parsed = url::Url::parse(uri).ok().filter(|u| {
                u.scheme() == "https"
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.fragment().is_none()
            });
            if uri.len() > 2048 || parsed.is_none() {
                return Err(OAuthError::invalid_client_metadata(
                    "jwks_uri must be an https URL without user info or fragment, of at most 2048 characters",
                ));
            }
            Ok(())
        }
    }
}

/// The `jwks_uri` sets fetched so far, per URL.
#[derive(Default)]
pub(crate) struct JwksCache {
    sets: Mutex<HashMap<String, CachedSet>>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.sets.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("JwksCache").field("sets", &n).finish()
    }
}

/// A key set as fetched: kept for its `max-age` (between one minute and an hour), and
/// fetched again sooner only for a key id it lacks, at most every [`JWKS_REFETCH_INTERVAL`].
/// The rule of every cached set of keys in the crate: clients' `jwks_uri` here, upstream
/// providers' in [`crate::upstream`].
#[derive(Clone)]
pub(crate) struct CachedSet {
    keys: Arc<Vec<ClientKey>>,
    fetched_at: UnixTime,
    expires_at: UnixTime,
}

impl CachedSet {
    /// `keys` fetched `now`, from an answer with `max_age` (if it said).
    pub(crate) fn fetched(keys: Vec<ClientKey>, now: UnixTime, max_age: Option<Duration>) -> Self {
        let keep = max_age.unwrap_or(MAX_KEYS_CACHE).clamp(MIN_KEYS_CACHE, MAX_KEYS_CACHE);
        Self { keys: Arc::new(keys), fetched_at: now, expires_at: now.plus(keep) }
    }

    /// The keys, while they are fresh.
    pub(crate) fn fresh(&self, now: UnixTime) -> Option<Arc<Vec<ClientKey>>> {
        (self.expires_at > now).then(|| self.keys.clone())
    }

    /// The keys to use without a fetch: fresh ones, unless a token names a key they lack
    /// (`refetch`) and the last fetch is old enough to fetch again.
    pub(crate) fn usable(&self, now: UnixTime, refetch: bool) -> Option<Arc<Vec<ClientKey>>> {
        let refetch_allowed = now.seconds_since(self.fetched_at) >= duration_secs(JWKS_REFETCH_INTERVAL);
        self.fresh(now).filter(|_| !(refetch && refetch_allowed))
    }

    /// The keys, fresh or not.
    pub(crate) fn keys(&self) -> Arc<Vec<ClientKey>> {
        self.keys.clone()
    }
}

impl JwksCache {
    fn get(&self, uri: &str) -> Option<CachedSet> {
        self.sets.lock().unwrap_or_else(PoisonError::into_inner).get(uri).cloned()
    }

    fn put(&self, uri: &str, set: CachedSet, now: UnixTime) {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        if sets.len() >= MAX_CACHED_SETS && !sets.contains_key(uri) {
            sets.retain(|_, s| s.expires_at > now);
            if sets.len() >= MAX_CACHED_SETS
                && let Some(oldest) = sets.iter().min_by_key(|(_, s)| s.fetched_at).map(|(k, _)| k.clone())
            {
                sets.remove(&oldest);
            }
        }
        sets.insert(uri.to_owned(), set);
    }
}

/// The claims of a client assertion that are checked.
#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// A refusal of the assertion: 401 `invalid_client` told `told`, the operator `detail`.
fn refused(reason: Reason, told: &str, detail: String) -> Failure {
    Failure::new(reason, OAuthError::invalid_client(told.to_owned())).noting(detail)
}

fn invalid(told: &str, detail: impl Into<String>) -> Failure {
    refused(Reason::ClientAssertionInvalid, told, detail.into())
}

impl AuthorizationServer {
    /// Verifies `assertion` as `client`'s authentication at the endpoint of `step`. The outer
    /// error is the store's; the inner one the refusal.
    pub(crate) async fn verify_client_assertion(
        &self,
        client: &Client,
        assertion: &ClientAssertion,
        step: FlowStep,
    ) -> Result<Result<(), Failure>, Error> {
        let checked = match self.check_assertion(client, assertion, step).await {
            Ok(claims) => claims,
            Err(f) => return Ok(Err(f)),
        };
        let (jti, exp) = checked;
        let leeway = self.config().leeway;
        let until = UnixTime::from_secs(exp).plus(leeway);
        let mut key = client.id.as_str().as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(jti.as_bytes());
        let mark = format!("assertion:{}", SecretHash::of(&key).to_hex());
        if !self.stores().limits.first_use(&mark, until, self.now()).await? {
            let detail = format!("jti '{}' of client '{}' was already used", crate::params::clip(&jti), client.id);
            return Ok(Err(refused(
                Reason::ClientAssertionReplayed,
                "the client assertion was already used: sign a new one, with a new jti, for each request",
                detail,
            )));
        }
        Ok(Ok(()))
    }

    /// Every check but the replay: the assertion's `jti` and `exp` when it passes.
    async fn check_assertion(
        &self,
        client: &Client,
        assertion: &ClientAssertion,
        step: FlowStep,
    ) -> Result<(String, i64), Failure> {
        let header = jsonwebtoken::decode_header(assertion.as_str()).map_err(|e| {
            invalid("the client assertion is not a well-formed JWT", format!("header: {}", clip_err(&e)))
        })?;
        if !accepted(header.alg) {
            return Err(invalid(
                &format!("the client assertion must be signed with one of {}", ASSERTION_ALGORITHMS.join(", ")),
                format!("alg {:?}", header.alg),
            ));
        }
        if let Some(registered) = client.assertion_alg.as_deref()
            && registered != alg_name(header.alg)
        {
            return Err(invalid(
                &format!("the client registered token_endpoint_auth_signing_alg {registered}; sign with it"),
                format!("alg {} instead of {registered}", alg_name(header.alg)),
            ));
        }
        let kid = header.kid.as_deref();
        let mut keys = self.client_keys(client, false).await?;
        if pick(&keys, header.alg, kid).is_none() && client.jwks_uri.is_some() {
            // The client may have rotated its key since the set was fetched.
            keys = self.client_keys(client, true).await?;
        }
        let key = match pick(&keys, header.alg, kid) {
            Some(Ok(k)) => k,
            Some(Err(n)) => {
                return Err(invalid(
                    "the client assertion has no kid and the client has several keys of its algorithm; send kid",
                    format!("{n} keys for {}", alg_name(header.alg)),
                ));
            }
            None => {
                let known: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
                return Err(invalid(
                    "the client assertion was signed with a key the client has not published",
                    format!(
                        "kid {:?} alg {}; the client's keys: [{}]",
                        kid.map(crate::params::clip),
                        alg_name(header.alg),
                        known.join(", ")
                    ),
                ));
            }
        };
        let v = crate::jwt::signature_only(header.alg);
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion.as_str(), &key.key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid("the client assertion's signature is invalid", "signature does not verify")
                }
                _ => invalid(
                    "the client assertion is malformed: it needs iss, sub, aud, exp and jti claims",
                    clip_err(&e),
                ),
            })?
            .claims;
        let id = client.id.as_str();
        if claims.iss != id || claims.sub != id {
            return Err(invalid(
                "the client assertion's iss and sub must both be the client_id",
                format!(
                    "iss '{}', sub '{}', client '{id}'",
                    crate::params::clip(&claims.iss),
                    crate::params::clip(&claims.sub)
                ),
            ));
        }
        let audiences = self.assertion_audiences(step);
        if !audiences.iter().any(|a| claims.aud.contains(a)) {
            return Err(invalid(
                &format!("the client assertion's aud must be this server's issuer ({})", self.config().issuer),
                format!("aud {}; accepted: {}", clip_owned(claims.aud.describe()), audiences.join(", ")),
            ));
        }
        let now = self.now().as_secs();
        let leeway = i64::try_from(self.config().leeway.as_secs()).unwrap_or(i64::MAX);
        let max_ahead = i64::try_from(MAX_ASSERTION_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(invalid(
                "the client assertion has expired (check the client's clock)",
                format!("expired at {} (now {now})", claims.exp),
            ));
        }
        if claims.exp > now.saturating_add(max_ahead).saturating_add(leeway) {
            return Err(invalid(
                &format!("the client assertion lives too long: exp at most {max_ahead} s ahead"),
                format!("exp {} is {} s ahead", claims.exp, claims.exp.saturating_sub(now)),
            ));
        }
        for (name, t) in [("nbf", claims.nbf), ("iat", claims.iat)] {
            if let Some(t) = t
                && t > now.saturating_add(leeway)
            {
                return Err(invalid(
                    "the client assertion is not valid yet (check the client's clock)",
                    format!("{name} {t} is in the future (now {now})"),
                ));
            }
        }
        let jti = claims.jti.filter(|j| !j.is_empty()).ok_or_else(|| {
            invalid("the client assertion needs a jti, unique for each assertion", "no jti".to_owned())
        })?;
        if jti.len() > MAX_JTI_LEN {
            return Err(invalid(&format!("the client assertion's jti is longer than {MAX_JTI_LEN} bytes"), "long jti"));
        }
        Ok((jti, claims.exp))
    }

    /// The audiences an assertion presented at the endpoint of `step` may name: the issuer
    /// (with or without a trailing slash), the token endpoint, and that endpoint.
    fn assertion_audiences(&self, step: FlowStep) -> Vec<String> {
        let c = self.config();
        let issuer = c.issuer.to_string();
        let mut out = vec![issuer.clone()];
        match issuer.strip_suffix('/') {
            Some(bare) => out.push(bare.to_owned()),
            None => out.push(format!("{issuer}/")),
        }
        out.push(c.issuer.endpoint(&c.paths.token));
        let here = match step {
            FlowStep::Revocation => Some(&c.paths.revocation),
            FlowStep::Introspection => Some(&c.paths.introspection),
            _ => None,
        };
        if let Some(path) = here {
            out.push(c.issuer.endpoint(path));
        }
        out
    }

    /// The client's usable keys: its inline set, or its `jwks_uri` set from the cache, fetched
    /// when missing or expired, and when `refetch` and the last fetch is old enough.
    async fn client_keys(&self, client: &Client, refetch: bool) -> Result<Arc<Vec<ClientKey>>, Failure> {
        const TOLD: &str = "the client's public keys could not be obtained from its jwks_uri";
        if let Some(set) = &client.jwks {
            return Ok(Arc::new(usable_keys(set)));
        }
        let Some(uri) = client.jwks_uri.as_deref() else {
            return Err(refused(
                Reason::ClientKeysUnavailable,
                "the client has no registered public keys (jwks or jwks_uri)",
                format!("client '{}' uses private_key_jwt without keys", client.id),
            ));
        };
        self.keys_at(uri, refetch, client.id.as_str())
            .await
            .map_err(|why| refused(Reason::ClientKeysUnavailable, TOLD, format!("{uri}: {why}")))
    }

    /// The usable keys of the set at `uri`, for `whose` (the log's word): from the cache,
    /// fetched when missing or expired, and when `refetch` and the last fetch is old enough.
    /// A failed fetch keeps a set that is still fresh; otherwise its error is the operator's
    /// detail.
    pub(crate) async fn keys_at(&self, uri: &str, refetch: bool, whose: &str) -> Result<Arc<Vec<ClientKey>>, String> {
        let now = self.now();
        let cached = self.jwks_cache().get(uri);
        if let Some(c) = &cached {
            if let Some(keys) = c.usable(now, refetch) {
                return Ok(keys);
            }
            if c.fresh(now).is_some() {
                tracing::debug!(whose, jwks_uri = uri, "unknown key id: fetching the keys again");
            }
        }
        let Some(fetcher) = self.key_fetcher() else {
            return Err("no fetcher is configured for jwks_uri".to_owned());
        };
        match fetch_keys(fetcher.as_ref(), uri).await {
            Ok((keys, max_age)) => {
                let set = CachedSet::fetched(keys, now, max_age);
                self.jwks_cache().put(uri, set.clone(), now);
                Ok(set.keys())
            }
            Err(why) => match cached.and_then(|c| c.fresh(now)) {
                Some(keys) => {
                    tracing::warn!(whose, jwks_uri = uri, error = %why, "could not refetch keys; using the cached set");
                    Ok(keys)
                }
                None => Err(why),
            },
        }
    }
}

/// Fetches and reads a client's set: its usable keys and the response's `max-age`.
async fn fetch_keys(
    fetcher: &dyn MetadataDocumentFetcher,
    uri: &str,
) -> Result<(Vec<ClientKey>, Option<Duration>), String> {
    let doc = fetcher.fetch(uri).await.map_err(|e: DocumentFetchError| e.to_string())?;
    let set = Jwks::from_json(&doc.body).map_err(|e| format!("not a JWK set: {}", clip_owned(e.to_string())))?;
    let keys = usable_keys(&set);
    if keys.is_empty() {
        return Err(format!("the set holds no usable signature key (accepted: {})", ASSERTION_ALGORITHMS.join(", ")));
    }
    Ok((keys, doc.max_age))
}

/// The key for a header's `alg` and `kid`: by `kid` when there is one, else the only key of
/// that algorithm (`Err(n)` when there are `n` of them).
pub(crate) fn pick<'k>(
    keys: &'k [ClientKey],
    alg: Algorithm,
    kid: Option<&str>,
) -> Option<Result<&'k ClientKey, usize>> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.alg == alg && k.kid.as_deref() == Some(kid)).map(Ok),
        None => {
            let mut of_alg = keys.iter().filter(|k| k.alg == alg);
            match (of_alg.next(), of_alg.count()) {
                (None, _) => None,
                (Some(k), 0) => Some(Ok(k)),
                (Some(_), more) => Some(Err(more + 1)),
            }
        }
    }
}

pub(crate) fn duration_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub(crate) fn clip_err(e: &jsonwebtoken::errors::Error) -> String {
    clip_owned(e.to_string())
}

pub(crate) fn clip_owned(s: String) -> String {
    crate::events::escape_detail(s.chars().take(256).collect())
}
