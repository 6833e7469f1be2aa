//! The real notes-server binary behind an external authorization server, node-oidc-provider
//! (pinned in `interop/oidc-provider`), with one flag: `--external-issuer`. The protected-resource
//! metadata points at the provider's issuer, the provider's JWT access tokens for the MCP URL
//! open the MCP endpoint, and its tokens for another resource do not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::flow::{FormBody, json, whoami};

const PUBLIC: &str = "https://notes.example.com";
const OTHER: &str = "https://reports.example.com/mcp";
const CLIENT: &str = "notes-machine";
const SECRET: &str = "interop-client-secret-0123456789";

fn provider(resources: &str) -> common::oidc_provider::Provider {
    common::oidc_provider::start(&[
        ("OIDC_RESOURCES", resources),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_CLIENT_SECRET", SECRET),
    ])
}

/// A client_credentials token of the provider at `issuer` for `resource`.
async fn token(http: &reqwest::Client, issuer: &str, resource: &str) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    let form = [("grant_type", "client_credentials"), ("resource", resource), ("scope", "mcp:tools")];
    let req = http.post(format!("{issuer}/token")).header("authorization", format!("Basic {basic}"));
    let (status, body) = json(req.form_body(&form).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notes_server_runs_behind_an_external_issuer_with_one_flag() {
    let mcp = format!("{PUBLIC}/mcp");
    let idp = provider(&format!("{mcp},{OTHER}"));
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("NOTES_LISTEN", listen.as_str()),
        ("NOTES_PUBLIC_URL", PUBLIC),
        ("NOTES_EXTERNAL_ISSUER", idp.issuer.as_str()),
        // The test's token is a client_credentials one: a machine client's.
        ("NOTES_MACHINE_CLIENTS", "true"),
    ];
    let server = common::Server::start_with("external-idp", &env);
    let (base, mcp_here) = (format!("http://{listen}"), format!("http://{listen}/mcp"));
    assert!(server.log().contains("loaded the authorization server's keys"), "{}", server.log());

    // The metadata points at the provider, and asks for the scope the tools need.
    let http = reqwest::Client::new();
    let (status, prm) =
        json(http.get(format!("{base}/.well-known/oauth-protected-resource/mcp")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{prm}");
    assert_eq!(prm["resource"], mcp.as_str(), "{prm}");
    assert_eq!(prm["authorization_servers"], serde_json::json!([idp.issuer]), "{prm}");
    assert_eq!(prm["scopes_supported"], serde_json::json!(["mcp:tools"]), "{prm}");
    // Nothing of an authorization server is served here.
    assert_eq!(http.post(format!("{base}/token")).send().await.unwrap().status(), 404);

    let ours = token(&http, &idp.issuer, &mcp).await;
    assert_eq!(whoami(&http, &mcp_here, &ours).await, 200, "{}", server.log());
    assert_eq!(whoami(&http, &mcp_here, &token(&http, &idp.issuer, OTHER).await).await, 401);
    assert_eq!(whoami(&http, &mcp_here, "not-a-token").await, 401);
}
