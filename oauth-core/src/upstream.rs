//! Upstream sign-in: the person signs in at an identity provider of the operator's choosing
//! (Google, GitHub, Microsoft Entra, Okta, Auth0, Keycloak, or any OpenID provider by its
//! issuer) instead of with a password here, and comes back to finish the authorization.
//!
//! What this module does, in the order of a sign-in:
//! 1. [`UpstreamClient::discover`]: the provider's OpenID configuration (issuer checked
//!    exactly), or GitHub's fixed endpoints.
//! 2. [`UpstreamClient::start`]: the URL to send the browser to (code flow, PKCE S256, a
//!    `state` and a `nonce`), and the sealed value of the cookie that binds the callback to
//!    this browser: AES-256-GCM under a key of the server's, holding the pending
//!    authorization, the state, the nonce and the PKCE verifier, valid [`FLOW_LIFETIME`].
//! 3. [`UpstreamClient::finish`]: at the callback, the cookie must open, be this provider's,
//!    unexpired, and hold the `state` sent back (compared in constant time): a callback in a
//!    browser that did not start the flow is refused, so a stranger cannot have a victim's
//!    browser finish the stranger's sign-in (a login CSRF or confused deputy). Then the code
//!    is exchanged (with the verifier) and the `id_token` checked: signature by a key of the
//!    provider's JWKS (asymmetric algorithms only), `iss`, `aud` holding the client id, `azp`
//!    when present, `exp`, `iat`, and the `nonce` of this flow. GitHub has no `id_token`: the
//!    person is read from its API with the access token.
//! 4. The [`AllowList`] decides whether this person may sign in.
//!
//! Every refusal is an [`UpstreamError`] with a [`Reason`] of its own for the flow events, a
//! sentence for the person, and the detail for the operator.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::client_assertion::{ClientKey, accepted, alg_name, clip_err, pick, usable_keys};
use crate::clock::UnixTime;
use crate::events::Reason;
use crate::jwks::Jwks;
use crate::jwt::Audience;
use crate::metadata_document::DocumentFetchError;
use crate::params::clip;
use crate::pkce::CodeChallenge;
use crate::secret::CodeVerifier;
use crate::secret::ct_eq;

/// How long a browser has between leaving for the provider and coming back.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Longest answer read from a provider.
pub const MAX_UPSTREAM_ANSWER: usize = 256 * 1024;
/// The label of the key the flow cookie is sealed with ([`crate::AuthorizationServer::derive_secret`]).
pub const FLOW_COOKIE_KEY: &str = "upstream flow cookie";

/// A provider's client secret: never in `Debug`, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamSecret(String);

impl UpstreamSecret {
    /// The secret the provider issued for this server's client.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the token request.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UpstreamSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpstreamSecret([redacted])")
    }
}

/// What kind of provider it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamKind {
    /// An OpenID provider, found by discovery from its issuer. `tenant_template`: the issuer
    /// is a template with `{tenantid}` (Microsoft Entra's multi-tenant endpoints), filled in
    /// from each `id_token`'s `tid` before the exact comparison.
    Oidc {
        /// The issuer, exactly as in its `id_token`s (or the template).
        issuer: String,
        /// Whether `issuer` holds `{tenantid}`.
        tenant_template: bool,
    },
    /// GitHub's OAuth 2 (no OpenID): the person from `https://api.github.com/user`.
    GitHub,
}

/// Who may sign in through a provider. Empty lists allow everyone the provider signs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllowList {
    /// Verified email domains allowed (`example.com`); empty: any.
    pub email_domains: Vec<String>,
    /// Claims that must hold one of the values (`groups` contains `mcp-users`, `hd` is
    /// `example.com`, Entra's `tid`): every listed claim must match.
    pub claims: Vec<(String, Vec<String>)>,
}

impl AllowList {
    /// Allows people with a verified email in one of `domains`.
    #[must_use]
    pub fn email_domains<I: IntoIterator<Item = S>, S: Into<String>>(mut self, domains: I) -> Self {
        self.email_domains = domains.into_iter().map(|d| d.into().to_ascii_lowercase()).collect();
        self
    }

    /// Also requires `claim` (a string, or an array of strings) to hold one of `values`.
    #[must_use]
    pub fn claim<I: IntoIterator<Item = S>, S: Into<String>>(mut self, claim: impl Into<String>, values: I) -> Self {
        self.claims.push((claim.into(), values.into_iter().map(Into::into).collect()));
        self
    }

    /// Whether `who` may sign in; `Err` says which rule refused, for the operator.
    pub fn check(&self, who: &UpstreamIdentity) -> Result<(), String> {
        if !self.email_domains.is_empty() {
            let domain = who
                .email
                .as_deref()
                .filter(|_| who.email_verified)
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase());
            match domain {
                Some(d) if self.email_domains.contains(&d) => {}
                Some(d) => return Err(format!("email domain '{}' is not among {:?}", clip(&d), self.email_domains)),
                None => return Err("no verified email, and only some email domains may sign in".into()),
            }
        }
        for (claim, values) in &self.claims {
            let held: Vec<&str> = match who.claims.get(claim) {
                Some(serde_json::Value::String(s)) => vec![s.as_str()],
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(serde_json::Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !held.iter().any(|h| values.iter().any(|v| v == h)) {
                return Err(format!("claim '{claim}' holds none of {values:?}"));
            }
        }
        Ok(())
    }
}

/// An upstream provider as the operator configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamProvider {
    /// Its id in URLs, flow events and account links: `[a-z0-9-]`, at most 32 characters.
    pub id: String,
    /// The name on the sign-in page's button ("Google").
    pub display_name: String,
    /// What kind of provider it is.
    pub kind: UpstreamKind,
    /// This server's client id at the provider.
    pub client_id: String,
    /// This server's client secret at the provider.
    pub client_secret: UpstreamSecret,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Extra authorization-request parameters (Auth0's `audience`).
    pub extra_params: Vec<(String, String)>,
    /// Who may sign in.
    pub allow: AllowList,
    /// Whether a person whose provider identity is not linked yet is linked to the local
    /// user whose username is their verified email. Off: a new local user is created.
    pub link_by_verified_email: bool,
}

impl UpstreamProvider {
    /// Any OpenID provider by its issuer (`https://idp.example.com`), with `openid email
    /// profile offline_access` and `prompt=consent`: OpenID Connect Core 11 issues a refresh
    /// token for `offline_access`, which a provider honours only when the person is asked to
    /// consent (node-oidc-provider drops it otherwise). The price is the provider's consent
    /// page at every sign-in; remove both for a provider that needs neither.
    pub fn oidc(
        id: impl Into<String>,
        display_name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: UpstreamSecret,
    ) -> Self {
        let mut p = Self::openid(id, display_name, issuer, client_id, client_secret);
        p.scopes.push("offline_access".into());
        p.extra_params.push(("prompt".into(), "consent".into()));
        p
    }

    /// The base of every preset: `openid email profile`, nothing else asked.
    fn openid(
        id: impl Into<String>,
        display_name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: UpstreamSecret,
    ) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
            kind: UpstreamKind::Oidc { issuer: issuer.into(), tenant_template: false },
            client_id: client_id.into(),
            client_secret,
            scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
            extra_params: Vec::new(),
            allow: AllowList::default(),
            link_by_verified_email: false,
        }
    }

    /// Google: issuer `https://accounts.google.com`, with `access_type=offline` (Google
    /// issues a refresh token only when asked so).
    pub fn google(client_id: impl Into<String>, client_secret: UpstreamSecret) -> Self {
        let mut p = Self::openid("google", "Google", "https://accounts.google.com", client_id, client_secret);
        p.extra_params.push(("access_type".into(), "offline".into()));
        p
    }

    /// GitHub's OAuth app (not OpenID): scopes `read:user user:email`; the person's id is
    /// their numeric GitHub id, their email the primary verified one.
    pub fn github(client_id: impl Into<String>, client_secret: UpstreamSecret) -> Self {
        Self {
            kind: UpstreamKind::GitHub,
            scopes: vec!["read:user".into(), "user:email".into()],
            ..Self::openid("github", "GitHub", "https://github.com", client_id, client_secret)
        }
    }

    /// Microsoft Entra ID, single tenant: issuer `https://login.microsoftonline.com/<tenant>/v2.0`.
    pub fn entra(tenant: &str, client_id: impl Into<String>, client_secret: UpstreamSecret) -> Self {
        let issuer = format!("https://login.microsoftonline.com/{tenant}/v2.0");
        let mut p = Self::openid("entra", "Microsoft", issuer, client_id, client_secret);
        // Entra issues a refresh token only for offline_access.
        p.scopes.push("offline_access".into());
        p
    }

    /// Microsoft Entra ID, multi-tenant (`organizations`): the discovery document's issuer
    /// is the template `…/{tenantid}/v2.0`, filled from each token's `tid`. Restrict tenants
    /// with `allow.claim("tid", […])`.
    pub fn entra_multi_tenant(client_id: impl Into<String>, client_secret: UpstreamSecret) -> Self {
        let mut p = Self::openid(
            "entra",
            "Microsoft",
            "https://login.microsoftonline.com/organizations/v2.0",
            client_id,
            client_secret,
        );
        p.scopes.push("offline_access".into());
        p.kind = UpstreamKind::Oidc {
            issuer: "https://login.microsoftonline.com/{tenantid}/v2.0".into(),
            tenant_template: true,
        };
        p
    }

    /// Okta, with `offline_access`: the issuer of the org or custom authorization server
    /// (`https://example.okta.com` or `https://example.okta.com/oauth2/default`).
    pub fn okta(issuer: impl Into<String>, client_id: impl Into<String>, client_secret: UpstreamSecret) -> Self {
        let mut p = Self::openid("okta", "Okta", issuer, client_id, client_secret);
        // Okta issues a refresh token only for offline_access (and the app's refresh grant).
        p.scopes.push("offline_access".into());
        p
    }

    /// Auth0: issuer `https://<domain>/` (with its trailing slash), and the API `audience`
    /// when the upstream access token is for an API of the operator's.
    pub fn auth0(
        domain: &str,
        audience: Option<&str>,
        client_id: impl Into<String>,
        client_secret: UpstreamSecret,
    ) -> Self {
        let mut p = Self::openid("auth0", "Auth0", format!("https://{domain}/"), client_id, client_secret);
        p.scopes.push("offline_access".into());
        p.extra_params.extend(audience.map(|a| ("audience".to_owned(), a.to_owned())));
        p
    }

    /// Keycloak: issuer `<base>/realms/<realm>`.
    pub fn keycloak(base: &str, realm: &str, client_id: impl Into<String>, client_secret: UpstreamSecret) -> Self {
        let issuer = format!("{}/realms/{realm}", base.trim_end_matches('/'));
        Self::openid("keycloak", "Keycloak", issuer, client_id, client_secret)
    }

    /// The configured issuer, or the template of a multi-tenant one.
    pub fn issuer(&self) -> &str {
        match &self.kind {
            UpstreamKind::Oidc { issuer, .. } => issuer,
            UpstreamKind::GitHub => "https://github.com",
        }
    }

    /// Checks what the operator configured; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 32
            && self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(format!("upstream provider id '{}' must be 1 to 32 of a-z, 0-9 and -", clip(&self.id)));
        }
        let issuer = self.issuer();
        let local = issuer.starts_with("http://127.0.0.1") || issuer.starts_with("http://localhost");
        if !issuer.starts_with("https://") && !local {
            return Err(format!("upstream provider '{}': the issuer '{issuer}' must be https", self.id));
        }
        if self.client_id.is_empty() || self.client_secret.secret().is_empty() {
            return Err(format!("upstream provider '{}': the client id and secret are required", self.id));
        }
        if matches!(self.kind, UpstreamKind::Oidc { .. }) && !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!("upstream provider '{}': an OpenID provider needs the 'openid' scope", self.id));
        }
        Ok(())
    }
}

/// One answer of a provider: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body, at most [`MAX_UPSTREAM_ANSWER`] bytes.
    pub body: Vec<u8>,
}

/// The requests to a provider: GET of documents and APIs, POST of the token request. The
/// adapter implements it over https with the operator-URL rules (no proxy, no redirects
/// followed, bounded time and size); providers are the operator's, so private addresses are
/// not refused, but plain http only to loopback.
#[async_trait]
pub trait UpstreamHttp: fmt::Debug + Send + Sync + 'static {
    /// `GET url`, with `Authorization: Bearer` when `bearer` is given, `Accept:
    /// application/json`.
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<UpstreamAnswer, DocumentFetchError>;
    /// `POST url` with the form, and HTTP Basic credentials when `basic` is given.
    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<UpstreamAnswer, DocumentFetchError>;
}

/// Why an upstream sign-in did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// The reason in the flow events.
    pub reason: Reason,
    /// What the person is told: nothing internal.
    pub told: String,
    /// What the operator sees.
    pub detail: String,
}

impl UpstreamError {
    fn new(reason: Reason, told: &str, detail: impl Into<String>) -> Self {
        Self { reason, told: told.to_owned(), detail: detail.into() }
    }

    /// No upstream token to give a tool ([`Reason::UpstreamTokenUnavailable`]); `detail` says
    /// why, for the operator. The person is told to sign in again.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            Reason::UpstreamTokenUnavailable,
            "The sign-in service's access is not available: sign in again.",
            detail,
        )
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

fn unreachable(provider: &str, what: &str, e: impl fmt::Display) -> UpstreamError {
    UpstreamError::new(
        Reason::UpstreamUnreachable,
        "The sign-in service could not be reached. Try again later.",
        format!("{provider}: {what}: {e}"),
    )
}

/// The grant ended with the provider's access ([`Reason::UpstreamGrantEnded`]): the client
/// signs in again.
fn grant_ended(detail: String) -> UpstreamError {
    UpstreamError::new(
        Reason::UpstreamGrantEnded,
        "The sign-in service ended this server's access: sign in again.",
        detail,
    )
}

fn id_token_invalid(detail: impl Into<String>) -> UpstreamError {
    UpstreamError::new(Reason::UpstreamIdTokenInvalid, "The sign-in service's answer could not be verified.", detail)
}

/// A provider's endpoints, from its discovery document (or GitHub's fixed ones).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamEndpoints {
    /// The issuer, exactly as its discovery document states it.
    pub issuer: String,
    /// Where the browser is sent.
    pub authorization_endpoint: String,
    /// Where the code is exchanged.
    pub token_endpoint: String,
    /// The keys of its `id_token`s.
    pub jwks_uri: Option<String>,
    /// OpenID userinfo, or GitHub's user API.
    pub userinfo_endpoint: Option<String>,
    /// Whether the provider wants the client secret in HTTP Basic (else in the form).
    pub basic_auth: bool,
}

/// The person the provider signed in.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamIdentity {
    /// The provider's id.
    pub provider: String,
    /// Their stable id there (`sub`; GitHub's numeric id).
    pub subject: String,
    /// Their email, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says the email is verified.
    pub email_verified: bool,
    /// A name to show.
    pub name: Option<String>,
    /// Every claim of the `id_token` (GitHub: of the user API), for the allow-list.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The provider's tokens, for the vault.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTokens {
    /// The access token for the provider's APIs.
    pub access_token: String,
    /// The refresh token, if the provider issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixTime>,
    /// The scope granted, if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Where to send the browser, and the cookie that binds its return to it.
#[derive(Debug)]
pub struct UpstreamStart {
    /// The provider's authorization URL with this flow's parameters.
    pub location: String,
    /// The sealed flow state, for an http-only, same-site=lax cookie that lives
    /// [`FLOW_LIFETIME`]. Opaque, and useless to anyone who reads it without the server's key.
    pub cookie: String,
}

/// What the flow cookie holds.
#[derive(Serialize, Deserialize)]
struct FlowState {
    /// The provider.
    p: String,
    /// The pending authorization.
    a: String,
    /// The `state` sent.
    s: String,
    /// The `nonce` sent.
    n: String,
    /// The PKCE verifier.
    v: String,
    /// When it expires.
    e: i64,
}

/// A finished upstream sign-in.
#[derive(Debug)]
#[non_exhaustive]
pub struct UpstreamSignIn {
    /// The pending authorization the browser came from.
    pub pending: String,
    /// Who signed in.
    pub identity: UpstreamIdentity,
    /// The provider's tokens.
    pub tokens: UpstreamTokens,
    /// The `nonce` of the flow, to be marked used (a replayed `id_token` fails on it).
    pub nonce: String,
}

/// One provider, discovered, ready for sign-ins.
pub struct UpstreamClient {
    provider: UpstreamProvider,
    endpoints: UpstreamEndpoints,
    http: Arc<dyn UpstreamHttp>,
    keys: Mutex<Option<crate::client_assertion::CachedSet>>,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient").field("provider", &self.provider).field("endpoints", &self.endpoints).finish()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// Every URL a provider gives must be https (plain http only to loopback, for development).
fn url_ok(url: &str) -> bool {
    url.len() <= crate::types::MAX_URI_LEN
        && (url.starts_with("https://")
            || url.starts_with("http://127.0.0.1:")
            || url.starts_with("http://localhost:")
            || url.starts_with("http://[::1]:"))
}

impl UpstreamClient {
    /// Finds `provider`'s endpoints: GitHub's fixed ones, or the OpenID configuration at
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must be the configured one
    /// exactly and whose endpoints must be https. Done once, when the server starts.
    pub async fn discover(provider: UpstreamProvider, http: Arc<dyn UpstreamHttp>) -> Result<Self, String> {
        provider.validate()?;
        let endpoints = match &provider.kind {
            UpstreamKind::GitHub => UpstreamEndpoints {
                issuer: "https://github.com".into(),
                authorization_endpoint: "https://github.com/login/oauth/authorize".into(),
                token_endpoint: "https://github.com/login/oauth/access_token".into(),
                jwks_uri: None,
                userinfo_endpoint: Some("https://api.github.com/user".into()),
                basic_auth: false,
            },
            UpstreamKind::Oidc { issuer, tenant_template } => {
                // A multi-tenant template is discovered at its `organizations` endpoint.
                let base =
                    if *tenant_template { issuer.replace("{tenantid}", "organizations") } else { issuer.clone() };
                let url = format!("{}/.well-known/openid-configuration", base.trim_end_matches('/'));
                let answer = http.get(&url, None).await.map_err(|e| format!("{url}: {e}"))?;
                if answer.status != 200 {
                    return Err(format!("{url} answered {}", answer.status));
                }
                let doc: Discovery = serde_json::from_slice(&answer.body)
                    .map_err(|e| format!("{url} is not an OpenID configuration: {}", clip(&e.to_string())))?;
                if doc.issuer != *issuer {
                    return Err(format!(
                        "{url} states issuer '{}', not the configured '{issuer}': configure the issuer its tokens carry",
                        clip(&doc.issuer)
                    ));
                }
                for u in [Some(&doc.authorization_endpoint), Some(&doc.token_endpoint), doc.jwks_uri.as_ref()]
                    .into_iter()
                    .flatten()
                    .chain(doc.userinfo_endpoint.as_ref())
                {
                    if !url_ok(u) {
                        return Err(format!("{url} names the endpoint '{}', which is not https", clip(u)));
                    }
                }
                if doc.jwks_uri.is_none() {
                    return Err(format!("{url} names no jwks_uri: its id_tokens could not be verified"));
                }
                if doc.code_challenge_methods_supported.as_ref().is_some_and(|m| !m.iter().any(|m| m == "S256")) {
                    return Err(format!("{url}: the provider does not support PKCE with S256"));
                }
                // client_secret_basic is OpenID's default (and what a client registered without
                // a method gets); the form only where the provider does not list Basic.
                let methods = doc.token_endpoint_auth_methods_supported.unwrap_or_default();
                let basic_auth = methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic");
                UpstreamEndpoints {
                    issuer: doc.issuer,
                    authorization_endpoint: doc.authorization_endpoint,
                    token_endpoint: doc.token_endpoint,
                    jwks_uri: doc.jwks_uri,
                    userinfo_endpoint: doc.userinfo_endpoint,
                    basic_auth,
                }
            }
        };
        Ok(Self { provider, endpoints, http, keys: Mutex::new(None) })
    }

    /// The provider.
    pub fn provider(&self) -> &UpstreamProvider {
        &self.provider
    }

    /// Its endpoints.
    pub fn endpoints(&self) -> &UpstreamEndpoints {
        &self.endpoints
    }

    /// A new flow for the pending authorization `pending`, coming back to `callback` (this
    /// server's URL for this provider), sealed with `key` ([`FLOW_COOKIE_KEY`]).
    pub fn start(&self, pending: &str, callback: &str, key: &[u8; 32], now: UnixTime) -> Result<UpstreamStart, String> {
        let verifier = CodeVerifier::generate();
        let state = FlowState {
            p: self.provider.id.clone(),
            a: pending.to_owned(),
            s: crate::secret::random_token(),
            n: crate::secret::random_token(),
            v: verifier.secret().to_owned(),
            e: now.plus(FLOW_LIFETIME).as_secs(),
        };
        let mut location = url::Url::parse(&self.endpoints.authorization_endpoint)
            .map_err(|e| format!("the authorization endpoint is not a URL: {e}"))?;
        {
            let mut q = location.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.provider.client_id)
                .append_pair("redirect_uri", callback)
                .append_pair("scope", &self.provider.scopes.join(" "))
                .append_pair("state", &state.s)
                .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
                .append_pair("code_challenge_method", "S256");
            if matches!(self.provider.kind, UpstreamKind::Oidc { .. }) {
                q.append_pair("nonce", &state.n);
            }
            for (k, v) in &self.provider.extra_params {
                q.append_pair(k, v);
            }
        }
        let clear = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        let cookie = seal(key, self.provider.id.as_bytes(), &clear)?;
        Ok(UpstreamStart { location: location.into(), cookie })
    }

    /// The callback: `state` and `code` from the query, `cookie` the flow cookie this browser
    /// holds (if any). Checks the binding, exchanges the code and verifies who signed in.
    pub async fn finish(
        &self,
        cookie: Option<&str>,
        query: &[(String, String)],
        callback: &str,
        key: &[u8; 32],
        now: UnixTime,
        leeway: Duration,
    ) -> Result<UpstreamSignIn, UpstreamError> {
        let id = &self.provider.id;
        let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let not_this_browser = |detail: String| {
            UpstreamError::new(
                Reason::UpstreamStateMismatch,
                "This sign-in was not started in this browser, or it took too long. Start again from the application.",
                detail,
            )
        };
        let Some(cookie) = cookie else {
            return Err(not_this_browser(format!("{id}: callback without the flow cookie")));
        };
        let state: FlowState =
            open(key, id.as_bytes(), cookie).and_then(|clear| serde_json::from_slice(&clear).ok()).ok_or_else(
                || not_this_browser(format!("{id}: the flow cookie does not open with this server's key")),
            )?;
        if state.p != *id {
            return Err(not_this_browser(format!("{id}: the flow cookie is for provider '{}'", clip(&state.p))));
        }
        if now.as_secs() > state.e {
            return Err(not_this_browser(format!("{id}: the flow cookie expired")));
        }
        let sent = get("state").unwrap_or_default();
        if !ct_eq(sent.as_bytes(), state.s.as_bytes()) {
            return Err(not_this_browser(format!("{id}: the state returned is not this browser's")));
        }
        if let Some(error) = get("error") {
            let description = get("error_description").map(clip).unwrap_or_default();
            return Err(UpstreamError::new(
                Reason::UpstreamRefused,
                "The sign-in service did not sign you in.",
                format!("{id} answered error '{}': {description}", clip(error)),
            ));
        }
        if let Some(iss) = get("iss")
            && !self.issuer_matches(iss, None)
        {
            // RFC 9207: a mix-up of providers.
            return Err(not_this_browser(format!("{id}: the callback's iss '{}' is not this provider", clip(iss))));
        }
        let code = get("code").filter(|c| !c.is_empty() && c.len() <= 4096).ok_or_else(|| {
            UpstreamError::new(Reason::UpstreamRefused, "The sign-in service sent no code.", format!("{id}: no code"))
        })?;
        let tokens = self.redeem_code(code, &state.v, callback).await?;
        let (identity, userinfo_failed) = match &self.provider.kind {
            UpstreamKind::GitHub => (self.github_identity(&tokens.0.access_token).await?, None),
            UpstreamKind::Oidc { .. } => {
                let id_token = tokens.1.as_deref().ok_or_else(|| {
                    id_token_invalid(format!(
                        "{id}: the token response has no id_token (is 'openid' among the scopes?)"
                    ))
                })?;
                let who = self.verify_id_token(id_token, &state.n, now, leeway).await?;
                self.with_userinfo(who, &tokens.0.access_token).await?
            }
        };
        if let Err(why) = self.provider.allow.check(&identity) {
            let userinfo =
                userinfo_failed.map(|e| format!(" (its userinfo could not be read: {e})")).unwrap_or_default();
            return Err(UpstreamError::new(
                Reason::UpstreamUserRefused,
                "Your account there may not sign in here. Ask the operator of this server.",
                format!("{id}: '{}' refused: {why}{userinfo}", clip(&identity.subject)),
            ));
        }
        Ok(UpstreamSignIn { pending: state.a, identity, tokens: tokens.0, nonce: state.n })
    }

    /// `who` with what the `id_token` lacked of the email and the name read from the userinfo:
    /// a provider may return the claims of the `email` and `profile` scopes there only when it
    /// issues an access token (OpenID Connect Core 5.4; node-oidc-provider does so by
    /// default), and the allow-list, the email link and the name shown need them. A userinfo
    /// about another `sub` refuses the sign-in (Core 5.3.4); one that cannot be read leaves
    /// `who` as it is, with why.
    async fn with_userinfo(
        &self,
        mut who: UpstreamIdentity,
        access_token: &str,
    ) -> Result<(UpstreamIdentity, Option<String>), UpstreamError> {
        /// The most claims taken from a userinfo answer.
        const MAX_CLAIMS: usize = 128;
        if (who.email.is_some() && who.name.is_some()) || self.endpoints.userinfo_endpoint.is_none() {
            return Ok((who, None));
        }
        let info = match self.userinfo(access_token).await {
            Ok(serde_json::Value::Object(info)) => info,
            Ok(_) => return Ok((who, Some("it is not a JSON object".into()))),
            Err(e) => return Ok((who, Some(e.detail))),
        };
        if info.get("sub").and_then(serde_json::Value::as_str) != Some(who.subject.as_str()) {
            return Err(id_token_invalid(format!(
                "{}: the userinfo is about another subject than the id_token's '{}'",
                self.provider.id,
                clip(&who.subject)
            )));
        }
        let text =
            |name: &str| info.get(name).and_then(serde_json::Value::as_str).filter(|v| !v.is_empty() && v.len() <= 320);
        if who.email.is_none()
            && let Some(email) = text("email")
        {
            who.email = Some(email.to_owned());
            who.email_verified = info.get("email_verified").is_some_and(|v| v == true || v == "true");
        }
        if who.name.is_none() {
            who.name = text("name").map(str::to_owned);
        }
        for (k, v) in info.into_iter().take(MAX_CLAIMS) {
            who.claims.entry(k).or_insert(v);
        }
        Ok((who, None))
    }

    fn issuer_matches(&self, iss: &str, tid: Option<&str>) -> bool {
        match &self.provider.kind {
            UpstreamKind::Oidc { issuer, tenant_template: true } => match tid {
                Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                    iss == issuer.replace("{tenantid}", t)
                }
                // The callback's `iss` comes before the token: any tenant of the template.
                None => {
                    let (head, tail) = issuer.split_once("{tenantid}").unwrap_or((issuer, ""));
                    iss.strip_prefix(head)
                        .and_then(|r| r.strip_suffix(tail))
                        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                }
                Some(_) => false,
            },
            _ => iss == self.endpoints.issuer,
        }
    }

    /// `form` at the provider's token endpoint, with this server's client id and its secret in
    /// HTTP Basic or in the form, as discovery chose.
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<UpstreamAnswer, UpstreamError> {
        let p = &self.provider;
        let mut form = form.to_vec();
        form.push(("client_id", p.client_id.as_str()));
        let basic = self.endpoints.basic_auth.then(|| (p.client_id.as_str(), p.client_secret.secret()));
        if basic.is_none() {
            form.push(("client_secret", p.client_secret.secret()));
        }
        self.http
            .post_form(&self.endpoints.token_endpoint, &form, basic)
            .await
            .map_err(|e| unreachable(&p.id, "token endpoint", e))
    }

    /// The code for tokens: (the tokens, the `id_token`).
    async fn redeem_code(
        &self,
        code: &str,
        verifier: &str,
        callback: &str,
    ) -> Result<(UpstreamTokens, Option<String>), UpstreamError> {
        let id = &self.provider.id;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", callback),
            ("code_verifier", verifier),
        ];
        let answer = self.token_request(&form).await?;
        let refused = |detail: String| {
            UpstreamError::new(Reason::UpstreamRefused, "The sign-in service did not complete the sign-in.", detail)
        };
        match parse_token_answer(&answer.body, crate::clock::Clock::now(&crate::clock::SystemClock)) {
            Some(Ok(tokens)) => Ok(tokens),
            Some(Err((error, description))) => {
                Err(refused(format!("{id}: the token endpoint answered '{error}': {description}")))
            }
            None => {
                Err(refused(format!("{id}: the token endpoint answered {} without an access token", answer.status)))
            }
        }
    }

    /// Who the provider says the holder of `access_token` is: its OpenID userinfo (GitHub:
    /// its user API), as JSON.
    pub async fn userinfo(&self, access_token: &str) -> Result<serde_json::Value, UpstreamError> {
        let id = &self.provider.id;
        let Some(url) = self.endpoints.userinfo_endpoint.as_deref() else {
            return Err(unreachable(id, "userinfo", "the provider publishes no userinfo endpoint"));
        };
        let answer = self.http.get(url, Some(access_token)).await.map_err(|e| unreachable(id, "userinfo", e))?;
        if answer.status == 401 {
            return Err(UpstreamError::new(
                Reason::UpstreamTokenUnavailable,
                "The sign-in service no longer accepts this server's access: sign in again.",
                format!("{id}: userinfo answered 401"),
            ));
        }
        if answer.status != 200 {
            return Err(unreachable(id, "userinfo", format!("{url} answered {}", answer.status)));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| unreachable(id, "userinfo", format!("not JSON: {}", clip(&e.to_string()))))
    }

    /// A refresh at the provider's token endpoint. `invalid_grant` (the person revoked this
    /// server's access there, or the refresh token expired) is [`Reason::UpstreamGrantEnded`].
    pub async fn refresh(&self, refresh_token: &str) -> Result<UpstreamTokens, UpstreamError> {
        let id = &self.provider.id;
        let answer = self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await?;
        let parsed = parse_token_answer(&answer.body, crate::clock::Clock::now(&crate::clock::SystemClock));
        match parsed {
            Some(Ok((tokens, _))) => Ok(tokens),
            Some(Err(error)) if error.0 == "invalid_grant" => {
                Err(grant_ended(format!("{id}: the refresh was refused with invalid_grant: {}", error.1)))
            }
            Some(Err(error)) => Err(UpstreamError::new(
                Reason::UpstreamRefused,
                "The sign-in service refused the refresh.",
                format!("{id}: the refresh was refused with '{}': {}", error.0, error.1),
            )),
            None => Err(unreachable(id, "token endpoint", format!("answered {} without tokens", answer.status))),
        }
    }

    /// `subject_token` (the person's access token of this provider) exchanged at the
    /// provider's token endpoint (RFC 8693) for an access token of `target`. Every refusal is
    /// [`Reason::UpstreamExchangeRefused`] with the provider's `error`, or
    /// [`Reason::UpstreamUnreachable`] when its answer is not the protocol.
    pub async fn exchange_token(
        &self,
        subject_token: &str,
        target: &ExchangeTarget,
    ) -> Result<ExchangedToken, UpstreamError> {
        const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
        let id = &self.provider.id;
        let refused = |detail: String| {
            UpstreamError::new(
                Reason::UpstreamExchangeRefused,
                "The sign-in service did not issue a token for that service.",
                format!("{id}: {detail}"),
            )
        };
        target.validate().map_err(refused)?;
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        form.extend(target.audience.as_deref().map(|a| ("audience", a)));
        form.extend(target.resource.as_deref().map(|r| ("resource", r)));
        form.extend(target.scope.as_deref().map(|s| ("scope", s)));
        let answer = self.token_request(&form).await?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: Option<String>,
            issued_token_type: Option<String>,
            token_type: Option<String>,
            expires_in: Option<u64>,
            scope: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let not_protocol =
            || unreachable(id, "token endpoint", format!("answered {} to a token exchange", answer.status));
        let a: Answer = serde_json::from_slice(&answer.body).map_err(|_| not_protocol())?;
        if let Some(error) = &a.error {
            let description = a.error_description.as_deref().map(clip).unwrap_or_default();
            let why = match error.as_str() {
                "unsupported_grant_type" => "the provider does not offer token exchange (RFC 8693) to this client",
                "invalid_target" => "the provider will not issue tokens for this audience or resource",
                "invalid_grant" => "the provider no longer accepts the person's token",
                _ => "the exchange was refused",
            };
            return Err(refused(format!("{why}: '{}': {description}", clip(error))));
        }
        let (Some(access_token), Some(issued_token_type)) =
            (a.access_token.filter(|t| !t.is_empty()), a.issued_token_type.filter(|t| !t.is_empty()))
        else {
            return Err(not_protocol());
        };
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        Ok(ExchangedToken {
            access_token,
            issued_token_type: clip(&issued_token_type),
            token_type: a.token_type.as_deref().map(clip).unwrap_or_default(),
            expires_at: a.expires_in.map(|s| now.plus(Duration::from_secs(s.min(365 * 86_400)))),
            scope: a.scope,
        })
    }

    /// The provider's keys, cached as clients' keys are
    /// ([`CachedSet`](crate::client_assertion::CachedSet)): fetched again for an unknown key
    /// at most every 30 s; a failed fetch keeps a set that is still fresh.
    async fn keys(&self, refetch: bool, now: UnixTime) -> Result<Arc<Vec<ClientKey>>, UpstreamError> {
        let id = &self.provider.id;
        let cached = self.keys.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(keys) = cached.as_ref().and_then(|c| c.usable(now, refetch)) {
            return Ok(keys);
        }
        let Some(uri) = &self.endpoints.jwks_uri else {
            return Err(id_token_invalid(format!("{id}: no jwks_uri")));
        };
        let fetched = async {
            let answer = self.http.get(uri, None).await.map_err(|e| unreachable(id, "jwks_uri", e))?;
            if answer.status != 200 {
                return Err(unreachable(id, "jwks_uri", format!("{uri} answered {}", answer.status)));
            }
            Jwks::from_json(&answer.body)
                .map_err(|e| unreachable(id, "jwks_uri", format!("{uri} is not a JWK set: {}", clip(&e.to_string()))))
        };
        match fetched.await {
            Ok(set) => {
                let set = crate::client_assertion::CachedSet::fetched(usable_keys(&set), now, None);
                *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = Some(set.clone());
                Ok(set.keys())
            }
            Err(e) => cached.and_then(|c| c.fresh(now)).ok_or(e),
        }
    }

    /// Checks an `id_token` (OpenID Connect Core 3.1.3.7) for this flow's `nonce`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
        now: UnixTime,
        leeway: Duration,
    ) -> Result<UpstreamIdentity, UpstreamError> {
        let id = &self.provider.id;
        if token.len() > crate::jwt::MAX_TOKEN_LEN {
            return Err(id_token_invalid(format!(
                "{id}: the id_token is longer than {} bytes",
                crate::jwt::MAX_TOKEN_LEN
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| id_token_invalid(format!("{id}: the id_token is not a JWT: {}", clip_err(&e))))?;
        if !accepted(header.alg) {
            return Err(id_token_invalid(format!(
                "{id}: the id_token is signed with {:?}, not an asymmetric algorithm",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        let mut keys = self.keys(false, now).await?;
        if pick(&keys, header.alg, kid).is_none() {
            keys = self.keys(true, now).await?;
        }
        let Some(Ok(key)) = pick(&keys, header.alg, kid) else {
            return Err(id_token_invalid(format!(
                "{id}: kid {:?} alg {} is not among the provider's keys",
                kid.map(clip),
                alg_name(header.alg)
            )));
        };
        let v = crate::jwt::signature_only(header.alg);
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    id_token_invalid(format!("{id}: the id_token's signature does not verify"))
                }
                _ => id_token_invalid(format!("{id}: the id_token is malformed: {}", clip_err(&e))),
            })?
            .claims;
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
        let iss = text("iss").unwrap_or_default();
        if !self.issuer_matches(iss, text("tid")) {
            return Err(id_token_invalid(format!("{id}: iss '{}' is not '{}'", clip(iss), self.provider.issuer())));
        }
        let aud: Option<Audience> = claims.get("aud").and_then(|a| serde_json::from_value(a.clone()).ok());
        let client_id = self.provider.client_id.as_str();
        if !aud.as_ref().is_some_and(|a| a.contains(client_id)) {
            return Err(id_token_invalid(format!("{id}: aud {:?} does not hold this server's client id", aud)));
        }
        let several = matches!(&aud, Some(Audience::Many(v)) if v.len() > 1);
        match text("azp") {
            Some(azp) if azp != client_id => {
                return Err(id_token_invalid(format!("{id}: azp '{}' is not this server's client id", clip(azp))));
            }
            None if several => {
                return Err(id_token_invalid(format!("{id}: several audiences and no azp")));
            }
            _ => {}
        }
        let leeway = crate::clock::duration_secs(leeway);
        let now_s = now.as_secs();
        match number("exp") {
            Some(exp) if exp + leeway > now_s => {}
            Some(exp) => return Err(id_token_invalid(format!("{id}: the id_token expired at {exp}"))),
            None => return Err(id_token_invalid(format!("{id}: the id_token has no exp"))),
        }
        if number("iat").is_some_and(|iat| iat > now_s + leeway) {
            return Err(id_token_invalid(format!("{id}: the id_token was issued in the future")));
        }
        let sent = text("nonce").unwrap_or_default();
        if !ct_eq(sent.as_bytes(), nonce.as_bytes()) {
            return Err(UpstreamError::new(
                Reason::UpstreamNonceMismatch,
                "The sign-in service's answer is not for this sign-in. Start again from the application.",
                format!("{id}: the id_token's nonce is not this flow's"),
            ));
        }
        let subject = text("sub")
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| id_token_invalid(format!("{id}: the id_token has no usable sub (1 to 255 characters)")))?;
        Ok(UpstreamIdentity {
            provider: id.clone(),
            subject: subject.to_owned(),
            email: text("email").map(str::to_owned),
            email_verified: claims.get("email_verified").is_some_and(|v| v == true || v == "true"),
            name: text("name").map(str::to_owned),
            claims,
        })
    }

    /// GitHub's person: `/user` (numeric id, login, name), and the primary verified email
    /// from `/user/emails`.
    async fn github_identity(&self, access_token: &str) -> Result<UpstreamIdentity, UpstreamError> {
        #[derive(Deserialize)]
        struct Email {
            email: String,
            primary: bool,
            verified: bool,
        }
        let id = &self.provider.id;
        let user_url = self.endpoints.userinfo_endpoint.as_deref().unwrap_or("https://api.github.com/user");
        let answer = self.http.get(user_url, Some(access_token)).await.map_err(|e| unreachable(id, "user API", e))?;
        let user: serde_json::Map<String, serde_json::Value> = (answer.status == 200)
            .then(|| serde_json::from_slice(&answer.body).ok())
            .flatten()
            .ok_or_else(|| unreachable(id, "user API", format!("{user_url} answered {}", answer.status)))?;
        let subject = user.get("id").and_then(serde_json::Value::as_u64).map(|n| n.to_string()).ok_or_else(|| {
            UpstreamError::new(Reason::UpstreamRefused, "The sign-in service sent no account.", format!("{id}: no id"))
        })?;
        let emails_url = format!("{}/emails", user_url.trim_end_matches('/'));
        let emails: Vec<Email> = match self.http.get(&emails_url, Some(access_token)).await {
            Ok(a) if a.status == 200 => serde_json::from_slice(&a.body).unwrap_or_default(),
            _ => Vec::new(),
        };
        let primary = emails.into_iter().find(|e| e.primary && e.verified);
        Ok(UpstreamIdentity {
            provider: id.clone(),
            subject,
            email_verified: primary.is_some(),
            email: primary.map(|e| e.email),
            name: user.get("name").or_else(|| user.get("login")).and_then(serde_json::Value::as_str).map(str::to_owned),
            claims: user,
        })
    }
}

/// The keys of the upstream-token vault (AES-256-GCM): the current one seals, every one
/// opens, so a key can be rotated by adding the new one in front and keeping the old ones
/// until the tokens they sealed have been refreshed or have ended. They must live outside the
/// database (the environment, a file): whoever reads the database then reads nothing of the
/// tokens. `Debug` shows only the key ids.
#[derive(Clone)]
pub struct VaultKeys {
    /// (id, key): the id is the first 4 bytes of the key's SHA-256, stored in front of each
    /// sealed value.
    keys: Arc<Vec<([u8; 4], aws_lc_rs::aead::RandomizedNonceKey)>>,
}

impl fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> =
            self.keys.iter().map(|(id, _)| id.iter().map(|b| format!("{b:02x}")).collect()).collect();
        f.debug_struct("VaultKeys").field("key_ids", &ids).finish()
    }
}

impl VaultKeys {
    /// The current key, then older ones still able to open; each 32 bytes as 64 hex digits or
    /// base64 (`openssl rand -base64 32`). The error never repeats a key.
    pub fn parse(current: &str, previous: &[&str]) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (n, encoded) in std::iter::once(current).chain(previous.iter().copied()).enumerate() {
            let bytes = crate::sealing::parse_key_bytes(encoded).ok_or_else(|| {
                format!("vault key {} must be 32 bytes, as 64 hex digits or base64 (openssl rand -base64 32)", n + 1)
            })?;
            let digest = crate::secret::SecretHash::of(&bytes);
            let mut id = [0u8; 4];
            id.copy_from_slice(&digest.as_bytes()[..4]);
            let key = aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, &bytes)
                .map_err(|_| "a vault key cannot be set up".to_owned())?;
            keys.push((id, key));
        }
        Ok(Self { keys: Arc::new(keys) })
    }

    /// `clear` sealed with the current key for `aad`: key id ‖ nonce ‖ ciphertext ‖ tag.
    fn seal(&self, aad: &[u8], clear: &[u8]) -> Option<Vec<u8>> {
        let (id, key) = self.keys.first()?;
        Some([id.as_slice(), &crate::sealing::seal_with(key, aad, clear)?].concat())
    }

    /// What [`Self::seal`] sealed for `aad`, with whichever key it names.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (id, rest) = sealed.split_at_checked(4)?;
        let (_, key) = self.keys.iter().find(|(k, _)| k == id)?;
        crate::sealing::open_with(key, aad, rest)
    }

    /// Whether `sealed` was sealed with the current key (else a refresh re-seals it).
    fn is_current(&self, sealed: &[u8]) -> bool {
        self.keys.first().is_some_and(|(id, _)| sealed.starts_with(id))
    }
}

/// A grant's current upstream access, for a tool: the provider it is for and its token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamAccess {
    /// The provider's id.
    pub provider: String,
    access_token: String,
}

impl UpstreamAccess {
    /// The access token, for the provider's APIs only: never forward it anywhere else.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }
}

impl fmt::Debug for UpstreamAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamAccess").field("provider", &self.provider).field("access_token", &"[redacted]").finish()
    }
}

/// What a token exchange (RFC 8693) asks the provider for: the `audience` (a name the
/// provider knows the downstream API by) or the `resource` (its URL, RFC 8707), and the
/// `scope`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeTarget {
    /// The downstream API's name at the provider.
    pub audience: Option<String>,
    /// The downstream API's URL.
    pub resource: Option<String>,
    /// The scopes asked for, space-separated; the provider's default when absent.
    pub scope: Option<String>,
}

impl ExchangeTarget {
    /// A token for the API the provider knows as `audience`.
    pub fn audience(audience: impl Into<String>) -> Self {
        Self { audience: Some(audience.into()), ..Self::default() }
    }

    /// A token for the API at `resource` (an absolute URL without a fragment).
    pub fn resource(resource: impl Into<String>) -> Self {
        Self { resource: Some(resource.into()), ..Self::default() }
    }

    /// With these scopes.
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    fn validate(&self) -> Result<(), String> {
        const MAX: usize = 2048;
        if self.audience.is_none() && self.resource.is_none() {
            return Err("a token exchange names an audience or a resource".into());
        }
        for (what, v) in [("audience", &self.audience), ("resource", &self.resource), ("scope", &self.scope)] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > MAX || v.chars().any(char::is_control))
            {
                return Err(format!(
                    "the exchange's {what} is empty, longer than {MAX} bytes or has control characters"
                ));
            }
        }
        if let Some(r) = &self.resource
            && (url::Url::parse(r).is_err() || r.contains('#'))
        {
            return Err(format!("the exchange's resource {r} is not an absolute URL without a fragment"));
        }
        Ok(())
    }
}

/// A token the provider issued by exchange (RFC 8693 section 2.2.1).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangedToken {
    access_token: String,
    /// What the provider says it issued (`urn:ietf:params:oauth:token-type:...`).
    pub issued_token_type: String,
    /// How to present it (`Bearer`, or `N_A` for a token that is not an access token).
    pub token_type: String,
    /// When it expires, if the provider said.
    pub expires_at: Option<UnixTime>,
    /// The scope granted, if the provider said.
    pub scope: Option<String>,
}

impl ExchangedToken {
    /// The token, for the API it was issued for only.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }
}

impl fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangedToken")
            .field("access_token", &"[redacted]")
            .field("issued_token_type", &self.issued_token_type)
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What the vault keeps for a grant: the provider, and its tokens.
#[derive(Serialize, Deserialize)]
struct VaultRecord {
    provider: String,
    tokens: UpstreamTokens,
}

/// The associated data of tokens on their way from the sign-in to the grant: bound to the
/// person, so they can only ever join a grant of the user who signed in.
fn in_flight_aad(user: &crate::types::UserId) -> Vec<u8> {
    [b"upstream in flight\0".as_slice(), user.as_str().as_bytes()].concat()
}

/// The associated data of a grant's tokens in the vault: bound to the grant.
fn vault_aad(grant: &crate::types::GrantId) -> Vec<u8> {
    [b"upstream vault\0".as_slice(), grant.as_str().as_bytes()].concat()
}

/// How long a replica may hold the refresh lease before another takes over.
const LEASE: Duration = Duration::from_secs(30);
/// An access token this close to its expiry is refreshed before it is handed out.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);
/// How long a caller waits for another replica's refresh.
const LEASE_WAIT: Duration = Duration::from_secs(10);

/// The password hash of a user who signs in only upstream: never a PHC string, so no password
/// ever matches it.
pub const NO_LOCAL_PASSWORD: &str = "!upstream";

impl crate::server::AuthorizationServer {
    /// The upstream provider `id`, when configured.
    pub fn upstream(&self, id: &str) -> Option<&Arc<UpstreamClient>> {
        self.upstreams().iter().find(|u| u.provider().id == id)
    }

    /// Who a finished upstream sign-in is here, recording the outcome:
    /// - its `nonce` is marked used until the flow would have expired, so the same `id_token`
    ///   (or flow cookie) cannot sign anyone in twice, on any replica;
    /// - the local user linked to (provider, subject); else, when the provider allows it, the
    ///   user whose username is the verified email, linked now; else a new user with no local
    ///   password, linked now. A link never moves to another user.
    /// - a disabled user is refused.
    pub async fn upstream_user(
        &self,
        done: &UpstreamSignIn,
        client: Option<&crate::types::ClientId>,
    ) -> Result<Result<crate::users::AuthenticatedUser, UpstreamError>, crate::error::Error> {
        use crate::events::{FlowEvent, FlowStep};
        let now = self.now();
        let who = &done.identity;
        let refuse = |e: UpstreamError| async move {
            self.record_upstream_failure(&e, client).await;
            Ok(Err(e))
        };
        let Some(upstream) = self.upstream(&who.provider) else {
            let e = UpstreamError::new(
                Reason::UpstreamRefused,
                "This sign-in service is not configured.",
                format!("provider '{}' is not configured", clip(&who.provider)),
            );
            return refuse(e).await;
        };
        let mark = format!("upstream-nonce:{}", crate::secret::SecretHash::of(done.nonce.as_bytes()).to_hex());
        if !self.stores().limits.first_use(&mark, now.plus(FLOW_LIFETIME), now).await? {
            let e = UpstreamError::new(
                Reason::UpstreamNonceMismatch,
                "This sign-in was already used. Start again from the application.",
                format!("{}: the flow's nonce was used before (a replayed callback)", who.provider),
            );
            return refuse(e).await;
        }
        let invalid = |what: String| id_token_invalid(format!("{}: {what}", who.provider));
        let provider = match crate::types::UpstreamProviderId::parse(&who.provider) {
            Ok(p) => p,
            Err(e) => return refuse(invalid(e.to_string())).await,
        };
        let subject = match crate::types::UpstreamSubject::parse(&who.subject) {
            Ok(s) => s,
            Err(e) => return refuse(invalid(e.to_string())).await,
        };
        let users = &self.stores().users;
        let links = &self.stores().upstream;
        let (user, how) = match links.linked_user(&provider, &subject).await? {
            Some(id) => match users.user(&id).await? {
                Some(u) => (u, "linked"),
                None => {
                    let e = UpstreamError::new(
                        Reason::UpstreamUserRefused,
                        "Your account here no longer exists. Ask the operator of this server.",
                        format!("{}: '{}' is linked to a user that no longer exists", who.provider, clip(&who.subject)),
                    );
                    return refuse(e).await;
                }
            },
            None => {
                let by_email = match (&who.email, who.email_verified && upstream.provider().link_by_verified_email) {
                    (Some(email), true) => users.user_by_username(email).await?,
                    _ => None,
                };
                let (user, how) = match by_email {
                    Some(u) => (u, "linked by verified email to"),
                    None => {
                        let user = crate::store::User::new(
                            crate::types::UserId::generate(),
                            local_username(&who.provider, &who.subject),
                            NO_LOCAL_PASSWORD.to_owned(),
                            now,
                        );
                        match users.create_user(&user).await {
                            Ok(()) => (user, "created"),
                            // Another replica created and linked them a moment ago.
                            Err(crate::error::StoreError::Conflict(_)) => {
                                match users.user_by_username(&user.username).await? {
                                    Some(u) => (u, "linked"),
                                    None => return Err(crate::error::StoreError::Conflict(user.username).into()),
                                }
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                };
                if !links.link_user(&provider, &subject, &user.id, now).await? {
                    let e = UpstreamError::new(
                        Reason::UpstreamUserRefused,
                        "Your account could not be linked. Ask the operator of this server.",
                        format!("{}: '{}' is linked to another user", who.provider, clip(&who.subject)),
                    );
                    return refuse(e).await;
                }
                (user, how)
            }
        };
        if user.disabled {
            let e = UpstreamError::new(
                Reason::UpstreamUserRefused,
                "Your account here is disabled. Ask the operator of this server.",
                format!("{}: user '{}' is disabled", who.provider, user.username),
            );
            return refuse(e).await;
        }
        let detail =
            format!("signed in at {} as '{}': {how} user '{}'", who.provider, clip(&who.subject), user.username);
        let event = FlowEvent::success(now, FlowStep::UpstreamSignIn, detail).user(&user.id);
        self.record(match client {
            Some(c) => event.client(c),
            None => event,
        })
        .await;
        let name = who.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| user.username.clone());
        let mut signed_in = crate::users::AuthenticatedUser::new(user.id.clone(), name);
        signed_in.credential_version = user.credential_version;
        Ok(Ok(signed_in))
    }

    /// Keeps `tokens` of `provider` for the pending authorization `pending` of `user`, sealed
    /// for that user, so that the grant its code starts holds them. Without a vault nothing
    /// is kept. The pending request expires as before.
    pub async fn hold_upstream_tokens(
        &self,
        pending: &str,
        user: &crate::types::UserId,
        provider: &str,
        tokens: &UpstreamTokens,
    ) -> Result<(), crate::error::Error> {
        let Some(vault) = self.vault() else {
            tracing::debug!(provider, "no vault key: the upstream tokens are not kept");
            return Ok(());
        };
        let now = self.now();
        let Some(mut p) = self.stores().authorizations.pending(pending, now).await? else {
            return Ok(());
        };
        let record = VaultRecord { provider: provider.to_owned(), tokens: tokens.clone() };
        let clear = serde_json::to_vec(&record).map_err(|e| crate::error::Error::Crypto(e.to_string()))?;
        let sealed = vault
            .seal(&in_flight_aad(user), &clear)
            .ok_or_else(|| crate::error::Error::Crypto("sealing the upstream tokens failed".into()))?;
        p.upstream = Some(URL_SAFE_NO_PAD.encode(sealed));
        self.stores().authorizations.put_pending(&p).await?;
        Ok(())
    }

    /// Moves the tokens a redeemed code carried into the vault under `grant`. Failures are
    /// logged, not returned: the person is signed in either way, and a tool that needs the
    /// provider's token then says to sign in again.
    pub(crate) async fn keep_upstream_tokens(&self, grant: &crate::store::Grant, in_flight: &str) {
        let Some(vault) = self.vault() else { return };
        let opened = URL_SAFE_NO_PAD
            .decode(in_flight)
            .ok()
            .and_then(|b| vault.open(&in_flight_aad(&grant.user), &b))
            .and_then(|clear| vault.seal(&vault_aad(&grant.id), &clear).map(|s| (s, clear)));
        let Some((sealed, clear)) = opened else {
            tracing::warn!(grant = %grant.id, "the upstream tokens of a redeemed code do not open with the vault keys; not kept");
            return;
        };
        let expires = serde_json::from_slice::<VaultRecord>(&clear).ok().and_then(|r| r.tokens.expires_at);
        match self.stores().upstream.put_upstream_tokens(&grant.id, &sealed, expires, self.now()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(grant = %grant.id, "the grant ended before its upstream tokens were kept"),
            Err(e) => tracing::error!(grant = %grant.id, error = %e, "keeping the upstream tokens failed"),
        }
    }

    /// The provider's current access token for `grant`, refreshed first when it expires within
    /// a minute: by one replica at a time (a lease in the store), the others waiting for its
    /// result. When the provider refuses the refresh (`invalid_grant`: the person revoked the
    /// access there, or it expired), the grant here is revoked too, so that the client signs
    /// in again instead of failing in a loop.
    pub async fn upstream_access_token(
        &self,
        grant: &crate::types::GrantId,
    ) -> Result<Result<UpstreamAccess, UpstreamError>, crate::error::Error> {
        let Some(vault) = self.vault() else {
            return Ok(Err(UpstreamError::unavailable("no vault key is configured")));
        };
        let deadline = self.now().plus(LEASE_WAIT);
        let holder = crate::secret::random_token();
        loop {
            let now = self.now();
            let Some(stored) = self.stores().upstream.upstream_tokens(grant).await? else {
                // A grant ended by a refusal (here or at another replica) has lost its tokens;
                // one that never held any is a person who signed in with a local password.
                let ended = self.stores().grants.grant(grant).await?.is_none_or(|g| g.revoked_at.is_some());
                if ended {
                    return Ok(Err(grant_ended(format!("grant {grant} has ended, and its upstream tokens with it"))));
                }
                return Ok(Err(UpstreamError::unavailable(format!("grant {grant} holds no upstream tokens"))));
            };
            let Some(record) = vault
                .open(&vault_aad(grant), &stored.sealed)
                .and_then(|c| serde_json::from_slice::<VaultRecord>(&c).ok())
            else {
                return Ok(Err(UpstreamError::unavailable(format!(
                    "grant {grant}: the vault record does not open with the keys"
                ))));
            };
            let fresh = record.tokens.expires_at.is_none_or(|t| t > now.plus(REFRESH_AHEAD));
            let access = |r: VaultRecord| UpstreamAccess { provider: r.provider, access_token: r.tokens.access_token };
            if fresh && vault.is_current(&stored.sealed) {
                return Ok(Ok(access(record)));
            }
            let Some(refresh_token) = record.tokens.refresh_token.clone() else {
                if fresh {
                    return Ok(Ok(access(record)));
                }
                return Ok(Err(UpstreamError::unavailable(format!(
                    "grant {grant}: the upstream token expired and there is no refresh token"
                ))));
            };
            if !self.stores().upstream.take_refresh_lease(grant, &holder, now.plus(LEASE), now).await? {
                // Another replica refreshes: wait for its new version.
                if now >= deadline {
                    return Ok(Err(UpstreamError::new(
                        Reason::UpstreamUnreachable,
                        "The sign-in service could not be reached. Try again later.",
                        format!("grant {grant}: another replica's refresh did not finish within {LEASE_WAIT:?}"),
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let result = self.refresh_in_vault(grant, &record, &refresh_token, &stored, vault, fresh).await;
            let _ = self.stores().upstream.release_refresh_lease(grant, &holder).await;
            match result {
                // Another replica's refresh landed, or the grant ended, between the read and the
                // lease: read again.
                Ok(None) => continue,
                Ok(Some(r)) => return Ok(r),
                Err(e) => return Err(e),
            }
        }
    }

    /// Under the lease: refreshes at the provider (or only re-seals with the current key when
    /// the token is still fresh) and writes the new version; `None` when the version moved
    /// before the lease was taken.
    async fn refresh_in_vault(
        &self,
        grant: &crate::types::GrantId,
        record: &VaultRecord,
        refresh_token: &str,
        stored: &crate::store::SealedUpstream,
        vault: &VaultKeys,
        fresh: bool,
    ) -> Result<Option<Result<UpstreamAccess, UpstreamError>>, crate::error::Error> {
        let now = self.now();
        // The version may have moved while the lease was taken: read it again.
        match self.stores().upstream.upstream_tokens(grant).await? {
            Some(current) if current.version != stored.version => return Ok(None),
            Some(_) => {}
            // Gone with its grant meanwhile: the caller's next read says so.
            None => return Ok(None),
        }
        let tokens = if fresh {
            record.tokens.clone()
        } else {
            let Some(upstream) = self.upstream(&record.provider) else {
                return Ok(Some(Err(UpstreamError::unavailable(format!(
                    "provider '{}' is no longer configured",
                    record.provider
                )))));
            };
            match upstream.refresh(refresh_token).await {
                Ok(t) => t,
                Err(e) if e.reason == Reason::UpstreamGrantEnded => {
                    let revoked = self.stores().grants.revoke_grant(grant, now).await?;
                    let e =
                        UpstreamError { detail: format!("{}; grant {grant} revoked here: {revoked}", e.detail), ..e };
                    let event = crate::events::FlowEvent::failure(
                        now,
                        crate::events::FlowStep::UpstreamSignIn,
                        e.reason,
                        e.detail.clone(),
                    );
                    self.record(event).await;
                    return Ok(Some(Err(e)));
                }
                Err(e) => return Ok(Some(Err(e))),
            }
        };
        let tokens =
            UpstreamTokens { refresh_token: tokens.refresh_token.or_else(|| Some(refresh_token.to_owned())), ..tokens };
        let next = VaultRecord { provider: record.provider.clone(), tokens };
        let clear = serde_json::to_vec(&next).map_err(|e| crate::error::Error::Crypto(e.to_string()))?;
        let sealed = vault
            .seal(&vault_aad(grant), &clear)
            .ok_or_else(|| crate::error::Error::Crypto("sealing the upstream tokens failed".into()))?;
        if !self
            .stores()
            .upstream
            .replace_upstream_tokens(grant, stored.version, &sealed, next.tokens.expires_at, now)
            .await?
        {
            tracing::warn!(grant = %grant, "the upstream tokens changed during a refresh under the lease");
        }
        Ok(Some(Ok(UpstreamAccess { provider: next.provider, access_token: next.tokens.access_token })))
    }

    /// Records a refusal a tool met with `client`'s upstream token (a refresh, the userinfo,
    /// an exchange): its reason and detail, at most once per reason and client per interval,
    /// as every failure a caller can repeat at will; the others are only logged.
    pub async fn record_upstream_tool_failure(&self, e: &UpstreamError, client: &crate::types::ClientId) {
        use crate::events::{FlowEvent, FlowStep};
        tracing::info!(reason = e.reason.as_str(), detail = %e.detail, client = %client, "upstream token refused for a tool");
        let event = FlowEvent::failure(self.now(), FlowStep::UpstreamSignIn, e.reason, e.detail.clone()).client(client);
        self.record_unauthenticated(event).await;
    }

    /// Records a refused upstream sign-in: its reason, and the detail for the operator.
    pub async fn record_upstream_failure(&self, e: &UpstreamError, client: Option<&crate::types::ClientId>) {
        use crate::events::{FlowEvent, FlowStep};
        tracing::info!(reason = e.reason.as_str(), detail = %e.detail, "upstream sign-in refused");
        let event = FlowEvent::failure(self.now(), FlowStep::UpstreamSignIn, e.reason, e.detail.clone());
        match client {
            Some(c) => self.record(event.client(c)).await,
            None => self.record_unauthenticated(event).await,
        }
    }
}

/// The username of a person created by upstream sign-in: `provider:subject` when it fits a
/// username, else `provider:` and a digest of the subject.
fn local_username(provider: &str, subject: &str) -> String {
    let plain = format!("{provider}:{subject}");
    if plain.chars().count() <= crate::users::MAX_USERNAME_LEN
        && !plain.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return plain;
    }
    let digest = crate::secret::SecretHash::of(subject.as_bytes()).to_hex();
    format!("{provider}:{}", &digest[..32])
}

/// The tokens of a token response, and its `id_token`.
type Issued = (UpstreamTokens, Option<String>);

/// A token endpoint's answer: the tokens and the `id_token`, or its `error` and
/// `error_description` (clipped), or `None` when it is neither (not JSON, no access token).
fn parse_token_answer(body: &[u8], now: UnixTime) -> Option<Result<Issued, (String, String)>> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        refresh_token: Option<String>,
        id_token: Option<String>,
        expires_in: Option<u64>,
        scope: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    if let Some(error) = &a.error {
        return Some(Err((clip(error), a.error_description.as_deref().map(clip).unwrap_or_default())));
    }
    let access_token = a.access_token.filter(|t| !t.is_empty())?;
    let tokens = UpstreamTokens {
        access_token,
        refresh_token: a.refresh_token.filter(|t| !t.is_empty()),
        expires_at: a.expires_in.map(|s| now.plus(Duration::from_secs(s.min(365 * 86_400)))),
        scope: a.scope,
    };
    Some(Ok((tokens, a.id_token)))
}

/// `clear` sealed with AES-256-GCM under `key` and `aad`: base64url of nonce ‖ ciphertext ‖ tag.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], clear: &[u8]) -> Result<String, String> {
    let key = aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
        .map_err(|_| "the sealing key cannot be set up".to_owned())?;
    let sealed = crate::sealing::seal_with(&key, aad, clear).ok_or_else(|| "sealing failed".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// What [`seal`] sealed, or `None` when it does not open (another key, altered, truncated).
pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    if sealed.len() > 8 * 1024 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let key = aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, key).ok()?;
    crate::sealing::open_with(&key, aad, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_keys_rotate_and_never_show() {
        let (old_key, new_key) = ("11".repeat(32), "22".repeat(32));
        let old = VaultKeys::parse(&old_key, &[]).unwrap();
        let sealed = old.seal(b"grant-1", b"tokens").unwrap();
        let rotated = VaultKeys::parse(&new_key, &[&old_key]).unwrap();
        assert_eq!(rotated.open(b"grant-1", &sealed).as_deref(), Some(&b"tokens"[..]), "the old key still opens");
        assert!(!rotated.is_current(&sealed), "and what it sealed is sealed again at the next use");
        let resealed = rotated.seal(b"grant-1", b"tokens").unwrap();
        assert!(rotated.is_current(&resealed));
        assert!(old.open(b"grant-1", &resealed).is_none(), "the new key's seal needs the new key");
        assert!(rotated.open(b"grant-2", &resealed).is_none(), "bound to its grant");
        assert!(!format!("{rotated:?}").contains("2222"), "{rotated:?}");
        assert!(VaultKeys::parse("short", &[]).unwrap_err().contains("32 bytes"));
        assert!(!VaultKeys::parse(&new_key, &["not-a-key"]).unwrap_err().contains("not-a-key"), "never repeated");
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_provider() {
        let key = [3u8; 32];
        let sealed = seal(&key, b"google", b"flow state").unwrap();
        assert_eq!(open(&key, b"google", &sealed).as_deref(), Some(&b"flow state"[..]));
        assert!(open(&[4u8; 32], b"google", &sealed).is_none(), "another key");
        assert!(open(&key, b"github", &sealed).is_none(), "another provider");
        assert!(open(&key, b"google", &sealed[..sealed.len() - 2]).is_none(), "truncated");
        assert!(open(&key, b"google", "not base64 !").is_none());
        assert!(open(&key, b"google", &"A".repeat(9000)).is_none(), "bounded");
        assert_ne!(seal(&key, b"google", b"flow state").unwrap(), sealed, "a fresh nonce each time");
    }

    fn entra() -> UpstreamClient {
        #[derive(Debug)]
        struct Nowhere;
        #[async_trait]
        impl UpstreamHttp for Nowhere {
            async fn get(&self, _: &str, _: Option<&str>) -> Result<UpstreamAnswer, DocumentFetchError> {
                Err(DocumentFetchError::Fetch("offline".into()))
            }
            async fn post_form(
                &self,
                _: &str,
                _: &[(&str, &str)],
                _: Option<(&str, &str)>,
            ) -> Result<UpstreamAnswer, DocumentFetchError> {
                Err(DocumentFetchError::Fetch("offline".into()))
            }
        }
        let provider = UpstreamProvider::entra_multi_tenant("app", UpstreamSecret::new("s"));
        let endpoints = UpstreamEndpoints {
            issuer: provider.issuer().to_owned(),
            authorization_endpoint: "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize".into(),
            token_endpoint: "https://login.microsoftonline.com/organizations/oauth2/v2.0/token".into(),
            jwks_uri: Some("https://login.microsoftonline.com/organizations/discovery/v2.0/keys".into()),
            userinfo_endpoint: None,
            basic_auth: false,
        };
        UpstreamClient { provider, endpoints, http: Arc::new(Nowhere), keys: Mutex::new(None) }
    }

    #[test]
    fn a_multi_tenant_issuer_is_filled_from_the_tokens_tenant() {
        let c = entra();
        let tid = "9188040d-6c67-4c5b-b112-36a304b66dad";
        let iss = format!("https://login.microsoftonline.com/{tid}/v2.0");
        assert!(c.issuer_matches(&iss, Some(tid)));
        assert!(!c.issuer_matches(&iss, Some("another-tenant")), "the iss must be the token's own tenant");
        assert!(!c.issuer_matches("https://login.microsoftonline.com/x/y/v2.0", Some("x/y")), "no path in a tenant");
        assert!(!c.issuer_matches("https://evil.example/9188040d/v2.0", Some("9188040d")));
        // At the callback (RFC 9207), before the token: any single tenant of the template.
        assert!(c.issuer_matches(&iss, None));
        assert!(!c.issuer_matches("https://login.microsoftonline.com//v2.0", None));
    }

    #[test]
    fn the_presets_name_their_issuers() {
        const OFFLINE: &str = "offline_access";
        let s = || UpstreamSecret::new("s");
        assert_eq!(UpstreamProvider::google("c", s()).issuer(), "https://accounts.google.com");
        assert_eq!(UpstreamProvider::entra("t1", "c", s()).issuer(), "https://login.microsoftonline.com/t1/v2.0");
        assert_eq!(UpstreamProvider::auth0("x.auth0.com", None, "c", s()).issuer(), "https://x.auth0.com/");
        let auth0 = UpstreamProvider::auth0("x.auth0.com", Some("https://api.example"), "c", s());
        assert!(auth0.extra_params.contains(&("audience".into(), "https://api.example".into())));
        assert_eq!(
            UpstreamProvider::keycloak("https://kc.example/", "acme", "c", s()).issuer(),
            "https://kc.example/realms/acme"
        );
        let google = UpstreamProvider::google("c", s());
        assert!(google.extra_params.contains(&("access_type".into(), "offline".into())), "Google's refresh token");
        for p in [
            UpstreamProvider::entra("t1", "c", s()),
            UpstreamProvider::entra_multi_tenant("c", s()),
            UpstreamProvider::okta("https://x.okta.com", "c", s()),
            UpstreamProvider::auth0("x.auth0.com", None, "c", s()),
        ] {
            assert!(p.scopes.iter().any(|s| s == OFFLINE), "{} asks for a refresh token", p.id);
        }
        // OpenID Connect Core 11: offline_access, honoured with prompt=consent; the presets of
        // providers that issue refresh tokens without the consent page do not force it.
        let any = UpstreamProvider::oidc("oidc", "IdP", "https://idp.example", "c", s());
        assert_eq!(any.scopes.join(" "), "openid email profile offline_access");
        assert!(any.extra_params.contains(&("prompt".into(), "consent".into())), "{:?}", any.extra_params);
        let keycloak = UpstreamProvider::keycloak("https://kc.example", "acme", "c", s());
        for p in [google, keycloak, UpstreamProvider::entra("t1", "c", s())] {
            assert!(!p.extra_params.iter().any(|(k, _)| k == "prompt"), "{} forces no consent page", p.id);
        }
        let github = UpstreamProvider::github("c", s());
        assert_eq!((github.kind, github.scopes.join(" ")), (UpstreamKind::GitHub, "read:user user:email".into()));
        for p in [UpstreamProvider::google("c", s()), UpstreamProvider::github("c", s())] {
            assert!(p.validate().is_ok(), "{p:?}");
            assert!(!format!("{p:?}").contains("\"s\""), "no secret in Debug");
        }
    }
}
