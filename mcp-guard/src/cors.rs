//! CORS for the MCP endpoint, so that browser clients can read the challenge.

use std::time::Duration;

use http::{Method, header};
use tower_http::cors::{Any, CorsLayer};

/// A CORS layer for the MCP endpoint itself: any origin, the MCP headers allowed, and
/// `WWW-Authenticate` and `Mcp-Session-Id` exposed so browser clients can read the challenge.
/// Put it outside the guard so that preflights are answered before the token check.
pub fn mcp_cors_layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("mcp-protocol-version"),
            header::HeaderName::from_static("mcp-session-id"),
            header::HeaderName::from_static("mcp-method"),
            header::HeaderName::from_static("mcp-name"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE, header::HeaderName::from_static("mcp-session-id")])
        .max_age(Duration::from_secs(3600))
}
