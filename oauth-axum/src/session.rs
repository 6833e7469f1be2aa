//! The browser side of sign-in: the session cookie, and CSRF tokens bound to a cookie nonce and
//! to the pending authorization.
//!
//! The session cookie carries a random token for a session stored on the server
//! (the crate docs of `oauth_core`, "Sign-in sessions"): no key signs it, and every use is checked against the store and
//! the user, so that sign-out, removing, disabling or re-passwording a user ends it. The CSRF
//! key comes from [`oauth_core::AuthorizationServer::derive_secret`]: a server secret in the key store,
//! shared by every replica and independent of the signing keys.

use std::fmt::Write as _;

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth_core::SignInSession;
use oauth_core::UnixTime;
use oauth_core::UserId;
use oauth_core::ct_eq;

/// Longest cookie header considered.
const MAX_COOKIE_HEADER: usize = 8 * 1024;

/// A signed-in browser, as its stored session says, checked against the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    user: UserId,
    pub(crate) name: String,
    pub(crate) auth_time: UnixTime,
}

impl Session {
    /// The signed-in user. Always `Some` for a checked session.
    pub(crate) fn user_id(&self) -> Option<UserId> {
        Some(self.user.clone())
    }
}

impl From<SignInSession> for Session {
    fn from(s: SignInSession) -> Self {
        Self { user: s.user, name: s.name, auth_time: s.auth_time }
    }
}

/// Cookie names and attributes: `__Host-`, Secure, HttpOnly, SameSite=Lax on https; on a
/// plain-http loopback issuer (local development) the prefix and `Secure` are dropped, since
/// clients refuse Secure cookies over http.
#[derive(Debug, Clone)]
pub(crate) struct Cookies {
    session: String,
    csrf: String,
    upstream: String,
    attributes: &'static str,
}

impl Cookies {
    pub(crate) fn for_issuer(issuer: &str) -> Self {
        if issuer.starts_with("https://") {
            Self {
                session: "__Host-mcp_oauth_session".into(),
                csrf: "__Host-mcp_oauth_csrf".into(),
                upstream: "__Host-mcp_oauth_upstream".into(),
                attributes: "Path=/; Secure; HttpOnly; SameSite=Lax",
            }
        } else {
            Self {
                session: "mcp_oauth_session".into(),
                csrf: "mcp_oauth_csrf".into(),
                upstream: "mcp_oauth_upstream".into(),
                attributes: "Path=/; HttpOnly; SameSite=Lax",
            }
        }
    }

    pub(crate) fn session_value(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, &self.session)
    }

    pub(crate) fn csrf_nonce(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, &self.csrf).filter(|n| n.len() == 43)
    }

    pub(crate) fn set_session(&self, value: &str, max_age: u64) -> String {
        format!("{}={value}; Max-Age={max_age}; {}", self.session, self.attributes)
    }

    /// Deletes the session cookie.
    pub(crate) fn clear_session(&self) -> String {
        format!("{}=; Max-Age=0; {}", self.session, self.attributes)
    }

    /// The sealed state of an upstream sign-in in progress (SameSite=Lax: it comes back with
    /// the provider's top-level redirect to the callback).
    pub(crate) fn upstream_value(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, &self.upstream)
    }

    pub(crate) fn set_upstream(&self, sealed: &str, max_age: u64) -> String {
        format!("{}={sealed}; Max-Age={max_age}; {}", self.upstream, self.attributes)
    }

    pub(crate) fn clear_upstream(&self) -> String {
        format!("{}=; Max-Age=0; {}", self.upstream, self.attributes)
    }

    pub(crate) fn set_csrf(&self, nonce: &str) -> String {
        format!("{}={nonce}; {}", self.csrf, self.attributes)
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for value in headers.get_all(COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        if s.len() > MAX_COOKIE_HEADER {
            continue;
        }
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=')
                && k == name
            {
                return Some(v.to_owned());
            }
        }
    }
    None
}

/// The label of the CSRF key ([`oauth_core::AuthorizationServer::derive_secret`]).
pub(crate) const CSRF_KEY: &str = "oauth-axum csrf v1";

/// The CSRF token for a form: bound to the browser's nonce cookie and to the pending request.
pub(crate) fn csrf_token(key: &[u8; 32], nonce: &str, pending: &str) -> String {
    let mut msg = String::with_capacity(nonce.len() + pending.len() + 1);
    let _ = write!(msg, "{nonce}|{pending}");
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes());
    URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// Whether a submitted CSRF token is the one for this nonce and pending request.
pub(crate) fn csrf_valid(key: &[u8; 32], nonce: Option<&str>, pending: &str, submitted: &str) -> bool {
    match nonce {
        Some(n) => ct_eq(csrf_token(key, n, pending).as_bytes(), submitted.as_bytes()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> [u8; 32] {
        oauth_core::ServerSecret::generate().as_bytes().to_owned()
    }

    #[test]
    fn csrf_tokens_bind_nonce_and_request() {
        let k = keys();
        let t = csrf_token(&k, "nonce-a", "p1");
        assert!(!csrf_valid(&keys(), Some("nonce-a"), "p1", &t), "another server's key");
        assert!(csrf_valid(&k, Some("nonce-a"), "p1", &t));
        assert!(!csrf_valid(&k, Some("nonce-b"), "p1", &t));
        assert!(!csrf_valid(&k, Some("nonce-a"), "p2", &t));
        assert!(!csrf_valid(&k, None, "p1", &t));
    }

    #[test]
    fn cookies_follow_the_issuer_scheme() {
        let c = Cookies::for_issuer("https://mcp.example.com");
        let set = c.set_session("v", 60);
        assert!(set.starts_with("__Host-mcp_oauth_session=v;"));
        assert!(
            set.contains("Secure")
                && set.contains("HttpOnly")
                && set.contains("SameSite=Lax")
                && set.contains("Path=/")
        );
        assert!(!set.contains("Domain"));
        let dev = Cookies::for_issuer("http://127.0.0.1:8080").set_session("v", 60);
        assert!(dev.starts_with("mcp_oauth_session=") && !dev.contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; __Host-mcp_oauth_session=abc.def; b=2".parse().unwrap());
        assert_eq!(c.session_value(&h).as_deref(), Some("abc.def"));
        let cleared = c.clear_session();
        assert!(cleared.starts_with("__Host-mcp_oauth_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    }
}
