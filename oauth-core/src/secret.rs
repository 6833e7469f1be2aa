//! Secrets: client secrets, authorization codes, refresh tokens and PKCE verifiers.
//!
//! A secret redacts itself in `Debug`, compares in constant time, and is stored only as a
//! [`SecretHash`] (SHA-256) or, for client secrets, a password hash. The clear value exists in
//! memory only between generation and the response that carries it.
//!
//! ```
//! use oauth_core::secret::AuthorizationCode;
//!
//! let code = AuthorizationCode::generate();
//! assert_eq!(format!("{code:?}"), "AuthorizationCode([redacted])");
//! assert_eq!(code.hash(), AuthorizationCode::new(code.secret().to_owned()).hash());
//! ```

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// Number of random bytes in every generated secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// Longest secret accepted from a client; longer input is refused before any hashing.
pub const MAX_SECRET_LEN: usize = 512;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident $(, $derive:ident)*) => {
        $(#[$doc])*
        $(#[derive($derive)])*
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value received from a client or read from configuration.
            pub fn new(value: String) -> Self {
                Self(value)
            }

            /// The clear value.
            ///
            /// # Security
            /// The value is a credential: never log it, put it in an error, or store it.
            /// Store [`Self::hash`] instead.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// The SHA-256 hash under which this secret is stored and looked up.
            pub fn hash(&self) -> SecretHash {
                SecretHash::of(self.0.as_bytes())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                ct_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}
    };
}

secret_type! {
    /// A client secret (RFC 6749 2.3.1). Stored as an Argon2id password hash.
    ClientSecret
}

secret_type! {
    /// An authorization code (RFC 6749 4.1.2): single use, short-lived, stored as a SHA-256 hash.
    /// Not `Clone`: there is one of it.
    AuthorizationCode
}

secret_type! {
    /// A refresh token (RFC 6749 1.5): rotated on use, stored as a SHA-256 hash. Not `Clone`.
    RefreshToken
}

secret_type! {
    /// A PKCE code verifier (RFC 7636 4.1), received at the token endpoint. Not `Clone`.
    CodeVerifier
}

impl ClientSecret {
    /// A fresh random client secret.
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl AuthorizationCode {
    /// A fresh random authorization code.
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl RefreshToken {
    /// A fresh random refresh token.
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// The successor of this token in a rotation: `HMAC-SHA256(self, label ‖ generation)`.
    ///
    /// Deriving the successor from the presented token lets a retry within the grace window
    /// receive the same successor without the server ever storing a token in clear; only the
    /// holder of this token can compute it.
    pub fn successor(&self, label: &str, generation: u64) -> RefreshToken {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.0.as_bytes());
        let mut msg = Vec::with_capacity(label.len() + 9);
        msg.extend_from_slice(label.as_bytes());
        msg.push(0);
        msg.extend_from_slice(&generation.to_be_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, &msg);
        RefreshToken(URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }
}

impl CodeVerifier {
    /// A fresh random verifier (43 characters, the RFC 7636 minimum length at full entropy).
    pub fn generate() -> Self {
        Self(random_token())
    }
}

/// The SHA-256 hash of a secret: the only form in which codes and refresh tokens are stored.
#[derive(Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From a raw digest, as read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lower-case hex, 64 characters: the storage form.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the storage form written by [`Self::to_hex`].
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }

    /// The first 8 hex digits: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", self.short())
    }
}

impl fmt::Display for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl serde::Serialize for SecretHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for SecretHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `n` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system RNG failing is unrecoverable: no secret may be issued without it.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut out).expect("the operating system's random number generator failed");
    out
}

/// 256 random bits, base64url without padding (43 characters).
pub(crate) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>())
}

/// A random identifier of `N` bytes, base64url without padding.
pub(crate) fn random_id<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// Hashes a low-entropy secret (a password, an operator-chosen client secret) with Argon2id
/// and a random salt, in PHC string format.
pub fn hash_password(password: &str) -> Result<String, Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| Error::Crypto(format!("salt encoding: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("password hashing: {e}")))
}

/// Checks `password` against a PHC string from [`hash_password`]. A malformed hash is `false`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    if password.len() > MAX_SECRET_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_redact_and_compare() {
        let a = ClientSecret::new("s3cret".into());
        assert_eq!(format!("{a:?}"), "ClientSecret([redacted])");
        assert_eq!(a, ClientSecret::new("s3cret".into()));
        assert_ne!(a, ClientSecret::new("s3cre".into()));
        assert_ne!(a, ClientSecret::new("s3creT".into()));
    }

    #[test]
    fn generated_secrets_are_distinct_and_256_bit() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.secret().len(), 43);
    }

    #[test]
    fn hash_is_sha256_and_roundtrips_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let h = SecretHash::of(b"abc");
        assert_eq!(h.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
        assert_eq!(h.short(), "ba7816bf");
    }

    #[test]
    fn successor_is_deterministic_and_generation_bound() {
        let t = RefreshToken::new("token".into());
        assert_eq!(t.successor("g", 2), t.successor("g", 2));
        assert_ne!(t.successor("g", 2), t.successor("g", 3));
        assert_ne!(t.successor("g", 2), t.successor("h", 2));
        assert_ne!(t.successor("g", 2), RefreshToken::new("other".into()).successor("g", 2));
    }

    #[test]
    fn password_hash_verifies_only_the_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
