//! Discovery documents.
//! Documented in the crate docs, "Metadata and discovery".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Issuer, ResourceUri, ScopeSet};

/// RFC 8414 authorization-server metadata, with the members MCP clients read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier: one exact string everywhere.
    pub issuer: String,
    /// The authorization endpoint.
    pub authorization_endpoint: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The JWKS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The dynamic registration endpoint, when DCR is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// Scopes this server issues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// `["code"]`: the TypeScript SDK requires this member.
    pub response_types_supported: Vec<String>,
    /// `["query"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_modes_supported: Vec<String>,
    /// Grants this server offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<String>,
    /// `none`, `client_secret_post`, `client_secret_basic` and, when on, `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// The algorithms a `private_key_jwt` client assertion may be signed with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// The RFC 7009 revocation endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// Authentication methods at the revocation endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// The algorithms of client assertions at the revocation endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// The RFC 7662 introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// Authentication methods at the introspection endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// The algorithms of client assertions at the introspection endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// `["S256"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether `client_id` may be a Client ID Metadata Document URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// RFC 9207: `iss` is sent in every authorization response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Documentation for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_documentation: Option<String>,
    /// OpenID Discovery: `["public"]`, for clients that parse `openid-configuration` strictly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_types_supported: Vec<String>,
    /// OpenID Discovery: the signing algorithms, for strict `openid-configuration` parsers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Every other member (kept when parsing another server's metadata).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The endpoint paths of an authorization server, relative to its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointPaths {
    /// Authorization endpoint, default `/authorize`.
    pub authorization: String,
    /// Token endpoint, default `/token`.
    pub token: String,
    /// Registration endpoint, default `/register`.
    pub registration: String,
    /// Revocation endpoint, default `/revoke`.
    pub revocation: String,
    /// Introspection endpoint, default `/introspect`.
    pub introspection: String,
    /// JWKS, default `/jwks.json`.
    pub jwks: String,
}

impl Default for EndpointPaths {
    fn default() -> Self {
        Self {
            authorization: "/authorize".into(),
            token: "/token".into(),
            registration: "/register".into(),
            revocation: "/revoke".into(),
            introspection: "/introspect".into(),
            jwks: "/jwks.json".into(),
        }
    }
}

/// What the server's metadata advertises, beyond the endpoints.
#[derive(Debug, Clone)]
pub(crate) struct MetadataInputs<'a> {
    pub(crate) issuer: &'a Issuer,
    pub(crate) paths: &'a EndpointPaths,
    pub(crate) scopes: &'a ScopeSet,
    pub(crate) registration_enabled: bool,
    pub(crate) client_credentials_enabled: bool,
    pub(crate) metadata_documents_enabled: bool,
    pub(crate) private_key_jwt: bool,
    pub(crate) enterprise_assertions: bool,
    pub(crate) service_documentation: Option<&'a str>,
}

impl AuthorizationServerMetadata {
    pub(crate) fn build(i: &MetadataInputs<'_>) -> Self {
        let e = |p: &str| i.issuer.endpoint(p);
        use crate::client::TokenEndpointAuthMethod as M;
        let auth_methods: Vec<String> = M::ALL
            .iter()
            .filter(|m| i.private_key_jwt || **m != M::PrivateKeyJwt)
            .map(|m| m.as_str().to_owned())
            .collect();
        let assertion_algs: Vec<String> = if i.private_key_jwt {
            crate::client_assertion::ASSERTION_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect()
        } else {
            Vec::new()
        };
        let mut introspection_methods = vec!["client_secret_post".to_owned(), "client_secret_basic".to_owned()];
        if i.private_key_jwt {
            introspection_methods.push(M::PrivateKeyJwt.as_str().to_owned());
        }
        let mut grants = vec!["authorization_code".to_owned(), "refresh_token".to_owned()];
        if i.client_credentials_enabled {
            grants.push("client_credentials".into());
        }
        if i.enterprise_assertions {
            grants.push(crate::enterprise::JWT_BEARER_GRANT.into());
        }
        Self {
            issuer: i.issuer.to_string(),
            authorization_endpoint: e(&i.paths.authorization),
            token_endpoint: e(&i.paths.token),
            jwks_uri: Some(e(&i.paths.jwks)),
            registration_endpoint: i.registration_enabled.then(|| e(&i.paths.registration)),
            scopes_supported: i.scopes.iter().map(|s| s.to_string()).collect(),
            response_types_supported: vec!["code".into()],
            response_modes_supported: vec!["query".into()],
            grant_types_supported: grants,
            token_endpoint_auth_methods_supported: auth_methods.clone(),
            token_endpoint_auth_signing_alg_values_supported: assertion_algs.clone(),
            revocation_endpoint: Some(e(&i.paths.revocation)),
            revocation_endpoint_auth_methods_supported: auth_methods,
            revocation_endpoint_auth_signing_alg_values_supported: assertion_algs.clone(),
            introspection_endpoint: Some(e(&i.paths.introspection)),
            introspection_endpoint_auth_methods_supported: introspection_methods,
            introspection_endpoint_auth_signing_alg_values_supported: assertion_algs,
            code_challenge_methods_supported: vec!["S256".into()],
            client_id_metadata_document_supported: Some(i.metadata_documents_enabled),
            authorization_response_iss_parameter_supported: Some(true),
            service_documentation: i.service_documentation.map(str::to_owned),
            subject_types_supported: Vec::new(),
            id_token_signing_alg_values_supported: Vec::new(),
            other: BTreeMap::new(),
        }
    }

    /// The same document with the members OpenID Discovery marks required, for
    /// `/.well-known/openid-configuration`.
    #[must_use]
    pub fn into_openid_configuration(mut self, signing_alg: &str) -> Self {
        self.subject_types_supported = vec!["public".into()];
        self.id_token_signing_alg_values_supported = vec![signing_alg.to_owned()];
        self
    }
}

/// RFC 9728 protected-resource metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// The canonical resource URL (no fragment, no trailing slash).
    pub resource: String,
    /// Issuers of the authorization servers, exactly as they emit them.
    pub authorization_servers: Vec<String>,
    /// Scopes this resource understands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// `["header"]`: tokens are accepted in the `Authorization` header only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// The resource's JWKS, if it signs anything itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Documentation for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// Every other member.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource`, protected by the server `issuer`.
    pub fn new(resource: &ResourceUri, issuer: &Issuer) -> Self {
        Self {
            resource: resource.to_string(),
            authorization_servers: vec![issuer.to_string()],
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".into()],
            jwks_uri: None,
            resource_name: None,
            resource_documentation: None,
            other: BTreeMap::new(),
        }
    }

    /// Sets `scopes_supported`.
    #[must_use]
    pub fn with_scopes(mut self, scopes: &ScopeSet) -> Self {
        self.scopes_supported = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets `resource_name`.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }
}

/// The well-known URL for `suffix` (`oauth-authorization-server`, `openid-configuration`,
/// `oauth-protected-resource`) of `identifier`, path-inserted per RFC 8414 3.1 and RFC 9728
/// 3.1: `https://host/.well-known/<suffix><path>`.
pub fn well_known_url(suffix: &str, identifier: &str) -> String {
    match url::Url::parse(identifier) {
        Ok(u) => {
            let path = u.path().trim_end_matches('/');
            format!("{}/.well-known/{suffix}{path}", u.origin().ascii_serialization())
        }
        Err(_) => String::new(),
    }
}

/// The path (without origin) at which the document `suffix` of `identifier` is served.
pub fn well_known_path(suffix: &str, identifier: &str) -> String {
    let path = url::Url::parse(identifier).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("/.well-known/{suffix}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_are_path_inserted() {
        assert_eq!(
            well_known_url("oauth-authorization-server", "https://a.example"),
            "https://a.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known_url("oauth-authorization-server", "https://a.example/tenant"),
            "https://a.example/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            well_known_path("oauth-protected-resource", "https://a.example:8443/mcp/"),
            "/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn as_metadata_has_every_member_mcp_clients_read() {
        let issuer = Issuer::parse("https://auth.example.com").unwrap();
        let scopes = ScopeSet::parse("mcp:tools").unwrap();
        let paths = EndpointPaths::default();
        let m = AuthorizationServerMetadata::build(&MetadataInputs {
            issuer: &issuer,
            paths: &paths,
            scopes: &scopes,
            registration_enabled: true,
            client_credentials_enabled: false,
            metadata_documents_enabled: false,
            private_key_jwt: true,
            enterprise_assertions: false,
            service_documentation: None,
        });
        let v = serde_json::to_value(&m).unwrap();
        let expected: serde_json::Value = serde_json::json!({
            "issuer": "https://auth.example.com",
            "authorization_endpoint": "https://auth.example.com/authorize",
            "token_endpoint": "https://auth.example.com/token",
            "jwks_uri": "https://auth.example.com/jwks.json",
            "registration_endpoint": "https://auth.example.com/register",
            "scopes_supported": ["mcp:tools"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "revocation_endpoint": "https://auth.example.com/revoke",
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic", "private_key_jwt"],
            "revocation_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "introspection_endpoint": "https://auth.example.com/introspect",
            "introspection_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
            "introspection_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": false,
            "authorization_response_iss_parameter_supported": true
        });
        assert_eq!(v, expected);
        let oidc = serde_json::to_value(m.into_openid_configuration("ES256")).unwrap();
        assert_eq!(oidc["subject_types_supported"], serde_json::json!(["public"]));
        assert_eq!(oidc["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));
    }

    #[test]
    fn external_metadata_parses_and_keeps_unknown_members() {
        let doc = r#"{"issuer":"https://kc.example/realms/x","authorization_endpoint":"https://kc.example/a",
            "token_endpoint":"https://kc.example/t","response_types_supported":["code"],"end_session_endpoint":"https://kc.example/l"}"#;
        let m: AuthorizationServerMetadata = serde_json::from_str(doc).unwrap();
        assert_eq!(m.issuer, "https://kc.example/realms/x");
        assert!(m.other.contains_key("end_session_endpoint"));
    }

    #[test]
    fn prm_fixture() {
        let r = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
        let i = Issuer::parse("https://mcp.example.com").unwrap();
        let v = serde_json::to_value(
            ProtectedResourceMetadata::new(&r, &i).with_scopes(&ScopeSet::parse("mcp:tools").unwrap()),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://mcp.example.com"],
                "scopes_supported": ["mcp:tools"],
                "bearer_methods_supported": ["header"]
            })
        );
    }
}
