//! The assembled app in process: behind a reverse proxy with a public https URL, the
//! discovery documents, the challenge and the cookies all speak of the public URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use notes_server::{Settings, build};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

async fn body(resp: axum::response::Response) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn public_https_url_behind_a_proxy() {
    let settings = Settings { redirect_schemes: vec!["cursor".into()], ..Settings::new("https://mcp.example.com/") };
    let app = build(&settings, MemoryStore::new().into_stores()).await.unwrap();

    let prm = app
        .router
        .clone()
        .oneshot(Request::get("/.well-known/oauth-protected-resource/mcp").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let prm = body(prm).await;
    assert_eq!(prm["resource"], "https://mcp.example.com/mcp");
    assert_eq!(prm["authorization_servers"], serde_json::json!(["https://mcp.example.com"]));

    let meta = app
        .router
        .clone()
        .oneshot(Request::get("/.well-known/oauth-authorization-server").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let meta = body(meta).await;
    assert_eq!(meta["issuer"], prm["authorization_servers"][0], "one exact issuer string everywhere");
    assert_eq!(meta["token_endpoint"], "https://mcp.example.com/token");

    let challenge = app
        .router
        .clone()
        .oneshot(Request::post("/mcp").header(header::HOST, "mcp.example.com").body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let www = challenge.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        www.contains("resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""),
        "{www}"
    );

    // Cursor's private-use redirect is accepted because the deployment allows `cursor`.
    let reg = app
        .router
        .clone()
        .oneshot(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"client_name":"Cursor","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"token_endpoint_auth_method":"none"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reg.status(), StatusCode::CREATED);
    let client_id = body(reg).await["client_id"].as_str().unwrap().to_owned();

    // On https the sign-in cookies are __Host-, Secure.
    let verifier = oauth_core::CodeVerifier::generate();
    let challenge = oauth_core::CodeChallenge::s256(&verifier);
    let url = format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri=cursor%3A%2F%2Fanysphere.cursor-mcp%2Foauth%2Fcallback&code_challenge={}&code_challenge_method=S256",
        challenge.as_str()
    );
    let page = app.router.clone().oneshot(Request::get(url).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = page.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("__Host-mcp_oauth_csrf=") && cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn a_public_url_with_a_path_is_refused_with_a_reason() {
    let settings = Settings::new("https://mcp.example.com/notes");
    let err = build(&settings, MemoryStore::new().into_stores()).await.unwrap_err();
    assert!(err.to_string().contains("has a path"), "{err}");
    let settings = Settings::new("http://mcp.example.com");
    let err = build(&settings, MemoryStore::new().into_stores()).await.unwrap_err();
    assert!(err.to_string().contains("https"), "plain http outside loopback is refused: {err}");
}

#[tokio::test]
async fn the_self_check_refuses_what_an_expected_client_cannot_use() {
    use oauth_core::KnownClient;
    // Claude connects from its servers: a loopback URL cannot work.
    let settings = Settings { expected_clients: vec![KnownClient::Claude], ..Settings::new("http://127.0.0.1:8080") };
    let err = build(&settings, MemoryStore::new().into_stores()).await.unwrap_err().to_string();
    assert!(err.contains("claude is expected") && err.contains("https tunnel"), "{err}");
    // Cursor's callback needs its scheme allowed.
    let settings = Settings { expected_clients: vec![KnownClient::Cursor], ..Settings::new("https://mcp.example.com") };
    let err = build(&settings, MemoryStore::new().into_stores()).await.unwrap_err().to_string();
    assert!(err.contains("cursor is expected") && err.contains("private-use scheme 'cursor'"), "{err}");
    // Both fixed: the server starts.
    let settings = Settings {
        expected_clients: KnownClient::ALL.to_vec(),
        redirect_schemes: vec!["cursor".into()],
        ..Settings::new("https://mcp.example.com")
    };
    assert!(build(&settings, MemoryStore::new().into_stores()).await.is_ok());
}

#[tokio::test]
async fn the_admin_endpoint_is_off_by_default_and_needs_its_token() {
    let get = |router: axum::Router, auth: Option<&str>| {
        let mut req = Request::get("/admin/diagnose?since=600");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        router.oneshot(req.body(Body::empty()).unwrap())
    };
    let off = build(&Settings::new("https://mcp.example.com"), MemoryStore::new().into_stores()).await.unwrap();
    assert_eq!(get(off.router, Some("Bearer anything")).await.unwrap().status(), StatusCode::NOT_FOUND);

    let secret = "an admin secret of more than thirty-two characters";
    assert!(mcp_oauth::AdminToken::new("short").is_err(), "short admin secrets are refused");
    let settings = Settings {
        admin_token: Some(mcp_oauth::AdminToken::new(secret).unwrap()),
        ..Settings::new("https://mcp.example.com")
    };
    let on = build(&settings, MemoryStore::new().into_stores()).await.unwrap();
    let refused = get(on.router.clone(), None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(on.router.clone(), Some("Bearer wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // A failed registration, then the timeline names it.
    let reg = on
        .router
        .clone()
        .oneshot(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"client_name":"x","redirect_uris":["http://evil.example/cb"]}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reg.status(), StatusCode::BAD_REQUEST);
    let ok = get(on.router.clone(), Some(&format!("Bearer {secret}"))).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[header::CACHE_CONTROL], "no-store");
    let report = body(ok).await;
    let attempt = &report[0]["attempts"][0];
    assert_eq!(
        (attempt["verdict"].as_str(), attempt["reason"].as_str()),
        (Some("failed"), Some("invalid_redirect_uri")),
        "{report}"
    );
    let missing = on
        .router
        .clone()
        .oneshot(
            Request::get("/admin/clients/mcp_nope")
                .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The keys: listed without any private part, rotated, and the server signs with the new one.
    let admin = |req: axum::http::request::Builder| {
        req.header(header::AUTHORIZATION, format!("Bearer {secret}")).body(Body::empty()).unwrap()
    };
    let listed = body(on.router.clone().oneshot(admin(Request::get("/admin/keys"))).await.unwrap()).await;
    let before = listed[0]["kid"].as_str().unwrap().to_owned();
    assert!(listed.to_string().find("private").is_none(), "{listed}");
    let refused = on.router.clone().oneshot(Request::post("/admin/keys/rotate").body(Body::empty()).unwrap()).await;
    assert_eq!(refused.unwrap().status(), StatusCode::UNAUTHORIZED, "rotation needs the admin token");
    let rotated = on.router.clone().oneshot(admin(Request::post("/admin/keys/rotate"))).await.unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let new = body(rotated).await["kid"].as_str().unwrap().to_owned();
    assert_ne!(new, before);
    let jwks =
        body(on.router.clone().oneshot(Request::get("/jwks.json").body(Body::empty()).unwrap()).await.unwrap()).await;
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == new), "published at once: {jwks}");
    let listed = body(on.router.clone().oneshot(admin(Request::get("/admin/keys"))).await.unwrap()).await;
    assert_eq!((listed[0]["kid"].as_str(), listed[0]["retired_at"].is_null()), (Some(new.as_str()), true), "{listed}");
    assert!(listed[1]["retired_at"].is_number(), "the old key is retired, still listed: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_rate_limits_key_on_the_forwarded_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings { trusted_proxies: vec!["127.0.0.1".parse().unwrap()], ..Settings::new(&base) };
    let app = build(&settings, MemoryStore::new().into_stores()).await.unwrap();
    let service = app.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });

    let http = reqwest::Client::new();
    let register = |from: &'static str| {
        http.post(format!("{base}/register"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", from)
            .body(r#"{"redirect_uris":["http://127.0.0.1:9/cb"],"token_endpoint_auth_method":"none"}"#)
            .send()
    };
    // The default registration limit is a burst of 20: one address behind the proxy runs out...
    let mut limited = 0;
    for _ in 0..25 {
        if register("203.0.113.7").await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS.as_u16() {
            limited += 1;
        }
    }
    assert!(limited >= 4, "only {limited} of 25 registrations were limited");
    // ...and another one behind the same proxy is not limited with it.
    assert_eq!(register("203.0.113.8").await.unwrap().status(), StatusCode::CREATED.as_u16());
}
