//! Signing keys sealed at rest.
//! Documented in the crate docs, "Keys encrypted at rest".

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::error::{Error, StoreError};
use crate::keys::{SEALED_PREFIX, StoredKey};
use crate::store::{KeyStore, StoreResult, Stores};

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
        let bytes = parse_key_bytes(encoded).ok_or_else(|| {
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
        Ok([SEALED_PREFIX, &seal_with(&self.key, aad, clear).ok_or(())?].concat())
    }

    /// What [`Self::seal_bytes`] sealed; bytes without the prefix (stored in clear) as they are.
    fn open_bytes(&self, aad: &[u8], stored: &[u8]) -> Result<Vec<u8>, ()> {
        let Some(body) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_vec());
        };
        open_with(&self.key, aad, body).ok_or(())
    }
}

/// `clear` sealed with AES-256-GCM under `key` for `aad`: a random nonce, the ciphertext and
/// its tag. The one sealing of the crate: signing keys, the upstream vault and the upstream
/// flow cookie each put their own framing around it.
pub(crate) fn seal_with(key: &aws_lc_rs::aead::RandomizedNonceKey, aad: &[u8], clear: &[u8]) -> Option<Vec<u8>> {
    let mut sealed = clear.to_vec();
    let nonce = key.seal_in_place_append_tag(aws_lc_rs::aead::Aad::from(aad.to_vec()), &mut sealed).ok()?;
    Some([nonce.as_ref().as_slice(), &sealed].concat())
}

/// What [`seal_with`] sealed under `key` for `aad`, or `None`: another key or `aad`, altered,
/// or too short to hold a nonce and a tag.
pub(crate) fn open_with(key: &aws_lc_rs::aead::RandomizedNonceKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(12);
    let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = body.to_vec();
    key.open_in_place(nonce, aws_lc_rs::aead::Aad::from(aad.to_vec()), &mut buf).ok().map(|clear| clear.to_vec())
}

/// A 32-byte key written as 64 hex digits or as base64 (standard or URL-safe, padded or not),
/// surrounding whitespace ignored; `None` for anything else.
pub(crate) fn parse_key_bytes(encoded: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let s = encoded.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>().ok()
    } else {
        STANDARD.decode(s).ok().or_else(|| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
    };
    bytes.and_then(|b| b.try_into().ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySet, SigningAlgorithm};

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
