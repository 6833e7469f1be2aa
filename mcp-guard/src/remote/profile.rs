//! How the access tokens of one external authorization server are read: an [`IssuerProfile`].
//!
//! RFC 9068 fixes what a JWT access token looks like (`typ: at+jwt`, `client_id`, `scope`,
//! `jti`), and [`IssuerProfile::rfc9068`], the default, takes nothing else. The identity
//! providers most MCP servers sit behind issue JWTs of their own shape by default; a preset
//! says, for one of them, which `typ` values to take, where the scopes, the client and the
//! subject are, and how a token with no person behind it (a client-credentials token) is
//! recognised. What no preset relaxes: the issuer is compared exactly, the audience is always
//! checked (the resource URL, or a value the operator gave with [`IssuerProfile::with_audience`];
//! none is ever implied), `exp`, `nbf` and `iat` are checked with the leeway, and the signature
//! is an asymmetric one by a key of the issuer's JWKS, of that key's algorithm (never `none`,
//! never HMAC).
//!
//! | preset | `typ` | client | subject | scopes | machine token when | token id |
//! |---|---|---|---|---|---|---|
//! | `rfc9068` | `at+jwt` | `client_id` | `sub` | `scope` | `machine: true`, or `sub` = client | `jti` (required) |
//! | `keycloak` | `JWT`, `at+jwt` | `azp` | `sub` | `scope` | `preferred_username` `service-account-…`, `client_id`/`clientId` present, or `sub` = client | `jti` |
//! | `entra` | `JWT` | `azp` (v2.0), `appid` (v1.0) | `oid` | `scp` | `idtyp: app`, no `scp`, or `sub` = client | `uti` |
//! | `auth0` | `JWT`, `at+jwt` | `azp`, `client_id` | `sub` | `scope` | `gty: client-credentials`, `sub` `…@clients`, or `sub` = client | `jti` |
//! | `okta` | none, `JWT`, `at+jwt`, `application/okta-internal-at+jwt` | `cid` | `uid` | `scp` | no `uid`, or `sub` = client | `jti` |
//!
//! Roles (`roles`, Keycloak's `realm_access.roles` and `resource_access.<client>.roles`) become
//! scopes only when configured ([`IssuerProfile::with_roles_claim`],
//! [`IssuerProfile::with_keycloak_realm_roles`], [`IssuerProfile::with_keycloak_client_roles`]).
//! A token is a machine's when any of its preset's signs holds: mistaking a person for a
//! machine refuses them (machines are refused unless the resource accepts them), the safe way
//! round. Where the token id claim is missing, the id is derived from the token's SHA-256.
//!
//! What each preset relies on, from the providers' published documentation:
//!
//! - **keycloak**: access tokens carry header `typ: JWT` (a client can switch to `at+jwt`),
//!   the client in `azp`, a space-separated `scope`, `aud` of `account` unless an Audience
//!   mapper adds the MCP URL (or a client id), and a payload `typ` naming the token kind
//!   (`Bearer` for access tokens; `ID`, `Refresh`, `Offline` and `Logout` tokens are refused).
//!   A client's service account is the user `service-account-<client id>`
//!   (`ServiceAccountConstants` in Keycloak's source), and its tokens carry the `client_id`
//!   (formerly `clientId`) claim of the `service_account` client scope.
//! - **entra**: v2.0 access tokens have header `typ` always `JWT`, `iss`
//!   `https://login.microsoftonline.com/<tenant id>/v2.0`, `aud` always the API's application
//!   (client) id, the client in `azp` (v1.0: `appid`), `scp` a space-separated string present
//!   only in tokens for a user, `roles` for application permissions (what client-credentials
//!   tokens carry instead), `oid` the immutable id of the user or service principal, the same
//!   for every application in the tenant (`sub` is pairwise per application), and `uti` as the
//!   token identifier (learn.microsoft.com, "Access token claims reference"). v1.0 tokens
//!   (an API whose manifest leaves `accessTokenAcceptedVersion` at 1) have `iss`
//!   `https://sts.windows.net/<tenant id>/`, accepted only with
//!   [`IssuerProfile::with_entra_v1_issuer`]. Multi-tenant issuers (`common`, `organizations`)
//!   name no single tenant and are refused.
//! - **auth0**: the default token profile issues `azp`, a space-separated `scope` and an `aud`
//!   array of the API identifier and the tenant's `/userinfo`; the RFC 9068 profile issues
//!   `client_id` and `jti` instead (auth0.com, "Access Token Profiles"). Client-credentials
//!   tokens have `sub` `<client id>@clients` and `gty: client-credentials`. The issuer ends
//!   with `/` and is kept so.
//! - **okta**: a custom authorization server (`https://<org>/oauth2/<server id>`) issues `ver`,
//!   `jti` (`AT.…`), the client in `cid`, the user's id in `uid` and the login in `sub`, and
//!   `scp` as an array (developer.okta.com, "OAuth 2.0 and OpenID Connect claims"); the header
//!   names `kid` and `alg`. Tokens of the org authorization server (issuer without `/oauth2/`)
//!   are for Okta's own APIs and not meant to be validated by others, so that issuer is refused.
//!
//! ```
//! use mcp_guard::remote::IssuerProfile;
//!
//! let entra = IssuerProfile::named("entra")
//!     .unwrap()
//!     .with_audience("6e74172b-be56-4843-9ff4-e66a39bb12e3")
//!     .with_scope_prefix("api://6e74172b-be56-4843-9ff4-e66a39bb12e3/");
//! assert_eq!(entra.name(), "entra");
//! assert!(IssuerProfile::named("strict").is_none());
//! ```

use oauth_core::{ClientId, GrantId, JwtRules, MAX_SCOPES, Reason, Scope, ScopeSet, UnixTime, UserId, VerifiedJwt};
use serde_json::Value;

use crate::context::{AuthContext, Rejection};

/// The names [`IssuerProfile::named`] knows, the strict default first.
pub const PRESETS: [&str; 5] = ["rfc9068", "keycloak", "entra", "auth0", "okta"];

/// The provider a profile started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    Rfc9068,
    Keycloak,
    Entra,
    Auth0,
    Okta,
}

/// A fact about a token's claims: what recognises a machine's token, or a token that is not
/// an access token at all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimTest {
    /// `sub` is the client the token names (RFC 9068 2.2: a token obtained with no resource
    /// owner has the client as its subject).
    SubjectIsClient,
    /// The claim is this string.
    Equals(String, String),
    /// The claim is `true`.
    True(String),
    /// The claim is absent (or `null`).
    Absent(String),
    /// The claim is present.
    Present(String),
    /// The claim is a string starting with this.
    StartsWith(String, String),
    /// The claim is a string ending with this.
    EndsWith(String, String),
}

impl ClaimTest {
    fn equals(claim: &str, value: &str) -> Self {
        Self::Equals(claim.into(), value.into())
    }

    fn holds(&self, jwt: &VerifiedJwt, client: &str) -> bool {
        let present = |c: &str| jwt.claims.get(c).is_some_and(|v| !v.is_null());
        match self {
            Self::SubjectIsClient => jwt.str_claim("sub") == Some(client),
            Self::Equals(c, v) => jwt.str_claim(c) == Some(v.as_str()),
            Self::True(c) => jwt.claims.get(c).and_then(Value::as_bool) == Some(true),
            Self::Absent(c) => !present(c),
            Self::Present(c) => present(c),
            Self::StartsWith(c, p) => jwt.str_claim(c).is_some_and(|s| s.starts_with(p.as_str())),
            Self::EndsWith(c, p) => jwt.str_claim(c).is_some_and(|s| s.ends_with(p.as_str())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::SubjectIsClient => "sub is the client".into(),
            Self::Equals(c, v) => format!("{c} is {v:?}"),
            Self::True(c) => format!("{c} is true"),
            Self::Absent(c) => format!("no {c}"),
            Self::Present(c) => format!("{c} is present"),
            Self::StartsWith(c, p) => format!("{c} starts with {p:?}"),
            Self::EndsWith(c, p) => format!("{c} ends with {p:?}"),
        }
    }
}

/// How [`JwksVerifier`](super::JwksVerifier) reads one issuer's access tokens: a preset by
/// name ([`Self::named`]) and the operator's additions. See the [module docs](self) for what
/// each preset accepts and why. `Default` is [`Self::rfc9068`], the strict profile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerProfile {
    preset: Preset,
    typs: Vec<String>,
    typ_optional: bool,
    kid_optional: bool,
    token_id_claims: Vec<String>,
    jti_optional: bool,
    scope_claims: Vec<String>,
    role_paths: Vec<Vec<String>>,
    scope_prefix: Option<String>,
    client_claims: Vec<String>,
    subject_claim: String,
    machine: Vec<ClaimTest>,
    not_access_token: Vec<ClaimTest>,
    grant_claim: Option<String>,
    audiences: Vec<String>,
    entra_v1_issuer: bool,
}

impl Default for IssuerProfile {
    fn default() -> Self {
        Self::rfc9068()
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

impl IssuerProfile {
    /// The preset called `name` (one of [`PRESETS`]), or `None`.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "rfc9068" => Self::rfc9068(),
            "keycloak" => Self::keycloak(),
            "entra" => Self::entra(),
            "auth0" => Self::auth0(),
            "okta" => Self::okta(),
            _ => return None,
        })
    }

    /// RFC 9068 exactly, the default: `typ: at+jwt`, `kid`, `jti`, `client_id`, `scope`. Tokens
    /// of this project's own authorization server, and of any server that follows the RFC
    /// (node-oidc-provider's JWT access tokens do). Without additions it is verified by the
    /// same code as [`LocalVerifier`](crate::LocalVerifier)'s tokens.
    pub fn rfc9068() -> Self {
        Self {
            preset: Preset::Rfc9068,
            typs: strings(&["at+jwt", "application/at+jwt"]),
            typ_optional: false,
            kid_optional: false,
            token_id_claims: strings(&["jti"]),
            jti_optional: false,
            scope_claims: strings(&["scope"]),
            role_paths: Vec::new(),
            scope_prefix: None,
            client_claims: strings(&["client_id"]),
            subject_claim: "sub".into(),
            machine: vec![ClaimTest::True("machine".into()), ClaimTest::SubjectIsClient],
            not_access_token: Vec::new(),
            grant_claim: Some("gid".into()),
            audiences: Vec::new(),
            entra_v1_issuer: false,
        }
    }

    /// Keycloak's default access tokens: see the [module docs](self).
    pub fn keycloak() -> Self {
        Self {
            preset: Preset::Keycloak,
            typs: strings(&["JWT", "at+jwt", "application/at+jwt"]),
            token_id_claims: strings(&["jti"]),
            jti_optional: true,
            client_claims: strings(&["azp"]),
            machine: vec![
                ClaimTest::StartsWith("preferred_username".into(), "service-account-".into()),
                ClaimTest::Present("client_id".into()),
                ClaimTest::Present("clientId".into()),
                ClaimTest::SubjectIsClient,
            ],
            not_access_token: ["ID", "Refresh", "Offline", "Logout"]
                .iter()
                .map(|t| ClaimTest::equals("typ", t))
                .collect(),
            grant_claim: None,
            ..Self::rfc9068()
        }
    }

    /// Microsoft Entra ID's v2.0 access tokens, single tenant: see the [module docs](self).
    /// Needs the API's application id as an audience ([`Self::with_audience`]).
    pub fn entra() -> Self {
        Self {
            preset: Preset::Entra,
            typs: strings(&["JWT"]),
            token_id_claims: strings(&["uti", "jti"]),
            jti_optional: true,
            scope_claims: strings(&["scp"]),
            client_claims: strings(&["azp", "appid"]),
            subject_claim: "oid".into(),
            machine: vec![
                ClaimTest::equals("idtyp", "app"),
                ClaimTest::Absent("scp".into()),
                ClaimTest::SubjectIsClient,
            ],
            grant_claim: None,
            ..Self::rfc9068()
        }
    }

    /// Auth0's access tokens, in its default or its RFC 9068 token profile: see the
    /// [module docs](self).
    pub fn auth0() -> Self {
        Self {
            preset: Preset::Auth0,
            typs: strings(&["JWT", "at+jwt", "application/at+jwt"]),
            jti_optional: true,
            client_claims: strings(&["azp", "client_id"]),
            machine: vec![
                ClaimTest::equals("gty", "client-credentials"),
                ClaimTest::EndsWith("sub".into(), "@clients".into()),
                ClaimTest::SubjectIsClient,
            ],
            grant_claim: None,
            ..Self::rfc9068()
        }
    }

    /// The access tokens of an Okta custom authorization server: see the [module docs](self).
    pub fn okta() -> Self {
        Self {
            preset: Preset::Okta,
            typs: strings(&["JWT", "at+jwt", "application/at+jwt", "application/okta-internal-at+jwt"]),
            typ_optional: true,
            jti_optional: true,
            scope_claims: strings(&["scp"]),
            client_claims: strings(&["cid"]),
            subject_claim: "uid".into(),
            machine: vec![ClaimTest::Absent("uid".into()), ClaimTest::SubjectIsClient],
            grant_claim: None,
            ..Self::rfc9068()
        }
    }

    /// The preset's name.
    pub fn name(&self) -> &'static str {
        match self.preset {
            Preset::Rfc9068 => "rfc9068",
            Preset::Keycloak => "keycloak",
            Preset::Entra => "entra",
            Preset::Auth0 => "auth0",
            Preset::Okta => "okta",
        }
    }

    /// The audiences accepted besides the resource URL.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Also accepts tokens whose `aud` contains `audience` (compared exactly): an Auth0 API
    /// identifier, Entra's application id or `api://<application id>`, a Keycloak client id.
    /// Default: the resource URL only. Every token the issuer mints for that audience opens
    /// this resource, so give only values that name it: never a client's id, which is the
    /// audience of that client's ID tokens.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Reads scopes from the claim `name` as well, a space-separated string or an array of
    /// strings (Auth0's `permissions`, say). Default: the preset's (`scope` or `scp`).
    #[must_use]
    pub fn with_scope_claim(mut self, name: impl Into<String>) -> Self {
        self.scope_claims.push(name.into());
        self
    }

    /// Maps the roles in the array claim `name` (Entra's `roles`) into scopes. Default: roles
    /// are not scopes. A role that is not a valid scope value is left out.
    #[must_use]
    pub fn with_roles_claim(self, name: impl Into<String>) -> Self {
        self.with_roles_at([name.into()])
    }

    /// Maps Keycloak's realm roles (`realm_access.roles`) into scopes. Default: off.
    #[must_use]
    pub fn with_keycloak_realm_roles(self) -> Self {
        self.with_roles_at(["realm_access".to_owned(), "roles".to_owned()])
    }

    /// Maps Keycloak's roles of `client` (`resource_access.<client>.roles`) into scopes.
    /// Default: off.
    #[must_use]
    pub fn with_keycloak_client_roles(self, client: impl Into<String>) -> Self {
        self.with_roles_at(["resource_access".to_owned(), client.into(), "roles".to_owned()])
    }

    /// Maps the array of roles found by following `path` through nested objects into scopes.
    #[must_use]
    pub fn with_roles_at(mut self, path: impl IntoIterator<Item = String>) -> Self {
        self.role_paths.push(path.into_iter().collect());
        self
    }

    /// Prefixes every scope read from the token with `prefix`. For Entra: clients must ask for
    /// `api://<application id>/mcp:tools`, the token's `scp` says `mcp:tools`, and with the
    /// prefix `api://<application id>/` the guard requires and advertises the form clients ask
    /// for. Default: none.
    #[must_use]
    pub fn with_scope_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.scope_prefix = Some(prefix.into());
        self
    }

    /// The claims naming the client, tried in order; two that are present must agree.
    /// Default: the preset's.
    #[must_use]
    pub fn with_client_claims<I, S>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.client_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// The claim naming the person. Default: the preset's (`sub`; Entra `oid`, Okta `uid`).
    /// Tool handlers key their data on it: changing it on a running deployment changes who
    /// everyone is.
    #[must_use]
    pub fn with_subject_claim(mut self, claim: impl Into<String>) -> Self {
        self.subject_claim = claim.into();
        self
    }

    /// Also accepts the header `typ` value `typ`. Default: the preset's. A generic value such
    /// as `JWT` matches ID tokens too: the audience check is then what keeps them out.
    #[must_use]
    pub fn with_typ(mut self, typ: impl Into<String>) -> Self {
        self.typs.push(typ.into());
        self
    }

    /// Accepts tokens without a header `typ`. Default: the preset's (only Okta's).
    #[must_use]
    pub fn with_optional_typ(mut self, optional: bool) -> Self {
        self.typ_optional = optional;
        self
    }

    /// Accepts tokens without a `kid` when the JWKS has one key of the token's algorithm.
    /// Default: refused (every preset's issuer names its keys).
    #[must_use]
    pub fn with_optional_kid(mut self, optional: bool) -> Self {
        self.kid_optional = optional;
        self
    }

    /// Accepts tokens without a token id (`jti`, Entra's `uti`); their id is then derived from
    /// the token. Default: required by `rfc9068` only.
    #[must_use]
    pub fn with_optional_jti(mut self, optional: bool) -> Self {
        self.jti_optional = optional;
        self
    }

    /// Entra only: also accepts the tenant's v1.0 tokens, issued by
    /// `https://sts.windows.net/<tenant id>/` (Azure's global cloud). Default: v2.0 only.
    #[must_use]
    pub fn with_entra_v1_issuer(mut self, on: bool) -> Self {
        self.entra_v1_issuer = on;
        self
    }

    /// Also recognises a machine's token by `test`.
    #[must_use]
    pub fn with_machine_sign(mut self, test: ClaimTest) -> Self {
        self.machine.push(test);
        self
    }

    /// Whether this is the unmodified strict profile, verified by the RFC 9068 fast path.
    pub(crate) fn is_strict(&self) -> bool {
        *self == Self::rfc9068()
    }

    /// The rules for tokens of `issuer` for `resource`, or why this profile cannot be used
    /// with that issuer.
    pub(crate) fn rules(&self, issuer: &str, resource: &str) -> Result<JwtRules, String> {
        let mut rules = JwtRules::new(issuer, resource)
            .with_typs(self.typs.iter().cloned())
            .with_optional_typ(self.typ_optional)
            .with_optional_kid(self.kid_optional);
        for audience in &self.audiences {
            if audience.is_empty() || audience.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("the audience {audience:?} is empty or has whitespace"));
            }
            rules = rules.with_audience(audience.clone());
        }
        match self.preset {
            Preset::Entra => {
                let tenant = entra_tenant(issuer).ok_or_else(|| {
                    format!(
                        "the entra preset takes a single-tenant v2.0 issuer, \
                         https://login.microsoftonline.com/<tenant id>/v2.0, not '{issuer}' \
                         (common, organizations and consumers name no one tenant)"
                    )
                })?;
                if self.audiences.is_empty() {
                    return Err("Entra's v2.0 tokens carry the API's application (client) id in aud, never the \
                                resource URL: give it as an audience"
                        .into());
                }
                if self.entra_v1_issuer {
                    if !issuer.starts_with("https://login.microsoftonline.com/") {
                        return Err("v1.0 tokens are accepted for the global cloud's issuer only".into());
                    }
                    rules = rules.with_issuer(format!("https://sts.windows.net/{tenant}/"));
                }
            }
            Preset::Okta => {
                let custom = url::Url::parse(issuer).is_ok_and(|u| {
                    let mut segments = u.path_segments().into_iter().flatten().filter(|s| !s.is_empty());
                    segments.next() == Some("oauth2") && segments.next().is_some()
                });
                if !custom {
                    return Err(format!(
                        "'{issuer}' is not an Okta custom authorization server (https://<org>/oauth2/<id>): \
                         the org authorization server's tokens are meant for Okta's own APIs only"
                    ));
                }
            }
            Preset::Rfc9068 | Preset::Keycloak | Preset::Auth0 => {}
        }
        if self.entra_v1_issuer && self.preset != Preset::Entra {
            return Err(format!("v1.0 issuers are an Entra setting; this profile is {}", self.name()));
        }
        Ok(rules)
    }

    /// The caller `jwt` describes (its signature, issuer, audience and times already checked).
    pub(crate) fn context(&self, jwt: &VerifiedJwt, token: &str) -> Result<AuthContext, Rejection> {
        let malformed = |what: String| Rejection::new(Reason::TokenMalformed, what);
        if let Some(test) = self.not_access_token.iter().find(|t| t.holds(jwt, "")) {
            return Err(malformed(format!("the token is not an access token ({})", test.describe())));
        }
        let client = self.client(jwt)?;
        let client_id = ClientId::parse(client).map_err(|e| malformed(format!("the token's client: {e}")))?;
        let machine = self.machine.iter().any(|t| t.holds(jwt, client));
        let subject = if machine {
            UserId::for_client(&client_id)
        } else {
            let claim = &self.subject_claim;
            let value = jwt.str_claim(claim).ok_or_else(|| malformed(format!("the token has no {claim}")))?;
            let subject = UserId::parse(value).map_err(|_| malformed(format!("the token's {claim} is malformed")))?;
            // A person's id never takes a machine's namespace (`client:`).
            if !subject.is_user() {
                return Err(malformed(format!("the token's {claim} is malformed")));
            }
            subject
        };
        let token_id = self.token_id(jwt, token)?;
        let grant_id = match self.grant_claim.as_deref().and_then(|c| jwt.str_claim(c)) {
            Some(g) => Some(GrantId::parse(g).map_err(|_| malformed("the token's gid is malformed".into()))?),
            None => None,
        };
        let mut ctx = AuthContext::new(
            subject,
            client_id,
            self.scopes(jwt)?,
            UnixTime::from_secs(jwt.exp),
            jwt.iss.clone(),
            token_id,
        );
        ctx.grant_id = grant_id;
        Ok(ctx)
    }

    /// The client: the first of the client claims present; any other present must agree.
    fn client<'a>(&self, jwt: &'a VerifiedJwt) -> Result<&'a str, Rejection> {
        let malformed = |what: String| Rejection::new(Reason::TokenMalformed, what);
        let mut found: Option<(&str, &str)> = None;
        for claim in &self.client_claims {
            match jwt.claims.get(claim) {
                None | Some(Value::Null) => {}
                Some(Value::String(value)) => match found {
                    None => found = Some((claim, value)),
                    Some((_, first)) if first == value => {}
                    Some((first_claim, _)) => {
                        return Err(malformed(format!("the token's {first_claim} and {claim} name different clients")));
                    }
                },
                Some(_) => return Err(malformed(format!("the token's {claim} is not a string"))),
            }
        }
        found
            .map(|(_, client)| client)
            .ok_or_else(|| malformed(format!("the token names no client ({})", self.client_claims.join(" or "))))
    }

    /// The scopes: every scope claim's values, then the configured roles, each prefixed.
    fn scopes(&self, jwt: &VerifiedJwt) -> Result<ScopeSet, Rejection> {
        let malformed = |what: String| Rejection::new(Reason::TokenMalformed, what);
        let prefix = self.scope_prefix.as_deref().unwrap_or_default();
        let mut values = Vec::new();
        for claim in &self.scope_claims {
            let listed = match jwt.claims.get(claim) {
                None | Some(Value::Null) => continue,
                Some(v) => string_list(v).ok_or_else(|| malformed(format!("the token's {claim} is malformed")))?,
            };
            for value in listed {
                let scope = format!("{prefix}{value}");
                Scope::parse(&scope).map_err(|_| malformed(format!("the token's {claim} is malformed")))?;
                values.push(scope);
            }
        }
        for path in &self.role_paths {
            let Some(roles) = at_path(&jwt.claims, path).and_then(string_list) else { continue };
            // A role is a name in the issuer's directory, not a scope: one that cannot be a
            // scope value (a space in it, say) grants nothing rather than refusing the token.
            values.extend(roles.into_iter().map(|r| format!("{prefix}{r}")).filter(|s| Scope::parse(s).is_ok()));
        }
        values.sort();
        values.dedup();
        if values.len() > MAX_SCOPES {
            return Err(malformed(format!("the token grants more than {MAX_SCOPES} scopes and roles")));
        }
        ScopeSet::parse(&values.join(" ")).map_err(|e| malformed(format!("the token's scopes: {e}")))
    }

    /// The token id: the first id claim present, else (when optional) one derived from the
    /// token, so that first-call events still count each token once.
    fn token_id(&self, jwt: &VerifiedJwt, token: &str) -> Result<String, Rejection> {
        if let Some(id) = self.token_id_claims.iter().find_map(|c| jwt.str_claim(c)) {
            return Ok(id.chars().take(256).collect());
        }
        if !self.jti_optional {
            let claims = self.token_id_claims.join(" or ");
            return Err(Rejection::new(Reason::TokenMalformed, format!("the token has no {claims}")));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("sha256:{hex}"))
    }
}

/// A space-separated string's values, or an array of strings; `None` for anything else.
fn string_list(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(s.split_ascii_whitespace().collect()),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// The value at `path` through nested objects.
fn at_path<'a>(claims: &'a serde_json::Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |v, key| v.get(key))
}

/// The tenant id of a single-tenant Entra v2.0 issuer, `https://<host>/<tenant id>/v2.0`.
fn entra_tenant(issuer: &str) -> Option<String> {
    let url = url::Url::parse(issuer).ok()?;
    if url.scheme() != "https" {
        return None;
    }
    let segments: Vec<&str> = url.path_segments()?.collect();
    match segments.as_slice() {
        [tenant, "v2.0"] if is_guid(tenant) => Some((*tenant).to_owned()),
        _ => None,
    }
}

/// Whether `s` is a GUID in its 8-4-4-4-12 hexadecimal form.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}
