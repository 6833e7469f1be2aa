//! What real clients send, replayed over a real socket on both registration paths (Dynamic
//! Client Registration, and a Client ID Metadata Document served over TLS on a loopback
//! port): each shape registers, gets the sign-in page, exchanges its code and refreshes, and
//! every leniency it needed is named in the flow events.
//!
//! The shapes, from DESIGN.md's compatibility notes and the clients' trackers:
//! - Claude: `https://claude.ai/api/mcp/auth_callback`, registers without `scope`, and has
//!   asked for `scope=claudeai`, which no server defines.
//! - Claude Code: a port-less `http://localhost/callback` in its document, an ephemeral port
//!   at authorization, `resource` with a trailing slash, `offline_access` asked for.
//! - Codex: registers `127.0.0.1`, authorizes on `localhost` with `/callback/<id>`, and omits
//!   `resource` on refresh.
//! - VS Code: `https://vscode.dev/redirect` and `http://127.0.0.1:33418/`, a random port when
//!   that one is taken, `scope=openid profile email`.
//! - Cursor: `cursor://…`, an https and a loopback URI in one registration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{certificates, document_server};
use oauth_axum::metadata_documents::HttpsDocumentFetcher;
use oauth_core::{
    AuthorizationRequest, AuthorizationServer, ClientId, CodeChallenge, CodeVerifier, EventQuery, FlowStep, Issuer,
    RedirectPolicy, ResourceUri, ScopeSet, ServerConfig, StoreAuthenticator, UserId,
};
use oauth_store_memory::MemoryStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One client's habits.
struct Shape {
    name: &'static str,
    /// Registered (DCR) or listed in the document.
    redirect_uris: &'static [&'static str],
    /// What `token_endpoint_auth_method` it registers with (its documents say `none`).
    auth_method: &'static str,
    /// `scope` in its registration or document, if any.
    registered_scope: Option<&'static str>,
    /// The redirect URI it sends at authorization, `{id}` replaced by a fresh callback id.
    presented: &'static str,
    /// `scope` at authorization.
    scope: Option<&'static str>,
    /// `resource` at authorization, relative to the issuer (`None`: omitted).
    resource: Option<&'static str>,
    /// Whether it sends `resource` on refresh.
    resource_on_refresh: bool,
    /// The named policies the flow events must show for it.
    policies: &'static [&'static str],
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "claude",
        redirect_uris: &["https://claude.ai/api/mcp/auth_callback"],
        auth_method: "client_secret_post",
        registered_scope: None,
        presented: "https://claude.ai/api/mcp/auth_callback",
        scope: Some("claudeai"),
        resource: Some("/mcp"),
        resource_on_refresh: true,
        policies: &["unknown_scopes_dropped (claudeai)"],
    },
    Shape {
        name: "claude-code",
        redirect_uris: &["http://localhost/callback", "http://127.0.0.1/callback"],
        auth_method: "none",
        registered_scope: None,
        presented: "http://localhost:53682/callback",
        scope: Some("mcp:tools offline_access"),
        resource: Some("/mcp/"),
        resource_on_refresh: true,
        policies: &["resource_trailing_slash", "unknown_scopes_dropped (offline_access)"],
    },
    Shape {
        name: "codex",
        redirect_uris: &["http://127.0.0.1:1455/callback"],
        auth_method: "none",
        registered_scope: None,
        presented: "http://localhost:1455/callback/{id}",
        scope: None,
        resource: Some("/mcp"),
        resource_on_refresh: false,
        policies: &["loopback_callback_suffix"],
    },
    Shape {
        name: "vscode",
        redirect_uris: &["https://vscode.dev/redirect", "http://127.0.0.1:33418/"],
        auth_method: "none",
        registered_scope: Some("openid profile email"),
        presented: "http://127.0.0.1:40123/",
        scope: Some("openid profile email"),
        resource: Some("/mcp"),
        resource_on_refresh: true,
        policies: &["unknown_scopes_dropped (email openid profile)"],
    },
    Shape {
        name: "cursor",
        redirect_uris: &[
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://cursor.com/oauth/callback",
            "http://127.0.0.1/callback",
        ],
        auth_method: "none",
        registered_scope: None,
        presented: "cursor://anysphere.cursor-mcp/oauth/callback",
        scope: None,
        resource: None,
        resource_on_refresh: false,
        policies: &["resource_omitted"],
    },
];

#[derive(Clone, Copy, Debug)]
enum Path {
    Registration,
    Document,
}

/// A fresh Codex-style callback id: 12 URL-safe characters.
fn callback_id() -> String {
    let mut b = [0u8; 9];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// One HTTP/1.1 request over a fresh connection: the status, the headers and the body.
async fn http(base: &str, method: &str, path: &str, body: Option<(&str, String)>) -> (u16, String, String) {
    let host = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    let payload = match body {
        Some((content_type, b)) => {
            request.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", b.len()));
            b
        }
        None => String::new(),
    };
    request.push_str("\r\n");
    request.push_str(&payload);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn form(pairs: &[(&str, &str)]) -> Option<(&'static str, String)> {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    Some(("application/x-www-form-urlencoded", body))
}

fn metadata(shape: &Shape, client_id: Option<&str>) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "client_name": format!("{} shape", shape.name),
        "redirect_uris": shape.redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": shape.auth_method,
    });
    if let Some(id) = client_id {
        // A document cannot hold a secret: Claude uses documents only as a public client.
        doc["client_id"] = id.into();
        doc["token_endpoint_auth_method"] = "none".into();
    }
    if let Some(scope) = shape.registered_scope {
        doc["scope"] = scope.into();
    }
    doc
}

struct Deployment {
    server: Arc<AuthorizationServer>,
    base: String,
    documents: String,
    _dir: std::path::PathBuf,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// The authorization server over a real socket (default scopes `mcp:tools`, `cursor:`
/// allowed), and every shape's metadata document over TLS at `<documents>/<name>.json`.
async fn deployment() -> Deployment {
    let dir = std::env::temp_dir().join(format!("shapes-{}-{}", std::process::id(), callback_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let (documents, _) = document_server(cert, key, |origin| {
        SHAPES
            .iter()
            .map(|s| {
                let id = format!("{origin}/{}.json", s.name);
                (format!("/{}.json", s.name), (vec![200], String::new(), metadata(s, Some(&id)).to_string()))
            })
            .collect::<HashMap<_, _>>()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let scopes = ScopeSet::parse("mcp:tools").unwrap();
    let config = ServerConfig::new(Issuer::parse(&base).unwrap(), ResourceUri::parse(&format!("{base}/mcp")).unwrap())
        .with_scopes(scopes.clone(), scopes)
        .with_redirect_policy(RedirectPolicy::default().with_private_use_schemes(["cursor"]));
    let fetcher = HttpsDocumentFetcher::new().with_only_root_certificate(&ca).dangerous_allow_private_addresses(true);
    let server = Arc::new(
        AuthorizationServer::new(config, MemoryStore::new().into_stores())
            .await
            .unwrap()
            .with_metadata_documents(Arc::new(fetcher)),
    );
    let auth = Arc::new(StoreAuthenticator::new(server.operator().stores().users.clone()));
    let router = oauth_axum::router(server.clone(), auth);
    tokio::spawn(oauth_axum::serve::serve(listener, router, Default::default(), std::future::pending()));
    Deployment { server, base, documents, _dir: dir }
}

/// The client id (and secret, for a confidential registration) the shape uses on `path`.
async fn client_of(d: &Deployment, shape: &Shape, path: Path) -> (String, Option<String>) {
    match path {
        Path::Document => (format!("{}/{}.json", d.documents, shape.name), None),
        Path::Registration => {
            let body = metadata(shape, None).to_string();
            let (status, _, answer) = http(&d.base, "POST", "/register", Some(("application/json", body))).await;
            assert_eq!(status, 201, "{}: registration: {answer}", shape.name);
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            let secret = answer["client_secret"].as_str().map(str::to_owned);
            (answer["client_id"].as_str().unwrap().to_owned(), secret)
        }
    }
}

/// Every detail the server recorded for `client_id`, in order.
async fn details(d: &Deployment, client_id: &str) -> Vec<(FlowStep, bool, String)> {
    let id = ClientId::parse(client_id).unwrap();
    let events = d.server.operator().stores().events.events(&EventQuery::all().for_client(&id)).await.unwrap();
    events.into_iter().map(|e| (e.step, e.reason.is_none(), e.detail)).collect()
}

async fn connect(d: &Deployment, shape: &Shape, path: Path) {
    let what = format!("{} via {path:?}", shape.name);
    let (client_id, secret) = client_of(d, shape, path).await;
    let presented = shape.presented.replace("{id}", &callback_id());
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let resource = shape.resource.map(|r| format!("{}{r}", d.base));
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", presented.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "xyz"),
    ];
    if let Some(scope) = shape.scope {
        params.push(("scope", scope));
    }
    if let Some(r) = &resource {
        params.push(("resource", r));
    }

    // Over HTTP: the sign-in page, never a redirect back to the client with an error.
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    let (status, head, page) = http(&d.base, "GET", &format!("/authorize?{query}"), None).await;
    assert_eq!(status, 200, "{what}: /authorize answered {head}\n{page}");
    assert!(page.contains("<form"), "{what}: the sign-in page: {page}");

    // The person signs in and approves (the pages have their own tests); the code goes to
    // exactly the URI the client sent.
    let prompt = d.server.authorize(AuthorizationRequest::from_pairs(params.clone()).unwrap()).await.unwrap();
    assert_eq!(prompt.pending.scopes.to_string(), "mcp:tools", "{what}: the granted scope");
    let user = UserId::parse("user-1").unwrap();
    let location = d.server.approve(&prompt.pending.id, &user, d.server.now(), false).await.unwrap();
    assert!(location.starts_with(&format!("{presented}?")), "{what}: {location}");
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();

    let mut exchange = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", presented.as_str()),
        ("client_id", client_id.as_str()),
    ];
    if let Some(s) = &secret {
        exchange.push(("client_secret", s));
    }
    if let Some(r) = &resource {
        exchange.push(("resource", r));
    }
    let (status, _, tokens) = http(&d.base, "POST", "/token", form(&exchange)).await;
    assert_eq!(status, 200, "{what}: exchange: {tokens}");
    let tokens: serde_json::Value = serde_json::from_str(&tokens).unwrap();
    assert_eq!(tokens["scope"], "mcp:tools", "{what}");
    let claims = d.server.verify_access_token(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.aud, oauth_core::Audience::One(format!("{}/mcp", d.base)), "{what}: the canonical resource");

    // A refresh, resent with the authorization's scope string as clients do.
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token without offline_access").to_owned();
    let mut again = vec![("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client_id)];
    if let Some(s) = &secret {
        again.push(("client_secret", s));
    }
    if let Some(scope) = shape.scope {
        again.push(("scope", scope));
    }
    if shape.resource_on_refresh
        && let Some(r) = &resource
    {
        again.push(("resource", r));
    }
    let (status, _, refreshed) = http(&d.base, "POST", "/token", form(&again)).await;
    assert_eq!(status, 200, "{what}: refresh: {refreshed}");

    let events = details(d, &client_id).await;
    let refused: Vec<_> = events.iter().filter(|(_, ok, _)| !ok).collect();
    assert!(refused.is_empty(), "{what}: refusals recorded: {refused:?}");
    let authorize = events
        .iter()
        .filter(|(step, _, _)| *step == FlowStep::AuthorizationRequest)
        .map(|(_, _, detail)| detail.clone())
        .collect::<Vec<_>>()
        .join("\n");
    for policy in shape.policies {
        assert!(authorize.contains(policy), "{what}: the policy {policy} is named: {authorize}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_shape_connects_by_registration() {
    let d = deployment().await;
    for shape in SHAPES {
        connect(&d, shape, Path::Registration).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_shape_connects_by_metadata_document() {
    let d = deployment().await;
    for shape in SHAPES {
        connect(&d, shape, Path::Document).await;
    }
}

/// The leniencies stop at the loopback interface: nothing an attacker can register reaches a
/// code through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loopback_leniencies_do_not_reach_other_hosts() {
    let d = deployment().await;
    let shape = &SHAPES[2];
    let (client_id, _) = client_of(&d, shape, Path::Registration).await;
    for presented in [
        "http://localhost:1455/callback/a/b",
        "http://localhost:1455/callback/..%2f..%2fevil",
        "http://localhost.evil.example:1455/callback/abc",
        "https://127.0.0.1:1455/callback/abc",
        "http://127.0.0.1:1455/callbackabc",
    ] {
        let challenge = CodeChallenge::s256(&CodeVerifier::generate());
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", presented),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        let (status, head, page) = http(&d.base, "GET", &format!("/authorize?{query}"), None).await;
        assert_eq!(status, 400, "{presented}: {head}");
        assert!(!head.to_ascii_lowercase().contains("location:"), "{presented}: never redirected: {head}");
        assert!(page.contains("not registered"), "{presented}: {page}");
    }
}

/// The protected-resource metadata never lists `offline_access`, even when the operator
/// defines it: clients copy those scopes into their request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_metadata_never_lists_offline_access() {
    let issuer = "http://127.0.0.1:9";
    let scopes = ScopeSet::parse("mcp:tools offline_access").unwrap();
    let config =
        ServerConfig::new(Issuer::parse(issuer).unwrap(), ResourceUri::parse(&format!("{issuer}/mcp")).unwrap())
            .with_scopes(scopes, ScopeSet::parse("mcp:tools").unwrap());
    let server = AuthorizationServer::new(config, MemoryStore::new().into_stores()).await.unwrap();
    assert_eq!(server.protected_resource_metadata().scopes_supported, vec!["mcp:tools".to_owned()]);
    assert!(server.metadata().scopes_supported.contains(&"offline_access".to_owned()), "the AS metadata may list it");
}
