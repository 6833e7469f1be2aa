//! `private_key_jwt` (RFC 7523) end to end, over a real socket: a client described by a
//! metadata document shaped exactly like ChatGPT's (declares `private_key_jwt` with an RS256
//! `jwks_uri`, lists `none` as well), both served over TLS on a loopback port, signs its
//! assertions with its own RSA key; and what an attacker tries with assertions: a replay, a
//! key of their own under the client's `kid`, `alg: none`, an HMAC keyed with the public key,
//! another audience, a long-lived or an expired assertion, and no assertion at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{certificates, document_server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth_axum::metadata_documents::HttpsDocumentFetcher;
use oauth_core::{
    AuthorizationRequest, AuthorizationServer, ClientId, CodeChallenge, CodeVerifier, EventQuery, FlowStep, Issuer,
    KeySet, ManualClock, Reason, ResourceUri, ServerConfig, SigningAlgorithm, StoreAuthenticator, StoredKey, UnixTime,
    UserId,
};
use oauth_store_memory::MemoryStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CHATGPT_CALLBACK: &str = "https://chatgpt.com/connector_platform_oauth_redirect";

/// A client's RSA key: what signs its assertions, and its public set.
struct ClientKey {
    kid: String,
    signing: EncodingKey,
    jwks: String,
}

fn client_key(alg: SigningAlgorithm) -> ClientKey {
    let stored = StoredKey::generate(alg, UnixTime::from_secs(1)).unwrap();
    let signing = match alg {
        SigningAlgorithm::Rs256 => EncodingKey::from_rsa_der(&stored.private_der),
        SigningAlgorithm::Es256 => EncodingKey::from_ec_der(&stored.private_der),
        _ => EncodingKey::from_ed_der(&stored.private_der),
    };
    let jwks = serde_json::to_string(&KeySet::load(std::slice::from_ref(&stored), alg).unwrap().jwks()).unwrap();
    ClientKey { kid: stored.kid, signing, jwks }
}

fn now() -> i64 {
    use oauth_core::Clock as _;
    oauth_core::SystemClock.now().as_secs()
}

/// An assertion of `client_id` for `aud`, as RFC 7523 3 says, with claims overridden by `edit`.
fn assertion(
    key: &ClientKey,
    alg: Algorithm,
    client_id: &str,
    aud: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    let mut claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "iat": now(), "exp": now() + 60, "jti": format!("{:x}", rand_u128()),
    });
    edit(&mut claims);
    let mut header = Header::new(alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.signing).unwrap()
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u128::from_le_bytes(b)
}

/// The deployment under test: the authorization server over a real socket, the client's
/// document and keys over TLS, and how often its keys were fetched.
struct Deployment {
    server: Arc<AuthorizationServer>,
    base: String,
    client_id: String,
    key: ClientKey,
    /// The key the client rotates to: published from the second fetch of its set on.
    next_key: ClientKey,
    clock: Arc<ManualClock>,
    key_fetches: Arc<HashMap<String, AtomicUsize>>,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn deployment(tag: &str, private_key_jwt: bool) -> Deployment {
    let dir = std::env::temp_dir().join(format!("pkjwt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, tls_key) = certificates(&dir);
    let key = client_key(SigningAlgorithm::Rs256);
    let next_key = client_key(SigningAlgorithm::Rs256);
    let jwks = format!("{}{}{}", key.jwks, common::THEN, next_key.jwks);
    let (origin, key_fetches) = document_server(cert, tls_key, move |origin| {
        // Exactly the members ChatGPT's published documents carry.
        let doc = serde_json::json!({
            "client_id": format!("{origin}/oauth/Xy12ab/client.json"),
            "client_uri": "https://chatgpt.com/",
            "redirect_uris": [CHATGPT_CALLBACK],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "ChatGPT",
            "logo_uri": "https://persistent.oaistatic.com/sonic/misc/openai-logo.png",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": format!("{origin}/oauth/jwks.json"),
        });
        HashMap::from([
            ("/oauth/Xy12ab/client.json".to_owned(), (vec![200], String::new(), doc.to_string())),
            ("/oauth/jwks.json".to_owned(), (vec![200], "Cache-Control: max-age=3600\r\n".to_owned(), jwks)),
        ])
    })
    .await;
    let client_id = format!("{origin}/oauth/Xy12ab/client.json");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let config = ServerConfig::new(Issuer::parse(&base).unwrap(), ResourceUri::parse(&format!("{base}/mcp")).unwrap())
        .with_private_key_jwt(private_key_jwt);
    let fetcher = HttpsDocumentFetcher::new().with_only_root_certificate(&ca).dangerous_allow_private_addresses(true);
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(now())));
    let server = Arc::new(
        AuthorizationServer::with_clock(config, MemoryStore::new().into_stores(), clock.clone())
            .await
            .unwrap()
            .with_metadata_documents(Arc::new(fetcher)),
    );
    let auth = Arc::new(StoreAuthenticator::new(server.operator().stores().users.clone()));
    let router = oauth_axum::router(server.clone(), auth);
    tokio::spawn(oauth_axum::serve::serve(listener, router, Default::default(), std::future::pending()));
    Deployment { server, base, client_id, key, next_key, clock, key_fetches, _dir: tempdir::Dir(dir) }
}

/// A form POST over a fresh connection: the status and the JSON body.
async fn post(base: &str, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let host = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let (_, json) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

/// An authorization code for the client, with its verifier: the document is fetched here.
async fn code(d: &Deployment) -> (String, CodeVerifier) {
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let request = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", d.client_id.as_str()),
        ("redirect_uri", CHATGPT_CALLBACK),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("resource", &format!("{}/mcp", d.base)),
    ])
    .unwrap();
    let prompt = d.server.authorize(request).await.unwrap();
    assert_eq!(prompt.client.display_name(), "ChatGPT");
    let location =
        d.server.approve(&prompt.pending.id, &UserId::parse("user-1").unwrap(), d.server.now(), false).await.unwrap();
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    (code, verifier)
}

fn exchange<'a>(code: &'a str, verifier: &'a CodeVerifier, assertion: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CHATGPT_CALLBACK),
    ];
    if let Some(a) = assertion {
        form.push(("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE));
        form.push(("client_assertion", a));
    }
    form
}

/// The reason and detail of the newest failed event at the token endpoint.
async fn last_refusal(d: &Deployment) -> (Option<Reason>, String) {
    let id = ClientId::parse(&d.client_id).unwrap();
    let events = d.server.operator().stores().events.events(&EventQuery::all().for_client(&id)).await.unwrap();
    let e = events.into_iter().rev().find(|e| e.reason.is_some()).expect("a refusal was recorded");
    (e.reason, e.detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatgpt_shaped_document_client_connects_with_private_key_jwt() {
    let d = deployment("connects", true).await;
    let (_, meta) = {
        let host = d.base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!(
            "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (_, json) = text.split_once("\r\n\r\n").unwrap();
        ((), serde_json::from_str::<serde_json::Value>(json).unwrap())
    };
    let methods = meta["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(methods.contains(&"private_key_jwt".into()) && methods.contains(&"none".into()), "{meta}");
    assert!(meta["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().contains(&"RS256".into()));

    let (code, verifier) = code(&d).await;
    let token_endpoint = format!("{}/token", d.base);
    let a = assertion(&d.key, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {});
    let (status, tokens) = post(&d.base, "/token", &exchange(&code, &verifier, Some(&a))).await;
    assert_eq!(status, 200, "{tokens}");
    let claims = d.server.verify_access_token(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.client_id, d.client_id);
    let client = d.server.operator().stores().clients.client(&ClientId::parse(&d.client_id).unwrap()).await.unwrap();
    assert_eq!(client.unwrap().auth_method, oauth_core::TokenEndpointAuthMethod::PrivateKeyJwt);

    // A refresh and a revocation, each with a new assertion; aud the issuer this time.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let a = assertion(&d.key, Algorithm::RS256, &d.client_id, &d.base, |_| {});
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    let (status, refreshed) = post(&d.base, "/token", &form).await;
    assert_eq!(status, 200, "{refreshed}");
    let a = assertion(&d.key, Algorithm::RS256, &d.client_id, &format!("{}/revoke", d.base), |_| {});
    let successor = refreshed["refresh_token"].as_str().unwrap();
    let form = [
        ("token", successor),
        ("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(post(&d.base, "/revoke", &form).await.0, 200);
    let grant = d.server.verify_access_token(refreshed["access_token"].as_str().unwrap()).unwrap().gid.unwrap();
    let revoked =
        d.server.operator().stores().grants.grant(&oauth_core::GrantId::parse(&grant).unwrap()).await.unwrap();
    assert!(revoked.unwrap().revoked_at.is_some(), "the revocation was authenticated by the assertion");
    assert_eq!(d.key_fetches["/oauth/jwks.json"].load(Ordering::SeqCst), 1, "the keys are cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_forged_and_foreign_assertions_are_refused_with_invalid_client() {
    let d = deployment("attacks", true).await;
    let token_endpoint = format!("{}/token", d.base);
    let (code, verifier) = code(&d).await;
    let good = assertion(&d.key, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {});
    let (status, tokens) = post(&d.base, "/token", &exchange(&code, &verifier, Some(&good))).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh_with = |a: String| {
        let refresh = refresh.clone();
        let base = d.base.clone();
        async move {
            let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
            form.push(("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE));
            form.push(("client_assertion", a.as_str()));
            post(&base, "/token", &form).await
        }
    };

    // Each refusal is 401 invalid_client with a description that names the check; the flow
    // events keep one of each kind per interval, so a flood cannot fill the table.
    let refused = |(status, body): (u16, serde_json::Value), says: &str| {
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{says}: {body}");
        let told = body["error_description"].as_str().unwrap_or_default().to_owned();
        assert!(told.contains(says), "{says}: {told}");
    };

    // The same assertion again: an eavesdropper's replay.
    refused(refresh_with(good.clone()).await, "already used");
    assert_eq!(last_refusal(&d).await.0, Some(Reason::ClientAssertionReplayed));

    // The attacker's own key under the client's kid.
    let mut foreign = client_key(SigningAlgorithm::Rs256);
    foreign.kid = d.key.kid.clone();
    refused(
        refresh_with(assertion(&foreign, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {})).await,
        "signature",
    );
    let (reason, detail) = last_refusal(&d).await;
    assert_eq!(
        (reason, detail.contains("signature does not verify")),
        (Some(Reason::ClientAssertionInvalid), true),
        "{detail}"
    );

    // A kid the client never published: refused (its keys were fetched moments ago, so they
    // are not fetched again yet).
    let mut unknown = client_key(SigningAlgorithm::Rs256);
    unknown.kid = "rotated-away".into();
    refused(
        refresh_with(assertion(&unknown, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {})).await,
        "a key the client has not published",
    );

    // alg none, and HS256 keyed with the client's public key (algorithm confusion).
    let claims = serde_json::json!({"iss": d.client_id, "sub": d.client_id, "aud": token_endpoint, "exp": now() + 60, "jti": "n1"});
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "kid": d.key.kid})), b64(&claims));
    let (status, body) = refresh_with(none).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(d.key.kid.clone());
    let confused = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(d.key.jwks.as_bytes())).unwrap();
    refused(refresh_with(confused).await, "must be signed with one of RS256, PS256, ES256, EdDSA");

    // Another audience, another issuer, a week-long assertion, an expired one, no jti.
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let edits: [(&str, Edit); 5] = [
        ("aud must be this server's issuer", Box::new(|c| c["aud"] = "https://other-server.example/token".into())),
        ("iss and sub", Box::new(|c| c["iss"] = "https://evil.example/client.json".into())),
        ("lives too long", Box::new(|c| c["exp"] = (now() + 7 * 86_400).into())),
        ("has expired", Box::new(|c| c["exp"] = (now() - 3600).into())),
        ("needs a jti", Box::new(|c| c.as_object_mut().unwrap().retain(|k, _| k != "jti"))),
    ];
    for (says, edit) in edits {
        refused(refresh_with(assertion(&d.key, Algorithm::RS256, &d.client_id, &token_endpoint, edit)).await, says);
    }

    // No assertion at all: a private_key_jwt client cannot pass for a public one.
    let form =
        [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", d.client_id.as_str())];
    refused(post(&d.base, "/token", &form).await, "authenticates with private_key_jwt");
    assert_eq!(last_refusal(&d).await.0, Some(Reason::ClientAuthFailed));
    assert_eq!(d.key_fetches["/oauth/jwks.json"].load(Ordering::SeqCst), 1, "no refetch within the interval");

    // None of it touched the grant: the refresh token still works with a fresh assertion.
    let (status, body) = refresh_with(assertion(&d.key, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {})).await;
    assert_eq!(status, 200, "{body}");
    let steps: Vec<FlowStep> = {
        let id = ClientId::parse(&d.client_id).unwrap();
        let events = d.server.operator().stores().events.events(&EventQuery::all().for_client(&id)).await.unwrap();
        events.into_iter().filter(|e| e.reason.is_some()).map(|e| e.step).collect()
    };
    assert!(steps.iter().all(|s| *s == FlowStep::Refresh), "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_private_key_jwt_turned_off_the_same_document_connects_as_a_public_client() {
    let d = deployment("off", false).await;
    let meta = d.server.metadata();
    assert!(!meta.token_endpoint_auth_methods_supported.contains(&"private_key_jwt".to_owned()));
    assert!(meta.token_endpoint_auth_signing_alg_values_supported.is_empty());
    let (code, verifier) = code(&d).await;
    let mut form = exchange(&code, &verifier, None);
    form.push(("client_id", d.client_id.as_str()));
    let (status, tokens) = post(&d.base, "/token", &form).await;
    assert_eq!(status, 200, "{tokens}");
    let id = ClientId::parse(&d.client_id).unwrap();
    let events = d.server.operator().stores().events.events(&EventQuery::all().for_client(&id)).await.unwrap();
    let fetched = events.iter().find(|e| e.step == FlowStep::Registration).unwrap();
    assert!(fetched.detail.contains("auth_method_fallback") && fetched.detail.contains("'none'"), "{}", fetched.detail);
    assert_eq!(d.key_fetches["/oauth/jwks.json"].load(Ordering::SeqCst), 0, "no keys are needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_client_with_inline_keys_authenticates_with_es256_assertions() {
    let d = deployment("dcr", true).await;
    let key = client_key(SigningAlgorithm::Es256);
    let jwks: serde_json::Value = serde_json::from_str(&key.jwks).unwrap();
    let body = serde_json::json!({
        "client_name": "Signed", "redirect_uris": ["http://127.0.0.1:7777/callback"],
        "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks,
    });
    let registered = d
        .server
        .register(oauth_core::RegistrationRequest::from_json(body.to_string().as_bytes()).unwrap())
        .await
        .unwrap();
    assert!(registered.client_secret.is_none(), "no secret for private_key_jwt");
    assert_eq!(registered.token_endpoint_auth_method, "private_key_jwt");
    let id = registered.client_id.clone();
    // Introspection of nothing in particular, authenticated by an ES256 assertion for the
    // introspection endpoint.
    let a = assertion(&key, Algorithm::ES256, &id, &format!("{}/introspect", d.base), |_| {});
    let form = [
        ("token", "not-a-token"),
        ("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    let (status, body) = post(&d.base, "/introspect", &form).await;
    assert_eq!((status, body["active"].as_bool()), (200, Some(false)), "{body}");
    // The other client's key cannot speak for it.
    let a = assertion(&d.key, Algorithm::RS256, &id, &d.base, |_| {});
    let form = [
        ("token", "x"),
        ("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(post(&d.base, "/introspect", &form).await.0, 401);
    // A secret next to the assertion is two methods at once.
    let a = assertion(&key, Algorithm::ES256, &id, &d.base, |_| {});
    let form = [
        ("token", "x"),
        ("client_secret", "guess"),
        ("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(post(&d.base, "/introspect", &form).await.1["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_rotated_its_key_is_fetched_again_at_most_every_interval() {
    let d = deployment("rotation", true).await;
    let token_endpoint = format!("{}/token", d.base);
    let (code, verifier) = code(&d).await;
    let a = assertion(&d.key, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {});
    let (status, tokens) = post(&d.base, "/token", &exchange(&code, &verifier, Some(&a))).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let with = |key: &ClientKey| {
        let a = assertion(key, Algorithm::RS256, &d.client_id, &token_endpoint, |_| {});
        let (refresh, base) = (refresh.clone(), d.base.clone());
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_assertion_type", oauth_core::CLIENT_ASSERTION_TYPE),
                ("client_assertion", a.as_str()),
            ];
            post(&base, "/token", &form).await.0
        }
    };
    // The client now signs with its new key: within the interval its cached set is used and
    // the assertion is refused, however often it tries.
    for _ in 0..3 {
        assert_eq!(with(&d.next_key).await, 401);
    }
    assert_eq!(d.key_fetches["/oauth/jwks.json"].load(Ordering::SeqCst), 1, "no fetch within the interval");
    // Past the interval the unknown kid fetches the set again, once, and the new key works.
    d.clock.advance(oauth_core::JWKS_REFETCH_INTERVAL);
    assert_eq!(with(&d.next_key).await, 200);
    assert_eq!(d.key_fetches["/oauth/jwks.json"].load(Ordering::SeqCst), 2);
}
