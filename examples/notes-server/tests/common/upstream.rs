//! A person's trip through an upstream identity provider (node-oidc-provider's development
//! pages): from our sign-in page to the provider, its login and consent, and back to our
//! callback; then our consent and the client's tokens.

use oauth_core::CodeVerifier;
use serde_json::Value;

use super::flow::{REDIRECT, authorize_url, code_in, register, token};
use super::{Browser, Server, attribute};

/// From our sign-in page to the provider and back to our callback, as the person `login`:
/// what our callback answers, the page or where it redirects.
pub async fn sign_in_upstream(
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

/// Approves the request on our consent page `consent` (what [`sign_in_upstream`] answered):
/// the redirect location with the code.
pub async fn approve(b: &mut Browser, server: &Server, consent: &str) -> String {
    assert!(consent.contains("name=\"decision\""), "our consent page after the provider: {consent}");
    let action = format!("{}{}", server.base_url, attribute(consent, "action=\""));
    let pending = attribute(consent, "name=\"pending\" value=\"");
    let csrf = attribute(consent, "name=\"csrf\" value=\"");
    let (status, _, location) =
        b.post_form(&action, &[("pending", &pending), ("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(status, 303);
    location.expect("a redirect to the client")
}

/// A confidential client registered over DCR at `server`.
pub struct Client {
    pub id: String,
    pub secret: String,
}

/// Registers a confidential client of `server` redirecting to [`REDIRECT`], with refresh tokens.
pub async fn register_client(http: &reqwest::Client, server: &Server, name: &str) -> Client {
    let (status, reg) = register(
        http,
        &server.base_url,
        serde_json::json!({
            "client_name": name, "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    Client {
        id: reg["client_id"].as_str().unwrap().to_owned(),
        secret: reg["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// `client`'s tokens for the person `login`, who signs in at the provider `issuer` through
/// `server` in a new browser, and approves there: the token response.
pub async fn tokens_through_upstream(
    http: &reqwest::Client,
    server: &Server,
    issuer: &str,
    client: &Client,
    login: &str,
) -> Value {
    let verifier = CodeVerifier::generate();
    let mut b = Browser::new();
    let auth_url = authorize_url(&server.base_url, &client.id, &verifier);
    let (consent, _) = sign_in_upstream(&mut b, server, issuer, &auth_url, login).await;
    let code = code_in(&approve(&mut b, server, &consent).await);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.secret()),
        ("client_id", &client.id),
        ("client_secret", &client.secret),
    ];
    let (status, tokens) = token(http, &server.base_url, &form).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// An absolute URL for a `Location` that may be relative to `origin`.
fn absolute(origin: &str, location: &str) -> String {
    if location.starts_with("http") { location.to_owned() } else { format!("{origin}{location}") }
}
