//! The admin endpoint: the flow timeline ("why is this client not connected?") and a client's
//! report as JSON, for dashboards and for operators without access to the database. Off unless
//! the application mounts [`admin_router`]; protected by its own bearer secret, compared in
//! constant time and kept only as a SHA-256 hash.
//!
//! - `GET <issuer path>/admin/diagnose?client_id=…&since=3600&all=true`: connection attempts
//!   per client (`since` in seconds, default one hour; without `all`, attempts that connected
//!   are left out unless a client id is given).
//! - `GET <issuer path>/admin/clients/{client_id}`: the client's metadata and what became of
//!   its codes.
//! - `GET <issuer path>/admin/keys`: the signing keys (id, algorithm, created, retired,
//!   sealed), signing key first; `POST <issuer path>/admin/keys/rotate`: a new signing key,
//!   used here at once and by every replica within a second, the old one retired (still
//!   published while tokens it signed may live). The same as `mcp-auth keys list|rotate`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use oauth_core::AuthorizationServer;
use oauth_core::ClientId;
use oauth_core::without_connected;
use oauth_core::{SecretHash, ct_eq};

use crate::no_store;

/// Shortest admin secret accepted: 32 characters, so that guessing it is hopeless.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;
/// Longest lookback the timeline serves: the event retention bounds it anyway.
const MAX_SINCE_SECS: u64 = 90 * 86_400;

/// The admin endpoint's bearer secret, kept as a SHA-256 hash.
#[derive(Clone)]
pub struct AdminToken(SecretHash);

impl AdminToken {
    /// Wraps `secret`; it must have at least [`MIN_ADMIN_TOKEN_LEN`] characters.
    pub fn new(secret: &str) -> Result<Self, crate::SecretError> {
        if secret.chars().count() < MIN_ADMIN_TOKEN_LEN {
            return Err(crate::SecretError::TooShort { what: "admin token", min: MIN_ADMIN_TOKEN_LEN });
        }
        Ok(Self(SecretHash::of(secret.as_bytes())))
    }

    /// Whether `headers` carry this token as `Authorization: Bearer`, compared in constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .unwrap_or_default();
        // Hashing first gives both sides one length, so the comparison's time says nothing.
        ct_eq(SecretHash::of(presented.as_bytes()).as_bytes(), self.0.as_bytes())
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// The admin routes for `server`, behind `token`, ready to merge into the application.
pub fn admin_router<S: Clone + Send + Sync + 'static>(
    server: Arc<AuthorizationServer>,
    token: AdminToken,
) -> Router<S> {
    let base = server.config().issuer.path();
    Router::new()
        .route(&format!("{base}/admin/diagnose"), get(diagnose))
        .route(&format!("{base}/admin/clients/{{client_id}}"), get(client))
        .route(&format!("{base}/admin/keys"), get(keys))
        .route(&format!("{base}/admin/keys/rotate"), post(rotate_key))
        .with_state(Arc::new(Admin { server, token }))
}

#[derive(Debug)]
struct Admin {
    server: Arc<AuthorizationServer>,
    token: AdminToken,
}

async fn diagnose(State(a): State<Arc<Admin>>, headers: HeaderMap, uri: Uri) -> Response {
    if !a.token.admits(&headers) {
        return unauthorized();
    }
    let (mut client, mut since, mut all) = (None, 3600, false);
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match &*k {
            "client_id" => match ClientId::parse(&v) {
                Ok(c) => client = Some(c),
                Err(e) => return bad_request(&e.to_string()),
            },
            "since" => match v.parse::<u64>() {
                Ok(s) => since = s.min(MAX_SINCE_SECS),
                Err(_) => return bad_request("since is a number of seconds"),
            },
            "all" => all = matches!(&*v, "true" | "1" | ""),
            _ => {}
        }
    }
    let since = std::time::Duration::from_secs(since);
    match a.server.diagnose(client.as_ref(), a.server.now().minus(since)).await {
        Ok(mut report) => {
            if !all && client.is_none() {
                without_connected(&mut report);
            }
            no_store(Json(report))
        }
        Err(e) => server_error(&e),
    }
}

async fn client(State(a): State<Arc<Admin>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !a.token.admits(&headers) {
        return unauthorized();
    }
    let Ok(id) = ClientId::parse(&id) else {
        return bad_request("the client id is malformed");
    };
    match a.server.operator().client_report(&id).await {
        Ok(Some(report)) => no_store(Json(report)),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(
                serde_json::json!({ "error": "not_found", "error_description": format!("there is no client '{id}'") }),
            ),
        )
            .into_response(),
        Err(e) => server_error(&e),
    }
}

/// The signing keys, as `keys list` shows them: never a private part.
async fn keys(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if !a.token.admits(&headers) {
        return unauthorized();
    }
    match a.server.operator().signing_keys().await {
        Ok(keys) => no_store(Json(keys)),
        Err(e) => server_error(&e),
    }
}

/// `keys rotate`: a new signing key, the active one retired. This server signs with it at
/// once; every other on the store within its key sync (a second).
async fn rotate_key(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if !a.token.admits(&headers) {
        return unauthorized();
    }
    match a.server.operator().rotate_signing_key().await {
        Ok(key) => {
            if let Err(e) = a.server.sync_keys().await {
                tracing::warn!(error = %e, "the rotated key is stored; this server picks it up at its next key sync");
            }
            no_store(Json(key))
        }
        Err(e) => server_error(&e),
    }
}

fn unauthorized() -> Response {
    tracing::warn!("admin endpoint: request without the admin token refused");
    let body = serde_json::json!({ "error": "invalid_token", "error_description": "the admin endpoint needs the admin bearer token" });
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer realm=\"admin\"")], Json(body)).into_response()
}

fn bad_request(description: &str) -> Response {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": description });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn server_error(e: &oauth_core::Error) -> Response {
    tracing::error!(error = %e, "admin endpoint failed");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(e.to_oauth())).into_response()
}
