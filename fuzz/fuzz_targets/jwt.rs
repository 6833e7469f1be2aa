//! Access-token verification: `KeySet::verify` with a real key set (ES256, EdDSA and
//! HS256 keys with fixed ids `es-1`, `ed-1`, `hs-1`), the JWKS path of mcp-guard's
//! `JwksVerifier` on the published keys, and the guard's reading of the bearer header and of
//! verified claims.
//!
//! The first byte picks the mode: below 0x80 the rest is an `Authorization` header value; from
//! 0x80 the rest is a JOSE header, a newline and a claims set, signed with the key the first
//! byte picks, so that everything after the signature check is reachable.
//!
//! Invariants: an accepted token is typed `at+jwt`, uses its key's algorithm, comes from the
//! issuer, is for the resource, and is within its validity window; the remote path agrees with
//! the local one on every token of a published key; a refusal's description is clean and fits
//! a `WWW-Authenticate` quoted-string; the guard's caller is the token's, and a machine token
//! can only name its own client.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{ISSUER, MAX_DESCRIPTION, NOW, RESOURCE, check_text, has_control, split_lines};
use oauth_core::Jwks;
use oauth_core::UnixTime;
use oauth_core::UserId;
use oauth_core::{AccessTokenClaims, MAX_TOKEN_LEN, TokenValidation, VerifyError};
use oauth_core::{KeySet, SigningAlgorithm, StoredKey};

struct Keys {
    set: KeySet,
    jwks: Jwks,
    signing: Vec<(Algorithm, EncodingKey)>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let now = UnixTime::from_secs(NOW);
        let mut stored = Vec::new();
        let mut signing = Vec::new();
        for (alg, kid) in [
            (SigningAlgorithm::Es256, "es-1"),
            (SigningAlgorithm::EdDsa, "ed-1"),
            (SigningAlgorithm::DangerousHs256, "hs-1"),
        ] {
            let mut k = StoredKey::generate(alg, now).expect("key generation");
            k.kid = kid.into();
            let single = KeySet::load(std::slice::from_ref(&k), alg).expect("one key");
            signing.push(oauth_core::fuzzing::signing_key(&single));
            stored.push(k);
        }
        let set = KeySet::load(&stored, SigningAlgorithm::Es256).expect("key set");
        let jwks = set.jwks();
        Keys { set, jwks, signing }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let keys = keys();
    let token = if mode < 0x80 {
        let Ok(value) = http::HeaderValue::from_bytes(rest) else { return };
        let Some(token) = mcp_guard::fuzzing::bearer_token(&value) else { return };
        assert!(!token.is_empty() && token.trim() == token, "bearer token {token:?}");
        let header = value.to_str().expect("a bearer header is text").trim();
        assert!(header.len() > 7 && header[..7].eq_ignore_ascii_case("bearer "), "{header:?}");
        token
    } else {
        let [header, claims] = split_lines(rest, 2)[..] else { return };
        let (alg, key) = &keys.signing[usize::from(mode) % keys.signing.len()];
        let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, *alg).expect("signing");
        format!("{message}.{signature}")
    };

    let validation = TokenValidation::new(ISSUER, RESOURCE);
    let now = UnixTime::from_secs(NOW);
    let local = keys.set.verify(&token, &validation, now);
    let remote = mcp_guard::fuzzing::verify_with_jwks(&keys.jwks, &token, &validation, now);
    let kid = jsonwebtoken::decode_header(&token).ok().and_then(|h| h.kid);
    if kid.as_deref() != Some("hs-1") {
        assert_eq!(local, remote, "local and JWKS verification disagree on {token}");
    } else {
        assert!(remote.is_err(), "the JWKS path accepted an unpublished HS256 key");
    }

    match local {
        Ok(claims) => accepted(&token, claims),
        Err(e) => refused(&e, &token),
    }
});

fn accepted(token: &str, claims: AccessTokenClaims) {
    assert!(token.len() <= MAX_TOKEN_LEN);
    let header = jsonwebtoken::decode_header(token).expect("an accepted token has a header");
    let typ = header.typ.as_deref().unwrap_or_default().to_ascii_lowercase();
    assert!(typ == "at+jwt" || typ == "application/at+jwt", "typ {typ:?}");
    let kid = header.kid.as_deref().expect("an accepted token names its key");
    let expected = match kid {
        "es-1" => jsonwebtoken::Algorithm::ES256,
        "ed-1" => jsonwebtoken::Algorithm::EdDSA,
        "hs-1" => jsonwebtoken::Algorithm::HS256,
        other => panic!("accepted under an unknown kid {other:?}"),
    };
    assert_eq!(header.alg, expected);
    assert_eq!(claims.iss, ISSUER);
    assert!(claims.aud.contains(RESOURCE));
    let leeway = 60;
    assert!(claims.exp.saturating_add(leeway) > NOW, "expired at {}", claims.exp);
    assert!(claims.iat <= NOW + leeway && claims.nbf.is_none_or(|n| n <= NOW + leeway));

    match mcp_guard::fuzzing::context_from_claims(claims.clone()) {
        Ok(ctx) => {
            assert_eq!(
                (ctx.subject.as_str(), ctx.client_id.as_str()),
                (claims.sub.as_str(), claims.client_id.as_str())
            );
            assert_eq!(ctx.is_machine(), claims.machine, "{claims:?}");
            if claims.machine {
                assert_eq!(ctx.subject, UserId::for_client(&ctx.client_id));
            } else {
                assert!(ctx.user().is_some_and(UserId::is_user));
            }
            // The same scopes, whatever their order and repeats in the claim.
            assert!(claims.scopes().all(|s| ctx.has_scope(s)), "{claims:?}");
            assert!(ctx.scopes.iter().all(|s| claims.scopes().any(|c| c == s.as_str())), "{claims:?}");
        }
        Err(r) => {
            check_text(&r.description, "rejection", &claims);
            check_challenge(&r.description);
        }
    }
}

fn refused(e: &VerifyError, token: &str) {
    let description = e.to_string();
    // The issuer and audience of a mismatch are claims under a valid signature: values only a
    // key holder chooses. Everything else can come from anyone.
    if !matches!(e, VerifyError::IssuerMismatch { .. } | VerifyError::AudienceMismatch { .. }) {
        assert!(!has_control(&description), "refusal {description:?} has a raw control character, for {token:?}");
        assert!(description.len() <= MAX_DESCRIPTION, "{} byte refusal for {token:?}", description.len());
    }
    check_challenge(&description);
}

/// What the guard puts in `WWW-Authenticate` is one valid quoted-string.
fn check_challenge(description: &str) {
    let quoted = mcp_guard::fuzzing::challenge_quote(description);
    assert!(!quoted.contains('"') && !quoted.contains('\\') && !has_control(&quoted), "{quoted:?}");
    let value = format!("Bearer error=\"invalid_token\", error_description=\"{quoted}\"");
    assert!(http::HeaderValue::from_str(&value).is_ok(), "challenge {value:?} is not a header value");
}
