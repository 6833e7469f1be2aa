//! The README's quick start as a person runs it: the binary on a fresh directory, then rmcp's
//! own client discovers the server from the 401, registers, signs in through the pages with
//! the generated first password, and calls the one tool as that user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../notes-server/tests/common/browser.rs"]
mod browser;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

const REDIRECT: &str = "http://127.0.0.1:45733/callback";

/// Kills the server when the test ends, passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_serves_a_real_client() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .current_dir(&dir)
        .env("LISTEN", "127.0.0.1:0")
        .env_remove("PUBLIC_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _running = Running(child);
    let mut printed = Vec::new();
    let mcp_url = loop {
        let line = lines.next().expect("the server printed its URL").unwrap();
        printed.push(line.clone());
        if let Some(url) = line.split("(paste into your client): ").nth(1) {
            break url.trim().to_owned();
        }
    };
    assert!(printed.iter().any(|l| l.contains("data/admin-password")), "how to sign in: {printed:?}");
    let password_file = dir.join("data/admin-password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&password_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the first password is readable by its owner only");
    }
    let password = std::fs::read_to_string(&password_file).unwrap().trim().to_owned();
    assert!(!printed.iter().any(|l| l.contains(&password)), "the password is never printed");
    let base_url = mcp_url.trim_end_matches("/mcp").to_owned();

    // The client finds the authorization server from the challenge, registers and authorizes.
    let challenge = reqwest::Client::new()
        .post(&mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"quickstart-test","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
    let mut state = OAuthState::new(mcp_url.as_str(), None).await.unwrap();
    state
        .start_authorization(
            AuthorizationRequest::new(REDIRECT).with_client_name("quickstart test").with_challenge(www),
        )
        .await
        .unwrap();
    let auth_url = state.get_authorization_url().await.unwrap();
    let location = browser::Browser::new().sign_in_and_approve_as(&base_url, &auth_url, "admin", &password).await;
    state.handle_callback_url(&location).await.unwrap();
    let manager = state.into_authorization_manager().expect("authorized");

    // MCP as the signed-in user.
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::new(), manager),
        StreamableHttpClientTransportConfig::with_uri(mcp_url.as_str()),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(), ["hello"]);
    let result = client.call_tool(CallToolRequestParams::new("hello")).await.unwrap();
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.starts_with("Hello, ") && !text.contains("nobody"), "{text}");
    client.cancel().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_readme_shows_this_example_whole() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let main = std::fs::read_to_string(root.join("examples/quickstart/src/main.rs")).unwrap();
    assert!(readme.contains(&format!("```rust\n{main}```")), "README.md's quick start differs from src/main.rs");
    assert!(main.lines().count() <= 40, "the quick start stays within 40 lines");
}
