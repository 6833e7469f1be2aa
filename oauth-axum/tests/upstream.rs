//! Upstream sign-in against an OpenID provider this test plays over a real socket: its
//! discovery document, its keys, and a token endpoint that checks the client secret and the
//! PKCE verifier and issues the `id_token` the test asks for. The sign-in succeeds, and each
//! way a stranger or a broken provider could get a person signed in is refused with its
//! reason: a callback in another browser, a tampered or expired flow cookie, another flow's
//! state or nonce, a forged signature, another audience, an expired token, the allow-list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth_axum::upstream::FetchUpstream;
use oauth_core::upstream::{AllowList, UpstreamClient, UpstreamError, UpstreamProvider, UpstreamSecret};
use oauth_core::{Clock as _, KeySet, Reason, SigningAlgorithm, StoredKey, SystemClock, UnixTime};
use serde_json::{Value, json};

const CLIENT_ID: &str = "mcp-notes";
const SECRET: &str = "upstream-client-secret";
const CALLBACK: &str = "https://mcp.example.com/upstream/test/callback";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

struct Key {
    kid: String,
    signing: EncodingKey,
    jwks: Value,
}

fn key() -> Key {
    let stored = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
    let jwks = json!(KeySet::load(std::slice::from_ref(&stored), SigningAlgorithm::Es256).unwrap().jwks());
    Key { kid: stored.kid.clone(), signing: EncodingKey::from_ec_der(&stored.private_der), jwks }
}

/// What the provider issues for a code: the `id_token` and the PKCE challenge it was
/// requested with.
struct Provider {
    codes: Mutex<HashMap<String, (String, String)>>,
    token_requests: Mutex<Vec<HashMap<String, String>>>,
    /// The lifetime of the access tokens codes are exchanged for (refreshes get an hour).
    first_ttl: std::sync::atomic::AtomicU64,
    /// Refreshes answered, and whether they are refused with invalid_grant.
    refreshes: std::sync::atomic::AtomicUsize,
    refuse_refresh: std::sync::atomic::AtomicBool,
    /// What its userinfo answers the holder of an access token it issued.
    userinfo: Mutex<Value>,
}

impl Default for Provider {
    fn default() -> Self {
        Self {
            codes: Mutex::default(),
            token_requests: Mutex::default(),
            first_ttl: 3600.into(),
            refreshes: 0.into(),
            refuse_refresh: false.into(),
            userinfo: Mutex::new(json!({})),
        }
    }
}

async fn token(
    State(p): State<Arc<Provider>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, Json<Value>) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    p.token_requests.lock().unwrap().push(form.clone());
    let bad = |e: &str| (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": e})));
    // The client authenticates with HTTP Basic (the provider lists it), never in the form.
    use base64::Engine as _;
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}")));
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok());
    if basic != Some(expected.as_str()) || form.contains_key("client_secret") {
        return bad("invalid_client");
    }
    use std::sync::atomic::Ordering::SeqCst;
    // Token exchange (RFC 8693): the person's access token for one of the calendar API's.
    if form.get("grant_type").map(String::as_str) == Some("urn:ietf:params:oauth:grant-type:token-exchange") {
        let subject = form.get("subject_token").cloned().unwrap_or_default();
        if !subject.starts_with("upstream-access")
            || form.get("subject_token_type").map(String::as_str) != Some(ACCESS_TOKEN_TYPE)
        {
            return bad("invalid_grant");
        }
        if form.get("audience").map(String::as_str) != Some("calendar") {
            return bad("invalid_target");
        }
        return (
            axum::http::StatusCode::OK,
            Json(json!({"access_token": format!("calendar-for-{subject}"), "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer", "expires_in": 300, "scope": form.get("scope")})),
        );
    }
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        if p.refuse_refresh.load(SeqCst)
            || !form.get("refresh_token").is_some_and(|t| t.starts_with("upstream-refresh"))
        {
            return bad("invalid_grant");
        }
        // Slow enough that a second replica asks while the first waits for the answer.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let n = p.refreshes.fetch_add(1, SeqCst) + 1;
        return (
            axum::http::StatusCode::OK,
            Json(
                json!({"access_token": format!("upstream-access-{n}"), "refresh_token": format!("upstream-refresh-{n}"), "token_type": "Bearer", "expires_in": 3600}),
            ),
        );
    }
    let Some((id_token, challenge)) = form.get("code").and_then(|c| p.codes.lock().unwrap().remove(c)) else {
        return bad("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = oauth_core::CodeChallenge::s256(&oauth_core::CodeVerifier::new(verifier));
    if computed.as_str() != challenge {
        return bad("invalid_grant");
    }
    (
        axum::http::StatusCode::OK,
        Json(
            json!({"access_token": "upstream-access", "refresh_token": "upstream-refresh", "token_type": "Bearer", "expires_in": p.first_ttl.load(SeqCst), "id_token": id_token}),
        ),
    )
}

async fn userinfo(
    State(p): State<Arc<Provider>>,
    headers: axum::http::HeaderMap,
) -> (axum::http::StatusCode, Json<Value>) {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !bearer.starts_with("Bearer upstream-access") {
        return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"})));
    }
    (axum::http::StatusCode::OK, Json(p.userinfo.lock().unwrap().clone()))
}

struct Idp {
    issuer: String,
    key: Key,
    state: Arc<Provider>,
}

async fn idp() -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let key = key();
    let state = Arc::new(Provider::default());
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    });
    let jwks = key.jwks.clone();
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
        .route("/jwks", get(move || async move { Json(jwks) }))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(state.clone());
    tokio::spawn(oauth_axum::serve::serve(listener, app, Default::default(), std::future::pending()));
    Idp { issuer, key, state }
}

async fn client(idp: &Idp, edit: impl FnOnce(&mut UpstreamProvider)) -> UpstreamClient {
    let mut provider = UpstreamProvider::oidc("test", "Test IdP", &idp.issuer, CLIENT_ID, UpstreamSecret::new(SECRET));
    edit(&mut provider);
    UpstreamClient::discover(provider, Arc::new(FetchUpstream::new())).await.unwrap()
}

fn now() -> UnixTime {
    SystemClock.now()
}

/// One browser's trip: the flow started, the parameters the provider saw, the cookie.
struct Trip {
    cookie: String,
    state: String,
    nonce: String,
    challenge: String,
}

fn start(c: &UpstreamClient, key: &[u8; 32]) -> Trip {
    let s = c.start("pending-1", CALLBACK, key, now()).unwrap();
    let url = url::Url::parse(&s.location).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    assert!(!s.cookie.contains(&q["code_challenge"]) && !s.cookie.contains(&q["state"]), "the cookie is sealed");
    Trip {
        cookie: s.cookie,
        state: q["state"].clone(),
        nonce: q["nonce"].clone(),
        challenge: q["code_challenge"].clone(),
    }
}

/// The provider signs the person in: a code whose `id_token` has `claims` over the defaults.
fn sign_in(idp: &Idp, trip: &Trip, edit: impl FnOnce(&mut Value), signer: Option<&Key>) -> String {
    let t = now().as_secs();
    let mut claims = json!({
        "iss": idp.issuer, "sub": "248289761001", "aud": CLIENT_ID, "exp": t + 300, "iat": t,
        "nonce": trip.nonce, "email": "jane@example.com", "email_verified": true, "name": "Jane Doe",
    });
    edit(&mut claims);
    let signer = signer.unwrap_or(&idp.key);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(idp.key.kid.clone());
    let id_token = jsonwebtoken::encode(&header, &claims, &signer.signing).unwrap();
    let code = format!("code-{}", rand());
    idp.state.codes.lock().unwrap().insert(code.clone(), (id_token, trip.challenge.clone()));
    code
}

fn rand() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

fn query(state: &str, code: &str) -> Vec<(String, String)> {
    vec![("state".into(), state.into()), ("code".into(), code.into())]
}

async fn finish(
    c: &UpstreamClient,
    cookie: Option<&str>,
    q: &[(String, String)],
    key: &[u8; 32],
) -> Result<oauth_core::upstream::UpstreamSignIn, UpstreamError> {
    c.finish(cookie, q, CALLBACK, key, now(), Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_the_provider() {
    let idp = idp().await;
    let c = client(&idp, |_| {}).await;
    let key = [7u8; 32];
    let trip = start(&c, &key);
    let code = sign_in(&idp, &trip, |_| {}, None);
    let done = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap();
    assert_eq!(done.pending, "pending-1");
    assert_eq!(
        (done.identity.subject.as_str(), done.identity.email.as_deref()),
        ("248289761001", Some("jane@example.com"))
    );
    assert!(done.identity.email_verified);
    assert_eq!(done.tokens.access_token, "upstream-access");
    assert_eq!(done.tokens.refresh_token.as_deref(), Some("upstream-refresh"));
    assert_eq!(done.nonce, trip.nonce);
    assert!(!format!("{:?}", done.tokens).contains("upstream-access"), "tokens are not in Debug");
    // The secret went in HTTP Basic (the provider checks), the verifier and callback in the form.
    let sent = idp.state.token_requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["redirect_uri"], CALLBACK);
    assert!(sent.contains_key("code_verifier") && !sent.contains_key("client_secret"), "{sent:?}");
    assert!(!format!("{c:?}").contains(SECRET), "the client secret is not in Debug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_in_a_browser_that_did_not_start_the_flow_is_refused() {
    let idp = idp().await;
    let c = client(&idp, |_| {}).await;
    let key = [7u8; 32];
    // The attacker starts a flow in their own browser and signs in as themselves; the victim's
    // browser is made to open the callback with the attacker's code and state.
    let attacker = start(&c, &key);
    let victim = start(&c, &key);
    let code = sign_in(&idp, &attacker, |_| {}, None);
    let q = query(&attacker.state, &code);
    let mut tampered = victim.cookie.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (cookie, what) in [
        (None, "no cookie"),
        (Some(victim.cookie.as_str()), "the victim's own cookie"),
        (Some(tampered.as_str()), "a tampered cookie"),
    ] {
        let e = finish(&c, cookie, &q, &key).await.unwrap_err();
        assert_eq!(e.reason, Reason::UpstreamStateMismatch, "{what}: {e}");
        assert!(!e.told.contains("cookie"), "the person is told plainly: {}", e.told);
    }
    // Another server's key, and an expired flow.
    let e = finish(&c, Some(&attacker.cookie), &q, &[8u8; 32]).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamStateMismatch);
    let later = now().plus(Duration::from_secs(601));
    let e = c.finish(Some(&attacker.cookie), &q, CALLBACK, &key, later, Duration::ZERO).await.unwrap_err();
    assert_eq!((e.reason, e.detail.contains("expired")), (Reason::UpstreamStateMismatch, true), "{e}");
    // A cookie of another provider of this server does not open for this one.
    let other = client(&idp, |p| p.id = "other".into()).await;
    let e = finish(&other, Some(&attacker.cookie), &q, &key).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamStateMismatch);
    assert!(idp.state.token_requests.lock().unwrap().is_empty(), "no refused callback reached the token endpoint");
    // The attacker's own browser still finishes: the code was never spent.
    assert!(finish(&c, Some(&attacker.cookie), &q, &key).await.is_ok());
}

/// What is wrong with an `id_token`: the name, the change, who signs, the reason, a word of the detail.
type Case<'k> = (&'static str, Box<dyn Fn(&mut Value)>, Option<&'k Key>, Reason, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_token_check_refuses_with_its_reason() {
    let idp = idp().await;
    let c = client(&idp, |_| {}).await;
    let key = [7u8; 32];
    let foreign = self::key();
    let t = now().as_secs();
    let cases: Vec<Case<'_>> = vec![
        ("forged signature", Box::new(|_| {}), Some(&foreign), Reason::UpstreamIdTokenInvalid, "signature"),
        ("other audience", Box::new(|c| c["aud"] = "someone-else".into()), None, Reason::UpstreamIdTokenInvalid, "aud"),
        (
            "other issuer",
            Box::new(|c| c["iss"] = "https://evil.example".into()),
            None,
            Reason::UpstreamIdTokenInvalid,
            "iss",
        ),
        ("expired", Box::new(move |c| c["exp"] = (t - 120).into()), None, Reason::UpstreamIdTokenInvalid, "expired"),
        (
            "issued ahead",
            Box::new(move |c| c["iat"] = (t + 600).into()),
            None,
            Reason::UpstreamIdTokenInvalid,
            "future",
        ),
        (
            "another flow's nonce",
            Box::new(|c| c["nonce"] = "not-this-one".into()),
            None,
            Reason::UpstreamNonceMismatch,
            "nonce",
        ),
        (
            "no nonce",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            None,
            Reason::UpstreamNonceMismatch,
            "nonce",
        ),
        (
            "several audiences, no azp",
            Box::new(|c| c["aud"] = json!([CLIENT_ID, "other"])),
            None,
            Reason::UpstreamIdTokenInvalid,
            "azp",
        ),
        ("another azp", Box::new(|c| c["azp"] = "other".into()), None, Reason::UpstreamIdTokenInvalid, "azp"),
        (
            "no sub",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            None,
            Reason::UpstreamIdTokenInvalid,
            "sub",
        ),
    ];
    for (what, edit, signer, reason, says) in cases {
        let trip = start(&c, &key);
        let code = sign_in(&idp, &trip, |c| edit(c), signer);
        let e = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap_err();
        assert_eq!(e.reason, reason, "{what}: {e}");
        assert!(e.detail.contains(says), "{what}: {e}");
    }
    // Several audiences with this client as azp is fine.
    let trip = start(&c, &key);
    let code = sign_in(
        &idp,
        &trip,
        |c| {
            c["aud"] = json!([CLIENT_ID, "other"]);
            c["azp"] = CLIENT_ID.into();
        },
        None,
    );
    assert!(finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_and_the_providers_refusals_are_named() {
    let idp = idp().await;
    let key = [7u8; 32];
    let c = client(&idp, |p| p.allow = AllowList::default().email_domains(["example.org"])).await;
    let trip = start(&c, &key);
    let code = sign_in(&idp, &trip, |_| {}, None);
    let e = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamUserRefused);
    assert!(e.detail.contains("example.com"), "{e}");
    // An unverified email does not pass a domain rule, whatever its domain.
    let trip = start(&c, &key);
    let code = sign_in(
        &idp,
        &trip,
        |c| {
            c["email"] = "jo@example.org".into();
            c["email_verified"] = false.into();
        },
        None,
    );
    let e = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamUserRefused, "{e}");
    // A claim rule: groups must hold mcp-users.
    let groups = client(&idp, |p| p.allow = AllowList::default().claim("groups", ["mcp-users"])).await;
    for (held, ok) in [(json!(["staff", "mcp-users"]), true), (json!(["staff"]), false)] {
        let trip = start(&groups, &key);
        let code = sign_in(&idp, &trip, |c| c["groups"] = held.clone(), None);
        assert_eq!(finish(&groups, Some(&trip.cookie), &query(&trip.state, &code), &key).await.is_ok(), ok, "{held}");
    }
    // The person declined at the provider; a code the provider does not know.
    let c = client(&idp, |_| {}).await;
    let trip = start(&c, &key);
    let q = vec![("state".into(), trip.state.clone()), ("error".into(), "access_denied".into())];
    let e = finish(&c, Some(&trip.cookie), &q, &key).await.unwrap_err();
    assert_eq!((e.reason, e.detail.contains("access_denied")), (Reason::UpstreamRefused, true), "{e}");
    let e = finish(&c, Some(&trip.cookie), &query(&trip.state, "no-such-code"), &key).await.unwrap_err();
    assert_eq!((e.reason, e.detail.contains("invalid_grant")), (Reason::UpstreamRefused, true), "{e}");
    // RFC 9207: an iss at the callback that is not this provider's.
    let q = vec![
        ("state".into(), trip.state.clone()),
        ("code".into(), "x".into()),
        ("iss".into(), "https://evil.example".into()),
    ];
    assert_eq!(finish(&c, Some(&trip.cookie), &q, &key).await.unwrap_err().reason, Reason::UpstreamStateMismatch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_refuses_what_no_sign_in_could_trust() {
    let idp = idp().await;
    let http = Arc::new(FetchUpstream::new());
    let wrong =
        UpstreamProvider::oidc("test", "Test", format!("{}/", idp.issuer), CLIENT_ID, UpstreamSecret::new(SECRET));
    let e = UpstreamClient::discover(wrong, http.clone()).await.unwrap_err();
    assert!(e.contains("states issuer"), "{e}");
    let bad_id = UpstreamProvider::oidc("Test IdP", "Test", &idp.issuer, CLIENT_ID, UpstreamSecret::new(SECRET));
    assert!(UpstreamClient::discover(bad_id, http.clone()).await.unwrap_err().contains("a-z"));
    let mut no_openid = UpstreamProvider::oidc("test", "Test", &idp.issuer, CLIENT_ID, UpstreamSecret::new(SECRET));
    no_openid.scopes = vec!["email".into()];
    assert!(UpstreamClient::discover(no_openid, http.clone()).await.unwrap_err().contains("openid"));
    let plain =
        UpstreamProvider::oidc("test", "Test", "http://idp.example.com", CLIENT_ID, UpstreamSecret::new(SECRET));
    assert!(UpstreamClient::discover(plain, http).await.unwrap_err().contains("must be https"));
}

/// A browser: its cookies, and raw HTTP/1.1 over fresh connections.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    async fn send(&mut self, base: &str, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let host = base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let cookie: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nCookie: {}\r\n",
            cookie.join("; ")
        );
        let body = form
            .map(|f| url::form_urlencoded::Serializer::new(String::new()).extend_pairs(f).finish())
            .unwrap_or_default();
        if form.is_some() {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut location = None;
        for line in head.lines().skip(1) {
            let (name, value) = line.split_once(": ").unwrap();
            match name.to_ascii_lowercase().as_str() {
                "set-cookie" => {
                    let (pair, attrs) = value.split_once(';').unwrap_or((value, ""));
                    let (k, v) = pair.split_once('=').unwrap();
                    if v.is_empty() || attrs.contains("Max-Age=0") {
                        self.cookies.remove(k);
                    } else {
                        self.cookies.insert(k.to_owned(), v.to_owned());
                    }
                }
                "location" => location = Some(value.to_owned()),
                _ => {}
            }
        }
        Page { status: head.split(' ').nth(1).unwrap().parse().unwrap(), location, body: body.to_owned() }
    }
}

/// The value of the hidden field `name` in the first form of `html` that has it.
fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

struct Deployment {
    server: Arc<oauth_core::AuthorizationServer>,
    /// Another replica on the same store.
    other: Arc<oauth_core::AuthorizationServer>,
    base: String,
    client_id: String,
}

/// The vault key of the deployments (the environment's, in production).
const VAULT_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

const APP_CALLBACK: &str = "http://127.0.0.1:7777/callback";

async fn deployment(idp: &Idp) -> Deployment {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let config = oauth_core::ServerConfig::new(
        oauth_core::Issuer::parse(&base).unwrap(),
        oauth_core::ResourceUri::parse(&format!("{base}/mcp")).unwrap(),
    );
    let stores = oauth_store_memory::MemoryStore::new().into_stores();
    let replica = |stores| {
        let config = config.clone();
        async move {
            Arc::new(
                oauth_core::AuthorizationServer::new(config, stores)
                    .await
                    .unwrap()
                    .with_upstream(client(idp, |_| {}).await)
                    .with_vault(oauth_core::upstream::VaultKeys::parse(VAULT_KEY, &[]).unwrap()),
            )
        }
    };
    let server = replica(stores.clone()).await;
    let other = replica(stores).await;
    let auth = Arc::new(oauth_core::StoreAuthenticator::new(server.operator().stores().users.clone()));
    tokio::spawn(oauth_axum::serve::serve(
        listener,
        oauth_axum::router(server.clone(), auth),
        Default::default(),
        std::future::pending(),
    ));
    let reg = oauth_core::RegistrationRequest::from_json(
        format!(
            r#"{{"client_name":"Notes app","redirect_uris":["{APP_CALLBACK}"],"token_endpoint_auth_method":"none"}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    let client_id = server.register(reg).await.unwrap().client_id;
    Deployment { server, other, base, client_id }
}

/// The browser opens the client's authorization link and presses "Sign in with Test IdP":
/// the provider's authorization URL it is sent to.
async fn go_upstream(d: &Deployment, b: &mut Browser, verifier: &oauth_core::CodeVerifier) -> (Trip, url::Url) {
    let challenge = oauth_core::CodeChallenge::s256(verifier);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", d.client_id.as_str()),
            ("redirect_uri", APP_CALLBACK),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "app-state"),
        ])
        .finish();
    let page = b.send(&d.base, "GET", &format!("/authorize?{q}"), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign in with Test IdP"), "{}", page.body);
    let (pending, csrf) = (field(&page.body, "pending"), field(&page.body, "csrf"));
    let form = [("pending", pending.as_str()), ("csrf", csrf.as_str()), ("provider", "test")];
    let away = b.send(&d.base, "POST", "/authorize/sign-in/upstream", Some(&form)).await;
    assert_eq!(away.status, 303, "{}", away.body);
    let to = url::Url::parse(away.location.as_deref().unwrap()).unwrap();
    let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(q["redirect_uri"], format!("{}/authorize/upstream/test/callback", d.base));
    let cookie = b.cookies.get("mcp_oauth_upstream").expect("the flow cookie").clone();
    (Trip { cookie, state: q["state"].clone(), nonce: q["nonce"].clone(), challenge: q["code_challenge"].clone() }, to)
}

fn callback_path(trip: &Trip, code: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("state", trip.state.as_str()), ("code", code)])
        .finish();
    format!("/authorize/upstream/test/callback?{q}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_for_a_person_who_signs_in_upstream() {
    let idp = idp().await;
    let d = deployment(&idp).await;
    let mut b = Browser::default();
    let verifier = oauth_core::CodeVerifier::generate();
    let (trip, _) = go_upstream(&d, &mut b, &verifier).await;
    let code = sign_in(&idp, &trip, |_| {}, None);
    let back = b.send(&d.base, "GET", &callback_path(&trip, &code), None).await;
    assert_eq!(back.status, 200, "the consent page: {}", back.body);
    assert!(back.body.contains("Notes app") && back.body.contains("name=\"decision\""), "{}", back.body);
    assert!(!b.cookies.contains_key("mcp_oauth_upstream"), "the flow cookie is spent");
    assert!(b.cookies.contains_key("mcp_oauth_session"), "signed in here now");
    let form = [
        ("pending", field(&back.body, "pending")),
        ("csrf", field(&back.body, "csrf")),
        ("decision", "approve".into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = b.send(&d.base, "POST", "/authorize/consent", Some(&form)).await;
    let location = url::Url::parse(done.location.as_deref().expect("back to the client")).unwrap();
    assert!(location.as_str().starts_with(APP_CALLBACK), "{location}");
    let app_code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens = d
        .server
        .token(
            oauth_core::TokenRequest::from_pairs([
                ("grant_type", "authorization_code"),
                ("code", app_code.as_str()),
                ("code_verifier", verifier.secret()),
                ("redirect_uri", APP_CALLBACK),
                ("client_id", d.client_id.as_str()),
            ])
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let claims = d.server.verify_access_token(&tokens.access_token).unwrap();
    let user = d
        .server
        .operator()
        .stores()
        .users
        .user(&oauth_core::UserId::parse(&claims.sub).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username, "test:248289761001", "a new user, linked to the provider's subject");
    assert!(!oauth_core::verify_password("", &user.password_hash), "no local password works for them");

    // The same person comes back in a fresh browser: the same user, not a second one.
    let mut again = Browser::default();
    let (trip, _) = go_upstream(&d, &mut again, &oauth_core::CodeVerifier::generate()).await;
    let code = sign_in(&idp, &trip, |_| {}, None);
    assert_eq!(again.send(&d.base, "GET", &callback_path(&trip, &code), None).await.status, 200);
    assert_eq!(d.server.operator().stores().users.list_users().await.unwrap().len(), 1);

    // A replay of that callback (same cookie, state and a new code for the same nonce) is
    // refused: the nonce was used.
    again.cookies.insert("mcp_oauth_upstream".into(), trip.cookie.clone());
    let code = sign_in(&idp, &trip, |_| {}, None);
    let replay = again.send(&d.base, "GET", &callback_path(&trip, &code), None).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    let events = d.server.operator().stores().events.events(&oauth_core::EventQuery::all()).await.unwrap();
    assert!(events.iter().any(|e| e.reason == Some(Reason::UpstreamNonceMismatch)), "{events:?}");
}

/// The confused deputy: the attacker starts a sign-in in their own browser and has the
/// victim's browser open the callback with the attacker's code and state. The victim's
/// browser holds no flow (or its own), so nothing signs the victim in as the attacker, and
/// the operator sees why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_opened_in_another_browser_signs_no_one_in() {
    let idp = idp().await;
    let d = deployment(&idp).await;
    let mut attacker = Browser::default();
    let (trip, _) = go_upstream(&d, &mut attacker, &oauth_core::CodeVerifier::generate()).await;
    let code = sign_in(&idp, &trip, |c| c["sub"] = "attacker".into(), None);
    let mut victim = Browser::default();
    let _ = go_upstream(&d, &mut victim, &oauth_core::CodeVerifier::generate()).await;
    for mut b in [Browser::default(), victim] {
        let page = b.send(&d.base, "GET", &callback_path(&trip, &code), None).await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains("not started in this browser"), "{}", page.body);
        assert!(!b.cookies.contains_key("mcp_oauth_session"), "no session for the victim");
    }
    assert!(d.server.operator().stores().users.list_users().await.unwrap().is_empty(), "no user was made");
    let events = d.server.operator().stores().events.events(&oauth_core::EventQuery::all()).await.unwrap();
    // Refusals before anyone is known are stored within a budget: identical ones once.
    assert!(events.iter().any(|e| e.reason == Some(Reason::UpstreamStateMismatch)), "{events:?}");
    // A forged start without the page's CSRF token does not even leave for the provider.
    let forged = Browser::default()
        .send(
            &d.base,
            "POST",
            "/authorize/sign-in/upstream",
            Some(&[("pending", "x"), ("csrf", "y"), ("provider", "test")]),
        )
        .await;
    assert_eq!(forged.status, 403);
}

/// The whole connection through the pages: the grant it made.
async fn connect(d: &Deployment, idp: &Idp) -> oauth_core::GrantId {
    let mut b = Browser::default();
    let verifier = oauth_core::CodeVerifier::generate();
    let (trip, _) = go_upstream(d, &mut b, &verifier).await;
    let code = sign_in(idp, &trip, |_| {}, None);
    let back = b.send(&d.base, "GET", &callback_path(&trip, &code), None).await;
    let form = [
        ("pending", field(&back.body, "pending")),
        ("csrf", field(&back.body, "csrf")),
        ("decision", "approve".into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = b.send(&d.base, "POST", "/authorize/consent", Some(&form)).await;
    let location = url::Url::parse(done.location.as_deref().expect("back to the client")).unwrap();
    let app_code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let request = oauth_core::TokenRequest::from_pairs([
        ("grant_type", "authorization_code"),
        ("code", app_code.as_str()),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", APP_CALLBACK),
        ("client_id", d.client_id.as_str()),
    ])
    .unwrap();
    let tokens = d.server.token(request, None).await.unwrap();
    let gid = d.server.verify_access_token(&tokens.access_token).unwrap().gid.expect("a grant id");
    oauth_core::GrantId::parse(&gid).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_keeps_the_upstream_tokens_sealed_and_tools_get_them() {
    let idp = idp().await;
    let d = deployment(&idp).await;
    let grant = connect(&d, &idp).await;
    let stored =
        d.server.operator().stores().upstream.upstream_tokens(&grant).await.unwrap().expect("kept with the grant");
    let raw = String::from_utf8_lossy(&stored.sealed);
    assert!(!raw.contains("upstream-access") && !raw.contains("upstream-refresh"), "sealed at rest: {raw}");
    assert_eq!(d.server.upstream_access_token(&grant).await.unwrap().unwrap().access_token(), "upstream-access");
    assert_eq!(
        d.other.upstream_access_token(&grant).await.unwrap().unwrap().access_token(),
        "upstream-access",
        "on every replica"
    );
    // Another key cannot open it: a database copy without the key is worth nothing.
    let stranger =
        oauth_core::AuthorizationServer::new(d.server.config().clone(), d.server.operator().stores().clone())
            .await
            .unwrap()
            .with_vault(oauth_core::upstream::VaultKeys::parse(&"ab".repeat(32), &[]).unwrap());
    let e = stranger.upstream_access_token(&grant).await.unwrap().unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamTokenUnavailable, "{e}");
    // The pending request and the code no longer hold them once the grant does.
    assert_eq!(idp.state.refreshes.load(std::sync::atomic::Ordering::SeqCst), 0, "fresh tokens are not refreshed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_that_need_a_refresh_at_once_refresh_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let idp = idp().await;
    idp.state.first_ttl.store(30, SeqCst);
    let d = deployment(&idp).await;
    let grant = connect(&d, &idp).await;
    let (a, b) = tokio::join!(d.server.upstream_access_token(&grant), d.other.upstream_access_token(&grant));
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(
        (a.access_token(), b.access_token()),
        ("upstream-access-1", "upstream-access-1"),
        "both get the one refresh's token"
    );
    assert_eq!(idp.state.refreshes.load(SeqCst), 1, "the provider saw one refresh");
    assert_eq!(
        d.server.upstream_access_token(&grant).await.unwrap().unwrap().access_token(),
        "upstream-access-1",
        "then it is fresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_invalid_grant_ends_the_grant_here() {
    use std::sync::atomic::Ordering::SeqCst;
    let idp = idp().await;
    idp.state.first_ttl.store(30, SeqCst);
    idp.state.refuse_refresh.store(true, SeqCst);
    let d = deployment(&idp).await;
    let grant = connect(&d, &idp).await;
    let e = d.server.upstream_access_token(&grant).await.unwrap().unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamGrantEnded, "{e}");
    let operator = d.server.operator();
    let stores = operator.stores();
    assert!(stores.grants.grant(&grant).await.unwrap().unwrap().revoked_at.is_some(), "revoked here too");
    assert!(stores.upstream.upstream_tokens(&grant).await.unwrap().is_none(), "and its upstream tokens are gone");
    let events = stores.events.events(&oauth_core::EventQuery::all()).await.unwrap();
    assert!(events.iter().any(|e| e.reason == Some(Reason::UpstreamGrantEnded)), "{events:?}");
    // Asking again is not a loop of refreshes: the grant has ended.
    let e = d.other.upstream_access_token(&grant).await.unwrap().unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamGrantEnded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_s_token_is_exchanged_at_the_provider_for_another_api() {
    use oauth_core::upstream::ExchangeTarget;
    let idp = idp().await;
    let d = deployment(&idp).await;
    let grant = connect(&d, &idp).await;
    let access = d.server.upstream_access_token(&grant).await.unwrap().unwrap();
    let provider = d.server.upstream(&access.provider).unwrap();
    let target = ExchangeTarget::audience("calendar").with_scope("calendar.read");
    let exchanged = provider.exchange_token(access.access_token(), &target).await.unwrap();
    assert_eq!(exchanged.access_token(), "calendar-for-upstream-access");
    assert_eq!(exchanged.issued_token_type, ACCESS_TOKEN_TYPE);
    assert_eq!((exchanged.token_type.as_str(), exchanged.scope.as_deref()), ("Bearer", Some("calendar.read")));
    assert!(exchanged.expires_at.is_some());
    assert!(!format!("{exchanged:?}").contains("calendar-for"), "no token in Debug");
    let sent = idp.state.token_requests.lock().unwrap().last().cloned().unwrap();
    for (k, v) in [
        ("subject_token", "upstream-access"),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("audience", "calendar"),
        ("scope", "calendar.read"),
        ("client_id", CLIENT_ID),
    ] {
        assert_eq!(sent.get(k).map(String::as_str), Some(v), "{k} in {sent:?}");
    }

    // An API the provider does not issue for: its error, for the operator.
    let e = provider.exchange_token(access.access_token(), &ExchangeTarget::audience("payroll")).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamExchangeRefused, "{e}");
    assert!(e.detail.contains("invalid_target") && !e.told.contains("invalid_target"), "{e:?}");
    // A target without audience or resource, or a resource that is not a URL, is never sent.
    let asked = idp.state.token_requests.lock().unwrap().len();
    for bad in [
        ExchangeTarget::default(),
        ExchangeTarget::resource("https://api.example.com/#x"),
        ExchangeTarget::resource("api"),
    ] {
        let e = provider.exchange_token(access.access_token(), &bad).await.unwrap_err();
        assert_eq!(e.reason, Reason::UpstreamExchangeRefused, "{bad:?}: {e}");
    }
    assert_eq!(idp.state.token_requests.lock().unwrap().len(), asked, "nothing sent for a bad target");

    // A tool that meets the refusal in a loop leaves one event of it, not one per call.
    let client = oauth_core::ClientId::parse(&d.client_id).unwrap();
    let stored = || async {
        let events = d.server.operator().stores().events.events(&oauth_core::EventQuery::all()).await.unwrap();
        events.iter().filter(|e| e.reason == Some(Reason::UpstreamExchangeRefused)).count()
    };
    for _ in 0..20 {
        d.server.record_upstream_tool_failure(&e, &client).await;
    }
    assert_eq!(stored().await, 1, "one stored refusal for twenty calls");
}

/// A provider that keeps the `email` and `profile` claims for its userinfo (OpenID Connect
/// Core 5.4): the sign-in reads them there, for the allow-list and the name shown, and only
/// when the userinfo is about the `id_token`'s subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_the_id_token_leaves_out_are_read_from_the_userinfo_of_the_same_subject() {
    let idp = idp().await;
    let c = client(&idp, |p| p.allow = AllowList::default().email_domains(["example.com"])).await;
    let key = [7u8; 32];
    let thin = |c: &mut Value| {
        let claims = c.as_object_mut().unwrap();
        for k in ["email", "email_verified", "name"] {
            claims.remove(k);
        }
    };
    *idp.state.userinfo.lock().unwrap() = json!({"sub": "248289761001", "email": "jane@example.com",
        "email_verified": true, "name": "Jane Doe", "groups": ["staff"]});
    let trip = start(&c, &key);
    let code = sign_in(&idp, &trip, thin, None);
    let done = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap();
    let who = &done.identity;
    assert_eq!((who.email.as_deref(), who.email_verified), (Some("jane@example.com"), true));
    assert_eq!(who.name.as_deref(), Some("Jane Doe"));
    assert_eq!(who.claims["groups"], json!(["staff"]), "for claim allow-lists");
    assert_eq!(who.claims["nonce"], json!(trip.nonce), "the id_token's own claims stay");

    // A userinfo about someone else: the sign-in is refused, not completed with their email.
    *idp.state.userinfo.lock().unwrap() = json!({"sub": "someone-else", "email": "ceo@example.com",
        "email_verified": true});
    let trip = start(&c, &key);
    let code = sign_in(&idp, &trip, thin, None);
    let e = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamIdTokenInvalid, "{e}");
    assert!(e.detail.contains("another subject"), "{e}");

    // A userinfo that does not answer: the allow-list has no email to admit, and says why.
    *idp.state.userinfo.lock().unwrap() = json!("not an object");
    let trip = start(&c, &key);
    let code = sign_in(&idp, &trip, thin, None);
    let e = finish(&c, Some(&trip.cookie), &query(&trip.state, &code), &key).await.unwrap_err();
    assert_eq!(e.reason, Reason::UpstreamUserRefused, "{e}");
    assert!(e.detail.contains("userinfo could not be read"), "{e}");
}
