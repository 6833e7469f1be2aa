//! The guard in front of a real rmcp `StreamableHttpService`, over a loopback socket, driven
//! the way an attacker with a valid token would: another caller's session, headers that name
//! one tool while the body calls another, base64-wrapped names, and a flood of `initialize`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::request::Parts;
use mcp_guard::{LocalVerifier, McpGuardLayer, SessionLimits};
use oauth_core::{AccessTokenClaims, mint};
use oauth_core::{AuthorizationServer, Clock, ServerConfig, SystemClock};
use oauth_core::{Issuer, ResourceUri, ScopeSet};
use oauth_store_memory::MemoryStore;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig as McpServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
/// Every revision the guard serves: with sessions before 2026-07-28, stateless from it on.
const REVISIONS: [&str; 4] = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];

/// An MCP server whose tools record that they ran and report what reached them.
#[derive(Debug, Clone)]
struct Probe {
    ran: Arc<Mutex<Vec<String>>>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Probe {
    #[tool(description = "Harmless: the request headers that reached the handler.")]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        self.ran.lock().unwrap().push("whoami".into());
        let names: Vec<&str> = parts.headers.keys().map(|k| k.as_str()).collect();
        let auth = parts.headers.get("authorization").map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = json!({ "headers": names, "authorization": auth });
        Ok(CallToolResult::success(vec![ContentBlock::text(body.to_string())]))
    }

    #[tool(description = "Needs the admin scope.")]
    async fn delete_all(&self) -> Result<CallToolResult, ErrorData> {
        self.ran.lock().unwrap().push("delete_all".into());
        Ok(CallToolResult::success(vec![ContentBlock::text("deleted")]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Probe {
    fn get_info(&self) -> McpServerConfig {
        McpServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

struct Fixture {
    /// `http://127.0.0.1:<port>`: `/mcp` with sessions, `/stateless` without.
    base: String,
    server: Arc<AuthorizationServer>,
    ran: Arc<Mutex<Vec<String>>>,
    sessions: Arc<LocalSessionManager>,
    http: reqwest::Client,
}

async fn start(configure: impl Fn(McpGuardLayer) -> McpGuardLayer) -> Fixture {
    let config = ServerConfig::new(Issuer::parse(ISSUER).unwrap(), ResourceUri::parse(RESOURCE).unwrap());
    let server = Arc::new(AuthorizationServer::new(config, MemoryStore::new().into_stores()).await.unwrap());
    let guard = configure(
        McpGuardLayer::new(Arc::new(LocalVerifier::new(server.clone())), &ResourceUri::parse(RESOURCE).unwrap())
            .with_required_scopes(ScopeSet::parse("mcp:tools").unwrap())
            .with_tool_scopes("delete_all", ScopeSet::parse("admin").unwrap()),
    );
    let ran = Arc::new(Mutex::new(Vec::new()));
    let sessions = Arc::new(LocalSessionManager::default());
    let probe = {
        let ran = ran.clone();
        move || Ok(Probe { ran: ran.clone(), tool_router: Probe::tool_router() })
    };
    let with_sessions =
        StreamableHttpService::new(probe.clone(), sessions.clone(), StreamableHttpServerConfig::default());
    let stateless = StreamableHttpService::new(
        probe,
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_legacy_session_mode(false).with_json_response(true),
    );
    let app = Router::new()
        .nest_service("/mcp", tower::ServiceBuilder::new().layer(guard.clone()).service(with_sessions))
        .nest_service("/stateless", tower::ServiceBuilder::new().layer(guard).service(stateless));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { base, server, ran, sessions, http: reqwest::Client::new() }
}

impl Fixture {
    fn token(&self, subject: &str, client: &str, scope: &str) -> String {
        let claims = AccessTokenClaims::new(
            ISSUER,
            subject,
            RESOURCE,
            client,
            scope,
            SystemClock.now(),
            Duration::from_secs(600),
        );
        mint(&claims, &self.server.keys()).unwrap()
    }

    fn ran(&self, tool: &str) -> usize {
        self.ran.lock().unwrap().iter().filter(|t| *t == tool).count()
    }

    /// A POST of `body` to `path` with the token and extra headers: status, headers, body.
    async fn post(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    /// `initialize` and `notifications/initialized` on `/mcp`: the session id.
    async fn open_session(&self, token: &str) -> String {
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
        let (status, headers, body) = self.post("/mcp", token, &[], &init).await;
        assert_eq!(status, 200, "{body}");
        let id = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let done = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let (status, _, body) = self.post("/mcp", token, &session_headers(&id), &done).await;
        assert_eq!(status, 202, "{body}");
        id
    }
}

fn session_headers(id: &str) -> [(&str, &str); 2] {
    [("mcp-session-id", id), ("mcp-protocol-version", "2025-06-18")]
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

/// A `tools/call` as a client of `revision` sends it: from 2026-07-28 on, every request names
/// its revision and capabilities in `_meta`.
fn call_at(revision: &str, tool: &str) -> Value {
    let mut c = call(tool);
    if revision >= "2026-07-28" {
        c["params"]["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": revision,
            "io.modelcontextprotocol/clientCapabilities": {},
        });
    }
    c
}

/// The JSON-RPC result in a JSON or SSE response body.
fn result_of(body: &str) -> Value {
    let json = body.lines().find_map(|l| l.strip_prefix("data: ").filter(|d| d.starts_with('{'))).unwrap_or(body);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn tool_text(body: &str) -> Value {
    let r = result_of(body);
    serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{body}"))).unwrap()
}

#[tokio::test]
async fn another_callers_token_cannot_drive_a_session() {
    let f = start(|g| g).await;
    let alice = f.token("alice", "client-1", "mcp:tools");
    let session = f.open_session(&alice).await;
    let (status, _, body) = f.post("/mcp", &alice, &session_headers(&session), &call("whoami")).await;
    assert_eq!(status, 200, "{body}");

    // Another subject, or the same subject through another client.
    for token in [f.token("bob", "client-1", "mcp:tools"), f.token("alice", "client-2", "mcp:tools")] {
        let before = f.ran("whoami");
        let (status, _, body) = f.post("/mcp", &token, &session_headers(&session), &call("whoami")).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(f.ran("whoami"), before);
    }
    // An id nobody was given is unknown too.
    let (status, _, _) = f.post("/mcp", &alice, &session_headers("not-a-session"), &call("whoami")).await;
    assert_eq!(status, 404);
    // The owner goes on as before.
    let (status, _, body) = f.post("/mcp", &alice, &session_headers(&session), &call("whoami")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sessions_are_bounded_per_caller_and_the_least_recently_used_is_closed() {
    let f = start(|g| g.with_session_limits(SessionLimits::default().with_per_caller(2))).await;
    let alice = f.token("alice", "client-1", "mcp:tools");
    let bob = f.token("bob", "client-1", "mcp:tools");
    let bobs = f.open_session(&bob).await;
    let first = f.open_session(&alice).await;
    let second = f.open_session(&alice).await;
    // Using the first makes the second the least recently used.
    let (status, _, _) = f.post("/mcp", &alice, &session_headers(&first), &call("whoami")).await;
    assert_eq!(status, 200);
    for _ in 0..10 {
        f.open_session(&alice).await;
    }
    let (status, _, _) = f.post("/mcp", &alice, &session_headers(&second), &call("whoami")).await;
    assert_eq!(status, 404, "the least recently used session was evicted");
    let (status, _, _) = f.post("/mcp", &bob, &session_headers(&bobs), &call("whoami")).await;
    assert_eq!(status, 200, "another caller's session is untouched");

    // The guard closed the evicted sessions in rmcp: alice's 2 newest and bob's 1 remain.
    let mut open = usize::MAX;
    for _ in 0..100 {
        open = f.sessions.sessions.read().await.len();
        if open == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 3, "rmcp still holds the evicted sessions");
}

#[tokio::test]
async fn headers_cannot_name_another_tool_than_the_body_calls_in_any_revision() {
    let f = start(|g| g).await;
    let user = f.token("alice", "client-1", "mcp:tools");
    let b64 = "=?base64?ZGVsZXRlX2FsbA==?="; // "delete_all"
    let attacks: [(&[(&str, &str)], u16); 4] = [
        // Header names the harmless tool, the body calls the guarded one.
        (&[("mcp-method", "tools/call"), ("mcp-name", "whoami")], 400),
        // Header names a method with no per-tool scope.
        (&[("mcp-method", "tools/list")], 400),
        (&[("mcp-method", "tools/list"), ("mcp-name", "whoami")], 400),
        // The name wrapped as rmcp decodes it: the guard must look up what rmcp calls.
        (&[("mcp-method", "tools/call"), ("mcp-name", b64)], 403),
    ];
    for revision in REVISIONS {
        for (headers, expected) in attacks {
            let mut h = headers.to_vec();
            h.push(("mcp-protocol-version", revision));
            let (status, _, body) = f.post("/stateless", &user, &h, &call_at(revision, "delete_all")).await;
            assert_eq!(f.ran("delete_all"), 0, "{revision} {headers:?}: the guarded tool ran: {body}");
            assert_eq!(status, expected, "{revision} {headers:?}: {body}");
        }
        // With the scope and honest headers, the same call goes through.
        let admin = f.token("alice", "client-1", "mcp:tools admin");
        let honest = [("mcp-method", "tools/call"), ("mcp-name", b64), ("mcp-protocol-version", revision)];
        let (status, _, body) = f.post("/stateless", &admin, &honest, &call_at(revision, "delete_all")).await;
        assert_eq!((status, f.ran("delete_all")), (200, 1), "{revision}: {body}");
        f.ran.lock().unwrap().clear();
    }
}

#[tokio::test]
async fn the_guarded_tool_cannot_hide_in_a_session_or_a_batch() {
    let f = start(|g| g).await;
    let user = f.token("alice", "client-1", "mcp:tools");
    let session = f.open_session(&user).await;
    let mut h = session_headers(&session).to_vec();
    h.extend([("mcp-method", "tools/call"), ("mcp-name", "whoami")]);
    let (status, _, body) = f.post("/mcp", &user, &h, &call("delete_all")).await;
    assert_eq!((status, f.ran("delete_all")), (400, 0), "{body}");
    let (status, _, body) = f.post("/mcp", &user, &session_headers(&session), &call("delete_all")).await;
    assert_eq!((status, f.ran("delete_all")), (403, 0), "{body}");
    let batch = json!([call("whoami"), call("delete_all")]);
    let (status, _, body) = f.post("/stateless", &user, &[], &batch).await;
    assert_eq!((status, f.ran("delete_all")), (403, 0), "{body}");
}

#[tokio::test]
async fn tool_handlers_never_see_the_authorization_header() {
    let f = start(|g| g).await;
    let user = f.token("alice", "client-1", "mcp:tools");
    let (status, _, body) = f.post("/stateless", &user, &[], &call("whoami")).await;
    assert_eq!(status, 200, "{body}");
    let seen = tool_text(&body);
    assert_eq!(seen["authorization"], Value::Null, "{seen}");
    assert!(seen["headers"].as_array().unwrap().iter().any(|h| h == "content-type"), "{seen}");
    let session = f.open_session(&user).await;
    let (_, _, body) = f.post("/mcp", &user, &session_headers(&session), &call("whoami")).await;
    assert_eq!(tool_text(&body)["authorization"], Value::Null, "{body}");

    // Only by the operator's explicit, dangerous choice.
    let f = start(|g| g.dangerous_forward_authorization(true)).await;
    let user = f.token("alice", "client-1", "mcp:tools");
    let (_, _, body) = f.post("/stateless", &user, &[], &call("whoami")).await;
    assert_eq!(tool_text(&body)["authorization"], format!("Bearer {user}"), "{body}");
}
