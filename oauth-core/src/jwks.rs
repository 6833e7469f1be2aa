//! JSON Web Key Sets (RFC 7517).
//! Documented in the crate docs, "Key sets".

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

/// A JSON Web Key Set, as served at `jwks_uri` or read from one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Jwks(pub(crate) JwkSet);

impl Jwks {
    /// Reads a JWKS document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The key ids, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.0.keys.iter().filter_map(|k| k.common.key_id.as_deref())
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.0.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.0.keys.is_empty()
    }
}

/// The keys of a JWKS that may verify access tokens: see the [crate docs](crate#key-sets).
#[derive(Default)]
pub struct VerifyingKeys(pub(crate) Vec<(String, Algorithm, DecodingKey)>);

impl fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(kid, alg, _)| (kid, alg))).finish()
    }
}

impl VerifyingKeys {
    /// The usable keys of `set`; the others are skipped.
    pub fn from_jwks(set: &Jwks) -> Self {
        let mut keys = Vec::new();
        for jwk in &set.0.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
                continue;
            }
            let Some(alg) = algorithm(jwk.common.key_algorithm, &jwk.algorithm) else { continue };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.push((kid, alg, key));
            }
        }
        Self(keys)
    }

    /// The one key of algorithm `alg`, for a token without a `kid`; `None` when the set has
    /// none or several (which one signed would be a guess).
    pub(crate) fn only_key_for(&self, alg: Algorithm) -> Option<(Algorithm, &DecodingKey)> {
        let mut of_alg = self.0.iter().filter(|(_, a, _)| *a == alg);
        match (of_alg.next(), of_alg.next()) {
            (Some((_, a, key)), None) => Some((*a, key)),
            _ => None,
        }
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The signature algorithm of a key: the one it states, if it matches its key type, else the
/// one its key type implies. `None` for a symmetric key, or a pairing that does not fit.
pub(crate) fn algorithm(stated: Option<KeyAlgorithm>, params: &AlgorithmParameters) -> Option<Algorithm> {
    use AlgorithmParameters::{EllipticCurve as Ec, OctetKeyPair as Okp, RSA as Rsa};
    Some(match (stated, params) {
        (Some(KeyAlgorithm::ES256), Ec(_)) => Algorithm::ES256,
        (Some(KeyAlgorithm::ES384), Ec(_)) => Algorithm::ES384,
        (Some(KeyAlgorithm::EdDSA), Okp(_)) => Algorithm::EdDSA,
        (Some(KeyAlgorithm::RS256), Rsa(_)) => Algorithm::RS256,
        (Some(KeyAlgorithm::RS384), Rsa(_)) => Algorithm::RS384,
        (Some(KeyAlgorithm::RS512), Rsa(_)) => Algorithm::RS512,
        (Some(KeyAlgorithm::PS256), Rsa(_)) => Algorithm::PS256,
        (None, Ec(p)) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        (None, Ec(p)) if p.curve == EllipticCurve::P384 => Algorithm::ES384,
        (None, Okp(_)) => Algorithm::EdDSA,
        (None, Rsa(_)) => Algorithm::RS256,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: &str = r#""kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
    const OKP: &str = r#""kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo""#;
    const OCT: &str = r#""kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0""#;

    fn usable(jwk: &str) -> Vec<(String, Algorithm)> {
        let set = Jwks::from_json(format!(r#"{{"keys":[{{{jwk}}}]}}"#).as_bytes()).unwrap();
        VerifyingKeys::from_jwks(&set).0.into_iter().map(|(kid, alg, _)| (kid, alg)).collect()
    }

    #[test]
    fn only_asymmetric_signature_keys_with_a_kid_verify() {
        let k = |alg: Algorithm| vec![("k".to_owned(), alg)];
        let table: [(String, Vec<(String, Algorithm)>); 8] = [
            (format!(r#""kid":"k",{EC}"#), k(Algorithm::ES256)),
            (format!(r#""kid":"k","alg":"ES256","use":"sig",{EC}"#), k(Algorithm::ES256)),
            (format!(r#""kid":"k",{OKP}"#), k(Algorithm::EdDSA)),
            (EC.to_owned(), vec![]),
            (format!(r#""kid":"k","use":"enc",{EC}"#), vec![]),
            (format!(r#""kid":"k","alg":"RS256",{EC}"#), vec![]),
            (format!(r#""kid":"k",{OCT}"#), vec![]),
            (format!(r#""kid":"k","alg":"HS256",{OCT}"#), vec![]),
        ];
        for (jwk, expected) in table {
            assert_eq!(usable(&jwk), expected, "{jwk}");
        }
    }

    #[test]
    fn a_set_reports_its_key_ids() {
        let set =
            Jwks::from_json(format!(r#"{{"keys":[{{"kid":"a",{EC}}},{{"kid":"b",{OKP}}}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((set.len(), set.is_empty()), (2, false));
    }
}
