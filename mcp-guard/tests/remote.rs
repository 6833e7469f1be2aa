//! The remote verifiers against a real authorization server on a loopback socket: the embedded
//! one, served by `oauth-axum` in this process, as another replica or an external server would
//! be seen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mcp_guard::TokenVerifier;
use mcp_guard::remote::{IntrospectionVerifier, JwksVerifier};
use oauth_core::ClientSecret;
use oauth_core::NewClient;
use oauth_core::Reason;
use oauth_core::StoreAuthenticator;
use oauth_core::TokenRequestForm;
use oauth_core::{AccessTokenClaims, mint};
use oauth_core::{AuthorizationServer, ServerConfig};
use oauth_core::{Issuer, RedirectUri, ResourceUri};
use oauth_store_memory::MemoryStore;

const CALLBACK: &str = "http://127.0.0.1:45999/callback";

/// The embedded authorization server on a loopback port; its issuer and resource.
async fn authorization_server() -> (Arc<AuthorizationServer>, String, ResourceUri) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let resource = ResourceUri::parse(&format!("{issuer}/mcp")).unwrap();
    let config = ServerConfig::new(Issuer::parse(&issuer).unwrap(), resource.clone());
    let server = Arc::new(AuthorizationServer::new(config, MemoryStore::new().into_stores()).await.unwrap());
    let auth = Arc::new(StoreAuthenticator::new(server.operator().stores().users.clone()));
    let app: axum::Router = oauth_axum::AuthRouter::new(server.clone(), auth).with_rate_limits(None).into_router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, issuer, resource)
}

/// A token of `server` for `audience`, signed with its current key.
fn token_for(server: &AuthorizationServer, audience: &str) -> String {
    let claims = AccessTokenClaims::new(
        server.config().issuer.as_str(),
        "user-1",
        audience,
        "client-1",
        "mcp:tools",
        server.now(),
        Duration::from_secs(600),
    );
    mint(&claims, &server.keys()).unwrap()
}

/// A token issued through the whole flow, bound to a grant that can be revoked.
async fn token_through_the_flow(server: &AuthorizationServer) -> (String, String) {
    let (client, tokens) = oauth_core::testing::tokens_for_new_client(server, CALLBACK, "user-1").await;
    (client.to_string(), tokens.access_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_verifier_discovers_checks_and_follows_a_key_rotation() {
    let (server, issuer, resource) = authorization_server().await;
    let verifier = JwksVerifier::discover(&issuer, &resource).await.unwrap().with_min_refresh_interval(Duration::ZERO);
    assert_eq!(verifier.key_count(), 1);

    let ctx = verifier.verify(&token_for(&server, resource.as_str())).await.unwrap();
    assert_eq!((ctx.subject.as_str(), ctx.client_id.as_str(), &*ctx.issuer), ("user-1", "client-1", issuer.as_str()));
    assert!(ctx.has_scope("mcp:tools"));

    let other = verifier.verify(&token_for(&server, "https://elsewhere.example/mcp")).await.unwrap_err();
    assert_eq!(other.reason, Reason::TokenAudienceMismatch, "{other:?}");
    assert_eq!(verifier.verify("not.a.token").await.unwrap_err().reason, Reason::TokenMalformed);

    // The server rotates its key: the first token with the new kid makes the verifier fetch
    // the JWKS again, and tokens of the retired key still verify.
    let before = token_for(&server, resource.as_str());
    server.rotate_signing_key().await.unwrap();
    let after = token_for(&server, resource.as_str());
    assert!(verifier.verify(&after).await.is_ok(), "a token of the new key verifies after a refresh");
    assert_eq!(verifier.key_count(), 2);
    assert!(verifier.without_cache().verify(&before).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_refreshes_for_unknown_keys_are_rate_limited() {
    let (server, issuer, resource) = authorization_server().await;
    let verifier =
        JwksVerifier::discover(&issuer, &resource).await.unwrap().with_min_refresh_interval(Duration::from_secs(3600));
    server.rotate_signing_key().await.unwrap();
    // Within the interval the JWKS is not fetched again: the new key stays unknown.
    let refused = verifier.verify(&token_for(&server, resource.as_str())).await.unwrap_err();
    assert_eq!(refused.reason, Reason::TokenSignatureInvalid, "{refused:?}");
    assert_eq!(verifier.key_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_refuses_metadata_for_another_issuer() {
    let (_server, issuer, resource) = authorization_server().await;
    let err = JwksVerifier::discover(&format!("{issuer}/other"), &resource).await.unwrap_err();
    assert!(err.to_string().contains("answered 404"), "{err}");
    let spoofed = issuer.replace("127.0.0.1", "localhost");
    let err = JwksVerifier::discover(&spoofed, &resource).await.unwrap_err();
    assert!(err.to_string().contains(&format!("not '{spoofed}'")), "the issuer is compared exactly: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_verifier_sees_a_revocation() {
    let (server, issuer, resource) = authorization_server().await;
    // The resource server's own confidential client, as an operator would create it
    // (`clients add --introspection`): only such a client may introspect other clients' tokens.
    let rs = server
        .create_client(
            NewClient::new("resource server", vec![RedirectUri::parse(CALLBACK).unwrap()])
                .confidential()
                .introspection(),
        )
        .await
        .unwrap();
    let secret = rs.secret.unwrap();
    let make = || {
        IntrospectionVerifier::discover(
            &issuer,
            &resource,
            rs.client.id.as_str(),
            oauth_core::ClientSecret::new(secret.secret().to_owned()),
        )
    };
    let verifier = make().await.unwrap().without_cache();

    let (client, access) = token_through_the_flow(&server).await;
    let ctx = verifier.verify(&access).await.unwrap();
    assert_eq!((ctx.subject.as_str(), ctx.client_id.as_str()), ("user-1", client.as_str()));

    // Revoked at the server: the next introspection says inactive.
    let form = TokenRequestForm::from_pairs([("token", access.as_str()), ("client_id", client.as_str())]).unwrap();
    server.revoke(form, None).await.unwrap();
    assert_eq!(verifier.verify(&access).await.unwrap_err().reason, Reason::GrantRevoked);

    // A wrong secret is the resource server's problem, not the caller's: refused, and logged.
    let wrong = IntrospectionVerifier::discover(
        &issuer,
        &resource,
        rs.client.id.as_str(),
        oauth_core::ClientSecret::new("wrong".into()),
    )
    .await
    .unwrap();
    assert_eq!(wrong.verify(&token_for(&server, resource.as_str())).await.unwrap_err().reason, Reason::Internal);
    // Behind the guard that is a 503 to retry, not a 401 that would make the client sign in again.
    let guarded = axum::Router::new()
        .route("/mcp", axum::routing::any(|| async { "tools" }))
        .layer(mcp_guard::McpGuardLayer::new(Arc::new(wrong), &resource));
    let req = axum::http::Request::post("/mcp")
        .header("authorization", format!("Bearer {}", token_for(&server, resource.as_str())))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(guarded, req).await.unwrap();
    assert_eq!(resp.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("www-authenticate").is_none() && resp.headers().get("retry-after").is_some());
}

/// An RFC 7662 endpoint on a loopback port that calls every token inactive and counts the
/// requests it gets; its origin and the count.
async fn counting_introspection_endpoint() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({ "active": false }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_token_reaches_the_authorization_server_once() {
    // A stranger repeats one made-up bearer token: without a negative cache every request is
    // an introspection call, until the authorization server answers 429 and the guard 503 to
    // everyone.
    let (origin, hits) = counting_introspection_endpoint().await;
    let resource = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
    let verifier = IntrospectionVerifier::new(
        &origin,
        &resource,
        format!("{origin}/introspect"),
        "resource-server",
        ClientSecret::new("rs-secret".into()),
    )
    .unwrap();
    for _ in 0..20 {
        assert_eq!(verifier.verify("junk-token").await.unwrap_err().reason, Reason::GrantRevoked);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Another junk token is asked about once too.
    for _ in 0..5 {
        assert_eq!(verifier.verify("other-junk").await.unwrap_err().reason, Reason::GrantRevoked);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_authorization_server_urls_are_refused_at_construction() {
    let resource = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
    let secret = || ClientSecret::new("rs-secret".into());
    let http = "http://auth.example.invalid";
    let https = "https://auth.example.invalid";
    let errors = [
        JwksVerifier::discover(http, &resource).await.unwrap_err().to_string(),
        JwksVerifier::new(https, &resource, format!("{http}/jwks")).await.unwrap_err().to_string(),
        IntrospectionVerifier::discover(http, &resource, "rs", secret()).await.unwrap_err().to_string(),
        IntrospectionVerifier::new(https, &resource, format!("{http}/introspect"), "rs", secret())
            .unwrap_err()
            .to_string(),
    ];
    for e in errors {
        assert!(e.contains("must be https"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_asks_the_authorization_server_a_bounded_number_at_once() {
    // 20 different junk tokens at once (the negative cache cannot help: each is new) must not
    // become 20 concurrent requests to the authorization server.
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (in_flight, highest) = (now.clone(), peak.clone());
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move || {
            let (in_flight, highest) = (in_flight.clone(), highest.clone());
            async move {
                let current = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                highest.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({ "active": false }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let resource = ResourceUri::parse("https://mcp.example.com/mcp").unwrap();
    let verifier = Arc::new(
        IntrospectionVerifier::new(
            &origin,
            &resource,
            format!("{origin}/introspect"),
            "resource-server",
            ClientSecret::new("rs-secret".into()),
        )
        .unwrap()
        .with_max_concurrent(2),
    );
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.verify(&format!("junk-{i}")).await.unwrap_err().reason })
        })
        .collect();
    for call in calls {
        // Waiting for a turn is not a failure to reach the server: each one is answered.
        assert_eq!(call.await.unwrap(), Reason::GrantRevoked);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2, "at most two introspection requests at once, and the bound is used");
}
