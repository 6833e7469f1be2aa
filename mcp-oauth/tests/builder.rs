//! The builder's wiring, seen from outside over a real socket: each test is a trap a hand-wired
//! server falls into, and shows that the builder's app does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_oauth::{KnownClient, McpAuth};
use oauth_store_memory::MemoryStore;

const CALLBACK: &str = "http://127.0.0.1:45999/callback";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"builder-test","version":"1"}}}"#;

/// An MCP endpoint that answers every request; what it is does not matter to the guard.
async fn echo() -> &'static str {
    "ok"
}

/// Serves `auth`'s app (its routes and an echo MCP endpoint) on a loopback port; the origin.
async fn serve(auth: &McpAuth, listener: tokio::net::TcpListener) -> String {
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mcp = auth.protect(axum::routing::post(echo));
    let app = auth.routes().nest_service(auth.mcp_path(), mcp);
    tokio::spawn(mcp_oauth::serve(listener, app));
    origin
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

async fn call(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_refused_at_once_not_at_exp() {
    // Hand-wired, the cache made apart from the server's stores misses revocations until the
    // token expires (an hour). The builder makes the cache watch the stores it hands the server.
    let (listener, origin) = listener().await;
    let auth = McpAuth::builder(&origin).store(MemoryStore::new().into_stores()).build().await.unwrap();
    let origin = serve(&auth, listener).await;
    let server = auth.server().unwrap();
    let (client, tokens) = oauth_core::testing::tokens_for_new_client(server, CALLBACK, "user-1").await;
    let http = reqwest::Client::new();
    let mcp_url = format!("{origin}/mcp");
    assert_eq!(call(&http, &mcp_url, Some(&tokens.access_token)).await.status(), 200);
    // Again: now from the cache.
    assert_eq!(call(&http, &mcp_url, Some(&tokens.access_token)).await.status(), 200);
    let form = format!("token={}&client_id={}", tokens.access_token, client);
    let revoked = http
        .post(format!("{origin}/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let refused = call(&http, &mcp_url, Some(&tokens.access_token)).await;
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_challenges_with_the_scope_and_serves_both_metadata_urls_and_the_limits() {
    let (listener, origin) = listener().await;
    let auth = McpAuth::builder(&origin).store(MemoryStore::new().into_stores()).build().await.unwrap();
    serve(&auth, listener).await;
    let http = reqwest::Client::new();
    // The required scope is on without being asked for, and named in the challenge.
    let anonymous = call(&http, auth.mcp_url(), None).await;
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let prm_url = format!("{origin}/.well-known/oauth-protected-resource/mcp");
    assert!(challenge.contains(&format!("resource_metadata=\"{prm_url}\"")), "{challenge}");
    assert!(challenge.contains("scope=\"mcp:tools\""), "{challenge}");
    // Both metadata URLs (path-inserted, and at the root for older clients) name this resource
    // and the embedded server, exactly as the self-check saw them.
    for url in [prm_url, format!("{origin}/.well-known/oauth-protected-resource")] {
        let body: serde_json::Value =
            serde_json::from_str(&http.get(&url).send().await.unwrap().text().await.unwrap()).unwrap();
        assert_eq!(body["resource"], auth.mcp_url(), "{url}: {body}");
        assert_eq!(body["authorization_servers"], serde_json::json!([origin]), "{url}");
    }
    // Browser-based clients read the challenge: CORS is outside the guard.
    let preflight = http
        .request(reqwest::Method::OPTIONS, auth.mcp_url())
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().contains_key("access-control-allow-origin"), "{:?}", preflight.headers());
    // The rate limits are on, keyed on the peer address that `serve` supplies.
    let register =
        r#"{"client_name":"x","redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"none"}"#;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let resp = http
            .post(format!("{origin}/register"))
            .header("content-type", "application/json")
            .body(register)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses[0], 201);
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigurations_are_refused_at_build_with_the_reason() {
    let stores = || MemoryStore::new().into_stores();
    let error = |r: Result<McpAuth, mcp_oauth::Error>| r.map(|_| ()).unwrap_err().to_string();
    let no_store = error(McpAuth::builder("https://mcp.example.com").build().await);
    assert!(no_store.contains("no store"), "{no_store}");
    let with_path = error(McpAuth::builder("https://example.com/mcp").store(stores()).build().await);
    assert!(with_path.contains("has a path"), "{with_path}");
    let relative = error(McpAuth::builder("https://mcp.example.com").mcp_path("mcp").store(stores()).build().await);
    assert!(relative.contains("must start with '/'"), "{relative}");
    // The self-check runs on what will be served: Cursor cannot connect without its scheme.
    let cursor =
        McpAuth::builder("https://mcp.example.com").store(stores()).expected_clients([KnownClient::Cursor]).build();
    let locked_out = error(cursor.await);
    assert!(locked_out.contains("cursor"), "{locked_out}");
    let fixed = McpAuth::builder("https://mcp.example.com")
        .store(stores())
        .expected_clients([KnownClient::Cursor])
        .redirect_schemes(["cursor"])
        .sweep_every(Some(Duration::from_secs(3600)))
        .build()
        .await;
    assert!(fixed.is_ok(), "{:?}", fixed.err());
    // A key rotation faster than hourly would fill the JWKS with retired keys.
    let hasty = McpAuth::builder("https://mcp.example.com")
        .store(stores())
        .rotate_signing_key_every(Some(Duration::from_secs(60)))
        .build();
    let hasty = error(hasty.await);
    assert!(hasty.contains("rotate_signing_key_every") && hasty.contains("at least"), "{hasty}");
    let daily = McpAuth::builder("https://mcp.example.com")
        .store(stores())
        .rotate_signing_key_every(Some(Duration::from_secs(86_400)))
        .build()
        .await;
    assert!(daily.is_ok(), "{:?}", daily.err());
    // Nothing secret in the builder's Debug.
    let token = mcp_oauth::AdminToken::new("an-admin-token-long-enough-to-be-accepted-1234").unwrap();
    let shown = format!("{:?}", McpAuth::builder("https://mcp.example.com").admin_token(token));
    assert!(!shown.contains("an-admin-token") && shown.contains("admin_token: true"), "{shown}");
}

#[cfg(feature = "external")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_authorization_server_is_discovered_and_its_tokens_checked() {
    use oauth_core::{AccessTokenClaims, mint};
    // The authorization server: the embedded one of another app, on its own port.
    let (as_listener, issuer) = listener().await;
    let authority = McpAuth::builder(&issuer).store(MemoryStore::new().into_stores()).build().await.unwrap();
    serve(&authority, as_listener).await;
    // The MCP server: no embedded server, tokens from `issuer`.
    let (listener, origin) = listener().await;
    let auth = McpAuth::builder(&origin).external_authorization_server(&issuer).build().await.unwrap();
    assert!(auth.server().is_none());
    serve(&auth, listener).await;
    let http = reqwest::Client::new();
    let prm: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{origin}/.well-known/oauth-protected-resource/mcp"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(prm["authorization_servers"], serde_json::json!([issuer]));
    assert_eq!(http.post(format!("{origin}/token")).send().await.unwrap().status(), 404, "no embedded endpoints");
    let server = authority.server().unwrap();
    let token_for = |audience: &str| {
        let claims = AccessTokenClaims::new(
            issuer.as_str(),
            "user-1",
            audience,
            "client-1",
            "mcp:tools",
            server.now(),
            Duration::from_secs(600),
        );
        mint(&claims, &server.keys()).unwrap()
    };
    assert_eq!(call(&http, auth.mcp_url(), Some(&token_for(auth.mcp_url()))).await.status(), 200);
    // A token the same server issued for its own resource is not for this one.
    let elsewhere = call(&http, auth.mcp_url(), Some(&token_for(authority.mcp_url()))).await;
    assert_eq!(elsewhere.status(), 401);
}

#[cfg(feature = "external")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_profile_that_cannot_work_is_refused_before_anything_is_fetched() {
    // Entra's v2.0 tokens carry the API's application id in `aud`, never the MCP URL: without
    // it as an audience no token could pass, so the builder says so rather than start.
    let entra = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
    let built = McpAuth::builder("https://mcp.example.com")
        .external_authorization_server(entra)
        .external_issuer_profile(mcp_oauth::IssuerProfile::named("entra").unwrap())
        .build()
        .await;
    let err = built.map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("application (client) id"), "{err}");
    // The issuer is someone else's and kept as written: a trailing slash is no parse error
    // (the discovery that follows fails here, there being no such server).
    let built = McpAuth::builder("https://mcp.example.com")
        .external_authorization_server("http://127.0.0.1:9/")
        .external_issuer_profile(mcp_oauth::IssuerProfile::named("auth0").unwrap())
        .build()
        .await;
    let err = built.map(|_| ()).unwrap_err().to_string();
    assert!(!err.contains("must not end with '/'") && err.contains("127.0.0.1:9"), "{err}");
}
