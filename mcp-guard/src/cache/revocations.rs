//! Invalidated grants and tokens, refused for the revocation window; bounded in number.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use super::entry::{Key, PassThrough};

/// Most invalidations remembered at once; past that, expired ones are dropped, then arbitrary
/// ones (which only returns those tokens to what a stateless JWT allows anyway).
pub const MAX_REVOCATIONS: usize = 100_000;

/// Invalidated grants and tokens, each with the time until which it is refused.
#[derive(Default)]
pub(super) struct Revocations {
    pub(super) grants: HashMap<Box<str>, i64>,
    pub(super) tokens: HashMap<Key, i64, BuildHasherDefault<PassThrough>>,
}

impl Revocations {
    pub(super) fn insert_grant(&mut self, grant: &str, until: i64, now: i64) {
        make_room(&mut self.grants, now);
        let e = self.grants.entry(grant.into()).or_insert(until);
        *e = (*e).max(until);
    }

    pub(super) fn insert_token(&mut self, key: Key, until: i64, now: i64) {
        make_room(&mut self.tokens, now);
        let e = self.tokens.entry(key).or_insert(until);
        *e = (*e).max(until);
    }
}

/// Drops ended invalidations when the map is full, then arbitrary ones if it still is.
pub(super) fn make_room<K: Clone + Eq + Hash, S: std::hash::BuildHasher>(m: &mut HashMap<K, i64, S>, now: i64) {
    if m.len() < MAX_REVOCATIONS {
        return;
    }
    m.retain(|_, until| *until > now);
    if m.len() >= MAX_REVOCATIONS {
        let victims: Vec<K> = m.keys().take(MAX_REVOCATIONS / 8).cloned().collect();
        for k in victims {
            m.remove(&k);
        }
    }
}
