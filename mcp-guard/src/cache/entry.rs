//! What the cache holds for a token: the keyed hash it is found by, and a compact copy of
//! the caller's context, with its size as the cache charges it.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use oauth_core::UnixTime;
use oauth_core::{ClientId, GrantId, ScopeSet, UserId};

use crate::context::AuthContext;

/// An entry's key: the 128-bit keyed hash of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key(pub(super) u128);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Truncation intended: the low half of a uniform hash is one too.
        state.write_u64(self.0 as u64);
    }
}

/// The hasher of the table and of the revocation map: the key is already a keyed hash, so it
/// passes through.
#[derive(Default)]
pub(super) struct PassThrough(pub(super) u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Bytes of an entry's place in the table: its key and value in a slot of quick_cache's slab,
/// with the slot's state and links (32 bytes); a quarter slot more for the evicted keys it
/// remembers (up to a quarter as many as the entries, see [`GHOSTS`], in slots of the same
/// size); and its share of the hash index (about 16 bytes). The cache bench measures it.
pub(super) const SLOT_BYTES: usize = (size_of::<Key>() + size_of::<Entry>() + 32) * 5 / 4 + 16;

/// The share of evicted keys quick_cache remembers, against the entries: a token seen again
/// soon after its eviction comes back among the entries that survive a sweep. A quarter, not
/// quick_cache's half: each takes a whole slot.
pub(super) const GHOSTS: f64 = 0.25;

/// The strings of a typical entry as allocated (a 22-character token id, a grant id and a
/// short subject; the client id is shared): only for sizing the table.
pub(super) const TYPICAL_TEXT_BYTES: usize = 96;

/// Longest subject and token id cached together, as the longest token verified.
pub(super) const MAX_TOKEN_LEN: usize = oauth_core::MAX_TOKEN_LEN;

/// Most distinct client ids, scope sets and issuers shared; others get their own copy.
pub(super) const INTERNED: usize = 16;

/// A cached token, compact: its own values as parsed, the ones that most tokens share by
/// reference. A hit clones them, which is cheaper than parsing them again.
#[derive(Clone)]
pub(super) struct Entry {
    /// The token's `exp`.
    pub(super) exp: i64,
    /// How long before `exp` the entry dies, in seconds: zero, or the rest with a max age.
    pub(super) early: u32,
    /// What the entry is charged against [`TokenCacheConfig::max_bytes`].
    pub(super) bytes: u32,
    pub(super) subject: UserId,
    pub(super) token_id: Arc<str>,
    pub(super) grant: Option<GrantId>,
    pub(super) shared: Arc<Shared>,
}

/// The part of a context that most tokens share.
#[derive(PartialEq)]
pub(super) struct Shared {
    pub(super) client: ClientId,
    pub(super) scopes: ScopeSet,
    pub(super) issuer: Arc<str>,
}

impl Entry {
    pub(super) fn new(ctx: &AuthContext, expires_at: i64, interned: &Mutex<Vec<Arc<Shared>>>) -> Option<Self> {
        // Tokens are at most 8 KiB; larger values are not cached.
        if ctx.subject.as_str().len() + ctx.token_id.len() > MAX_TOKEN_LEN {
            return None;
        }
        let exp = ctx.expires_at.as_secs();
        // A max age more than 136 years short of `exp`: not worth a wider field.
        let early = u32::try_from(exp.saturating_sub(expires_at).max(0)).ok()?;
        let (shared, own) = intern(ctx, interned);
        let bytes = SLOT_BYTES
            + shared_str(ctx.subject.as_str().len())
            + shared_str(ctx.token_id.len())
            + ctx.grant_id.as_ref().map_or(0, |g| shared_str(g.as_str().len()))
            + own;
        Some(Self {
            exp,
            early,
            // Under 8 KiB of strings and one scope set: far below u32::MAX.
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            subject: ctx.subject.clone(),
            token_id: ctx.token_id.clone(),
            grant: ctx.grant_id.clone(),
            shared,
        })
    }

    /// Valid while now < this: the token's `exp`, or sooner with a max age.
    pub(super) fn expires_at(&self) -> i64 {
        self.exp - i64::from(self.early)
    }

    pub(super) fn context(&self) -> AuthContext {
        // Built in place: a hit is short enough for the moves of a builder to show.
        AuthContext {
            subject: self.subject.clone(),
            client_id: self.shared.client.clone(),
            scopes: self.shared.scopes.clone(),
            expires_at: UnixTime::from_secs(self.exp),
            issuer: self.shared.issuer.clone(),
            token_id: self.token_id.clone(),
            grant_id: self.grant.clone(),
            upstream: None,
        }
    }
}

/// `ctx`'s shared part, from the interned ones when it is there or there is room, and the
/// bytes of its own copy otherwise.
pub(super) fn intern(ctx: &AuthContext, interned: &Mutex<Vec<Arc<Shared>>>) -> (Arc<Shared>, usize) {
    let wanted = Shared { client: ctx.client_id.clone(), scopes: ctx.scopes.clone(), issuer: ctx.issuer.clone() };
    let mut list = lock(interned);
    if let Some(s) = list.iter().find(|s| ***s == wanted) {
        return (s.clone(), 0);
    }
    let s = Arc::new(wanted);
    if list.len() < INTERNED {
        list.push(s.clone());
        return (s, 0);
    }
    // Counted whole, although the verifier's context may share its parts for a while.
    let scopes = block(16 + 24)
        + block(BTREE_LEAF_BYTES)
        + s.scopes.iter().map(|sc| shared_str(sc.as_str().len())).sum::<usize>();
    let own =
        block(16 + size_of::<Shared>()) + shared_str(s.client.as_str().len()) + shared_str(s.issuer.len()) + scopes;
    (s, own)
}

/// A heap block of `n` bytes as the allocator rounds it: 16-byte granules, 8 of header, 32 at
/// least.
pub(super) fn block(n: usize) -> usize {
    (n + 8).next_multiple_of(16).max(32)
}

/// An `Arc<str>` of `len` bytes: its 16 bytes of counts and the text.
pub(super) fn shared_str(len: usize) -> usize {
    block(16 + len)
}

/// A scope set's one B-tree leaf (eleven scopes, their parent link and counts).
pub(super) const BTREE_LEAF_BYTES: usize = 11 * size_of::<oauth_core::Scope>() + 16;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these leaves a map or a list that is whole.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
