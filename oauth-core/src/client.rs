//! The client model.
//! Documented in the crate docs, "Clients".

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::jwks::Jwks;
use crate::types::{ClientId, RedirectMatch, RedirectUri, ScopeSet};

/// How a client authenticates at the token endpoint (RFC 7591 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client: no secret, identified by `client_id` in the body; PKCE protects it.
    None,
    /// Secret in the form body (`client_secret_post`).
    ClientSecretPost,
    /// Secret in HTTP Basic authentication (`client_secret_basic`).
    ClientSecretBasic,
    /// A JWT signed with the client's private key (`private_key_jwt`, RFC 7523 2.2), verified
    /// with the public keys of its `jwks` or `jwks_uri`. No secret is shared.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    /// Every method this crate supports, as advertised in metadata (`private_key_jwt` only
    /// while [`ServerConfig::private_key_jwt`](crate::ServerConfig::private_key_jwt) is on).
    pub const ALL: [Self; 4] = [Self::None, Self::ClientSecretPost, Self::ClientSecretBasic, Self::PrivateKeyJwt];

    /// Parses a method name; `None` for unsupported ones (`client_secret_jwt`,
    /// `tls_client_auth`, …).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the client does not authenticate at all (`none`): PKCE alone protects it.
    pub const fn is_public(self) -> bool {
        matches!(self, Self::None)
    }

    /// Whether the client authenticates with a secret the server issued (and stores as a hash).
    pub const fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretPost | Self::ClientSecretBasic)
    }
}

/// A grant type (RFC 6749).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials`: only for machine clients the operator created
    /// ([`Client::machine`]), never for a self-registered or metadata-document client.
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 2.1) with an identity assertion
    /// (ID-JAG) from a trusted enterprise IdP: Enterprise-Managed Authorization. Only for
    /// clients the operator registered with it.
    JwtBearer,
}

impl GrantType {
    /// Parses a grant type name; `None` for unsupported ones.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            crate::enterprise::JWT_BEARER_GRANT => Some(Self::JwtBearer),
            _ => None,
        }
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::JwtBearer => crate::enterprise::JWT_BEARER_GRANT,
        }
    }
}

/// OpenID Connect Dynamic Registration's `application_type`, which MCP 2026-07-28 honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    /// A web application: https redirects only.
    Web,
    /// A native application: loopback and (where allowed) private-use redirects.
    Native,
}

impl ApplicationType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
        }
    }
}

/// How the server came to know the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientOrigin {
    /// Registered by the operator (configuration or command line).
    PreRegistered,
    /// Registered through the RFC 7591 endpoint.
    Dynamic,
    /// Described by a Client ID Metadata Document fetched from its `client_id` URL.
    MetadataDocument,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Client {
    /// The client identifier.
    pub id: ClientId,
    /// Argon2id PHC hash of the client secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// When the secret expires; `None` for never (RFC 7591 `client_secret_expires_at: 0`).
    pub secret_expires_at: Option<UnixTime>,
    /// How the client authenticates at the token endpoint.
    pub auth_method: TokenEndpointAuthMethod,
    /// Registered redirect URIs, matched exactly (loopback: any port).
    pub redirect_uris: Vec<RedirectUri>,
    /// Grant types the client may use.
    pub grant_types: Vec<GrantType>,
    /// `native` or `web`, when the client said.
    pub application_type: Option<ApplicationType>,
    /// Human-readable name, shown on the consent page.
    pub name: Option<String>,
    /// The client's home page.
    pub client_uri: Option<String>,
    /// The client's logo.
    pub logo_uri: Option<String>,
    /// Scopes the client may request; `None` for any the server supports.
    pub scope: Option<ScopeSet>,
    /// Contacts for the client.
    pub contacts: Vec<String>,
    /// Terms of service.
    pub tos_uri: Option<String>,
    /// Privacy policy.
    pub policy_uri: Option<String>,
    /// RFC 7591 software id.
    pub software_id: Option<String>,
    /// RFC 7591 software version.
    pub software_version: Option<String>,
    /// How the client was registered.
    pub origin: ClientOrigin,
    /// Trusted clients (operator-registered) may skip the consent page.
    pub trusted: bool,
    /// Inactive clients cannot authorize or obtain tokens.
    pub active: bool,
    /// When the client was registered (`client_id_issued_at`).
    pub created_at: UnixTime,
    /// When the client last completed a token request.
    pub last_used_at: Option<UnixTime>,
    /// For a Client ID Metadata Document client: when the cached document must be fetched
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_expires_at: Option<UnixTime>,
    /// A machine client: the operator created it to obtain tokens with `client_credentials`,
    /// with no person behind them. Only an operator-created confidential client can be one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub machine: bool,
    /// A resource server the operator registered to introspect any access token of this server
    /// (RFC 7662). Every other client may introspect only its own tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub introspection: bool,
    /// For `private_key_jwt`: the client's public keys, given inline (RFC 7591 `jwks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
    /// For `private_key_jwt`: where the client publishes its public keys (RFC 7591
    /// `jwks_uri`), fetched through the SSRF-safe fetcher and cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// For `private_key_jwt`: the one algorithm the client's assertions must use
    /// (`token_endpoint_auth_signing_alg`), when it registered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_alg: Option<String>,
}

impl Client {
    /// A new client with the given id, auth method and redirect URIs, and defaults for the
    /// rest: the `authorization_code` and `refresh_token` grants, active, not trusted.
    pub fn new(
        id: ClientId,
        auth_method: TokenEndpointAuthMethod,
        redirect_uris: Vec<RedirectUri>,
        origin: ClientOrigin,
        created_at: UnixTime,
    ) -> Self {
        Self {
            id,
            secret_hash: None,
            secret_expires_at: None,
            auth_method,
            redirect_uris,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            application_type: None,
            name: None,
            client_uri: None,
            logo_uri: None,
            scope: None,
            contacts: Vec::new(),
            tos_uri: None,
            policy_uri: None,
            software_id: None,
            software_version: None,
            origin,
            trusted: false,
            active: true,
            created_at,
            last_used_at: None,
            metadata_expires_at: None,
            machine: false,
            introspection: false,
            jwks: None,
            jwks_uri: None,
            assertion_alg: None,
        }
    }

    /// Whether the client is public (no secret).
    pub fn is_public(&self) -> bool {
        self.auth_method.is_public()
    }

    /// Whether the client registered `grant`.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether the client may use `client_credentials`: a confidential machine client the
    /// operator created. The grant type alone is not enough: a record written before machine
    /// clients existed, or edited by hand, cannot open the grant to a self-registered client.
    pub fn is_machine_client(&self) -> bool {
        self.machine
            && self.origin == ClientOrigin::PreRegistered
            && !self.is_public()
            && self.allows_grant(GrantType::ClientCredentials)
    }

    /// The registered redirect URI matching `presented`, and how it matched: an exact match
    /// wins over a loopback leniency, whatever the registration order.
    pub fn registered_redirect(&self, presented: &RedirectUri) -> Option<(&RedirectUri, RedirectMatch)> {
        self.redirect_uris.iter().filter_map(|r| r.match_with(presented).map(|m| (r, m))).min_by_key(|(_, m)| *m)
    }

    /// The name to show a person: the client name, else its id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.id.as_str())
    }

    /// Registered redirect URIs, comma-separated, for error messages and logs.
    pub fn redirect_uri_list(&self) -> String {
        self.redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>().join(", ")
    }
}
