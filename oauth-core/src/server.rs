//! [`AuthorizationServer`]: configuration, stores, keys and clock in one facade, which the
//! adapters (`oauth-axum`, `mcp-guard`) call.
//!
//! ```no_run
//! # async fn demo(stores: oauth_core::Stores) -> Result<(), oauth_core::Error> {
//! use oauth_core::{AuthorizationServer, ServerConfig};
//! use oauth_core::types::{Issuer, ResourceUri};
//!
//! let config = ServerConfig::new(
//!     Issuer::parse("https://mcp.example.com").unwrap(),
//!     ResourceUri::parse("https://mcp.example.com/mcp").unwrap(),
//! );
//! let server = AuthorizationServer::new(config, stores).await?; // loads or creates the signing key
//! let metadata = server.metadata();
//! assert_eq!(metadata.issuer, "https://mcp.example.com");
//! # Ok(()) }
//! ```

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::admin::Operator;
use crate::client::{Client, ClientOrigin, GrantType};
use crate::clock::{Clock, SystemClock, UnixTime};
use crate::error::{Error, OAuthError, StoreError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::jwt::{AccessTokenClaims, TokenValidation, VerifyError, verify};
use crate::keys::{KeySet, SigningAlgorithm, StoredKey};
use crate::metadata::{AuthorizationServerMetadata, EndpointPaths, MetadataInputs, ProtectedResourceMetadata};
use crate::metadata_document::{self, MetadataDocumentFetcher};
use crate::policy::RedirectPolicy;
use crate::registration::{RegistrationRequest, RegistrationResponse};
use crate::secret::{ClientSecret, ClientSecretHash, ServerSecret};
use crate::selfcheck::{self, KnownClient};
use crate::store::Stores;
use crate::types::{ClientId, Issuer, RedirectUri, ResourceUri, ScopeSet};

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
    /// Whether machine clients (operator-created, [`NewClient::machine`]) may use
    /// `client_credentials`. No other client ever may.
    pub client_credentials: bool,
    /// Documentation URL for the metadata's `service_documentation`.
    pub service_documentation: Option<String>,
    /// Clients the operator expects to connect; the self-check makes sure each one can.
    pub expected_clients: Vec<KnownClient>,
    /// What each scope lets a client do, in words for the consent and Connected apps pages.
    pub scope_descriptions: std::collections::BTreeMap<String, String>,
    /// Seals private signing keys at rest; `None` stores them in clear.
    pub key_encryption: Option<crate::keys::KeyEncryption>,
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
    /// created with [`NewClient::machine`]. Default off. Self-registered and metadata-document
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
    /// ([`AuthorizationServer::self_check`]) refuses a configuration that would lock one out:
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
    /// [`crate::keys::KeyEncryption`]). Default: off, so anyone who reads the key store can
    /// mint tokens. Keep the key outside the database; a server started without it, or with
    /// another one, refuses to load sealed keys.
    #[must_use]
    pub fn with_key_encryption(mut self, kek: crate::keys::KeyEncryption) -> Self {
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
        Ok(())
    }
}

#[cold]
fn unreachable_scope() -> crate::types::Scope {
    // "mcp:tools" is a valid scope literal; this is never called.
    unreachable!("the default scope literal is valid")
}

/// A client created by the operator, and its secret if it has one (shown once).
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedClient {
    /// The client.
    pub client: Client,
    /// Its clear secret, for confidential clients.
    pub secret: Option<ClientSecret>,
}

/// What a pre-registered client looks like.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewClient {
    /// Display name.
    pub name: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Confidential (with a secret, `client_secret_post`) or public.
    pub confidential: bool,
    /// Trusted clients skip the consent page.
    pub trusted: bool,
    /// A fixed client id; generated when `None`.
    pub client_id: Option<ClientId>,
    /// Grant types; default `authorization_code` and `refresh_token`.
    pub grant_types: Vec<GrantType>,
    /// A machine client: `client_credentials` only, no redirect URIs, tokens with no user.
    pub machine: bool,
    /// May introspect any access token of this server (a resource server).
    pub introspection: bool,
}

impl NewClient {
    /// A public, untrusted client with the code and refresh grants.
    pub fn new(name: impl Into<String>, redirect_uris: Vec<RedirectUri>) -> Self {
        Self {
            name: name.into(),
            redirect_uris,
            confidential: false,
            trusted: false,
            client_id: None,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            machine: false,
            introspection: false,
        }
    }

    /// A machine client: confidential, the `client_credentials` grant only, no redirect URIs.
    /// Its tokens name the client, never a user, and are backed by a revocable grant. The
    /// server must allow the grant ([`ServerConfig::with_client_credentials`]) and the
    /// resource must accept machine tokens.
    pub fn machine(name: impl Into<String>) -> Self {
        Self {
            confidential: true,
            grant_types: vec![GrantType::ClientCredentials],
            machine: true,
            ..Self::new(name, Vec::new())
        }
    }

    /// Lets the client introspect any access token of this server (RFC 7662): for a resource
    /// server that does not verify tokens itself. Needs a confidential client.
    #[must_use]
    pub fn introspection(mut self) -> Self {
        self.introspection = true;
        self
    }

    /// Gives the client a secret (`client_secret_post`, the method Claude's "Advanced settings"
    /// uses; Basic is accepted too).
    #[must_use]
    pub fn confidential(mut self) -> Self {
        self.confidential = true;
        self
    }

    /// Lets the client skip the consent page.
    #[must_use]
    pub fn trusted(mut self) -> Self {
        self.trusted = true;
        self
    }

    /// Uses a fixed client id.
    #[must_use]
    pub fn with_client_id(mut self, id: ClientId) -> Self {
        self.client_id = Some(id);
        self
    }

    /// Sets the grant types.
    #[must_use]
    pub fn with_grant_types(mut self, grants: Vec<GrantType>) -> Self {
        self.grant_types = grants;
        self
    }
}

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Pending requests and codes.
    pub authorizations: u64,
    /// Grants.
    pub grants: u64,
    /// Flow events.
    pub events: u64,
    /// Unused dynamically registered clients.
    pub clients: u64,
    /// Retired signing keys past retention.
    pub keys: u64,
    /// Expired sign-in sessions.
    pub sessions: u64,
}

/// The authorization server.
#[derive(Debug)]
pub struct AuthorizationServer {
    config: ServerConfig,
    stores: Stores,
    clock: Arc<dyn Clock>,
    keys: RwLock<Arc<KeySet>>,
    refresh_secret: RwLock<ServerSecret>,
    pepper: ServerSecret,
    page_secret: ServerSecret,
    metadata_documents: Option<Arc<dyn MetadataDocumentFetcher>>,
    /// Failures before a client is authenticated are stored within this budget.
    unauthenticated_events: crate::events::EventBudget,
}

/// The key-store name of the key refresh-token successors are derived with.
const REFRESH_SECRET: &str = "refresh-successor-v1";
/// The key-store name of the pepper of client-secret hashes. Never rotated: every stored client
/// secret hash depends on it (rotate the clients' secrets instead).
pub(crate) const CLIENT_SECRET_PEPPER: &str = "client-secret-pepper-v1";
/// The key-store name of the secret the pages' keys derive from (CSRF tokens and the like).
const PAGE_SECRET: &str = "pages-v1";

impl AuthorizationServer {
    /// A server on the system clock. Loads the signing keys from the key store, creating the
    /// first one if there is none.
    pub async fn new(config: ServerConfig, stores: Stores) -> Result<Self, Error> {
        Self::with_clock(config, stores, Arc::new(SystemClock)).await
    }

    /// A server on the given clock.
    pub async fn with_clock(config: ServerConfig, stores: Stores, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        config.validate()?;
        let stores = crate::keys::KeyEncryption::protect(config.key_encryption.as_ref(), stores);
        let keys = load_or_create_keys(&stores, config.signing_algorithm, clock.now()).await?;
        let refresh_secret = load_server_secret(&stores, REFRESH_SECRET, clock.now()).await?;
        let pepper = load_server_secret(&stores, CLIENT_SECRET_PEPPER, clock.now()).await?;
        let page_secret = load_server_secret(&stores, PAGE_SECRET, clock.now()).await?;
        Ok(Self {
            config,
            stores,
            clock,
            keys: RwLock::new(Arc::new(keys)),
            refresh_secret: RwLock::new(refresh_secret),
            pepper,
            page_secret,
            metadata_documents: None,
            unauthenticated_events: crate::events::EventBudget::default(),
        })
    }

    /// Accepts clients identified by a Client ID Metadata Document (an https `client_id` URL),
    /// fetched with `fetcher`, and says so in the metadata
    /// (`client_id_metadata_document_supported`). Default: off. The fetcher carries the SSRF
    /// defences; see [`crate::metadata_document`].
    #[must_use]
    pub fn with_metadata_documents(mut self, fetcher: Arc<dyn MetadataDocumentFetcher>) -> Self {
        self.metadata_documents = Some(fetcher);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The stores.
    pub(crate) fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The current signing keys.
    pub fn keys(&self) -> Arc<KeySet> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is intact.
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// RFC 8414 metadata.
    pub fn metadata(&self) -> AuthorizationServerMetadata {
        AuthorizationServerMetadata::build(&MetadataInputs {
            issuer: &self.config.issuer,
            paths: &self.config.paths,
            scopes: &self.config.scopes_supported,
            registration_enabled: self.config.dynamic_registration,
            client_credentials_enabled: self.config.client_credentials,
            metadata_documents_enabled: self.metadata_documents.is_some(),
            service_documentation: self.config.service_documentation.as_deref(),
        })
    }

    /// The same metadata for `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> AuthorizationServerMetadata {
        self.metadata().into_openid_configuration(self.config.signing_algorithm.as_str())
    }

    /// RFC 9728 metadata for the protected MCP resource.
    pub fn protected_resource_metadata(&self) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata::new(&self.config.resource, &self.config.issuer)
            .with_scopes(&self.config.scopes_supported)
    }

    /// The public keys for `/jwks.json`.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.keys().jwks()
    }

    /// What the resource expects of a token: this issuer, the canonical resource.
    pub fn token_validation(&self) -> TokenValidation {
        TokenValidation::new(self.config.issuer.as_str(), self.config.resource.as_str()).with_leeway(self.config.leeway)
    }

    /// Verifies an access token issued by this server for its resource.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        verify(token, &self.token_validation(), self.keys().as_ref(), self.now())
    }

    pub(crate) fn verify_access_token_ignoring_expiry(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        let v = self.token_validation().with_leeway(Duration::from_secs(u32::MAX.into()));
        verify(token, &v, self.keys().as_ref(), self.now())
    }

    /// Generates a new signing key, retires the current ones (still published for
    /// `key_retention`), and starts signing with the new key.
    pub async fn rotate_signing_key(&self) -> Result<(), Error> {
        let now = self.now();
        let old = self.stores.keys.list_keys().await?;
        let key = StoredKey::generate(self.config.signing_algorithm, now)?;
        self.stores.keys.insert_key(&key).await?;
        for k in old.iter().filter(|k| k.retired_at.is_none()) {
            self.stores.keys.retire_key(&k.kid, now).await?;
        }
        tracing::info!(kid = %key.kid, alg = key.algorithm.as_str(), "signing key rotated");
        self.reload_keys().await
    }

    /// A 256-bit key for `label`, the same on every replica of this store: for the pages'
    /// CSRF tokens and other values the adapters must agree on. Derived from a server secret of
    /// its own, independent of the signing keys, so that a signing-key rotation neither signs
    /// anyone out nor voids open forms, and nothing derived from it helps forge a token.
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.page_secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The pepper client secrets are hashed with.
    pub(crate) fn pepper(&self) -> &ServerSecret {
        &self.pepper
    }

    /// The key refresh-token successors are derived with.
    pub(crate) fn refresh_secret(&self) -> ServerSecret {
        match self.refresh_secret.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the key refresh-token successors are derived with. Refresh tokens already
    /// issued keep working (they are looked up by hash); only a client that retries, within
    /// the grace window, a refresh it made before the rotation gets `invalid_grant` and must
    /// authorize again. For when the key may have leaked with a copy of the database.
    pub async fn rotate_refresh_secret(&self) -> Result<(), Error> {
        let fresh = ServerSecret::generate();
        self.stores.keys.replace_server_secret(REFRESH_SECRET, fresh.as_bytes(), self.now()).await?;
        match self.refresh_secret.write() {
            Ok(mut k) => *k = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        tracing::info!("refresh-token successor key rotated");
        Ok(())
    }

    /// Reloads the keys from the store (after another replica rotated them).
    pub async fn reload_keys(&self) -> Result<(), Error> {
        let set = KeySet::load(&self.stores.keys.list_keys().await?, self.config.signing_algorithm)?;
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(())
    }

    /// Records a flow event: to `tracing`, and to the event store. A store failure is logged,
    /// never turned into a failed request.
    pub(crate) async fn record(&self, event: FlowEvent) {
        record_event(&self.stores, event).await;
    }

    /// Records a failure that came before the client was authenticated (a wrong secret, an
    /// unknown or made-up client id): anyone can send those at any rate, so they are stored
    /// within the server's [`EventBudget`](crate::events::EventBudget) and otherwise only
    /// logged.
    pub(crate) async fn record_unauthenticated(&self, event: FlowEvent) {
        let (Some(reason), client) = (event.reason, event.client_id.as_ref().map(ClientId::as_str)) else {
            return self.record(event).await;
        };
        if self.unauthenticated_events.admit(event.step, reason, client.unwrap_or_default(), event.at) {
            self.record(event).await;
        } else {
            event.trace();
        }
    }

    /// Dynamic client registration (RFC 7591).
    pub async fn register(&self, request: RegistrationRequest) -> Result<RegistrationResponse, Error> {
        let now = self.now();
        let step = FlowStep::Registration;
        if !self.config.dynamic_registration {
            let e = OAuthError::invalid_request(
                "dynamic client registration is disabled on this server; ask the operator for a client id",
            );
            return Err(self.fail(step, Reason::InvalidRequest, None, e, None).await);
        }
        let valid = match request.validate(&self.config.redirect_policy) {
            Ok(v) => v,
            Err(e) => {
                let reason = if e.code() == crate::ErrorCode::InvalidRedirectUri {
                    Reason::InvalidRedirectUri
                } else {
                    Reason::InvalidClientMetadata
                };
                let name = request.client_name.as_deref().map(crate::params::clip).unwrap_or_default();
                return Err(self.fail(step, reason, None, e, Some(format!("client_name '{name}'"))).await);
            }
        };
        if let Some(scope) = &valid.scope
            && scope.intersection(&self.config.scopes_supported).is_empty()
        {
            let e = OAuthError::invalid_client_metadata(format!(
                "none of the registered scopes ({scope}) is supported; supported: {}",
                self.config.scopes_supported
            ));
            return Err(self.fail(step, Reason::InvalidClientMetadata, None, e, None).await);
        }
        let ignored = valid.ignored_grant_types.clone();
        let secret = (!valid.auth_method.is_public()).then(ClientSecret::generate);
        let secret_hash = secret.as_ref().map(|s| ClientSecretHash::of(s.secret(), &self.pepper));
        let client = valid.into_client(ClientId::generate(), secret_hash, now);
        self.stores.clients.create_client(&client).await?;
        let mut detail = format!(
            "'{}' registered with {} redirect URI(s) [{}], auth method {}",
            client.display_name(),
            client.redirect_uris.len(),
            client.redirect_uri_list(),
            client.auth_method.as_str()
        );
        if !ignored.is_empty() {
            detail.push_str(&format!("; unsupported grant types dropped: {}", ignored.join(", ")));
        }
        self.record(FlowEvent::success(now, step, detail).client(&client.id)).await;
        Ok(RegistrationResponse::new(&client, secret))
    }

    /// Registers a client on the operator's behalf (pre-registration). Confidential clients
    /// get a generated secret, returned once and stored as a hash. See [`Operator`].
    pub async fn create_client(&self, spec: NewClient) -> Result<CreatedClient, Error> {
        self.operator().create_client(spec).await
    }

    /// The client `id`, or why it cannot be used (`Ok(Err((reason, message)))`): unknown, or,
    /// for a Client ID Metadata Document, a document that could not be fetched or breaks the
    /// rules. A document client is fetched when first seen and again when its cached document
    /// expires; what the operator set (trusted, active) is kept across fetches.
    pub async fn resolve_client(&self, id: &ClientId) -> Result<Result<Client, (Reason, String)>, Error> {
        let stored = self.stores.clients.client(id).await?;
        let fetcher = match &self.metadata_documents {
            Some(f) if metadata_document::is_document_url(id) => f,
            _ => {
                return Ok(stored.ok_or_else(|| {
                    (
                        Reason::ClientUnknown,
                        format!(
                            "client '{}' is not registered with this server (it may have been deleted); reconnect so that the client registers again",
                            crate::params::clip(id.as_str())
                        ),
                    )
                }));
            }
        };
        let now = self.now();
        if let Some(c) = &stored
            && (c.origin != ClientOrigin::MetadataDocument || c.metadata_expires_at.is_some_and(|t| t > now))
        {
            return Ok(Ok(c.clone()));
        }
        let step = FlowStep::Registration;
        let fetched = match fetcher.fetch(id.as_str()).await {
            Ok(f) => f,
            Err(why) => {
                if let Some(expired) = stored {
                    // A valid copy that merely expired keeps the client working while its
                    // host is down; the next request tries again.
                    tracing::warn!(client_id = %id, reason = %why, "could not refetch a client metadata document; using the expired copy");
                    return Ok(Ok(expired));
                }
                // The detail (what the host resolved to, why the connection failed) is the
                // operator's: told to the requester, it would map the server's network.
                let detail = format!("the client's metadata document at {id} could not be fetched: {why}");
                self.record_unauthenticated(FlowEvent::failure(now, step, Reason::ClientUnknown, detail).client(id))
                    .await;
                let msg = format!(
                    "the client's metadata document at {id} could not be fetched; the server's operator can see why (mcp-auth diagnose)"
                );
                return Ok(Err((Reason::ClientUnknown, msg)));
            }
        };
        let mut client =
            match metadata_document::client_from_document(id, &fetched.body, &self.config.redirect_policy, now) {
                Ok(c) => c,
                Err(e) => {
                    let msg = e.description().to_owned();
                    self.record_unauthenticated(
                        FlowEvent::failure(now, step, Reason::InvalidClientMetadata, msg.clone()).client(id),
                    )
                    .await;
                    return Ok(Err((Reason::InvalidClientMetadata, msg)));
                }
            };
        client.metadata_expires_at = Some(now.plus(fetched.cache_for()));
        let detail = format!(
            "metadata document fetched: '{}' with {} redirect URI(s) [{}], cached for {} s",
            client.display_name(),
            client.redirect_uris.len(),
            client.redirect_uri_list(),
            fetched.cache_for().as_secs()
        );
        match stored {
            Some(old) => {
                client.created_at = old.created_at;
                client.last_used_at = old.last_used_at;
                client.trusted = old.trusted;
                client.active = old.active;
                self.stores.clients.update_client(&client).await?;
            }
            None => match self.stores.clients.create_client(&client).await {
                // Another request fetched it at the same moment: one document, one row.
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            },
        }
        self.record(FlowEvent::success(now, step, detail).client(id)).await;
        Ok(Ok(client))
    }

    /// The startup self-check: refuses, with every problem and its fix, a deployment that no
    /// client could use. `prm` is the protected-resource metadata served, `served_mcp_url`
    /// where the MCP endpoint is mounted. See [`crate::selfcheck`].
    pub fn self_check(&self, prm: &ProtectedResourceMetadata, served_mcp_url: &str) -> Result<(), Error> {
        let problems = selfcheck::check(&self.config, prm, served_mcp_url);
        if problems.is_empty() {
            return Ok(());
        }
        for p in &problems {
            tracing::error!(problem = %p.what, fix = %p.fix, "self-check: this configuration cannot work");
        }
        let list: Vec<String> = problems.iter().map(|p| format!("\n  - {p}")).collect();
        Err(Error::Config(format!("the self-check found {} problem(s):{}", problems.len(), list.concat())))
    }

    /// The operator's actions on this server's stores and clock.
    pub fn operator(&self) -> Operator {
        Operator::with_clock(self.stores.clone(), self.clock.clone())
    }

    /// Deletes expired and abandoned records: pending requests, old codes, dead grants, old
    /// flow events, dynamically registered and metadata-document clients unused for
    /// `unused_client_ttl`, and retired keys past retention.
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let now = self.now();
        let c = &self.config;
        let mut report = SweepReport {
            authorizations: self.stores.authorizations.sweep_authorizations(now, now.minus(c.code_retention)).await?,
            grants: self.stores.grants.sweep_grants(now.minus(c.code_retention)).await?,
            events: self.stores.events.sweep_events(now.minus(c.event_retention)).await?,
            // A client whose refresh token may still be live is in use: every refresh touches it.
            clients: self
                .stores
                .clients
                .delete_unused_dynamic_clients(now.minus(c.unused_client_ttl.max(c.refresh_token_ttl)))
                .await?,
            keys: 0,
            sessions: self.stores.sessions.sweep_sessions(now).await?,
        };
        let cutoff = now.minus(c.key_retention);
        for k in self.stores.keys.list_keys().await? {
            if k.retired_at.is_some_and(|t| t < cutoff) && self.stores.keys.delete_key(&k.kid).await? {
                report.keys += 1;
            }
        }
        if report.keys > 0 {
            self.reload_keys().await?;
        }
        Ok(report)
    }
}

/// Traces `event` and stores it; a store failure is logged, never returned.
pub(crate) async fn record_event(stores: &Stores, event: FlowEvent) {
    event.trace();
    if let Err(e) = stores.events.record_event(&event).await {
        tracing::error!(error = %e, step = event.step.as_str(), "could not store a flow event");
    }
}

/// The server secret `name` from the key store, generated and stored on first use; every
/// replica on the same store gets the same one.
pub(crate) async fn load_server_secret(stores: &Stores, name: &str, now: UnixTime) -> Result<ServerSecret, Error> {
    let bytes = stores.keys.server_secret(name, ServerSecret::generate().as_bytes(), now).await?;
    ServerSecret::from_bytes(&bytes).ok_or_else(|| {
        Error::Config(format!(
            "the stored server secret '{name}' cannot be read: it is sealed with a key-encryption key this process was not given (set the same one as the server), or the row is damaged"
        ))
    })
}

/// Loads the key set, generating and persisting the first key when the store has none for the
/// configured algorithm. Two replicas starting at once may both generate one; both keys are
/// then published and the newest signs, so tokens verify everywhere.
async fn load_or_create_keys(stores: &Stores, alg: SigningAlgorithm, now: UnixTime) -> Result<KeySet, Error> {
    let stored = stores.keys.list_keys().await?;
    if stored.iter().any(|k| k.algorithm == alg && k.retired_at.is_none()) {
        return KeySet::load(&stored, alg);
    }
    let key = StoredKey::generate(alg, now)?;
    stores.keys.insert_key(&key).await?;
    tracing::info!(kid = %key.kid, alg = alg.as_str(), "generated and stored the first signing key");
    KeySet::load(&stores.keys.list_keys().await?, alg)
}
