//! Protocol values as newtypes, built by parsing.
//! Documented in the crate docs, "Validated values".

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

/// Longest URI accepted anywhere (redirect URIs, resources, issuers, client ids that are URLs).
pub const MAX_URI_LEN: usize = 2048;
/// Most scope values in one request.
pub const MAX_SCOPES: usize = 64;
/// Longest single scope value.
pub(crate) const MAX_SCOPE_LEN: usize = 128;

/// A value that failed to parse: which parameter, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ParseError {
    what: &'static str,
    reason: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self { what, reason: reason.into() }
    }

    /// The parameter or value that was refused.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared, not copied: a clone is a reference count, since identities are cloned on
        /// every request the guard lets through.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// The value as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.to_string()
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype! {
    /// A client identifier (RFC 6749 2.2): 1 to 2048 visible ASCII characters. Client ID
    /// Metadata Documents use an https URL here, hence the length.
    ClientId
}

impl ClientId {
    /// Parses a client id.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::new("client_id", "is empty"));
        }
        if s.len() > MAX_URI_LEN {
            return Err(ParseError::new("client_id", format!("is longer than {MAX_URI_LEN} bytes")));
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ParseError::new("client_id", "contains characters outside visible ASCII"));
        }
        Ok(Self(s.into()))
    }

    /// A fresh random client id for a dynamically registered client.
    pub fn generate() -> Self {
        Self(format!("mcp_{}", crate::secret::random_id::<18>()).into())
    }

    /// Whether this id is an https URL with a path: the form of a Client ID Metadata Document.
    pub fn is_metadata_document_url(&self) -> bool {
        self.0.starts_with("https://") && Url::parse(&self.0).is_ok_and(|u| u.path() != "/" && !u.path().is_empty())
    }
}

string_newtype! {
    /// The subject of a grant: the signed-in user's stable identifier (the token's `sub`), or,
    /// for a machine client's grant, [`UserId::for_client`].
    UserId
}

/// The prefix of every machine client's subject. No user id has it (see [`UserId::is_user`]), so
/// a user and a client never share a `sub`.
pub(crate) const MACHINE_SUBJECT_PREFIX: &str = "client:";

impl UserId {
    /// The subject of a machine client's grant and tokens: `client:<client_id>`.
    pub fn for_client(client: &ClientId) -> Self {
        Self(format!("{MACHINE_SUBJECT_PREFIX}{client}").into())
    }

    /// Whether this is a person's id: not a machine client's subject. Sign-in refuses a user id
    /// for which this is false, whatever authenticator produced it.
    pub fn is_user(&self) -> bool {
        !self.0.starts_with(MACHINE_SUBJECT_PREFIX)
    }

    /// Parses a user id: 1 to 255 characters, no control characters.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 255 {
            return Err(ParseError::new("user id", "must be 1 to 255 bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(ParseError::new("user id", "contains control characters"));
        }
        Ok(Self(s.into()))
    }

    /// A fresh random user id.
    pub fn generate() -> Self {
        Self(format!("usr_{}", crate::secret::random_id::<12>()).into())
    }
}

string_newtype! {
    /// A grant's identifier: one authorization, and the refresh-token family it started.
    GrantId
}

impl GrantId {
    /// Parses a grant id (1 to 128 visible ASCII characters).
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ParseError::new("grant id", "must be 1 to 128 visible ASCII characters"));
        }
        Ok(Self(s.into()))
    }

    /// A fresh random grant id.
    pub fn generate() -> Self {
        Self(format!("gr_{}", crate::secret::random_id::<15>()).into())
    }
}

/// Longest upstream provider id, in bytes.
pub const MAX_UPSTREAM_PROVIDER_LEN: usize = 64;
/// Longest upstream subject, in bytes: OpenID Connect Core 2 caps `sub` at 255 ASCII characters.
pub const MAX_UPSTREAM_SUBJECT_LEN: usize = 255;

string_newtype! {
    /// The operator's name for an upstream identity provider people sign in with (`google`,
    /// `github`, `entra-contoso`): 1 to 64 bytes of `[a-z0-9-]`. It is half of the key a person
    /// is linked by, so it must never change once people have signed in with it.
    UpstreamProviderId
}

impl UpstreamProviderId {
    /// Parses a provider id. A longer one is refused, never truncated: two ids that agree on
    /// their first 64 bytes would otherwise link the same people.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "upstream provider id";
        if s.is_empty() || s.len() > MAX_UPSTREAM_PROVIDER_LEN {
            return Err(ParseError::new(WHAT, format!("must be 1 to {MAX_UPSTREAM_PROVIDER_LEN} bytes")));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(ParseError::new(WHAT, "may contain only a-z, 0-9 and '-'"));
        }
        Ok(Self(s.into()))
    }
}

string_newtype! {
    /// Who a person is at an upstream provider: the ID token's `sub` (OpenID Connect Core 2),
    /// or GitHub's numeric user id. Compared exactly (case matters), 1 to 255 bytes, no
    /// control characters.
    UpstreamSubject
}

impl UpstreamSubject {
    /// Parses a subject. A longer one is refused, never truncated: truncation could make two
    /// people one.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "upstream subject";
        if s.is_empty() || s.len() > MAX_UPSTREAM_SUBJECT_LEN {
            return Err(ParseError::new(WHAT, format!("must be 1 to {MAX_UPSTREAM_SUBJECT_LEN} bytes")));
        }
        if s.chars().any(char::is_control) {
            return Err(ParseError::new(WHAT, "contains control characters"));
        }
        Ok(Self(s.into()))
    }
}

/// What kind of redirect URI this is, which decides whether a deployment allows it and how it
/// is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectKind {
    /// `https://…`.
    Https,
    /// `http://` to `localhost`, `127.0.0.1` (any 127/8 address) or `[::1]` (RFC 8252 7.3).
    Loopback,
    /// `http://` to any other host: never allowed for registration.
    PlainHttp,
    /// A private-use scheme such as `cursor://…` (RFC 8252 7.1).
    PrivateUse,
}

/// Schemes that are never a redirect target: they run code or read local data.
const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws", "wss"];

/// A redirect URI, kept exactly as registered or sent, since matching is by exact string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri {
    raw: String,
    kind: RedirectKind,
}

impl RedirectUri {
    /// Parses an absolute redirect URI without a fragment (RFC 6749 3.1.2).
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "redirect_uri";
        if s.len() > MAX_URI_LEN {
            return Err(ParseError::new(WHAT, format!("is longer than {MAX_URI_LEN} bytes")));
        }
        // Before anything that quotes `s`: the message would carry its control characters.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError::new(WHAT, "contains whitespace or control characters"));
        }
        if s.contains('#') {
            return Err(ParseError::new(WHAT, format!("'{s}' has a fragment, which RFC 6749 3.1.2 forbids")));
        }
        let url = Url::parse(s).map_err(|e| ParseError::new(WHAT, format!("'{s}' is not an absolute URI: {e}")))?;
        let scheme = url.scheme();
        if FORBIDDEN_SCHEMES.contains(&scheme) {
            return Err(ParseError::new(WHAT, format!("the '{scheme}:' scheme is never a valid redirect target")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ParseError::new(WHAT, "must not contain user information"));
        }
        let kind = match scheme {
            "https" => {
                if url.host().is_none() {
                    return Err(ParseError::new(WHAT, "https URI has no host"));
                }
                RedirectKind::Https
            }
            "http" if is_loopback(&url) => RedirectKind::Loopback,
            "http" => RedirectKind::PlainHttp,
            _ => RedirectKind::PrivateUse,
        };
        Ok(Self { raw: s.to_owned(), kind })
    }

    /// The URI exactly as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// What kind of redirect this is.
    pub fn kind(&self) -> RedirectKind {
        self.kind
    }

    /// The host (for display on the consent page), or the scheme for private-use URIs.
    pub fn display_host(&self) -> String {
        match Url::parse(&self.raw) {
            Ok(u) => match u.host_str() {
                Some(h) if self.kind != RedirectKind::PrivateUse => h.to_owned(),
                _ => format!("{}:", u.scheme()),
            },
            Err(_) => self.raw.clone(),
        }
    }

    /// Whether `presented` (from an authorization request) matches `self` (registered).
    ///
    /// Exact string comparison, with the loopback exceptions of [`RedirectMatch`]: when both
    /// are loopback redirects, the port is ignored (RFC 8252 7.3), `localhost`, `127.0.0.1` and
    /// `[::1]` are one host, and one opaque path segment may follow the registered path. The
    /// query must still be identical.
    pub fn matches(&self, presented: &RedirectUri) -> bool {
        self.match_with(presented).is_some()
    }

    /// How `presented` matches `self` (registered), or `None` when it does not.
    pub fn match_with(&self, presented: &RedirectUri) -> Option<RedirectMatch> {
        if self.raw == presented.raw {
            return Some(RedirectMatch::Exact);
        }
        if self.kind != RedirectKind::Loopback || presented.kind != RedirectKind::Loopback {
            return None;
        }
        let (Ok(registered), Ok(sent)) = (Url::parse(&self.raw), Url::parse(&presented.raw)) else {
            return None;
        };
        if registered.query() != sent.query() {
            return None;
        }
        let host_swapped = registered.host_str() != sent.host_str();
        if registered.path() == sent.path() {
            return Some(if host_swapped { RedirectMatch::LoopbackHostSwapped } else { RedirectMatch::LoopbackPort });
        }
        // Under a named callback path only: a registered root takes no suffix.
        let base = registered.path().trim_end_matches('/');
        if base.is_empty() {
            return None;
        }
        let suffix = sent.path().strip_prefix(base).and_then(|rest| rest.strip_prefix('/'));
        match suffix {
            Some(segment) if is_callback_id(segment) => Some(RedirectMatch::LoopbackCallbackSuffix),
            _ => None,
        }
    }
}

/// How a redirect URI sent at authorization matched a registered one: every way but
/// [`Self::Exact`] is a loopback leniency, and the named ones are recorded when they apply.
///
/// Every leniency is loopback-only: a loopback redirect reaches a program on the person's own
/// device, which could listen on any port anyway, so none of them lets a code leave the
/// device. Ordered from the strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RedirectMatch {
    /// The same string.
    Exact,
    /// A loopback redirect on another port (RFC 8252 7.3): what native clients do.
    LoopbackPort,
    /// A loopback redirect with another spelling of the host (`localhost`, `127.0.0.1`,
    /// `[::1]`): Claude Code and Codex register one and authorize with the other.
    LoopbackHostSwapped,
    /// A loopback redirect whose path is the registered one (not the root) plus one opaque
    /// segment of [`MAX_CALLBACK_ID_LEN`] URL-safe characters at most: Codex appends
    /// `/callback/<id>`. The one match that is not symmetric.
    LoopbackCallbackSuffix,
}

/// Longest opaque segment [`RedirectMatch::LoopbackCallbackSuffix`] accepts.
pub const MAX_CALLBACK_ID_LEN: usize = 64;

impl RedirectMatch {
    /// The named policy that applied, for flow events; `None` for an exact or port-only match,
    /// which every native client relies on.
    pub const fn policy(self) -> Option<&'static str> {
        match self {
            Self::Exact | Self::LoopbackPort => None,
            Self::LoopbackHostSwapped => Some("loopback_host_swapped"),
            Self::LoopbackCallbackSuffix => Some("loopback_callback_suffix"),
        }
    }
}

/// One path segment of URL-safe characters (`A-Z a-z 0-9 - _`), not empty, bounded.
fn is_callback_id(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_CALLBACK_ID_LEN
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl From<RedirectUri> for String {
    fn from(v: RedirectUri) -> String {
        v.raw
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

string_newtype! {
    /// One scope value (RFC 6749 3.3: `%x21 / %x23-5B / %x5D-7E`, at most 128 bytes).
    Scope
}

impl Scope {
    /// Parses one scope value.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > MAX_SCOPE_LEN {
            return Err(ParseError::new("scope", format!("each scope must be 1 to {MAX_SCOPE_LEN} bytes")));
        }
        if let Some(c) = s.bytes().find(|&b| !(b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))) {
            return Err(ParseError::new(
                "scope",
                format!("'{}' is not allowed in a scope (RFC 6749 3.3)", c.escape_ascii()),
            ));
        }
        Ok(Self(s.into()))
    }
}

/// A set of scopes, ordered, written space-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopeSet(Arc<BTreeSet<Scope>>);

impl ScopeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited scope string; extra whitespace is tolerated.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() > MAX_SCOPES * (MAX_SCOPE_LEN + 1) {
            return Err(ParseError::new("scope", "is too long"));
        }
        let mut set = BTreeSet::new();
        for part in s.split_ascii_whitespace() {
            set.insert(Scope::parse(part)?);
            if set.len() > MAX_SCOPES {
                return Err(ParseError::new("scope", format!("more than {MAX_SCOPES} scopes")));
            }
        }
        Ok(Self(Arc::new(set)))
    }

    /// Builds a set from values that are known to be valid scopes.
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(Arc::new(scopes.into_iter().collect()))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.as_str() == scope)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes in both sets.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(Arc::new(self.0.intersection(&other.0).cloned().collect()))
    }

    /// The scopes of `self` not in `other`.
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        Self(Arc::new(self.0.difference(&other.0).cloned().collect()))
    }

    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl From<ScopeSet> for String {
    fn from(v: ScopeSet) -> String {
        v.to_string()
    }
}

impl TryFrom<String> for ScopeSet {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl std::str::FromStr for ScopeSet {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

string_newtype! {
    /// A resource indicator (RFC 8707 2): an absolute http(s) URI without a fragment. The
    /// canonical MCP URL, as it appears in a token's `aud`.
    ResourceUri
}

impl ResourceUri {
    /// Parses a resource indicator.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "resource";
        if s.len() > MAX_URI_LEN {
            return Err(ParseError::new(WHAT, format!("is longer than {MAX_URI_LEN} bytes")));
        }
        // The URL parser drops tabs and newlines, so they are refused here, before anything
        // quotes `s`: a resource is compared as the exact string sent.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError::new(WHAT, "contains whitespace or control characters"));
        }
        if s.contains('#') {
            return Err(ParseError::new(WHAT, "must not contain a fragment (RFC 8707 2)"));
        }
        let url = Url::parse(s).map_err(|e| ParseError::new(WHAT, format!("'{s}' is not an absolute URI: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
            return Err(ParseError::new(WHAT, format!("'{s}' must be an http(s) URL with a host")));
        }
        Ok(Self(s.into()))
    }

    /// The origin (`scheme://host[:port]`) of this resource.
    pub fn origin(&self) -> String {
        Url::parse(&self.0).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }

    /// The path of this resource (`/mcp`), `/` when it has none.
    pub fn path(&self) -> String {
        Url::parse(&self.0).map(|u| u.path().to_owned()).unwrap_or_else(|_| "/".into())
    }
}

string_newtype! {
    /// An authorization server's issuer identifier (RFC 8414 2): an https URL, or http to a
    /// loopback host for local development, with no query and no fragment. It is one exact
    /// string everywhere it appears.
    Issuer
}

impl Issuer {
    /// Parses an issuer identifier.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.ends_with('/') {
            return Err(ParseError::new(
                "issuer",
                format!("'{s}' must not end with '/': clients compare the issuer as an exact string"),
            ));
        }
        Self::parse_external(s)
    }

    /// Parses the issuer identifier of another authorization server, kept exactly as it emits
    /// it: with the same checks as [`Self::parse`], except that a trailing `/` is allowed (Auth0
    /// and Entra's v1.0 endpoint end their issuers with one, and clients compare the string
    /// exactly, so it must not be taken off). For the issuer of this server use [`Self::parse`].
    pub fn parse_external(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "issuer";
        if s.len() > MAX_URI_LEN {
            return Err(ParseError::new(WHAT, "is too long"));
        }
        let url = Url::parse(s).map_err(|e| ParseError::new(WHAT, format!("'{s}' is not a URL: {e}")))?;
        if url.query().is_some() || s.contains('#') {
            return Err(ParseError::new(WHAT, "must not have a query or a fragment (RFC 8414 2)"));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            other => {
                return Err(ParseError::new(
                    WHAT,
                    format!("must use https (http only to a loopback host), not '{other}'"),
                ));
            }
        }
        Ok(Self(s.into()))
    }

    /// An endpoint URL under this issuer: `issuer + path`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }

    /// The path part of the issuer (empty for a bare origin).
    pub fn path(&self) -> String {
        Url::parse(&self.0).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default()
    }

    /// The origin of the issuer.
    pub fn origin(&self) -> String {
        Url::parse(&self.0).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap()
    }

    #[test]
    fn redirect_uri_matching_table() {
        let cases: &[(&str, &str, bool, &str)] = &[
            ("https://claude.ai/api/mcp/auth_callback", "https://claude.ai/api/mcp/auth_callback", true, "exact"),
            (
                "https://claude.ai/api/mcp/auth_callback",
                "https://claude.ai/api/mcp/auth_callback/",
                false,
                "trailing slash",
            ),
            (
                "https://claude.ai/api/mcp/auth_callback",
                "https://claude.ai/api/MCP/auth_callback",
                false,
                "case in path",
            ),
            (
                "https://claude.ai/api/mcp/auth_callback",
                "https://claude.ai/api/mcp/auth_callback?x=1",
                false,
                "query added",
            ),
            ("https://claude.ai/cb", "https://Claude.ai/cb", false, "case in host is not exact"),
            ("https://claude.ai/cb", "https://claude.ai:443/cb", false, "explicit default port"),
            ("http://127.0.0.1:33418/", "http://127.0.0.1:40001/", true, "loopback any port"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:5555/callback", true, "loopback registered without port"),
            ("http://localhost:0/callback", "http://localhost:61000/callback", true, "loopback port 0"),
            ("http://localhost/callback", "http://127.0.0.1:8080/callback", true, "localhost vs 127.0.0.1"),
            ("http://127.0.0.1/callback", "http://[::1]:8080/callback", true, "127.0.0.1 vs [::1]"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:8080/other", false, "loopback other path"),
            ("http://127.0.0.1/callback", "http://localhost:1455/callback/Zm9vYmFyYmF6cXV4", true, "codex suffix"),
            ("http://127.0.0.1/callback/", "http://127.0.0.1:1455/callback/abc_-9", true, "suffix after a slash"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:1455/callback/a/b", false, "two segments"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:1455/callback/", false, "empty segment"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:1455/callbackX", false, "longer segment name"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:1455/callback/%2e%2e", false, "encoded dots"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:1455/callback/..", false, "dot segment"),
            ("http://127.0.0.1/", "http://127.0.0.1:1455/anything", false, "a root registration takes no suffix"),
            ("https://claude.ai/cb", "https://claude.ai/cb/x", false, "never for https"),
            ("cursor://a/cb", "cursor://a/cb/x", false, "never for private-use"),
            ("http://127.0.0.1/callback", "http://127.0.0.1:8080/callback?a=b", false, "loopback query added"),
            ("http://127.0.0.1/callback", "https://127.0.0.1/callback", false, "loopback scheme change"),
            ("http://example.com/cb", "http://example.com:81/cb", false, "non-loopback port"),
            (
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "cursor://anysphere.cursor-mcp/oauth/callback",
                true,
                "private-use exact",
            ),
            (
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "cursor://anysphere.cursor-mcp/oauth/callback2",
                false,
                "private-use differs",
            ),
        ];
        for (registered, presented, expect, name) in cases {
            assert_eq!(r(registered).matches(&r(presented)), *expect, "{name}: {registered} vs {presented}");
        }
        let long = format!("http://127.0.0.1:1/cb/{}", "a".repeat(MAX_CALLBACK_ID_LEN + 1));
        assert!(!r("http://127.0.0.1/cb").matches(&r(&long)), "an id longer than the bound");
    }

    #[test]
    fn redirect_matches_name_their_policy() {
        let m = |a: &str, b: &str| r(a).match_with(&r(b));
        assert_eq!(m("http://127.0.0.1/cb", "http://127.0.0.1/cb"), Some(RedirectMatch::Exact));
        assert_eq!(m("http://127.0.0.1/cb", "http://127.0.0.1:9/cb"), Some(RedirectMatch::LoopbackPort));
        assert_eq!(m("http://127.0.0.1/cb", "http://localhost:9/cb"), Some(RedirectMatch::LoopbackHostSwapped));
        assert_eq!(m("http://127.0.0.1/cb", "http://localhost:9/cb/x1"), Some(RedirectMatch::LoopbackCallbackSuffix));
        assert_eq!(RedirectMatch::LoopbackPort.policy(), None);
        assert_eq!(RedirectMatch::LoopbackCallbackSuffix.policy(), Some("loopback_callback_suffix"));
    }

    #[test]
    fn redirect_uri_kinds_and_refusals() {
        assert_eq!(r("https://vscode.dev/redirect").kind(), RedirectKind::Https);
        assert_eq!(r("http://127.0.0.1:33418/").kind(), RedirectKind::Loopback);
        assert_eq!(r("http://127.0.0.2/cb").kind(), RedirectKind::Loopback);
        assert_eq!(r("http://[::1]/cb").kind(), RedirectKind::Loopback);
        assert_eq!(r("http://LOCALHOST/cb").kind(), RedirectKind::Loopback);
        assert_eq!(r("http://localhost.evil.com/cb").kind(), RedirectKind::PlainHttp);
        assert_eq!(r("http://example.com/cb").kind(), RedirectKind::PlainHttp);
        assert_eq!(r("cursor://anysphere.cursor-mcp/oauth/callback").kind(), RedirectKind::PrivateUse);
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "https://claude.ai/cb#frag",
            "https://claude.ai/cb#",
            "/relative/path",
            "https://user:pw@claude.ai/cb",
            "https://claude.ai/c b",
            "",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(RedirectUri::parse(&format!("https://a.example/{}", "x".repeat(3000))).is_err());
    }

    #[test]
    fn a_refused_redirect_uri_is_not_quoted_with_its_control_characters() {
        // Found by the redirect_uri fuzz target: the fragment check quoted the input before
        // the control-character check refused it.
        let e = RedirectUri::parse("\u{16}\u{8}#").unwrap_err();
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }

    #[test]
    fn scopes_parse_and_order() {
        let s = ScopeSet::parse(" b a  a ").unwrap();
        assert_eq!(s.to_string(), "a b");
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("").unwrap().is_empty());
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert!(ScopeSet::parse(&many.join(" ")).is_err());
        let small = ScopeSet::parse("a").unwrap();
        assert!(small.is_subset(&s));
        assert!(!s.is_subset(&small));
        assert_eq!(s.difference(&small).to_string(), "b");
    }

    #[test]
    fn client_ids() {
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse("é").is_err());
        assert!(ClientId::generate().as_str().starts_with("mcp_"));
        assert!(ClientId::parse("https://app.example/client.json").unwrap().is_metadata_document_url());
        assert!(!ClientId::parse("https://app.example/").unwrap().is_metadata_document_url());
        assert!(!ClientId::parse("mcp_abc").unwrap().is_metadata_document_url());
    }

    #[test]
    fn issuers_and_resources() {
        assert!(Issuer::parse("https://auth.example.com").is_ok());
        assert!(Issuer::parse("https://auth.example.com/tenant").is_ok());
        assert!(Issuer::parse("http://127.0.0.1:8080").is_ok());
        assert!(Issuer::parse("http://example.com").is_err());
        assert!(Issuer::parse("https://auth.example.com/").is_err());
        // Another server's issuer is kept as it is written, trailing slash included.
        assert_eq!(Issuer::parse_external("https://tenant.auth0.com/").unwrap().as_str(), "https://tenant.auth0.com/");
        for bad in ["http://example.com/", "https://auth.example.com/?x=1", "https://a.example/#f"] {
            assert!(Issuer::parse_external(bad).is_err(), "{bad}");
        }
        assert!(Issuer::parse("https://auth.example.com?x=1").is_err());
        let i = Issuer::parse("https://auth.example.com/tenant").unwrap();
        assert_eq!(i.endpoint("/token"), "https://auth.example.com/tenant/token");
        assert_eq!(i.path(), "/tenant");
        assert!(ResourceUri::parse("https://mcp.example.com/mcp").is_ok());
        assert!(ResourceUri::parse("https://mcp.example.com/mcp#x").is_err());
        assert!(ResourceUri::parse("urn:x").is_err());
        // Found by the token_form fuzz target: a resource of control characters was quoted whole
        // into the invalid_target description; and one with a tab parsed, the tab dropped.
        let e = ResourceUri::parse(&format!("http3://{}", "\u{4}".repeat(2000))).unwrap_err();
        assert!(e.to_string().len() < 256 && !e.to_string().chars().any(char::is_control), "{e}");
        assert!(ResourceUri::parse("https://mcp.example.com/m\tcp").is_err());
        assert!(ResourceUri::parse(" https://mcp.example.com/mcp").is_err());
        let res = ResourceUri::parse("https://mcp.example.com:8443/mcp").unwrap();
        assert_eq!(res.origin(), "https://mcp.example.com:8443");
        assert_eq!(res.path(), "/mcp");
    }

    #[test]
    fn upstream_identities_are_bounded_and_never_truncated() {
        for ok in ["google", "entra-contoso", "okta2", &"a".repeat(MAX_UPSTREAM_PROVIDER_LEN)] {
            assert_eq!(UpstreamProviderId::parse(ok).unwrap().as_str(), ok);
        }
        let too_long = "a".repeat(MAX_UPSTREAM_PROVIDER_LEN + 1);
        for bad in ["", "Google", "git hub", "git_hub", "gïthub", "a/b", too_long.as_str()] {
            assert!(UpstreamProviderId::parse(bad).is_err(), "{bad:?}");
        }
        for ok in ["110169484474386276334", "AItOawmwtWwcT0k51BayewNvutrJUqsvl6qs7A4", "auth0|5f7c8ec7c33c6c004bbafe82"]
        {
            assert_eq!(UpstreamSubject::parse(ok).unwrap().as_str(), ok, "case and punctuation are kept");
        }
        assert!(UpstreamSubject::parse(&"s".repeat(MAX_UPSTREAM_SUBJECT_LEN)).is_ok());
        // 255 bytes is the bound, not 255 characters.
        assert!(UpstreamSubject::parse(&"é".repeat(128)).is_err());
        for bad in ["", "a\nb", "nul\0"] {
            assert!(UpstreamSubject::parse(bad).is_err(), "{bad:?}");
        }
        assert!(UpstreamSubject::parse(&"s".repeat(MAX_UPSTREAM_SUBJECT_LEN + 1)).is_err());
    }
}
