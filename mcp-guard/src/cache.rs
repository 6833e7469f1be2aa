//! A cache of verified tokens: a client that calls the MCP endpoint many times with one access
//! token pays for one signature check, not one per request.
//!
//! An entry is keyed by a 128-bit SipHash-1-3 of the whole token (the `siphasher` crate) under
//! a random per-process key, so the cache never holds a token, and a client cannot aim a forged
//! token at another token's entry without that key. It holds the [`AuthContext`] the verifier produced, in a
//! compact form, and lives until the token's `exp` at the latest. Only accepted tokens are
//! cached; a refused token is checked again each time it is presented.
//!
//! # Bounds
//! [`TokenCacheConfig::max_entries`] and [`TokenCacheConfig::max_bytes`] cap the cache. Its
//! table is set-associative with two choices: a token may sit in any of the 8 slots of either
//! of the two sets its hash picks, goes to the emptier one, and when both are full a resident
//! moves to its other set to make room. The table has a quarter more slots than
//! `max_entries`, which is then enforced by count, so that a full cache holds `max_entries`
//! tokens, not the fraction a one-choice table would. Past the bound an expired entry goes
//! first, else the one that expires soonest. The table is allocated at its full size with
//! the first entry and never grows, so its memory is known in advance (120 bytes a slot, plus
//! each entry's strings: about 25 MiB for 100 000 tokens); an evicted token only costs one
//! more signature check.
//!
//! # Invalidation and staleness
//! [`TokenCache::invalidate_grant`] and [`TokenCache::invalidate_token`] drop the entries and,
//! for [`TokenCacheConfig::revocation_window`], refuse the grant's or the token's tokens
//! before they are cached again, so an invalidation also closes the gap that a stateless JWT
//! leaves open. [`TokenCache::watch_revocations`] wires this to an embedded authorization
//! server: every grant revoked through its stores (RFC 7009 revocation, a replayed code or
//! refresh token, a client's grants revoked) is invalidated in this process at once.
//!
//! What is not seen here (another replica's revocation, an external authorization server)
//! leaves a revoked token accepted until its `exp`, exactly as without the cache, because a
//! JWT's signature, issuer, audience and expiry do not change when its grant is revoked. For a
//! verifier whose answer can change before `exp` (introspection), set
//! [`TokenCacheConfig::with_max_age`]: that is then the staleness bound.
//!
//! # Why it is on by default
//! [`LocalVerifier`](crate::LocalVerifier) caches unless told otherwise. Its answer for a token
//! depends only on the token, the key set and the clock; an entry dies at `exp`, before the
//! uncached check starts refusing the token (at `exp` plus the leeway), and keys stay
//! published for longer than any token lives (`key_retention` ≥ `access_token_ttl` is checked at start-up). So the
//! cache accepts nothing the uncached check would refuse, except after an emergency removal
//! of a signing key: call [`TokenCache::clear`] then. In exchange a repeated token costs a
//! keyed hash and a map lookup (about 0.4 µs, `cargo bench -p oauth-benches --bench
//! validation`) instead of a signature check (about 65 µs for ES256), and the memory stays
//! under [`TokenCacheConfig::max_bytes`] (8 MiB by default).
//!
//! ```
//! use std::time::Duration;
//! use mcp_guard::{TokenCache, TokenCacheConfig};
//!
//! let cache = TokenCache::new(
//!     TokenCacheConfig::default().with_max_entries(50_000).with_revocation_window(Duration::from_secs(3660)),
//! );
//! assert!(cache.is_empty());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use oauth_core::events::Reason;
use oauth_core::secret::SecretHash;
use oauth_core::store::{Grant, GrantStore, StoreResult};
use oauth_core::types::{ClientId, GrantId, ScopeSet, UserId};
use oauth_core::{ServerConfig, Stores, UnixTime};

use siphasher::sip128::SipHasher13;

use crate::context::{AuthContext, Rejection};

/// Most invalidations remembered at once; past that, expired ones are dropped, then arbitrary
/// ones (which only returns those tokens to what a stateless JWT allows anyway).
pub const MAX_REVOCATIONS: usize = 100_000;

/// The cache's bounds and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenCacheConfig {
    /// Most tokens held. Default: 10 000.
    pub max_entries: usize,
    /// Most memory held, in bytes, counting the table and each entry's strings. Default: 8 MiB.
    pub max_bytes: usize,
    /// Longest an entry lives, whatever the token's `exp`. Default: none (until `exp`).
    pub max_age: Option<Duration>,
    /// How long an invalidated grant's or token's tokens are refused. Default: 3 660 s, the
    /// default access-token lifetime plus the default leeway.
    pub revocation_window: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 8 * 1024 * 1024,
            max_age: None,
            revocation_window: Duration::from_secs(3600 + 60),
        }
    }
}

impl TokenCacheConfig {
    /// The defaults, with the revocation window set to the longest any token of `server`
    /// stays acceptable: its access-token lifetime plus its leeway.
    pub fn for_server(server: &ServerConfig) -> Self {
        Self::default().with_revocation_window(server.access_token_ttl.saturating_add(server.leeway))
    }

    /// Most tokens held. Default: 10 000. Zero turns caching off (invalidations still apply).
    #[must_use]
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// Most memory held, in bytes: the table and the entries' strings. Default: 8 MiB, room
    /// for about 35 000 typical tokens, so the entry limit binds first.
    #[must_use]
    pub fn with_max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Longest an entry lives, whatever the token's `exp`. Default: none. Set it when the
    /// verifier's answer can change before `exp` (introspection): it is then how long a
    /// revocation the cache does not see can go unnoticed.
    #[must_use]
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How long an invalidated grant's or token's tokens are refused. Default: 3 660 s. It
    /// must cover the longest a token stays acceptable (lifetime plus leeway); a shorter
    /// window lets a revoked token back in once it ends, as a stateless JWT would be.
    #[must_use]
    pub fn with_revocation_window(mut self, window: Duration) -> Self {
        self.revocation_window = window;
        self
    }
}

/// What the cache holds, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Tokens held.
    pub entries: usize,
    /// Memory held, in bytes, as the cache counts it against [`TokenCacheConfig::max_bytes`].
    pub bytes: usize,
    /// Invalidated grants and tokens remembered.
    pub revocations: usize,
}

/// A shared cache of verified tokens: see the [module docs](self). Clones share one cache.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    hasher: SipHasher13,
    config: TokenCacheConfig,
    shards: Box<[Mutex<Shard>]>,
    revoked: Mutex<Revocations>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").field("config", &self.inner.config).field("stats", &self.stats()).finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(TokenCacheConfig::default())
    }
}

impl TokenCache {
    /// An empty cache with a fresh random key. Each shard's table is allocated at its first
    /// entry, at its full size, and never grows.
    pub fn new(config: TokenCacheConfig) -> Self {
        // Up to 16 shards keep concurrent requests off each other's lock; a small cache gets
        // fewer, so that its bounds stay close to what was asked.
        let by_entries = config.max_entries / 256;
        let by_bytes = config.max_bytes / (256 * (SLOT_BYTES + TYPICAL_TEXT_BYTES));
        let shards = by_entries.min(by_bytes).clamp(1, 16);
        let shards = if shards.is_power_of_two() { shards } else { shards.next_power_of_two() / 2 };
        let layout = Layout::new(config.max_entries / shards, config.max_bytes / shards);
        // The entry bound is global, so that a shard that draws more than its share of
        // tokens still keeps them all.
        let count = Arc::new(Count { held: AtomicUsize::new(0), max: config.max_entries });
        Self {
            inner: Arc::new(Inner {
                hasher: keyed_hasher(),
                shards: (0..shards).map(|_| Mutex::new(Shard::new(layout, count.clone()))).collect(),
                revoked: Mutex::new(Revocations::default()),
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TokenCacheConfig {
        &self.inner.config
    }

    /// The context of `token` if it was verified and cached, has not expired at `now`, and
    /// was not invalidated.
    pub fn get(&self, token: &str, now: UnixTime) -> Option<AuthContext> {
        self.lookup(self.key_of(token), now)
    }

    /// Caches a token that the verifier has just accepted, unless it was invalidated: then it
    /// returns the rejection, and the caller must refuse the token. A token already expired at
    /// `now` is not cached.
    pub fn admit(&self, token: &str, ctx: &AuthContext, now: UnixTime) -> Result<(), Rejection> {
        self.admit_key(self.key_of(token), ctx, now)
    }

    /// Drops `token` and refuses it for the revocation window.
    pub fn invalidate_token(&self, token: &str, now: UnixTime) {
        let key = self.key_of(token);
        let until = now.plus(self.inner.config.revocation_window).as_secs();
        // Recorded before the entry goes, and `admit` checks under the same lock, so a
        // verification racing with this one cannot cache the token again.
        lock(&self.inner.revoked).insert_token(key, until, now.as_secs());
        self.inner.shard(key).remove(key);
    }

    /// Drops every token of `grant` and refuses them for the revocation window. Scans the
    /// whole cache: meant for revocations, not for every request.
    pub fn invalidate_grant(&self, grant: &GrantId, now: UnixTime) {
        let until = now.plus(self.inner.config.revocation_window).as_secs();
        lock(&self.inner.revoked).insert_grant(grant.as_str(), until, now.as_secs());
        for shard in self.inner.shards.iter() {
            lock(shard).remove_where(|e| e.grant() == Some(grant.as_str()));
        }
    }

    /// Drops every entry (invalidations stay). After removing a signing key in an emergency,
    /// call this so that tokens it signed are checked again.
    pub fn clear(&self) {
        for shard in self.inner.shards.iter() {
            lock(shard).remove_where(|_| true);
        }
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len).sum()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries, bytes and invalidations held.
    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for shard in self.inner.shards.iter() {
            let shard = lock(shard);
            entries += shard.len;
            bytes += shard.bytes();
        }
        let r = lock(&self.inner.revoked);
        CacheStats { entries, bytes, revocations: r.grants.len() + r.tokens.len() }
    }

    /// `stores` with its grant store wrapped so that every grant revoked through it is
    /// invalidated here. Build the authorization server on the result:
    ///
    /// ```no_run
    /// # async fn demo(config: oauth_core::ServerConfig, stores: oauth_core::Stores) -> Result<(), oauth_core::Error> {
    /// use std::sync::Arc;
    /// use mcp_guard::{LocalVerifier, TokenCache, TokenCacheConfig};
    ///
    /// let cache = TokenCache::new(TokenCacheConfig::for_server(&config));
    /// let server = Arc::new(oauth_core::AuthorizationServer::new(config, cache.watch_revocations(stores)).await?);
    /// let verifier = LocalVerifier::new(server).with_cache(cache);
    /// # Ok(()) }
    /// ```
    pub fn watch_revocations(&self, mut stores: Stores) -> Stores {
        stores.grants = Arc::new(RevocationWatch { inner: stores.grants, cache: self.clone() });
        stores
    }

    pub(crate) fn key_of(&self, token: &str) -> Key {
        let h = self.inner.hasher.hash(token.as_bytes());
        Key { lo: h.h1, hi: h.h2 }
    }

    pub(crate) fn lookup(&self, key: Key, now: UnixTime) -> Option<AuthContext> {
        self.inner.shard(key).get(key, now.as_secs())
    }

    pub(crate) fn admit_key(&self, key: Key, ctx: &AuthContext, now: UnixTime) -> Result<(), Rejection> {
        let now_s = now.as_secs();
        let mut expires_at = ctx.expires_at.as_secs();
        if let Some(age) = self.inner.config.max_age {
            expires_at = expires_at.min(now.plus(age).as_secs());
        }
        // Held until the entry is in, so that an invalidation cannot slip in between.
        let revoked = lock(&self.inner.revoked);
        if revoked.tokens.get(&key).is_some_and(|&until| until > now_s) {
            return Err(Rejection::new(Reason::GrantRevoked, "the token was revoked"));
        }
        if let Some(grant) = &ctx.grant_id
            && revoked.grants.get(grant.as_str()).is_some_and(|&until| until > now_s)
        {
            return Err(Rejection::new(Reason::GrantRevoked, "the token's grant was revoked"));
        }
        if expires_at > now_s {
            self.inner.shard(key).insert(key, ctx, expires_at, now_s);
        }
        drop(revoked);
        Ok(())
    }
}

impl Inner {
    fn shard(&self, key: Key) -> MutexGuard<'_, Shard> {
        // The high bits pick the shard, the low ones the set within it; both are uniform.
        let i = (key.hi >> 58) as usize % self.shards.len();
        lock(&self.shards[i])
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard leaves at worst a stale byte count; the slots are intact.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SipHash-1-3 with a 128-bit output under a random key that never leaves the process: a
/// client cannot aim a token at another token's entry, since finding a collision without the
/// key takes about 2^128 guesses. It is the reduced-round variant that std's `HashMap` uses; a
/// SHA-256 of the token would cost several times as much, most of a hit.
fn keyed_hasher() -> SipHasher13 {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // std's hasher keys come from the operating system too, by another path; the key only
        // has to be secret, and these outputs are.
        tracing::warn!("the system RNG failed; the token cache keys its hash from std's RandomState");
        use std::hash::BuildHasher as _;
        let a = std::collections::hash_map::RandomState::new().hash_one(0x6b30u16);
        let b = std::collections::hash_map::RandomState::new().hash_one(0x6b31u16);
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
    }
    SipHasher13::new_with_key(&bytes)
}

/// An entry's key: the 128-bit keyed hash of the token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Key {
    lo: u64,
    hi: u64,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.lo);
    }
}

/// The revocation map's hasher: the key is already a keyed hash, so it passes through.
#[derive(Default)]
struct PassThrough(u64);

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

/// Slots per set: a token can live in any of the 8 slots of either of its two sets, so the
/// table fills almost completely while a lookup compares at most 16 keys.
const WAYS: usize = 8;

/// Bytes of one slot: its key and its entry (an empty slot is a `None` of the same size).
const SLOT_BYTES: usize = std::mem::size_of::<Key>() + std::mem::size_of::<Option<Entry>>();

/// The strings of a typical entry as allocated (a 22-character token id, a grant id and a
/// short subject; the client id is shared): only for sizing shards.
const TYPICAL_TEXT_BYTES: usize = 96;

/// Longest subject and token id cached together, as the longest token verified.
const MAX_TOKEN_LEN: usize = oauth_core::jwt::MAX_TOKEN_LEN;

/// The shape of a shard's table.
#[derive(Debug, Clone, Copy)]
struct Layout {
    sets: usize,
    ways: usize,
    /// Bytes the entries' strings may take, beside the table.
    heap_budget: usize,
}

impl Layout {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        // A quarter more slots than entries: tokens fall unevenly on shards and sets, and with
        // that slack a full cache still finds a slot for every one of `max_entries`. The byte
        // budget leaves room for each slot's strings.
        let wanted = max_entries.saturating_add(max_entries / 4);
        let slots = wanted.min(max_bytes / (SLOT_BYTES + TYPICAL_TEXT_BYTES));
        let ways = WAYS.min(slots).max(1);
        let sets = slots / ways;
        Self { sets, ways, heap_budget: max_bytes.saturating_sub(sets * ways * SLOT_BYTES) }
    }

    fn slots(self) -> usize {
        self.sets * self.ways
    }
}

/// The entries held by all shards, against [`TokenCacheConfig::max_entries`].
struct Count {
    held: AtomicUsize,
    max: usize,
}

/// A set-associative table: a fixed number of slots, no rehashing, no growth, so its memory
/// is known in advance.
struct Shard {
    layout: Layout,
    count: Arc<Count>,
    keys: Vec<Key>,
    entries: Vec<Option<Entry>>,
    len: usize,
    /// Bytes of the entries' strings, as allocated.
    heap: usize,
    /// Where eviction for the string budget resumes.
    cursor: usize,
    /// Client ids, scope sets and issuers shared by the entries: most tokens carry one of a
    /// few.
    clients: Vec<Arc<ClientId>>,
    scopes: Vec<Arc<ScopeSet>>,
    issuers: Vec<Arc<str>>,
}

/// Most distinct client ids, scope sets or issuers a shard shares; others get their own copy.
const INTERNED: usize = 16;

impl Shard {
    fn new(layout: Layout, count: Arc<Count>) -> Self {
        Self {
            layout,
            count,
            keys: Vec::new(),
            entries: Vec::new(),
            len: 0,
            heap: 0,
            cursor: 0,
            clients: Vec::new(),
            scopes: Vec::new(),
            issuers: Vec::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Option<Entry>>()
            + self.keys.capacity() * std::mem::size_of::<Key>()
            + self.heap
    }

    /// The slots of `key`'s two sets.
    fn sets(&self, key: Key) -> [std::ops::Range<usize>; 2] {
        // Multiply-shift maps uniform 64 bits onto 0..sets without a division. The first set
        // comes from the low word; the second from the high word less its top bits, which
        // picked the shard.
        let pick = |bits: u64| {
            let set = ((u128::from(bits) * self.layout.sets as u128) >> 64) as usize;
            set * self.layout.ways..(set + 1) * self.layout.ways
        };
        [pick(key.lo), pick(key.hi << 6)]
    }

    fn occupied(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i).and_then(Option::as_ref)
    }

    fn find(&self, key: Key) -> Option<usize> {
        self.sets(key).into_iter().find_map(|set| {
            let keys = self.keys.get(set.clone())?;
            let i = set.start + keys.iter().position(|k| *k == key)?;
            self.occupied(i).map(|_| i)
        })
    }

    fn get(&mut self, key: Key, now: i64) -> Option<AuthContext> {
        let i = self.find(key)?;
        let entry = self.occupied(i)?;
        if entry.expires_at > now {
            return Some(entry.context());
        }
        self.take(i);
        None
    }

    fn insert(&mut self, key: Key, ctx: &AuthContext, expires_at: i64, now: i64) {
        if self.layout.slots() == 0 {
            return;
        }
        if self.entries.is_empty() {
            self.keys = vec![Key::default(); self.layout.slots()];
            self.entries = (0..self.layout.slots()).map(|_| None).collect();
        }
        let Some(entry) = Entry::new(ctx, expires_at, self) else {
            return;
        };
        if entry.heap_bytes() > self.layout.heap_budget {
            return;
        }
        // The token's own slot, else a free or expired one in its sets, else one freed by
        // moving a resident to its other set, else the one that expires first.
        let slot = match self.find(key) {
            Some(i) => i,
            None => match self.free_slot(key, now).or_else(|| self.relocate(key)) {
                Some(i) => i,
                None => self.soonest(key, usize::MAX).unwrap_or(self.sets(key)[0].start),
            },
        };
        self.take(slot);
        if !self.reserve(key, slot, now) {
            return;
        }
        self.heap += entry.heap_bytes();
        self.len += 1;
        if let (Some(k), Some(e)) = (self.keys.get_mut(slot), self.entries.get_mut(slot)) {
            *k = key;
            *e = Some(entry);
        }
        // Over the string budget (long claims): evict round-robin, never the new entry.
        while self.heap > self.layout.heap_budget {
            self.cursor = (self.cursor + 1) % self.layout.slots();
            if self.cursor != slot {
                self.take(self.cursor);
            }
        }
    }

    /// An empty slot in the emptier of `key`'s sets, else an expired one in either.
    fn free_slot(&mut self, key: Key, now: i64) -> Option<usize> {
        let [a, b] = self.sets(key);
        let used = |s: &std::ops::Range<usize>| s.clone().filter(|&i| self.occupied(i).is_some()).count();
        let (first, second) = if used(&a) <= used(&b) { (a, b) } else { (b, a) };
        let mut all = first.chain(second);
        let empty = all.clone().find(|&i| self.occupied(i).is_none());
        empty.or_else(|| all.find(|&i| self.occupied(i).is_some_and(|e| e.expires_at <= now)))
    }

    /// Moves a resident of `key`'s full sets to an empty slot of its other set; the slot it
    /// leaves.
    fn relocate(&mut self, key: Key) -> Option<usize> {
        for set in self.sets(key) {
            for i in set {
                let resident = *self.keys.get(i)?;
                let Some(j) = self.sets(resident).into_iter().flatten().find(|&j| self.occupied(j).is_none()) else {
                    continue;
                };
                let moved = self.entries.get_mut(i).and_then(Option::take);
                if let (Some(k), Some(e)) = (self.keys.get_mut(j), self.entries.get_mut(j)) {
                    *k = resident;
                    *e = moved;
                }
                return Some(i);
            }
        }
        None
    }

    /// The occupied slot of `key`'s sets that expires first, other than `except`.
    fn soonest(&self, key: Key, except: usize) -> Option<usize> {
        self.sets(key)
            .into_iter()
            .flatten()
            .filter(|&i| i != except)
            .filter_map(|i| self.occupied(i).map(|e| (e.expires_at, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Counts the entry about to go into `slot` against the global bound; when the cache is
    /// full, evicts one of this shard's entries first. False when there is none to evict.
    fn reserve(&mut self, key: Key, slot: usize, now: i64) -> bool {
        loop {
            let held = self.count.held.load(Ordering::Relaxed);
            if held < self.count.max {
                if self.count.held.compare_exchange(held, held + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            let victim = self.soonest(key, slot).or_else(|| {
                // Nothing else in the token's sets: any other entry of this shard, preferring
                // an expired one.
                let others = (0..self.entries.len()).filter(|&i| i != slot);
                let expired = others.clone().find(|&i| self.occupied(i).is_some_and(|e| e.expires_at <= now));
                expired.or_else(|| others.clone().find(|&i| self.occupied(i).is_some()))
            });
            match victim {
                Some(i) => self.take(i),
                None => return false,
            }
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(i) = self.find(key) {
            self.take(i);
        }
    }

    fn remove_where(&mut self, mut f: impl FnMut(&Entry) -> bool) {
        for i in 0..self.entries.len() {
            if self.occupied(i).is_some_and(&mut f) {
                self.take(i);
            }
        }
    }

    /// Empties slot `i`.
    fn take(&mut self, i: usize) {
        if let Some(e) = self.entries.get_mut(i).and_then(Option::take) {
            self.heap -= e.heap_bytes();
            self.len -= 1;
            self.count.held.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn intern_scopes(&mut self, scopes: &ScopeSet) -> Arc<ScopeSet> {
        if let Some(s) = self.scopes.iter().find(|s| ***s == *scopes) {
            return s.clone();
        }
        let s = Arc::new(scopes.clone());
        if self.scopes.len() < INTERNED {
            self.scopes.push(s.clone());
        }
        s
    }

    fn intern_client(&mut self, client: &ClientId) -> Arc<ClientId> {
        if let Some(c) = self.clients.iter().find(|c| ***c == *client) {
            return c.clone();
        }
        let c = Arc::new(client.clone());
        if self.clients.len() < INTERNED {
            self.clients.push(c.clone());
        }
        c
    }

    fn intern_issuer(&mut self, issuer: &Arc<str>) -> Arc<str> {
        if let Some(s) = self.issuers.iter().find(|s| ***s == **issuer) {
            return s.clone();
        }
        let s = issuer.clone();
        if self.issuers.len() < INTERNED {
            self.issuers.push(s.clone());
        }
        s
    }
}

/// A cached token, compact: its own values as parsed, the ones that most tokens share by
/// reference. A hit clones them, which is cheaper than parsing them again.
struct Entry {
    /// Valid while now < this: the token's `exp`, or sooner with a max age.
    expires_at: i64,
    /// The token's `exp`.
    exp: i64,
    subject: UserId,
    token_id: Arc<str>,
    grant: Option<GrantId>,
    client: Arc<ClientId>,
    scopes: Arc<ScopeSet>,
    issuer: Arc<str>,
}

impl Entry {
    fn new(ctx: &AuthContext, expires_at: i64, shard: &mut Shard) -> Option<Self> {
        // Tokens are at most 8 KiB; larger values are not cached.
        if ctx.subject.as_str().len() + ctx.token_id.len() > MAX_TOKEN_LEN {
            return None;
        }
        Some(Self {
            expires_at,
            exp: ctx.expires_at.as_secs(),
            subject: ctx.subject.clone(),
            token_id: ctx.token_id.clone(),
            grant: ctx.grant_id.clone(),
            client: shard.intern_client(&ctx.client_id),
            scopes: shard.intern_scopes(&ctx.scopes),
            issuer: shard.intern_issuer(&ctx.issuer),
        })
    }

    fn grant(&self) -> Option<&str> {
        self.grant.as_ref().map(GrantId::as_str)
    }

    fn context(&self) -> AuthContext {
        // Built in place: a hit is short enough for the moves of a builder to show.
        AuthContext {
            subject: self.subject.clone(),
            client_id: ClientId::clone(&self.client),
            scopes: ScopeSet::clone(&self.scopes),
            expires_at: UnixTime::from_secs(self.exp),
            issuer: self.issuer.clone(),
            token_id: self.token_id.clone(),
            grant_id: self.grant.clone(),
        }
    }

    /// The entry's own allocations, as the allocator rounds them (16-byte granules, 8 of
    /// header, 32 at least): its shared strings (16 bytes of counts each, and counted whole
    /// although the verifier's context may share them for a while), and its client id unless
    /// it is interned.
    fn heap_bytes(&self) -> usize {
        let block = |n: usize| (n + 8).next_multiple_of(16).max(32);
        let shared = |len: usize| block(16 + len);
        let own_client = if Arc::strong_count(&self.client) == 1 {
            // Only an interned client id is shared (by the shard's list), and for good.
            block(std::mem::size_of::<ClientId>() + 16) + shared(self.client.as_str().len())
        } else {
            0
        };
        shared(self.subject.as_str().len())
            + shared(self.token_id.len())
            + self.grant().map_or(0, |g| shared(g.len()))
            + own_client
    }
}

/// Invalidated grants and tokens, each with the time until which it is refused.
#[derive(Default)]
struct Revocations {
    grants: HashMap<Box<str>, i64>,
    tokens: HashMap<Key, i64, BuildHasherDefault<PassThrough>>,
}

impl Revocations {
    fn insert_grant(&mut self, grant: &str, until: i64, now: i64) {
        make_room(&mut self.grants, now);
        let e = self.grants.entry(grant.into()).or_insert(until);
        *e = (*e).max(until);
    }

    fn insert_token(&mut self, key: Key, until: i64, now: i64) {
        make_room(&mut self.tokens, now);
        let e = self.tokens.entry(key).or_insert(until);
        *e = (*e).max(until);
    }
}

/// Drops ended invalidations when the map is full, then arbitrary ones if it still is.
fn make_room<K: Clone + Eq + Hash, S: std::hash::BuildHasher>(m: &mut HashMap<K, i64, S>, now: i64) {
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

/// A grant store that tells the cache about every revocation: see
/// [`TokenCache::watch_revocations`].
struct RevocationWatch {
    inner: Arc<dyn GrantStore>,
    cache: TokenCache,
}

impl fmt::Debug for RevocationWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationWatch").field("inner", &self.inner).finish_non_exhaustive()
    }
}

#[async_trait]
impl GrantStore for RevocationWatch {
    async fn create_grant(&self, grant: &Grant, refresh_token: Option<&SecretHash>) -> StoreResult<()> {
        self.inner.create_grant(grant, refresh_token).await
    }

    async fn grant(&self, id: &GrantId) -> StoreResult<Option<Grant>> {
        self.inner.grant(id).await
    }

    async fn find_refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<(Grant, u64)>> {
        self.inner.find_refresh_token(hash).await
    }

    async fn rotate_refresh_token(
        &self,
        id: &GrantId,
        expected_generation: u64,
        new_token: &SecretHash,
        now: UnixTime,
        refresh_expires_at: UnixTime,
    ) -> StoreResult<bool> {
        self.inner.rotate_refresh_token(id, expected_generation, new_token, now, refresh_expires_at).await
    }

    async fn revoke_grant(&self, id: &GrantId, now: UnixTime) -> StoreResult<bool> {
        let revoked = self.inner.revoke_grant(id, now).await?;
        // Also when it was already revoked: its tokens must be refused either way.
        self.cache.invalidate_grant(id, now);
        Ok(revoked)
    }

    async fn revoke_client_grants(&self, client_id: &ClientId, now: UnixTime) -> StoreResult<u64> {
        let n = self.inner.revoke_client_grants(client_id, now).await?;
        let window = self.cache.config().revocation_window;
        for g in self.inner.client_grants(client_id).await? {
            if g.revoked_at.is_some_and(|at| at.plus(window) > now) {
                self.cache.invalidate_grant(&g.id, now);
            }
        }
        Ok(n)
    }

    async fn client_grants(&self, client_id: &ClientId) -> StoreResult<Vec<Grant>> {
        self.inner.client_grants(client_id).await
    }

    async fn sweep_grants(&self, before: UnixTime) -> StoreResult<u64> {
        self.inner.sweep_grants(before).await
    }

    async fn user_grants(&self, user: &UserId, now: UnixTime, limit: usize) -> StoreResult<Vec<Grant>> {
        self.inner.user_grants(user, now, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(i: usize, exp: i64, grant: Option<&str>) -> AuthContext {
        let mut c = AuthContext::new(
            UserId::parse(&format!("user-{i}")).unwrap(),
            ClientId::parse("mcp_abcdefghijklmnopqrstuvwx").unwrap(),
            ScopeSet::parse("mcp:tools notes:write").unwrap(),
            UnixTime::from_secs(exp),
            "https://as.example",
            format!("jti-{i}"),
        );
        if let Some(g) = grant {
            c = c.with_grant_id(GrantId::parse(g).unwrap());
        }
        c
    }

    #[test]
    fn an_entry_gives_back_the_context_it_was_given() {
        let cache = TokenCache::default();
        let now = UnixTime::from_secs(1000);
        for grant in [None, Some("gr_1")] {
            let c = ctx(1, 2000, grant);
            cache.admit("tok", &c, now).unwrap();
            assert_eq!(cache.get("tok", now), Some(c));
        }
        assert_eq!(cache.len(), 1, "admitting again replaces");
    }

    #[test]
    fn the_byte_count_follows_inserts_and_removals() {
        let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(100));
        assert_eq!(cache.inner.shards.len(), 1);
        assert_eq!(cache.stats().bytes, 0, "nothing allocated before the first entry");
        let now = UnixTime::from_secs(1000);
        for i in 0..50 {
            cache.admit(&format!("t{i}"), &ctx(i, 2000, Some("gr_x")), now).unwrap();
        }
        let table = Layout::new(100, 8 << 20).slots() * SLOT_BYTES;
        assert!(cache.stats().bytes > table, "{}", cache.stats().bytes);
        cache.invalidate_grant(&GrantId::parse("gr_x").unwrap(), now);
        assert_eq!(cache.stats().bytes, table, "only the table is left");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_holds_every_one_of_max_entries() {
        let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(20_000));
        let now = UnixTime::from_secs(1000);
        for i in 0..20_000 {
            cache.admit(&format!("t{i}"), &ctx(i, 2000, None), now).unwrap();
        }
        assert_eq!(cache.len(), 20_000);
        assert!((0..20_000).all(|i| cache.get(&format!("t{i}"), now).is_some()), "relocated entries are found");
        cache.admit("one more", &ctx(0, 1500, None), now).unwrap();
        assert_eq!(cache.len(), 20_000, "past the bound, one goes for each one in");
        assert!(cache.get("one more", now).is_some());
    }

    #[test]
    fn layouts_stay_within_their_bounds() {
        for (entries, bytes) in
            [(0, 0), (1, 1 << 20), (10, 1 << 20), (100, 1000), (10_000, 8 << 20), (100_000, 32 << 20)]
        {
            let l = Layout::new(entries, bytes);
            assert!(l.slots() <= entries + entries / 4, "{entries} {bytes}: {l:?}");
            assert!(l.slots() * SLOT_BYTES + l.heap_budget <= bytes.max(l.slots() * SLOT_BYTES), "{l:?}");
        }
        assert_eq!(Layout::new(10_000, 8 << 20).slots(), 12_496);
    }
}
