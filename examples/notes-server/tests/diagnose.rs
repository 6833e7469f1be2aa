//! `notes-server diagnose`: provoke each failure with a real HTTP flow against the running
//! server, then run the command as a process on the same database and check that it names
//! the step, the reason and a fix.

mod common;

use std::process::Command;

use serde_json::Value;

const CALLBACK: &str = "http://127.0.0.1:45999/callback";

fn diagnose(server: &common::Server, client_id: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--json", "--since", "1h", "--client-id", client_id, "--database-url"])
        .arg(server.database_url())
        .output()
        .expect("run notes-server diagnose");
    assert!(out.status.success(), "diagnose failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report[0]["client_id"], client_id, "{report}");
    report[0]["attempts"].as_array().expect("attempts").last().expect("an attempt").clone()
}

fn human(server: &common::Server, client_id: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--client-id", client_id, "--database-url"])
        .arg(server.database_url())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn register(http: &reqwest::Client, server: &common::Server, body: &str) -> Value {
    let resp = http
        .post(format!("{}/register", server.base_url))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

fn authorize_url(server: &common::Server, client_id: &str, redirect: &str, challenge: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=s",
        server.base_url,
        enc(redirect)
    )
}

fn code_of(location: &str) -> String {
    url::Url::parse(location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
}

async fn token(http: &reqwest::Client, server: &common::Server, form: &[(&str, &str)]) -> reqwest::StatusCode {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    http.post(format!("{}/token", server.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_the_failing_step_reason_and_fix() {
    let server = common::Server::start("diagnose");
    let http = reqwest::Client::new();
    let public =
        format!(r#"{{"client_name":"diag","redirect_uris":["{CALLBACK}"],"token_endpoint_auth_method":"none"}}"#);
    let verifier = oauth_core::secret::CodeVerifier::generate();
    let challenge = oauth_core::pkce::CodeChallenge::s256(&verifier);

    // 1. A redirect URI that differs from the registered one.
    let c1 = register(&http, &server, &public).await["client_id"].as_str().unwrap().to_owned();
    let resp = http
        .get(authorize_url(&server, &c1, "https://claude.ai/api/mcp/auth_callback", challenge.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let a = diagnose(&server, &c1);
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
    let c2 = register(&http, &server, &public).await["client_id"].as_str().unwrap().to_owned();
    let location = common::Browser::new()
        .sign_in_and_approve(&server, &authorize_url(&server, &c2, CALLBACK, challenge.as_str()))
        .await;
    let a = diagnose(&server, &c2);
    assert_eq!((a["verdict"].as_str(), a["step"].as_str()), (Some("stalled"), Some("code_issued")), "{a}");
    assert!(a["explanation"].as_str().unwrap().contains("never exchanged"), "{a}");

    // 3. The same code exchanged twice.
    let code = code_of(&location);
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CALLBACK),
        ("client_id", c2.as_str()),
    ];
    assert_eq!(token(&http, &server, &exchange).await, 200);
    assert_eq!(token(&http, &server, &exchange).await, 400);
    let a = diagnose(&server, &c2);
    assert_eq!((a["step"].as_str(), a["reason"].as_str()), (Some("code_exchange"), Some("code_reused")), "{a}");

    // 4. A wrong client secret (Claude's client_secret_post).
    let conf = register(&http, &server, &format!(r#"{{"client_name":"Claude","redirect_uris":["{CALLBACK}"],"token_endpoint_auth_method":"client_secret_post"}}"#)).await;
    let c3 = conf["client_id"].as_str().unwrap().to_owned();
    let status = token(
        &http,
        &server,
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
    let a = diagnose(&server, &c3);
    assert_eq!((a["step"].as_str(), a["reason"].as_str()), (Some("code_exchange"), Some("client_auth_failed")), "{a}");

    // The human-readable report says the same.
    let text = human(&server, &c1);
    assert!(
        text.contains("FAILED at authorization_request: redirect_uri_not_registered") && text.contains("fix: "),
        "{text}"
    );
    println!("{text}");
}
