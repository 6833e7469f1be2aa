//! Secrets.
//! Documented in the crate docs, "Secrets".

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// Number of random bytes in every generated secret (256 bits).
pub(crate) const SECRET_BYTES: usize = 32;

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
    /// A client secret (RFC 6749 2.3.1). Stored as a keyed hash under the server-held pepper.
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
    /// A token presented for revocation or introspection (RFC 7009, RFC 7662): an access or a
    /// refresh token, not yet known which. Not `Clone`.
    PresentedToken
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

    /// The successor of this token in a rotation:
    /// `HMAC-SHA256(key, "refresh successor v2" ‖ 0 ‖ len(grant) ‖ grant ‖ generation ‖ self)`.
    ///
    /// A retry within the grace window receives the same successor without the server ever
    /// storing a token in clear. Computing it takes both the server-held `key` (in the key
    /// store, never sent anywhere) and this token in clear (the store holds only its hash): a
    /// holder of old tokens and of the grant id cannot derive a later token, and neither can a
    /// reader of the database.
    pub fn successor(&self, key: &ServerSecret, grant: &str, generation: u64) -> RefreshToken {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key.0);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        ctx.update(b"refresh successor v2\0");
        ctx.update(&(grant.len() as u64).to_be_bytes());
        ctx.update(grant.as_bytes());
        ctx.update(&generation.to_be_bytes());
        ctx.update(self.0.as_bytes());
        RefreshToken(URL_SAFE_NO_PAD.encode(ctx.sign().as_ref()))
    }
}

/// A 256-bit key that only this server holds, kept in the key store under a name so that it
/// survives restarts and every replica uses the same one (see
/// [`KeyStore::server_secret`](crate::store::KeyStore::server_secret)). Redacted in `Debug`.
#[derive(Clone)]
pub struct ServerSecret([u8; SECRET_BYTES]);

impl ServerSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Self(random_bytes::<SECRET_BYTES>())
    }

    /// From stored bytes; `None` unless exactly 32.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The raw bytes, for storage.
    ///
    /// # Security
    /// A key: never log it or send it anywhere but the key store.
    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret([redacted])")
    }
}

impl CodeVerifier {
    /// A fresh random verifier (43 characters, the RFC 7636 minimum length at full entropy).
    pub fn generate() -> Self {
        Self(random_token())
    }
}

/// How a client secret is stored: `hmac-sha256$` and 64 hex digits of
/// `HMAC-SHA256(pepper, secret)`, the pepper being a [`ServerSecret`] in the key store. A
/// generated secret has 256 bits of entropy, so this is as strong as a password hash against a
/// stolen database and costs a microsecond instead of tens of milliseconds per request. Records
/// written before it hold an Argon2id PHC string; [`ClientSecretHash::verify`] still accepts
/// those and says that the record should be rehashed.
pub(crate) struct ClientSecretHash;

/// The outcome of checking a client secret against its stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum SecretCheck {
    /// The secret matches.
    Valid,
    /// The secret matches a legacy Argon2id hash; store this new hash in its place.
    ValidRehash(String),
    /// The secret does not match (or the stored hash is malformed).
    Invalid,
}

const CLIENT_SECRET_PREFIX: &str = "hmac-sha256$";

impl ClientSecretHash {
    /// The storage form of `secret` under `pepper`.
    pub(crate) fn of(secret: &str, pepper: &ServerSecret) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &pepper.0);
        let tag = aws_lc_rs::hmac::sign(&key, secret.as_bytes());
        format!("{CLIENT_SECRET_PREFIX}{}", hex(tag.as_ref()))
    }

    /// Checks `secret` against `stored` in constant time. A legacy Argon2id hash is checked on
    /// the blocking pool (see [`verify_password_off_thread`]) and, when it matches, comes back
    /// with its replacement.
    pub(crate) async fn verify(secret: &str, stored: &str, pepper: &ServerSecret) -> SecretCheck {
        if secret.len() > MAX_SECRET_LEN {
            return SecretCheck::Invalid;
        }
        if stored.starts_with(CLIENT_SECRET_PREFIX) {
            return if ct_eq(Self::of(secret, pepper).as_bytes(), stored.as_bytes()) {
                SecretCheck::Valid
            } else {
                SecretCheck::Invalid
            };
        }
        if verify_password_off_thread(secret, stored).await {
            SecretCheck::ValidRehash(Self::of(secret, pepper))
        } else {
            SecretCheck::Invalid
        }
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

/// Most Argon2id computations at once: half the cores, at least one. Each takes ~19 MiB and a
/// core for tens of milliseconds; more at once would only take the cores from every other
/// request, and queue inside the blocking pool with the memory held.
fn password_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
/// How long a password check waits for its turn before giving up (a sign-in flood).
const PASSWORD_HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn password_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(password_hash_concurrency()))
}

/// Runs an Argon2id computation on the blocking pool, at most [`password_hash_concurrency`]
/// at once; `None` if it could not get a turn within [`PASSWORD_HASH_WAIT`].
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let permit = tokio::time::timeout(PASSWORD_HASH_WAIT, password_permits().acquire()).await.ok()?.ok()?;
    let out = tokio::task::spawn_blocking(f).await.ok();
    drop(permit);
    out
}

/// [`hash_password`] on the blocking pool, bounded: what request handlers call.
pub(crate) async fn hash_password_off_thread(password: &str) -> Result<String, Error> {
    let password = password.to_owned();
    off_thread(move || hash_password(&password))
        .await
        .unwrap_or_else(|| Err(Error::Crypto("too many password checks at once; try again".into())))
}

/// [`verify_password`] on the blocking pool, bounded: what request handlers call. `false` also
/// when the check could not get a turn in time.
pub(crate) async fn verify_password_off_thread(password: &str, phc: &str) -> bool {
    if password.len() > MAX_SECRET_LEN || !phc.starts_with("$argon2") {
        return false;
    }
    let (password, phc) = (password.to_owned(), phc.to_owned());
    off_thread(move || verify_password(&password, &phc)).await.unwrap_or(false)
}

/// Hashes a password with Argon2id and a random salt, in PHC string format. Blocks for tens
/// of milliseconds: from async code call [`hash_password_off_thread`].
pub(crate) fn hash_password(password: &str) -> Result<String, Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| Error::Crypto(format!("salt encoding: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("password hashing: {e}")))
}

/// Checks `password` against a PHC string made by this crate. A malformed hash is `false`.
/// Blocks for tens of milliseconds: from async code, run it on the blocking pool.
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
    fn successor_is_deterministic_and_bound_to_key_grant_generation_and_token() {
        let k = ServerSecret::generate();
        let t = RefreshToken::new("token".into());
        assert_eq!(t.successor(&k, "g", 2), t.successor(&k, "g", 2));
        assert_ne!(t.successor(&k, "g", 2), t.successor(&k, "g", 3));
        assert_ne!(t.successor(&k, "g", 2), t.successor(&k, "h", 2));
        assert_ne!(t.successor(&k, "g", 2), RefreshToken::new("other".into()).successor(&k, "g", 2));
        assert_ne!(t.successor(&k, "g", 2), t.successor(&ServerSecret::generate(), "g", 2));
        // Length-prefixed: a grant id cannot absorb the generation bytes.
        assert_ne!(t.successor(&k, "g\0", 2), t.successor(&k, "g", 2));
        assert_eq!(format!("{k:?}"), "ServerSecret([redacted])");
        assert!(ServerSecret::from_bytes(&[0; 31]).is_none());
    }

    #[test]
    fn successor_is_not_the_token_keyed_formula() {
        // The formula a holder of old tokens could compute offline: HMAC(key = token, gid ‖ 0 ‖ gen).
        let t = RefreshToken::new("token".into());
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, t.secret().as_bytes());
        let mut msg = b"g".to_vec();
        msg.push(0);
        msg.extend_from_slice(&1u64.to_be_bytes());
        let offline = URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, &msg).as_ref());
        assert_ne!(t.successor(&ServerSecret::generate(), "g", 1).secret(), offline);
    }

    #[tokio::test]
    async fn client_secrets_are_peppered_hmacs_and_legacy_hashes_migrate() {
        let pepper = ServerSecret::generate();
        let secret = ClientSecret::generate();
        let stored = ClientSecretHash::of(secret.secret(), &pepper);
        assert!(stored.starts_with("hmac-sha256$") && stored.len() == 12 + 64, "{stored}");
        assert!(!stored.contains(secret.secret()));
        assert_eq!(ClientSecretHash::verify(secret.secret(), &stored, &pepper).await, SecretCheck::Valid);
        assert_eq!(ClientSecretHash::verify("wrong", &stored, &pepper).await, SecretCheck::Invalid);
        assert_eq!(
            ClientSecretHash::verify(secret.secret(), &stored, &ServerSecret::generate()).await,
            SecretCheck::Invalid,
            "another server's pepper"
        );
        // A record from before: Argon2id verifies once and comes back with its replacement.
        let legacy = hash_password(secret.secret()).unwrap();
        match ClientSecretHash::verify(secret.secret(), &legacy, &pepper).await {
            SecretCheck::ValidRehash(new) => assert_eq!(new, stored),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(ClientSecretHash::verify("wrong", &legacy, &pepper).await, SecretCheck::Invalid);
        assert_eq!(ClientSecretHash::verify(secret.secret(), "garbage", &pepper).await, SecretCheck::Invalid);
        let long = "x".repeat(MAX_SECRET_LEN + 1);
        assert_eq!(ClientSecretHash::verify(&long, &stored, &pepper).await, SecretCheck::Invalid);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_on_the_blocking_pool_are_bounded() {
        let h = hash_password_off_thread("correct horse").await.unwrap();
        // Many at once: all finish with the right answer, and every permit comes back.
        let checks: Vec<_> = (0..8)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    verify_password_off_thread(if i % 2 == 0 { "correct horse" } else { "nope" }, &h).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for c in checks {
            results.push(c.await.unwrap());
        }
        assert_eq!(results, [true, false, true, false, true, false, true, false]);
        // Other tests of this binary hash passwords on the same pool at the same time: once
        // they are done too, every permit is back (a leaked one never would be).
        let mut waited = 0;
        while password_permits().available_permits() != password_hash_concurrency() && waited < 1000 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(password_permits().available_permits(), password_hash_concurrency(), "every permit returned");
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
