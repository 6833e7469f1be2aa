//! The JSON endpoints: metadata, JWKS, registration, token, revocation, introspection.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use oauth_core::Endpoint;
use oauth_core::RegistrationRequest;
use oauth_core::TokenRequest;
use oauth_core::TokenRequestForm;
use oauth_core::{Error, OAuthError};

use crate::ratelimit::Class;
use crate::{AppState, Peer, clip, no_store};

pub(crate) async fn as_metadata(State(s): AppState) -> Response {
    cacheable(Json(s.server.metadata()))
}

pub(crate) async fn openid_configuration(State(s): AppState) -> Response {
    cacheable(Json(s.server.openid_configuration()))
}

pub(crate) async fn jwks(State(s): AppState) -> Response {
    cacheable(Json(s.server.jwks()))
}

fn cacheable(body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

pub(crate) async fn register(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Registration, &peer, &headers).await {
        return limited;
    }
    if let Some(refused) = s.registration_closed(&headers).await {
        return refused;
    }
    let req = match RegistrationRequest::from_json(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(&s.server.refuse_malformed(Endpoint::Registration, e).await);
        }
    };
    match s.server.register(req).await {
        Ok(resp) => no_store((StatusCode::CREATED, Json(resp))),
        Err(e) => api_error(&e),
    }
}

pub(crate) async fn token(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Token, &peer, &headers).await {
        return limited;
    }
    let req = match form_pairs(&headers, &body).and_then(TokenRequest::from_pairs) {
        Ok(r) => r,
        Err(e) => {
            return api_error(&s.server.refuse_malformed(Endpoint::Token, e).await);
        }
    };
    match s.server.token(req, authorization(&headers)).await {
        Ok(resp) => no_store(Json(resp)),
        Err(e) => api_error(&e),
    }
}

pub(crate) async fn revoke(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Token, &peer, &headers).await {
        return limited;
    }
    let form = match form_pairs(&headers, &body).and_then(TokenRequestForm::from_pairs) {
        Ok(f) => f,
        Err(e) => return api_error(&s.server.refuse_malformed(Endpoint::Revocation, e).await),
    };
    match s.server.revoke(form, authorization(&headers)).await {
        Ok(()) => no_store(StatusCode::OK),
        Err(e) => api_error(&e),
    }
}

pub(crate) async fn introspect(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::Token, &peer, &headers).await {
        return limited;
    }
    let form = match form_pairs(&headers, &body).and_then(TokenRequestForm::from_pairs) {
        Ok(f) => f,
        Err(e) => {
            return api_error(&s.server.refuse_malformed(Endpoint::Introspection, e).await);
        }
    };
    match s.server.introspect(form, authorization(&headers)).await {
        Ok(resp) => no_store(Json(resp)),
        Err(e) => api_error(&e),
    }
}

/// Pairs of an `application/x-www-form-urlencoded` body.
pub(crate) fn form_pairs(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(format!(
            "the body must be application/x-www-form-urlencoded, not '{}'",
            clip(ct)
        )));
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// An API error: RFC 6749 5.2 JSON, `no-store`; `invalid_client` is 401 with
/// `WWW-Authenticate`, which is what makes Claude register again.
fn api_error(e: &Error) -> Response {
    if !matches!(e, Error::OAuth(_)) {
        tracing::error!(error = %e, "internal error answered with server_error");
    }
    let oauth = e.to_oauth();
    let status = StatusCode::from_u16(oauth.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = no_store((status, Json(&oauth)));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth\""));
    }
    resp
}
