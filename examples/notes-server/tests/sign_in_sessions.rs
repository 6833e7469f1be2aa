//! Sign-in sessions live on the server: a browser that signed in cannot approve anything once
//! its user is removed, disabled or given a new password, and signing out ends the session
//! for every copy of the cookie. Each test drives the real binary over a socket as a browser
//! would, and changes the user as the operator does, with the binary's subcommands on the
//! same database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use oauth_core::CodeVerifier;

const CALLBACK: &str = "http://127.0.0.1:45998/callback";

/// A newly registered public client's authorization URL.
async fn new_request(base: &str) -> String {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/register"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"client_name":"s","redirect_uris":["{CALLBACK}"],"token_endpoint_auth_method":"none"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let client: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let challenge = oauth_core::CodeChallenge::s256(&CodeVerifier::generate());
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{base}/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state=s",
        client["client_id"].as_str().unwrap(),
        enc(CALLBACK),
        challenge.as_str()
    )
}

/// A consent page's form.
struct ConsentForm {
    page: String,
    pending: String,
    csrf: String,
}

/// Signs in at a new client's request; the consent page it leads to.
async fn signed_in(browser: &mut common::Browser, base: &str) -> ConsentForm {
    let (status, page, _) = browser.get(&new_request(base).await).await;
    assert_eq!(status, 200, "{page}");
    let action = format!("{base}{}", common::attribute(&page, "action=\""));
    let pending = common::attribute(&page, "name=\"pending\" value=\"");
    let csrf = common::attribute(&page, "name=\"csrf\" value=\"");
    let (status, page, _) = browser
        .post_form(
            &action,
            &[("pending", &pending), ("csrf", &csrf), ("username", common::USERNAME), ("password", common::PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("value=\"approve\""), "not the consent page:\n{page}");
    let csrf = common::attribute(&page, "name=\"csrf\" value=\"");
    ConsentForm { page, pending, csrf }
}

/// Approves a consent form: the status, the page and the redirect location.
async fn approve(
    browser: &mut common::Browser,
    base: &str,
    form: &ConsentForm,
) -> (reqwest::StatusCode, String, Option<String>) {
    browser
        .post_form(
            &format!("{base}/authorize/consent"),
            &[("pending", &form.pending), ("csrf", &form.csrf), ("decision", "approve")],
        )
        .await
}

fn is_sign_in_page(page: &str) -> bool {
    page.contains("name=\"password\"") && !page.contains("value=\"approve\"")
}

/// The browser, still holding its session cookie, can approve neither the consent page it has
/// open nor a new client's request: both send it back to the sign-in page.
async fn assert_session_ended(browser: &mut common::Browser, base: &str, form: &ConsentForm, why: &str) {
    let (status, page, location) = approve(browser, base, form).await;
    assert!(location.is_none(), "{why}: the consent post still issued a code: {location:?}");
    assert_eq!(status, 200, "{why}: {page}");
    assert!(is_sign_in_page(&page), "{why}: expected the sign-in page:\n{page}");
    let (status, page, location) = browser.get(&new_request(base).await).await;
    assert!(location.is_none(), "{why}: a new request was approved silently: {location:?}");
    assert_eq!(status, 200, "{why}: {page}");
    assert!(is_sign_in_page(&page), "{why}: a new request skipped the sign-in page:\n{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_users_browser_session_cannot_approve() {
    let server = common::Server::start("session-removed");
    let mut browser = common::Browser::new();
    let form = signed_in(&mut browser, &server.base_url).await;
    common::operator(&server.database_url(), &["users", "remove", common::USERNAME], None);
    assert_session_ended(&mut browser, &server.base_url, &form, "user removed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_users_browser_session_cannot_approve() {
    let server = common::Server::start("session-disabled");
    let mut browser = common::Browser::new();
    let form = signed_in(&mut browser, &server.base_url).await;
    // Disabled behind the server's back, straight in the database: the server must notice on
    // its own, not only when the operator's command tells it.
    let stores = mcp_auth::open_database(&server.database_url()).await.unwrap();
    let mut user = stores.users.user_by_username(common::USERNAME).await.unwrap().unwrap();
    user.disabled = true;
    assert!(stores.users.update_user(&user).await.unwrap());
    assert_session_ended(&mut browser, &server.base_url, &form, "user disabled in the database").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_passworded_users_browser_session_cannot_approve() {
    let server = common::Server::start("session-passwd");
    let mut browser = common::Browser::new();
    let form = signed_in(&mut browser, &server.base_url).await;
    common::operator(&server.database_url(), &["users", "passwd", common::USERNAME], Some("a brand new password\n"));
    assert_session_ended(&mut browser, &server.base_url, &form, "password changed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_ends_the_session_for_every_copy_of_the_cookie() {
    let server = common::Server::start("session-sign-out");
    let base = server.base_url.as_str();
    let mut browser = common::Browser::new();
    let form = signed_in(&mut browser, base).await;
    assert!(form.page.contains("Sign out"), "the consent page offers no sign-out:\n{}", form.page);
    // Someone copied the cookie before the person signed out.
    let mut copy = browser.clone();

    let sign_out =
        format!("{base}{}", common::attribute(&form.page, "<form class=\"sign-out\" method=\"post\" action=\""));
    assert!(sign_out.ends_with("/authorize/sign-out"), "{sign_out}");
    let (status, page, _) = browser.post_form(&sign_out, &[("pending", &form.pending), ("csrf", &form.csrf)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(is_sign_in_page(&page), "after signing out, the sign-in page again:\n{page}");
    assert_session_ended(&mut browser, base, &form, "signed out").await;
    assert_session_ended(&mut copy, base, &form, "signed out, copied cookie").await;

    // A sign-out post without the page's CSRF token changes nothing.
    let mut other = common::Browser::new();
    let form = signed_in(&mut other, base).await;
    let (status, _, _) = other.post_form(&sign_out, &[("pending", &form.pending), ("csrf", "forged")]).await;
    assert_eq!(status, 403);
    let (status, _, location) = approve(&mut other, base, &form).await;
    assert_eq!(status, 303, "a forged sign-out must not end the session");
    assert!(location.unwrap().contains("code="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disable_and_enable_commands_end_sessions_and_restore_sign_in() {
    let server = common::Server::start("session-disable-cmd");
    let (base, db) = (server.base_url.as_str(), server.database_url());
    let mut browser = common::Browser::new();
    let form = signed_in(&mut browser, base).await;
    let out = common::operator(&db, &["users", "disable", common::USERNAME], None);
    assert!(out.contains("disabled"), "{out}");
    assert!(common::operator(&db, &["users", "list"], None).contains(" disabled "));
    assert_session_ended(&mut browser, base, &form, "disabled by the command").await;
    common::operator(&db, &["users", "enable", common::USERNAME], None);
    let form = signed_in(&mut browser, base).await;
    let (status, _, location) = approve(&mut browser, base, &form).await;
    assert_eq!(status, 303);
    assert!(location.unwrap().contains("code="));
}
