//! Signing keys.
//! Documented in the crate docs, "Signing keys".

//!
//! Private keys can be sealed at rest: see [`crate::sealing`].

use std::fmt;

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::error::Error;
use crate::jwks::Jwks;

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

impl KeyResolver for crate::jwks::VerifyingKeys {
    fn resolve(&self, kid: &str) -> Option<(Algorithm, &DecodingKey)> {
        self.0.iter().find(|(k, _, _)| k == kid).map(|(_, alg, key)| (*alg, key))
    }
}

impl KeyResolver for KeySet {
    fn resolve(&self, kid: &str) -> Option<(Algorithm, &DecodingKey)> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| (k.algorithm.jwt_algorithm(), &k.decoding))
    }
}

/// What a sealed private key starts with: the format version. Clear keys never do (DER starts
/// with 0x30; an HS256 secret is 64 random bytes).
pub(crate) const SEALED_PREFIX: &[u8] = b"mcpkek1:";

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
}
