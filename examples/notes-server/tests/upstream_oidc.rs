//! Upstream sign-in with the certified OpenID provider: the real notes-server binary started
//! with `--upstream <issuer>` of node-oidc-provider (pinned in `interop/oidc-provider`), a
//! client registered over DCR, a person who signs in on the provider's own pages (its
//! development interactions: login, then consent), comes back, approves here, and whose token
//! opens the MCP endpoint. The same person again is the same user; a callback replayed with a
//! spent flow is refused and `diagnose` says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::flow::{REDIRECT, authorize_url, call_tool, mcp_session, whoami};
use common::upstream::{register_client, sign_in_upstream, tokens_through_upstream};
use common::{Browser, Server};
use oauth_core::CodeVerifier;

const CLIENT: &str = "notes-upstream";
const SECRET: &str = "upstream-client-secret-0123456789";
const VAULT_KEY: &str = "5a9d0c3e7b1f2a4c6e8d0b2f4a6c8e0d1b3f5a7c9e1d3b5f7a9c1e3d5b7f9a1c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_at_node_oidc_provider_and_the_client_gets_our_token() {
    let listen = common::free_address();
    let base = format!("http://{listen}");
    let callback = format!("{base}/authorize/upstream/oidc/callback");
    let idp = common::oidc_provider::start(&[
        ("OIDC_RESOURCES", &format!("{base}/mcp")),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_REDIRECT_URIS", &callback),
        ("OIDC_NO_DEFAULT_RESOURCE", "1"),
    ]);
    let server = Server::start_with(
        "upstream-oidc",
        &[
            ("NOTES_LISTEN", &listen),
            ("NOTES_UPSTREAM", &idp.issuer),
            ("NOTES_UPSTREAM_CLIENT_ID", CLIENT),
            ("NOTES_UPSTREAM_CLIENT_SECRET", SECRET),
            ("NOTES_VAULT_KEY", VAULT_KEY),
            ("NOTES_UPSTREAM_ALLOW_DOMAINS", "example.com"),
        ],
    );
    let http = reqwest::Client::new();
    let client = register_client(&http, &server, "Notes app").await;
    let tokens = tokens_through_upstream(&http, &server, &idp.issuer, &client, "jane").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(whoami(&http, &server.mcp_url, access).await, 200, "our token opens /mcp");

    // A tool calls the provider for the person, with the provider's token from the vault.
    let session = mcp_session(&http, &server.mcp_url, access).await;
    let answer = call_tool(&http, &server.mcp_url, access, &session, "upstream_profile").await.body;
    assert!(answer.contains("jane@example.com") && answer.contains(r#"\"provider\":\"oidc\""#), "{answer}");

    // The person in the operator's list: a user linked to the provider's subject.
    let users = common::operator(&server.database_url(), &["users", "list"], None);
    assert!(users.contains("oidc:jane"), "{users}");

    // The same person in a fresh browser is the same user; the consent they gave is remembered.
    let mut again = Browser::new();
    let auth_url = authorize_url(&server.base_url, &client.id, &CodeVerifier::generate());
    let (_, location) = sign_in_upstream(&mut again, &server, &idp.issuer, &auth_url, "jane").await;
    assert!(location.as_deref().is_some_and(|l| l.starts_with(REDIRECT) && l.contains("code=")), "{location:?}");
    let users = common::operator(&server.database_url(), &["users", "list"], None);
    assert_eq!(users.matches("oidc:jane").count(), 1, "{users}");

    // The provider keeps the email and the name for its userinfo (its id_token has `sub`
    // only): read there, they admit Jane under the allow-list and name her on our pages.
    let other = register_client(&http, &server, "Another app").await;
    let auth_url = authorize_url(&server.base_url, &other.id, &CodeVerifier::generate());
    let (consent, _) = sign_in_upstream(&mut Browser::new(), &server, &idp.issuer, &auth_url, "jane").await;
    assert!(consent.contains("Signed in as <strong>Jane</strong>"), "the provider's name for her: {consent}");
    // Someone whose verified email is outside the allowed domain is refused, and told plainly.
    let auth_url = authorize_url(&server.base_url, &other.id, &CodeVerifier::generate());
    let login = "mallory@evil.example";
    let (refused, location) = sign_in_upstream(&mut Browser::new(), &server, &idp.issuer, &auth_url, login).await;
    assert!(location.is_none() && refused.contains("may not sign in here"), "{location:?}: {refused}");
    let users = common::operator(&server.database_url(), &["users", "list"], None);
    assert!(!users.contains("mallory"), "no user for a refused person: {users}");

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
    assert!(report.contains("upstream_user_refused") && report.contains("evil.example"), "{report}");
}
