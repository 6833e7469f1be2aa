//! Client ID Metadata Documents end to end: the documents are served over real TLS on a
//! loopback port (a certificate made by `openssl` for this run), fetched by the SSRF-safe
//! fetcher, and used by the authorization server for a whole code flow. Loopback is allowed
//! here only through the fetcher's `dangerous_allow_private_addresses`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{certificates, document_server};
use http_body_util::BodyExt as _;
use oauth_axum::metadata_documents::HttpsDocumentFetcher;
use oauth_core::ClientOrigin;
use oauth_core::CodeChallenge;
use oauth_core::CodeVerifier;
use oauth_core::MetadataDocumentFetcher as _;
use oauth_core::StoreAuthenticator;
use oauth_core::TokenRequest;
use oauth_core::{AuthorizationRequest, AuthorizeError};
use oauth_core::{AuthorizationServer, ManualClock, ServerConfig, UnixTime};
use oauth_core::{ClientId, Issuer, ResourceUri, UserId};
use oauth_core::{EventQuery, FlowStep};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const CALLBACK: &str = "http://127.0.0.1:7777/callback";

fn document(client_id: &str, name: &str) -> String {
    format!(
        r#"{{"client_id":"{client_id}","client_name":"{name}","redirect_uris":["{CALLBACK}"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}}"#
    )
}

fn authorize_request(client_id: &str, challenge: &CodeChallenge) -> AuthorizationRequest {
    AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s"),
    ])
    .unwrap()
}

/// The detail of the newest failed `registration` event of `client_id`.
async fn fetch_failure(server: &AuthorizationServer, client_id: &str) -> String {
    let id = ClientId::parse(client_id).unwrap();
    let events = server.operator().stores().events.events(&EventQuery::all().for_client(&id)).await.unwrap();
    events
        .into_iter()
        .rev()
        .find(|e| e.step == FlowStep::Registration && e.reason.is_some())
        .map(|e| e.detail)
        .unwrap_or_default()
}

fn shown(e: AuthorizeError) -> String {
    match e {
        AuthorizeError::ShowToUser(e) => e.description().to_owned(),
        other => panic!("expected an error shown to the user, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_document_client_signs_in_without_registering() {
    let dir = std::env::temp_dir().join(format!("cimd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let (origin, fetches) = document_server(cert, key, |origin| {
        HashMap::from([
            (
                "/client.json".to_owned(),
                (
                    vec![200],
                    "Cache-Control: max-age=600\r\n".to_owned(),
                    document(&format!("{origin}/client.json"), "CIMD Test App"),
                ),
            ),
            (
                "/impostor.json".to_owned(),
                (vec![200], String::new(), document("https://claude.ai/oauth/client.json", "Impostor")),
            ),
            (
                "/flaky.json".to_owned(),
                (vec![200, 503], String::new(), document(&format!("{origin}/flaky.json"), "Flaky")),
            ),
            ("/moved.json".to_owned(), (vec![302], format!("Location: {origin}/client.json\r\n"), String::new())),
        ])
    })
    .await;
    let client_id = format!("{origin}/client.json");

    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_800_000_000)));
    let issuer = "http://127.0.0.1:8080";
    let config =
        ServerConfig::new(Issuer::parse(issuer).unwrap(), ResourceUri::parse(&format!("{issuer}/mcp")).unwrap());
    let fetcher = HttpsDocumentFetcher::new().with_only_root_certificate(&ca).dangerous_allow_private_addresses(true);
    let server = Arc::new(
        AuthorizationServer::with_clock(config, MemoryStore::new().into_stores(), clock.clone())
            .await
            .unwrap()
            .with_metadata_documents(Arc::new(fetcher)),
    );
    assert_eq!(server.metadata().client_id_metadata_document_supported, Some(true));

    // The authorization request fetches the document; the consent page will name the client.
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let prompt = server.authorize(authorize_request(&client_id, &challenge)).await.unwrap();
    assert_eq!(prompt.client.display_name(), "CIMD Test App");
    assert_eq!(prompt.client.origin, ClientOrigin::MetadataDocument);
    let location =
        server.approve(&prompt.pending.id, &UserId::parse("user-1").unwrap(), server.now(), false).await.unwrap();
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();

    // The token request uses the cached document: one fetch for the whole flow.
    let exchange = TokenRequest::from_pairs([
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CALLBACK),
        ("client_id", client_id.as_str()),
    ])
    .unwrap();
    let tokens = server.token(exchange, None).await.unwrap();
    assert_eq!(server.verify_access_token(&tokens.access_token).unwrap().client_id, client_id);
    assert_eq!(fetches["/client.json"].load(Ordering::SeqCst), 1);

    // The operator's choices survive a refetch after the document's max-age.
    let id = ClientId::parse(&client_id).unwrap();
    server.operator().update_client(&id, oauth_core::ClientUpdate::default().trusted(true)).await.unwrap();
    clock.advance(Duration::from_secs(601));
    let again = server.authorize(authorize_request(&client_id, &challenge)).await.unwrap();
    assert_eq!(fetches["/client.json"].load(Ordering::SeqCst), 2);
    assert!(again.client.trusted, "trusted is kept across fetches");

    // A document whose host fails after it expired: the expired copy keeps the client working.
    let flaky = format!("{origin}/flaky.json");
    assert!(server.authorize(authorize_request(&flaky, &challenge)).await.is_ok());
    clock.advance(Duration::from_secs(3601));
    let still = server.authorize(authorize_request(&flaky, &challenge)).await.unwrap();
    assert_eq!((still.client.display_name(), fetches["/flaky.json"].load(Ordering::SeqCst)), ("Flaky", 2));

    // A document that claims another client_id: refused on the page, with the reason.
    let e =
        shown(server.authorize(authorize_request(&format!("{origin}/impostor.json"), &challenge)).await.unwrap_err());
    assert!(e.contains("must be exactly its own URL"), "{e}");
    // A redirect and a missing document: the page only says the document could not be
    // fetched; the operator's flow event says why.
    for (path, why) in [("/moved.json", "redirects are not followed"), ("/nothing.json", "404")] {
        let url = format!("{origin}{path}");
        let e = shown(server.authorize(authorize_request(&url, &challenge)).await.unwrap_err());
        assert!(e.contains("could not be fetched") && !e.contains(why), "{e}");
        assert!(fetch_failure(&server, &url).await.contains(why), "{path}");
    }

    // Without the dangerous switch the same loopback document is never fetched, and the page
    // does not say what the host resolved to.
    let strict = Arc::new(
        AuthorizationServer::new(
            ServerConfig::new(Issuer::parse(issuer).unwrap(), ResourceUri::parse(&format!("{issuer}/mcp")).unwrap()),
            MemoryStore::new().into_stores(),
        )
        .await
        .unwrap()
        .with_metadata_documents(Arc::new(HttpsDocumentFetcher::new().with_only_root_certificate(&ca))),
    );
    let e = shown(strict.authorize(authorize_request(&client_id, &challenge)).await.unwrap_err());
    assert!(e.contains("could not be fetched") && !e.contains("127.0.0.1") && !e.contains("public"), "{e}");
    assert!(fetch_failure(&strict, &client_id).await.contains("not a public address"));
    assert_eq!(fetches["/client.json"].load(Ordering::SeqCst), 2);

    // Over HTTP the metadata advertises it and /authorize shows the sign-in page.
    let auth = Arc::new(StoreAuthenticator::new(server.operator().stores().users.clone()));
    let app: axum::Router = oauth_axum::router(server.clone(), auth);
    let resp = app
        .clone()
        .oneshot(Request::get("/.well-known/oauth-authorization-server").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let uri = format!(
        "/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        enc(&client_id),
        enc(CALLBACK),
        challenge.as_str()
    );
    let page = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A document server with one document at `/client.json`, and a fetcher that trusts its
/// certificate and may reach loopback.
async fn one_document(tag: &str) -> (String, HttpsDocumentFetcher, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("cimd-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let (origin, _) = document_server(cert, key, |origin| {
        HashMap::from([(
            "/client.json".to_owned(),
            (vec![200], String::new(), document(&format!("{origin}/client.json"), "Direct")),
        )])
    })
    .await;
    let fetcher = HttpsDocumentFetcher::new().with_only_root_certificate(&ca).dangerous_allow_private_addresses(true);
    (format!("{origin}/client.json"), fetcher, dir)
}

/// Run on its own, and again by `proxy_settings_in_the_environment_are_never_used` with every
/// proxy variable pointing at a listener that records connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_is_fetched_from_its_own_host() {
    let (url, fetcher, dir) = one_document("direct").await;
    let doc = fetcher.fetch(&url).await.unwrap();
    assert!(String::from_utf8_lossy(&doc.body).contains("\"Direct\""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn proxy_settings_in_the_environment_are_never_used() {
    // A proxy re-resolves the name itself, so the addresses checked would not be the ones
    // reached; the fetcher must connect directly whatever the environment says.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", "a_document_is_fetched_from_its_own_host", "--test-threads=1"]);
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"] {
        child.env(var, &proxy_url);
    }
    child.env_remove("NO_PROXY").env_remove("no_proxy");
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let connected = proxy.accept().is_ok();
    assert!(!connected, "the fetcher connected to the proxy named in the environment");
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_documents_on_one_host_do_not_lock_out_another_host() {
    let (url, fetcher, dir) = one_document("budget").await;
    // An attacker names made-up documents on a host of theirs (here a closed loopback port)
    // until that host's budget is spent.
    let mut refused = String::new();
    for i in 0..100 {
        if let Err(e) = fetcher.fetch(&format!("https://127.0.0.2:1/made-up-{i}.json")).await {
            refused = e.to_string();
        }
    }
    assert!(refused.contains("too many"), "the attacker's host is cut off: {refused}");
    // A real client on another host still gets its document.
    let doc = fetcher.fetch(&url).await.unwrap();
    assert!(String::from_utf8_lossy(&doc.body).contains("\"Direct\""));
    let _ = std::fs::remove_dir_all(&dir);
}
