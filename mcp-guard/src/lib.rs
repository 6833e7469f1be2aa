#![doc = include_str!("../README.md")]

pub mod cache;
mod context;
mod cors;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod layer;
#[cfg(feature = "axum")]
mod metadata;
mod policy;
#[cfg(feature = "remote")]
pub mod remote;
mod response;
mod service;
pub mod session;
pub mod upstream;
mod verifier;

pub use crate::cache::{CacheStats, TokenCache, TokenCacheConfig};
pub use crate::context::{AuthContext, Caller, Rejection};
pub use crate::cors::mcp_cors_layer;
pub use crate::future::{ResponseBody, ResponseFuture};
pub use crate::layer::McpGuardLayer;
#[cfg(feature = "axum")]
pub use crate::metadata::protected_resource_router;
pub use crate::policy::ScopePolicy;
pub use crate::service::McpGuard;
pub use crate::session::SessionLimits;
pub use crate::upstream::{UpstreamToken, UpstreamTokenError};
pub use crate::verifier::{LocalVerifier, TokenVerifier};

/// Largest JSON-RPC body the guard reads to find the methods and tools it calls, when the
/// policy needs them (rmcp's own default bound is the same).
pub const MAX_INSPECTED_BODY: usize = 4 * 1024 * 1024;
