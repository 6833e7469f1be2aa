//! HTTP Basic client authentication (RFC 6749 2.3.1): `base64(urlencode(id):urlencode(secret))`.
//!
//! Two inputs from one: the bytes as a raw `Authorization` header, and, read as an id and a
//! secret, the header a correct client would build from them.
//!
//! Invariants: an accepted header decodes to a non-empty id and a secret within the header's
//! bounds, and agrees with `application/x-www-form-urlencoded` decoding of each part (strict:
//! a `%` must start two hex digits); re-encoding the result parses back to it; a correctly
//! encoded header always parses to exactly what was encoded; refusals are `invalid_client`.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::check_error;
use oauth_core::ErrorCode;
use oauth_core::MAX_SECRET_LEN;
use oauth_core::fuzzing::parse_basic;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        raw_header(header);
    }
    // The same bytes as an id and a secret, split at the first NUL.
    let (id, secret) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let (Ok(id), Ok(secret)) = (std::str::from_utf8(id), std::str::from_utf8(secret)) {
        well_formed(id, secret);
    }
});

fn raw_header(header: &str) {
    match parse_basic(header) {
        Ok(None) => {
            let scheme = header.trim().split_once(' ').map(|(s, _)| s);
            assert!(scheme.is_none_or(|s| !s.eq_ignore_ascii_case("basic")), "Basic ignored: {header:?}");
        }
        Ok(Some((id, secret))) => {
            let secret = secret.expect("Basic always carries a secret, maybe empty");
            assert!(!id.is_empty(), "empty id from {header:?}");
            // The header is at most 4 * MAX_SECRET_LEN base64 characters: 3 bytes for every 4.
            assert!(
                id.len() + secret.len() < 3 * MAX_SECRET_LEN,
                "{} + {} bytes from {header:?}",
                id.len(),
                secret.len()
            );
            let value = header.trim().split_once(' ').map(|(_, v)| v.trim()).expect("a scheme and a value");
            let decoded = String::from_utf8(STANDARD.decode(value).expect("accepted base64")).expect("accepted UTF-8");
            let (raw_id, raw_secret) = decoded.split_once(':').expect("accepted a colon");
            assert_eq!(id, form_decode(raw_id).expect("the id is strictly form-encoded"), "id of {header:?}");
            assert_eq!(secret, form_decode(raw_secret).expect("the secret is strictly form-encoded"));
            // What a client would send for these values parses back to them, when encoding
            // (which may expand raw UTF-8 threefold) keeps it within the bound.
            let again = encode(&id, &secret);
            if again.len() - "Basic ".len() <= 4 * MAX_SECRET_LEN {
                let parsed = parse_basic(&again).expect("re-encoded credentials parse");
                assert_eq!(parsed, Some((id, Some(secret))), "re-encoding {header:?}");
            }
        }
        Err(e) => check_error(&e, &[ErrorCode::InvalidClient], &header),
    }
}

fn well_formed(id: &str, secret: &str) {
    let header = encode(id, secret);
    match parse_basic(&header) {
        Ok(Some(got)) => assert_eq!(got, (id.to_owned(), Some(secret.to_owned())), "{header}"),
        Ok(None) => panic!("a Basic header ignored: {header}"),
        Err(e) => {
            check_error(&e, &[ErrorCode::InvalidClient], &header);
            let encoded_len = header.len() - "Basic ".len();
            assert!(id.is_empty() || encoded_len > 4 * MAX_SECRET_LEN, "refused well-formed {header}: {e}");
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 2.3.1 asks of a client.
fn encode(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

/// Reference decoding: `+` is a space, `%XX` (two hex digits) a byte, anything else itself;
/// `None` for a `%` without two hex digits or bytes that are not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let (hi, lo) = (b.get(i + 1)?, b.get(i + 2)?);
                if !hi.is_ascii_hexdigit() || !lo.is_ascii_hexdigit() {
                    return None;
                }
                let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                out.push(hex(*hi)? * 16 + hex(*lo)?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
