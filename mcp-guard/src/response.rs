//! The guard's own answers: JSON errors (RFC 6749 5.2 shape) and RFC 6750 challenges.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use oauth_core::BearerChallenge;

/// A refusal the guard sends instead of calling the inner service.
pub(crate) type Refusal = Box<Response<Full<Bytes>>>;

/// `{"error": …, "error_description": …}` with `status`, never cached.
pub(crate) fn json_error(status: StatusCode, error: &str, description: &str) -> Refusal {
    let body = serde_json::json!({ "error": error, "error_description": description }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Box::new(resp)
}

/// `resp` with `challenge` as its `WWW-Authenticate` header.
pub(crate) fn with_challenge(mut resp: Refusal, challenge: &BearerChallenge) -> Refusal {
    if let Ok(v) = HeaderValue::from_str(&challenge.to_string()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// 503 with `Retry-After`: the token could not be checked now.
pub(crate) fn unavailable(description: &str) -> Refusal {
    let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", description);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}
