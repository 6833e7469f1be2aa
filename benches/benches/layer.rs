//! The whole guard layer on an in-memory request (`oneshot`): a valid token (cached and
//! cold), no token (the 401 challenge), and an expired token (401 `invalid_token`).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use mcp_guard::{LocalVerifier, McpGuardLayer};
use oauth_benches::TokenFixture;
use oauth_core::SigningAlgorithm;
use tower::ServiceExt as _;

fn app(verifier: LocalVerifier, f: &TokenFixture) -> Router {
    let guard = McpGuardLayer::new(Arc::new(verifier), &f.server.config().resource)
        .with_required_scopes(f.server.config().default_scopes.clone());
    Router::new().route("/mcp", post(|| async { "ok" })).layer(guard)
}

fn request(token: Option<&str>) -> Request<Body> {
    let mut r =
        Request::post("/mcp").header(header::CONTENT_TYPE, "application/json").header("mcp-method", "tools/list");
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    r.body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)).unwrap()
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(TokenFixture::memory(SigningAlgorithm::Es256));
    let cached = app(LocalVerifier::new(f.server.clone()), &f);
    let cold = app(LocalVerifier::new(f.server.clone()).without_cache(), &f);
    let call = |app: &Router, token: Option<&str>, want: StatusCode| {
        let status = rt.block_on(app.clone().oneshot(request(token))).unwrap().status();
        assert_eq!(status, want);
    };

    let mut g = c.benchmark_group("layer/ES256");
    g.bench_function("valid token, cached", |b| b.iter(|| call(&cached, Some(&f.token), StatusCode::OK)));
    g.bench_function("valid token, cold", |b| b.iter(|| call(&cold, Some(&f.token), StatusCode::OK)));
    g.bench_function("no token", |b| b.iter(|| call(&cached, None, StatusCode::UNAUTHORIZED)));
    g.bench_function("expired token", |b| b.iter(|| call(&cached, Some(&f.expired), StatusCode::UNAUTHORIZED)));
    g.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
