//! `notes-server diagnose`: provoke each failure with a real HTTP flow against the server,
//! then run the command as a process on the same database and check that it names the step,
//! the reason and a fix. The failures that need time to pass (an expired code) or a second
//! authorization server (a token for another resource or issuer) run against the app in this
//! process, on a manual clock, over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::diagnose;
use oauth_core::CodeVerifier;
use serde_json::Value;

const CALLBACK: &str = "http://127.0.0.1:45999/callback";

fn human(db: &str, client_id: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--client-id", client_id, "--database-url", db])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn register(http: &reqwest::Client, base: &str, body: &str) -> Value {
    let resp = http
        .post(format!("{base}/register"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

fn authorize_url(base: &str, client_id: &str, redirect: &str, challenge: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=s",
        enc(redirect)
    )
}

fn code_of(location: &str) -> String {
    url::Url::parse(location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
}

/// POSTs a form to `url`; returns the status and the body.
async fn post_form(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (reqwest::StatusCode, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let resp =
        http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> reqwest::StatusCode {
    post_form(http, &format!("{base}/token"), form).await.0
}

/// The token request that exchanges `code` for the public client `client`.
fn exchange_form<'a>(client: &'a str, code: &'a str, verifier: &'a CodeVerifier) -> [(&'static str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CALLBACK),
        ("client_id", client),
    ]
}

/// Registers a public client named `name`, signs in and approves: the client id, the code and
/// its verifier.
async fn signed_in_code(http: &reqwest::Client, base: &str, name: &str) -> (String, String, CodeVerifier) {
    let body =
        format!(r#"{{"client_name":"{name}","redirect_uris":["{CALLBACK}"],"token_endpoint_auth_method":"none"}}"#);
    let client = register(http, base, &body).await["client_id"].as_str().unwrap().to_owned();
    let verifier = CodeVerifier::generate();
    let challenge = oauth_core::CodeChallenge::s256(&verifier);
    let location = common::Browser::new()
        .sign_in_and_approve_at(base, &authorize_url(base, &client, CALLBACK, challenge.as_str()))
        .await;
    (client, code_of(&location), verifier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_the_failing_step_reason_and_fix() {
    let server = common::Server::start("diagnose");
    let (base, db) = (server.base_url.as_str(), server.database_url());
    let db = db.as_str();
    let http = reqwest::Client::new();
    let public =
        format!(r#"{{"client_name":"diag","redirect_uris":["{CALLBACK}"],"token_endpoint_auth_method":"none"}}"#);
    let verifier = CodeVerifier::generate();
    let challenge = oauth_core::CodeChallenge::s256(&verifier);

    // 1. A redirect URI that differs from the registered one.
    let c1 = register(&http, base, &public).await["client_id"].as_str().unwrap().to_owned();
    let resp = http
        .get(authorize_url(base, &c1, "https://claude.ai/api/mcp/auth_callback", challenge.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let a = diagnose(db, &c1);
    assert_eq!(
        (a["verdict"].as_str(), a["step"].as_str(), a["reason"].as_str()),
        (Some("failed"), Some("authorization_request"), Some("redirect_uri_not_registered")),
        "{a}"
    );
    let detail = a["detail"].as_str().unwrap();
    assert!(
        detail.contains("https://claude.ai/api/mcp/auth_callback") && detail.contains(CALLBACK),
        "the URI sent and the registered ones: {detail}"
    );
    assert!(a["fix"].as_str().unwrap().contains("register that exact URI"), "{a}");

    // 2. A code issued and never exchanged: the silence is the verdict.
    let c2 = register(&http, base, &public).await["client_id"].as_str().unwrap().to_owned();
    let location = common::Browser::new()
        .sign_in_and_approve(&server, &authorize_url(base, &c2, CALLBACK, challenge.as_str()))
        .await;
    let a = diagnose(db, &c2);
    assert_eq!((a["verdict"].as_str(), a["step"].as_str()), (Some("stalled"), Some("code_issued")), "{a}");
    assert!(a["explanation"].as_str().unwrap().contains("never exchanged"), "{a}");

    // 3. The same code exchanged twice.
    let code = code_of(&location);
    let exchange = exchange_form(&c2, &code, &verifier);
    assert_eq!(token(&http, base, &exchange).await, 200);
    assert_eq!(token(&http, base, &exchange).await, 400);
    let a = diagnose(db, &c2);
    assert_eq!((a["step"].as_str(), a["reason"].as_str()), (Some("code_exchange"), Some("code_reused")), "{a}");

    // 4. A wrong client secret (Claude's client_secret_post).
    let conf = register(&http, base, &format!(r#"{{"client_name":"Claude","redirect_uris":["{CALLBACK}"],"token_endpoint_auth_method":"client_secret_post"}}"#)).await;
    let c3 = conf["client_id"].as_str().unwrap().to_owned();
    let status = token(
        &http,
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("code_verifier", verifier.secret()),
            ("client_id", c3.as_str()),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    let a = diagnose(db, &c3);
    assert_eq!((a["step"].as_str(), a["reason"].as_str()), (Some("code_exchange"), Some("client_auth_failed")), "{a}");

    // The human-readable report says the same.
    let text = human(db, &c1);
    assert!(
        text.contains("FAILED at authorization_request: redirect_uri_not_registered") && text.contains("fix: "),
        "{text}"
    );
    println!("{text}");
}

/// A second authorization server on the same database (so the same signing keys) with another
/// issuer or resource: its tokens have a valid signature but are not for the example.
async fn token_from_another_server(
    stores: &oauth_core::Stores,
    issuer: &str,
    resource: &str,
    clock: std::sync::Arc<oauth_core::ManualClock>,
) -> (String, String) {
    use oauth_core::{Issuer, ResourceUri};

    let config = oauth_core::ServerConfig::new(Issuer::parse(issuer).unwrap(), ResourceUri::parse(resource).unwrap());
    let other = oauth_core::AuthorizationServer::with_clock(config, stores.clone(), clock).await.unwrap();
    let (client, tokens) = oauth_core::testing::tokens_for_new_client(&other, CALLBACK, "someone").await;
    (client.to_string(), tokens.access_token)
}

async fn call_mcp(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    http.post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_expired_codes_and_tokens_for_another_resource_or_issuer() {
    let (base, db, server, clock) = common::app_on_a_manual_clock("clock").await;
    let http = reqwest::Client::new();

    // 1. A code left to expire: the exchange comes after the code's 5 minutes.
    let (client, code, verifier) = signed_in_code(&http, &base, "diag").await;
    clock.advance(server.config().code_ttl + std::time::Duration::from_secs(1));
    let exchange = exchange_form(&client, &code, &verifier);
    assert_eq!(token(&http, &base, &exchange).await, 400);
    let a = diagnose(&db, &client);
    assert_eq!((a["step"].as_str(), a["reason"].as_str()), (Some("code_exchange"), Some("code_expired")), "{a}");
    assert!(a["fix"].as_str().unwrap().contains("expired before the client exchanged it"), "{a}");

    // 2. A token for another resource on the same issuer and keys: the audience is wrong.
    let other_resource = format!("{base}/other-mcp");
    let (client, access) =
        token_from_another_server(server.operator().stores(), &base, &other_resource, clock.clone()).await;
    let resp = call_mcp(&http, &base, &access).await;
    assert_eq!(resp.status(), 401);
    let www = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(www.contains("invalid_token"), "{www}");
    let a = diagnose(&db, &client);
    assert_eq!(
        (a["step"].as_str(), a["reason"].as_str()),
        (Some("resource_access"), Some("token_audience_mismatch")),
        "{a}"
    );
    assert!(a["detail"].as_str().unwrap().contains(&other_resource), "the audience presented: {a}");

    // 3. A token from another issuer with the same keys and resource.
    let other_issuer = base.replace("127.0.0.1", "localhost");
    let (client, access) =
        token_from_another_server(server.operator().stores(), &other_issuer, &format!("{base}/mcp"), clock.clone())
            .await;
    assert_eq!(call_mcp(&http, &base, &access).await.status(), 401);
    let a = diagnose(&db, &client);
    assert_eq!(
        (a["step"].as_str(), a["reason"].as_str()),
        (Some("resource_access"), Some("token_issuer_mismatch")),
        "{a}"
    );
    let text = human(&db, &client);
    assert!(text.contains("FAILED at resource_access: token_issuer_mismatch"), "{text}");
    println!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once_and_diagnosed() {
    let (base, db, _server, _clock) = common::app_on_a_manual_clock("revoke").await;
    let http = reqwest::Client::new();
    let (client, code, verifier) = signed_in_code(&http, &base, "revoked").await;
    let exchange = exchange_form(&client, &code, &verifier);
    let (status, body) = post_form(&http, &format!("{base}/token"), &exchange).await;
    assert_eq!(status, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // Accepted (and cached by the guard) before the revocation...
    let before = call_mcp(&http, &base, &access).await;
    assert_ne!(before.status(), 401, "a fresh token is accepted");
    // ...refused right after it, although its signature and `exp` are still good.
    let revoke = [("token", access.as_str()), ("client_id", client.as_str())];
    assert_eq!(post_form(&http, &format!("{base}/revoke"), &revoke).await.0, 200);
    assert_eq!(call_mcp(&http, &base, &access).await.status(), 401);
    let a = diagnose(&db, &client);
    assert_eq!((a["step"].as_str(), a["reason"].as_str()), (Some("resource_access"), Some("grant_revoked")), "{a}");
}
