//! RFC 9728 metadata as an axum router (feature `axum`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse as _, Json};
use axum::routing::get;
use http::{HeaderValue, Method, header};
use oauth_core::{ProtectedResourceMetadata, well_known_path};
use tower_http::cors::{Any, CorsLayer};

/// A router serving RFC 9728 metadata at `/.well-known/oauth-protected-resource/<path>` and at
/// `/.well-known/oauth-protected-resource`, with CORS for browser clients.
pub fn protected_resource_router<S: Clone + Send + Sync + 'static>(metadata: ProtectedResourceMetadata) -> Router<S> {
    let path = well_known_path("oauth-protected-resource", &metadata.resource);
    let metadata = Arc::new(metadata);
    let handler = move || {
        let metadata = metadata.clone();
        async move {
            let mut r = Json(metadata.as_ref().clone()).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r
        }
    };
    let mut router = Router::new().route("/.well-known/oauth-protected-resource", get(handler.clone()));
    if path != "/.well-known/oauth-protected-resource" {
        router = router.route(&path, get(handler));
    }
    router.layer(
        CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("mcp-protocol-version"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}
