//! The verified-token cache (`mcp-guard`'s `TokenCache`) beside `quick_cache`'s and `moka`'s
//! sync caches, to decide which table holds the cached tokens.
//!
//! All three are keyed by the 128-bit keyed SipHash-1-3 of the token, computed on every call
//! as a request would (`TokenCache` does it inside, the crates are given `siphasher`'s), and
//! hold the same context a verified ES256 token yields, with its expiry checked on every hit.
//! The crates are bounded by a weigher that charges each entry its bytes, sized so that all
//! three hold the same number of tokens when full.
//!
//! Timed, side by side with the cold signature check of the same token: a hit, cycling over
//! every cached token; an insert into a full cache (the eviction path); hits from two threads
//! at once. Printed once, untimed: the bytes each allocates when bounded to 100 000 tokens and
//! given twice as many, counted by a counting allocator (`cap`) around the system one.
//! `--test` (as `cargo bench -- --test` passes it) fills the caches with a tenth as many.
#![allow(missing_docs, clippy::unwrap_used)]

use std::alloc::System;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use cap::Cap;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcp_guard::{AuthContext, LocalVerifier, TokenCache, TokenCacheConfig, TokenVerifier as _};
use oauth_benches::{TokenFixture, ready};
use oauth_core::SigningAlgorithm;
use oauth_core::UnixTime;
use oauth_core::{ClientId, GrantId, ScopeSet, UserId};
use siphasher::sip128::SipHasher13;

#[global_allocator]
static ALLOCATED: Cap<System> = Cap::new(System, usize::MAX);

/// Tokens held by a full cache in the timed cases: `TokenCacheConfig`'s default bound.
const HELD: usize = 10_000;

/// What the crates hold: the context and when the entry dies (the token's `exp`, or sooner).
#[derive(Clone)]
struct Cached {
    ctx: AuthContext,
    expires_at: i64,
}

/// The crates' tables hash the key again; it is already a keyed hash, so it passes through.
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

    fn write_u128(&mut self, n: u128) {
        // Truncation intended: the low half of a uniform 128-bit hash.
        self.0 = n as u64;
    }
}

type PassThroughState = BuildHasherDefault<PassThrough>;

/// Bytes an entry holds: the value in its slot plus its own strings, as the allocator rounds
/// them. The client id, scopes and issuer are shared with the verifier's context.
#[derive(Clone)]
struct ByteWeigher;

impl ByteWeigher {
    fn bytes(c: &Cached) -> u64 {
        let block = |n: usize| (n + 8).next_multiple_of(16).max(32);
        let shared = |len: usize| block(16 + len);
        let strings = shared(c.ctx.subject.as_str().len())
            + shared(c.ctx.token_id.len())
            + c.ctx.grant_id.as_ref().map_or(0, |g| shared(g.as_str().len()));
        (size_of::<u128>() + size_of::<Cached>() + strings) as u64
    }
}

impl quick_cache::Weighter<u128, Cached> for ByteWeigher {
    fn weight(&self, _key: &u128, c: &Cached) -> u64 {
        Self::bytes(c)
    }
}

type Quick = quick_cache::sync::Cache<u128, Cached, ByteWeigher, PassThroughState>;
type Moka = moka::sync::Cache<u128, Cached, PassThroughState>;

/// The three caches behind one face, each holding up to `n` tokens shaped like the sample.
trait Table: Sync {
    fn get(&self, token: &str, now: i64) -> Option<AuthContext>;
    fn admit(&self, token: &str, ctx: &AuthContext, now: i64);
    /// Finishes what the cache defers (moka's eviction), so that it is at its bound.
    fn settle(&self) {}
    fn len(&self) -> usize;
    /// The bytes the cache counts against its own bound, if it counts them.
    fn counted_bytes(&self) -> Option<usize> {
        None
    }
}

impl Table for TokenCache {
    fn get(&self, token: &str, now: i64) -> Option<AuthContext> {
        TokenCache::get(self, token, UnixTime::from_secs(now))
    }

    fn admit(&self, token: &str, ctx: &AuthContext, now: i64) {
        TokenCache::admit(self, token, ctx, UnixTime::from_secs(now)).unwrap();
    }

    fn len(&self) -> usize {
        TokenCache::len(self)
    }

    fn counted_bytes(&self) -> Option<usize> {
        Some(self.stats().bytes)
    }
}

/// A crate's cache with the keyed hash in front, as `TokenCache` would use it.
struct Keyed<C> {
    hasher: SipHasher13,
    cache: C,
}

impl<C> Keyed<C> {
    fn new(cache: C) -> Self {
        let seed = std::collections::hash_map::RandomState::new();
        let word = |n: u8| std::hash::BuildHasher::hash_one(&seed, n);
        Self { hasher: SipHasher13::new_with_keys(word(0), word(1)), cache }
    }

    fn key(&self, token: &str) -> u128 {
        self.hasher.hash(token.as_bytes()).as_u128()
    }
}

fn cached(ctx: &AuthContext) -> Cached {
    Cached { ctx: ctx.clone(), expires_at: ctx.expires_at.as_secs() }
}

impl Table for Keyed<Quick> {
    fn get(&self, token: &str, now: i64) -> Option<AuthContext> {
        let key = self.key(token);
        let c = self.cache.get(&key)?;
        if c.expires_at > now {
            return Some(c.ctx);
        }
        self.cache.remove(&key);
        None
    }

    fn admit(&self, token: &str, ctx: &AuthContext, _now: i64) {
        self.cache.insert(self.key(token), cached(ctx));
    }

    fn len(&self) -> usize {
        self.cache.len()
    }
}

impl Table for Keyed<Moka> {
    fn get(&self, token: &str, now: i64) -> Option<AuthContext> {
        let key = self.key(token);
        let c = self.cache.get(&key)?;
        if c.expires_at > now {
            return Some(c.ctx);
        }
        self.cache.invalidate(&key);
        None
    }

    fn admit(&self, token: &str, ctx: &AuthContext, _now: i64) {
        self.cache.insert(self.key(token), cached(ctx));
    }

    fn settle(&self) {
        self.cache.run_pending_tasks();
    }

    fn len(&self) -> usize {
        self.cache.entry_count() as usize
    }
}

/// The three, each bounded to `n` tokens shaped like `sample` (the crates by their weight:
/// every token's strings are as long as the sample's).
fn tables(n: usize, sample: &AuthContext) -> Vec<(&'static str, Box<dyn Table>)> {
    let weight = n as u64 * ByteWeigher::bytes(&cached(sample));
    let ours = TokenCache::new(TokenCacheConfig::default().with_max_entries(n).with_max_bytes(usize::MAX / 4));
    let quick = Quick::with_options(
        quick_cache::OptionsBuilder::new().estimated_items_capacity(n).weight_capacity(weight).build().unwrap(),
        ByteWeigher,
        PassThroughState::default(),
        Default::default(),
    );
    let moka = moka::sync::Cache::builder()
        .max_capacity(weight)
        .weigher(|_, c| u32::try_from(ByteWeigher::bytes(c)).unwrap_or(u32::MAX))
        .build_with_hasher(PassThroughState::default());
    vec![
        ("TokenCache", Box::new(ours)),
        ("quick_cache", Box::new(Keyed::new(quick))),
        ("moka", Box::new(Keyed::new(moka))),
    ]
}

/// `n` tokens as long as `token`, and a context for each with its own subject, token id and
/// grant, as a verifier yields them. With `fresh`, the client id and scopes are parsed again
/// for each, as the verifier does; otherwise they are `sample`'s, shared.
fn tokens(token: &str, sample: &AuthContext, n: usize, fresh: bool) -> Vec<(String, AuthContext)> {
    (0..n).map(|i| one_token(token, sample, i, fresh)).collect()
}

fn one_token(token: &str, sample: &AuthContext, i: usize, fresh: bool) -> (String, AuthContext) {
    let mut c = sample.clone();
    c.subject = UserId::parse(&format!("user-{i:06}")).unwrap();
    c.token_id = format!("{i:022}").into();
    c.grant_id = Some(GrantId::generate());
    if fresh {
        c.client_id = ClientId::parse(sample.client_id.as_str()).unwrap();
        c.scopes = ScopeSet::parse(&sample.scopes.to_string()).unwrap();
    }
    (format!("{}{i:08}", &token[..token.len() - 8]), c)
}

fn cache(c: &mut Criterion) {
    let smoke = std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(TokenFixture::memory(SigningAlgorithm::Es256));
    let cold = LocalVerifier::new(f.server.clone()).without_cache();
    let verified = ready(cold.verify(&f.token)).unwrap();
    let now = verified.expires_at.as_secs() - 600;
    // The shape of every token below: its own subject, token id and grant id.
    let sample = one_token(&f.token, &verified, 0, false).1;

    memory(&f.token, &sample, now, if smoke { 10_000 } else { 100_000 });

    let held = tokens(&f.token, &sample, HELD, false);
    // Twice as many newcomers as the cache holds: each insert is of a token not held.
    let newcomers = tokens(&f.token, &sample, 2 * HELD, false);
    let newcomers: Vec<_> = newcomers.into_iter().map(|(t, c)| (format!("new-{t}"), c)).collect();

    let mut g = c.benchmark_group("cache/hit, 10 000 tokens held, in turn");
    g.bench_function("cold check (ES256, uncached)", |b| b.iter(|| ready(cold.verify(black_box(&f.token))).unwrap()));
    for (name, t) in tables(HELD, &sample) {
        let held = fill(&*t, &held, now);
        let mut i = 0;
        g.bench_function(name, |b| b.iter(|| t.get(held[next(held.len(), &mut i)], now).unwrap()));
    }
    g.finish();

    let mut g = c.benchmark_group("cache/insert into a full cache");
    for (name, t) in tables(HELD, &sample) {
        let _ = fill(&*t, &held, now);
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                let (token, ctx) = &newcomers[next(newcomers.len(), &mut i)];
                t.admit(token, ctx, now);
            })
        });
        t.settle();
        assert!(t.len() <= HELD, "{name} holds {} after the inserts", t.len());
    }
    g.finish();

    let mut g = c.benchmark_group("cache/hit, 2 threads");
    // One iteration is two hits at once, one on each thread, each thread on its own half.
    g.throughput(Throughput::Elements(2));
    for (name, t) in tables(HELD, &sample) {
        let held = fill(&*t, &held, now);
        g.bench_function(name, |b| b.iter_custom(|n| two_threads(n, &held, |token| t.get(token, now).is_some())));
    }
    g.finish();
}

/// Admits every token; the ones held. A sharded cache bounds each shard to its share, and
/// tokens fall unevenly on shards, so a few may go although the whole is not full.
fn fill<'a>(t: &dyn Table, tokens: &'a [(String, AuthContext)], now: i64) -> Vec<&'a str> {
    for (token, ctx) in tokens {
        t.admit(token, ctx, now);
    }
    t.settle();
    let held: Vec<&str> = tokens.iter().map(|(t, _)| t.as_str()).filter(|token| t.get(token, now).is_some()).collect();
    assert!(held.len() >= tokens.len() * 95 / 100, "{} of {} held", held.len(), tokens.len());
    assert_eq!(held.len(), t.len());
    held
}

fn next(len: usize, i: &mut usize) -> usize {
    let at = *i;
    *i = if at + 1 == len { 0 } else { at + 1 };
    at
}

/// `rounds` hits on each of two threads, each cycling over its half of `tokens`; the wall time.
fn two_threads(rounds: u64, tokens: &[&str], hit: impl Fn(&str) -> bool + Sync) -> Duration {
    let (a, b) = tokens.split_at(tokens.len() / 2);
    let start = Instant::now();
    std::thread::scope(|s| {
        for half in [a, b] {
            let hit = &hit;
            s.spawn(move || {
                let mut i = 0;
                for _ in 0..rounds {
                    assert!(black_box(hit(half[next(half.len(), &mut i)])));
                }
            });
        }
    });
    start.elapsed()
}

/// Bytes each cache allocates when full, bounded to `n` tokens and given twice as many (so it
/// also holds whatever it keeps of the evicted ones), printed once: with the contexts kept by
/// the caller, so shared (what the table itself costs), and with contexts of their own, parsed
/// per token as the verifier does and dropped by the caller once admitted (what the cache
/// costs in use). Beside them, `TokenCache`'s own count, which `max_bytes` bounds.
fn memory(token: &str, sample: &AuthContext, now: i64, n: usize) {
    println!("bytes allocated by a cache bounded to {n} tokens, given {}, per token held:", 2 * n);
    println!("  {:<14}{:>8}{:>14}{:>10}{:>24}", "", "held", "table alone", "in use", "the cache's own count");
    for at in 0..3 {
        let kept = tokens(token, sample, 2 * n, false);
        let before = ALLOCATED.allocated();
        let (name, t) = tables(n, sample).swap_remove(at);
        for (token, ctx) in &kept {
            t.admit(token, ctx, now);
        }
        t.settle();
        let alone = ALLOCATED.allocated().saturating_sub(before) as f64 / t.len() as f64;
        drop((t, kept));

        let before = ALLOCATED.allocated();
        let (_, t) = tables(n, sample).swap_remove(at);
        for i in 0..2 * n {
            let (token, ctx) = one_token(token, sample, i, true);
            t.admit(&token, &ctx, now);
        }
        t.settle();
        let held = t.len();
        let in_use = ALLOCATED.allocated().saturating_sub(before) as f64 / held as f64;
        let counted = t.counted_bytes().map_or_else(|| "-".to_owned(), |b| format!("{:.0}", b as f64 / held as f64));
        println!("  {name:<14}{held:>8}{alone:>14.0}{in_use:>10.0}{counted:>24}");
    }
}

criterion_group!(benches, cache);
criterion_main!(benches);
