//! Consent a person can read and take back, over a real socket against the notes-server
//! binary: remembered consent is not replayed to a public client whose code goes to a
//! loopback port (RFC 8252 8.6), the consent page says which client names are unverified, and
//! "Connected apps" revokes a client's grant so that its access token fails at the guard and
//! its refresh token at `/token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Browser, attribute};
use oauth_core::CodeVerifier;
use serde_json::Value;

const CALLBACK: &str = "http://127.0.0.1:45999/callback";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn register(base: &str, name: &str, redirect: &str, auth: &str) -> Value {
    let body = serde_json::json!({
        "client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": auth,
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let resp = reqwest::Client::new().post(format!("{base}/register")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

fn authorize_url(base: &str, client_id: &str, redirect: &str, verifier: &CodeVerifier) -> String {
    let challenge = oauth_core::CodeChallenge::s256(verifier);
    format!(
        "{base}/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state=s&scope=mcp%3Atools",
        enc(client_id),
        enc(redirect),
        challenge.as_str()
    )
}

fn code_of(location: &str) -> String {
    url::Url::parse(location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (reqwest::StatusCode, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn call_mcp(base: &str, token: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_loopback_client_with_remembered_consent_sees_the_consent_page_again() {
    let server = common::Server::start("consent-loopback");
    let base = server.base_url.as_str();
    let client = register(base, "Loopback App", CALLBACK, "none").await["client_id"].as_str().unwrap().to_owned();
    let mut browser = Browser::new();
    let verifier = CodeVerifier::generate();
    browser.sign_in_and_approve(&server, &authorize_url(base, &client, CALLBACK, &verifier)).await;

    // Another program on this machine sends the same client id with its own loopback port: the
    // signed-in browser must not hand it a code without asking.
    let other_port = "http://127.0.0.1:46001/callback";
    let (status, page, location) = browser.get(&authorize_url(base, &client, other_port, &verifier)).await;
    assert_eq!(status, 200, "consent page expected, got a redirect to {location:?}");
    assert!(page.contains("value=\"approve\""), "{page}");
    assert!(page.contains("asked again"), "the page says why it asks again: {page}");
    let log = server.log();
    assert!(
        log.contains("remembered consent not replayed") && log.contains("RFC 8252 8.6"),
        "a flow event says why the page is shown again:\n{log}"
    );

    // The rule is about loopback (and private-use) redirects of public clients, not about
    // remembered consent as such: a public client whose code goes to its https host skips.
    let https = "https://claude.ai/api/mcp/auth_callback";
    let web = register(base, "Web App", https, "none").await["client_id"].as_str().unwrap().to_owned();
    let first = browser.get(&authorize_url(base, &web, https, &verifier)).await;
    assert_eq!(first.0, 200, "first time: consent page");
    let csrf = attribute(&first.1, "name=\"csrf\" value=\"");
    let pending = attribute(&first.1, "name=\"pending\" value=\"");
    let action = format!("{base}{}", attribute(&first.1, "action=\""));
    let (status, _, _) =
        browser.post_form(&action, &[("pending", &pending), ("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(status, 303);
    let (status, _, location) = browser.get(&authorize_url(base, &web, https, &verifier)).await;
    assert_eq!(status, 303, "remembered consent to an https client is replayed");
    assert!(location.unwrap().starts_with(https));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_page_marks_a_dcr_clients_name_unverified() {
    let server = common::Server::start("consent-unverified");
    let base = server.base_url.as_str();
    // Anyone can register any name: this one claims to be Claude.
    let client = register(base, "Claude", CALLBACK, "none").await["client_id"].as_str().unwrap().to_owned();
    let mut browser = Browser::new();
    let verifier = CodeVerifier::generate();
    let (status, page, _) = browser.get(&authorize_url(base, &client, CALLBACK, &verifier)).await;
    assert_eq!(status, 200, "{page}");
    let action = format!("{base}{}", attribute(&page, "action=\""));
    let pending = attribute(&page, "name=\"pending\" value=\"");
    let csrf = attribute(&page, "name=\"csrf\" value=\"");
    let (status, consent, _) = browser
        .post_form(
            &action,
            &[("pending", &pending), ("csrf", &csrf), ("username", common::USERNAME), ("password", common::PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{consent}");
    assert!(consent.contains("unverified"), "the self-asserted name is marked unverified:\n{consent}");
    assert!(consent.contains("registered itself on this server"), "what the client is:\n{consent}");
    // The scope's description from the configuration, not only the raw scope string.
    assert!(consent.contains("Read and add your notes"), "the scope is described:\n{consent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_from_connected_apps_ends_the_clients_access_and_refresh_tokens() {
    let server = common::Server::start("connected-apps");
    let base = server.base_url.as_str();
    let client = register(base, "Notes Desk", CALLBACK, "none").await["client_id"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::generate();
    let location =
        Browser::new().sign_in_and_approve(&server, &authorize_url(base, &client, CALLBACK, &verifier)).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", &code_of(&location)),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CALLBACK),
        ("client_id", &client),
    ];
    let (status, body) = post_form(&format!("{base}/token"), &exchange).await;
    assert_eq!(status, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(call_mcp(base, &access).await, 200, "the token works before the revocation");

    // Not signed in in this browser: the page offers sign-in, then lists the client.
    let apps = format!("{base}/account/apps");
    let mut browser = Browser::new();
    let (status, page, _) = browser.get(&apps).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("name=\"password\""), "a sign-in form:\n{page}");
    let action = format!("{base}{}", attribute(&page, "action=\""));
    let csrf = attribute(&page, "name=\"csrf\" value=\"");
    let (status, wrong, _) =
        browser.post_form(&action, &[("csrf", &csrf), ("username", common::USERNAME), ("password", "nope")]).await;
    assert_eq!(status, 200);
    assert!(wrong.contains("Wrong username or password"), "{wrong}");
    let (status, _, back) = browser
        .post_form(&action, &[("csrf", &csrf), ("username", common::USERNAME), ("password", common::PASSWORD)])
        .await;
    assert_eq!((status.as_u16(), back.as_deref()), (303, Some("/account/apps")));
    let (status, page, _) = browser.get(&apps).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Notes Desk") && page.contains("mcp:tools"), "the client is listed:\n{page}");

    // A revoke without the form's CSRF token is refused and changes nothing.
    let revoke = format!("{base}{}", attribute(&page, "<form method=\"post\" action=\""));
    let (status, _, _) = browser.post_form(&revoke, &[("client", &client), ("csrf", "forged")]).await;
    assert_eq!(status, 403);
    assert_eq!(call_mcp(base, &access).await, 200, "a forged revoke changed nothing");

    let csrf = attribute(&page, "name=\"csrf\" value=\"");
    let (status, _, back) = browser.post_form(&revoke, &[("client", &client), ("csrf", &csrf)]).await;
    assert_eq!((status.as_u16(), back.as_deref()), (303, Some("/account/apps")));
    let (_, page, _) = browser.get(&apps).await;
    assert!(!page.contains("Notes Desk"), "the client is gone from the list:\n{page}");

    // The access token fails at the guard, the refresh token at /token.
    assert_eq!(call_mcp(base, &access).await, 401, "the access token is refused after the revocation");
    let (status, body) = post_form(
        &format!("{base}/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client)],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_grant", "{body}");
    assert!(server.log().contains("revoked from Connected apps"), "a flow event for the revocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connected_apps_sign_in_is_rate_limited_like_the_flows_sign_in() {
    let server = common::Server::start("apps-sign-in-limit");
    let base = server.base_url.as_str();
    let mut browser = Browser::new();
    let (_, page, _) = browser.get(&format!("{base}/account/apps")).await;
    let action = format!("{base}{}", attribute(&page, "action=\""));
    let csrf = attribute(&page, "name=\"csrf\" value=\"");
    let mut statuses = Vec::new();
    // A different account each time, so that only the per-address limit applies (one account's
    // guesses meet the per-account throttle first: tests/limits.rs).
    for i in 0..12 {
        let username = format!("someone-{i}");
        let (status, _, _) =
            browser.post_form(&action, &[("csrf", &csrf), ("username", &username), ("password", "guess")]).await;
        statuses.push(status.as_u16());
    }
    // The sign-in class allows a burst of 10 per address, then answers 429.
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[11], 429, "password guessing is throttled: {statuses:?}");
}
