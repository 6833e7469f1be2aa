//! The browser side of sign-in: a signed session cookie, and CSRF tokens bound to a cookie
//! nonce and to the pending authorization.
//!
//! Both keys are derived from the server's active signing key, so every replica sharing the
//! key store agrees on them without another stored secret; a key rotation signs everyone out.

use std::fmt::Write as _;

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth_core::UnixTime;
use oauth_core::keys::KeySet;
use oauth_core::secret::ct_eq;
use oauth_core::types::UserId;
use serde::{Deserialize, Serialize};

/// Longest cookie header considered.
const MAX_COOKIE_HEADER: usize = 8 * 1024;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) sub: String,
    pub(crate) name: String,
    pub(crate) auth_time: i64,
    pub(crate) exp: i64,
}

impl Session {
    pub(crate) fn user_id(&self) -> Option<UserId> {
        UserId::parse(&self.sub).ok()
    }
}

/// Cookie names and attributes: `__Host-`, Secure, HttpOnly, SameSite=Lax on https; on a
/// plain-http loopback issuer (local development) the prefix and `Secure` are dropped, since
/// clients refuse Secure cookies over http.
#[derive(Debug, Clone)]
pub(crate) struct Cookies {
    session: String,
    csrf: String,
    attributes: &'static str,
}

impl Cookies {
    pub(crate) fn for_issuer(issuer: &str) -> Self {
        if issuer.starts_with("https://") {
            Self {
                session: "__Host-mcp_oauth_session".into(),
                csrf: "__Host-mcp_oauth_csrf".into(),
                attributes: "Path=/; Secure; HttpOnly; SameSite=Lax",
            }
        } else {
            Self {
                session: "mcp_oauth_session".into(),
                csrf: "mcp_oauth_csrf".into(),
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

fn keys_for(keys: &KeySet, label: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &keys.derive_secret(label))
}

/// `base64url(json).base64url(hmac)`.
pub(crate) fn sign_session(keys: &KeySet, session: &Session) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(session).unwrap_or_default());
    let tag = hmac::sign(&keys_for(keys, "oauth-axum session v1"), payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The session in a cookie value, if its signature verifies and it has not expired.
pub(crate) fn open_session(keys: &KeySet, value: &str, now: UnixTime) -> Option<Session> {
    if value.len() > 4096 {
        return None;
    }
    let (payload, tag) = value.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    hmac::verify(&keys_for(keys, "oauth-axum session v1"), payload.as_bytes(), &tag).ok()?;
    let session: Session = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (session.exp > now.as_secs()).then_some(session)
}

/// The CSRF token for a form: bound to the browser's nonce cookie and to the pending request.
pub(crate) fn csrf_token(keys: &KeySet, nonce: &str, pending: &str) -> String {
    let mut msg = String::with_capacity(nonce.len() + pending.len() + 1);
    let _ = write!(msg, "{nonce}|{pending}");
    let tag = hmac::sign(&keys_for(keys, "oauth-axum csrf v1"), msg.as_bytes());
    URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// Whether a submitted CSRF token is the one for this nonce and pending request.
pub(crate) fn csrf_valid(keys: &KeySet, nonce: Option<&str>, pending: &str, submitted: &str) -> bool {
    match nonce {
        Some(n) => ct_eq(csrf_token(keys, n, pending).as_bytes(), submitted.as_bytes()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_core::keys::{SigningAlgorithm, StoredKey};

    fn keys() -> KeySet {
        KeySet::load(
            &[StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(0)).unwrap()],
            SigningAlgorithm::Es256,
        )
        .unwrap()
    }

    #[test]
    fn sessions_verify_and_expire() {
        let k = keys();
        let s = Session { sub: "u1".into(), name: "alice".into(), auth_time: 10, exp: 100 };
        let v = sign_session(&k, &s);
        assert_eq!(open_session(&k, &v, UnixTime::from_secs(50)), Some(s.clone()));
        assert_eq!(open_session(&k, &v, UnixTime::from_secs(100)), None, "expired");
        assert_eq!(open_session(&keys(), &v, UnixTime::from_secs(50)), None, "other key");
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","name":"x","auth_time":0,"exp":999}"#),
            v.split('.').nth(1).unwrap()
        );
        assert_eq!(open_session(&k, &forged, UnixTime::from_secs(50)), None, "tampered payload");
    }

    #[test]
    fn csrf_tokens_bind_nonce_and_request() {
        let k = keys();
        let t = csrf_token(&k, "nonce-a", "p1");
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
    }
}
