//! `mcp-auth check` against a deployment with the mistakes seen in hand-rolled servers: a
//! resource with a trailing slash, an issuer that differs from the protected-resource
//! metadata's by a trailing slash, no S256, no CORS. Served on a loopback socket by a small
//! axum app; the check runs as a process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

async fn serve_broken_deployment() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (b1, b2, b3) = (base.clone(), base.clone(), base.clone());
    let app = axum::Router::new()
        .route(
            "/mcp",
            post(move || async move {
                let www = format!(r#"Bearer resource_metadata="{b1}/.well-known/oauth-protected-resource/mcp""#);
                (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, www)]).into_response()
            }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || async move {
                Json(json!({ "resource": format!("{b2}/mcp/"), "authorization_servers": [format!("{b2}/")] }))
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move {
                Json(json!({
                    "issuer": b3,
                    "authorization_endpoint": format!("{b3}/authorize"),
                    "token_endpoint": format!("{b3}/token"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["plain"],
                }))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_mistake_and_its_fix() {
    let base = serve_broken_deployment().await;
    let run = move |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-auth"));
        cmd.args(["check", "--public-url", &base]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run(true), run(false))).await.unwrap();
    let (json_out, text_out) = out;
    assert_eq!(json_out.status.code(), Some(2), "a failing check exits with 2");
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let problem = |step: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["step"] == step && f["ok"] == false)
            .unwrap_or_else(|| panic!("no problem at {step}: {report}"))
            .clone()
    };
    assert!(problem("resource-metadata")["detail"].as_str().unwrap().contains("trailing slash"));
    let issuer = problem("issuer");
    assert!(issuer["fix"].as_str().unwrap().contains("one exact issuer string"), "{issuer}");
    assert!(problem("pkce")["detail"].as_str().unwrap().contains("S256"));
    assert!(problem("cors-preflight")["fix"].as_str().unwrap().contains("preflight"));
    assert!(problem("cors-challenge")["detail"].as_str().unwrap().contains("WWW-Authenticate"));
    assert!(report["findings"].as_array().unwrap().iter().any(|f| f["step"] == "challenge" && f["ok"] == true));

    let text = String::from_utf8_lossy(&text_out.stdout);
    assert!(text.contains("PROBLEM issuer") && text.contains("fix: "), "{text}");
}

#[test]
fn an_unreachable_deployment_is_a_problem_not_a_crash() {
    // Port 9 (discard) on loopback: nothing listens there.
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth"))
        .args(["check", "--public-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PROBLEM challenge") && text.contains("could not be reached"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_settings_in_the_environment_are_never_used() {
    // The check sees the deployment as a client does, directly: a proxy in the environment
    // would see the requests and could answer for the deployment.
    let base = serve_broken_deployment().await;
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-auth"));
        cmd.args(["check", "--public-url", &base, "--json"]);
        for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env(var, &proxy_url);
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy").output().unwrap()
    })
    .await
    .unwrap();
    assert!(proxy.accept().is_err(), "the check connected to the proxy named in the environment");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["findings"].as_array().unwrap().iter().any(|f| f["step"] == "challenge" && f["ok"] == true),
        "{report}"
    );
}

/// What a deliberately broken deployment gets wrong, for `check --clients`.
#[derive(Clone, Copy, PartialEq)]
enum Broken {
    /// The protected-resource metadata names another resource.
    Resource,
    /// The authorization server does not list S256.
    NoS256,
    /// The registration endpoint refuses loopback redirect URIs (and offers RFC 7592).
    NoLoopback,
}

/// A small deployment with one mistake; returns its base URL and the `Authorization` headers
/// of the RFC 7592 DELETEs it received.
async fn serve_deployment(broken: Broken) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::Path;
    use axum::http::HeaderMap;
    use axum::routing::delete;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let deletes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = deletes.clone();
    let (b1, b2, b3, b4) = (base.clone(), base.clone(), base.clone(), base.clone());
    let app = axum::Router::new()
        .route(
            "/mcp",
            post(move || async move {
                let www = format!(
                    r#"Bearer resource_metadata="{b1}/.well-known/oauth-protected-resource/mcp", scope="files:read""#
                );
                (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, www)]).into_response()
            }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || async move {
                let resource = if broken == Broken::Resource { format!("{b2}/other") } else { format!("{b2}/mcp") };
                Json(json!({ "resource": resource, "authorization_servers": [b2], "scopes_supported": ["files:read"] }))
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move {
                let pkce = if broken == Broken::NoS256 { json!(["plain"]) } else { json!(["S256"]) };
                Json(json!({
                    "issuer": b3,
                    "authorization_endpoint": format!("{b3}/authorize"),
                    "token_endpoint": format!("{b3}/token"),
                    "registration_endpoint": format!("{b3}/register"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": pkce,
                    "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
                    "scopes_supported": ["files:read"],
                }))
            }),
        )
        .route(
            "/register",
            post(move |Json(body): Json<Value>| async move {
                let uris: Vec<String> =
                    body["redirect_uris"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect();
                if uris.iter().any(|u| u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost")) {
                    let e = json!({
                        "error": "invalid_redirect_uri",
                        "error_description": "loopback redirect URIs are not accepted here",
                    });
                    return (StatusCode::BAD_REQUEST, Json(e)).into_response();
                }
                let method = body["token_endpoint_auth_method"].as_str().unwrap_or("client_secret_basic").to_owned();
                let id = format!("c{}", uris.len());
                let mut reg = json!({
                    "client_id": id,
                    "redirect_uris": uris,
                    "token_endpoint_auth_method": method,
                    "registration_access_token": format!("rat-{id}"),
                    "registration_client_uri": format!("{b4}/register/{id}"),
                });
                if method.starts_with("client_secret") {
                    reg["client_secret"] = json!("s3cret");
                }
                (StatusCode::CREATED, Json(reg)).into_response()
            }),
        )
        .route(
            "/register/{id}",
            delete(move |Path(_id): Path<String>, headers: HeaderMap| async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                seen.lock().unwrap().push(auth);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/authorize",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/login?request=r1")]).into_response() }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, deletes)
}

/// Runs `mcp-auth check --public-url <base> --clients <clients>` with `--json` and without;
/// returns the exit code, the parsed JSON report and the human report.
async fn check_clients(base: &str, clients: &str) -> (Option<i32>, Value, String) {
    let (base, clients) = (base.to_owned(), clients.to_owned());
    tokio::task::spawn_blocking(move || {
        let run = |json: bool| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-auth"));
            cmd.args(["check", "--public-url", &base, "--clients", &clients]);
            if json {
                cmd.arg("--json");
            }
            cmd.output().unwrap()
        };
        let (json, text) = (run(true), run(false));
        assert_eq!(json.status.code(), text.status.code());
        let report: Value = serde_json::from_slice(&json.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
        (json.status.code(), report, String::from_utf8_lossy(&text.stdout).into_owned())
    })
    .await
    .unwrap()
}

fn client<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == name)
        .unwrap_or_else(|| panic!("{name}: {report}"))
}

fn failed(client: &Value) -> &Value {
    let step = client["failed_step"].as_str().unwrap_or_else(|| panic!("{client}"));
    client["steps"].as_array().unwrap().iter().find(|s| s["step"] == step && s["ok"] == false).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_the_clients_refuse_names_the_client_and_the_step() {
    let (base, _) = serve_deployment(Broken::Resource).await;
    let (code, report, text) = check_clients(&base, "vscode,claude-code").await;
    assert_eq!(code, Some(2), "{text}");
    for name in ["vscode", "claude-code"] {
        let c = client(&report, name);
        assert_eq!(
            (c["verdict"].as_str(), c["failed_step"].as_str()),
            (Some("fail"), Some("discovery: resource")),
            "{c}"
        );
        let step = failed(c);
        assert!(step["detail"].as_str().unwrap().contains("/other"), "{step}");
        assert!(step["fix"].as_str().unwrap().contains(&format!("{base}/mcp")), "{step}");
        assert!(c["registrations"].is_null(), "nothing registered when discovery fails: {c}");
    }
    assert!(
        text.contains("vscode: discovery: resource") && text.contains("claude-code: discovery: resource"),
        "{text}"
    );
    assert!(text.contains("0 pass, 2 fail"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_s256_fails_every_client_at_discovery() {
    let (base, _) = serve_deployment(Broken::NoS256).await;
    let (code, report, _) = check_clients(&base, "all").await;
    assert_eq!(code, Some(2));
    let clients = report["clients"].as_array().unwrap();
    assert_eq!(clients.len(), mcp_auth::clients::PROFILES.len());
    for c in clients {
        if c["client"] == "inspector" {
            // A browser client stops earlier here: this deployment answers no CORS at all.
            assert_eq!(c["failed_step"], "cors: mcp", "{c}");
            continue;
        }
        assert_eq!(c["failed_step"], "discovery: pkce", "{c}");
        assert!(failed(c)["fix"].as_str().unwrap().contains("S256"), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_loopback_fails_codex_only_and_its_registrations_are_deleted() {
    let (base, deletes) = serve_deployment(Broken::NoLoopback).await;
    let (code, report, text) = check_clients(&base, "codex,chatgpt").await;
    assert_eq!(code, Some(2), "{text}");

    let codex = client(&report, "codex");
    assert_eq!(codex["failed_step"], "register: redirect_uris", "{codex}");
    let step = failed(codex);
    assert_eq!(step["answer"]["status"], 400, "{step}");
    assert_eq!(step["answer"]["error"], "invalid_redirect_uri", "{step}");
    assert!(step["answer"]["error_description"].as_str().unwrap().contains("loopback"), "{step}");
    assert!(step["fix"].as_str().unwrap().contains("RFC 8252"), "{step}");
    assert!(step["request"].as_str().unwrap().contains("mcp-auth check (codex)"), "named registration: {step}");
    assert!(text.contains("codex: register: redirect_uris"), "{text}");

    // ChatGPT's https callback is accepted; the server's redirect to its own sign-in page is a
    // pass, and the registration is deleted again with RFC 7592.
    let chatgpt = client(&report, "chatgpt");
    assert_eq!(chatgpt["verdict"], "pass", "{chatgpt}");
    let authorize: Vec<&Value> =
        chatgpt["steps"].as_array().unwrap().iter().filter(|s| s["step"] == "authorize").collect();
    assert_eq!(authorize.len(), 2, "{chatgpt}");
    assert!(authorize.iter().all(|s| s["detail"].as_str().unwrap().contains("/login?request=r1")), "{chatgpt}");
    assert!(
        chatgpt["not_replayed"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("sign-in")),
        "{chatgpt}"
    );
    let registrations = chatgpt["registrations"].as_array().unwrap();
    assert_eq!(registrations.len(), 1);
    assert_eq!(registrations[0]["removed"], true, "{chatgpt}");
    // Two runs (JSON and text), one registration each, each deleted with its own token.
    assert_eq!(*deletes.lock().unwrap(), ["Bearer rat-c1", "Bearer rat-c1"]);
}

#[test]
fn an_unknown_client_is_refused_with_the_known_names() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth"))
        .args(["check", "--public-url", "http://127.0.0.1:9", "--clients", "codex,netscape"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("netscape") && err.contains("claude-code") && err.contains("goose"), "{err}");
}
