//! A cache of verified tokens: a client that calls the MCP endpoint many times with one access
//! token pays for one signature check, not one per request.
//!
//! An entry is keyed by a 128-bit SipHash-1-3 of the whole token (the `siphasher` crate) under
//! a random per-process key, so the cache never holds a token, and a client cannot aim a
//! forged token at another token's entry without that key. It holds the [`AuthContext`] the
//! verifier produced, in a compact form, and lives until the token's `exp` at the latest,
//! checked on every hit. Only accepted tokens are cached; a refused token is checked again
//! each time it is presented.
//!
//! # Bounds
//! The table is `quick_cache`'s sync cache: up to 16 shards, each behind a read-write lock,
//! so that hits do not wait for each other, and no thread of its own.
//! [`TokenCacheConfig::max_entries`] and [`TokenCacheConfig::max_bytes`] cap it together, on
//! every insert: each entry is charged its bytes (its slot in the table with the table's
//! bookkeeping, and its own strings as the allocator rounds them) in units chosen so that
//! neither more than `max_entries` entries nor more than `max_bytes` bytes fit. Each shard
//! holds its share of both, and tokens fall on shards unevenly, so a cache given exactly
//! `max_entries` tokens keeps a little fewer (99.6 % of 100 000 on 8 shards); one that has
//! seen more holds `max_entries`.
//!
//! Past the bound quick_cache evicts by its own policy (CLOCK-Pro): a new token that is not
//! read again goes before one that is, and a token seen again soon after its eviction comes
//! back among the ones kept. That policy does not look at expiry, so once the cache is within
//! a shard of full an admission first drops the expired entries (a scan, at most once a
//! second), so that expired entries go before live ones. The table is allocated with the
//! first entry for the tokens that typically fill it, and grows only if smaller ones come. For
//! 100 000 tokens it counts about 300 bytes a token, 28 to 30 MiB (`cargo bench -p
//! oauth-benches --bench cache`, and `--bench targets`); an evicted token only costs one more
//! signature check.
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
//! published for longer than any token lives (`key_retention` ≥ `access_token_ttl` is checked
//! at start-up). So the cache accepts nothing the uncached check would refuse, except after
//! an emergency removal of a signing key: call [`TokenCache::clear`] then. In exchange a
//! repeated token costs a keyed hash and a map lookup (about 0.3 µs, `cargo bench -p
//! oauth-benches --bench validation`) instead of a signature check (about 55 µs for ES256),
//! and the memory stays under [`TokenCacheConfig::max_bytes`] (8 MiB by default).
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

use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use async_trait::async_trait;
use oauth_core::Reason;
use oauth_core::SecretHash;
use oauth_core::{ClientId, GrantId, UserId};
use oauth_core::{Clock, Grant, GrantStore, Revocation, RevocationFollower, StoreResult};
use oauth_core::{ServerConfig, Stores, UnixTime};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};
use siphasher::sip128::SipHasher13;

use crate::context::{AuthContext, Rejection};

mod entry;
mod revocations;

use self::entry::{Entry, GHOSTS, Key, PassThrough, SLOT_BYTES, Shared, TYPICAL_TEXT_BYTES, lock};
pub use self::revocations::MAX_REVOCATIONS;
use self::revocations::Revocations;

/// The cache's bounds and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenCacheConfig {
    /// Most tokens held. Default: 10 000.
    pub max_entries: usize,
    /// Most memory held, in bytes, counting each entry's place in the table and its strings.
    /// Default: 8 MiB.
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

    /// Most memory held, in bytes: the entries' places in the table and their strings.
    /// Default: 8 MiB, room for about 27 000 typical tokens, so the entry limit binds first.
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
    /// Token checks answered from the cache.
    pub hits: u64,
    /// Token checks the cache could not answer (verified in full, then admitted).
    pub misses: u64,
    /// Grants learned revoked from the store's revocation feed.
    pub followed: u64,
    /// When the revocation feed was last read without error; `None` before the first read or
    /// when the cache does not follow one.
    pub feed_read_at: Option<UnixTime>,
}

/// A shared cache of verified tokens: see the [module docs](self). Clones share one cache.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    hasher: SipHasher13,
    config: TokenCacheConfig,
    /// `None` when the bounds leave room for no entry: caching is off.
    table: Option<Table>,
    /// Bytes charged for the entries held, shared with the table's eviction hook.
    bytes: Arc<AtomicUsize>,
    /// Past this weight the cache is within a shard of full: admissions sweep expired entries.
    sweep_from: u64,
    /// The table is allocated for this many entries with the first one.
    typical: usize,
    allocated: Once,
    /// The second of the last sweep.
    swept: AtomicI64,
    /// Client ids, scope sets and issuers shared by the entries: most tokens carry one of a
    /// few.
    interned: Mutex<Vec<Arc<Shared>>>,
    revoked: Mutex<Revocations>,
    hits: AtomicU64,
    misses: AtomicU64,
    followed: AtomicU64,
    /// Seconds since the epoch of the last good read of the feed; 0 before one.
    feed_read_at: AtomicI64,
}

type Table = Cache<Key, Entry, Charge, BuildHasherDefault<PassThrough>, Release>;

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
    /// An empty cache with a fresh random key. Its table is allocated with the first entry.
    pub fn new(config: TokenCacheConfig) -> Self {
        let bytes = Arc::new(AtomicUsize::new(0));
        let table = table(&config, &bytes);
        let sweep_from = table.as_ref().map_or(0, |t| t.capacity().saturating_sub(t.shard_capacity()));
        let typical = typical_entries(&config);
        Self {
            inner: Arc::new(Inner {
                hasher: keyed_hasher(),
                config,
                table,
                bytes,
                sweep_from,
                typical,
                allocated: Once::new(),
                swept: AtomicI64::new(i64::MIN),
                interned: Mutex::new(Vec::new()),
                revoked: Mutex::new(Revocations::default()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                followed: AtomicU64::new(0),
                feed_read_at: AtomicI64::new(0),
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
        if let Some((_, e)) = self.inner.table.as_ref().and_then(|t| t.remove(&key)) {
            self.inner.release(&e);
        }
    }

    /// Drops every token of `grant` and refuses them for the revocation window. Scans the
    /// whole cache: meant for revocations, not for every request.
    pub fn invalidate_grant(&self, grant: &GrantId, now: UnixTime) {
        self.invalidate_grants(std::slice::from_ref(grant), now);
    }

    /// [`Self::invalidate_grant`] for several grants, in one pass over the entries: what a
    /// client removed with many grants, or a burst from the revocation feed, costs.
    pub fn invalidate_grants(&self, grants: &[GrantId], now: UnixTime) {
        if grants.is_empty() {
            return;
        }
        let until = now.plus(self.inner.config.revocation_window).as_secs();
        {
            let mut revoked = lock(&self.inner.revoked);
            for grant in grants {
                revoked.insert_grant(grant.as_str(), until, now.as_secs());
            }
        }
        let gone: std::collections::HashSet<&GrantId> = grants.iter().collect();
        self.inner.remove_where(|e| e.grant.as_ref().is_some_and(|g| gone.contains(g)));
    }

    /// Drops every entry (invalidations stay). After removing a signing key in an emergency,
    /// call this so that tokens it signed are checked again.
    pub fn clear(&self) {
        self.inner.remove_where(|_| true);
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.inner.table.as_ref().map_or(0, Table::len)
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries, bytes and invalidations held.
    pub fn stats(&self) -> CacheStats {
        let r = lock(&self.inner.revoked);
        CacheStats {
            entries: self.len(),
            bytes: self.inner.bytes.load(Ordering::Relaxed),
            revocations: r.grants.len() + r.tokens.len(),
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            followed: self.inner.followed.load(Ordering::Relaxed),
            feed_read_at: match self.inner.feed_read_at.load(Ordering::Relaxed) {
                0 => None,
                t => Some(UnixTime::from_secs(t)),
            },
        }
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

    /// Follows the store's revocation feed, for a cache in front of a store that other
    /// processes write to as well (replicas, the operator's command line): a grant revoked
    /// anywhere is refused here within `every`, sooner where the store says when it has news
    /// (PostgreSQL's `LISTEN`). [`Self::watch_revocations`] still sees this process's own
    /// revocations at once. Runs until the task is aborted; a store failure is logged and
    /// retried at the next interval.
    pub fn follow_revocations(
        &self,
        grants: Arc<dyn GrantStore>,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut follower = RevocationFollower::new();
            loop {
                match follower.poll(grants.as_ref(), clock.now()).await {
                    Ok(revoked) => {
                        cache.invalidate_grants(&revoked, clock.now());
                        cache.inner.feed_read_at.store(clock.now().as_secs(), Ordering::Relaxed);
                        cache.inner.followed.fetch_add(revoked.len() as u64, Ordering::Relaxed);
                        if !revoked.is_empty() {
                            tracing::debug!(grants = revoked.len(), "refusing the tokens of grants revoked elsewhere");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the revocation feed failed; retrying"),
                }
                grants.wait_for_revocations(every).await;
            }
        })
    }
    pub(crate) fn key_of(&self, token: &str) -> Key {
        Key(self.inner.hasher.hash(token.as_bytes()).as_u128())
    }

    pub(crate) fn lookup(&self, key: Key, now: UnixTime) -> Option<AuthContext> {
        let found = self.find(key, now);
        let counter = if found.is_some() { &self.inner.hits } else { &self.inner.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn find(&self, key: Key, now: UnixTime) -> Option<AuthContext> {
        let table = self.inner.table.as_ref()?;
        let entry = table.get(&key)?;
        let now = now.as_secs();
        if entry.expires_at() > now {
            return Some(entry.context());
        }
        if let Some((_, e)) = table.remove_if(&key, |e| e.expires_at() <= now) {
            self.inner.release(&e);
        }
        None
    }

    pub(crate) fn admit_key(&self, key: Key, ctx: &AuthContext, now: UnixTime) -> Result<(), Rejection> {
        let now_s = now.as_secs();
        let mut expires_at = ctx.expires_at.as_secs();
        if let Some(age) = self.inner.config.max_age {
            expires_at = expires_at.min(now.plus(age).as_secs());
        }
        let entry = match &self.inner.table {
            Some(table) if expires_at > now_s => {
                // At once rather than by doubling, which would leave up to half of it unused.
                self.inner.allocated.call_once(|| table.reserve(self.inner.typical));
                self.inner.sweep_if_nearly_full(table, now_s);
                Entry::new(ctx, expires_at, &self.inner.interned)
            }
            _ => None,
        };
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
        if let (Some(table), Some(entry)) = (&self.inner.table, entry) {
            // Counted before it goes in: if it pushes others out, or is itself too heavy for
            // its shard, the eviction hook takes their bytes off again.
            self.inner.bytes.fetch_add(entry.bytes as usize, Ordering::Relaxed);
            table.insert(key, entry);
        }
        drop(revoked);
        Ok(())
    }
}

impl Inner {
    /// Takes an entry that left the table outside its eviction hook off the byte count.
    fn release(&self, e: &Entry) {
        self.bytes.fetch_sub(e.bytes as usize, Ordering::Relaxed);
    }

    fn remove_where(&self, f: impl Fn(&Entry) -> bool) {
        if let Some(table) = &self.table {
            table.retain(|_, e| {
                let gone = f(e);
                if gone {
                    self.release(e);
                }
                !gone
            });
        }
    }

    /// Sweeps the expired entries once the cache is within a shard of full, at most once a
    /// second: quick_cache evicts by its own policy, which does not look at expiry, and an
    /// expired entry must go before a live one.
    fn sweep_if_nearly_full(&self, table: &Table, now: i64) {
        if table.weight() >= self.sweep_from && self.swept.fetch_max(now, Ordering::Relaxed) < now {
            self.remove_where(|e| e.expires_at() <= now);
        }
    }
}

/// The table for `config`'s bounds, counting its bytes in `bytes`; `None` when the bounds
/// leave room for no entry.
fn table(config: &TokenCacheConfig, bytes: &Arc<AtomicUsize>) -> Option<Table> {
    let charge = Charge::new(config)?;
    let mut options = OptionsBuilder::new();
    options
        .shards(shards())
        .estimated_items_capacity(typical_entries(config))
        .weight_capacity(charge.capacity())
        .ghost_allocation(GHOSTS);
    if charge.entries == 1 {
        // quick_cache admits nothing heavier than its hot share (97 % by default), and the one
        // entry of a one-entry cache weighs the whole.
        options.hot_allocation(1.0);
    }
    let release = Release { bytes: bytes.clone() };
    // Only a missing capacity makes `build` fail, and both are set.
    Some(Table::with_options(options.build().ok()?, charge, BuildHasherDefault::default(), release))
}

/// Shards of the table: four per core, as quick_cache picks, up to 16. More would only spread
/// the bounds thinner (each shard holds its share, and tokens fall on shards unevenly).
fn shards() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).saturating_mul(4).min(16)
}

/// The tokens a full cache typically holds, for quick_cache's sizing of its shards and of its
/// memory of evicted keys.
fn typical_entries(config: &TokenCacheConfig) -> usize {
    config.max_entries.min(config.max_bytes / (SLOT_BYTES + TYPICAL_TEXT_BYTES)).max(1)
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

/// What quick_cache charges each entry against its one weight capacity, in units that make
/// both bounds hold at once. With `E` entries and `B` bytes at most, an entry of `b` bytes
/// weighs `max(b·E, B)` out of `E·B`: as each weighs at least `B`, at most `E` fit; as each
/// weighs at least `b·E`, at most `B` bytes fit. Bytes are counted in `unit`s so that `E·B`
/// stays far from overflowing quick_cache's sums.
#[derive(Clone)]
struct Charge {
    entries: u64,
    /// `B`, in units.
    bytes: u64,
    unit: u64,
}

impl Charge {
    /// `None` when the bounds leave room for no entry.
    fn new(config: &TokenCacheConfig) -> Option<Self> {
        // No more can fit: every entry takes at least its slot.
        let entries = config.max_entries.min(config.max_bytes / SLOT_BYTES) as u64;
        let bytes = config.max_bytes as u64;
        if entries == 0 {
            return None;
        }
        let limit = u128::from(u64::MAX / 4);
        let unit = (u128::from(entries) * u128::from(bytes)).div_ceil(limit).max(1);
        // At most `bytes`, as `unit` is at least 1.
        let unit = u64::try_from(unit).unwrap_or(u64::MAX);
        Some(Self { entries, bytes: bytes / unit, unit })
    }

    fn capacity(&self) -> u64 {
        self.entries.saturating_mul(self.bytes)
    }
}

impl Weighter<Key, Entry> for Charge {
    fn weight(&self, _: &Key, e: &Entry) -> u64 {
        u64::from(e.bytes).div_ceil(self.unit).saturating_mul(self.entries).max(self.bytes)
    }
}

/// quick_cache's eviction hook: an entry pushed out, or replaced, leaves the byte count.
#[derive(Clone)]
struct Release {
    bytes: Arc<AtomicUsize>,
}

impl Lifecycle<Key, Entry> for Release {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Key, e: Entry) {
        self.bytes.fetch_sub(e.bytes as usize, Ordering::Relaxed);
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
        let revoked: Vec<GrantId> = self
            .inner
            .client_grants(client_id)
            .await?
            .into_iter()
            .filter(|g| g.revoked_at.is_some_and(|at| at.plus(window) > now))
            .map(|g| g.id)
            .collect();
        self.cache.invalidate_grants(&revoked, now);
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

    async fn revocations_since(&self, after: u64, limit: usize) -> StoreResult<Vec<Revocation>> {
        self.inner.revocations_since(after, limit).await
    }

    async fn wait_for_revocations(&self, max: Duration) {
        self.inner.wait_for_revocations(max).await;
    }
}

#[cfg(test)]
mod tests {
    use oauth_core::ScopeSet;

    use super::entry::INTERNED;
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

    /// The bytes of the entries in the table, counted one by one.
    fn counted_one_by_one(cache: &TokenCache) -> usize {
        cache.inner.table.as_ref().map_or(0, |t| t.iter().map(|(_, e)| e.bytes as usize).sum())
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
    fn a_token_has_one_key_in_a_cache_and_another_in_the_next() {
        let (a, b) = (TokenCache::default(), TokenCache::default());
        assert_eq!(a.key_of("token"), a.key_of("token"));
        assert_ne!(a.key_of("token"), a.key_of("tokem"));
        assert_ne!(a.key_of("ab"), a.key_of("ab\0"));
        assert_ne!(a.key_of("token"), b.key_of("token"), "each cache draws its own key");
    }

    #[test]
    fn the_byte_count_follows_inserts_evictions_and_removals() {
        let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(100));
        assert_eq!(cache.stats().bytes, 0);
        let now = UnixTime::from_secs(1000);
        for i in 0..50 {
            cache.admit(&format!("t{i}"), &ctx(i, 2000, Some("gr_x")), now).unwrap();
        }
        assert!(cache.stats().bytes > 50 * SLOT_BYTES, "{}", cache.stats().bytes);
        assert_eq!(cache.stats().bytes, counted_one_by_one(&cache));
        cache.invalidate_grant(&GrantId::parse("gr_x").unwrap(), now);
        assert_eq!((cache.stats().bytes, cache.len()), (0, 0));

        // Past the bound, replaced, expired, invalidated, cleared.
        for i in 0..1000 {
            cache.admit(&format!("t{i}"), &ctx(i, 1000 + (i % 7) as i64 + 1, None), now).unwrap();
            assert_eq!(cache.stats().bytes, counted_one_by_one(&cache), "after {i} inserts");
        }
        cache.admit("t999", &ctx(1, 3000, None), now).unwrap();
        assert!(cache.get("t998", UnixTime::from_secs(1010)).is_none());
        cache.invalidate_token("t999", now);
        assert_eq!(cache.stats().bytes, counted_one_by_one(&cache));
        cache.clear();
        assert_eq!((cache.stats().bytes, cache.len()), (0, 0));
    }

    #[test]
    fn the_charge_makes_both_bounds_hold() {
        for (entries, bytes) in [
            (1, 1 << 20),
            (10, 1 << 20),
            (10_000, 8 << 20),
            (100_000, 32 << 20),
            (usize::MAX, 8 << 20),
            (10_000, usize::MAX),
            (usize::MAX, usize::MAX),
        ] {
            let config = TokenCacheConfig::default().with_max_entries(entries).with_max_bytes(bytes);
            let c = Charge::new(&config).unwrap();
            assert!(c.capacity() <= u64::MAX / 4, "{entries} {bytes}: the sums cannot overflow");
            // The lightest entry weighs the byte bound's share, the heaviest its bytes.
            assert!(c.capacity() / c.bytes <= entries as u64, "{entries} {bytes}: at most max_entries");
            assert!(c.capacity() / c.entries * c.unit <= bytes as u64, "{entries} {bytes}: at most max_bytes");
        }
        let none = |e, b| Charge::new(&TokenCacheConfig::default().with_max_entries(e).with_max_bytes(b)).is_none();
        assert!(none(0, 8 << 20) && none(10, SLOT_BYTES - 1), "no room: no table");
    }

    #[test]
    fn a_one_entry_cache_holds_its_one() {
        let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(1));
        let now = UnixTime::from_secs(1000);
        for i in 0..3 {
            cache.admit(&format!("t{i}"), &ctx(i, 2000, None), now).unwrap();
            assert!(cache.get(&format!("t{i}"), now).is_some(), "t{i}");
            assert_eq!(cache.len(), 1);
        }
        assert!(
            TokenCache::new(TokenCacheConfig::default().with_max_entries(0))
                .admit("t", &ctx(0, 2000, None), now)
                .is_ok()
        );
    }

    #[test]
    fn many_distinct_clients_are_charged_for_their_own_copies() {
        let cache = TokenCache::default();
        let now = UnixTime::from_secs(1000);
        let mut c = ctx(0, 2000, None);
        cache.admit("shared", &c, now).unwrap();
        let interned = cache.stats().bytes;
        for i in 0..INTERNED {
            c.client_id = ClientId::parse(&format!("client-{i}")).unwrap();
            cache.admit(&format!("t{i}"), &c, now).unwrap();
        }
        let before = cache.stats().bytes;
        cache.admit("own", &c, now).unwrap();
        assert!(cache.stats().bytes - before > interned + 100, "the client, scopes and issuer are counted");
        assert_eq!(cache.get("own", now).unwrap().client_id, c.client_id);
    }
}
