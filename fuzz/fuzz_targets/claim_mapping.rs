//! The guard's claim mapping for tokens of mainstream identity providers: a claims set signed
//! with a published key, verified as `JwksVerifier` does through each preset
//! (`IssuerProfile`), and mapped to the caller.
//!
//! The first byte picks the preset (low two bits: keycloak with realm and client roles,
//! entra, auth0 with a roles claim, okta), whether scopes get a prefix (bit 2), the header's
//! `typ` (bits 3-4: none, `JWT`, `at+jwt`, another), and whether the registered claims are
//! left as sent (bit 5) or set to pass (`iss`, `aud`, `exp`, `iat`), so that the mapping is
//! reached. The rest is the claims set.
//!
//! Invariants: a caller is a person only under a subject in the person namespace taken from
//! the preset's subject claim, or a machine whose subject is its own client's; the client is
//! one of the token's string claims; the issuer is the configured one; scopes are bounded,
//! valid and prefixed when a prefix is set; the token id is bounded; the same token maps the
//! same way twice; a refusal's description is clean text, and never a configuration error.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use mcp_guard::remote::IssuerProfile;
use mcp_oauth_fuzz::{NOW, check_text};
use oauth_core::{Jwks, KeySet, Reason, SigningAlgorithm, StoredKey, UnixTime, UserId};
use serde_json::{Map, Value, json};

const RESOURCE: &str = "https://notes.example.com/mcp";
const PREFIX: &str = "idp:";

struct Keys {
    jwks: Jwks,
    signing: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(NOW)).expect("key generation");
        k.kid = "es-1".into();
        let set = KeySet::load(std::slice::from_ref(&k), SigningAlgorithm::Es256).expect("one key");
        let (_, signing) = oauth_core::fuzzing::signing_key(&set);
        Keys { jwks: set.jwks(), signing }
    })
}

/// A preset as an operator configures it: (profile, issuer, the audience its tokens carry,
/// its subject claim).
fn preset(pick: u8, prefixed: bool) -> (IssuerProfile, &'static str, &'static str, &'static str) {
    let (profile, issuer, audience, subject) = match pick & 3 {
        0 => (
            IssuerProfile::keycloak().with_keycloak_realm_roles().with_keycloak_client_roles("notes"),
            "https://sso.example.com/realms/notes",
            RESOURCE,
            "sub",
        ),
        1 => (
            IssuerProfile::entra().with_audience("api://notes"),
            "https://login.microsoftonline.com/0b5e2f7a-3c1d-4e8f-9a6b-7c2d1e0f4a3b/v2.0",
            "api://notes",
            "oid",
        ),
        2 => (
            IssuerProfile::auth0().with_roles_claim("https://notes.example.com/roles"),
            "https://tenant.auth0.com/",
            RESOURCE,
            "sub",
        ),
        _ => (IssuerProfile::okta(), "https://org.okta.com/oauth2/default", RESOURCE, "uid"),
    };
    (if prefixed { profile.with_scope_prefix(PREFIX) } else { profile }, issuer, audience, subject)
}

fn sign(header: &Value, claims: &Value) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &keys().signing, Algorithm::ES256).expect("signing");
    format!("{input}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(Value::Object(mut claims)) = serde_json::from_slice::<Value>(rest) else { return };
    let prefixed = mode & 4 != 0;
    let (profile, issuer, audience, subject_claim) = preset(mode, prefixed);
    if mode & 32 == 0 {
        claims.insert("iss".into(), json!(issuer));
        claims.insert("aud".into(), json!(audience));
        claims.insert("exp".into(), json!(NOW + 600));
        claims.insert("iat".into(), json!(NOW));
    }
    let mut header = json!({"alg": "ES256", "kid": "es-1"});
    match (mode >> 3) & 3 {
        0 => {}
        1 => header["typ"] = json!("JWT"),
        2 => header["typ"] = json!("at+jwt"),
        _ => header["typ"] = json!("id_token+jwt"),
    }
    let token = sign(&header, &Value::Object(claims.clone()));
    let verify = || {
        mcp_guard::fuzzing::verify_with_profile(
            &keys().jwks,
            &token,
            &profile,
            issuer,
            RESOURCE,
            UnixTime::from_secs(NOW),
        )
    };
    let first = verify();
    assert_eq!(first, verify(), "the same token mapped two ways");
    match first {
        Ok(ctx) => accepted(&ctx, &claims, issuer, subject_claim, prefixed),
        Err(r) => {
            assert_ne!(r.reason, Reason::Internal, "a preset refused its own issuer: {}", r.description);
            check_text(&r.description, "rejection", &claims);
        }
    }
});

fn accepted(
    ctx: &mcp_guard::AuthContext,
    claims: &Map<String, Value>,
    issuer: &str,
    subject_claim: &str,
    prefixed: bool,
) {
    assert_eq!(&*ctx.issuer, issuer);
    let client = ctx.client_id.as_str();
    assert!(claims.values().any(|v| v.as_str() == Some(client)), "client {client} is none of the claims: {claims:?}");
    if ctx.is_machine() {
        assert_eq!(ctx.subject, UserId::for_client(&ctx.client_id), "{claims:?}");
    } else {
        assert!(ctx.subject.is_user(), "{claims:?}");
        assert_eq!(claims.get(subject_claim).and_then(Value::as_str), Some(ctx.subject.as_str()), "{claims:?}");
    }
    assert!(ctx.scopes.iter().count() <= oauth_core::MAX_SCOPES);
    for scope in ctx.scopes.iter() {
        assert!(oauth_core::Scope::parse(scope.as_str()).is_ok(), "{scope:?}");
        assert!(!prefixed || scope.as_str().starts_with(PREFIX), "{scope:?} lacks the prefix");
    }
    assert!(ctx.token_id.chars().count() <= 256, "a {} character token id", ctx.token_id.len());
    assert!(ctx.grant_id.is_none(), "no preset reads a grant");
}
