//! [`McpAuthBuilder`]: every option as a setter, and [`build`](McpAuthBuilder::build), which
//! owns the order the parts must be made in.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use mcp_guard::{
    LocalVerifier, McpGuardLayer, SessionLimits, TokenCache, TokenCacheConfig, TokenVerifier, protected_resource_router,
};
use oauth_axum::{AdminToken, InitialAccessToken, IpRange, RateLimits};
use oauth_core::KnownClient;
use oauth_core::ProtectedResourceMetadata;
use oauth_core::RedirectPolicy;
use oauth_core::UserStore;
use oauth_core::{Authenticator, StoreAuthenticator};
use oauth_core::{AuthorizationServer, Clock, Error, ServerConfig, Stores, SystemClock};
use oauth_core::{EnterpriseIdp, IdpKeys};
use oauth_core::{Issuer, ResourceUri, ScopeSet};

use crate::{Inner, McpAuth};

/// How often expired records are swept by default.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How often, at the latest, the server reads the revocations and keys other processes wrote.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// The shortest scheduled key rotation: an hour, so that the keys kept for the two-day
/// retention stay under fifty.
const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(3_600);

/// Where the tokens come from.
enum Store {
    None,
    Stores(Stores),
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Database(String, oauth_store_sql::SqlStoreOptions),
}

/// The options of an [`McpAuth`]; made by [`McpAuth::builder`].
///
/// The defaults are the safe ones: scope `mcp:tools` required on every request, Client ID
/// Metadata Documents accepted, machine clients refused, rate limits on, MCP sessions bounded,
/// no admin endpoint.
#[must_use]
pub struct McpAuthBuilder {
    public_url: String,
    mcp_path: String,
    store: Store,
    expected_clients: Vec<KnownClient>,
    redirect_schemes: Vec<String>,
    trusted_proxies: Vec<IpRange>,
    admin_token: Option<AdminToken>,
    initial_access_token: Option<InitialAccessToken>,
    authenticator: Option<Arc<dyn Authenticator>>,
    scopes: Option<(ScopeSet, ScopeSet)>,
    scope_descriptions: Vec<(String, String)>,
    tool_scopes: Vec<(String, ScopeSet)>,
    implied_scopes: Vec<(String, ScopeSet)>,
    enterprise_idps: Vec<EnterpriseIdp>,
    upstreams: Vec<oauth_core::upstream::UpstreamProvider>,
    vault: Option<oauth_core::upstream::VaultKeys>,
    metadata_documents: bool,
    private_key_jwt: bool,
    machine_clients: bool,
    key_encryption: Option<oauth_core::KeyEncryption>,
    resource_name: Option<String>,
    health_checks: bool,
    rotate_keys_every: Option<Duration>,
    rate_limits: Option<RateLimits>,
    shared_limits: Option<bool>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    session_limits: SessionLimits,
    sweep_every: Option<Duration>,
    follow_every: Option<Duration>,
    clock: Arc<dyn Clock>,
    configure: Vec<Box<dyn FnOnce(ServerConfig) -> ServerConfig + Send>>,
    #[cfg(feature = "external")]
    external_issuer: Option<String>,
    #[cfg(feature = "external")]
    external_profile: mcp_guard::remote::IssuerProfile,
}

impl std::fmt::Debug for McpAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The admin token, the initial access token and the key-encryption key are secrets:
        // only whether they are set is shown.
        f.debug_struct("McpAuthBuilder")
            .field("public_url", &self.public_url)
            .field("mcp_path", &self.mcp_path)
            .field("expected_clients", &self.expected_clients)
            .field("admin_token", &self.admin_token.is_some())
            .field("initial_access_token", &self.initial_access_token.is_some())
            .field("key_encryption", &self.key_encryption.is_some())
            .field("metadata_documents", &self.metadata_documents)
            .field("private_key_jwt", &self.private_key_jwt)
            .field("machine_clients", &self.machine_clients)
            .finish_non_exhaustive()
    }
}

impl McpAuthBuilder {
    pub(crate) fn new(public_url: String) -> Self {
        Self {
            public_url,
            mcp_path: "/mcp".to_owned(),
            store: Store::None,
            expected_clients: Vec::new(),
            redirect_schemes: Vec::new(),
            trusted_proxies: Vec::new(),
            admin_token: None,
            initial_access_token: None,
            authenticator: None,
            scopes: None,
            scope_descriptions: Vec::new(),
            tool_scopes: Vec::new(),
            implied_scopes: Vec::new(),
            enterprise_idps: Vec::new(),
            upstreams: Vec::new(),
            vault: None,
            metadata_documents: true,
            private_key_jwt: true,
            machine_clients: false,
            key_encryption: None,
            resource_name: None,
            health_checks: true,
            rotate_keys_every: None,
            rate_limits: Some(RateLimits::default()),
            shared_limits: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            session_limits: SessionLimits::default(),
            sweep_every: Some(SWEEP_EVERY),
            follow_every: Some(FOLLOW_EVERY),
            clock: Arc::new(SystemClock),
            configure: Vec::new(),
            #[cfg(feature = "external")]
            external_issuer: None,
            #[cfg(feature = "external")]
            external_profile: mcp_guard::remote::IssuerProfile::rfc9068(),
        }
    }

    /// Where the MCP endpoint is mounted. Default `/mcp`. The protected resource (the
    /// tokens' audience) is the public URL followed by this path.
    pub fn mcp_path(mut self, path: impl Into<String>) -> Self {
        self.mcp_path = path.into();
        self
    }

    /// The stores: `oauth_store_sql::SqlStore::into_stores()`, or the memory store for tests.
    pub fn store(mut self, stores: Stores) -> Self {
        self.store = Store::Stores(stores);
        self
    }

    /// The database at `url`, connected and migrated by [`Self::build`]:
    /// `sqlite://data/oauth.db?mode=rwc` (the file and its directory are created) or
    /// `postgres://…`. A URL with a password belongs in the environment or a file, not in
    /// the code.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.store = Store::Database(url.into(), oauth_store_sql::SqlStoreOptions::default());
        self
    }

    /// [`Self::database`] with the pool sized and timed by `options` (most connections, how
    /// long a request waits for one, PostgreSQL's statement timeout). TLS to PostgreSQL is set
    /// in the URL: `?sslmode=verify-full&sslrootcert=/path/to/ca.pem` for a managed database.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn database_with(mut self, url: impl Into<String>, options: oauth_store_sql::SqlStoreOptions) -> Self {
        self.store = Store::Database(url.into(), options);
        self
    }

    /// Clients the operator expects to connect (Claude, ChatGPT, Cursor, …): the startup
    /// self-check refuses a configuration that would lock one of them out, and says why.
    pub fn expected_clients(mut self, clients: impl IntoIterator<Item = KnownClient>) -> Self {
        self.expected_clients.extend(clients);
        self
    }

    /// Private-use redirect schemes registration accepts (`cursor`, `vscode`, …). Default
    /// none: https, and http on loopback only.
    pub fn redirect_schemes<I, S>(mut self, schemes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redirect_schemes.extend(schemes.into_iter().map(Into::into));
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` the rate limits believe. Default none: limits
    /// key on the socket's peer.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpRange>) -> Self {
        self.trusted_proxies.extend(proxies);
        self
    }

    /// Turns on the admin endpoint (`/admin/diagnose`, `/admin/clients/{id}`) behind this
    /// bearer secret. Default off.
    pub fn admin_token(mut self, token: AdminToken) -> Self {
        self.admin_token = Some(token);
        self
    }

    /// Dynamic registration only with this initial access token (RFC 7591 3), for closed
    /// deployments. Default: open registration.
    pub fn initial_access_token(mut self, token: InitialAccessToken) -> Self {
        self.initial_access_token = Some(token);
        self
    }

    /// Who may sign in. Default: the users in the store (`mcp-auth users add`), with Argon2id
    /// passwords.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// The scopes the server issues, and the defaults a client gets when it asks for none,
    /// which the guard also requires on every request. Default `mcp:tools` for both.
    pub fn scopes(mut self, supported: ScopeSet, defaults: ScopeSet) -> Self {
        self.scopes = Some((supported, defaults));
        self
    }

    /// What `scope` lets a client do, in words for the consent and Connected apps pages.
    pub fn scope_description(mut self, scope: impl Into<String>, text: impl Into<String>) -> Self {
        self.scope_descriptions.push((scope.into(), text.into()));
        self
    }

    /// Calling the tool `tool` needs `scopes` as well (403 `insufficient_scope` naming them).
    pub fn tool_scopes(mut self, tool: impl Into<String>, scopes: ScopeSet) -> Self {
        self.tool_scopes.push((tool.into(), scopes));
        self
    }

    /// Lets people sign in through this upstream identity provider (Google, GitHub, Entra,
    /// Okta, Auth0, Keycloak, any OpenID provider), beside the local passwords. It is
    /// discovered when the builder builds; the build fails, naming why, if it cannot be. The
    /// callback URL to register at the provider is `<public URL>/authorize/upstream/<id>/callback`.
    pub fn upstream(mut self, provider: oauth_core::upstream::UpstreamProvider) -> Self {
        self.upstreams.push(provider);
        self
    }

    /// Keeps each grant's upstream tokens sealed with these keys (from outside the database),
    /// so that tools can call the provider for the person
    /// ([`AuthorizationServer::upstream_access_token`]). Without it they are not kept.
    pub fn vault(mut self, keys: oauth_core::upstream::VaultKeys) -> Self {
        self.vault = Some(keys);
        self
    }

    /// Accepts identity assertions (ID-JAGs) from this enterprise IdP at the jwt-bearer grant
    /// (Enterprise-Managed Authorization). Keys given as [`IdpKeys::Discover`] are found from
    /// the IdP's metadata when the builder builds; the build fails if they cannot be.
    pub fn enterprise_idp(mut self, idp: EnterpriseIdp) -> Self {
        self.enterprise_idps.push(idp);
        self
    }

    /// A scope hierarchy: a token with `scope` also satisfies requirements for `implies`
    /// (followed transitively), such as `notes:admin` implying `notes:write`.
    pub fn implied_scopes(mut self, scope: impl Into<String>, implies: ScopeSet) -> Self {
        self.implied_scopes.push((scope.into(), implies));
        self
    }

    /// Whether clients identified by a Client ID Metadata Document (an https `client_id`) are
    /// accepted, fetched with the SSRF-safe fetcher. Default on: VS Code and others use them.
    pub fn metadata_documents(mut self, on: bool) -> Self {
        self.metadata_documents = on;
        self
    }

    /// Whether clients may authenticate with `private_key_jwt` (RFC 7523), as ChatGPT's
    /// metadata documents ask to. Default on; off, documents that also list `none` connect as
    /// public clients.
    pub fn private_key_jwt(mut self, on: bool) -> Self {
        self.private_key_jwt = on;
        self
    }

    /// Whether machine clients the operator created (`mcp-auth clients add --machine`) may use
    /// `client_credentials`, and the MCP endpoint accepts their tokens. Default off: only
    /// signed-in people.
    pub fn machine_clients(mut self, on: bool) -> Self {
        self.machine_clients = on;
        self
    }

    /// Seals the signing keys and server secrets in the store with this key. Default: stored
    /// in clear (whoever reads the database can then mint tokens).
    pub fn key_encryption(mut self, key: oauth_core::KeyEncryption) -> Self {
        self.key_encryption = Some(key);
        self
    }

    /// The resource's name in its metadata (`resource_name`), which some clients show.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Rotates the signing key once it is `every` old (at least an hour; checked at each key
    /// sync, every second), on every replica at once without more than one new key: see
    /// [`Operator::rotate_signing_key_if_older_than`](oauth_core::Operator::rotate_signing_key_if_older_than).
    /// Retired keys stay published, and verify what they signed, for the key retention
    /// (2 days). Default: `None`, rotated by the operator (`mcp-auth keys rotate`). Ignored
    /// when [`sync_with_store_every`](Self::sync_with_store_every) is `None`.
    pub fn rotate_signing_key_every(mut self, every: Option<Duration>) -> Self {
        self.rotate_keys_every = every;
        self
    }

    /// `GET /healthz` (the process answers) and `GET /readyz` (the database answers within
    /// 2 s; 503 otherwise) in [`McpAuth::routes`], for load balancers. Default on; turn them
    /// off when the app has routes of its own at those paths.
    pub fn health_checks(mut self, on: bool) -> Self {
        self.health_checks = on;
        self
    }

    /// The rate limits; `None` turns them off (behind a gateway that limits instead).
    /// Default: [`RateLimits::default`], with the trusted proxies set here.
    pub fn rate_limits(mut self, limits: Option<RateLimits>) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Shares the rate limits, the per-account sign-in throttle and the metadata-document
    /// fetch budget with every replica on the database (`oauth_axum::AuthRouter::with_shared_limits`), so that
    /// N replicas behind one balancer do not allow N times as much. Default: on when the
    /// store says other processes share it (`LimitStore::shared_by_processes`: PostgreSQL),
    /// off otherwise (one process counts alone, with no database write per limited request).
    pub fn shared_limits(mut self, on: bool) -> Self {
        self.shared_limits = Some(on);
        self
    }

    /// Collects Prometheus metrics into `metrics` (see [`crate::metrics`]) and serves them at
    /// `GET /metrics` behind the [`admin_token`](Self::admin_token), which Prometheus sends as
    /// a bearer token (`authorization: { credentials_file: … }`). Without an admin token they
    /// are collected but not served here: serve [`McpAuth::metrics`](crate::McpAuth::metrics)
    /// on an internal listener. With [`database`](Self::database) the pool is measured too;
    /// with [`store`](Self::store), give `Metrics::with_pool`. Default: none.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The MCP session bounds (per caller, in all, idle timeout). Default
    /// [`SessionLimits::default`].
    pub fn session_limits(mut self, limits: SessionLimits) -> Self {
        self.session_limits = limits;
        self
    }

    /// How often, at the latest, this server reads what other processes on the same database
    /// changed (other replicas, `mcp-auth`): grants they revoked, whose tokens the guard then
    /// refuses (PostgreSQL also wakes it at once), and signing keys they rotated, which it then
    /// publishes, verifies and signs with. `None` for a store no other process writes. Default
    /// every second.
    pub fn sync_with_store_every(mut self, every: Option<Duration>) -> Self {
        self.follow_every = every;
        self
    }

    /// How often expired codes, dead grants, old events and unused clients are swept; `None`
    /// leaves sweeping to the caller ([`AuthorizationServer::sweep`]). Default every 10 min.
    pub fn sweep_every(mut self, every: Option<Duration>) -> Self {
        self.sweep_every = every;
        self
    }

    /// The clock (tests move time with `oauth_core::ManualClock`). Default: the system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Any other server setting (token lifetimes, the signing algorithm, retention), applied
    /// after the builder's own.
    pub fn configure_server(mut self, f: impl FnOnce(ServerConfig) -> ServerConfig + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Tokens come from the authorization server `issuer` (Keycloak, Entra, Auth0, Okta, a
    /// standalone one of ours), checked with the keys its metadata publishes; no embedded
    /// server, and [`McpAuth::routes`] serves the protected-resource metadata only, whose
    /// `authorization_servers` is `issuer` exactly as given (a trailing `/` included, as
    /// Auth0's has). Tokens are read as RFC 9068 says unless
    /// [`Self::external_issuer_profile`] names the provider.
    #[cfg(feature = "external")]
    pub fn external_authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.external_issuer = Some(issuer.into());
        self
    }

    /// How the external authorization server's tokens are read: a preset for its provider
    /// (`IssuerProfile::named("keycloak")`, …) with the audiences the operator configured.
    /// Default: [`IssuerProfile::rfc9068`](crate::IssuerProfile::rfc9068), the strict one.
    /// `build` fails when the profile cannot work with the issuer (an Entra profile without
    /// the API's application id as an audience, say).
    #[cfg(feature = "external")]
    pub fn external_issuer_profile(mut self, profile: crate::IssuerProfile) -> Self {
        self.external_profile = profile;
        self
    }

    /// Wires everything, in order, and runs the startup self-check. Must run inside a tokio
    /// runtime (the sweeper is a task).
    pub async fn build(mut self) -> Result<McpAuth, Error> {
        let urls = Urls::parse(&self.public_url, &self.mcp_path)?;
        if let Some(every) = self.rotate_keys_every
            && every < MIN_ROTATION_INTERVAL
        {
            // Each rotation leaves a key published for the retention: rotating faster would
            // grow the key table and the JWKS without bound.
            return Err(Error::Config(format!(
                "rotate_signing_key_every is {every:?}; it must be at least {MIN_ROTATION_INTERVAL:?}"
            )));
        }
        #[cfg(feature = "external")]
        if let Some(issuer) = self.external_issuer.take() {
            return self.build_external(&issuer, urls).await;
        }
        let stores = match std::mem::replace(&mut self.store, Store::None) {
            Store::None => {
                return Err(Error::Config(
                    "no store: give the builder .database(\"sqlite://data/oauth.db?mode=rwc\") or .store(stores)"
                        .into(),
                ));
            }
            Store::Stores(s) => s,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Store::Database(url, options) => {
                let store = open_database(&url, &options).await?;
                #[cfg(feature = "metrics")]
                if let Some(metrics) = self.metrics.take() {
                    let probe = store.clone();
                    self.metrics = Some(metrics.with_pool(move || {
                        let (open, idle, max) = probe.pool_use();
                        crate::metrics::PoolUse::new(open, idle, max)
                    }));
                }
                store.into_stores()
            }
        };
        #[cfg(feature = "metrics")]
        let stores = match &self.metrics {
            Some(metrics) => Stores { events: metrics.count_events(stores.events.clone()), ..stores },
            None => stores,
        };
        let mut config = self.server_config(&urls);
        // The cache watches the store the server writes through, and the verifier uses that
        // same cache: a grant revoked here (RFC 7009, a replayed code or refresh token, a
        // removed client) is refused at once, not at the token's `exp`; one revoked by another
        // process on the store, within a second, through the store's revocation feed.
        let cache = TokenCache::new(TokenCacheConfig::for_server(&config));
        let users = stores.users.clone();
        let shared_limits =
            self.shared_limits.unwrap_or_else(|| stores.limits.shared_by_processes()).then(|| stores.limits.clone());
        let clock = self.clock.clone();
        if let Some(every) = self.follow_every {
            cache.follow_revocations(stores.grants.clone(), clock.clone(), every);
        }
        // One SSRF-safe fetcher for metadata documents, private_key_jwt clients' jwks_uri and
        // enterprise IdPs' keys.
        let fetcher = Arc::new(
            oauth_axum::metadata_documents::HttpsDocumentFetcher::new().with_shared_budget(shared_limits.clone()),
        );
        for idp in &mut config.enterprise_idps {
            if idp.keys == IdpKeys::Discover {
                idp.keys = oauth_core::discover_idp_keys(fetcher.as_ref(), &idp.issuer)
                    .await
                    .map_err(|e| Error::Config(format!("enterprise IdP '{}': {e}", idp.issuer)))?;
            }
        }
        let mut server = AuthorizationServer::with_clock(config, cache.watch_revocations(stores), clock).await?;
        server = server.with_client_key_fetcher(fetcher.clone());
        if self.metadata_documents {
            server = server.with_metadata_documents(fetcher);
        }
        if let Some(vault) = self.vault.take() {
            server = server.with_vault(vault);
        }
        if !self.upstreams.is_empty() {
            let http = Arc::new(oauth_axum::upstream::FetchUpstream::new());
            for provider in std::mem::take(&mut self.upstreams) {
                let id = provider.id.clone();
                let client = oauth_core::upstream::UpstreamClient::discover(provider, http.clone())
                    .await
                    .map_err(|e| Error::Config(format!("upstream provider '{id}': {e}")))?;
                server = server.with_upstream(client);
            }
        }
        let server = Arc::new(server);
        let mut prm = server.protected_resource_metadata();
        if let Some(name) = self.resource_name.take() {
            prm = prm.with_name(name);
        }
        // The check reads the metadata that is served below, not a copy made by hand.
        server.self_check(&prm, &urls.mcp_url)?;
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.watch_cache(cache.clone(), self.clock.clone());
        }
        let verifier = Arc::new(LocalVerifier::new(server.clone()).with_cache(cache));
        let guard = self.guard(verifier, &urls.resource, Some(server.config().default_scopes.clone()));
        let routes = self.routes(&server, prm, users, shared_limits);
        if let Some(every) = self.sweep_every {
            oauth_axum::spawn_sweeper(server.clone(), every);
        }
        if let Some(every) = self.follow_every {
            spawn_key_sync(server.clone(), every, self.rotate_keys_every);
        }
        Ok(self.finish(Some(server), guard, routes, urls))
    }

    /// The server's configuration from the builder's options, `configure_server` last.
    fn server_config(&mut self, urls: &Urls) -> ServerConfig {
        let mut config = ServerConfig::new(urls.issuer.clone(), urls.resource.clone())
            .with_redirect_policy(
                RedirectPolicy::default().with_private_use_schemes(std::mem::take(&mut self.redirect_schemes)),
            )
            .with_expected_clients(std::mem::take(&mut self.expected_clients))
            .with_client_credentials(self.machine_clients)
            .with_private_key_jwt(self.private_key_jwt)
            .with_scope_descriptions(std::mem::take(&mut self.scope_descriptions));
        if let Some((supported, defaults)) = self.scopes.clone() {
            config = config.with_scopes(supported, defaults);
        }
        if let Some(kek) = self.key_encryption.take() {
            config = config.with_key_encryption(kek);
        }
        for idp in std::mem::take(&mut self.enterprise_idps) {
            config = config.with_enterprise_idp(idp);
        }
        for f in std::mem::take(&mut self.configure) {
            config = f(config);
        }
        config
    }

    /// The guard for `resource` with the builder's policy; `required` scopes on every request.
    fn guard(
        &mut self,
        verifier: Arc<dyn TokenVerifier>,
        resource: &ResourceUri,
        required: Option<ScopeSet>,
    ) -> McpGuardLayer {
        let mut guard = McpGuardLayer::new(verifier, resource)
            .with_machine_clients(self.machine_clients)
            .with_session_limits(self.session_limits);
        if let Some(scopes) = required {
            guard = guard.with_required_scopes(scopes);
        }
        for (tool, scopes) in std::mem::take(&mut self.tool_scopes) {
            guard = guard.with_tool_scopes(tool, scopes);
        }
        for (scope, implies) in std::mem::take(&mut self.implied_scopes) {
            guard = guard.with_implied_scopes(scope, implies);
        }
        guard
    }

    /// The metadata, the authorization server's endpoints and pages, and the admin endpoint.
    fn routes(
        &mut self,
        server: &Arc<AuthorizationServer>,
        prm: ProtectedResourceMetadata,
        users: Arc<dyn UserStore>,
        shared_limits: Option<Arc<dyn oauth_core::LimitStore>>,
    ) -> Router {
        let authenticator = self.authenticator.take().unwrap_or_else(|| Arc::new(StoreAuthenticator::new(users)));
        let trusted = std::mem::take(&mut self.trusted_proxies);
        let limits = self.rate_limits.take().map(|l| l.with_trusted_proxies(trusted));
        let mut routes = Router::new().merge(protected_resource_router(prm)).merge(
            oauth_axum::AuthRouter::new(server.clone(), authenticator)
                .with_rate_limits(limits)
                .with_shared_limits(shared_limits)
                .with_initial_access_token(self.initial_access_token.take())
                .into_router(),
        );
        if let Some(token) = self.admin_token.take() {
            #[cfg(feature = "metrics")]
            if let Some(metrics) = &self.metrics {
                routes = routes.merge(crate::metrics::router(metrics.clone(), token.clone()));
            }
            routes = routes.merge(oauth_axum::admin_router(server.clone(), token));
        } else {
            #[cfg(feature = "metrics")]
            if self.metrics.is_some() {
                tracing::info!(
                    "metrics are collected but /metrics is not served without an admin token; \
                     serve McpAuth::metrics() on an internal listener"
                );
            }
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            routes = routes
                .route_layer(axum::middleware::from_fn_with_state(metrics.clone(), crate::metrics::count_requests));
        }
        if self.health_checks {
            routes = routes.merge(oauth_axum::health_router(Some(server.clone())));
        }
        routes
    }

    fn finish(
        self,
        server: Option<Arc<AuthorizationServer>>,
        guard: McpGuardLayer,
        routes: Router,
        urls: Urls,
    ) -> McpAuth {
        McpAuth {
            inner: Arc::new(Inner {
                server,
                guard,
                routes,
                mcp_path: self.mcp_path,
                mcp_url: urls.mcp_url,
                public_url: urls.issuer.to_string(),
                session_limits: self.session_limits,
                #[cfg(feature = "metrics")]
                metrics: self.metrics,
            }),
        }
    }

    /// No embedded server: tokens of `issuer`, checked with the keys its metadata names.
    #[cfg(feature = "external")]
    async fn build_external(mut self, issuer: &str, urls: Urls) -> Result<McpAuth, Error> {
        let external = Issuer::parse_external(issuer).map_err(|e| Error::Config(format!("external issuer: {e}")))?;
        let profile = std::mem::take(&mut self.external_profile);
        let verifier = mcp_guard::remote::JwksVerifier::discover_with(external.as_str(), &urls.resource, profile)
            .await
            .map_err(|e| Error::Config(format!("the external authorization server: {e}")))?;
        let mut prm = ProtectedResourceMetadata::new(&urls.resource, &external);
        if let Some((supported, _)) = &self.scopes {
            prm = prm.with_scopes(supported);
        }
        if let Some(name) = self.resource_name.take() {
            prm = prm.with_name(name);
        }
        let required = self.scopes.as_ref().map(|(_, defaults)| defaults.clone());
        let guard = self.guard(Arc::new(verifier), &urls.resource, required);
        let mut routes = protected_resource_router(prm);
        if self.health_checks {
            routes = routes.merge(oauth_axum::health_router(None));
        }
        Ok(self.finish(None, guard, routes, urls))
    }
}

/// The URLs everything else is derived from.
struct Urls {
    issuer: Issuer,
    resource: ResourceUri,
    mcp_url: String,
}

impl Urls {
    /// The issuer (the public origin) and the resource (the origin and the MCP path).
    fn parse(public_url: &str, mcp_path: &str) -> Result<Self, Error> {
        let public = public_url.trim_end_matches('/');
        let issuer = Issuer::parse(public).map_err(|e| Error::Config(format!("public URL: {e}")))?;
        if !issuer.path().is_empty() {
            return Err(Error::Config(format!(
                "public URL '{public}' has a path; give the origin only (the MCP endpoint is served at {mcp_path})"
            )));
        }
        if !mcp_path.starts_with('/') || mcp_path.len() < 2 || mcp_path.ends_with('/') {
            return Err(Error::Config(format!(
                "MCP path '{mcp_path}' must start with '/', name a path and not end with '/' (such as /mcp)"
            )));
        }
        let mcp_url = format!("{public}{mcp_path}");
        let resource = ResourceUri::parse(&mcp_url).map_err(|e| Error::Config(format!("MCP URL: {e}")))?;
        Ok(Self { issuer, resource, mcp_url })
    }
}

/// Connects to `url` and brings its schema up to date (a SQLite file with `mode=rwc` and its
/// directory are created when missing).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn open_database(
    url: &str,
    options: &oauth_store_sql::SqlStoreOptions,
) -> Result<oauth_store_sql::SqlStore, Error> {
    oauth_store_sql::SqlStore::connect_with(url, options)
        .await
        .map_err(|e| Error::Config(format!("cannot open the database: {e}")))
}

/// Reloads the signing keys whenever the store's change (another replica's rotation, `mcp-auth
/// keys rotate`), checking every `every`; a failure keeps the keys in use and is retried.
fn spawn_key_sync(
    server: Arc<AuthorizationServer>,
    every: Duration,
    rotate_every: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(age) = rotate_every
                && let Err(e) = server.operator().rotate_signing_key_if_older_than(age).await
            {
                tracing::warn!(error = %e, "the scheduled signing-key rotation failed; retrying at the next tick");
            }
            if let Err(e) = server.sync_keys().await {
                tracing::warn!(error = %e, "reading the signing keys from the store failed; the keys in use stay");
            }
        }
    })
}
