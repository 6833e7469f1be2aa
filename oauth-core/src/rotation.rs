//! The operator's view of the signing keys: which there are, and a rotation from outside the
//! running servers, which each of them picks up ([`AuthorizationServer::sync_keys`]).
//!
//! [`AuthorizationServer::sync_keys`]: crate::AuthorizationServer::sync_keys

use serde::Serialize;

use crate::admin::Operator;
use crate::clock::UnixTime;
use crate::error::Error;
use crate::keys::{SEALED_PREFIX, SigningAlgorithm, StoredKey};

/// A signing key as the operator sees it: never its private part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyReport {
    /// Key id (`kid` in tokens and the JWKS).
    pub kid: String,
    /// Algorithm (`ES256`, `EdDSA`, `RS256`).
    pub algorithm: &'static str,
    /// When it was generated.
    pub created_at: UnixTime,
    /// When it stopped signing; it is still published, and verifies, until swept.
    pub retired_at: Option<UnixTime>,
    /// Whether its private part is sealed with the key-encryption key.
    pub sealed: bool,
}

impl Operator {
    /// The signing keys: the active ones first, then newest first (a rotation within the
    /// second its key was made still lists the signing key first).
    pub async fn signing_keys(&self) -> Result<Vec<KeyReport>, Error> {
        let mut keys: Vec<KeyReport> = self.stores().keys.list_keys().await?.iter().map(report).collect();
        keys.sort_by(|a, b| {
            (a.retired_at.is_some().cmp(&b.retired_at.is_some()))
                .then_with(|| b.created_at.cmp(&a.created_at))
                .then_with(|| b.kid.cmp(&a.kid))
        });
        Ok(keys)
    }

    /// Generates a signing key of the algorithm in use, and retires the active ones (still
    /// published and verifying for `key_retention`, so no token issued before stops working).
    /// Every running server on the store signs with the new key once it has synced (within a
    /// second). Refused when the keys are sealed and these stores were opened without the
    /// key-encryption key, rather than store a new key in clear.
    pub async fn rotate_signing_key(&self) -> Result<KeyReport, Error> {
        let stored = self.stores().keys.list_keys().await?;
        if stored.iter().any(|k| k.private_der.starts_with(SEALED_PREFIX)) {
            return Err(Error::Config(
                "the signing keys are sealed with a key-encryption key: give the same key to this command \
                 (the server's --key-encryption-key-file) so that the new key is sealed too"
                    .into(),
            ));
        }
        let algorithm = active_algorithm(&stored).ok_or_else(|| {
            Error::Config("there is no active signing key to rotate: start the server once to create one".into())
        })?;
        let now = self.now();
        let key = StoredKey::generate(algorithm, now)?;
        self.stores().keys.insert_key(&key).await?;
        for k in stored.iter().filter(|k| k.retired_at.is_none()) {
            self.stores().keys.retire_key(&k.kid, now).await?;
        }
        tracing::info!(kid = %key.kid, alg = algorithm.as_str(), "signing key rotated by the operator");
        Ok(report(&key))
    }

    /// Scheduled rotation: rotates as [`Self::rotate_signing_key`] does when the newest active
    /// key is at least `age` old, and answers the new key; `None` when the key is younger, or
    /// when another server on the store rotated at the same moment. Every replica may run it
    /// on the same schedule: retiring the old key is the compare-and-swap, and a server that
    /// loses it retires the key it had just added (still published and verifying, so nothing
    /// it might have signed breaks), which leaves one active key.
    pub async fn rotate_signing_key_if_older_than(&self, age: std::time::Duration) -> Result<Option<KeyReport>, Error> {
        let stored = self.stores().keys.list_keys().await?;
        let Some(newest) = newest_active(&stored) else {
            return Ok(None);
        };
        let active: Vec<&StoredKey> = stored.iter().filter(|k| k.retired_at.is_none()).collect();
        let now = self.now();
        if now.seconds_since(newest.created_at) < crate::clock::duration_secs(age) {
            return Ok(None);
        }
        let key = StoredKey::generate(newest.algorithm, now)?;
        self.stores().keys.insert_key(&key).await?;
        let mut won = false;
        for k in &active {
            won |= self.stores().keys.retire_key(&k.kid, now).await?;
        }
        if !won {
            self.stores().keys.retire_key(&key.kid, now).await?;
            tracing::debug!(kid = %key.kid, "another server rotated the signing key first; this one's new key is retired");
            return Ok(None);
        }
        tracing::info!(kid = %key.kid, alg = key.algorithm.as_str(), every = ?age, "signing key rotated on schedule");
        Ok(Some(report(&key)))
    }
}

/// The algorithm of the newest active key.
fn active_algorithm(stored: &[StoredKey]) -> Option<SigningAlgorithm> {
    newest_active(stored).map(|k| k.algorithm)
}

/// The newest key not retired: the one servers sign with.
fn newest_active(stored: &[StoredKey]) -> Option<&StoredKey> {
    stored.iter().filter(|k| k.retired_at.is_none()).max_by_key(|k| k.created_at)
}

fn report(k: &StoredKey) -> KeyReport {
    KeyReport {
        kid: k.kid.clone(),
        algorithm: k.algorithm.as_str(),
        created_at: k.created_at,
        retired_at: k.retired_at,
        sealed: k.private_der.starts_with(SEALED_PREFIX),
    }
}
