//! The sign-in POST as the browser sends it: the input is a `Content-Type`, a newline, the form
//! body, a newline, and then one `Cookie` header value per line. The cookies go through the
//! session and CSRF cookie readers (for an https and a plain-http loopback issuer), the body
//! through the pages' form reader, and the CSRF check through the token it derives.
//!
//! Invariants: on https only the `__Host-` cookies are read (a sibling host cannot plant one
//! under the plain name); a value is one cookie's, never running into the next; a CSRF nonce is
//! exactly 43 bytes; a cookie this server set is read back whatever surrounds it; oversized
//! headers are ignored; a CSRF token verifies only for its nonce and pending request; the form
//! reader keeps only the named fields, refuses repeats and other content types with a clean
//! `invalid_request`.

#![no_main]

use http::HeaderMap;
use http::header::{CONTENT_TYPE, COOKIE};
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_error, split_lines};
use oauth_axum::fuzzing::{csrf_cookie, csrf_token, csrf_valid, form_fields, session_cookie};
use oauth_core::ErrorCode;

const HTTPS: &str = "https://mcp.example.com";
const LOOPBACK: &str = "http://127.0.0.1:8080";
const KEY: [u8; 32] = [7; 32];
const NAMES: &[&str] = &["pending", "csrf", "username", "password"];

fuzz_target!(|data: &[u8]| {
    let [content_type, body, cookies] = split_lines(data, 3)[..] else { return };
    let mut headers = HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    for line in cookies.split(|&b| b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    let readable: Vec<&str> =
        headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).filter(|s| s.len() <= 8 * 1024).collect();

    for (issuer, session, csrf) in [
        (HTTPS, "__Host-mcp_oauth_session", "__Host-mcp_oauth_csrf"),
        (LOOPBACK, "mcp_oauth_session", "mcp_oauth_csrf"),
    ] {
        let s = session_cookie(issuer, &headers);
        let c = csrf_cookie(issuer, &headers);
        for (name, value) in [(session, &s), (csrf, &c)] {
            if let Some(v) = value {
                assert!(!v.contains(';'), "{name} ran into the next cookie: {v:?}");
                let pair = format!("{name}={v}");
                assert!(readable.iter().any(|h| h.contains(&pair)), "{name}={v:?} is in no readable Cookie header");
            }
        }
        assert!(c.as_ref().is_none_or(|n| n.len() == 43), "CSRF nonce {c:?}");

        // What this server set, the browser sends back among whatever else it holds.
        let token = "Qm9vdHN0cmFwcGVkIHNlc3Npb24gdG9rZW4gdmFsdWU";
        let mut echoed = HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("theme=dark; {session}={token}; {csrf}={token}")) {
            echoed.append(COOKIE, v);
        }
        assert_eq!(session_cookie(issuer, &echoed).as_deref(), Some(token));
        assert_eq!(csrf_cookie(issuer, &echoed).as_deref(), Some(token));

        let pending = String::from_utf8_lossy(body);
        if let Some(nonce) = c.as_deref() {
            let t = csrf_token(&KEY, nonce, &pending);
            assert!(csrf_valid(&KEY, Some(nonce), &pending, &t));
            assert!(!csrf_valid(&KEY, Some(nonce), &format!("{pending}x"), &t), "CSRF token valid for another request");
            assert!(!csrf_valid(&[8; 32], Some(nonce), &pending, &t), "CSRF token valid under another key");
            // Whatever the form submits passes only when it is the token.
            for submitted in readable.iter().flat_map(|h| h.split(';')) {
                assert_eq!(csrf_valid(&KEY, Some(nonce), &pending, submitted.trim()), submitted.trim() == t);
            }
        }
        assert!(!csrf_valid(&KEY, None, &pending, &pending), "no nonce, no valid token");
    }
    if readable.is_empty() {
        assert!(session_cookie(HTTPS, &headers).is_none() && session_cookie(LOOPBACK, &headers).is_none());
    }

    // The sign-in form itself.
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    match form_fields(&headers, body, NAMES) {
        Ok(fields) => {
            assert!(is_form, "a form read without its content type");
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
            for (k, v) in &fields {
                assert!(NAMES.contains(&k.as_str()), "unnamed field {k:?} kept");
                let sent: Vec<&String> = pairs.iter().filter(|(pk, _)| pk == k).map(|(_, pv)| pv).collect();
                assert_eq!(sent, vec![v], "field {k}");
            }
            for name in NAMES {
                assert_eq!(fields.contains_key(*name), pairs.iter().any(|(k, _)| k == name));
            }
        }
        Err(e) => check_error(&e, &[ErrorCode::InvalidRequest], &String::from_utf8_lossy(data)),
    }
});
