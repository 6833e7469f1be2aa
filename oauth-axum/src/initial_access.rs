//! The initial access token of RFC 7591 §3: a closed deployment lets only those it gave the
//! token register clients. `POST /register` then needs `Authorization: Bearer <token>`; the
//! server keeps only the token's SHA-256 hash and compares in constant time.
//!
//! ```
//! use oauth_axum::InitialAccessToken;
//!
//! let token = InitialAccessToken::new("a-registration-secret-of-32-chars!!").unwrap();
//! // Or configured by its hash, so that the secret is in no configuration file:
//! let same = InitialAccessToken::from_sha256_hex(&token.sha256_hex()).unwrap();
//! assert_eq!(format!("{same:?}"), "InitialAccessToken([redacted])");
//! ```

use axum::http::{HeaderMap, header};
use oauth_core::{SecretHash, ct_eq};

use crate::SecretError;

/// What the errors call it.
const WHAT: &str = "initial access token";

/// Shortest initial access token accepted: 32 characters, so that guessing it is hopeless.
pub const MIN_INITIAL_ACCESS_TOKEN_LEN: usize = 32;

/// The bearer token `POST /register` requires when configured, kept as a SHA-256 hash.
#[derive(Clone)]
pub struct InitialAccessToken(SecretHash);

impl InitialAccessToken {
    /// Wraps `secret`; it must have at least [`MIN_INITIAL_ACCESS_TOKEN_LEN`] characters.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        if secret.chars().count() < MIN_INITIAL_ACCESS_TOKEN_LEN {
            return Err(SecretError::TooShort { what: WHAT, min: MIN_INITIAL_ACCESS_TOKEN_LEN });
        }
        Ok(Self(SecretHash::of(secret.as_bytes())))
    }

    /// The token known only by its SHA-256 hash, in hex (64 characters).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, SecretError> {
        SecretHash::from_hex(hex.trim()).map(Self).ok_or(SecretError::NotSha256Hex { what: WHAT })
    }

    /// The SHA-256 hash in hex, for configuring the token by its hash.
    pub fn sha256_hex(&self) -> String {
        self.0.to_hex()
    }

    /// Whether the request carries the token as a bearer credential.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .unwrap_or_default();
        // Hashing first gives both sides one length, so the comparison's time says nothing.
        !presented.is_empty() && ct_eq(SecretHash::of(presented.as_bytes()).as_bytes(), self.0.as_bytes())
    }
}

impl std::fmt::Debug for InitialAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialAccessToken([redacted])")
    }
}
