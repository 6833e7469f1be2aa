//! The token endpoint's per-address limiter beside `governor`'s keyed limiter, on the endpoint's
//! default quota (120 at once, 600 a minute), to decide whether the hand-written bucket stays.
//!
//! Timed: one address hammered (nearly every check refused, as in a flood from one address);
//! 100 000 addresses in turn, half IPv4 and half random IPv6, each checked once a round (on one
//! thread and split over two); and 1 000 000 in turn, past our `max_tracked`, where ours evicts
//! on every check while governor keeps all of them. Both read the clock once per check, the
//! same `Instant::now()`. Printed once, untimed: how many entries each holds after 1 000 000
//! IPv6 addresses at once, and after one subscriber's `/64` sends from 1 000 000 of its own.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use oauth_axum::bench::TokenLimiter;
use oauth_axum::{Limit, RateLimits};

const BURST: u32 = 120;
const PER_MINUTE: u32 = 600;

/// Ours with the default `max_tracked` (100 000): the bound is part of what is measured.
fn ours() -> TokenLimiter {
    ours_tracking(RateLimits::default().max_tracked)
}

fn ours_tracking(max_tracked: usize) -> TokenLimiter {
    TokenLimiter::new(RateLimits::default().with_token(Limit::new(BURST, PER_MINUTE)).with_max_tracked(max_tracked))
}

fn quota() -> Quota {
    Quota::per_minute(NonZeroU32::new(PER_MINUTE).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap())
}

/// Keyed on the address as given, as governor's keyed limiter is used out of the box.
fn governor() -> DefaultKeyedRateLimiter<IpAddr> {
    RateLimiter::keyed(quota())
}

fn ratelimit(c: &mut Criterion) {
    // `cargo test --benches` (the CI smoke run, unoptimised) passes no `--bench`, and
    // `cargo bench -- --test` passes `--test`: there a flood a tenth the size, against a table
    // a tenth the size, checks the same bound in a fraction of the time.
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    if smoke {
        entries_after_a_flood(100_000, 10_000)
    } else {
        entries_after_a_flood(1_000_000, 100_000)
    }

    let hot: IpAddr = "203.0.113.7".parse().unwrap();
    let mut g = c.benchmark_group("ratelimit/hot key");
    let (o, t) = (ours(), governor());
    g.bench_function("ours", |b| b.iter(|| o.check(black_box(hot), Instant::now())));
    g.bench_function("governor", |b| b.iter(|| t.check_key(black_box(&hot)).is_ok()));
    g.finish();

    let keys = addresses(100_000, true);
    cycling(c, "ratelimit/100 000 keys", &keys);

    let mut g = c.benchmark_group("ratelimit/100 000 keys, 2 threads");
    // One iteration is two checks at once, one on each thread, each thread on its own half.
    g.throughput(Throughput::Elements(2));
    let (o, t) = (ours(), governor());
    g.bench_function("ours", |b| b.iter_custom(|n| two_threads(n, &keys, |a| o.check(a, Instant::now()))));
    g.bench_function("governor", |b| b.iter_custom(|n| two_threads(n, &keys, |a| t.check_key(&a).is_ok())));
    g.finish();

    cycling(c, "ratelimit/1 000 000 keys, past max_tracked", &addresses(1_000_000, true));
}

/// Each key checked once a round, round after round.
fn cycling(c: &mut Criterion, name: &str, keys: &[IpAddr]) {
    let mut g = c.benchmark_group(name);
    let (o, t) = (ours(), governor());
    let mut i = 0;
    g.bench_function("ours", |b| b.iter(|| o.check(next(keys, &mut i), Instant::now())));
    let mut i = 0;
    g.bench_function("governor", |b| b.iter(|| t.check_key(&next(keys, &mut i)).is_ok()));
    g.finish();
}

fn next(keys: &[IpAddr], i: &mut usize) -> IpAddr {
    let key = keys[*i];
    *i = if *i + 1 == keys.len() { 0 } else { *i + 1 };
    key
}

/// `rounds` checks on each of two threads, each cycling over its half of `keys`; the wall time.
fn two_threads(rounds: u64, keys: &[IpAddr], check: impl Fn(IpAddr) -> bool + Sync) -> Duration {
    let (a, b) = keys.split_at(keys.len() / 2);
    let start = Instant::now();
    std::thread::scope(|s| {
        for half in [a, b] {
            let check = &check;
            s.spawn(move || {
                let mut i = 0;
                for _ in 0..rounds {
                    black_box(check(next(half, &mut i)));
                }
            });
        }
    });
    start.elapsed()
}

/// What each limiter holds after a flood of `n` addresses, printed once, outside the timed
/// loops; ours tracks at most `max_tracked`. Governor's clock is a fake one here, so that when
/// its sweep (`retain_recent`) runs is exact.
fn entries_after_a_flood(n: usize, max_tracked: usize) {
    let flood = addresses(n, false);
    let now = Instant::now();
    let o = ours_tracking(max_tracked);
    for a in &flood {
        o.check(*a, now);
    }
    assert!(o.tracked() <= max_tracked, "ours is bounded");
    let clock = FakeRelativeClock::default();
    let t = RateLimiter::dashmap_with_clock(quota(), clock.clone());
    for a in &flood {
        let _ = t.check_key(a);
    }
    let held = t.len();
    t.retain_recent();
    let swept_at_once = t.len();
    // A key that made one request is indistinguishable from a new one 200 ms later.
    clock.advance(Duration::from_secs(1));
    t.retain_recent();
    let swept_later = t.len();

    // One subscriber's /64 (2001:db8:1:2::/64), sending from `n` of its addresses.
    let prefix = u128::from("2001:db8:1:2::".parse::<Ipv6Addr>().unwrap());
    let mut rng = SplitMix64(7);
    let rotating: Vec<IpAddr> = (0..n).map(|_| IpAddr::V6(Ipv6Addr::from(prefix | u128::from(rng.next())))).collect();
    let o64 = ours_tracking(max_tracked);
    let ours_allowed = rotating.iter().filter(|a| o64.check(**a, now)).count();
    assert_eq!((o64.tracked(), ours_allowed), (1, BURST as usize), "one /64, one bucket");
    let t64 = RateLimiter::dashmap_with_clock(quota(), FakeRelativeClock::default());
    let theirs_allowed = rotating.iter().filter(|a| t64.check_key(a).is_ok()).count();

    println!("entries held after {n} distinct IPv6 addresses at once, each in its own /64:");
    row(&format!("ours (max_tracked {max_tracked}, least recently used evicted)"), &[o.tracked()]);
    row("governor, before any retain_recent", &[held]);
    row("governor, retain_recent at the same instant", &[swept_at_once]);
    row("governor, retain_recent 1 s later", &[swept_later]);
    println!("one /64 sending from {n} of its addresses: entries, allowed");
    row("ours (keyed per /64)", &[o64.tracked(), ours_allowed]);
    row("governor (keyed on the address as given)", &[t64.len(), theirs_allowed]);
    if cfg!(debug_assertions) {
        println!("  (an unoptimised build: a smoke run; the counts hold, the timings say nothing)");
    }
}

fn row(label: &str, counts: &[usize]) {
    let counts: String = counts.iter().map(|c| format!("{c:>10}")).collect();
    println!("  {label:<56}{counts}");
}

/// `n` distinct addresses, as a flood from many addresses brings them: with `ipv4`, every other
/// one an IPv4 address; the rest random IPv6 `/128`s, so in effect each in a `/64` of its own.
/// Seeded, so every run checks the same addresses.
fn addresses(n: usize, ipv4: bool) -> Vec<IpAddr> {
    let mut rng = SplitMix64(1);
    (0..n as u32)
        .map(|i| {
            if ipv4 && i % 2 == 0 {
                // Odd multiplier: a bijection on u32, so distinct for distinct i.
                IpAddr::from(i.wrapping_mul(0x9e37_79b1).to_be_bytes())
            } else {
                IpAddr::V6(Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())))
            }
        })
        .collect()
}

/// A small seeded generator (SplitMix64): random enough for addresses, and no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

criterion_group!(benches, ratelimit);
criterion_main!(benches);
