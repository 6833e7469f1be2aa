//! Every known client's request shape (DESIGN.md's client list), each doing the whole flow over
//! a real socket against the example server's default configuration: the 401, discovery,
//! registration (or a pre-registered client), authorization with PKCE through the sign-in and
//! consent pages, the code exchange with the client's authentication method, an MCP tool call
//! with the token, and a refresh.
//!
//! Where a client needs a leniency, the profile names the policy and the RFC that allows it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Post,
    Basic,
}

/// What a client sends.
struct Profile {
    name: &'static str,
    /// Registered redirect URIs; `None` for a pre-registered client.
    registers: Option<&'static [&'static str]>,
    /// The redirect URI it sends (may differ from the registered one by loopback port/host).
    redirect: &'static str,
    auth: Auth,
    /// `resource`: `Some("")` means none at all; the placeholder `{mcp}`/`{origin}` is filled in.
    resource: &'static str,
    /// A browser client's Origin.
    origin: Option<&'static str>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn json(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Runs the whole flow for a profile; returns the client id.
async fn connect(server: &common::Server, p: &Profile) -> String {
    let http = reqwest::Client::new();
    let with_origin = |b: reqwest::RequestBuilder| match p.origin {
        Some(o) => b.header("origin", o),
        None => b,
    };
    let cors_ok = |r: &reqwest::Response, what: &str| {
        if p.origin.is_some() {
            let allowed = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
            assert!(allowed.as_deref() == Some("*") || allowed.as_deref() == p.origin, "{}: no CORS on {what}", p.name);
        }
    };

    // 401 with the discovery challenge.
    let r = with_origin(http.post(&server.mcp_url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{}", p.name);
    cors_ok(&r, "the 401");
    if p.origin.is_some() {
        let exposed = r
            .headers()
            .get("access-control-expose-headers")
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default();
        assert!(exposed.contains("www-authenticate"), "{}: the challenge must be readable by a browser", p.name);
    }
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let prm_url = www.split("resource_metadata=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = with_origin(http.get(&prm_url)).send().await.unwrap();
    cors_ok(&r, "the PRM");
    let prm = json(r).await;
    let issuer = prm["authorization_servers"][0].as_str().unwrap().to_owned();
    let r = with_origin(http.get(format!("{issuer}/.well-known/oauth-authorization-server"))).send().await.unwrap();
    cors_ok(&r, "the AS metadata");
    let meta = json(r).await;
    assert_eq!(meta["issuer"], issuer.as_str(), "{}", p.name);

    // Registration, or the operator's pre-registration.
    let (client_id, secret) = match p.registers {
        Some(uris) => {
            let method = match p.auth {
                Auth::None => "none",
                Auth::Post => "client_secret_post",
                Auth::Basic => "client_secret_basic",
            };
            let body = serde_json::json!({
                "client_name": p.name, "redirect_uris": uris, "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"], "token_endpoint_auth_method": method,
            });
            let r = with_origin(http.post(meta["registration_endpoint"].as_str().unwrap()))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}: registration", p.name);
            cors_ok(&r, "registration");
            let reg = json(r).await;
            assert_eq!(reg["token_endpoint_auth_method"], method, "{}", p.name);
            (reg["client_id"].as_str().unwrap().to_owned(), reg["client_secret"].as_str().map(str::to_owned))
        }
        None => {
            let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
                .args([
                    "clients",
                    "add",
                    "--name",
                    p.name,
                    "--redirect-uri",
                    p.redirect,
                    "--confidential",
                    "--database-url",
                ])
                .arg(server.database_url())
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            let id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).expect(&out).to_owned();
            let secret = out
                .lines()
                .find_map(|l| l.strip_prefix("client_secret: "))
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            (id, Some(secret))
        }
    };

    // Authorization with PKCE, through the pages.
    let verifier = oauth_core::CodeVerifier::generate();
    let challenge = oauth_core::CodeChallenge::s256(&verifier);
    let resource = p.resource.replace("{mcp}", &server.mcp_url).replace("{origin}", &server.base_url);
    let mut url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state=st&scope=mcp%3Atools",
        meta["authorization_endpoint"].as_str().unwrap(),
        enc(&client_id),
        enc(p.redirect),
        challenge.as_str()
    );
    if !resource.is_empty() {
        url.push_str(&format!("&resource={}", enc(&resource)));
    }
    let location = common::Browser::new().sign_in_and_approve(server, &url).await;
    assert!(location.starts_with(p.redirect), "{}: redirected to {location}", p.name);
    let q: std::collections::HashMap<String, String> =
        url::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
    assert_eq!((q["state"].as_str(), q["iss"].as_str()), ("st", issuer.as_str()), "{}", p.name);

    // The exchange, with the client's authentication method.
    let token_request = |form: Vec<(&str, String)>| {
        let mut form = form;
        let mut req = with_origin(http.post(meta["token_endpoint"].as_str().unwrap()));
        match p.auth {
            Auth::None => form.push(("client_id", client_id.clone())),
            Auth::Post => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", secret.clone().unwrap()));
            }
            Auth::Basic => req = req.basic_auth(enc(&client_id), Some(enc(secret.as_deref().unwrap()))),
        }
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        req.header("content-type", "application/x-www-form-urlencoded").body(body)
    };
    let r = token_request(vec![
        ("grant_type", "authorization_code".into()),
        ("code", q["code"].clone()),
        ("code_verifier", verifier.secret().to_owned()),
        ("redirect_uri", p.redirect.to_owned()),
    ])
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}: code exchange", p.name);
    cors_ok(&r, "the token endpoint");
    let tokens = json(r).await;

    // An MCP call with the token: the audience is always the canonical resource.
    let claims = {
        use base64::Engine as _;
        let payload = tokens["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice::<Value>(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap()
    };
    assert_eq!(claims["aud"], server.mcp_url.as_str(), "{}: aud", p.name);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.as_str())
            .auth_header(tokens["access_token"].as_str().unwrap()),
    );
    let client =
        ClientConfig::default().serve(transport).await.unwrap_or_else(|e| panic!("{}: initialize: {e}", p.name));
    let who = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    let who: Value =
        serde_json::from_str(serde_json::to_value(&who.content).unwrap()[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        (who["username"].as_str(), who["client_id"].as_str()),
        (Some(common::USERNAME), Some(client_id.as_str())),
        "{}",
        p.name
    );
    let _ = client.cancel().await;

    // A refresh, with the same authentication.
    let r = token_request(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap().to_owned()),
    ])
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}: refresh", p.name);
    assert_ne!(json(r).await["refresh_token"], tokens["refresh_token"], "{}: rotation", p.name);
    client_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_registers_afresh_on_every_connection() {
    let server = common::Server::start("claude");
    let p = Profile {
        name: "Claude",
        registers: Some(&["https://claude.ai/api/mcp/auth_callback"]),
        redirect: "https://claude.ai/api/mcp/auth_callback",
        auth: Auth::Post,
        resource: "{mcp}",
        origin: None,
    };
    let first = connect(&server, &p).await;
    let second = connect(&server, &p).await;
    assert_ne!(first, second, "two connections, two registrations, both work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_with_a_preregistered_id_and_secret() {
    let server = common::Server::start("claude-advanced");
    let p = Profile {
        name: "Claude advanced",
        registers: None,
        redirect: "https://claude.ai/api/mcp/auth_callback",
        auth: Auth::Post,
        resource: "{mcp}",
        origin: None,
    };
    connect(&server, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_loopback_with_resource_quirks() {
    let server = common::Server::start("claude-code");
    // Policy "loopback any port, one host" (RFC 8252 7.3) and "resource_trailing_slash":
    // normalised to the canonical resource (RFC 8707 2 leaves the server to judge the value).
    let p = Profile {
        name: "Claude Code",
        registers: Some(&["http://localhost:54212/callback"]),
        redirect: "http://127.0.0.1:61234/callback",
        auth: Auth::None,
        resource: "{mcp}/",
        origin: None,
    };
    connect(&server, &p).await;
    // Policy "resource_omitted": bound to the canonical resource (RFC 8707: resource is optional).
    connect(&server, &Profile { resource: "", ..p }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatgpt_basic_auth_and_bare_origin_resource() {
    let server = common::Server::start("chatgpt");
    // Policy "resource_bare_origin": the origin of the one protected resource is normalised to it.
    let p = Profile {
        name: "ChatGPT",
        registers: Some(&["https://chatgpt.com/connector_platform_oauth_redirect"]),
        redirect: "https://chatgpt.com/connector_platform_oauth_redirect",
        auth: Auth::Basic,
        resource: "{origin}",
        origin: None,
    };
    connect(&server, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_private_use_scheme_with_default_settings() {
    let server = common::Server::start("cursor");
    let p = Profile {
        name: "Cursor",
        registers: Some(&["cursor://anysphere.cursor-mcp/oauth/callback"]),
        redirect: "cursor://anysphere.cursor-mcp/oauth/callback",
        auth: Auth::None,
        resource: "{mcp}",
        origin: None,
    };
    connect(&server, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vscode_web_and_loopback_redirects() {
    let server = common::Server::start("vscode");
    let p = Profile {
        name: "Visual Studio Code",
        registers: Some(&["https://vscode.dev/redirect", "http://127.0.0.1:33418/"]),
        // 33418 was taken: VS Code falls back to a random port (RFC 8252 7.3).
        redirect: "http://127.0.0.1:40123/",
        auth: Auth::None,
        resource: "{mcp}",
        origin: None,
    };
    connect(&server, &p).await;
    connect(&server, &Profile { redirect: "https://vscode.dev/redirect", ..p }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_inspector_from_a_browser_origin() {
    let server = common::Server::start("inspector");
    let p = Profile {
        name: "MCP Inspector",
        registers: Some(&["http://localhost:6274/oauth/callback"]),
        redirect: "http://localhost:6274/oauth/callback",
        auth: Auth::None,
        resource: "{mcp}",
        origin: Some("http://localhost:6274"),
    };
    connect(&server, &p).await;
}
