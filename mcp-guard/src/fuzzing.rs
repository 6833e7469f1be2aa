//! Entry points for the fuzz targets (feature `fuzzing`): thin wrappers over the private
//! parsing of what a caller sends the guard. Not a stable API.

use http::{HeaderMap, HeaderValue, header};
use oauth_core::AccessTokenClaims;

use crate::context::{AuthContext, Rejection};

/// The bearer token of an `Authorization` header value, as the guard reads it.
pub fn bearer_token(authorization: &HeaderValue) -> Option<String> {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, authorization.clone());
    crate::guard::bearer_token(&headers)
}

/// A description made safe for the quoted-string of a `WWW-Authenticate` challenge.
pub fn challenge_quote(description: &str) -> String {
    oauth_core::quote(description)
}

/// The caller a verified token's claims describe, or why they are refused.
pub fn context_from_claims(claims: AccessTokenClaims) -> Result<AuthContext, Rejection> {
    crate::verifier::context_from_claims(claims)
}

/// Verifies `token` as [`crate::remote::JwksVerifier`] does, with the keys it would take from
/// the JWKS `set`, without fetching anything.
#[cfg(feature = "remote")]
pub fn verify_with_jwks(
    set: &oauth_core::Jwks,
    token: &str,
    validation: &oauth_core::TokenValidation,
    now: oauth_core::UnixTime,
) -> Result<AccessTokenClaims, oauth_core::VerifyError> {
    oauth_core::VerifyingKeys::from_jwks(set).verify(token, validation, now)
}

/// Verifies `token` as a [`crate::remote::JwksVerifier`] reading it through `profile` does,
/// for `issuer` and `resource`, with the keys of the JWKS `set`, without fetching anything.
/// A profile that cannot serve `issuer` is an `Internal` rejection.
#[cfg(feature = "remote")]
pub fn verify_with_profile(
    set: &oauth_core::Jwks,
    token: &str,
    profile: &crate::remote::IssuerProfile,
    issuer: &str,
    resource: &str,
    now: oauth_core::UnixTime,
) -> Result<AuthContext, Rejection> {
    let rules = profile.rules(issuer, resource).map_err(|e| Rejection::new(oauth_core::Reason::Internal, e))?;
    let jwt = oauth_core::VerifyingKeys::from_jwks(set)
        .verify_jwt(token, &rules, now)
        .map_err(|e| Rejection::new(e.reason(), e.to_string()))?;
    profile.context(&jwt, token)
}
