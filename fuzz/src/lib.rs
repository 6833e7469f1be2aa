//! What the fuzz targets share: the checks every client-facing error must pass, and one
//! authorization server with the clients real MCP deployments see, on a fixed clock.
//!
//! A target asserts invariants, not only the absence of panics: a failed assertion here is a
//! crash to libFuzzer, so the input that breaks a rule is kept like any other crash.

use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oauth_core::NewClient;
use oauth_core::RedirectPolicy;
use oauth_core::{AuthorizationServer, ErrorCode, ManualClock, OAuthError, ServerConfig, UnixTime};
use oauth_core::{Client, GrantType};
use oauth_core::{ClientId, Issuer, RedirectUri, ResourceUri, ScopeSet};
use oauth_core::{DocumentFetchError, FetchedDocument, MetadataDocumentFetcher};
use oauth_core::{EventQuery, FlowEvent};
use oauth_core::{EventStore, StoreResult};
use oauth_store_memory::MemoryStore;

/// The issuer of the fixture server.
pub const ISSUER: &str = "https://mcp.example.com";
/// The MCP resource it protects.
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// The fixed time the fixture's clock shows.
pub const NOW: i64 = 1_790_000_000;
/// The PKCE verifier of RFC 7636 Appendix B, and its challenge.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `BASE64URL(SHA256(VERIFIER))`.
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Longest error description a client is ever sent. Descriptions clip what they echo.
pub const MAX_DESCRIPTION: usize = 4096;

/// The Client ID Metadata Document the fixture's fetcher serves, ChatGPT-style.
pub const DOCUMENT_URL: &str = "https://chatgpt.com/oauth/client-metadata.json";
/// The document at [`DOCUMENT_URL`].
pub const DOCUMENT: &str = r#"{"client_id":"https://chatgpt.com/oauth/client-metadata.json","client_name":"ChatGPT","client_uri":"https://chatgpt.com","redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}"#;

/// Checks what every client-facing error must be: one of `allowed`, with a description that
/// is non-empty, bounded, and free of raw control characters (it goes into JSON, an HTML page,
/// a redirect's query and the operator's log).
#[track_caller]
pub fn check_error(e: &OAuthError, allowed: &[ErrorCode], input: &dyn Debug) {
    assert!(allowed.contains(&e.code()), "error code {:?} is not one of {allowed:?} for {input:?}: {e}", e.code());
    check_text(e.description(), "error description", input);
    assert!(e.description().len() <= MAX_DESCRIPTION, "{} byte description for {input:?}", e.description().len());
}

/// `text` is non-empty and has no control characters.
#[track_caller]
pub fn check_text(text: &str, what: &str, input: &dyn Debug) {
    assert!(!text.is_empty(), "empty {what} for {input:?}");
    assert!(!has_control(text), "{what} {text:?} has a raw control character, for {input:?}");
}

/// Whether `s` has a control character (C0, DEL or C1).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `data` split at the first `n - 1` newlines into `n` parts (missing parts are empty).
pub fn split_lines(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n, |&b| b == b'\n').collect();
    parts.resize(n, &[]);
    parts
}

/// The fixture server and the secrets of its confidential clients.
pub struct Fixture {
    /// A single-threaded runtime to drive the server's async methods.
    pub rt: tokio::runtime::Runtime,
    /// The server.
    pub server: AuthorizationServer,
    /// The secret of the confidential client `chatgpt`.
    pub chatgpt_secret: String,
    /// The secret of the machine client `ci-bot`.
    pub machine_secret: String,
    uses: u32,
}

/// Uses of one fixture before it is built again, so that what successful requests store
/// (grants, spent codes) cannot grow without bound over a long run.
const REBUILD_EVERY: u32 = 20_000;

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

impl Fixture {
    /// Runs `f` with the fixture, built on first use and rebuilt every [`REBUILD_EVERY`] uses.
    pub fn with<R>(f: impl FnOnce(&Fixture) -> R) -> R {
        FIXTURE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|fx| fx.uses >= REBUILD_EVERY) {
                *slot = Some(Fixture::build());
            }
            // Just set above when it was empty.
            let fx = slot.as_mut().expect("fixture is built");
            fx.uses += 1;
            f(fx)
        })
    }

    /// The clients registered on the fixture, by id.
    pub fn client(&self, id: &str) -> Option<Client> {
        let id = ClientId::parse(id).ok()?;
        self.rt.block_on(self.server.operator().stores().clients.client(&id)).ok().flatten()
    }

    fn build() -> Fixture {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
        let events = Arc::new(EventSink::default());
        let mut stores = MemoryStore::new().into_stores();
        stores.events = events.clone();
        let config = ServerConfig::new(
            Issuer::parse(ISSUER).expect("issuer literal"),
            ResourceUri::parse(RESOURCE).expect("resource literal"),
        )
        .with_scopes(
            ScopeSet::parse("mcp:tools mcp:read").expect("scope literal"),
            ScopeSet::parse("mcp:tools").expect("scope literal"),
        )
        .with_redirect_policy(RedirectPolicy::default().with_private_use_schemes(["cursor"]))
        .with_client_credentials(true);
        let clock = Arc::new(ManualClock::new(UnixTime::from_secs(NOW)));
        let server = rt
            .block_on(AuthorizationServer::with_clock(config, stores, clock))
            .expect("fixture server")
            .with_metadata_documents(Arc::new(Documents));

        let uri = |s: &str| RedirectUri::parse(s).expect("redirect literal");
        let id = |s: &str| ClientId::parse(s).expect("client id literal");
        let mut chatgpt_secret = String::new();
        let mut machine_secret = String::new();
        let clients = [
            // Claude Code: a public native client on a loopback port it picks at run time.
            NewClient::new("Claude Code", vec![uri("http://localhost/callback")]).with_client_id(id("claude-code")),
            NewClient::new("Claude", vec![uri("https://claude.ai/api/mcp/auth_callback")]).with_client_id(id("claude")),
            NewClient::new("ChatGPT", vec![uri("https://chatgpt.com/connector_platform_oauth_redirect")])
                .with_client_id(id("chatgpt"))
                .confidential(),
            NewClient::new(
                "Visual Studio Code",
                vec![
                    uri("https://insiders.vscode.dev/redirect"),
                    uri("https://vscode.dev/redirect"),
                    uri("http://127.0.0.1/"),
                    uri("http://127.0.0.1:33418/"),
                ],
            )
            .with_client_id(id("vscode")),
            NewClient::new("Cursor", vec![uri("cursor://anysphere.cursor-mcp/oauth/callback")])
                .with_client_id(id("cursor")),
            NewClient::machine("CI bot").with_client_id(id("ci-bot")),
            NewClient::new("Old app", vec![uri("https://old.example/cb")])
                .with_client_id(id("old-app"))
                .with_grant_types(vec![GrantType::AuthorizationCode]),
        ];
        for spec in clients {
            let name = spec.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            let created = rt.block_on(server.create_client(spec)).expect("fixture client");
            let secret = created.secret.map(|s| s.secret().to_owned()).unwrap_or_default();
            match name.as_str() {
                "chatgpt" => chatgpt_secret = secret,
                "ci-bot" => machine_secret = secret,
                "old-app" => {
                    let mut c = created.client;
                    c.active = false;
                    rt.block_on(server.operator().stores().clients.update_client(&c)).expect("deactivate");
                }
                _ => {}
            }
        }
        events.forbid(&chatgpt_secret);
        events.forbid(&machine_secret);
        Fixture { rt, server, chatgpt_secret, machine_secret, uses: 0 }
    }
}

/// Flow events are checked and dropped: no secret may reach the operator's log, and a long
/// run must not keep every event.
#[derive(Debug, Default)]
struct EventSink {
    forbidden: Mutex<Vec<String>>,
}

impl EventSink {
    fn forbid(&self, secret: &str) {
        if !secret.is_empty() {
            self.forbidden.lock().unwrap_or_else(|p| p.into_inner()).push(secret.to_owned());
        }
    }
}

#[async_trait]
impl EventStore for EventSink {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        assert!(!has_control(&event.detail), "flow event detail with a raw control character: {:?}", event.detail);
        for secret in self.forbidden.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            assert!(!event.detail.contains(secret.as_str()), "a client secret reached a flow event: {event:?}");
        }
        Ok(())
    }

    async fn events(&self, _: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        Ok(Vec::new())
    }

    async fn sweep_events(&self, _: UnixTime) -> StoreResult<u64> {
        Ok(0)
    }
}

/// A metadata-document fetcher that serves [`DOCUMENT`] at [`DOCUMENT_URL`] and nothing else.
#[derive(Debug)]
struct Documents;

#[async_trait]
impl MetadataDocumentFetcher for Documents {
    async fn fetch(&self, url: &str) -> Result<FetchedDocument, DocumentFetchError> {
        if url == DOCUMENT_URL {
            Ok(FetchedDocument::new(DOCUMENT.as_bytes().to_vec(), Some(Duration::from_secs(3600))))
        } else {
            Err(DocumentFetchError::Status { status: 404, location: None })
        }
    }
}
