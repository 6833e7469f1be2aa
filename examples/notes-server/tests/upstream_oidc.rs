//! Upstream sign-in with the certified OpenID provider: the real notes-server binary started
//! with `--upstream <issuer>` of node-oidc-provider (pinned in `interop/oidc-provider`), a
//! client registered over DCR, a person who signs in on the provider's own pages (its
//! development interactions: login, then consent), comes back, approves here, and whose token
//! opens the MCP endpoint. The same person again is the same user; a callback replayed with a
//! spent flow is refused and `diagnose` says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::flow::{REDIRECT, authorize_url, code_in, register, token, whoami};
use common::{Browser, Server, attribute};
use oauth_core::CodeVerifier;

const CLIENT: &str = "notes-upstream";
const SECRET: &str = "upstream-client-secret-0123456789";
const VAULT_KEY: &str = "5a9d0c3e7b1f2a4c6e8d0b2f4a6c8e0d1b3f5a7c9e1d3b5f7a9c1e3d5b7f9a1c";

/// One JSON-RPC call on `session` (none: `initialize`), as a client sends it.
async fn mcp(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: serde_json::Value,
) -> (Option<String>, String) {
    let mut req = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s).header("mcp-protocol-version", "2025-06-18");
    }
    let resp = req.send().await.unwrap();
    let session = resp.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    (session, resp.text().await.unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An absolute URL for a `Location` that may be relative to `origin`.
fn absolute(origin: &str, location: &str) -> String {
    if location.starts_with("http") { location.to_owned() } else { format!("{origin}{location}") }
}

/// From our sign-in page to the provider and back to our callback, as the person `login`:
/// what our callback answers, the page or where it redirects.
async fn sign_in_upstream(
    b: &mut Browser,
    server: &Server,
    issuer: &str,
    auth_url: &str,
    login: &str,
) -> (String, Option<String>) {
    let (status, page, _) = b.get(auth_url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Sign in with 127.0.0.1"), "the provider's button: {page}");
    let start = format!("{}{}", server.base_url, "/authorize/sign-in/upstream");
    let pending = attribute(&page, "name=\"pending\" value=\"");
    let csrf = attribute(&page, "name=\"csrf\" value=\"");
    let (status, _, location) =
        b.post_form(&start, &[("pending", &pending), ("csrf", &csrf), ("provider", "oidc")]).await;
    assert_eq!(status, 303);
    // At the provider: its login page, then its consent page, each a form posted back.
    let mut next = location.expect("to the provider");
    for _ in 0..12 {
        if next.starts_with(&server.base_url) {
            let (_, page, location) = b.get(&next).await;
            return (page, location);
        }
        let (status, page, location) = b.get(&next).await;
        if let Some(l) = location {
            next = absolute(issuer, &l);
            continue;
        }
        assert_eq!(status, 200, "{page}");
        let action = absolute(issuer, &attribute(&page, "action=\""));
        let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let (_, page, location) = b.post_form(&action, &form).await;
        next = absolute(issuer, &location.unwrap_or_else(|| panic!("the provider's form did not redirect: {page}")));
    }
    panic!("the provider never sent the browser back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_at_node_oidc_provider_and_the_client_gets_our_token() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let callback = format!("{base}/authorize/upstream/oidc/callback");
    let idp = common::oidc_provider::start(&[
        ("OIDC_RESOURCES", &format!("{base}/mcp")),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_REDIRECT_URIS", &callback),
        ("OIDC_NO_DEFAULT_RESOURCE", "1"),
    ]);
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start_with(
        "upstream-oidc",
        &[
            ("NOTES_LISTEN", &listen),
            ("NOTES_UPSTREAM", &idp.issuer),
            ("NOTES_UPSTREAM_CLIENT_ID", CLIENT),
            ("NOTES_UPSTREAM_CLIENT_SECRET", SECRET),
            ("NOTES_VAULT_KEY", VAULT_KEY),
        ],
    );
    let http = reqwest::Client::new();
    let (status, reg) = register(
        &http,
        &server.base_url,
        serde_json::json!({"client_name": "Notes app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let (client_id, client_secret) = (reg["client_id"].as_str().unwrap(), reg["client_secret"].as_str().unwrap());

    let verifier = CodeVerifier::generate();
    let mut b = Browser::new();
    let auth_url = authorize_url(&server.base_url, client_id, &verifier);
    let (consent, _) = sign_in_upstream(&mut b, &server, &idp.issuer, &auth_url, "jane").await;
    assert!(consent.contains("name=\"decision\""), "our consent page after the provider: {consent}");
    let action = format!("{}{}", server.base_url, attribute(&consent, "action=\""));
    let pending = attribute(&consent, "name=\"pending\" value=\"");
    let csrf = attribute(&consent, "name=\"csrf\" value=\"");
    let (status, _, location) =
        b.post_form(&action, &[("pending", &pending), ("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(status, 303);
    let code = code_in(&location.unwrap());
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.secret()),
        ("client_id", client_id),
        ("client_secret", client_secret),
    ];
    let (status, tokens) = token(&http, &server.base_url, &form).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(whoami(&http, &server.mcp_url, access).await, 200, "our token opens /mcp");

    // A tool calls the provider for the person, with the provider's token from the vault.
    let init = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let (session, _) = mcp(&http, &server.mcp_url, access, None, init).await;
    let session = session.expect("a session");
    let note = serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    mcp(&http, &server.mcp_url, access, Some(&session), note).await;
    let call = serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"upstream_profile","arguments":{}}});
    let (_, answer) = mcp(&http, &server.mcp_url, access, Some(&session), call).await;
    assert!(answer.contains("jane@example.com") && answer.contains(r#"\"provider\":\"oidc\""#), "{answer}");

    // The person in the operator's list: a user linked to the provider's subject.
    let users = common::operator(&server.database_url(), &["users", "list"], None);
    assert!(users.contains("oidc:jane"), "{users}");

    // The same person in a fresh browser is the same user; the consent they gave is remembered.
    let mut again = Browser::new();
    let auth_url = authorize_url(&server.base_url, client_id, &CodeVerifier::generate());
    let (_, location) = sign_in_upstream(&mut again, &server, &idp.issuer, &auth_url, "jane").await;
    assert!(location.as_deref().is_some_and(|l| l.starts_with(REDIRECT) && l.contains("code=")), "{location:?}");
    let users = common::operator(&server.database_url(), &["users", "list"], None);
    assert_eq!(users.matches("oidc:jane").count(), 1, "{users}");

    // A callback opened in a browser that did not start the flow is refused; the sign-ins are
    // in diagnose.
    let stranger =
        Browser::new().get(&format!("{}/authorize/upstream/oidc/callback?state=x&code=y", server.base_url)).await;
    assert_eq!(stranger.0, 400, "{}", stranger.1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--json", "--since", "1h", "--all", "--database-url", &server.database_url()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("upstream_sign_in"), "the upstream sign-ins are in diagnose: {report}");
}
