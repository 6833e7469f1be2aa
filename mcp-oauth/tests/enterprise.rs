//! Enterprise-Managed Authorization over a real socket: a client presents an ID-JAG its
//! enterprise IdP signed (the IdP is this test: its own key, its own claims) with the jwt-bearer
//! grant, gets a token for the person the IdP vouches for, and that token opens the MCP
//! endpoint. Then what an attacker or a misconfigured IdP sends, each refused with its own
//! reason in the flow events: a replay, another audience, an assertion issued to another
//! client, an untrusted issuer, an expired one, a person with no account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_oauth::McpAuth;
use oauth_core::{
    ClientId, Clock as _, EnterpriseIdp, EventQuery, FlowStep, GrantType, IdpKeys, KeySet, NewClient, Reason,
    RedirectUri, SigningAlgorithm, StoredKey, SystemClock, UnixTime,
};
use oauth_store_memory::MemoryStore;

const IDP: &str = "https://idp.example.com/oauth2";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ema-test","version":"1"}}}"#;

struct Idp {
    kid: String,
    key: EncodingKey,
    jwks: oauth_core::Jwks,
}

fn idp_key() -> Idp {
    let stored = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
    let jwks = KeySet::load(std::slice::from_ref(&stored), SigningAlgorithm::Es256).unwrap().jwks();
    Idp { kid: stored.kid.clone(), key: EncodingKey::from_ec_der(&stored.private_der), jwks }
}

fn now() -> i64 {
    SystemClock.now().as_secs()
}

fn id_jag(idp: &Idp, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some(idp.kid.clone());
    jsonwebtoken::encode(&header, claims, &idp.key).unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

async fn echo() -> &'static str {
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enterprise_idps_assertion_signs_the_person_in_and_every_bad_one_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let idp = idp_key();
    let client_id = ClientId::parse("enterprise-app").unwrap();
    let other_client = ClientId::parse("other-app").unwrap();
    let trusted =
        EnterpriseIdp::new(IDP, IdpKeys::Inline(idp.jwks.clone()), vec![client_id.clone(), other_client.clone()])
            .link_by_email();
    let stores = MemoryStore::new().into_stores();
    let auth = McpAuth::builder(&origin)
        .store(stores.clone())
        .configure_server(move |c| c.with_enterprise_idp(trusted))
        .build()
        .await
        .unwrap();
    let mcp = auth.protect(axum::routing::post(echo));
    let app = auth.routes().nest_service(auth.mcp_path(), mcp);
    tokio::spawn(mcp_oauth::serve(listener, app));
    let server = auth.server().unwrap().clone();
    let mcp_url = format!("{origin}{}", auth.mcp_path());

    let meta = server.metadata();
    assert!(meta.grant_types_supported.contains(&oauth_core::JWT_BEARER_GRANT.to_owned()), "advertised");
    let op = server.operator();
    let mut secrets = Vec::new();
    for id in [&client_id, &other_client] {
        let spec = NewClient::new("Enterprise app", vec![RedirectUri::parse("https://app.example/cb").unwrap()])
            .confidential()
            .with_client_id(id.clone())
            .with_grant_types(vec![GrantType::AuthorizationCode, GrantType::JwtBearer]);
        secrets.push(op.create_client(spec).await.unwrap().secret.unwrap());
    }
    let alice =
        oauth_core::create_user(&*stores.users, "alice@corp.example", "a long password", server.now()).await.unwrap();

    let claims = |jti: &str| {
        serde_json::json!({
            "iss": IDP, "sub": "00u1ab2cd3", "aud": origin, "client_id": client_id.as_str(),
            "resource": mcp_url, "scope": "mcp:tools", "iat": now(), "exp": now() + 300, "jti": jti,
            "email": "alice@corp.example", "email_verified": true,
        })
    };
    let http = reqwest::Client::new();
    let token = |assertion: String, secret: usize| {
        let (http, origin, id) = (http.clone(), origin.clone(), [&client_id, &other_client][secret].to_string());
        let secret = secrets[secret].secret().to_owned();
        async move {
            let body = form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &assertion),
                ("client_id", &id),
                ("client_secret", &secret),
            ]);
            let r = http
                .post(format!("{origin}/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap())
        }
    };

    // A valid ID-JAG: a token for alice (found by her verified email), no refresh token, and
    // it opens the MCP endpoint.
    let (status, body) = token(id_jag(&idp, &claims("j1")), 0).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "the client asks its IdP again instead: {body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(server.verify_access_token(access).unwrap().sub, alice.id.as_str());
    let mcp_status = http
        .post(&mcp_url)
        .bearer_auth(access)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(mcp_status, 200);

    // Each refusal: invalid_grant with its reason in the events.
    let other_idp = idp_key();
    let cases: Vec<(&str, String, usize, Reason)> = vec![
        ("a replay", id_jag(&idp, &claims("j1")), 0, Reason::IdJagReplayed),
        (
            "another audience",
            id_jag(&idp, &{
                let mut c = claims("j2");
                c["aud"] = "https://other-as.example".into();
                c
            }),
            0,
            Reason::IdJagInvalid,
        ),
        ("another client's", id_jag(&idp, &claims("j3")), 1, Reason::IdJagInvalid),
        (
            "an untrusted issuer",
            id_jag(&other_idp, &{
                let mut c = claims("j4");
                c["iss"] = "https://evil-idp.example".into();
                c
            }),
            0,
            Reason::IdJagUntrustedIssuer,
        ),
        (
            "an expired one",
            id_jag(&idp, &{
                let mut c = claims("j5");
                c["exp"] = (now() - 600).into();
                c
            }),
            0,
            Reason::IdJagInvalid,
        ),
        ("the trusted issuer's name with another key", id_jag(&other_idp, &claims("j6")), 0, Reason::IdJagInvalid),
        (
            "a person with no account",
            id_jag(&idp, &{
                let mut c = claims("j7");
                c["email"] = "mallory@corp.example".into();
                c
            }),
            0,
            Reason::IdJagUserUnknown,
        ),
    ];
    for (what, assertion, who, reason) in cases {
        let (status, body) = token(assertion, who).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{what}: {body}");
        let id = [&client_id, &other_client][who];
        let events = stores.events.events(&EventQuery::all().for_client(id)).await.unwrap();
        let last = events.iter().rev().find(|e| e.step == FlowStep::EnterpriseAssertion).unwrap();
        assert_eq!(last.reason, Some(reason), "{what}: {}", last.detail);
        let report: String =
            server.diagnose(Some(id), UnixTime::from_secs(0)).await.unwrap().iter().map(|d| d.render()).collect();
        assert!(report.contains(reason.as_str()), "{what}: diagnose names {reason}:\n{report}");
    }
}

/// rmcp's Enterprise-Managed Authorization client, both legs: it exchanges the person's
/// enterprise ID token at the IdP (this test's token-exchange endpoint, which answers with an
/// ID-JAG it signs) and redeems the ID-JAG here with the jwt-bearer grant; its own checks of
/// both responses pass, and the token opens the MCP endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_enterprise_client_gets_a_token_through_the_idp() {
    use rmcp::transport::auth::default_oauth_http_client;
    use rmcp::transport::auth::enterprise::{EmaAuthorizationServer, EmaClientAuthentication, EmaExchangeRequest};

    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp_issuer = format!("http://{}", idp_listener.local_addr().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let idp = Arc::new(idp_key());
    let client_id = ClientId::parse("enterprise-app").unwrap();
    let trusted = EnterpriseIdp::new(idp_issuer.clone(), IdpKeys::Inline(idp.jwks.clone()), vec![client_id.clone()]);
    let stores = MemoryStore::new().into_stores();
    let auth = McpAuth::builder(&origin)
        .store(stores.clone())
        .configure_server(move |c| c.with_enterprise_idp(trusted))
        .build()
        .await
        .unwrap();
    let mcp = auth.protect(axum::routing::post(echo));
    tokio::spawn(mcp_oauth::serve(listener, auth.routes().nest_service(auth.mcp_path(), mcp)));
    let server = auth.server().unwrap().clone();
    let mcp_url = format!("{origin}{}", auth.mcp_path());
    let spec = NewClient::new("Enterprise app", vec![RedirectUri::parse("https://app.example/cb").unwrap()])
        .confidential()
        .with_client_id(client_id.clone())
        .with_grant_types(vec![GrantType::JwtBearer]);
    let secret = server.operator().create_client(spec).await.unwrap().secret.unwrap();
    let alice = oauth_core::create_user(&*stores.users, "00u1ab2cd3", "a long password", server.now()).await.unwrap();

    // The IdP's token-exchange endpoint (RFC 8693): an ID token in, an ID-JAG out.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (signer, iss, log) = (idp.clone(), idp_issuer.clone(), seen.clone());
    let (aud, resource) = (origin.clone(), mcp_url.clone());
    let exchange = move |body: String| {
        let pairs: std::collections::HashMap<String, String> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        log.lock().unwrap().push(format!(
            "{} {} {} {}",
            pairs["grant_type"], pairs["requested_token_type"], pairs["audience"], pairs["resource"]
        ));
        assert_eq!(pairs["subject_token"], "the-enterprise-id-token");
        let claims = serde_json::json!({
            "iss": iss, "sub": "00u1ab2cd3", "aud": aud, "client_id": "enterprise-app", "resource": resource,
            "scope": "mcp:tools", "iat": now(), "exp": now() + 300, "jti": format!("jag-{}", now()),
        });
        let jag = id_jag(&signer, &claims);
        axum::Json(serde_json::json!({
            "access_token": jag, "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
            "token_type": "N_A", "scope": "mcp:tools", "expires_in": 300,
        }))
    };
    let idp_app =
        axum::Router::new().route("/token", axum::routing::post(move |body: String| async move { exchange(body) }));
    tokio::spawn(async move { axum::serve(idp_listener, idp_app).await });

    let http = default_oauth_http_client().unwrap();
    let token = EmaExchangeRequest::new_with_id_token(
        EmaAuthorizationServer::new(&idp_issuer, format!("{idp_issuer}/token"), "idp-client")
            .with_client_authentication(EmaClientAuthentication::ClientSecretBasic(oauth2::ClientSecret::new(
                "idp-secret".into(),
            ))),
        EmaAuthorizationServer::new(&origin, format!("{origin}/token"), "enterprise-app").with_client_authentication(
            EmaClientAuthentication::ClientSecretPost(oauth2::ClientSecret::new(secret.secret().to_owned())),
        ),
        &mcp_url,
        "the-enterprise-id-token",
    )
    .with_scopes(["mcp:tools"])
    .exchange(&http, &http)
    .await
    .unwrap_or_else(|e| panic!("rmcp's EMA exchange: {e}"));
    let access = token.access_token.secret();
    assert_eq!(server.verify_access_token(access).unwrap().sub, alice.id.as_str());
    let status = reqwest::Client::new()
        .post(&mcp_url)
        .bearer_auth(access)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![format!(
            "urn:ietf:params:oauth:grant-type:token-exchange urn:ietf:params:oauth:token-type:id-jag {origin} {mcp_url}"
        )]
    );
}

fn percent_decode(v: &str) -> String {
    let bytes = v.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}
