//! What a stranger tries against the example server with its defaults, over a real socket:
//! each test is an attack found in a security review, done as the attacker would do it, and
//! asserts that it no longer works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::flow::{FormBody as _, json, refresh, register, token, user_tokens, whoami};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// `whoami` called with the official Rust SDK's client, as a real MCP client would.
async fn call_whoami(mcp_url: &str, access_token: &str) -> Value {
    use rmcp::ServiceExt as _;
    use rmcp::model::{CallToolRequestParams, ClientConfig};
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp_url).auth_header(access_token),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let who = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    serde_json::from_str(serde_json::to_value(&who.content).unwrap()[0]["text"].as_str().unwrap()).unwrap()
}

fn claims(access_token: &str) -> Value {
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Finding: `POST /register` with `grant_types: ["client_credentials"]`, then
/// `grant_type=client_credentials` at `/token`, gave anyone an MCP token without an account.
#[tokio::test]
async fn a_stranger_gets_no_token_from_registration_and_client_credentials() {
    let server = common::Server::start("attack-cc");
    let http = reqwest::Client::new();
    let (status, reg) = register(
        &http,
        &server.base_url,
        serde_json::json!({
            "client_name": "stranger", "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    if status == 201 {
        assert!(
            !reg["grant_types"].as_array().unwrap().iter().any(|g| g == "client_credentials"),
            "a self-registered client was granted client_credentials: {reg}"
        );
        let (status, body) = token(
            &http,
            &server.base_url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", reg["client_id"].as_str().unwrap()),
                ("client_secret", reg["client_secret"].as_str().unwrap_or_default()),
            ],
        )
        .await;
        assert_ne!(status, 200, "a self-registered client obtained a machine token: {body}");
        assert!(body["access_token"].is_null());
    } else {
        assert_eq!(status, 400, "{reg}");
        assert_eq!(reg["error"], "invalid_client_metadata");
    }
    // The metadata does not offer the grant at all by default.
    let meta: Value = http
        .get(format!("{}/.well-known/oauth-authorization-server", server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!meta["grant_types_supported"].as_array().unwrap().iter().any(|g| g == "client_credentials"), "{meta}");
}

/// Finding: a refresh token's successor was `HMAC(key = the token, grant id ‖ generation)`, and
/// the grant id is every access token's `gid`: whoever held an old refresh token and one access
/// token computed the current refresh token offline.
#[tokio::test]
async fn a_stolen_old_refresh_token_does_not_yield_the_current_one() {
    let server = common::Server::start("attack-refresh");
    let http = reqwest::Client::new();
    let t = user_tokens(&server, &http, "victim").await;
    let stolen = t.refresh_token.clone();
    let gid = claims(&t.access_token)["gid"].as_str().unwrap().to_owned();

    // The victim refreshes twice.
    let mut current = t.refresh_token.clone();
    for _ in 0..2 {
        let (status, body) = refresh(&http, &server.base_url, &t, &current).await;
        assert_eq!(status, 200, "{body}");
        current = body["refresh_token"].as_str().unwrap().to_owned();
    }

    // The thief derives generations 1 and 2 from the stolen generation 0 with the old formula.
    let old_successor = |token: &str, generation: u64| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, token.as_bytes());
        let mut msg = gid.as_bytes().to_vec();
        msg.push(0);
        msg.extend_from_slice(&generation.to_be_bytes());
        URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, &msg).as_ref())
    };
    let derived = old_successor(&old_successor(&stolen, 1), 2);
    assert_ne!(derived, current, "the current refresh token is computable from an old one and the gid");

    // Presenting the stale stolen token is a reuse: the family dies, the victim's current token too.
    let (status, body) = refresh(&http, &server.base_url, &t, &stolen).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = refresh(&http, &server.base_url, &t, &current).await;
    assert_eq!(status, 400, "the family survived a replay of a stale token: {body}");
}

/// Finding: any self-registered confidential client could introspect anyone's tokens
/// (RFC 7662 section 4: the endpoint must be protected against token scanning).
#[tokio::test]
async fn a_strangers_client_cannot_introspect_other_tokens() {
    let server = common::Server::start("attack-introspect");
    let http = reqwest::Client::new();
    let victim = user_tokens(&server, &http, "victim").await;
    let (status, reg) = register(
        &http,
        &server.base_url,
        serde_json::json!({
            "client_name": "scanner", "redirect_uris": ["https://scanner.example/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let (id, secret) = (reg["client_id"].as_str().unwrap(), reg["client_secret"].as_str().unwrap());
    for token in [&victim.access_token, &victim.refresh_token] {
        let (status, body) = json(
            http.post(format!("{}/introspect", server.base_url))
                .basic_auth(id, Some(secret))
                .form_body(&[("token", token.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, serde_json::json!({"active": false}), "a stranger's client learned about a token");
    }
    // The token's own client may ask about its own tokens.
    let (_, own) = json(
        http.post(format!("{}/introspect", server.base_url))
            .basic_auth(&victim.client_id, Some(&victim.client_secret))
            .form_body(&[("token", victim.access_token.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(own["active"], true, "{own}");
    // The token still works at the MCP endpoint: introspection by others changed nothing.
    assert_eq!(whoami(&http, &server.mcp_url, &victim.access_token).await, 200);
}

fn add_machine_client(server: &common::Server) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["clients", "add", "--name", "nightly report", "--machine"])
        .env("DATABASE_URL", server.database_url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap().to_owned())
            .unwrap()
    };
    (field("client_id: "), field("client_secret: "))
}

/// A machine client exists only when the operator creates one, gets tokens only where the
/// deployment allows it, and its tokens reach the tools as a machine, never as a user.
#[tokio::test]
async fn an_operators_machine_client_is_a_machine_and_only_where_allowed() {
    let http = reqwest::Client::new();
    // Default: the grant is off even for the operator's machine client.
    let closed = common::Server::start("attack-machine-off");
    let (id, secret) = add_machine_client(&closed);
    let (status, body) = json(
        http.post(format!("{}/token", closed.base_url))
            .basic_auth(&id, Some(&secret))
            .form_body(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("unsupported_grant_type")), "{body}");

    // Allowed: a token whose caller is the machine client.
    let open = common::Server::start_with("attack-machine-on", &[("NOTES_MACHINE_CLIENTS", "true")]);
    let (id, secret) = add_machine_client(&open);
    let (status, body) = json(
        http.post(format!("{}/token", open.base_url))
            .basic_auth(&id, Some(&secret))
            .form_body(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let c = claims(&access);
    assert_eq!((c["machine"].as_bool(), c["sub"].as_str()), (Some(true), Some(format!("client:{id}").as_str())));
    assert!(c["gid"].is_string(), "backed by a revocable grant: {c}");
    let who = call_whoami(&open.mcp_url, &access).await;
    assert_eq!(
        (who["caller"].as_str(), who["username"].as_str()),
        (Some("machine client"), Some(id.as_str())),
        "{who}"
    );

    // Revoked (RFC 7009 by the client itself): refused at the MCP endpoint at once.
    let r = http
        .post(format!("{}/revoke", open.base_url))
        .basic_auth(&id, Some(&secret))
        .form_body(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        whoami(&http, &open.mcp_url, &access).await,
        401,
        "a revoked machine token still opens the MCP endpoint"
    );
}

/// Every stored flow event in the server's database within the last hour.
fn stored_events(server: &common::Server) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .args(["diagnose", "--json", "--all", "--since", "1h", "--database-url", &server.database_url()])
        .output()
        .expect("run notes-server diagnose");
    assert!(out.status.success(), "diagnose failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let mut events = Vec::new();
    for client in report.as_array().expect("one report per client") {
        for attempt in client["attempts"].as_array().expect("attempts") {
            events.extend(attempt["events"].as_array().expect("events").iter().cloned());
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_client_authentication_is_not_a_flood_of_writes() {
    let server = common::Server::start("attack-auth-flood");
    let http = reqwest::Client::new();
    let (status, reg) = register(
        &http,
        &server.base_url,
        serde_json::json!({
            "client_name": "victim", "redirect_uris": ["https://victim.example/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        }),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let victim = reg["client_id"].as_str().unwrap().to_owned();
    // 100 wrong secrets for one client, within the per-address token limit.
    for i in 0..100 {
        let wrong = format!("guess-{i}");
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", &victim),
            ("client_secret", &wrong),
        ];
        let (status, body) = token(&http, &server.base_url, &form).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    }
    // 300 made-up client ids, from three addresses so that no address meets its limit.
    for source in 2..=4u8 {
        let from =
            reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, source])).build().unwrap();
        for i in 0..100 {
            let id = format!("made-up-{source}-{i}");
            let (status, body) = token(
                &from,
                &server.base_url,
                &[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", &id)],
            )
            .await;
            assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("invalid_client")), "{body}");
        }
    }
    let events = stored_events(&server);
    let failed_for_victim =
        events.iter().filter(|e| e["client_id"] == victim.as_str() && e["reason"] == "client_auth_failed").count();
    assert_eq!(failed_for_victim, 1, "100 wrong secrets for one client within seconds are stored once");
    let made_up = events.iter().filter(|e| e["client_id"].as_str().is_some_and(|c| c.starts_with("made-up-"))).count();
    // 100 per 10 s in all; the 300 requests take far less than 20 s, so one window rollover at most.
    assert!((1..=200).contains(&made_up), "{made_up} of 300 made-up client ids were stored");
    // Every refusal is still in the log, where the operator's log pipeline sees it.
    assert!(server.log().matches("client_auth_failed").count() >= 100, "refusals are logged");
}
