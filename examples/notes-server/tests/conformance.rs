//! The official MCP conformance suite's `authorization` mode against the example's embedded
//! authorization server: RFC 8414 metadata, then the authorization-code grant with PKCE for a
//! pre-registered public client whose redirect is the suite's own loopback callback. The suite
//! prints the authorization URL and waits; the test plays the person on the real pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Pinned in interop/conformance/package.json; an upgrade shows up here as a diff.
const SUITE_VERSION: &str = "0.2.0-alpha.12";
/// The scenarios `conformance authorization` runs, in order, and how many checks each passes.
/// The metadata scenario checks Client ID Metadata Document support too, since the example
/// advertises it.
const SCENARIOS: &[(&str, usize)] = &[("authorization-server-metadata-endpoint", 2), ("authorization-code-grant", 1)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_conformance_suite_authorization_mode_passes() {
    let root = common::repo_root();
    let bin = root.join("interop/conformance/node_modules/.bin");
    assert!(
        bin.join("conformance").exists(),
        "the conformance suite is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );
    let server = common::Server::start("conformance");

    // A pre-registered public client for the suite's callback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["clients", "add", "--name", "MCP conformance suite", "--redirect-uri", &callback, "--database-url"])
        .arg(server.database_url())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let client_id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).expect(&out).to_owned();

    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let version = Command::new(bin.join("conformance")).arg("--version").env("PATH", &path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), SUITE_VERSION);
    let mut suite = Command::new(bin.join("conformance"))
        .args([
            "authorization",
            "--url",
            &server.base_url,
            "--client-id",
            &client_id,
            "--resource",
            &server.mcp_url,
            "-p",
            &port.to_string(),
        ])
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = suite.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("http") && line.contains("/authorize?") {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });

    let auth_url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the suite printed no authorization URL\n{}", server.log()));
    let location = common::Browser::new().sign_in_and_approve(&server, &auth_url).await;
    assert!(location.starts_with(&callback), "{location}");
    // Deliver the redirect to the suite's callback server, as the browser would.
    let delivered = reqwest::get(&location).await.unwrap();
    assert!(delivered.status().is_success());

    let status = tokio::task::spawn_blocking(move || suite.wait()).await.unwrap().unwrap();
    let output = reader.join().unwrap();
    for (scenario, checks) in SCENARIOS {
        assert!(
            output.contains(&format!("{scenario}: {checks} passed, 0 failed")),
            "{scenario} did not pass its {checks} check(s):\n{output}\n{}",
            server.log()
        );
    }
    let total: usize = SCENARIOS.iter().map(|(_, n)| n).sum();
    assert!(output.contains(&format!("Total: {total} passed, 0 failed")), "{output}");
    assert!(status.success(), "the suite exited with {status}:\n{output}");
}

/// The MCP scenarios that apply to any server. Pinned with the suite version.
const SERVER_SCENARIOS: &[&str] = &["server-initialize", "ping", "tools-list", "dns-rebinding-protection"];

/// Runs `conformance server` on one scenario against `url`; returns (passed, output).
async fn server_scenario(url: &str, scenario: &str) -> (bool, String) {
    let bin = common::repo_root().join("interop/conformance/node_modules/.bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(bin.join("conformance"));
    cmd.args(["server", "--url", url, "--scenario", scenario, "--timeout", "20000"])
        .env("PATH", path)
        .env("NO_COLOR", "1");
    // Each scenario is bounded by the suite's own --timeout.
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains(" 0 failed"), text)
}

/// A bearer token for the example, obtained through the real flow.
async fn token(server: &common::Server) -> String {
    let http = reqwest::Client::new();
    let callback = "http://127.0.0.1:45998/callback";
    let reg: serde_json::Value = http
        .post(format!("{}/register", server.base_url))
        .json(&serde_json::json!({"client_name": "conformance fixture", "redirect_uris": [callback], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    let verifier = oauth_core::CodeVerifier::generate();
    let challenge = oauth_core::CodeChallenge::s256(&verifier);
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let url = format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&resource={}",
        server.base_url,
        enc(callback),
        challenge.as_str(),
        enc(&server.mcp_url)
    );
    let location = common::Browser::new().sign_in_and_approve(server, &url).await;
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", verifier.secret()),
            ("redirect_uri", callback),
            ("client_id", client_id),
        ])
        .finish();
    let tokens: serde_json::Value = http
        .post(format!("{}/token", server.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A loopback reverse proxy that adds the bearer token to every request, since the suite has
/// no header option. The Host header is passed on as sent, so host checks still see it.
async fn proxy(upstream: String, token: String) -> String {
    use axum::body::Body;
    use axum::extract::Request;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (http, upstream, token) = (http.clone(), upstream.clone(), token.clone());
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
            let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut out = http.request(parts.method.clone(), format!("{upstream}{path}")).body(bytes);
            for (name, value) in &parts.headers {
                if name != "content-length" && name != "connection" {
                    out = out.header(name, value);
                }
            }
            let resp = out.header("authorization", format!("Bearer {token}")).send().await.unwrap();
            let mut builder = axum::http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    builder = builder.header(name, value);
                }
            }
            builder.body(Body::from_stream(resp.bytes_stream())).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_conformance_suite_server_scenarios() {
    let server = common::Server::start("conformance-server");
    // Without a token, every scenario meets the 401 challenge the spec requires.
    for scenario in SERVER_SCENARIOS {
        let (passed, out) = server_scenario(&server.mcp_url, scenario).await;
        if *scenario != "dns-rebinding-protection" {
            assert!(!passed, "{scenario} passed without a token:\n{out}");
        }
        assert!(
            out.contains("requires an OAuth access token") || out.contains("401"),
            "{scenario} did not meet the challenge:\n{out}"
        );
    }
    // With a token from the real flow, through the fixture, they pass.
    let upstream = server.base_url.clone();
    let url = proxy(upstream, token(&server).await).await;
    for scenario in SERVER_SCENARIOS {
        let (passed, out) = server_scenario(&url, scenario).await;
        assert!(passed, "{scenario} failed through the token fixture:\n{out}\n{}", server.log());
    }
}
