//! Every endpoint of the router, driven with `tower::ServiceExt::oneshot`: the error tables,
//! the pages' security headers, and the whole browser flow through sign-in and consent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use oauth_core::CodeChallenge;
use oauth_core::CodeVerifier;
use oauth_core::{AuthorizationServer, ServerConfig};
use oauth_core::{Issuer, ResourceUri};
use oauth_core::{StoreAuthenticator, create_user};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const REDIRECT: &str = "http://127.0.0.1:9999/callback";

struct App {
    router: Router,
    server: Arc<AuthorizationServer>,
    issuer: String,
}

async fn app(issuer: &str) -> App {
    let resource = format!("{}/mcp", Issuer::parse(issuer).unwrap().origin());
    let config = ServerConfig::new(Issuer::parse(issuer).unwrap(), ResourceUri::parse(&resource).unwrap());
    let server = Arc::new(AuthorizationServer::new(config, MemoryStore::new().into_stores()).await.unwrap());
    create_user(server.operator().stores().users.as_ref(), "alice", "correct horse", server.now()).await.unwrap();
    let auth = Arc::new(StoreAuthenticator::new(server.operator().stores().users.clone()));
    App { router: oauth_axum::router(server.clone(), auth), server, issuer: issuer.to_owned() }
}

async fn send(app: &App, req: Request<Body>) -> (Response<Body>, String) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, Body::empty()), String::from_utf8_lossy(&bytes).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn form(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_owned())).unwrap()
}

fn header(r: &Response<Body>, name: header::HeaderName) -> &str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"].as_str().unwrap_or_default().to_owned()
}

async fn register_public(app: &App, name: &str) -> String {
    let body = format!(
        r#"{{"client_name":{},"redirect_uris":["{REDIRECT}"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}}"#,
        serde_json::to_string(name).unwrap()
    );
    let (r, b) = send(app, json("/register", &body)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{b}");
    serde_json::from_str::<serde_json::Value>(&b).unwrap()["client_id"].as_str().unwrap().to_owned()
}

fn authorize_url(client_id: &str, challenge: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st4te&scope=mcp%3Atools",
        urlencode(REDIRECT)
    )
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The hidden inputs of the page's form.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in page:\n{page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// `name=value` pairs of the response's Set-Cookie headers.
fn cookies(r: &Response<Body>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location).unwrap().query_pairs().into_owned().collect()
}

#[tokio::test]
async fn metadata_is_served_where_clients_look() {
    let a = app("http://127.0.0.1:8080").await;
    let (r, b) = send(&a, get("/.well-known/oauth-authorization-server")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(m["issuer"], a.issuer);
    assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    let (r, b) = send(&a, get("/.well-known/openid-configuration")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["subject_types_supported"],
        serde_json::json!(["public"])
    );
    let (r, b) = send(&a, get("/jwks.json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&b).unwrap()["keys"][0]["alg"], "ES256");

    // An issuer with a path: RFC 8414 path insertion, OpenID's appended form, and the root for
    // clients that look at the origin.
    let t = app("https://as.example.com/tenant").await;
    for path in [
        "/.well-known/oauth-authorization-server/tenant",
        "/.well-known/openid-configuration/tenant",
        "/tenant/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (r, b) = send(&t, get(path)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let m: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(m["issuer"], "https://as.example.com/tenant", "{path}");
        assert_eq!(m["token_endpoint"], "https://as.example.com/tenant/token");
    }
    let (r, _) = send(&t, form("/tenant/token", "grant_type=authorization_code")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "endpoints live under the issuer path");
}

#[tokio::test]
async fn registration_answers_201_or_400_json() {
    let a = app("http://127.0.0.1:8080").await;
    let (r, b) = send(&a, json("/register", r#"{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"client_secret_post","grant_types":["authorization_code","refresh_token"]}"#)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert!(v["client_secret"].as_str().unwrap().len() >= 43);
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(v["redirect_uris"][0], "https://claude.ai/api/mcp/auth_callback");

    let cases = [
        (r#"{"redirect_uris":["javascript:alert(1)"]}"#, "invalid_redirect_uri"),
        (r#"{"redirect_uris":["http://evil.example/cb"]}"#, "invalid_redirect_uri"),
        (
            r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"tls_client_auth"}"#,
            "invalid_client_metadata",
        ),
        ("{not json", "invalid_client_metadata"),
        ("", "invalid_client_metadata"),
    ];
    for (body, code) in cases {
        let (r, b) = send(&a, json("/register", body)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}: {b}");
        assert_eq!(header(&r, header::CONTENT_TYPE), "application/json");
        assert_eq!(error_code(&b), code, "{body}");
        assert!(b.contains("error_description"));
    }
    let huge = format!(r#"{{"redirect_uris":["https://a.example/cb"],"client_name":"{}"}}"#, "x".repeat(70 * 1024));
    let (r, _) = send(&a, json("/register", &huge)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn authorize_shows_client_errors_and_redirects_the_rest() {
    let a = app("http://127.0.0.1:8080").await;
    let client = register_public(&a, "kit").await;
    let challenge = CodeChallenge::s256(&CodeVerifier::generate());

    // Unknown client and unregistered redirect: a page, never a redirect.
    let (r, b) = send(&a, get(&authorize_url("mcp_unknown", challenge.as_str()))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::LOCATION).is_none());
    assert!(b.contains("not registered"), "{b}");
    let bad =
        authorize_url(&client, challenge.as_str()).replace(&urlencode(REDIRECT), &urlencode("https://evil.example/cb"));
    let (r, b) = send(&a, get(&bad)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::LOCATION).is_none());
    assert!(b.contains("https://evil.example/cb"), "the page names the URI sent: {b}");
    assert!(!b.contains(REDIRECT), "the page must not show where this client's codes can be sent: {b}");
    let events = a.server.operator().stores().events.events(&oauth_core::EventQuery::all()).await.unwrap();
    assert!(
        events.iter().any(|e| e.detail.contains("https://evil.example/cb") && e.detail.contains(REDIRECT)),
        "the operator's event names the URI sent and the ones registered"
    );
    let dup = format!("{}&client_id=other", authorize_url(&client, challenge.as_str()));
    let (r, _) = send(&a, get(&dup)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A client that asks for JSON (mcp-remote probing a cached registration) gets the same
    // error as JSON, so that it can register again; a browser's Accept still gets the page.
    let probe = |accept: &'static str| {
        Request::get(authorize_url("mcp_unknown", challenge.as_str()))
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .unwrap()
    };
    let (r, b) = send(&a, probe("application/json")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "invalid_client is a 401: {b}");
    assert!(r.headers().get(header::LOCATION).is_none());
    assert_eq!(error_code(&b), "invalid_client", "{b}");
    let (r, b) = send(&a, probe("text/html,application/xhtml+xml,application/json;q=0.9")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(b.contains("not registered") && b.contains("<html"), "{b}");

    // Everything else goes back to the client with state and iss.
    let cases = [
        (authorize_url(&client, challenge.as_str()).replace("&code_challenge_method=S256", ""), "invalid_request"),
        (
            authorize_url(&client, challenge.as_str())
                .replace("&code_challenge_method=S256", "&code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            authorize_url(&client, challenge.as_str()).replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            format!(
                "{}&resource={}",
                authorize_url(&client, challenge.as_str()),
                urlencode("https://other.example/mcp")
            ),
            "invalid_target",
        ),
        (authorize_url(&client, challenge.as_str()).replace("scope=mcp%3Atools", "scope=%22admin"), "invalid_scope"),
    ];
    for (url, code) in cases {
        let (r, _) = send(&a, get(&url)).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{url}");
        let q = query(header(&r, header::LOCATION));
        assert_eq!(q["error"], code, "{url}");
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["iss"], a.issuer);
        assert!(!q["error_description"].is_empty());
    }
}

#[tokio::test]
async fn browser_flow_signs_in_consents_and_gets_tokens() {
    let a = app("http://127.0.0.1:8080").await;
    let client = register_public(&a, "<script>alert(1)</script>").await;
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);

    let (r, page) = send(&a, get(&authorize_url(&client, challenge.as_str()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, header::CONTENT_SECURITY_POLICY).contains("frame-ancestors 'none'"));
    assert_eq!(header(&r, header::X_FRAME_OPTIONS), "DENY");
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
    assert!(r.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "pages get no CORS");
    assert!(!page.contains("<script>alert(1)</script>"), "client names are escaped: {page}");
    assert!(page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"), "{page}");
    let csrf_cookie = cookies(&r).into_iter().find(|c| c.starts_with("mcp_oauth_csrf=")).expect("csrf cookie");
    let pending = hidden(&page, "pending");
    let csrf = hidden(&page, "csrf");

    // A forged submission (no cookie) and a wrong token are refused.
    let body = format!("pending={pending}&csrf={csrf}&username=alice&password=correct+horse");
    let (r, _) = send(&a, form("/authorize/sign-in", &body)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut req = form("/authorize/sign-in", &body.replace(&csrf, "AAAA"));
    req.headers_mut().insert(header::COOKIE, csrf_cookie.parse().unwrap());
    assert_eq!(send(&a, req).await.0.status(), StatusCode::FORBIDDEN);

    // Wrong password: the page again, with a message.
    let mut req = form("/authorize/sign-in", &body.replace("correct+horse", "wrong"));
    req.headers_mut().insert(header::COOKIE, csrf_cookie.parse().unwrap());
    let (r, page2) = send(&a, req).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(page2.contains("Wrong username or password"));

    let mut req = form("/authorize/sign-in", &body);
    req.headers_mut().insert(header::COOKIE, csrf_cookie.parse().unwrap());
    let (r, consent) = send(&a, req).await;
    assert_eq!(r.status(), StatusCode::OK, "{consent}");
    let session = cookies(&r).into_iter().find(|c| c.starts_with("mcp_oauth_session=")).expect("session cookie");
    assert!(consent.contains("mcp:tools") && consent.contains("127.0.0.1"), "consent shows scopes and redirect host");
    let cookie_header = format!("{csrf_cookie}; {session}");

    let body = format!("pending={pending}&csrf={}&decision=approve", hidden(&consent, "csrf"));
    let mut req = form("/authorize/consent", &body);
    req.headers_mut().insert(header::COOKIE, cookie_header.parse().unwrap());
    let (r, _) = send(&a, req).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = header(&r, header::LOCATION).to_owned();
    assert!(location.starts_with(REDIRECT));
    let q = query(&location);
    assert_eq!((q["state"].as_str(), q["iss"].as_str()), ("st4te", a.issuer.as_str()));

    // Approving the same request twice: it is gone.
    let mut req = form("/authorize/consent", &body);
    req.headers_mut().insert(header::COOKIE, cookie_header.parse().unwrap());
    assert_eq!(send(&a, req).await.0.status(), StatusCode::BAD_REQUEST);

    let token_body = format!(
        "grant_type=authorization_code&code={}&code_verifier={}&redirect_uri={}&client_id={client}",
        urlencode(&q["code"]),
        verifier.secret(),
        urlencode(REDIRECT)
    );
    let (r, b) = send(&a, form("/token", &token_body)).await;
    assert_eq!(r.status(), StatusCode::OK, "{b}");
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
    let tokens: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(a.server.verify_access_token(tokens["access_token"].as_str().unwrap()).is_ok());

    // The same code again: invalid_grant.
    let (r, b) = send(&a, form("/token", &token_body)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&b), "invalid_grant");

    // The replay revoked what the code had issued (RFC 6749 4.1.2).
    let rt = tokens["refresh_token"].as_str().unwrap();
    let (r, b) =
        send(&a, form("/token", &format!("grant_type=refresh_token&refresh_token={rt}&client_id={client}"))).await;
    assert_eq!((r.status(), error_code(&b).as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));

    // Signed in already: the next authorization of this client skips the sign-in page, but
    // not the consent page: the code goes to a loopback port of a public client, which another
    // app on the device could pose as (RFC 8252 8.6), so remembered consent is not replayed.
    let (r, b) = send(&a, {
        let mut req = get(&authorize_url(&client, challenge.as_str()));
        req.headers_mut().insert(header::COOKIE, cookie_header.parse().unwrap());
        req
    })
    .await;
    assert_eq!(r.status(), StatusCode::OK, "consent asked again");
    assert!(b.contains("asked again") && b.contains("value=\"approve\""), "{b}");
    let mut req = form(
        "/authorize/consent",
        &format!("pending={}&csrf={}&decision=approve", hidden(&b, "pending"), hidden(&b, "csrf")),
    );
    req.headers_mut().insert(header::COOKIE, cookie_header.parse().unwrap());
    let (r, _) = send(&a, req).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let code = query(header(&r, header::LOCATION))["code"].clone();
    let token_body = token_body.replace(&urlencode(&q["code"]), &urlencode(&code));
    let (r, b) = send(&a, form("/token", &token_body)).await;
    assert_eq!(r.status(), StatusCode::OK, "{b}");
    let rt = serde_json::from_str::<serde_json::Value>(&b).unwrap()["refresh_token"].as_str().unwrap().to_owned();

    // Refresh, revoke, and the revoked refresh token is dead.
    let (r, b) =
        send(&a, form("/token", &format!("grant_type=refresh_token&refresh_token={rt}&client_id={client}"))).await;
    assert_eq!(r.status(), StatusCode::OK, "{b}");
    let rt2 = serde_json::from_str::<serde_json::Value>(&b).unwrap()["refresh_token"].as_str().unwrap().to_owned();
    let (r, _) = send(&a, form("/revoke", &format!("token={rt2}&client_id={client}"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (r, b) =
        send(&a, form("/token", &format!("grant_type=refresh_token&refresh_token={rt2}&client_id={client}"))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&b), "invalid_grant");
}

#[tokio::test]
async fn token_endpoint_error_table() {
    let a = app("http://127.0.0.1:8080").await;
    let client = register_public(&a, "kit").await;
    let cases: [(Request<Body>, StatusCode, &str); 6] = [
        (json("/token", r#"{"grant_type":"authorization_code"}"#), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            form("/token", "grant_type=authorization_code&code=x&code_verifier=y&client_id=mcp_gone"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (form("/token", "grant_type=authorization_code&code=x"), StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            form("/token", &format!("grant_type=password&client_id={client}")),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            form("/token", &format!("grant_type=refresh_token&refresh_token=nope&client_id={client}")),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            form("/token", &format!("grant_type=authorization_code&code=a&code=b&client_id={client}")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (req, status, code) in cases {
        let (r, b) = send(&a, req).await;
        assert_eq!(r.status(), status, "{b}");
        assert_eq!(error_code(&b), code, "{b}");
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
        if status == StatusCode::UNAUTHORIZED {
            assert!(header(&r, header::WWW_AUTHENTICATE).starts_with("Basic"), "401 carries a challenge");
        }
    }
    let (r, b) = send(&a, form("/introspect", &format!("token=x&client_id={client}"))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "public clients cannot introspect: {b}");
    let (r, b) = send(&a, form("/revoke", &format!("client_id={client}"))).await;
    assert_eq!((r.status(), error_code(&b).as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
}

#[tokio::test]
async fn a_content_type_is_quoted_without_its_control_characters() {
    // Found by the cookies fuzz target: a header value may hold a tab, and the refusal quoted
    // it raw into the error description.
    let a = app("http://127.0.0.1:8080").await;
    let req = Request::post("/token").header(header::CONTENT_TYPE, "text/plain;\tx").body(Body::empty()).unwrap();
    let (r, b) = send(&a, req).await;
    assert_eq!((r.status(), error_code(&b).as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let description = v["error_description"].as_str().unwrap();
    assert!(description.contains("text/plain;") && !description.chars().any(char::is_control), "{description:?}");
}

#[tokio::test]
async fn cors_preflight_on_api_routes() {
    let a = app("http://127.0.0.1:8080").await;
    for path in ["/token", "/register", "/.well-known/oauth-authorization-server", "/jwks.json", "/revoke"] {
        let req = Request::options(path)
            .header(header::ORIGIN, "http://localhost:6274")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap();
        let (r, _) = send(&a, req).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*", "{path}");
    }
}

#[tokio::test]
async fn rate_limits_answer_429_per_address() {
    let a = app("http://127.0.0.1:8080").await;
    let from = |mut req: Request<Body>, ip: &str| {
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        req
    };
    let body = r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}"#;
    for i in 0..20 {
        let (r, b) = send(&a, from(json("/register", body), "192.0.2.1")).await;
        assert_eq!(r.status(), StatusCode::CREATED, "request {i}: {b}");
    }
    let (r, b) = send(&a, from(json("/register", body), "192.0.2.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&b), "temporarily_unavailable");
    assert!(header(&r, header::RETRY_AFTER).parse::<u64>().unwrap() >= 1);
    let (r, _) = send(&a, from(json("/register", body), "192.0.2.2")).await;
    assert_eq!(r.status(), StatusCode::CREATED, "another address has its own bucket");

    // Password guessing: the eleventh sign-in attempt from one address is refused.
    for _ in 0..10 {
        let (r, _) =
            send(&a, from(form("/authorize/sign-in", "pending=x&csrf=y&username=alice&password=guess"), "192.0.2.3"))
                .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "refused for its CSRF token, but counted");
    }
    let (r, page) =
        send(&a, from(form("/authorize/sign-in", "pending=x&csrf=y&username=alice&password=guess"), "192.0.2.3")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.contains("Too many attempts"), "{page}");
}

#[tokio::test]
async fn the_sweeper_removes_abandoned_registrations() {
    let clock = Arc::new(oauth_core::ManualClock::starting_now());
    let config = ServerConfig::new(
        Issuer::parse("http://127.0.0.1:8080").unwrap(),
        ResourceUri::parse("http://127.0.0.1:8080/mcp").unwrap(),
    );
    let server = Arc::new(
        AuthorizationServer::with_clock(config, MemoryStore::new().into_stores(), clock.clone()).await.unwrap(),
    );
    let req = oauth_core::RegistrationRequest::from_json(
        br#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}"#,
    )
    .unwrap();
    server.register(req).await.unwrap();
    clock.advance(std::time::Duration::from_secs(31 * 86_400));
    let task = oauth_axum::spawn_sweeper(server.clone(), std::time::Duration::from_millis(10));
    // Bounded wait for the background task, not a timing assertion.
    let mut left = usize::MAX;
    for _ in 0..500 {
        left = server.operator().stores().clients.list_clients().await.unwrap().len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    task.abort();
    assert_eq!(left, 0, "a client registered 8 days ago that never got a token is collected");
}

#[tokio::test]
async fn connected_apps_forms_are_bound_to_the_signed_in_user() {
    let a = app("http://127.0.0.1:8080").await;
    create_user(a.server.operator().stores().users.as_ref(), "bob", "battery staple", a.server.now()).await.unwrap();
    let with_cookie = |mut req: Request<Body>, cookie: &str| {
        req.headers_mut().insert(header::COOKIE, cookie.parse().unwrap());
        req
    };
    let (r, page) = send(&a, get("/account/apps")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(page.contains("name=\"password\"") && !page.contains("name=\"pending\""), "{page}");
    let csrf_cookie = cookies(&r).into_iter().find(|c| c.starts_with("mcp_oauth_csrf=")).unwrap();
    let sign_in_csrf = hidden(&page, "csrf");
    let mut sessions = HashMap::new();
    for (user, password) in [("alice", "correct+horse"), ("bob", "battery+staple")] {
        let body = format!("csrf={sign_in_csrf}&username={user}&password={password}");
        let (r, _) = send(&a, with_cookie(form("/account/sign-in", &body), &csrf_cookie)).await;
        assert_eq!((r.status(), header(&r, header::LOCATION)), (StatusCode::SEE_OTHER, "/account/apps"));
        let session = cookies(&r).into_iter().find(|c| c.starts_with("mcp_oauth_session=")).unwrap();
        sessions.insert(user, format!("{csrf_cookie}; {session}"));
    }
    // Without the cookie nonce, the sign-in form is refused.
    let body = format!("csrf={sign_in_csrf}&username=alice&password=correct+horse");
    assert_eq!(send(&a, form("/account/sign-in", &body)).await.0.status(), StatusCode::FORBIDDEN);

    let (r, apps) = send(&a, with_cookie(get("/account/apps"), &sessions["alice"])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(apps.contains("Signed in as <strong>alice</strong>") && apps.contains("No apps are connected"), "{apps}");

    // Alice connects an app.
    let client = register_public(&a, "Alice's App").await;
    let alice = a.server.operator().stores().users.user_by_username("alice").await.unwrap().unwrap().id;
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let prompt = a
        .server
        .authorize(
            oauth_core::AuthorizationRequest::from_pairs(
                url::Url::parse(&format!("http://x{}", authorize_url(&client, challenge.as_str())))
                    .unwrap()
                    .query_pairs(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let location = a.server.approve(&prompt.pending.id, &alice, a.server.now(), true).await.unwrap();
    let token_body = format!(
        "grant_type=authorization_code&code={}&code_verifier={}&redirect_uri={}&client_id={client}",
        urlencode(&query(&location)["code"]),
        verifier.secret(),
        urlencode(REDIRECT)
    );
    assert_eq!(send(&a, form("/token", &token_body)).await.0.status(), StatusCode::OK);
    let (_, apps) = send(&a, with_cookie(get("/account/apps"), &sessions["alice"])).await;
    assert!(apps.contains("Alice&#39;s App") || apps.contains("Alice&#x27;s App"), "{apps}");
    let (_, bobs) = send(&a, with_cookie(get("/account/apps"), &sessions["bob"])).await;
    assert!(bobs.contains("No apps are connected"), "Bob sees only his own apps: {bobs}");
    let alice_csrf = hidden(&apps, "csrf");
    let revoke = format!("client={client}&csrf={}", urlencode(&alice_csrf));
    // Alice's token in Bob's session: refused (a token from one person's page is no good in another's).
    let (r, _) = send(&a, with_cookie(form("/account/apps/revoke", &revoke), &sessions["bob"])).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, apps) = send(&a, with_cookie(get("/account/apps"), &sessions["alice"])).await;
    assert!(!apps.contains("No apps are connected"), "a forged revoke changed nothing: {apps}");
    let (r, _) = send(&a, with_cookie(form("/account/apps/revoke", &revoke), &sessions["alice"])).await;
    assert_eq!((r.status(), header(&r, header::LOCATION)), (StatusCode::SEE_OTHER, "/account/apps"));
    let (_, apps) = send(&a, with_cookie(get("/account/apps"), &sessions["alice"])).await;
    assert!(apps.contains("No apps are connected"), "revoked: {apps}");
    // Not signed in: the sign-in form, nothing revoked.
    let (r, page) = send(&a, with_cookie(form("/account/apps/revoke", &revoke), &csrf_cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(page.contains("sign in again"), "{page}");
}
