//! rmcp's own client, with its `auth` feature, against the real server: discovery from the 401,
//! dynamic registration, PKCE authorization through the sign-in and consent pages, code
//! exchange, tool calls as the signed-in user, and refresh-token rotation; and rmcp's machine
//! client (`client_credentials`) authenticating with `private_key_jwt`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

const REDIRECT: &str = "http://127.0.0.1:45731/callback";

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let v = serde_json::to_value(&result.content).unwrap();
    v[0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_completes_the_flow() {
    let server = common::Server::start("rmcp");

    // 1. The MCP endpoint challenges: 401 with resource_metadata.
    let started = Instant::now();
    let http = reqwest::Client::new();
    let challenge = http
        .post(&server.mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"rmcp-interop","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
    assert!(www.contains("resource_metadata="), "{www}");

    // 2. Discovery and dynamic registration, driven by rmcp from the challenge.
    let mut state = OAuthState::new(server.mcp_url.as_str(), None).await.unwrap();
    state
        .start_authorization(AuthorizationRequest::new(REDIRECT).with_client_name("rmcp interop").with_challenge(www))
        .await
        .unwrap_or_else(|e| panic!("start_authorization: {e}\n{}", server.log()));
    let auth_url = state.get_authorization_url().await.unwrap();

    // 3. The person: sign in and approve.
    let location = common::Browser::new().sign_in_and_approve(&server, &auth_url).await;
    assert!(location.starts_with(REDIRECT), "{location}");
    assert!(
        location.contains(&format!(
            "iss={}",
            url::form_urlencoded::byte_serialize(server.base_url.as_bytes()).collect::<String>()
        )),
        "{location}"
    );

    // 4. rmcp checks state and iss and exchanges the code.
    state.handle_callback_url(&location).await.unwrap_or_else(|e| panic!("callback: {e}\n{}", server.log()));
    let (client_id, first) = state.get_credentials().await.unwrap();
    let first = serde_json::to_value(first.expect("tokens")).unwrap();
    let manager = state.into_authorization_manager().expect("authorized manager");

    // 5. MCP over the authorized transport.
    let auth_client = AuthClient::new(reqwest::Client::new(), manager);
    let transport = StreamableHttpClientTransport::with_client(
        auth_client.clone(),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.as_str()),
    );
    let client =
        ClientConfig::default().serve(transport).await.unwrap_or_else(|e| panic!("initialize: {e}\n{}", server.log()));
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for expected in ["whoami", "add_note", "list_notes"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    let whoami = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    let elapsed = started.elapsed();
    let me: serde_json::Value = serde_json::from_str(&text_of(&whoami)).unwrap();
    assert_eq!(me["username"], common::USERNAME);
    assert_eq!(me["client_id"], client_id.as_str());
    println!("rmcp client: 401 to first tool call in {} ms", elapsed.as_millis());

    // 6. Refresh: the token rotates, and the next call uses the new access token.
    auth_client
        .auth_manager
        .lock()
        .await
        .refresh_token()
        .await
        .unwrap_or_else(|e| panic!("refresh: {e}\n{}", server.log()));
    let (_, second) = auth_client.auth_manager.lock().await.get_credentials().await.unwrap();
    let second = serde_json::to_value(second.expect("tokens")).unwrap();
    assert_ne!(first["refresh_token"], second["refresh_token"], "refresh tokens rotate");
    assert_ne!(first["access_token"], second["access_token"]);
    let again = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text_of(&again)).unwrap()["username"], common::USERNAME);
    let _ = client.cancel().await;

    let log = server.log();
    assert!(log.contains("rotated to generation 1"), "the server recorded the rotation:\n{log}");
    assert!(log.contains("first call with this token"), "{log}");
}

/// An operator-created machine client that authenticates with its own key: the operator
/// registers only the public key (`clients add --machine --jwks-file`), rmcp signs an ES256
/// assertion (no `kid`, `typ: client-authentication+jwt`, `aud` the issuer) for the
/// `client_credentials` grant, and the tools see the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_machine_client_authenticates_with_private_key_jwt() {
    use rmcp::transport::auth::{ClientCredentialsConfig, JwtSigningAlgorithm};

    let server = common::Server::start_with("rmcp-machine-jwt", &[("NOTES_MACHINE_CLIENTS", "true")]);
    let keys = common::ClientKeyPair::es256();
    let client_id = common::add_signing_machine(&server, "signed job", &keys);

    let mut state = OAuthState::new(server.mcp_url.as_str(), None).await.unwrap();
    let config = ClientCredentialsConfig::PrivateKeyJwt {
        client_id: client_id.clone(),
        signing_key: keys.private_key_pem.into_bytes(),
        signing_algorithm: JwtSigningAlgorithm::ES256,
        token_endpoint_audience: None,
        scopes: vec!["mcp:tools".into()],
        resource: Some(server.mcp_url.clone()),
    };
    state
        .authenticate_client_credentials(config)
        .await
        .unwrap_or_else(|e| panic!("client credentials with private_key_jwt: {e}\n{}", server.log()));
    let manager = state.into_authorization_manager().expect("authorized manager");
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::new(), manager),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url.as_str()),
    );
    let client =
        ClientConfig::default().serve(transport).await.unwrap_or_else(|e| panic!("initialize: {e}\n{}", server.log()));
    let who = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    let who: serde_json::Value = serde_json::from_str(&text_of(&who)).unwrap();
    assert_eq!((who["caller"].as_str(), who["username"].as_str()), (Some("machine client"), Some(client_id.as_str())));
    let _ = client.cancel().await;
}
