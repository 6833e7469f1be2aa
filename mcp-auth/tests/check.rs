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
