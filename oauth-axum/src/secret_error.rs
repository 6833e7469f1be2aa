//! [`SecretError`]: why a configured bearer secret (admin token, initial access token) was
//! refused. The message names the secret, never its value.

use std::fmt;

/// Why a configured bearer secret was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// Shorter than `min` characters: too easy to guess.
    TooShort {
        /// Which secret.
        what: &'static str,
        /// The least length accepted.
        min: usize,
    },
    /// A hash that is not 64 hex characters (SHA-256).
    NotSha256Hex {
        /// Which secret.
        what: &'static str,
    },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { what, min } => write!(f, "the {what} must have at least {min} characters"),
            Self::NotSha256Hex { what } => write!(f, "the {what} hash must be 64 hex characters (SHA-256)"),
        }
    }
}

impl std::error::Error for SecretError {}
