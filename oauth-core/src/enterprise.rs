//! Enterprise-Managed Authorization (MCP extension
//! `io.modelcontextprotocol/enterprise-managed-authorization`): the client obtains an identity
//! assertion (an ID-JAG, `typ: oauth-id-jag+jwt`) from its enterprise IdP by token exchange
//! (RFC 8693) and presents it here with the jwt-bearer grant (RFC 7523 2.1); the person is
//! signed in by their enterprise, not on this server's page.
//!
//! What an ID-JAG must be, each refused with `invalid_grant` and a reason of its own:
//! - from a configured [`EnterpriseIdp`] (`iss` exactly its issuer), presented by a client that
//!   IdP is trusted for, and signed by one of the IdP's keys (RS256, PS256, ES256, EdDSA);
//! - `aud` this server's issuer, `client_id` the authenticated client, `resource` (when present)
//!   this server's MCP resource;
//! - `exp` in the future and at most [`MAX_ID_JAG_LIFETIME`] ahead, `iat` not ahead;
//! - a `jti` never presented before (the mark is shared by every replica);
//! - no `cnf` or `authorization_details`, which this server does not support.
//!
//! The person is the user whose username is the assertion's `sub`; failing that, when the IdP
//! allows it, the user whose username is the assertion's `email` if `email_verified` is true.
//! The grant issues an access token and no refresh token: the client asks its IdP again.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::client::Client;
use crate::client_assertion::{ClientKey, accepted, alg_name, clip_err, clip_owned, pick, usable_keys};
use crate::clock::UnixTime;
use crate::error::{Error, OAuthError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::failure::Failure;
use crate::jwks::Jwks;
use crate::jwt::Audience;
use crate::params::clip;
use crate::policy::resolve_scopes;
use crate::secret::SecretHash;
use crate::server::AuthorizationServer;
use crate::store::Grant;
use crate::token::{TokenRequest, TokenResponse};
use crate::types::{ClientId, UserId};

/// The jwt-bearer grant type (RFC 7523 2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The JWT type of an identity assertion authorization grant.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// How far ahead an ID-JAG's `exp` may be (IdPs issue them for minutes).
pub const MAX_ID_JAG_LIFETIME: Duration = Duration::from_secs(3600);

/// Where an enterprise IdP's signing keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdpKeys {
    /// Given in the configuration.
    Inline(Jwks),
    /// Published at this https URL (the IdP's `jwks_uri`), fetched through the server's
    /// SSRF-safe fetcher and cached.
    Url(String),
    /// Published at the `jwks_uri` of the IdP's metadata, found by [`discover_idp_keys`]
    /// before the server starts (the `mcp-oauth` builder does it when it builds); a server
    /// configured with keys still to discover refuses to start.
    Discover,
}

/// An enterprise IdP whose identity assertions this server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnterpriseIdp {
    /// Its issuer identifier, exactly as in its assertions' `iss`.
    pub issuer: String,
    /// Its signing keys.
    pub keys: IdpKeys,
    /// The clients that may present its assertions (each also registered with the
    /// jwt-bearer grant).
    pub clients: Vec<ClientId>,
    /// Whether a person whose `sub` is no username here is found by a verified `email`.
    pub link_by_email: bool,
}

impl EnterpriseIdp {
    /// An IdP `issuer` with its `keys`, trusted for `clients`; people found by `sub` only.
    pub fn new(issuer: impl Into<String>, keys: IdpKeys, clients: Vec<ClientId>) -> Self {
        Self { issuer: issuer.into(), keys, clients, link_by_email: false }
    }

    /// Also finds people by their verified `email` (`email_verified: true`).
    #[must_use]
    pub fn link_by_email(mut self) -> Self {
        self.link_by_email = true;
        self
    }
}

/// Finds an enterprise IdP's keys by discovery: its OpenID configuration
/// (`{issuer}/.well-known/openid-configuration`), else its RFC 8414 metadata (path-inserted),
/// fetched with `fetcher` (the server's SSRF-safe fetcher), whose `issuer` must be `issuer`
/// exactly and whose `jwks_uri` must be https. Done once, when the server is configured: an
/// IdP moves its keys within its `jwks_uri`, not the `jwks_uri` itself.
///
/// The error says what was fetched and what was wrong with it, for the operator.
pub async fn discover_idp_keys(
    fetcher: &dyn crate::metadata_document::MetadataDocumentFetcher,
    issuer: &str,
) -> Result<IdpKeys, String> {
    #[derive(Deserialize)]
    struct Discovered {
        issuer: String,
        #[serde(default)]
        jwks_uri: Option<String>,
    }
    let openid = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let oauth = crate::well_known_url("oauth-authorization-server", issuer);
    let mut tried = Vec::new();
    for url in [openid, oauth] {
        let body = match fetcher.fetch(&url).await {
            Ok(doc) => doc.body,
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                continue;
            }
        };
        let doc: Discovered = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not authorization server metadata: {}", clip_owned(e.to_string())))?;
        if doc.issuer != issuer {
            return Err(format!(
                "{url} states issuer '{}', not '{issuer}': configure the IdP with the issuer its tokens carry",
                clip(&doc.issuer)
            ));
        }
        return match doc.jwks_uri {
            Some(uri) if uri.starts_with("https://") && uri.len() <= crate::types::MAX_URI_LEN => Ok(IdpKeys::Url(uri)),
            Some(uri) => Err(format!("{url} names jwks_uri '{}', which is not an https URL", clip(&uri))),
            None => Err(format!("{url} names no jwks_uri")),
        };
    }
    Err(format!("no metadata for {issuer}: {}", tried.join("; ")))
}

/// The claims of an ID-JAG that are checked.
#[derive(Deserialize)]
struct IdJagClaims {
    iss: String,
    sub: String,
    aud: Audience,
    client_id: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    resource: Option<Audience>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    cnf: Option<serde_json::Value>,
    #[serde(default)]
    authorization_details: Option<serde_json::Value>,
}

fn grant_refused(reason: Reason, told: &str, detail: impl std::fmt::Display) -> Failure {
    Failure::new(reason, OAuthError::invalid_grant(told.to_owned())).noting(detail)
}

fn invalid(told: &str, detail: impl std::fmt::Display) -> Failure {
    grant_refused(Reason::IdJagInvalid, told, detail)
}

impl AuthorizationServer {
    /// The jwt-bearer grant with an enterprise IdP's ID-JAG.
    pub(crate) async fn enterprise_assertion(
        &self,
        client: &Client,
        req: TokenRequest,
    ) -> Result<TokenResponse, Error> {
        let step = FlowStep::EnterpriseAssertion;
        let reject = |f: Failure| self.reject(step, Some(&client.id), f);
        if self.config().enterprise_idps.is_empty() {
            let e =
                OAuthError::unsupported_grant_type("this server trusts no enterprise IdP: the jwt-bearer grant is off");
            return Err(reject(Failure::new(Reason::UnsupportedGrantType, e)).await);
        }
        let Some(assertion) = req.assertion.as_ref() else {
            let e = OAuthError::invalid_request("assertion is missing: send the ID-JAG from your enterprise IdP");
            return Err(reject(Failure::new(Reason::InvalidRequest, e)).await);
        };
        let claims = match self.check_id_jag(client, assertion.as_str()).await? {
            Ok(c) => c,
            Err(f) => return Err(reject(f).await),
        };
        let mark = {
            let mut key = claims.iss.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(claims.jti.as_deref().unwrap_or_default().as_bytes());
            format!("id-jag:{}", SecretHash::of(&key).to_hex())
        };
        let until = UnixTime::from_secs(claims.exp).plus(self.config().leeway);
        if !self.stores().limits.first_use(&mark, until, self.now()).await? {
            let detail = format!(
                "jti '{}' from {} was already presented",
                clip(claims.jti.as_deref().unwrap_or_default()),
                claims.iss
            );
            let told = "the ID-JAG was already used: get a new one from your IdP";
            return Err(reject(grant_refused(Reason::IdJagReplayed, told, detail)).await);
        }
        let idp = self.config().enterprise_idps.iter().find(|i| i.issuer == claims.iss);
        let user = match self.enterprise_user(&claims, idp.is_some_and(|i| i.link_by_email)).await? {
            Ok(u) => u,
            Err(f) => return Err(reject(f).await),
        };
        let cfg = self.config();
        let scopes = match resolve_scopes(
            claims.scope.as_deref(),
            &cfg.scopes_supported,
            &cfg.default_scopes,
            client.scope.as_ref(),
        ) {
            Ok((s, _)) => s,
            Err(e) => return Err(reject(Failure::new(Reason::InvalidScope, e)).await),
        };
        let now = self.now();
        let auth_time = UnixTime::from_secs(claims.iat.unwrap_or_else(|| now.as_secs()));
        let grant =
            Grant::access_only(client.id.clone(), user.clone(), scopes.clone(), cfg.resource.clone(), auth_time, now);
        self.stores().grants.create_grant(&grant, None).await?;
        let response = self.issue(&grant, scopes, None)?;
        let detail = format!(
            "ID-JAG from {} for '{}' accepted; scope '{}', grant {}",
            claims.iss,
            clip(&claims.sub),
            grant.scopes,
            grant.id
        );
        self.record(FlowEvent::success(now, step, detail).client(&client.id).user(&user)).await;
        Ok(response)
    }

    /// Every check of the ID-JAG but the replay. The outer error is the store's.
    async fn check_id_jag(&self, client: &Client, jwt: &str) -> Result<Result<IdJagClaims, Failure>, Error> {
        if jwt.len() > crate::jwt::MAX_TOKEN_LEN {
            return Ok(Err(invalid("the assertion is too long", format!("{} bytes", jwt.len()))));
        }
        let header = match jsonwebtoken::decode_header(jwt) {
            Ok(h) => h,
            Err(e) => return Ok(Err(invalid("the assertion is not a well-formed JWT", clip_err(&e)))),
        };
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(ID_JAG_TYP)) {
            let told = format!("the assertion must be an ID-JAG (typ {ID_JAG_TYP})");
            return Ok(Err(invalid(&told, format!("typ {:?}", header.typ.as_deref().map(clip)))));
        }
        if !accepted(header.alg) {
            let told = "the ID-JAG must be signed with RS256, PS256, ES256 or EdDSA";
            return Ok(Err(invalid(told, format!("alg {:?}", header.alg))));
        }
        #[derive(Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        let claimed = jsonwebtoken::dangerous::insecure_decode_claims::<Issuer>(jwt).ok().and_then(|c| c.iss);
        let Some(idp) =
            claimed.as_deref().and_then(|iss| self.config().enterprise_idps.iter().find(|i| i.issuer == iss))
        else {
            let trusted: Vec<&str> = self.config().enterprise_idps.iter().map(|i| i.issuer.as_str()).collect();
            let detail = format!("issuer {:?}; trusted: [{}]", claimed.as_deref().map(clip), trusted.join(", "));
            let told = "the ID-JAG's issuer is not an IdP this server trusts";
            return Ok(Err(grant_refused(Reason::IdJagUntrustedIssuer, told, detail)));
        };
        if !idp.clients.contains(&client.id) {
            let e = OAuthError::unauthorized_client(format!(
                "client '{}' may not present assertions from {}",
                client.id, idp.issuer
            ));
            return Ok(Err(Failure::new(Reason::UnauthorizedClient, e)));
        }
        let kid = header.kid.as_deref();
        let mut keys = match self.idp_keys(idp, false).await {
            Ok(k) => k,
            Err(f) => return Ok(Err(f)),
        };
        if pick(&keys, header.alg, kid).is_none() && matches!(idp.keys, IdpKeys::Url(_)) {
            keys = match self.idp_keys(idp, true).await {
                Ok(k) => k,
                Err(f) => return Ok(Err(f)),
            };
        }
        let Some(Ok(key)) = pick(&keys, header.alg, kid) else {
            let detail =
                format!("kid {:?} alg {} not among {}'s keys", kid.map(clip), alg_name(header.alg), idp.issuer);
            return Ok(Err(invalid("the ID-JAG was signed with a key its IdP has not published", detail)));
        };
        let v = crate::jwt::signature_only(header.alg);
        let claims = match jsonwebtoken::decode::<IdJagClaims>(jwt, &key.key, &v) {
            Ok(d) => d.claims,
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                return Ok(Err(invalid("the ID-JAG's signature is invalid", "signature does not verify")));
            }
            Err(e) => {
                let told = "the ID-JAG is malformed: it needs iss, sub, aud, client_id, exp and jti";
                return Ok(Err(invalid(told, clip_err(&e))));
            }
        };
        Ok(self.check_id_jag_claims(client, claims))
    }

    fn check_id_jag_claims(&self, client: &Client, claims: IdJagClaims) -> Result<IdJagClaims, Failure> {
        let cfg = self.config();
        let issuer = cfg.issuer.to_string();
        if !claims.aud.contains(&issuer) {
            let told = format!("the ID-JAG's aud must be this server's issuer ({issuer})");
            return Err(invalid(&told, format!("aud {}", clip_owned(claims.aud.describe()))));
        }
        if claims.client_id != client.id.as_str() {
            let told = "the ID-JAG was issued to another client";
            return Err(invalid(
                told,
                format!("client_id '{}', presented by '{}'", clip(&claims.client_id), client.id),
            ));
        }
        if let Some(resource) = &claims.resource {
            let ours = cfg.resource.to_string();
            let trimmed = ours.trim_end_matches('/');
            let matches = match resource {
                Audience::One(r) => r.trim_end_matches('/') == trimmed,
                Audience::Many(v) => v.iter().any(|r| r.trim_end_matches('/') == trimmed),
            };
            if !matches {
                let told = format!("the ID-JAG is for another resource; this server is {ours}");
                return Err(invalid(&told, format!("resource {}", clip_owned(resource.describe()))));
            }
        }
        let now = self.now().as_secs();
        let leeway = i64::try_from(cfg.leeway.as_secs()).unwrap_or(i64::MAX);
        let ahead = i64::try_from(MAX_ID_JAG_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(invalid(
                "the ID-JAG has expired: get a new one from your IdP",
                format!("exp {} (now {now})", claims.exp),
            ));
        }
        if claims.exp > now.saturating_add(ahead).saturating_add(leeway) {
            return Err(invalid(
                "the ID-JAG lives too long",
                format!("exp {} is {} s ahead", claims.exp, claims.exp - now),
            ));
        }
        if claims.iat.is_some_and(|t| t > now.saturating_add(leeway)) {
            return Err(invalid(
                "the ID-JAG is not valid yet (check the IdP's clock)",
                format!("iat {:?} (now {now})", claims.iat),
            ));
        }
        if claims.jti.as_deref().is_none_or(|j| j.is_empty() || j.len() > crate::client_assertion::MAX_JTI_LEN) {
            return Err(invalid("the ID-JAG needs a jti (at most 256 bytes)", "jti missing or too long"));
        }
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(invalid("the ID-JAG needs a sub naming the person", "sub missing or too long"));
        }
        if claims.cnf.is_some() || claims.authorization_details.is_some() {
            let told = "the ID-JAG carries cnf or authorization_details, which this server does not support";
            return Err(invalid(told, "cnf or authorization_details present"));
        }
        Ok(claims)
    }

    /// The user the ID-JAG names: by `sub`, then (when allowed) by a verified `email`.
    async fn enterprise_user(&self, claims: &IdJagClaims, by_email: bool) -> Result<Result<UserId, Failure>, Error> {
        let users = &self.stores().users;
        let mut found = users.user_by_username(&claims.sub).await?;
        if found.is_none()
            && by_email
            && claims.email_verified == Some(true)
            && let Some(email) = claims.email.as_deref().filter(|e| e.len() <= 320)
        {
            found = users.user_by_username(email).await?;
        }
        Ok(match found {
            Some(u) if !u.disabled => Ok(u.id),
            Some(u) => Err(grant_refused(
                Reason::IdJagUserUnknown,
                "the person's account here is disabled",
                format!("user '{}' is disabled", u.username),
            )),
            None => Err(grant_refused(
                Reason::IdJagUserUnknown,
                "the person your IdP vouched for has no account on this server",
                format!(
                    "no user named '{}'{}",
                    clip(&claims.sub),
                    if by_email { " nor a verified email matching one" } else { "" }
                ),
            )),
        })
    }

    async fn idp_keys(&self, idp: &EnterpriseIdp, refetch: bool) -> Result<Arc<Vec<ClientKey>>, Failure> {
        match &idp.keys {
            IdpKeys::Inline(set) => Ok(Arc::new(usable_keys(set))),
            IdpKeys::Url(uri) => self.keys_at(uri, refetch, &idp.issuer).await.map_err(|why| {
                invalid("the IdP's keys could not be obtained", format!("{}: {uri}: {why}", idp.issuer))
            }),
            // ServerConfig::validate refuses it; kept total for a configuration built by hand.
            IdpKeys::Discover => Err(invalid(
                "the IdP's keys could not be obtained",
                format!("{}: keys to discover were never discovered (discover_idp_keys)", idp.issuer),
            )),
        }
    }
}
