//! Limits as an attacker meets them: `/authorize` floods, registration floods from many
//! addresses, and registration on a closed deployment, driven through the router with the
//! peer address a socket would give.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use oauth_axum::{AuthRouter, InitialAccessToken, Limit, RateLimits, RegistrationQuota};
use oauth_core::StoreAuthenticator;
use oauth_core::{AuthorizationServer, ServerConfig};
use oauth_core::{EventQuery, Reason};
use oauth_core::{Issuer, ResourceUri};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const BODY: &str = r#"{"redirect_uris":["http://127.0.0.1:9/cb"],"token_endpoint_auth_method":"none"}"#;

async fn app(configure: impl FnOnce(AuthRouter) -> AuthRouter) -> (Router, Arc<AuthorizationServer>) {
    let config = ServerConfig::new(
        Issuer::parse("http://127.0.0.1:8080").unwrap(),
        ResourceUri::parse("http://127.0.0.1:8080/mcp").unwrap(),
    );
    let server = Arc::new(AuthorizationServer::new(config, MemoryStore::new().into_stores()).await.unwrap());
    let auth = Arc::new(StoreAuthenticator::new(server.operator().stores().users.clone()));
    (configure(AuthRouter::new(server.clone(), auth)).into_router(), server)
}

fn from(mut req: Request<Body>, ip: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    req
}

fn register(ip: &str, bearer: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/register").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    from(b.body(Body::from(BODY)).unwrap(), ip)
}

async fn send(app: &Router, req: Request<Body>) -> (Response<Body>, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (Response::from_parts(parts, Body::empty()), json)
}

async fn reasons(server: &AuthorizationServer) -> Vec<Reason> {
    // The rate-limit event is recorded off the request path.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    server
        .operator()
        .stores()
        .events
        .events(&EventQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn authorize_answers_429_past_its_per_address_limit() {
    let (app, server) = app(|r| r.with_rate_limits(Some(RateLimits::default().with_authorize(Limit::new(5, 5))))).await;
    let url = "/authorize?response_type=code&client_id=made-up&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb";
    for i in 0..5 {
        let (r, _) = send(&app, from(Request::get(url).body(Body::empty()).unwrap(), "192.0.2.1")).await;
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "request {i} is within the burst");
    }
    let (r, _) = send(&app, from(Request::get(url).body(Body::empty()).unwrap(), "192.0.2.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let (r, _) = send(&app, from(Request::get(url).body(Body::empty()).unwrap(), "192.0.2.2")).await;
    assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "another address is not limited with it");
    assert!(reasons(&server).await.contains(&Reason::RateLimited), "the refusal is a flow event");
}

#[tokio::test]
async fn registration_from_many_addresses_meets_the_server_wide_quota() {
    let quota = RegistrationQuota::new(3, 10);
    let (app, server) = app(|r| r.with_rate_limits(Some(RateLimits::default().with_registration_quota(quota)))).await;
    // Three an hour per address...
    for _ in 0..3 {
        assert_eq!(send(&app, register("198.51.100.1", None)).await.0.status(), StatusCode::CREATED);
    }
    let (r, body) = send(&app, register("198.51.100.1", None)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("retry in"), "{body}");
    assert!(r.headers()[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 60);
    // ...and ten an hour in all, however many addresses the attacker has.
    let mut created = 3;
    let mut refused_at = None;
    for i in 2..=20 {
        let (r, body) = send(&app, register(&format!("198.51.100.{i}"), None)).await;
        if r.status() == StatusCode::CREATED {
            created += 1;
        } else {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{body}");
            assert!(body["error_description"].as_str().unwrap().contains("all clients"), "{body}");
            refused_at.get_or_insert(i);
        }
    }
    assert_eq!(created, 10, "the quota bounds the client table's growth");
    assert_eq!(refused_at, Some(9));
    assert_eq!(server.operator().stores().clients.list_clients().await.unwrap().len(), 10);
}

#[tokio::test]
async fn a_closed_deployment_requires_the_initial_access_token() {
    let secret = "registration-secret-for-partners-only-0001";
    let token = InitialAccessToken::from_sha256_hex(&InitialAccessToken::new(secret).unwrap().sha256_hex()).unwrap();
    let (app, server) = app(|r| r.with_initial_access_token(Some(token))).await;
    for bearer in [None, Some("wrong-token"), Some("")] {
        let (r, body) = send(&app, register("192.0.2.9", bearer)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bearer:?}");
        assert_eq!(body["error"], "invalid_token", "{body}");
        assert!(r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    }
    assert!(server.operator().stores().clients.list_clients().await.unwrap().is_empty(), "nothing was registered");
    let (r, body) = send(&app, register("192.0.2.9", Some(secret))).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{body}");
    assert!(reasons(&server).await.contains(&Reason::InitialAccessTokenInvalid));
    let events = server.operator().stores().events.events(&EventQuery::default()).await.unwrap();
    assert!(events.iter().all(|e| !e.detail.contains(secret) && !e.detail.contains("wrong-token")), "never logged");
}

/// Garbage anyone can send at any rate, from as many addresses as they like: every request
/// is answered with its error, but only a bounded number of flow events is stored for it.
#[tokio::test]
async fn a_flood_of_garbage_from_many_addresses_cannot_fill_the_event_table() {
    let token = InitialAccessToken::new("an initial access token of enough length").unwrap();
    let (app, server) = app(|r| r.with_rate_limits(None).with_initial_access_token(Some(token))).await;
    for i in 0..200u32 {
        let ip = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        let garbage = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=authorization_code&code=a&code=b"))
            .unwrap();
        let (r, json) = send(&app, from(garbage, &ip)).await;
        assert_eq!((r.status(), json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        let (r, json) = send(&app, register(&ip, None)).await;
        assert_eq!((r.status(), json["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    }
    let reasons = reasons(&server).await;
    let stored = |reason| reasons.iter().filter(|&&r| r == reason).count();
    assert_eq!(stored(Reason::InvalidRequest), 1, "one malformed body stored per interval, of 200");
    assert_eq!(stored(Reason::InitialAccessTokenInvalid), 1, "one refused registration stored per interval, of 200");
}

/// Two replicas on one store, limits shared: a stranger alternating between them gets what one
/// replica would allow, not twice that; the token endpoint's limit stays each replica's own.
#[tokio::test]
async fn replicas_sharing_their_limits_allow_what_one_would() {
    let stores = MemoryStore::new().into_stores();
    let limits = RateLimits::default()
        .with_authorize(Limit::new(4, 1))
        .with_registration_quota(RegistrationQuota::new(3, 5))
        .with_token(Limit::new(2, 1));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let config = ServerConfig::new(
            Issuer::parse("http://127.0.0.1:8080").unwrap(),
            ResourceUri::parse("http://127.0.0.1:8080/mcp").unwrap(),
        );
        let server = Arc::new(AuthorizationServer::new(config, stores.clone()).await.unwrap());
        let auth = Arc::new(StoreAuthenticator::new(stores.users.clone()));
        let router = AuthRouter::new(server, auth)
            .with_rate_limits(Some(limits.clone()))
            .with_shared_limits(Some(stores.limits.clone()))
            .into_router::<()>();
        replicas.push(router);
    }
    let url = "/authorize?response_type=code&client_id=made-up&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb";
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (r, _) = send(&replicas[i % 2], from(Request::get(url).body(Body::empty()).unwrap(), "192.0.2.1")).await;
        statuses.push(r.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(statuses, [false, false, false, false, true, true, true, true], "one burst of 4 for the pair");

    // Registration: three an hour from one address, five in all, across both replicas.
    let mut created = Vec::new();
    for i in 0..4 {
        created.push(send(&replicas[i % 2], register("198.51.100.1", None)).await.0.status() == StatusCode::CREATED);
    }
    assert_eq!(created, [true, true, true, false], "the address's hourly quota, counted once");
    let mut in_all = 3;
    for i in 0..6 {
        let ip = format!("198.51.100.{}", 10 + i);
        if send(&replicas[i % 2], register(&ip, None)).await.0.status() == StatusCode::CREATED {
            in_all += 1;
        }
    }
    assert_eq!(in_all, 5, "the server-wide quota holds for the pair");
    assert_eq!(stores.clients.list_clients().await.unwrap().len(), 5);

    // The token endpoint: each replica's own burst of 2.
    let token = || {
        let req = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=authorization_code&code=x&client_id=made-up"))
            .unwrap();
        from(req, "203.0.113.5")
    };
    let mut limited = Vec::new();
    for i in 0..6 {
        limited.push(send(&replicas[i % 2], token()).await.0.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(limited, [false, false, false, false, true, true], "per replica: 2 at each");
}
