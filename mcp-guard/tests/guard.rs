//! The guard in front of a stand-in MCP handler, driven with `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::any;
use http_body_util::BodyExt as _;
use mcp_guard::{AuthContext, LocalVerifier, McpGuardLayer};
use oauth_core::{AccessTokenClaims, mint};
use oauth_core::{AuthorizationServer, Clock, ManualClock, ServerConfig, UnixTime};
use oauth_core::{GrantId, Issuer, ResourceUri, ScopeSet};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

struct Fixture {
    app: Router,
    server: Arc<AuthorizationServer>,
    clock: Arc<ManualClock>,
}

async fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let config = ServerConfig::new(Issuer::parse(ISSUER).unwrap(), ResourceUri::parse(RESOURCE).unwrap());
    let server = Arc::new(
        AuthorizationServer::with_clock(config, MemoryStore::new().into_stores(), clock.clone()).await.unwrap(),
    );
    let guard =
        McpGuardLayer::new(Arc::new(LocalVerifier::new(server.clone())), &ResourceUri::parse(RESOURCE).unwrap())
            .with_required_scopes(ScopeSet::parse("mcp:tools").unwrap())
            .with_tool_scopes("add_note", ScopeSet::parse("notes:write").unwrap());
    // The stand-in MCP handler echoes who called.
    let mcp = any(|req: Request<Body>| async move {
        match req.extensions().get::<AuthContext>() {
            Some(ctx) => format!("hello {} via {}", ctx.subject, ctx.client_id),
            None => "anonymous".to_owned(),
        }
    });
    let app = Router::new().route("/mcp", mcp).layer(guard);
    Fixture { app, server, clock }
}

fn token(f: &Fixture, aud: &str, scope: &str) -> String {
    let claims =
        AccessTokenClaims::new(ISSUER, "user-1", aud, "client-1", scope, f.clock.now(), Duration::from_secs(600));
    mint(&claims, &f.server.keys()).unwrap()
}

async fn call(f: &Fixture, req: Request<Body>) -> (Response<Body>, String) {
    let resp = f.app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, Body::empty()), String::from_utf8_lossy(&bytes).into_owned())
}

fn rpc(body: &str, bearer: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/mcp").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn challenge(r: &Response<Body>) -> String {
    r.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

#[tokio::test]
async fn no_token_gets_the_discovery_challenge() {
    let f = fixture().await;
    for req in [rpc(INITIALIZE, None), Request::get("/mcp").body(Body::empty()).unwrap(), rpc(INITIALIZE, Some("")), {
        let mut r = rpc(INITIALIZE, None);
        r.headers_mut().insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
        r
    }] {
        let (r, _) = call(&f, req).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = challenge(&r);
        assert_eq!(
            c,
            format!("Bearer resource_metadata=\"{PRM}\", scope=\"mcp:tools\""),
            "no error code without a token (RFC 6750 3.1)"
        );
    }
}

#[tokio::test]
async fn options_passes_before_the_check() {
    let f = fixture().await;
    let (r, body) = call(&f, Request::options("/mcp").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, "anonymous");
}

#[tokio::test]
async fn bad_tokens_get_invalid_token_with_the_reason() {
    let f = fixture().await;
    let cases = [
        ("garbage".to_owned(), "not a well-formed JWT"),
        (token(&f, "https://mcp.example.com/mcp/", "mcp:tools"), "this resource is https://mcp.example.com/mcp"),
        (token(&f, "https://other.example/mcp", "mcp:tools"), "is for https://other.example/mcp"),
    ];
    for (t, why) in cases {
        let (r, body) = call(&f, rpc(INITIALIZE, Some(&t))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = challenge(&r);
        assert!(c.starts_with("Bearer error=\"invalid_token\""), "{c}");
        assert!(c.contains(&format!("resource_metadata=\"{PRM}\"")), "{c}");
        assert!(body.contains(why), "{body}");
    }
    let valid = token(&f, RESOURCE, "mcp:tools");
    f.clock.advance(Duration::from_secs(600 + 61));
    let (r, body) = call(&f, rpc(INITIALIZE, Some(&valid))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");
}

#[tokio::test]
async fn a_flood_of_forged_tokens_is_logged_but_stored_once_per_interval() {
    use oauth_core::{EventQuery, FlowStep};
    let f = fixture().await;
    let refusals = || async {
        let events = f.server.operator().stores().events.events(&EventQuery::all()).await.unwrap();
        events.iter().filter(|e| e.step == FlowStep::ResourceAccess && !e.succeeded()).count()
    };
    for _ in 0..50 {
        let (r, _) = call(&f, rpc(INITIALIZE, Some("garbage"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "every forged token is still refused");
    }
    assert_eq!(refusals().await, 1, "50 identical refusals within the interval are stored once");
    // Another reason is stored on its own, and the same one again after the interval.
    call(&f, rpc(INITIALIZE, Some(&token(&f, "https://other.example/mcp", "mcp:tools")))).await;
    assert_eq!(refusals().await, 2);
    f.clock.advance(Duration::from_secs(11));
    call(&f, rpc(INITIALIZE, Some("garbage"))).await;
    assert_eq!(refusals().await, 3);

    // Tokens that each claim another client id: at most 100 stored per interval in all.
    f.clock.advance(Duration::from_secs(11));
    for i in 0..150 {
        use base64::Engine as _;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"client_id":"forged-{i}"}}"#));
        call(&f, rpc(INITIALIZE, Some(&format!("eyJhbGciOiJFUzI1NiJ9.{payload}.sig")))).await;
    }
    assert_eq!(refusals().await, 3 + 100);
}

#[tokio::test]
async fn valid_tokens_reach_the_handler_with_the_caller() {
    let f = fixture().await;
    let (r, body) = call(&f, rpc(INITIALIZE, Some(&token(&f, RESOURCE, "mcp:tools")))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, "hello user-1 via client-1");
}

#[tokio::test]
async fn missing_scopes_get_403_with_every_scope_needed() {
    let f = fixture().await;
    let (r, _) = call(&f, rpc(INITIALIZE, Some(&token(&f, RESOURCE, "other")))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&r).contains("error=\"insufficient_scope\", scope=\"mcp:tools\""), "{}", challenge(&r));

    let basic = token(&f, RESOURCE, "mcp:tools");
    let add = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note","arguments":{"text":"x"}}}"#;
    // From the JSON-RPC body (older revisions)…
    let (r, body) = call(&f, rpc(add, Some(&basic))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body}");
    assert!(challenge(&r).contains("scope=\"mcp:tools notes:write\""), "{}", challenge(&r));
    // …with Mcp-Method/Mcp-Name (2026-07-28) that agree with it…
    let mut req = rpc(add, Some(&basic));
    req.headers_mut().insert("mcp-method", "tools/call".parse().unwrap());
    req.headers_mut().insert("mcp-name", "add_note".parse().unwrap());
    assert_eq!(call(&f, req).await.0.status(), StatusCode::FORBIDDEN);
    // …never from the headers alone: they must describe the body.
    let mut req = rpc("{}", Some(&basic));
    req.headers_mut().insert("mcp-method", "tools/call".parse().unwrap());
    req.headers_mut().insert("mcp-name", "add_note".parse().unwrap());
    let (r, body) = call(&f, req).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid_request") && body.contains("Mcp-Method"), "{body}");
    // Other tools need only the base scope; the body reaches the handler intact.
    let whoami = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami"}}"#;
    assert_eq!(call(&f, rpc(whoami, Some(&basic))).await.0.status(), StatusCode::OK);
    let (r, _) = call(&f, rpc(add, Some(&token(&f, RESOURCE, "mcp:tools notes:write")))).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A machine client's token (`client_credentials`) is refused unless the resource accepts
/// machines; a token that claims to be a machine for another client, or a person's token in
/// the machine namespace, is malformed whatever the resource says.
#[tokio::test]
async fn machine_tokens_pass_only_where_the_resource_accepts_them() {
    let f = fixture().await;
    let machine = |sub: &str, client: &str| {
        let mut claims =
            AccessTokenClaims::new(ISSUER, sub, RESOURCE, client, "mcp:tools", f.clock.now(), Duration::from_secs(600));
        claims.machine = true;
        mint(&claims, &f.server.keys()).unwrap()
    };
    let honest = machine("client:job-1", "job-1");
    let (r, body) = call(&f, rpc(INITIALIZE, Some(&honest))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{body}");
    assert!(challenge(&r).contains("invalid_token") && body.contains("machine clients"), "{body}");
    let events = f.server.operator().stores().events.events(&oauth_core::EventQuery::all()).await.unwrap();
    assert!(events.iter().any(|e| e.reason == Some(oauth_core::Reason::MachineTokenRefused)));

    let accepting =
        McpGuardLayer::new(Arc::new(LocalVerifier::new(f.server.clone())), &ResourceUri::parse(RESOURCE).unwrap())
            .with_machine_clients(true);
    let app = Router::new()
        .route(
            "/mcp",
            any(|req: Request<Body>| async move {
                match req.extensions().get::<AuthContext>().map(AuthContext::caller) {
                    Some(mcp_guard::Caller::Machine(c)) => format!("machine {c}"),
                    Some(mcp_guard::Caller::User(u)) => format!("user {u}"),
                    None => "anonymous".to_owned(),
                }
            }),
        )
        .layer(accepting);
    let send = |token: String| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(rpc(INITIALIZE, Some(&token))).await.unwrap();
            let status = resp.status();
            (status, String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned())
        }
    };
    assert_eq!(send(honest).await, (StatusCode::OK, "machine job-1".to_owned()));
    // A machine token naming another client, and a person's token in the machine namespace.
    assert_eq!(send(machine("client:job-2", "job-1")).await.0, StatusCode::UNAUTHORIZED);
    let posing = mint(
        &AccessTokenClaims::new(
            ISSUER,
            "client:job-1",
            RESOURCE,
            "job-1",
            "mcp:tools",
            f.clock.now(),
            Duration::from_secs(600),
        ),
        &f.server.keys(),
    )
    .unwrap();
    assert_eq!(send(posing).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(token(&f, RESOURCE, "mcp:tools")).await, (StatusCode::OK, "user user-1".to_owned()));
}

#[tokio::test]
async fn a_valid_token_repeating_a_refused_call_is_not_a_flood_of_writes() {
    // A client with a real token may still hammer a tool it has no scope for: each call is
    // refused, but the refusal is stored once per interval, as forged tokens are.
    use oauth_core::{EventQuery, FlowStep, Reason};
    let f = fixture().await;
    let stored = || async {
        let events = f.server.operator().stores().events.events(&EventQuery::all()).await.unwrap();
        events
            .iter()
            .filter(|e| e.step == FlowStep::ResourceAccess && e.reason == Some(Reason::InsufficientScope))
            .count()
    };
    let narrow = token(&f, RESOURCE, "mcp:tools");
    let add = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note","arguments":{"text":"x"}}}"#;
    for _ in 0..30 {
        let (r, _) = call(&f, rpc(add, Some(&narrow))).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(stored().await, 1, "30 identical refusals within the interval are stored once");
    f.clock.advance(Duration::from_secs(11));
    call(&f, rpc(add, Some(&narrow))).await;
    assert_eq!(stored().await, 2, "and again after the interval");
}

/// The guard is tower and http alone: in front of a `service_fn` whose bodies are
/// `Full<Bytes>`, it challenges, refuses by tool, and hands the body it read on intact.
#[tokio::test]
async fn the_guard_serves_any_body_built_from_bytes() {
    use http_body_util::Full;
    use tower::Layer as _;
    let f = fixture().await;
    let layer =
        McpGuardLayer::new(Arc::new(LocalVerifier::new(f.server.clone())), &ResourceUri::parse(RESOURCE).unwrap())
            .with_tool_scopes("add_note", ScopeSet::parse("notes:write").unwrap());
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let who = req.extensions().get::<AuthContext>().map(|c| c.subject.to_string()).unwrap_or_default();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(format!(
            "{who}: {}",
            String::from_utf8_lossy(&body)
        )))))
    });
    let guarded = layer.layer(inner);
    let send = |body: &'static str, bearer: Option<String>| {
        let guarded = guarded.clone();
        async move {
            let mut b = Request::post("/mcp").header(header::CONTENT_TYPE, "application/json");
            if let Some(t) = bearer {
                b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let resp = guarded.oneshot(b.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()).await.unwrap();
            let status = resp.status();
            let challenge = resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, challenge, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, challenge, body) = send(INITIALIZE, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains(&format!("resource_metadata=\"{PRM}\"")));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"], "unauthorized");
    let token = token(&f, RESOURCE, "mcp:tools");
    let add = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note","arguments":{}}}"#;
    let (status, challenge, _) = send(add, Some(token.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.unwrap().contains("scope=\"notes:write\""));
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_notes","arguments":{}}}"#;
    let (status, _, body) = send(list, Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("user-1: {list}"), "the body the guard read reaches the service whole");
}

/// The upstream handle is on a person's context when the server keeps upstream tokens, for the
/// grant the token names; never on a machine's, nor without a grant or a vault.
#[tokio::test]
async fn a_person_s_context_has_the_upstream_handle_of_its_own_grant() {
    let f = fixture().await;
    let vault = oauth_core::upstream::VaultKeys::parse(&"5a".repeat(32), &[]).unwrap();
    let config = f.server.config().clone();
    let with_vault = Arc::new(
        AuthorizationServer::with_clock(config, MemoryStore::new().into_stores(), f.clock.clone())
            .await
            .unwrap()
            .with_vault(vault),
    );
    let app = |server: &Arc<AuthorizationServer>| {
        let guard =
            McpGuardLayer::new(Arc::new(LocalVerifier::new(server.clone())), &ResourceUri::parse(RESOURCE).unwrap())
                .with_machine_clients(true);
        Router::new()
            .route(
                "/mcp",
                any(|req: Request<Body>| async move {
                    let Some(upstream) = req.extensions().get::<AuthContext>().and_then(AuthContext::upstream) else {
                        return "no handle".to_owned();
                    };
                    match upstream.access().await {
                        Ok(_) => format!("token of {}", upstream.grant()),
                        Err(e) => format!("{} for {}: {}", e.reason().as_str(), upstream.grant(), e.told()),
                    }
                }),
            )
            .layer(guard)
    };
    let mint_for = |server: &Arc<AuthorizationServer>, sub: &str, client: &str, gid: Option<&str>, machine: bool| {
        let mut claims =
            AccessTokenClaims::new(ISSUER, sub, RESOURCE, client, "mcp:tools", f.clock.now(), Duration::from_secs(600));
        claims.gid = gid.map(str::to_owned);
        claims.machine = machine;
        mint(&claims, &server.keys()).unwrap()
    };
    let send = |app: Router, token: String| async move {
        let resp = app.oneshot(rpc(INITIALIZE, Some(&token))).await.unwrap();
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
    };
    // A person who signed in with a password here: a live grant with nothing in the vault.
    let live = oauth_core::Grant::access_only(
        oauth_core::ClientId::parse("client-1").unwrap(),
        oauth_core::UserId::parse("user-1").unwrap(),
        ScopeSet::parse("mcp:tools").unwrap(),
        ResourceUri::parse(RESOURCE).unwrap(),
        f.clock.now(),
        f.clock.now(),
    );
    with_vault.operator().stores().grants.create_grant(&live, None).await.unwrap();
    let grant = live.id.clone();
    let person = mint_for(&with_vault, "user-1", "client-1", Some(grant.as_str()), false);
    let answer = send(app(&with_vault), person).await;
    assert_eq!(
        answer,
        format!("upstream_token_unavailable for {grant}: You did not sign in through an identity provider."),
        "a local sign-in's grant holds nothing"
    );
    // A grant that is gone (ended, swept) had its tokens go with it: sign in again.
    let gone = GrantId::generate();
    let stale = mint_for(&with_vault, "user-1", "client-1", Some(gone.as_str()), false);
    assert_eq!(
        send(app(&with_vault), stale).await,
        format!("upstream_grant_ended for {gone}: The sign-in service ended this server's access: sign in again.")
    );
    let machine = mint_for(&with_vault, "client:job-1", "job-1", Some(grant.as_str()), true);
    assert_eq!(send(app(&with_vault), machine).await, "no handle", "a machine never has one");
    let no_grant = mint_for(&with_vault, "user-1", "client-1", None, false);
    assert_eq!(send(app(&with_vault), no_grant).await, "no handle");
    let no_vault = mint_for(&f.server, "user-1", "client-1", Some(grant.as_str()), false);
    assert_eq!(send(app(&f.server), no_vault).await, "no handle", "a server without a vault keeps nothing");
}
