//! OAuth error codes and the crate error.
//! Documented in the crate docs, "Errors".

use std::borrow::Cow;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::escape::{escape_detail, needs_escape};

/// Error codes of RFC 6749 (sections 4.1.2.1 and 5.2), RFC 7591, RFC 6750, RFC 7009 and RFC 8707,
/// in RFC order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is missing a parameter, repeats one, or is otherwise malformed.
    InvalidRequest,
    /// Client authentication failed (unknown client, no authentication, wrong secret).
    InvalidClient,
    /// The grant (code, refresh token) is invalid, expired, revoked, or was issued to another client.
    InvalidGrant,
    /// The client may not use this grant or response type.
    UnauthorizedClient,
    /// The grant type is not supported by this server.
    UnsupportedGrantType,
    /// The resource owner or the server denied the request.
    AccessDenied,
    /// The response type is not supported by this server.
    UnsupportedResponseType,
    /// The requested scope is invalid, unknown, or exceeds what was granted.
    InvalidScope,
    /// An unexpected condition prevented the server from fulfilling the request.
    ServerError,
    /// The server is temporarily unable to handle the request.
    TemporarilyUnavailable,
    /// RFC 7591: a redirect URI in a registration request is invalid.
    InvalidRedirectUri,
    /// RFC 7591: a client metadata value in a registration request is invalid.
    InvalidClientMetadata,
    /// RFC 6750: the access token is expired, revoked, malformed, or invalid for this resource.
    InvalidToken,
    /// RFC 6750: the access token lacks a scope the request needs.
    InsufficientScope,
    /// RFC 7009: the server does not support revoking this token type.
    UnsupportedTokenType,
    /// RFC 8707: the requested resource is invalid or not served by this server.
    InvalidTarget,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidTarget => "invalid_target",
        }
    }

    /// The HTTP status an endpoint answers with for this code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidClient | Self::InvalidToken => 401,
            Self::InsufficientScope | Self::AccessDenied => 403,
            Self::ServerError => 500,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as a client sees it: `{error, error_description, error_uri}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    code: ErrorCode,
    description: Cow<'static, str>,
    uri: Option<String>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $fn:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn(description: impl Into<Cow<'static, str>>) -> Self {
                Self::new(ErrorCode::$code, description)
            }
        )*
    };
}

impl OAuthError {
    /// An error with a code and a description for the client.
    ///
    /// The description is sent to the client: it must never contain a secret, a token, a code
    /// or internal detail such as a database message.
    ///
    /// Descriptions quote what the client sent, and a native client may print them to a
    /// terminal, so control and bidirectional-text characters are written as `\u{…}`, as in
    /// flow events (control characters written as `\u{…}`).
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        let description = match description.into() {
            Cow::Owned(s) => Cow::Owned(escape_detail(s)),
            Cow::Borrowed(s) if s.chars().any(needs_escape) => Cow::Owned(escape_detail(s.to_owned())),
            borrowed => borrowed,
        };
        Self { code, description, uri: None }
    }

    constructors! {
        /// `invalid_request`.
        invalid_request => InvalidRequest;
        /// `invalid_client`.
        invalid_client => InvalidClient;
        /// `invalid_grant`.
        invalid_grant => InvalidGrant;
        /// `unauthorized_client`.
        unauthorized_client => UnauthorizedClient;
        /// `unsupported_grant_type`.
        unsupported_grant_type => UnsupportedGrantType;
        /// `access_denied`.
        access_denied => AccessDenied;
        /// `unsupported_response_type`.
        unsupported_response_type => UnsupportedResponseType;
        /// `invalid_scope`.
        invalid_scope => InvalidScope;
        /// `invalid_redirect_uri`.
        invalid_redirect_uri => InvalidRedirectUri;
        /// `invalid_client_metadata`.
        invalid_client_metadata => InvalidClientMetadata;
        /// `invalid_token`.
        invalid_token => InvalidToken;
        /// `insufficient_scope`.
        insufficient_scope => InsufficientScope;
        /// `unsupported_token_type`.
        unsupported_token_type => UnsupportedTokenType;
        /// `invalid_target`.
        invalid_target => InvalidTarget;
    }

    /// `server_error` with a fixed description that reveals nothing internal.
    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "internal error; the server log has the details")
    }

    /// Adds an `error_uri` pointing at documentation for this error.
    #[must_use]
    pub fn with_uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = Some(uri.into());
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The `error_uri`, if any.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }

    /// The HTTP status an endpoint answers with.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

impl Serialize for OAuthError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("error", self.code.as_str())?;
        if !self.description.is_empty() {
            m.serialize_entry("error_description", &self.description)?;
        }
        if let Some(uri) = &self.uri {
            m.serialize_entry("error_uri", uri)?;
        }
        m.end()
    }
}

/// A storage backend failure. Its detail is for the server log only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with the same key already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The backend failed (connection, query, I/O).
    #[error("backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// An argument beyond what the store accepts (a sealed record over its size bound, an
    /// empty or over-long lease holder): refused whole, nothing written, never truncated.
    #[error("refused: {0}")]
    Refused(String),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// The crate error: an OAuth error for the client, or an internal failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error the client caused and may see.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// A storage failure; the client sees `server_error`.
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
    /// A cryptographic failure (key generation, signing); the client sees `server_error`.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    /// The configuration cannot work; the message says what to change.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// What the client may see: the OAuth error itself, or `server_error` for anything internal.
    pub fn to_oauth(&self) -> OAuthError {
        match self {
            Self::OAuth(e) => e.clone(),
            _ => OAuthError::server_error(),
        }
    }

    /// The OAuth error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::OAuth(e) => e.code(),
            _ => ErrorCode::ServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_reach_the_client() {
        let e = Error::Store(StoreError::Corrupt("row 7: password=hunter2".into()));
        let shown = serde_json::to_string(&e.to_oauth()).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("server_error"));
        assert_eq!(e.to_oauth().http_status(), 500);
    }

    #[test]
    fn statuses_follow_the_rfcs() {
        assert_eq!(OAuthError::invalid_client("x").http_status(), 401);
        assert_eq!(OAuthError::invalid_grant("x").http_status(), 400);
        assert_eq!(OAuthError::insufficient_scope("x").http_status(), 403);
        assert_eq!(ErrorCode::InvalidTarget.as_str(), "invalid_target");
    }

    #[test]
    fn descriptions_escape_what_a_client_could_smuggle_in() {
        let e = OAuthError::invalid_request(format!("parameter '{}' is included more than once", "1\u{2}"));
        assert_eq!(e.description(), "parameter '1\\u{2}' is included more than once");
        let e = OAuthError::invalid_request("escape \u{1b}[31m, newline \n, bidi \u{202e}");
        assert_eq!(e.description(), "escape \\u{1b}[31m, newline \\u{a}, bidi \\u{202e}");
        assert!(matches!(OAuthError::invalid_request("plain").description, Cow::Borrowed(_)));
    }

    #[test]
    fn error_uri_is_serialised_when_set() {
        let e = OAuthError::invalid_request("bad").with_uri("https://example.com/e");
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["error_uri"], "https://example.com/e");
    }
}
