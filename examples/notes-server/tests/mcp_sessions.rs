//! MCP sessions of the running example belong to the user and client that opened them: a
//! second user's valid token on the first user's `Mcp-Session-Id` gets 404, over a real socket
//! against the real binary, after each user went through the whole OAuth flow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use oauth_core::CodeVerifier;
use serde_json::{Value, json};

const CALLBACK: &str = "http://127.0.0.1:45998/callback";
const BOB: (&str, &str) = ("bob", "bob's long password");

/// Adds a user with the operator's command, on the running server's database.
fn add_user(server: &common::Server, (name, password): (&str, &str)) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["users", "add", name, "--database-url"])
        .arg(server.database_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "users add: {}", String::from_utf8_lossy(&out.stderr));
}

/// Registers a public client (dynamic registration): its id.
async fn register(http: &reqwest::Client, base: &str) -> String {
    let body = json!({"client_name":"sessions","redirect_uris":[CALLBACK],"token_endpoint_auth_method":"none"});
    let resp = http
        .post(format!("{base}/register"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()["client_id"].as_str().unwrap().to_owned()
}

/// The whole flow for `user` through `client`: sign-in and consent pages, PKCE, code exchange.
async fn access_token(http: &reqwest::Client, server: &common::Server, client: &str, user: (&str, &str)) -> String {
    let base = server.base_url.as_str();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let verifier = CodeVerifier::generate();
    let challenge = oauth_core::CodeChallenge::s256(&verifier);
    let url = format!(
        "{base}/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state=s&scope=mcp%3Atools&resource={}",
        enc(client),
        enc(CALLBACK),
        challenge.as_str(),
        enc(&server.mcp_url)
    );
    let location = common::Browser::new().sign_in_and_approve_as(base, &url, user.0, user.1).await;
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CALLBACK),
        ("client_id", client),
    ];
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let resp = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()["access_token"].as_str().unwrap().to_owned()
}

async fn post(
    http: &reqwest::Client,
    server: &common::Server,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = http
        .post(&server.mcp_url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s).header("mcp-protocol-version", "2025-06-18");
    }
    req.send().await.unwrap()
}

fn whoami() -> Value {
    json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_token_cannot_drive_a_session() {
    let server = common::Server::start("sessions");
    add_user(&server, BOB);
    let http = reqwest::Client::new();
    let client = register(&http, &server.base_url).await;
    let alice = access_token(&http, &server, &client, (common::USERNAME, common::PASSWORD)).await;
    let bob = access_token(&http, &server, &client, BOB).await;

    // The first user opens a session.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let resp = post(&http, &server, &alice, None, init).await;
    assert_eq!(resp.status(), 200);
    let session = resp.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = resp.text().await;
    let resp =
        post(&http, &server, &alice, Some(&session), json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
    assert_eq!(resp.status(), 202);
    let resp = post(&http, &server, &alice, Some(&session), whoami()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains(common::USERNAME));

    // The second user, with a valid token of the same client, on the first user's session.
    let resp = post(&http, &server, &bob, Some(&session), whoami()).await;
    assert_eq!(resp.status(), 404, "{}", resp.text().await.unwrap());
    let resp = post(&http, &server, &alice, Some(&session), whoami()).await;
    assert_eq!(resp.status(), 200, "the owner keeps the session");

    // The operator sees the attempt, tied to the client.
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--since", "1h", "--client-id", &client, "--database-url"])
        .arg(server.database_url())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("session_not_yours"), "{report}\nlog:\n{}", server.log());
}
