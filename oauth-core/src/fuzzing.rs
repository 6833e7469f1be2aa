//! Entry points for the fuzz targets (feature `fuzzing`): thin wrappers over private parsers,
//! so that the targets drive exactly the code a request reaches, and the bounds they assert.
//! Not a stable API.

use crate::error::OAuthError;
use crate::token::ClientCredentials;

/// Most parameters in one query or form ([`crate::authorize::AuthorizationRequest::from_pairs`]).
pub const MAX_PARAMS: usize = crate::params::MAX_PARAMS;
/// Longest parameter value.
pub const MAX_VALUE_LEN: usize = crate::params::MAX_VALUE_LEN;

/// The HTTP Basic client credentials of an `Authorization` header (RFC 6749 2.3.1), as the
/// token endpoint reads them: `Ok(None)` for another scheme.
pub fn parse_basic(header: &str) -> Result<Option<(String, Option<String>)>, OAuthError> {
    crate::client_auth::parse_basic(header)
}

/// What client authentication found: the client id, the secret, and the method name.
pub fn credentials(c: &ClientCredentials) -> (Option<&str>, Option<&str>, &'static str) {
    c.parts()
}

/// The signing key of `set`: its algorithm as `jsonwebtoken` names it, and the key, so that a
/// target can sign tokens with headers and claims of its own.
pub fn signing_key(set: &crate::keys::KeySet) -> (jsonwebtoken::Algorithm, jsonwebtoken::EncodingKey) {
    let (_, alg, key) = set.signing_key();
    (alg.jwt_algorithm(), key.clone())
}
