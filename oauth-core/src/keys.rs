//! Signing keys: generated once, persisted through the [`KeyStore`],
//! rotated on demand, and published as a JWKS that carries the current and previous keys.
//!
//! ES256 is the default (fastest to verify on these machines); EdDSA and RS256 are available;
//! HS256 exists only as [`SigningAlgorithm::DangerousHs256`], because a shared secret lets
//! every verifier mint tokens, and a regenerated secret logs every user out.
//!
//! ```
//! use oauth_core::keys::{KeySet, SigningAlgorithm, StoredKey};
//! use oauth_core::UnixTime;
//!
//! let key = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(0)).unwrap();
//! let set = KeySet::load(&[key], SigningAlgorithm::Es256).unwrap();
//! let jwks = serde_json::to_value(set.jwks()).unwrap();
//! assert_eq!(jwks["keys"][0]["kty"], "EC");
//! assert!(jwks["keys"][0].get("d").is_none()); // never the private part
//! ```
//!
//! ## Encryption at rest
//!
//! By default the private keys sit in the key store as they are: whoever reads the database
//! (a backup, a replica, a leaked dump) can mint tokens. A [`KeyEncryption`] key (32 random
//! bytes the operator keeps outside the database, in the environment or a file) seals every
//! key written from then on with AES-256-GCM: a random nonce per key, the kid and algorithm
//! as associated data, so that a sealed key cannot be moved to another row. Keys stored in
//! clear before the key-encryption key was set still load; the next
//! [`rotate_signing_key`](crate::AuthorizationServer::rotate_signing_key) writes a sealed key
//! and retires them, and the sweep deletes them after the key retention. A server started with
//! another key-encryption key (or none) than the one its keys were sealed with refuses to start,
//! saying so.
//!
//! ```
//! use oauth_core::keys::KeyEncryption;
//!
//! let kek = KeyEncryption::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
//! // ServerConfig::new(issuer, resource).with_key_encryption(kek)
//! assert!(format!("{kek:?}").contains("redacted"));
//! assert!(KeyEncryption::parse("too short").is_err());
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::error::{Error, StoreError};
use crate::jwks::Jwks;
use crate::store::{KeyStore, StoreResult, Stores};

/// The algorithm access tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256: the default.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    #[serde(rename = "RS256")]
    Rs256,
    /// HMAC-SHA256 with a shared secret. Dangerous: anyone who can verify can also mint, and
    /// the JWKS cannot publish it, so only this process can verify its tokens.
    #[serde(rename = "HS256")]
    DangerousHs256,
}

impl SigningAlgorithm {
    /// The JOSE name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::DangerousHs256 => "HS256",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            "RS256" => Some(Self::Rs256),
            "HS256" => Some(Self::DangerousHs256),
            _ => None,
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub(crate) const fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Rs256 => Algorithm::RS256,
            Self::DangerousHs256 => Algorithm::HS256,
        }
    }
}

/// A signing key as persisted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredKey {
    /// Key id (`kid`).
    pub kid: String,
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// Private key, DER (PKCS#8 for ES256 and EdDSA, PKCS#1 for RS256; raw bytes for HS256).
    pub private_der: Vec<u8>,
    /// When it was generated.
    pub created_at: UnixTime,
    /// When it stopped signing; still published for verification for a while after.
    pub retired_at: Option<UnixTime>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_der", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

impl StoredKey {
    /// Generates a fresh key for `algorithm`.
    pub fn generate(algorithm: SigningAlgorithm, now: UnixTime) -> Result<Self, Error> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
        let rng = SystemRandom::new();
        let crypto = |what: &str| Error::Crypto(format!("generating {what} key failed"));
        let private_der = match algorithm {
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| crypto("ES256"))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::EdDsa => {
                Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(|_| crypto("EdDSA"))?.as_ref().to_vec()
            }
            SigningAlgorithm::Rs256 => {
                let pair =
                    aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| crypto("RS256"))?;
                let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pair).map_err(|_| crypto("RS256"))?;
                pkcs8_inner_key(pkcs8.as_ref()).ok_or_else(|| crypto("RS256"))?.to_vec()
            }
            SigningAlgorithm::DangerousHs256 => crate::secret::random_bytes::<64>().to_vec(),
        };
        Ok(Self { kid: crate::secret::random_id::<12>(), algorithm, private_der, created_at: now, retired_at: None })
    }
}

/// A key ready to sign and verify.
pub(crate) struct LoadedKey {
    kid: String,
    algorithm: SigningAlgorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Option<Jwk>,
    created_at: UnixTime,
    retired_at: Option<UnixTime>,
}

impl LoadedKey {
    fn load(k: &StoredKey) -> Result<Self, Error> {
        if k.private_der.starts_with(SEALED_PREFIX) {
            return Err(Error::Config(format!(
                "signing key '{}' is encrypted at rest: configure the key-encryption key it was sealed with",
                k.kid
            )));
        }
        let bad = || Error::Crypto(format!("stored key '{}' ({}) cannot be loaded", k.kid, k.algorithm.as_str()));
        let alg = k.algorithm.jwt_algorithm();
        let encoding = match k.algorithm {
            SigningAlgorithm::Es256 => EncodingKey::from_ec_der(&k.private_der),
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_der(&k.private_der),
            SigningAlgorithm::Rs256 => EncodingKey::from_rsa_der(&k.private_der),
            SigningAlgorithm::DangerousHs256 => EncodingKey::from_secret(&k.private_der),
        };
        let (decoding, jwk) = if k.algorithm == SigningAlgorithm::DangerousHs256 {
            (DecodingKey::from_secret(&k.private_der), None)
        } else {
            let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|_| bad())?;
            jwk.common.key_id = Some(k.kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(KeyAlgorithm::from(alg));
            (DecodingKey::from_jwk(&jwk).map_err(|_| bad())?, Some(jwk))
        };
        Ok(Self {
            kid: k.kid.clone(),
            algorithm: k.algorithm,
            encoding,
            decoding,
            jwk,
            created_at: k.created_at,
            retired_at: k.retired_at,
        })
    }
}

/// The loaded signing keys: the active one signs, all of them verify.
pub struct KeySet {
    keys: Vec<LoadedKey>,
    active: usize,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>())
            .field("active", &self.keys[self.active].kid)
            .finish()
    }
}

impl KeySet {
    /// Loads stored keys; the newest unretired key of `algorithm` signs. Fails when there is
    /// none, or when a key cannot be loaded.
    pub fn load(stored: &[StoredKey], algorithm: SigningAlgorithm) -> Result<Self, Error> {
        let keys = stored.iter().map(LoadedKey::load).collect::<Result<Vec<_>, _>>()?;
        let active = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.algorithm == algorithm && k.retired_at.is_none())
            .max_by(|(_, a), (_, b)| a.created_at.cmp(&b.created_at).then_with(|| a.kid.cmp(&b.kid)))
            .map(|(i, _)| i)
            .ok_or_else(|| Error::Config(format!("no active {} signing key", algorithm.as_str())))?;
        Ok(Self { keys, active })
    }

    /// The key that signs: its kid, algorithm and encoding key.
    pub(crate) fn signing_key(&self) -> (&str, SigningAlgorithm, &EncodingKey) {
        let k = &self.keys[self.active];
        (&k.kid, k.algorithm, &k.encoding)
    }

    /// The public keys, for `/jwks.json`. HS256 keys are never published.
    pub fn jwks(&self) -> Jwks {
        Jwks(JwkSet { keys: self.keys.iter().filter_map(|k| k.jwk.clone()).collect() })
    }

    /// Verifies an access token signed by one of these keys at `now`.
    pub fn verify(
        &self,
        token: &str,
        validation: &crate::jwt::TokenValidation,
        now: UnixTime,
    ) -> Result<crate::jwt::AccessTokenClaims, crate::jwt::VerifyError> {
        crate::jwt::verify(token, validation, self, now)
    }

    /// Number of loaded keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is loaded (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Finds the key that verifies a token, by `kid`.
pub(crate) trait KeyResolver: Send + Sync {
    /// The algorithm and key for `kid`.
    fn resolve(&self, kid: &str) -> Option<(Algorithm, &DecodingKey)>;
}

impl KeyResolver for KeySet {
    fn resolve(&self, kid: &str) -> Option<(Algorithm, &DecodingKey)> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| (k.algorithm.jwt_algorithm(), &k.decoding))
    }
}

/// What a sealed private key starts with: the format version. Clear keys never do (DER starts
/// with 0x30; an HS256 secret is 64 random bytes).
const SEALED_PREFIX: &[u8] = b"mcpkek1:";

/// A key-encryption key: seals private signing keys at rest (AES-256-GCM). See the module
/// docs; [`ServerConfig::with_key_encryption`](crate::ServerConfig::with_key_encryption)
/// turns it on.
#[derive(Clone)]
pub struct KeyEncryption {
    key: Arc<aws_lc_rs::aead::RandomizedNonceKey>,
}

impl fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryption([redacted])")
    }
}

impl KeyEncryption {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let key = aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, bytes)
            .map_err(|_| Error::Crypto("the key-encryption key cannot be set up".into()))?;
        Ok(Self { key: Arc::new(key) })
    }

    /// Parses a key written as 64 hex digits or as base64 (standard or URL-safe, padded or
    /// not) of 32 bytes, as `openssl rand -base64 32` prints it. Surrounding whitespace (a
    /// file's final newline) is ignored. The error never repeats the input.
    pub fn parse(encoded: &str) -> Result<Self, Error> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let s = encoded.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>().ok()
        } else {
            STANDARD.decode(s).ok().or_else(|| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
        };
        let bytes: [u8; 32] = bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
            Error::Config(
                "the key-encryption key must be 32 bytes, written as 64 hex digits or as base64 \
                 (generate one with `openssl rand -base64 32`)"
                    .into(),
            )
        })?;
        Self::from_bytes(&bytes)
    }

    /// `stores` with its key store wrapped in an [`EncryptedKeyStore`] under `kek`; unchanged
    /// when `kek` is `None`.
    pub fn protect(kek: Option<&Self>, mut stores: Stores) -> Stores {
        if let Some(kek) = kek {
            stores.keys = Arc::new(EncryptedKeyStore::new(stores.keys, kek.clone()));
        }
        stores
    }

    /// `key` with its private part sealed.
    pub fn seal(&self, key: &StoredKey) -> Result<StoredKey, Error> {
        let private_der = self
            .seal_bytes(&aad(key), &key.private_der)
            .map_err(|()| Error::Crypto(format!("sealing signing key '{}' failed", key.kid)))?;
        Ok(StoredKey { private_der, ..key.clone() })
    }

    /// `key` with its private part opened; a key stored in clear (before encryption was
    /// turned on) is returned as it is. Fails when the key was sealed under another key.
    pub fn open(&self, mut key: StoredKey) -> Result<StoredKey, Error> {
        key.private_der = self.open_bytes(&aad(&key), &key.private_der).map_err(|()| {
            Error::Config(format!(
                "signing key '{}' cannot be decrypted with the configured key-encryption key: it was \
                 sealed with another one (or the row is damaged); configure the key it was sealed with",
                key.kid
            ))
        })?;
        Ok(key)
    }

    /// `clear` sealed under this key with `aad`: the version prefix, a random nonce, the
    /// ciphertext and its tag.
    fn seal_bytes(&self, aad: &[u8], clear: &[u8]) -> Result<Vec<u8>, ()> {
        let mut sealed = clear.to_vec();
        let nonce =
            self.key.seal_in_place_append_tag(aws_lc_rs::aead::Aad::from(aad.to_vec()), &mut sealed).map_err(|_| ())?;
        Ok([SEALED_PREFIX, nonce.as_ref(), &sealed].concat())
    }

    /// What [`Self::seal_bytes`] sealed; bytes without the prefix (stored in clear) as they are.
    fn open_bytes(&self, aad: &[u8], stored: &[u8]) -> Result<Vec<u8>, ()> {
        let Some(body) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_vec());
        };
        if body.len() < 12 + 16 {
            return Err(());
        }
        let (nonce, sealed) = body.split_at(12);
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
        let mut buf = sealed.to_vec();
        let clear =
            self.key.open_in_place(nonce, aws_lc_rs::aead::Aad::from(aad.to_vec()), &mut buf).map_err(|_| ())?;
        Ok(clear.to_vec())
    }
}

/// The associated data of a sealed server secret: its name.
fn secret_aad(name: &str) -> Vec<u8> {
    [b"server secret\0".as_slice(), name.as_bytes()].concat()
}

/// The associated data of a sealed key: its kid and algorithm.
fn aad(key: &StoredKey) -> Vec<u8> {
    [key.kid.as_bytes(), b"\0", key.algorithm.as_str().as_bytes()].concat()
}

/// A [`KeyStore`] that seals private keys before they reach `inner` and opens them when read.
#[derive(Debug)]
pub struct EncryptedKeyStore {
    inner: Arc<dyn KeyStore>,
    kek: KeyEncryption,
}

impl EncryptedKeyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KeyStore>, kek: KeyEncryption) -> Self {
        Self { inner, kek }
    }
}

#[async_trait]
impl KeyStore for EncryptedKeyStore {
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let keys = self.inner.list_keys().await?;
        keys.into_iter().map(|k| self.kek.open(k).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        let sealed = self.kek.seal(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.inner.insert_key(&sealed).await
    }

    async fn retire_key(&self, kid: &str, at: UnixTime) -> StoreResult<bool> {
        self.inner.retire_key(kid, at).await
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        self.inner.delete_key(kid).await
    }

    async fn server_secret(&self, name: &str, candidate: &[u8], now: UnixTime) -> StoreResult<Vec<u8>> {
        let aad = secret_aad(name);
        let corrupt = |()| {
            StoreError::Corrupt(format!(
                "server secret '{name}' cannot be opened with the configured key-encryption key"
            ))
        };
        let sealed = self.kek.seal_bytes(&aad, candidate).map_err(corrupt)?;
        let stored = self.inner.server_secret(name, &sealed, now).await?;
        self.kek.open_bytes(&aad, &stored).map_err(corrupt)
    }

    async fn replace_server_secret(&self, name: &str, value: &[u8], now: UnixTime) -> StoreResult<()> {
        let sealed = self
            .kek
            .seal_bytes(&secret_aad(name), value)
            .map_err(|()| StoreError::Corrupt(format!("sealing server secret '{name}' failed")))?;
        self.inner.replace_server_secret(name, &sealed, now).await
    }
}

/// Extracts the inner private key from a PKCS#8 `PrivateKeyInfo` (RFC 5208 5):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, … }`.
fn pkcs8_inner_key(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = der_element(body)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, _, rest) = der_element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, key, _) = der_element(rest)?;
    (tag == 0x04).then_some(key)
}

/// One DER element: (tag, contents, remaining input).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, remaining) = rest.split_at(len);
    Some((tag, contents, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_and_loads() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
            SigningAlgorithm::DangerousHs256,
        ] {
            let k = StoredKey::generate(alg, UnixTime::from_secs(1)).unwrap();
            let set = KeySet::load(std::slice::from_ref(&k), alg).unwrap();
            assert_eq!(set.signing_key().0, k.kid);
            assert!(set.resolve(&k.kid).is_some());
            let published = set.jwks().len();
            assert_eq!(published, usize::from(alg != SigningAlgorithm::DangerousHs256), "{alg:?}");
        }
    }

    #[test]
    fn newest_unretired_key_signs_and_all_verify() {
        let mut old = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
        let new = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(2)).unwrap();
        let set = KeySet::load(&[old.clone(), new.clone()], SigningAlgorithm::Es256).unwrap();
        assert_eq!(set.signing_key().0, new.kid);
        old.retired_at = Some(UnixTime::from_secs(3));
        let mut newer_retired = new.clone();
        newer_retired.retired_at = Some(UnixTime::from_secs(3));
        assert!(KeySet::load(&[old.clone(), newer_retired], SigningAlgorithm::Es256).is_err());
        let set = KeySet::load(&[old.clone(), new], SigningAlgorithm::Es256).unwrap();
        assert!(set.resolve(&old.kid).is_some());
        assert_eq!(set.jwks().len(), 2);
    }

    #[test]
    fn corrupt_keys_fail_to_load() {
        let mut k = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
        k.private_der.truncate(10);
        assert!(KeySet::load(&[k], SigningAlgorithm::Es256).is_err());
        assert!(pkcs8_inner_key(&[0x30, 0x81]).is_none());
        assert!(
            !format!("{:?}", StoredKey::generate(SigningAlgorithm::DangerousHs256, UnixTime::from_secs(0)).unwrap())
                .contains("private_der: [")
        );
    }

    #[test]
    fn sealed_keys_open_only_under_their_key_and_row() {
        let kek = KeyEncryption::from_bytes(&[7; 32]).unwrap();
        let other = KeyEncryption::parse(&"ab".repeat(32)).unwrap();
        let k = StoredKey::generate(SigningAlgorithm::Es256, UnixTime::from_secs(1)).unwrap();
        let sealed = kek.seal(&k).unwrap();
        assert!(sealed.private_der.starts_with(SEALED_PREFIX));
        assert!(!sealed.private_der.windows(k.private_der.len()).any(|w| w == k.private_der.as_slice()));
        assert_ne!(kek.seal(&k).unwrap().private_der, sealed.private_der, "a fresh nonce per seal");
        assert_eq!(kek.open(sealed.clone()).unwrap(), k);
        assert!(other.open(sealed.clone()).unwrap_err().to_string().contains("key-encryption key"));
        let moved = StoredKey { kid: "another".into(), ..sealed.clone() };
        assert!(kek.open(moved).is_err(), "the kid is bound in");
        let err = KeySet::load(std::slice::from_ref(&sealed), SigningAlgorithm::Es256).unwrap_err();
        assert!(err.to_string().contains("encrypted at rest"), "{err}");
        assert_eq!(kek.open(k.clone()).unwrap(), k, "clear legacy keys still load");
        for bad in ["", "short", &"zz".repeat(32), "AAEC"] {
            assert!(KeyEncryption::parse(bad).is_err(), "{bad}");
        }
        assert!(KeyEncryption::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").is_ok());
        assert!(KeyEncryption::parse(" 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n").is_ok());
    }
}
