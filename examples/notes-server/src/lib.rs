//! An MCP server with per-user notes behind the embedded OAuth 2.1 authorization server, or
//! behind an external one (Keycloak, Entra, Auth0, Okta, any RFC 9068 server).
//!
//! [`build`] maps the command line's settings onto the `mcp-oauth` builder, which wires the
//! authorization server, the guard in front of the MCP endpoint at `/mcp` (rmcp's
//! `StreamableHttpService`) and the protected-resource metadata; [`build_external`] wires the
//! guard and the metadata only, for tokens of an [`External`] issuer. The tools answer
//! according to who is calling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::request::Parts;
use mcp_oauth::{AdminToken, AuthContext, Caller, IpRange, KnownClient, McpAuth, UpstreamTokenError};
use oauth_core::UserStore;
use oauth_core::{AuthorizationServer, Clock, Error, Stores, SystemClock};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig as McpServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// What the server needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL clients reach this server at (`https://mcp.example.com`, or
    /// `http://127.0.0.1:8080` locally): the issuer, and the origin of the MCP endpoint.
    pub public_url: String,
    /// Private-use redirect schemes to accept at registration (`cursor`, …).
    pub redirect_schemes: Vec<String>,
    /// Clients the operator expects; the startup self-check refuses a configuration that
    /// would lock one of them out.
    pub expected_clients: Vec<KnownClient>,
    /// Turns on the admin endpoint (`/admin/diagnose`, `/admin/clients/{id}`) behind this
    /// bearer secret. Off when `None`.
    pub admin_token: Option<AdminToken>,
    /// Reverse proxies whose `X-Forwarded-For` the rate limits believe. Empty: limits key on
    /// the socket's peer address.
    pub trusted_proxies: Vec<IpRange>,
    /// Accept clients identified by a Client ID Metadata Document (an https `client_id` URL,
    /// fetched with the SSRF-safe fetcher of `oauth-axum`).
    pub metadata_documents: bool,
    /// Accept `private_key_jwt` client authentication (ChatGPT's metadata documents use it).
    pub private_key_jwt: bool,
    /// Machine clients the operator created may use `client_credentials`, and the MCP endpoint
    /// accepts their tokens. Off: only signed-in people get tokens.
    pub machine_clients: bool,
    /// Seals the signing keys in the database with this key-encryption key. `None`: they are
    /// stored in clear.
    pub key_encryption: Option<oauth_core::KeyEncryption>,
    /// Rotates the signing key once it is this old (at least an hour), on every replica.
    /// `None`: the operator rotates (`keys rotate`).
    pub rotate_signing_key_every: Option<std::time::Duration>,
    /// Share the rate limits, the sign-in throttle and the fetch budget with every replica
    /// through the store; `None`: when the store is shared by processes (PostgreSQL).
    pub shared_limits: Option<bool>,
    /// Prometheus metrics, served at `/metrics` behind the admin token.
    pub metrics: Option<mcp_oauth::metrics::Metrics>,
    /// Enterprise IdPs whose identity assertions (ID-JAGs) sign people in at the jwt-bearer
    /// grant (Enterprise-Managed Authorization); see [`enterprise_idps_from_json`].
    pub enterprise_idps: Vec<oauth_core::EnterpriseIdp>,
    /// Identity providers people may sign in with, beside the local passwords.
    pub upstreams: Vec<oauth_core::upstream::UpstreamProvider>,
    /// Keeps the providers' tokens sealed per grant, for the `upstream_profile` tool.
    pub vault: Option<oauth_core::upstream::VaultKeys>,
}

/// The upstream provider `spec` names: `google`, `github`, `entra:<tenant>` (`organizations`:
/// any work account), `okta:<issuer>`, `auth0:<domain>`, `keycloak:<base>/realms/<realm>`, or an OpenID
/// provider's https issuer URL.
pub fn upstream_provider(
    spec: &str,
    client_id: &str,
    secret: oauth_core::upstream::UpstreamSecret,
    audience: Option<&str>,
) -> Result<oauth_core::upstream::UpstreamProvider, String> {
    use oauth_core::upstream::UpstreamProvider as P;
    let (kind, arg) = spec.split_once(':').filter(|(k, _)| !k.starts_with("http")).unwrap_or((spec, ""));
    Ok(match (kind, arg) {
        ("google", "") => P::google(client_id, secret),
        ("github", "") => P::github(client_id, secret),
        ("entra", "organizations" | "common") => P::entra_multi_tenant(client_id, secret),
        ("entra", tenant) if !tenant.is_empty() => P::entra(tenant, client_id, secret),
        ("okta", issuer) if !issuer.is_empty() => P::okta(issuer, client_id, secret),
        ("auth0", domain) if !domain.is_empty() => P::auth0(domain, audience, client_id, secret),
        ("keycloak", issuer) if issuer.contains("/realms/") => {
            let (base, realm) = issuer.rsplit_once("/realms/").unwrap_or((issuer, ""));
            P::keycloak(base, realm, client_id, secret)
        }
        (url, "") if url.starts_with("https://") || url.starts_with("http://127.0.0.1:") => {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            let name = rest.split(['/', ':']).next().filter(|h| !h.is_empty()).unwrap_or("your provider");
            P::oidc("oidc", name, url, client_id, secret)
        }
        _ => {
            return Err(format!(
                "--upstream '{spec}': use google, github, entra:<tenant>, okta:<issuer>, auth0:<domain>, keycloak:<base>/realms/<realm> or an issuer URL"
            ));
        }
    })
}

/// An external authorization server whose tokens the guard accepts, in place of the embedded
/// one: `docs/external-idps.md` says what to register at each provider.
#[derive(Debug, Clone)]
pub struct External {
    /// The issuer, exactly as the server writes it in its metadata and tokens.
    pub issuer: String,
    /// How its tokens are read: a preset with the operator's audiences.
    pub profile: mcp_oauth::IssuerProfile,
    /// What the tools need, as the tokens carry it after the profile's mapping (Entra's
    /// `api://<application id>/mcp:tools`, say): required on every request and advertised in
    /// the metadata, so that clients ask the provider for it.
    pub scope: oauth_core::ScopeSet,
}

/// The largest enterprise IdP file read.
pub const MAX_IDP_FILE: usize = 256 * 1024;

/// Reads the enterprise IdPs file: a JSON array of
/// `{"issuer", "jwks_uri"?, "jwks"?, "clients", "link_by_email"?}`. `issuer` is exactly the
/// `iss` of the IdP's assertions; the keys are the inline `jwks`, else those at `jwks_uri`,
/// else found from the IdP's metadata at startup; `clients` are the client ids (created with
/// `clients add --enterprise`) that may present its assertions; `link_by_email` also finds
/// people by a verified `email` when their `sub` is no username here.
pub fn enterprise_idps_from_json(bytes: &[u8]) -> Result<Vec<oauth_core::EnterpriseIdp>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        issuer: String,
        #[serde(default)]
        jwks_uri: Option<String>,
        #[serde(default)]
        jwks: Option<serde_json::Value>,
        clients: Vec<String>,
        #[serde(default)]
        link_by_email: bool,
    }
    if bytes.len() > MAX_IDP_FILE {
        return Err(format!("the enterprise IdPs file is larger than {MAX_IDP_FILE} bytes"));
    }
    let entries: Vec<Entry> =
        serde_json::from_slice(bytes).map_err(|e| format!("the enterprise IdPs file is not valid: {e}"))?;
    let mut idps = Vec::with_capacity(entries.len());
    for e in entries {
        let issuer = e.issuer;
        if !issuer.starts_with("https://") {
            return Err(format!("enterprise IdP '{issuer}': the issuer must be an https URL"));
        }
        let keys = match (e.jwks, e.jwks_uri) {
            (Some(_), Some(_)) => return Err(format!("enterprise IdP '{issuer}': give jwks or jwks_uri, not both")),
            (Some(set), None) => oauth_core::IdpKeys::Inline(
                oauth_core::Jwks::from_json(set.to_string().as_bytes())
                    .map_err(|err| format!("enterprise IdP '{issuer}': jwks is not a JWK set: {err}"))?,
            ),
            (None, Some(uri)) if uri.starts_with("https://") => oauth_core::IdpKeys::Url(uri),
            (None, Some(uri)) => return Err(format!("enterprise IdP '{issuer}': jwks_uri '{uri}' is not https")),
            (None, None) => oauth_core::IdpKeys::Discover,
        };
        if e.clients.is_empty() {
            return Err(format!("enterprise IdP '{issuer}': list the client ids that may present its assertions"));
        }
        let clients = e
            .clients
            .iter()
            .map(|c| oauth_core::ClientId::parse(c).map_err(|err| format!("enterprise IdP '{issuer}': {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let idp = oauth_core::EnterpriseIdp::new(issuer, keys, clients);
        idps.push(if e.link_by_email { idp.link_by_email() } else { idp });
    }
    Ok(idps)
}

impl Settings {
    /// Settings for `public_url` with nothing else on.
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            redirect_schemes: Vec::new(),
            expected_clients: Vec::new(),
            admin_token: None,
            trusted_proxies: Vec::new(),
            metadata_documents: true,
            private_key_jwt: true,
            machine_clients: false,
            key_encryption: None,
            rotate_signing_key_every: None,
            shared_limits: None,
            metrics: None,
            enterprise_idps: Vec::new(),
            upstreams: Vec::new(),
            vault: None,
        }
    }
}

/// The assembled application.
#[derive(Debug)]
pub struct App {
    /// The router to serve.
    pub router: Router,
    /// The authorization server.
    pub server: Arc<AuthorizationServer>,
}

/// Builds the app on `stores`, after the startup self-check.
pub async fn build(settings: &Settings, stores: Stores) -> Result<App, Error> {
    build_with_clock(settings, stores, Arc::new(SystemClock)).await
}

/// [`build`] on the given clock (tests move time forward with a `ManualClock`).
pub async fn build_with_clock(settings: &Settings, stores: Stores, clock: Arc<dyn Clock>) -> Result<App, Error> {
    let mut builder = McpAuth::builder(&settings.public_url)
        .mcp_path(MCP_PATH)
        .store(stores)
        .clock(clock)
        .redirect_schemes(settings.redirect_schemes.clone())
        .expected_clients(settings.expected_clients.iter().copied())
        .trusted_proxies(settings.trusted_proxies.clone())
        .metadata_documents(settings.metadata_documents)
        .private_key_jwt(settings.private_key_jwt)
        .machine_clients(settings.machine_clients)
        .rotate_signing_key_every(settings.rotate_signing_key_every)
        .resource_name("Notes")
        .scope_description("mcp:tools", "Read and add your notes");
    if let Some(token) = &settings.admin_token {
        builder = builder.admin_token(token.clone());
    }
    if let Some(kek) = &settings.key_encryption {
        builder = builder.key_encryption(kek.clone());
    }
    if let Some(shared) = settings.shared_limits {
        builder = builder.shared_limits(shared);
    }
    if let Some(metrics) = &settings.metrics {
        builder = builder.metrics(metrics.clone());
    }
    for idp in &settings.enterprise_idps {
        builder = builder.enterprise_idp(idp.clone());
    }
    for provider in &settings.upstreams {
        builder = builder.upstream(provider.clone());
    }
    if let Some(vault) = &settings.vault {
        builder = builder.vault(vault.clone());
    }
    let auth = builder.build().await?;
    let server = auth.server().cloned().ok_or_else(|| Error::Config("the notes need the embedded server".into()))?;
    let (notes, users) = (Notebook::default(), server.operator().stores().users.clone());
    let mcp = auth.mcp_service(move || Ok(NotesServer::new(Some(users.clone()), notes.clone())));
    let router = auth.routes().nest_service(MCP_PATH, mcp);
    Ok(App { router, server })
}

/// The app for tokens of `external`: no authorization server, no store; the guard checks the
/// issuer's tokens with the keys its metadata names (found at startup), and the metadata
/// points clients at it. People are who the issuer says (`whoami` shows the token's subject).
pub async fn build_external(settings: &Settings, external: &External) -> Result<Router, Error> {
    let auth = McpAuth::builder(&settings.public_url)
        .mcp_path(MCP_PATH)
        .external_authorization_server(&external.issuer)
        .external_issuer_profile(external.profile.clone())
        .scopes(external.scope.clone(), external.scope.clone())
        .trusted_proxies(settings.trusted_proxies.clone())
        .machine_clients(settings.machine_clients)
        .resource_name("Notes")
        .build()
        .await?;
    let notes = Notebook::default();
    let mcp = auth.mcp_service(move || Ok(NotesServer::new(None, notes.clone())));
    Ok(auth.routes().nest_service(MCP_PATH, mcp))
}

/// Per-user notes, in memory.
#[derive(Debug, Clone, Default)]
struct Notebook(Arc<Mutex<HashMap<String, Vec<String>>>>);

/// The MCP server: its tools read the caller from the request.
#[derive(Debug, Clone)]
struct NotesServer {
    /// Where the caller's username is looked up; `None` behind an external authorization
    /// server, whose users are not here.
    users: Option<Arc<dyn UserStore>>,
    notes: Notebook,
    tool_router: ToolRouter<Self>,
}

/// Arguments of `add_note`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddNote {
    /// The note's text.
    text: String,
}

/// Longest note accepted.
const MAX_NOTE_LEN: usize = 4096;
/// Most notes per user.
const MAX_NOTES: usize = 1000;

fn caller(parts: &Parts) -> Result<&AuthContext, ErrorData> {
    // The guard puts the context in every request it lets through; its absence means the
    // endpoint was mounted without the guard.
    parts.extensions.get::<AuthContext>().ok_or_else(|| ErrorData::internal_error("request is not authenticated", None))
}

#[tool_router]
impl NotesServer {
    fn new(users: Option<Arc<dyn UserStore>>, notes: Notebook) -> Self {
        Self { users, notes, tool_router: Self::tool_router() }
    }

    #[tool(
        description = "Who the upstream identity provider you signed in with says you are: its userinfo, called with your upstream token (never your token here)."
    )]
    async fn upstream_profile(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        let ctx = caller(&parts)?;
        let Some(upstream) = ctx.upstream() else {
            return Err(ErrorData::invalid_request("you did not sign in through an identity provider", None));
        };
        match upstream.userinfo().await {
            Ok(info) => {
                let body = serde_json::json!({ "provider": info.provider, "userinfo": info.claims });
                Ok(CallToolResult::success(vec![ContentBlock::text(body.to_string())]))
            }
            Err(e @ UpstreamTokenError::Server(_)) => {
                tracing::error!(error = %e, "the upstream token could not be read");
                Err(ErrorData::internal_error(e.told().to_owned(), None))
            }
            Err(e) => {
                // The detail is for the operator; the person is told only what to do.
                tracing::info!(reason = e.reason().as_str(), detail = %e, "upstream_profile has no upstream answer");
                Err(ErrorData::invalid_request(e.told().to_owned(), None))
            }
        }
    }

    #[tool(description = "Who is calling: the signed-in user, the client and the granted scopes.")]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        let ctx = caller(&parts)?;
        let (kind, username) = match ctx.caller() {
            Caller::User(id) => match self.users.as_ref().map(|users| users.user(id)) {
                Some(lookup) => match lookup.await {
                    Ok(Some(u)) => ("user", u.username),
                    _ => ("user", id.to_string()),
                },
                None => ("user", id.to_string()),
            },
            Caller::Machine(client) => ("machine client", client.to_string()),
        };
        let body = serde_json::json!({
            "caller": kind,
            "username": username,
            "subject": ctx.subject.as_str(),
            "client_id": ctx.client_id.as_str(),
            "scopes": ctx.scopes.to_string(),
            "expires_at": ctx.expires_at.as_secs(),
        });
        Ok(CallToolResult::success(vec![ContentBlock::text(body.to_string())]))
    }

    #[tool(description = "Add a note to the signed-in user's notebook.")]
    async fn add_note(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(AddNote { text }): Parameters<AddNote>,
    ) -> Result<CallToolResult, ErrorData> {
        let ctx = caller(&parts)?;
        if text.is_empty() || text.len() > MAX_NOTE_LEN {
            return Err(ErrorData::invalid_params(format!("a note has 1 to {MAX_NOTE_LEN} bytes"), None));
        }
        let mut book = self.notes.0.lock().unwrap_or_else(|p| p.into_inner());
        let notes = book.entry(ctx.subject.to_string()).or_default();
        if notes.len() >= MAX_NOTES {
            return Err(ErrorData::invalid_params(format!("at most {MAX_NOTES} notes per user"), None));
        }
        notes.push(text);
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("saved note {}", notes.len()))]))
    }

    #[tool(description = "List the signed-in user's notes.")]
    async fn list_notes(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        let ctx = caller(&parts)?;
        let book = self.notes.0.lock().unwrap_or_else(|p| p.into_inner());
        let notes = book.get(ctx.subject.as_str()).cloned().unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(serde_json::json!({ "notes": notes }).to_string())]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> McpServerConfig {
        McpServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("notes-server", env!("CARGO_PKG_VERSION")))
            .with_instructions("Per-user notes. `whoami` says who you are signed in as.")
    }
}
