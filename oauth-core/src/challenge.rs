//! The bearer side of a protected resource (RFC 6750).
//! Documented in the crate docs, "Bearer challenges".

use std::fmt;

/// The error of a token without the scope a request needs (RFC 6750 3.1).
pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 2.1; the scheme
/// is case-insensitive), or `None` for another scheme or an empty token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A `WWW-Authenticate: Bearer …` challenge (RFC 6750 3). Its [`Display`](fmt::Display) is
/// the header value; every parameter is made safe for a quoted-string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    resource_metadata: String,
    error: Option<(&'static str, String)>,
    scope: Option<String>,
}

impl BearerChallenge {
    /// A challenge pointing at the resource's metadata document (RFC 9728 5.1), without an
    /// error: the answer to a request that carried no token (RFC 6750 3.1).
    pub fn new(resource_metadata: impl Into<String>) -> Self {
        Self { resource_metadata: resource_metadata.into(), error: None, scope: None }
    }

    /// The error code (`invalid_request`, `invalid_token` or `insufficient_scope`) and its
    /// description.
    pub fn error(mut self, code: &'static str, description: impl Into<String>) -> Self {
        self.error = Some((code, description.into()));
        self
    }

    /// The scope the resource needs (RFC 6750 3); empty scopes are left out.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.scope = (!scope.is_empty()).then_some(scope);
        self
    }
}

impl fmt::Display for BearerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer ")?;
        if let Some((code, _)) = &self.error {
            write!(f, "error=\"{}\", ", quote(code))?;
        }
        // The scope an insufficient_scope error is about comes right after it; otherwise the
        // discovery pointer comes first, as MCP clients are used to.
        let scope_names_the_error = matches!(&self.error, Some((INSUFFICIENT_SCOPE, _)));
        match &self.scope {
            Some(scope) if scope_names_the_error => {
                write!(f, "scope=\"{}\", resource_metadata=\"{}\"", quote(scope), quote(&self.resource_metadata))?;
            }
            Some(scope) => {
                write!(f, "resource_metadata=\"{}\", scope=\"{}\"", quote(&self.resource_metadata), quote(scope))?;
            }
            None => write!(f, "resource_metadata=\"{}\"", quote(&self.resource_metadata))?,
        }
        if let Some((_, description)) = &self.error {
            write!(f, ", error_description=\"{}\"", quote(description))?;
        }
        Ok(())
    }
}

/// `s` made safe inside a quoted-string of a header: control characters dropped, quotes and
/// backslashes (which would end or escape the string) turned into apostrophes.
pub fn quote(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).map(|c| if c == '"' || c == '\\' { '\'' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_per_rfc_6750() {
        let table = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("Bearer", None),
            ("", None),
        ];
        for (header, token) in table {
            assert_eq!(bearer_token(header), token, "{header:?}");
        }
    }

    #[test]
    fn challenges_carry_what_was_set_and_nothing_that_breaks_the_header() {
        let prm = "https://mcp.example/.well-known/oauth-protected-resource/mcp";
        let table = [
            (BearerChallenge::new(prm), format!("Bearer resource_metadata=\"{prm}\"")),
            (BearerChallenge::new(prm).scope(""), format!("Bearer resource_metadata=\"{prm}\"")),
            (BearerChallenge::new(prm).scope("a b"), format!("Bearer resource_metadata=\"{prm}\", scope=\"a b\"")),
            (
                BearerChallenge::new(prm).error("invalid_token", "expired").scope("a"),
                format!(
                    "Bearer error=\"invalid_token\", resource_metadata=\"{prm}\", scope=\"a\", error_description=\"expired\""
                ),
            ),
            (
                BearerChallenge::new(prm).error(INSUFFICIENT_SCOPE, "needs \"b\"\r\n\\").scope("a b"),
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"a b\", resource_metadata=\"{prm}\", error_description=\"needs 'b''\""
                ),
            ),
        ];
        for (challenge, header) in table {
            assert_eq!(challenge.to_string(), header);
            assert!(http_header_safe(&challenge.to_string()), "{challenge}");
        }
    }

    fn http_header_safe(s: &str) -> bool {
        s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
    }
}
