//! [`ServerConfig`]: what the authorization server is (issuer, resource), what it allows, and
//! how long what it issues lives. Every default is the secure choice.

use std::time::Duration;

use crate::error::Error;
use crate::keys::SigningAlgorithm;
use crate::known_client::KnownClient;
use crate::metadata::EndpointPaths;
use crate::policy::RedirectPolicy;
use crate::types::{Issuer, ResourceUri, ScopeSet};

/// The server's configuration. `Default`s are the secure choice; each setter documents its
/// default and risk.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The issuer identifier, one exact string everywhere.
    pub issuer: Issuer,
    /// The canonical MCP resource URL: every token's `aud`.
    pub resource: ResourceUri,
    /// Endpoint paths under the issuer.
    pub paths: EndpointPaths,
    /// Scopes this server issues.
    pub scopes_supported: ScopeSet,
    /// Scopes granted when a client asks for none.
    pub default_scopes: ScopeSet,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Authorization code lifetime.
    pub code_ttl: Duration,
    /// How long a pending request waits for sign-in and consent.
    pub pending_ttl: Duration,
    /// Refresh token lifetime, renewed at each rotation.
    pub refresh_token_ttl: Duration,
    /// How long a just-rotated refresh token may be retried.
    pub refresh_grace: Duration,
    /// How long spent or expired codes are kept to recognise replays.
    pub code_retention: Duration,
    /// How long retired signing keys stay published.
    pub key_retention: Duration,
    /// How long flow events are kept.
    pub event_retention: Duration,
    /// How long a dynamically registered or metadata-document client is kept after its last
    /// token request (or its registration, if it never made one) before the sweep deletes it.
    /// Never shorter, in effect, than `refresh_token_ttl`: a live grant keeps its client.
    pub unused_client_ttl: Duration,
    /// The access-token signing algorithm.
    pub signing_algorithm: SigningAlgorithm,
    /// Clock skew tolerated when verifying tokens.
    pub leeway: Duration,
    /// Which redirect URIs registration accepts.
    pub redirect_policy: RedirectPolicy,
    /// Whether the RFC 7591 registration endpoint is on.
    pub dynamic_registration: bool,
    /// Whether machine clients (operator-created, [`NewClient::machine`](crate::admin::NewClient::machine)) may use
    /// `client_credentials`. No other client ever may.
    pub client_credentials: bool,
    /// Whether clients may authenticate with `private_key_jwt` (RFC 7523): registered with
    /// `jwks` or `jwks_uri`, or described so by a metadata document. Default on. Off, a
    /// metadata document that also offers `none` is served as a public client.
    pub private_key_jwt: bool,
    /// Enterprise IdPs whose identity assertions (ID-JAG) the jwt-bearer grant accepts
    /// (Enterprise-Managed Authorization). Empty: the grant is off and not advertised.
    pub enterprise_idps: Vec<crate::enterprise::EnterpriseIdp>,
    /// Documentation URL for the metadata's `service_documentation`.
    pub service_documentation: Option<String>,
    /// Clients the operator expects to connect; the self-check makes sure each one can.
    pub expected_clients: Vec<KnownClient>,
    /// What each scope lets a client do, in words for the consent and Connected apps pages.
    pub scope_descriptions: std::collections::BTreeMap<String, String>,
    /// Seals private signing keys at rest; `None` stores them in clear.
    pub key_encryption: Option<crate::sealing::KeyEncryption>,
}

impl ServerConfig {
    /// A configuration for `issuer` protecting `resource`, with secure defaults: scope
    /// `mcp:tools`, ES256, access tokens for 1 h, codes for 5 min, refresh tokens for 30 days
    /// with a 30 s retry window, DCR on, `client_credentials` off, no private-use redirect
    /// schemes.
    pub fn new(issuer: Issuer, resource: ResourceUri) -> Self {
        let scopes =
            ScopeSet::from_scopes([crate::types::Scope::parse("mcp:tools").unwrap_or_else(|_| unreachable_scope())]);
        Self {
            issuer,
            resource,
            paths: EndpointPaths::default(),
            scopes_supported: scopes.clone(),
            default_scopes: scopes,
            access_token_ttl: Duration::from_secs(3600),
            code_ttl: Duration::from_secs(300),
            pending_ttl: Duration::from_secs(600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            refresh_grace: Duration::from_secs(30),
            code_retention: Duration::from_secs(86_400),
            key_retention: Duration::from_secs(2 * 86_400),
            event_retention: Duration::from_secs(14 * 86_400),
            unused_client_ttl: Duration::from_secs(30 * 86_400),
            signing_algorithm: SigningAlgorithm::Es256,
            leeway: Duration::from_secs(60),
            redirect_policy: RedirectPolicy::default(),
            dynamic_registration: true,
            client_credentials: false,
            private_key_jwt: true,
            enterprise_idps: Vec::new(),
            service_documentation: None,
            expected_clients: Vec::new(),
            scope_descriptions: std::collections::BTreeMap::new(),
            key_encryption: None,
        }
    }

    /// Scopes this server issues and the defaults granted when a client asks for none.
    /// Default: `mcp:tools` for both. `defaults` must be a subset of `supported`.
    #[must_use]
    pub fn with_scopes(mut self, supported: ScopeSet, defaults: ScopeSet) -> Self {
        self.scopes_supported = supported;
        self.default_scopes = defaults;
        self
    }

    /// Trusts `idp`'s identity assertions for the clients it lists (Enterprise-Managed
    /// Authorization); see [`EnterpriseIdp`](crate::EnterpriseIdp).
    #[must_use]
    pub fn with_enterprise_idp(mut self, idp: crate::enterprise::EnterpriseIdp) -> Self {
        self.enterprise_idps.push(idp);
        self
    }

    /// Whether clients may authenticate with `private_key_jwt`. Default on.
    #[must_use]
    pub fn with_private_key_jwt(mut self, on: bool) -> Self {
        self.private_key_jwt = on;
        self
    }

    /// Access token lifetime. Default 1 h. Longer tokens stay valid longer after a grant is
    /// revoked, since resource servers verify them without asking.
    #[must_use]
    pub fn with_access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Authorization code lifetime. Default 5 min (RFC 6749 recommends at most 10).
    #[must_use]
    pub fn with_code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }

    /// How long a pending request waits for sign-in and consent. Default 10 min.
    #[must_use]
    pub fn with_pending_ttl(mut self, ttl: Duration) -> Self {
        self.pending_ttl = ttl;
        self
    }

    /// Refresh token lifetime, renewed at each rotation. Default 30 days.
    #[must_use]
    pub fn with_refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_token_ttl = ttl;
        self
    }

    /// How long a just-rotated refresh token may be retried and get the same successor.
    /// Default 30 s. Longer windows give a thief of the old token more time.
    #[must_use]
    pub fn with_refresh_grace(mut self, grace: Duration) -> Self {
        self.refresh_grace = grace;
        self
    }

    /// The signing algorithm. Default ES256. `SigningAlgorithm::DangerousHs256` shares one
    /// secret between signer and verifiers and cannot be published in the JWKS.
    #[must_use]
    pub fn with_signing_algorithm(mut self, alg: SigningAlgorithm) -> Self {
        self.signing_algorithm = alg;
        self
    }

    /// Which redirect URIs registration accepts. Default: https, and http to loopback.
    #[must_use]
    pub fn with_redirect_policy(mut self, policy: RedirectPolicy) -> Self {
        self.redirect_policy = policy;
        self
    }

    /// Turns the RFC 7591 registration endpoint on or off. Default on (Claude and most MCP
    /// clients need it). Off leaves pre-registered clients only.
    #[must_use]
    pub fn with_dynamic_registration(mut self, on: bool) -> Self {
        self.dynamic_registration = on;
        self
    }

    /// Allows `client_credentials` for machine clients: confidential clients the operator
    /// created with [`NewClient::machine`](crate::admin::NewClient::machine). Default off. Self-registered and metadata-document
    /// clients never get the grant, whatever this says. Machine tokens carry no user; the guard
    /// refuses them unless the resource opts in.
    #[must_use]
    pub fn with_client_credentials(mut self, on: bool) -> Self {
        self.client_credentials = on;
        self
    }

    /// Clock skew tolerated when verifying tokens. Default 60 s.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Endpoint paths under the issuer. Default `/authorize`, `/token`, `/register`,
    /// `/revoke`, `/introspect`, `/jwks.json`.
    #[must_use]
    pub fn with_paths(mut self, paths: EndpointPaths) -> Self {
        self.paths = paths;
        self
    }

    /// Retention of swept records: spent codes (default 1 day), flow events (14 days), and
    /// dynamically registered and metadata-document clients since their last use (30 days).
    #[must_use]
    pub fn with_retention(mut self, codes: Duration, events: Duration, unused_clients: Duration) -> Self {
        self.code_retention = codes;
        self.event_retention = events;
        self.unused_client_ttl = unused_clients;
        self
    }

    /// Sets `service_documentation` in the metadata. Default none.
    #[must_use]
    pub fn with_service_documentation(mut self, url: impl Into<String>) -> Self {
        self.service_documentation = Some(url.into());
        self
    }

    /// Declares the clients expected to connect (Claude, Cursor, …), so that the self-check
    /// ([`AuthorizationServer::self_check`](crate::AuthorizationServer::self_check)) refuses a configuration that would lock one out:
    /// a callback the redirect policy refuses, or a loopback URL for a client that connects
    /// from the internet. Default: none, which checks nothing client-specific.
    #[must_use]
    pub fn with_expected_clients(mut self, clients: impl IntoIterator<Item = KnownClient>) -> Self {
        self.expected_clients = clients.into_iter().collect();
        self
    }

    /// Describes scopes in words for the people who approve them ("Read and add your notes"
    /// for `mcp:tools`): the consent and Connected apps pages show the description, with the
    /// scope beside it. Default: none, and the pages show the raw scope string.
    #[must_use]
    pub fn with_scope_descriptions<K: Into<String>, V: Into<String>>(
        mut self,
        descriptions: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.scope_descriptions = descriptions.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Seals private signing keys at rest with `kek` (AES-256-GCM; see
    /// [`crate::sealing::KeyEncryption`]). Default: off, so anyone who reads the key store can
    /// mint tokens. Keep the key outside the database; a server started without it, or with
    /// another one, refuses to load sealed keys.
    #[must_use]
    pub fn with_key_encryption(mut self, kek: crate::sealing::KeyEncryption) -> Self {
        self.key_encryption = Some(kek);
        self
    }

    /// Checks that the configuration can work; the error says what to change.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.default_scopes.is_subset(&self.scopes_supported) {
            return Err(Error::Config(format!(
                "default scopes '{}' are not all in the supported scopes '{}'",
                self.default_scopes, self.scopes_supported
            )));
        }
        if self.key_retention < self.access_token_ttl {
            return Err(Error::Config("key retention must be at least the access token lifetime, or tokens fail verification after a key rotation".into()));
        }
        if self.code_ttl.is_zero() || self.access_token_ttl.is_zero() || self.pending_ttl.is_zero() {
            return Err(Error::Config("lifetimes must be positive".into()));
        }
        if let Some(idp) = self.enterprise_idps.iter().find(|i| i.keys == crate::enterprise::IdpKeys::Discover) {
            return Err(Error::Config(format!(
                "the keys of enterprise IdP '{}' are still to be discovered: resolve them with discover_idp_keys before the server starts",
                idp.issuer
            )));
        }
        Ok(())
    }
}

#[cold]
fn unreachable_scope() -> crate::types::Scope {
    // "mcp:tools" is a valid scope literal; this is never called.
    unreachable!("the default scope literal is valid")
}
