//! [`AuthorizationServer`].
//! Documented in the crate docs, "The authorization server".

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::admin::{CreatedClient, NewClient, Operator};
use crate::client::{Client, ClientOrigin};
use crate::clock::{Clock, SystemClock, UnixTime};
pub use crate::config::ServerConfig;
use crate::error::{Error, OAuthError, StoreError};
use crate::events::{FlowEvent, FlowStep, Reason};
use crate::jwt::{AccessTokenClaims, TokenValidation, VerifyError, verify};
use crate::keys::{KeySet, SigningAlgorithm, StoredKey};
use crate::metadata::{AuthorizationServerMetadata, MetadataInputs, ProtectedResourceMetadata};
use crate::metadata_document::{self, MetadataDocumentFetcher};
use crate::policy::{OFFLINE_ACCESS, Quirk, registered_scope};
use crate::registration::{RegistrationRequest, RegistrationResponse};
use crate::secret::{ClientSecret, ClientSecretHash, ServerSecret};
use crate::selfcheck;
use crate::store::Stores;
use crate::stored::{CLIENT_SECRET_PEPPER, load_server_secret, record_event};
use crate::types::{ClientId, ScopeSet};

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
    /// The key store's rows (kid, retirement) the keys were loaded from.
    key_rows: std::sync::Mutex<KeyRows>,
    refresh_secret: RwLock<ServerSecret>,
    pepper: ServerSecret,
    page_secret: ServerSecret,
    metadata_documents: Option<Arc<dyn MetadataDocumentFetcher>>,
    /// Fetches the `jwks_uri` of `private_key_jwt` clients.
    key_fetcher: Option<Arc<dyn MetadataDocumentFetcher>>,
    jwks_cache: crate::client_assertion::JwksCache,
    /// Failures before a client is authenticated are stored within this budget.
    unauthenticated_events: crate::events::EventBudget,
    /// The identity providers people may sign in with.
    upstreams: Vec<Arc<crate::upstream::UpstreamClient>>,
    /// Seals the upstream tokens at rest; without it they are not kept.
    vault: Option<Arc<crate::upstream::VaultKeys>>,
}

/// The key-store name of the key refresh-token successors are derived with.
const REFRESH_SECRET: &str = "refresh-successor-v1";
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
        let mut stores = crate::sealing::KeyEncryption::protect(config.key_encryption.as_ref(), stores);
        // Concurrent requests' events are stored together, a group commit by one writer.
        stores.events = crate::event_writer::BatchedEvents::wrap(stores.events);
        let keys = load_or_create_keys(&stores, config.signing_algorithm, clock.now()).await?;
        let rows = key_rows(&stores.keys.list_keys().await?);
        let refresh_secret = load_server_secret(&stores, REFRESH_SECRET, clock.now()).await?;
        let pepper = load_server_secret(&stores, CLIENT_SECRET_PEPPER, clock.now()).await?;
        let page_secret = load_server_secret(&stores, PAGE_SECRET, clock.now()).await?;
        Ok(Self {
            config,
            stores,
            clock,
            keys: RwLock::new(Arc::new(keys)),
            key_rows: std::sync::Mutex::new(rows),
            refresh_secret: RwLock::new(refresh_secret),
            pepper,
            page_secret,
            metadata_documents: None,
            key_fetcher: None,
            jwks_cache: crate::client_assertion::JwksCache::default(),
            unauthenticated_events: crate::events::EventBudget::default(),
            upstreams: Vec::new(),
            vault: None,
        })
    }

    /// Lets people sign in through this discovered upstream provider, beside the local
    /// passwords ([`crate::upstream`]).
    #[must_use]
    pub fn with_upstream(mut self, upstream: crate::upstream::UpstreamClient) -> Self {
        self.upstreams.push(Arc::new(upstream));
        self
    }

    /// Keeps each grant's upstream tokens sealed with these keys (the upstream-token vault),
    /// so that tools can call the provider's APIs for the person. Without it, upstream
    /// sign-in works and the provider's tokens are dropped.
    #[must_use]
    pub fn with_vault(mut self, keys: crate::upstream::VaultKeys) -> Self {
        self.vault = Some(Arc::new(keys));
        self
    }

    /// Whether grants keep their upstream tokens: a vault is configured ([`Self::with_vault`]).
    pub fn keeps_upstream_tokens(&self) -> bool {
        self.vault.is_some()
    }

    /// The vault's keys, when configured.
    pub(crate) fn vault(&self) -> Option<&crate::upstream::VaultKeys> {
        self.vault.as_deref()
    }

    /// The upstream providers, in the order they were added.
    pub fn upstreams(&self) -> &[Arc<crate::upstream::UpstreamClient>] {
        &self.upstreams
    }

    /// Accepts clients identified by a Client ID Metadata Document (an https `client_id` URL),
    /// fetched with `fetcher`, and says so in the metadata
    /// (`client_id_metadata_document_supported`). Default: off. The fetcher carries the SSRF
    /// defences; see [the crate docs](crate#client-id-metadata-documents).
    #[must_use]
    pub fn with_metadata_documents(mut self, fetcher: Arc<dyn MetadataDocumentFetcher>) -> Self {
        if self.key_fetcher.is_none() {
            self.key_fetcher = Some(fetcher.clone());
        }
        self.metadata_documents = Some(fetcher);
        self
    }

    /// Fetches the `jwks_uri` of `private_key_jwt` clients with `fetcher` (which must carry
    /// the same SSRF defences as a metadata-document fetcher). [`Self::with_metadata_documents`]
    /// uses its fetcher for this too. Without one, such clients must register `jwks` inline.
    #[must_use]
    pub fn with_client_key_fetcher(mut self, fetcher: Arc<dyn MetadataDocumentFetcher>) -> Self {
        self.key_fetcher = Some(fetcher);
        self
    }

    pub(crate) fn key_fetcher(&self) -> Option<&Arc<dyn MetadataDocumentFetcher>> {
        self.key_fetcher.as_ref()
    }

    pub(crate) fn jwks_cache(&self) -> &crate::client_assertion::JwksCache {
        &self.jwks_cache
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
            private_key_jwt: self.config.private_key_jwt,
            enterprise_assertions: !self.config.enterprise_idps.is_empty(),
            service_documentation: self.config.service_documentation.as_deref(),
        })
    }

    /// The same metadata for `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> AuthorizationServerMetadata {
        self.metadata().into_openid_configuration(self.config.signing_algorithm.as_str())
    }

    /// RFC 9728 metadata for the protected MCP resource.
    pub fn protected_resource_metadata(&self) -> ProtectedResourceMetadata {
        // Never `offline_access` (MCP 2026-07-28): clients copy these into their request, and
        // refresh tokens follow the registered grant types, not a scope.
        let scopes = ScopeSet::from_scopes(
            self.config.scopes_supported.iter().filter(|s| s.as_str() != OFFLINE_ACCESS).cloned(),
        );
        ProtectedResourceMetadata::new(&self.config.resource, &self.config.issuer).with_scopes(&scopes)
    }

    /// The public keys for `/jwks.json`.
    pub fn jwks(&self) -> crate::jwks::Jwks {
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
        let stored = self.stores.keys.list_keys().await?;
        self.install_keys(&stored)
    }

    /// Reloads the keys when the store's differ from those loaded: a key another process
    /// added (`mcp-auth keys rotate`, another replica's rotation), retired or deleted. `true`
    /// when they changed. What replicas run every second, so that each publishes, verifies
    /// and signs with the same keys; a store whose keys no longer load (no active key of the
    /// configured algorithm, one sealed under another key) is an error, and the keys in use
    /// stay.
    pub async fn sync_keys(&self) -> Result<bool, Error> {
        let stored = self.stores.keys.list_keys().await?;
        let same = match self.key_rows.lock() {
            Ok(rows) => *rows == key_rows(&stored),
            Err(poisoned) => *poisoned.into_inner() == key_rows(&stored),
        };
        if same {
            return Ok(false);
        }
        self.install_keys(&stored)?;
        tracing::info!(signing = self.keys().signing_key().0, "the signing keys changed in the store: reloaded");
        Ok(true)
    }

    fn install_keys(&self, stored: &[StoredKey]) -> Result<(), Error> {
        let set = Arc::new(KeySet::load(stored, self.config.signing_algorithm)?);
        match self.keys.write() {
            Ok(mut k) => *k = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        match self.key_rows.lock() {
            Ok(mut rows) => *rows = key_rows(stored),
            Err(poisoned) => *poisoned.into_inner() = key_rows(stored),
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
        let mut valid = match request.validate(&self.config.redirect_policy) {
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
        let dropped;
        (valid.scope, dropped) = registered_scope(valid.scope.take(), &self.config.scopes_supported);
        if valid.auth_method == crate::client::TokenEndpointAuthMethod::PrivateKeyJwt {
            let refusal = if !self.config.private_key_jwt {
                Some(
                    "token_endpoint_auth_method 'private_key_jwt' is turned off on this server; register with none (and PKCE) or a client secret",
                )
            } else if valid.jwks_uri.is_some() && self.key_fetcher.is_none() {
                Some("this server does not fetch jwks_uri; register the public keys inline with jwks")
            } else {
                None
            };
            if let Some(why) = refusal {
                let e = OAuthError::invalid_client_metadata(why);
                return Err(self.fail(step, Reason::InvalidClientMetadata, None, e, None).await);
            }
        }
        let ignored = valid.ignored_grant_types.clone();
        let secret = valid.auth_method.uses_secret().then(ClientSecret::generate);
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
        if let Some(dropped) = dropped {
            detail.push_str(&format!("; policies applied: {} ({dropped})", Quirk::UnknownScopesDropped.as_str()));
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
        self.client_from_metadata_document(id, fetcher.as_ref(), stored, now).await
    }

    /// Fetches and checks the metadata document `id` names, and stores the client it
    /// describes over `stored` (an expired copy, which is used when the host is down).
    async fn client_from_metadata_document(
        &self,
        id: &ClientId,
        fetcher: &dyn MetadataDocumentFetcher,
        stored: Option<Client>,
        now: UnixTime,
    ) -> Result<Result<Client, (Reason, String)>, Error> {
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
        let policy = &self.config.redirect_policy;
        let accepts_keys = self.config.private_key_jwt;
        let (mut client, fallback) =
            match metadata_document::client_from_document(id, &fetched.body, policy, accepts_keys, now) {
                Ok(c) => c,
                Err(e) => {
                    let msg = e.description().to_owned();
                    let event = FlowEvent::failure(now, step, Reason::InvalidClientMetadata, msg.clone()).client(id);
                    self.record_unauthenticated(event).await;
                    return Ok(Err((Reason::InvalidClientMetadata, msg)));
                }
            };
        let dropped;
        (client.scope, dropped) = registered_scope(client.scope.take(), &self.config.scopes_supported);
        client.metadata_expires_at = Some(now.plus(fetched.cache_for()));
        self.store_document_client(&mut client, stored).await?;
        let mut detail = format!(
            "metadata document fetched: '{}' with {} redirect URI(s) [{}], auth method {}, cached for {} s",
            client.display_name(),
            client.redirect_uris.len(),
            client.redirect_uri_list(),
            client.auth_method.as_str(),
            fetched.cache_for().as_secs()
        );
        if let Some(note) = fallback {
            tracing::info!(client_id = %id, policy = "auth_method_fallback", "{note}");
            detail.push_str(&format!("; policy auth_method_fallback: {note}"));
        }
        if let Some(dropped) = dropped {
            detail.push_str(&format!("; policy {} ({dropped})", Quirk::UnknownScopesDropped.as_str()));
        }
        self.record(FlowEvent::success(now, step, detail).client(id)).await;
        Ok(Ok(client))
    }

    /// Stores a client read from its metadata document; over `stored`, it keeps what the
    /// operator and its use decided (created, last used, trusted, active).
    async fn store_document_client(&self, client: &mut Client, stored: Option<Client>) -> Result<(), Error> {
        match stored {
            Some(old) => {
                client.created_at = old.created_at;
                client.last_used_at = old.last_used_at;
                client.trusted = old.trusted;
                client.active = old.active;
                self.stores.clients.update_client(client).await?;
            }
            None => match self.stores.clients.create_client(client).await {
                // Another request fetched it at the same moment: one document, one row.
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    /// The startup self-check: refuses, with every problem and its fix, a deployment that no
    /// client could use. `prm` is the protected-resource metadata served, `served_mcp_url`
    /// where the MCP endpoint is mounted. See [the crate docs](crate#the-startup-self-check).
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

    /// Whether this server can serve token requests now: its store answers (one read of the
    /// key table). For readiness probes; the error says what failed, for the log only.
    pub async fn ready(&self) -> Result<(), Error> {
        self.stores.keys.list_keys().await.map(drop).map_err(Error::Store)
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

/// Each stored key's id and retirement, in order: what tells whether the store's keys changed.
type KeyRows = Vec<(String, Option<UnixTime>)>;

fn key_rows(stored: &[StoredKey]) -> KeyRows {
    let mut rows: KeyRows = stored.iter().map(|k| (k.kid.clone(), k.retired_at)).collect();
    rows.sort();
    rows
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
