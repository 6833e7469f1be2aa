//! JWT access tokens per RFC 9068.
//! Documented in the crate docs, "JWT access tokens".

use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::{UnixTime, duration_secs};
use crate::error::Error;
use crate::events::Reason;
use crate::jwks::VerifyingKeys;
use crate::keys::{KeyResolver, KeySet};
use crate::params::clip;

/// Longest token accepted for verification, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The JOSE `typ` of RFC 9068 access tokens.
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// `aud`: one string or an array (RFC 7519 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` contains `value`.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Self::One(a) => a == value,
            Self::Many(v) => v.iter().any(|a| a == value),
        }
    }

    /// The audiences, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::One(a) => a.clone(),
            Self::Many(v) => v.join(", "),
        }
    }
}

/// The claims of an RFC 9068 access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user, or `client:<client_id>` for a machine client's token
    /// ([`crate::types::UserId::for_client`]).
    pub sub: String,
    /// Audience: the canonical resource.
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    #[serde(default)]
    pub scope: String,
    /// When the user signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The grant this token belongs to (revoking the grant deactivates the token at
    /// introspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// `true` on a machine client's token (`client_credentials`): no person is behind it. Absent
    /// on users' tokens. Resource servers refuse these unless they opt in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub machine: bool,
}

impl AccessTokenClaims {
    /// Claims for a token issued now with a fresh `jti`.
    pub fn new(
        iss: impl Into<String>,
        sub: impl Into<String>,
        aud: impl Into<String>,
        client_id: impl Into<String>,
        scope: impl Into<String>,
        now: UnixTime,
        ttl: Duration,
    ) -> Self {
        Self {
            iss: iss.into(),
            sub: sub.into(),
            aud: Audience::One(aud.into()),
            exp: now.plus(ttl).as_secs(),
            iat: now.as_secs(),
            nbf: None,
            jti: crate::secret::random_id::<16>(),
            client_id: client_id.into(),
            scope: scope.into(),
            auth_time: None,
            gid: None,
            machine: false,
        }
    }

    /// The scopes as a list.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }
}

/// Signs claims with the key set's active key, `typ: at+jwt`.
pub fn mint(claims: &AccessTokenClaims, keys: &KeySet) -> Result<String, Error> {
    let (kid, alg, key) = keys.signing_key();
    let mut header = Header::new(alg.jwt_algorithm());
    header.typ = Some(ACCESS_TOKEN_TYP.into());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key)
        .map_err(|e| Error::Crypto(format!("signing an access token failed: {e}")))
}

/// What a verifier expects of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenValidation {
    /// The expected `iss`, exactly.
    pub issuer: String,
    /// The canonical resource that `aud` must contain.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default: 60 s.
    pub leeway: Duration,
}

impl TokenValidation {
    /// Expects tokens from `issuer` for `audience`, with a 60 s leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self { issuer: issuer.into(), audience: audience.into(), leeway: Duration::from_secs(60) }
    }

    /// Sets the leeway. Default: 60 s. A larger value accepts tokens longer after expiry.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed JWT (or too long).
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    /// The header's `typ` is not `at+jwt` (its first 64 characters).
    #[error("the token's typ is {0:?}, expected \"at+jwt\" (RFC 9068)")]
    WrongType(Option<String>),
    /// The header's `typ` is not one the issuer's profile accepts (its first 64 characters).
    #[error("the token's typ is {found:?}, expected {accepted}")]
    TypeNotAccepted {
        /// The header's `typ`, if any.
        found: Option<String>,
        /// What is accepted, for the message.
        accepted: String,
    },
    /// No key with this `kid` (its first 64 characters).
    #[error("the token was signed with an unknown key (kid {0:?})")]
    UnknownKey(Option<String>),
    /// The header's `alg` is not the key's algorithm.
    #[error("the token's alg {found} does not match its key's algorithm {expected}")]
    WrongAlgorithm {
        /// The header's algorithm.
        found: String,
        /// The key's algorithm.
        expected: String,
    },
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Expired.
    #[error("the token expired at {exp} (now {now})")]
    Expired {
        /// `exp`.
        exp: i64,
        /// Now.
        now: i64,
    },
    /// Not yet valid.
    #[error("the token is not valid before {0}")]
    NotYetValid(i64),
    /// Wrong issuer.
    #[error("the token was issued by {found}, expected {expected}")]
    IssuerMismatch {
        /// `iss`.
        found: String,
        /// Expected issuer.
        expected: String,
    },
    /// Wrong audience.
    #[error("the token is for {found}, but this resource is {expected}")]
    AudienceMismatch {
        /// `aud`.
        found: String,
        /// The canonical resource.
        expected: String,
    },
}

impl VerifyError {
    /// The flow-event reason for this failure.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Malformed(_) | Self::WrongType(_) | Self::TypeNotAccepted { .. } => Reason::TokenMalformed,
            Self::UnknownKey(_) | Self::WrongAlgorithm { .. } | Self::BadSignature => Reason::TokenSignatureInvalid,
            Self::Expired { .. } | Self::NotYetValid(_) => Reason::TokenExpired,
            Self::IssuerMismatch { .. } => Reason::TokenIssuerMismatch,
            Self::AudienceMismatch { .. } => Reason::TokenAudienceMismatch,
        }
    }
}

impl KeySet {
    /// Verifies an access token signed by one of these keys at `now`.
    pub fn verify(
        &self,
        token: &str,
        validation: &TokenValidation,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, VerifyError> {
        verify(token, validation, self, now)
    }
}

impl VerifyingKeys {
    /// Verifies an access token against these keys at `now`.
    pub fn verify(
        &self,
        token: &str,
        validation: &TokenValidation,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, VerifyError> {
        verify(token, validation, self, now)
    }
}

/// Verifies an access token at `now` ([`KeySet::verify`], [`VerifyingKeys::verify`]).
pub(crate) fn verify(
    token: &str,
    validation: &TokenValidation,
    keys: &dyn KeyResolver,
    now: UnixTime,
) -> Result<AccessTokenClaims, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
    }
    let header = jsonwebtoken::decode_header(token).map_err(malformed)?;
    let typ_ok = header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt"));
    if !typ_ok {
        return Err(VerifyError::WrongType(header.typ.as_deref().map(clip)));
    }
    let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey(None))?;
    let (alg, key) = keys.resolve(kid).ok_or_else(|| VerifyError::UnknownKey(Some(clip(kid))))?;
    if alg != header.alg {
        return Err(VerifyError::WrongAlgorithm { found: format!("{:?}", header.alg), expected: format!("{alg:?}") });
    }

    // jsonwebtoken checks the signature only; the claims are checked below against the
    // injected clock, each with its own error.
    let v = signature_only(alg);
    let data = jsonwebtoken::decode::<AccessTokenClaims>(token, key, &v).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
        _ => malformed(e),
    })?;
    let claims = data.claims;

    let leeway = duration_secs(validation.leeway);
    let now = now.as_secs();
    if claims.exp.saturating_add(leeway) <= now {
        return Err(VerifyError::Expired { exp: claims.exp, now });
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(VerifyError::NotYetValid(nbf));
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(VerifyError::NotYetValid(claims.iat));
    }
    if claims.iss != validation.issuer {
        return Err(VerifyError::IssuerMismatch { found: claims.iss, expected: validation.issuer.clone() });
    }
    if !claims.aud.contains(&validation.audience) {
        return Err(VerifyError::AudienceMismatch {
            found: claims.aud.describe(),
            expected: validation.audience.clone(),
        });
    }
    Ok(claims)
}

/// What a JWT access token of another authorization server must be, for
/// [`VerifyingKeys::verify_jwt`]: the checks of [`VerifyingKeys::verify`] relaxed only where an
/// identity provider's default tokens differ from RFC 9068 and relaxing is safe (the header's
/// `typ`, a missing `kid`). The issuer, the audience, the expiry and an asymmetric signature of
/// the key's own algorithm are always checked; `none` and HMAC never verify (the keys come from
/// a JWKS, and [`VerifyingKeys`] keeps asymmetric keys only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtRules {
    /// Accepted `iss` values, each compared exactly. Never empty.
    pub issuers: Vec<String>,
    /// Accepted audiences: `aud` must contain one of them, compared exactly. Never empty.
    pub audiences: Vec<String>,
    /// Accepted header `typ` values, compared ignoring ASCII case (RFC 7515 4.1.9). Default:
    /// `at+jwt` and `application/at+jwt`.
    pub typs: Vec<String>,
    /// Whether a token without a `typ` is accepted. Default: no.
    pub typ_optional: bool,
    /// Whether a token without a `kid` is accepted, verified with the one key of its `alg` in
    /// the set (refused when the set has several). Default: no.
    pub kid_optional: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default: 60 s.
    pub leeway: Duration,
}

impl JwtRules {
    /// Tokens of `issuer` for `audience`, with RFC 9068's `typ` and a `kid` required.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuers: vec![issuer.into()],
            audiences: vec![audience.into()],
            typs: vec![ACCESS_TOKEN_TYP.into(), "application/at+jwt".into()],
            typ_optional: false,
            kid_optional: false,
            leeway: Duration::from_secs(60),
        }
    }

    /// Also accepts tokens issued by `issuer`, compared exactly. Each one added is an issuer
    /// whose tokens this resource trusts as much as the first's.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Also accepts tokens whose `aud` contains `audience`, compared exactly. Every token the
    /// issuer mints for that audience then opens this resource.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The accepted header `typ` values, replacing the default (`at+jwt`). A generic value
    /// such as `JWT` also matches ID tokens: the audience check is then what keeps them out.
    #[must_use]
    pub fn with_typs<I, S>(mut self, typs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.typs = typs.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts tokens without a `typ`. Default: refused.
    #[must_use]
    pub fn with_optional_typ(mut self, optional: bool) -> Self {
        self.typ_optional = optional;
        self
    }

    /// Accepts tokens without a `kid` when the key set has one key of the token's `alg`.
    /// Default: refused.
    #[must_use]
    pub fn with_optional_kid(mut self, optional: bool) -> Self {
        self.kid_optional = optional;
        self
    }

    /// Sets the leeway. Default: 60 s. A larger value accepts tokens longer after expiry.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
}

/// A JWT whose signature, header and registered claims ([`JwtRules`]) checked out: the checked
/// values, and every claim as the issuer wrote it, for the caller to map.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedJwt {
    /// The header's `typ`, if any.
    pub typ: Option<String>,
    /// `iss`: one of the accepted issuers.
    pub iss: String,
    /// `aud`: contains one of the accepted audiences.
    pub aud: Audience,
    /// `exp`, in the future (within the leeway).
    pub exp: i64,
    /// Every claim of the payload, the checked ones included.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl VerifiedJwt {
    /// The string claim `name`, if present and a string.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(serde_json::Value::as_str)
    }
}

impl VerifyingKeys {
    /// Verifies a JWT access token of another authorization server against these keys at
    /// `now`, as `rules` say; the claims beyond the registered ones are the caller's to read.
    /// The strict path for RFC 9068 tokens is [`Self::verify`].
    pub fn verify_jwt(&self, token: &str, rules: &JwtRules, now: UnixTime) -> Result<VerifiedJwt, VerifyError> {
        verify_jwt(token, rules, self, now)
    }
}

fn verify_jwt(token: &str, rules: &JwtRules, keys: &VerifyingKeys, now: UnixTime) -> Result<VerifiedJwt, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
    }
    let header = jsonwebtoken::decode_header(token).map_err(malformed)?;
    let typ_ok = match header.typ.as_deref() {
        None => rules.typ_optional,
        Some(t) => rules.typs.iter().any(|a| a.eq_ignore_ascii_case(t)),
    };
    if !typ_ok {
        let mut accepted = rules.typs.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(" or ");
        if rules.typ_optional {
            accepted.push_str(" or none");
        }
        return Err(VerifyError::TypeNotAccepted { found: header.typ.as_deref().map(clip), accepted });
    }
    let (alg, key) = match header.kid.as_deref() {
        Some(kid) => keys.resolve(kid).ok_or_else(|| VerifyError::UnknownKey(Some(clip(kid))))?,
        None if rules.kid_optional => keys.only_key_for(header.alg).ok_or(VerifyError::UnknownKey(None))?,
        None => return Err(VerifyError::UnknownKey(None)),
    };
    if alg != header.alg {
        return Err(VerifyError::WrongAlgorithm { found: format!("{:?}", header.alg), expected: format!("{alg:?}") });
    }
    let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &signature_only(alg))
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
            _ => malformed(e),
        })?;
    let claims = data.claims;
    let number = |name: &str| -> Result<Option<i64>, VerifyError> {
        match claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| VerifyError::Malformed(format!("the token's {name} is not a number of seconds"))),
        }
    };
    let exp = number("exp")?.ok_or_else(|| VerifyError::Malformed("the token has no exp".into()))?;
    let leeway = duration_secs(rules.leeway);
    let now = now.as_secs();
    if exp.saturating_add(leeway) <= now {
        return Err(VerifyError::Expired { exp, now });
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = number(name)?
            && t > now.saturating_add(leeway)
        {
            return Err(VerifyError::NotYetValid(t));
        }
    }
    let iss = claims.get("iss").and_then(serde_json::Value::as_str).unwrap_or_default();
    if !rules.issuers.iter().any(|i| i == iss) {
        let found = if iss.is_empty() { "no issuer".to_owned() } else { clip(iss) };
        return Err(VerifyError::IssuerMismatch { found, expected: rules.issuers.join(" or ") });
    }
    let aud = match claims.get("aud") {
        Some(v) => serde_json::from_value::<Audience>(v.clone())
            .map_err(|_| VerifyError::Malformed("the token's aud is not a string or an array of strings".into()))?,
        None => Audience::Many(Vec::new()),
    };
    if !rules.audiences.iter().any(|a| aud.contains(a)) {
        let found = aud.describe();
        return Err(VerifyError::AudienceMismatch {
            found: if found.is_empty() { "no audience".into() } else { found.chars().take(256).collect() },
            expected: rules.audiences.join(" or "),
        });
    }
    Ok(VerifiedJwt { typ: header.typ, iss: iss.to_owned(), aud, exp, claims })
}

/// A decoding failure. jsonwebtoken's message quotes what the token holds (an unknown `alg`,
/// say) and becomes the guard's `error_description`: it is clipped, and its control characters
/// are escaped.
fn malformed(e: jsonwebtoken::errors::Error) -> VerifyError {
    VerifyError::Malformed(crate::events::escape_detail(e.to_string().chars().take(256).collect()))
}

/// A jsonwebtoken validation that checks the signature (and `alg`) only: every JWT this crate
/// reads has its claims checked by the caller, against the injected clock and with an error of
/// its own for each, which jsonwebtoken's built-in checks (on the system clock) cannot give.
pub(crate) fn signature_only(alg: jsonwebtoken::Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{SigningAlgorithm, StoredKey};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const ISS: &str = "https://as.example";
    const AUD: &str = "https://mcp.example/mcp";

    fn setup(alg: SigningAlgorithm) -> (KeySet, StoredKey, UnixTime) {
        let now = UnixTime::from_secs(1_700_000_000);
        let k = StoredKey::generate(alg, now).unwrap();
        (KeySet::load(std::slice::from_ref(&k), alg).unwrap(), k, now)
    }

    fn claims(now: UnixTime) -> AccessTokenClaims {
        AccessTokenClaims::new(ISS, "user-1", AUD, "client-1", "mcp:tools", now, Duration::from_secs(600))
    }

    #[test]
    fn minted_tokens_verify_with_jsonwebtoken_directly() {
        let (keys, _, now) = setup(SigningAlgorithm::Es256);
        let token = mint(&claims(now), &keys).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwks = keys.jwks();
        let jwk = jwks.0.find(header.kid.as_deref().unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[AUD]);
        v.set_issuer(&[ISS]);
        v.validate_exp = false; // fixed clock in the past
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap();
        for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"] {
            assert!(data.claims.get(claim).is_some(), "missing {claim}");
        }
        // And with the wrong audience jsonwebtoken itself refuses it.
        v.set_audience(&["https://other.example/mcp"]);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_err());
    }

    #[test]
    fn every_algorithm_roundtrips() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
            SigningAlgorithm::DangerousHs256,
        ] {
            let (keys, _, now) = setup(alg);
            let token = mint(&claims(now), &keys).unwrap();
            let c = verify(&token, &TokenValidation::new(ISS, AUD), &keys, now).unwrap();
            assert_eq!(c.client_id, "client-1", "{alg:?}");
        }
    }

    #[test]
    fn refusals() {
        let (keys, stored, now) = setup(SigningAlgorithm::Es256);
        let v = TokenValidation::new(ISS, AUD);
        let good = mint(&claims(now), &keys).unwrap();

        let wrong_aud = TokenValidation::new(ISS, "https://other.example/mcp");
        assert!(matches!(verify(&good, &wrong_aud, &keys, now), Err(VerifyError::AudienceMismatch { .. })));
        let trailing = TokenValidation::new(ISS, format!("{AUD}/"));
        assert!(matches!(verify(&good, &trailing, &keys, now), Err(VerifyError::AudienceMismatch { .. })));

        let wrong_iss = TokenValidation::new("https://evil.example", AUD);
        assert!(matches!(verify(&good, &wrong_iss, &keys, now), Err(VerifyError::IssuerMismatch { .. })));

        let later = now.plus(Duration::from_secs(600 + 61));
        assert!(matches!(verify(&good, &v, &keys, later), Err(VerifyError::Expired { .. })));
        // Within the leeway it still verifies.
        assert!(verify(&good, &v, &keys, now.plus(Duration::from_secs(600 + 30))).is_ok());

        // A changed signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        sig[10] ^= 1;
        parts[2] = URL_SAFE_NO_PAD.encode(sig);
        assert_eq!(verify(&parts.join("."), &v, &keys, now), Err(VerifyError::BadSignature));

        // A changed payload under the original signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut c = claims(now);
        c.sub = "admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(verify(&parts.join("."), &v, &keys, now), Err(VerifyError::BadSignature));

        // alg: none.
        let kid = &stored.kid;
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#));
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now)).unwrap());
        assert!(matches!(verify(&format!("{header}.{body}."), &v, &keys, now), Err(VerifyError::Malformed(_))));

        // Algorithm confusion: HS256 keyed with the public key.
        let jwk = keys.jwks().0.keys[0].clone();
        let public_bytes = serde_json::to_vec(&jwk).unwrap();
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        let forged =
            jsonwebtoken::encode(&h, &claims(now), &jsonwebtoken::EncodingKey::from_secret(&public_bytes)).unwrap();
        assert!(matches!(verify(&forged, &v, &keys, now), Err(VerifyError::WrongAlgorithm { .. })));

        // Not an access token (typ JWT, e.g. an ID token).
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(kid.clone());
        let (_, _, ek) = keys.signing_key();
        let id_token = jsonwebtoken::encode(&h, &claims(now), ek).unwrap();
        assert!(matches!(verify(&id_token, &v, &keys, now), Err(VerifyError::WrongType(_))));

        // A key this server does not have.
        let (other_keys, _, _) = setup(SigningAlgorithm::Es256);
        let foreign = mint(&claims(now), &other_keys).unwrap();
        assert!(matches!(verify(&foreign, &v, &keys, now), Err(VerifyError::UnknownKey(_))));

        assert!(matches!(verify("garbage", &v, &keys, now), Err(VerifyError::Malformed(_))));
        assert!(matches!(verify(&"a".repeat(MAX_TOKEN_LEN + 1), &v, &keys, now), Err(VerifyError::Malformed(_))));

        // A header whose alg quotes a control character. Found by the jwt fuzz target: the
        // description, which the guard sends to the caller, carried it raw.
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA\u007f","typ":"at+jwt","kid":"{kid}"}}"#));
        let e = verify(&format!("{header}.{body}.c2ln"), &v, &keys, now).unwrap_err();
        assert!(matches!(e, VerifyError::Malformed(_)), "{e}");
        assert!(e.to_string().contains("EdDSA\\u{7f}") && !e.to_string().chars().any(char::is_control), "{e}");
        // And a long one is not echoed whole, escaped six times its size (found by the same
        // target, for a 226-byte input); nor a long kid or typ.
        let long = "\u{7f}".repeat(4000);
        let header = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": long, "typ": "at+jwt", "kid": kid}).to_string());
        let e = verify(&format!("{header}.{body}.c2ln"), &v, &keys, now).unwrap_err();
        assert!(matches!(e, VerifyError::Malformed(_)) && e.to_string().len() < 2048, "{} bytes", e.to_string().len());
        for (typ, kid) in [(long.as_str(), kid.as_str()), ("at+jwt", long.as_str())] {
            let header =
                URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "ES256", "typ": typ, "kid": kid}).to_string());
            let e = verify(&format!("{header}.{body}.c2ln"), &v, &keys, now).unwrap_err();
            assert!(matches!(e, VerifyError::WrongType(_) | VerifyError::UnknownKey(_)), "{e}");
            assert!(e.to_string().len() < 2048, "{} bytes", e.to_string().len());
        }

        // Issued in the future.
        let future = mint(&claims(now.plus(Duration::from_secs(3600))), &keys).unwrap();
        assert!(matches!(verify(&future, &v, &keys, now), Err(VerifyError::NotYetValid(_))));
    }

    /// A token with `header` fields and `claims`, signed with `keys`' active key.
    fn signed(keys: &KeySet, typ: Option<&str>, kid: bool, claims: &serde_json::Value) -> String {
        let (k, alg, key) = keys.signing_key();
        let mut h = Header::new(alg.jwt_algorithm());
        h.typ = typ.map(str::to_owned);
        h.kid = kid.then(|| k.to_owned());
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    #[test]
    fn rules_relax_the_header_only_where_told_and_always_check_issuer_audience_and_expiry() {
        let (keys, stored, now) = setup(SigningAlgorithm::Es256);
        let remote = VerifyingKeys::from_jwks(&keys.jwks());
        let n = now.as_secs();
        let body = serde_json::json!({"iss": ISS, "aud": [AUD, "https://as.example/userinfo"], "exp": n + 600, "iat": n, "azp": "c"});
        let strict = JwtRules::new(ISS, AUD);
        let lenient = JwtRules::new(ISS, AUD).with_typs(["JWT", "at+jwt"]).with_optional_typ(true);

        // typ: RFC 9068's by default; `JWT` or none only when the rules say so.
        let jwt = signed(&keys, Some("JWT"), true, &body);
        let untyped = signed(&keys, None, true, &body);
        assert!(matches!(remote.verify_jwt(&jwt, &strict, now), Err(VerifyError::TypeNotAccepted { .. })));
        assert!(matches!(remote.verify_jwt(&untyped, &strict, now), Err(VerifyError::TypeNotAccepted { .. })));
        let v = remote.verify_jwt(&jwt, &lenient, now).unwrap();
        assert_eq!((v.iss.as_str(), v.exp, v.str_claim("azp")), (ISS, n + 600, Some("c")));
        assert!(remote.verify_jwt(&untyped, &lenient, now).is_ok());
        assert!(remote.verify_jwt(&signed(&keys, Some("AT+JWT"), true, &body), &strict, now).is_ok());

        // kid: required unless optional, and then only with one key of the alg in the set.
        let kidless = signed(&keys, Some("at+jwt"), false, &body);
        assert_eq!(remote.verify_jwt(&kidless, &strict, now), Err(VerifyError::UnknownKey(None)));
        assert!(remote.verify_jwt(&kidless, &strict.clone().with_optional_kid(true), now).is_ok());
        let second = StoredKey::generate(SigningAlgorithm::Es256, now).unwrap();
        let two = KeySet::load(&[stored.clone(), second], SigningAlgorithm::Es256).unwrap();
        let two = VerifyingKeys::from_jwks(&two.jwks());
        assert_eq!(
            two.verify_jwt(&kidless, &strict.clone().with_optional_kid(true), now),
            Err(VerifyError::UnknownKey(None))
        );

        // The issuer: exactly one of those given.
        let other_iss = serde_json::json!({"iss": "https://as.example/", "aud": AUD, "exp": n + 600});
        let t = signed(&keys, Some("at+jwt"), true, &other_iss);
        assert!(matches!(remote.verify_jwt(&t, &strict, now), Err(VerifyError::IssuerMismatch { .. })));
        assert!(remote.verify_jwt(&t, &strict.clone().with_issuer("https://as.example/"), now).is_ok());
        let no_iss = signed(&keys, Some("at+jwt"), true, &serde_json::json!({"aud": AUD, "exp": n + 600}));
        let e = remote.verify_jwt(&no_iss, &strict, now).unwrap_err();
        assert!(e.to_string().contains("no issuer"), "{e}");

        // The audience: the resource or an audience given, never absent.
        let guid = serde_json::json!({"iss": ISS, "aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "exp": n + 600});
        let t = signed(&keys, Some("at+jwt"), true, &guid);
        let e = remote.verify_jwt(&t, &strict, now).unwrap_err();
        assert!(matches!(e, VerifyError::AudienceMismatch { .. }) && e.to_string().contains(AUD), "{e}");
        let with_guid = strict.clone().with_audience("6e74172b-be56-4843-9ff4-e66a39bb12e3");
        assert!(remote.verify_jwt(&t, &with_guid, now).is_ok());
        let no_aud = signed(&keys, Some("at+jwt"), true, &serde_json::json!({"iss": ISS, "exp": n + 600}));
        let e = remote.verify_jwt(&no_aud, &with_guid, now).unwrap_err();
        assert!(e.to_string().contains("no audience"), "{e}");

        // Time: exp required, nbf and iat in the future refused, with the leeway.
        let no_exp = signed(&keys, Some("at+jwt"), true, &serde_json::json!({"iss": ISS, "aud": AUD}));
        assert!(matches!(remote.verify_jwt(&no_exp, &strict, now), Err(VerifyError::Malformed(_))));
        let t = signed(&keys, Some("at+jwt"), true, &body);
        assert!(matches!(
            remote.verify_jwt(&t, &strict, now.plus(Duration::from_secs(661))),
            Err(VerifyError::Expired { .. })
        ));
        for claim in ["nbf", "iat"] {
            let mut early = body.clone();
            early[claim] = serde_json::json!(n + 3600);
            let t = signed(&keys, Some("at+jwt"), true, &early);
            assert!(matches!(remote.verify_jwt(&t, &strict, now), Err(VerifyError::NotYetValid(_))), "{claim}");
        }

        // Signatures: alg none, and HS256 keyed with the public key, never verify.
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, stored.kid));
        let payload = URL_SAFE_NO_PAD.encode(body.to_string());
        assert!(matches!(
            remote.verify_jwt(&format!("{header}.{payload}."), &lenient, now),
            Err(VerifyError::Malformed(_))
        ));
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("JWT".into());
        h.kid = Some(stored.kid);
        let public = serde_json::to_vec(&keys.jwks().0.keys[0]).unwrap();
        let forged = jsonwebtoken::encode(&h, &body, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
        assert!(matches!(remote.verify_jwt(&forged, &lenient, now), Err(VerifyError::WrongAlgorithm { .. })));
        h.kid = None;
        let forged = jsonwebtoken::encode(&h, &body, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
        let kid_optional = lenient.with_optional_kid(true);
        assert_eq!(remote.verify_jwt(&forged, &kid_optional, now), Err(VerifyError::UnknownKey(None)));
    }
}
