//! The RFC 9728 metadata router (feature `axum`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use mcp_guard::protected_resource_router;
use oauth_core::ProtectedResourceMetadata;
use oauth_core::{AuthorizationServer, ServerConfig};
use oauth_core::{Issuer, ResourceUri, ScopeSet};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

async fn metadata() -> ProtectedResourceMetadata {
    let config = ServerConfig::new(Issuer::parse(ISSUER).unwrap(), ResourceUri::parse(RESOURCE).unwrap())
        .with_scopes(ScopeSet::parse("mcp:tools notes:read").unwrap(), ScopeSet::parse("mcp:tools").unwrap());
    let server = AuthorizationServer::new(config, MemoryStore::new().into_stores()).await.unwrap();
    server.protected_resource_metadata()
}

#[tokio::test]
async fn protected_resource_metadata_at_both_paths_for_browsers_too() {
    let app: axum::Router = protected_resource_router(metadata().await);
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let req = Request::get(path).header(header::ORIGIN, "https://inspector.example").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{path}");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, max-age=300", "{path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["resource"], RESOURCE);
        assert_eq!(v["authorization_servers"], serde_json::json!([ISSUER]));
        assert_eq!(v["scopes_supported"], serde_json::json!(["mcp:tools", "notes:read"]));
    }
    let elsewhere = Request::get("/.well-known/oauth-protected-resource/other").body(Body::empty()).unwrap();
    assert_eq!(app.oneshot(elsewhere).await.unwrap().status(), StatusCode::NOT_FOUND);
}
