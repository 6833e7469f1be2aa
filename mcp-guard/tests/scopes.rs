//! Scope hierarchies and step-up challenges: what a token must hold for each operation, and
//! what the 403 asks the client to request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::any;
use http_body_util::BodyExt as _;
use mcp_guard::{LocalVerifier, McpGuardLayer};
use oauth_core::{AccessTokenClaims, AuthorizationServer, Clock, Issuer, ManualClock, ResourceUri, ScopeSet};
use oauth_core::{ServerConfig, UnixTime, mint};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

fn set(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

struct Fixture {
    app: Router,
    server: Arc<AuthorizationServer>,
    clock: Arc<ManualClock>,
}

/// `mcp:tools` on every request; `add_note` needs `notes:write`, `delete_all` needs
/// `notes:admin`, and `notes:admin` implies `notes:write`, which implies `notes:read`.
async fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let config = ServerConfig::new(Issuer::parse(ISSUER).unwrap(), ResourceUri::parse(RESOURCE).unwrap());
    let server = Arc::new(
        AuthorizationServer::with_clock(config, MemoryStore::new().into_stores(), clock.clone()).await.unwrap(),
    );
    let guard =
        McpGuardLayer::new(Arc::new(LocalVerifier::new(server.clone())), &ResourceUri::parse(RESOURCE).unwrap())
            .with_required_scopes(set("mcp:tools"))
            .with_tool_scopes("add_note", set("notes:write"))
            .with_tool_scopes("read_notes", set("notes:read"))
            .with_tool_scopes("delete_all", set("notes:admin"))
            .with_implied_scopes("notes:admin", set("notes:write"))
            .with_implied_scopes("notes:write", set("notes:read"));
    let app = Router::new().route("/mcp", any(|| async { "ran" })).layer(guard);
    Fixture { app, server, clock }
}

fn call_tool(names: &[&str]) -> String {
    let calls: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"{n}"}}}}"#))
        .collect();
    if calls.len() == 1 { calls[0].clone() } else { format!("[{}]", calls.join(",")) }
}

/// The status, and the `scope` of the challenge when there is one.
async fn send(f: &Fixture, scope: &str, body: String) -> (StatusCode, Option<String>) {
    let claims =
        AccessTokenClaims::new(ISSUER, "user-1", RESOURCE, "client-1", scope, f.clock.now(), Duration::from_secs(600));
    let token = mint(&claims, &f.server.keys()).unwrap();
    let req = Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let challenge = resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
    let _ = resp.into_body().collect().await.unwrap();
    let scope = challenge.and_then(|c| {
        assert!(c.contains("error=\"insufficient_scope\""), "{c}");
        let rest = c.split("scope=\"").nth(1)?;
        Some(rest.split('"').next()?.to_owned())
    });
    (status, scope)
}

#[tokio::test]
async fn a_scope_satisfies_what_it_implies_and_nothing_above_it() {
    let f = fixture().await;
    for (held, tool) in [
        ("mcp:tools notes:admin", "add_note"),
        ("mcp:tools notes:admin", "read_notes"),
        ("mcp:tools notes:write", "read_notes"),
        ("mcp:tools notes:admin", "delete_all"),
    ] {
        assert_eq!(send(&f, held, call_tool(&[tool])).await, (StatusCode::OK, None), "{held} calling {tool}");
    }
    // Implication never flows upwards, and never stands in for the required scope.
    for (held, tool, asked) in [
        ("mcp:tools notes:write", "delete_all", "mcp:tools notes:admin"),
        ("mcp:tools notes:read", "add_note", "mcp:tools notes:write"),
        ("notes:admin", "add_note", "mcp:tools notes:write"),
    ] {
        let (status, scope) = send(&f, held, call_tool(&[tool])).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{held} calling {tool}");
        assert_eq!(scope.as_deref(), Some(asked), "{held} calling {tool}");
    }
}

/// The step-up challenge lists every scope the operation needs: the required ones too, and
/// every call of a batch, not only the missing ones and not the token's (RFC 6750 3.1).
#[tokio::test]
async fn the_step_up_challenge_lists_every_scope_the_operation_needs() {
    let f = fixture().await;
    let (status, scope) = send(&f, "mcp:tools", call_tool(&["add_note", "delete_all"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(scope.as_deref(), Some("mcp:tools notes:admin notes:write"));
    // Holding some of it does not shrink the list, and the token's other scopes are not in it.
    let (status, scope) = send(&f, "mcp:tools notes:write other:scope", call_tool(&["add_note", "delete_all"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(scope.as_deref(), Some("mcp:tools notes:admin notes:write"));
}
