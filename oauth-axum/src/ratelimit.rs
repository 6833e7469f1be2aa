//! Limits for what an attacker would hammer: registration (filling the client table), the
//! authorization endpoint (pending rows, flow events, metadata-document fetches), sign-in
//! (guessing passwords) and the token endpoints.
//!
//! Per-address limits are token buckets keyed on the client's address: an IPv4 address, or an
//! IPv6 `/64` (one subscriber's prefix; keying on the `/128` would give every host 2^64
//! buckets). The address is the socket's peer, unless that peer is in a configured trusted
//! proxy range, in which case it is the last address in `X-Forwarded-For` that is not itself
//! a trusted proxy. Without a trusted proxy the header is ignored: anyone can write it.
//!
//! Sign-in is also throttled per account, whatever the source address: after a few free
//! failures each further one blocks the account for twice as long as the one before, up to a
//! cap, so that a botnet gets a handful of guesses per account and the real user is never
//! locked out for longer than the cap. A successful sign-in clears the account's record.
//!
//! Registration has an hourly quota per address and one for the whole server, so that the
//! client table grows at a bounded rate even from many addresses.
//!
//! Every table here is bounded: when full, the least recently used entries are evicted (a
//! burst of new keys forgets the oldest, never the whole table).
//!
//! Several replicas share the limits through the store ([`oauth_core::LimitStore`], turned on
//! with `AuthRouter::with_shared_limits`): each request is first counted here, so that a flood
//! is refused without a database round trip, then in the store's bucket of the same shape,
//! which every replica takes from, so that N replicas do not give a stranger N times the
//! guesses. Shared: registration and its hourly quotas, `/authorize` and sign-in per address,
//! and the per-account sign-in backoff. The token-endpoint limit stays per replica: it guards
//! the replica's own processor time (the secrets it checks are random and 256 bits long, so
//! there is nothing to guess), and a database write on every token request would halve the
//! throughput it guards. A store that fails does not refuse anyone: the limits of this
//! replica still hold, and the request itself then meets the same failing store.
//!
//! The buckets are written here, not taken from `governor`, for that bound: governor's keyed
//! state grows with every new key until the application sweeps it, with nothing to cap it
//! between sweeps, and the `/64` key would still be ours to build. The `ratelimit` bench in
//! `oauth-benches` weighs the two (see its README): governor checks faster with many addresses,
//! both take well under a microsecond beside a token request, and only ours holds at most
//! `max_tracked` entries however many addresses come.
//!
//! ```
//! use oauth_axum::{IpRange, RateLimits};
//!
//! let proxy: IpRange = "10.0.0.0/8".parse().unwrap();
//! let limits = RateLimits::default().with_trusted_proxies([proxy]);
//! assert!(limits.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use oauth_core::{BucketRate, Clock as _, LimitStore, SystemClock, UnixTime};

/// A token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limit {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests allowed per minute, sustained.
    pub per_minute: u32,
}

impl Limit {
    /// A limit of `burst` at once and `per_minute` sustained.
    pub const fn new(burst: u32, per_minute: u32) -> Self {
        Self { burst, per_minute }
    }
}

/// Hourly registration quotas: how many clients one address, and everyone together, may
/// register per hour (as buckets: the full quota at once, refilled over the hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrationQuota {
    /// Registrations per address per hour.
    pub per_address_per_hour: u32,
    /// Registrations per hour from all addresses together.
    pub total_per_hour: u32,
}

impl RegistrationQuota {
    /// A quota of `per_address_per_hour` for each address and `total_per_hour` in all.
    pub const fn new(per_address_per_hour: u32, total_per_hour: u32) -> Self {
        Self { per_address_per_hour, total_per_hour }
    }
}

/// Per-account sign-in backoff: `free_failures` wrong passwords in a row cost nothing; each
/// further one blocks the account for `first_block`, doubling, up to `max_block`. A success
/// clears the record, and so does `forget_after` without failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignInBackoff {
    /// Failures in a row before the first block.
    pub free_failures: u32,
    /// The first block.
    pub first_block: Duration,
    /// The longest block: the worst a stranger can do to the real user.
    pub max_block: Duration,
    /// A record without a failure for this long is dropped.
    pub forget_after: Duration,
}

impl SignInBackoff {
    /// A backoff with `free_failures` free, then blocks from `first_block` doubling up to
    /// `max_block`; records are forgotten after a day without failures.
    pub const fn new(free_failures: u32, first_block: Duration, max_block: Duration) -> Self {
        Self { free_failures, first_block, max_block, forget_after: Duration::from_secs(86_400) }
    }

    /// How long the account is blocked after its `failures`th failure in a row.
    fn block_after(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free_failures)?.checked_sub(1)?;
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        Some(self.first_block.saturating_mul(factor).min(self.max_block))
    }
}

/// Rate limits. `Default` is generous for real clients and tight for scripts, per address:
/// registration 20 at once then 30 a minute, at most 100 an hour, and 1000 an hour from
/// everyone together; `/authorize` 30 then 30 a minute; sign-in 10 then 10 a minute; token
/// requests 120 then 600 a minute. Per account: 5 free wrong passwords, then blocks from 2 s
/// doubling up to 15 min.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// `POST /register`, per address.
    pub registration: Limit,
    /// Hourly registration quotas.
    pub registration_quota: RegistrationQuota,
    /// `GET /authorize`, per address.
    pub authorize: Limit,
    /// `POST …/sign-in`, per address.
    pub sign_in: Limit,
    /// Sign-in failures per account, from any address.
    pub sign_in_backoff: SignInBackoff,
    /// `POST /token`, `/revoke`, `/introspect`.
    pub token: Limit,
    /// Proxies whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: Vec<IpRange>,
    /// Most keys each table tracks; beyond it the least recently used are evicted.
    pub max_tracked: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            registration: Limit::new(20, 30),
            registration_quota: RegistrationQuota::new(100, 1000),
            authorize: Limit::new(30, 30),
            sign_in: Limit::new(10, 10),
            sign_in_backoff: SignInBackoff::new(5, Duration::from_secs(2), Duration::from_secs(15 * 60)),
            token: Limit::new(120, 600),
            trusted_proxies: Vec::new(),
            max_tracked: 100_000,
        }
    }
}

impl RateLimits {
    /// Believes `X-Forwarded-For` from these proxies (your reverse proxy or tunnel): single
    /// addresses or CIDR ranges. Default: none. Risk: a proxy listed here that passes on a
    /// client's own `X-Forwarded-For` lets that client choose the address it is limited as.
    #[must_use]
    pub fn with_trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<IpRange>,
    {
        self.trusted_proxies = proxies.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the per-address registration limit.
    #[must_use]
    pub fn with_registration(mut self, limit: Limit) -> Self {
        self.registration = limit;
        self
    }

    /// Sets the hourly registration quotas. Default 100 per address, 1000 in all. Claude
    /// registers a new client on every fresh connection, from a few egress addresses: raise
    /// the per-address quota for a busy server used from claude.ai.
    #[must_use]
    pub fn with_registration_quota(mut self, quota: RegistrationQuota) -> Self {
        self.registration_quota = quota;
        self
    }

    /// Sets the `/authorize` limit.
    #[must_use]
    pub fn with_authorize(mut self, limit: Limit) -> Self {
        self.authorize = limit;
        self
    }

    /// Sets the per-address sign-in limit.
    #[must_use]
    pub fn with_sign_in(mut self, limit: Limit) -> Self {
        self.sign_in = limit;
        self
    }

    /// Sets the per-account sign-in backoff. A longer `max_block` slows guessing further and
    /// lets a stranger keep the real user waiting longer.
    #[must_use]
    pub fn with_sign_in_backoff(mut self, backoff: SignInBackoff) -> Self {
        self.sign_in_backoff = backoff;
        self
    }

    /// Sets the token-endpoint limit.
    #[must_use]
    pub fn with_token(mut self, limit: Limit) -> Self {
        self.token = limit;
        self
    }

    /// Sets how many keys each table tracks (default 100 000, a few MiB).
    #[must_use]
    pub fn with_max_tracked(mut self, n: usize) -> Self {
        self.max_tracked = n.max(1);
        self
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// The range of `addr`'s first `prefix` bits; `None` when `prefix` is longer than the
    /// address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then(|| Self { addr: mask(addr, prefix), prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl From<IpAddr> for IpRange {
    fn from(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        Self { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }
}

impl std::str::FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpRangeError(s.chars().take(64).collect());
        match s.trim().split_once('/') {
            None => s.trim().parse::<IpAddr>().map(Self::from).map_err(|_| bad()),
            Some((a, p)) => {
                let addr = a.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
                Self::new(addr, p.parse().map_err(|_| bad())?).ok_or_else(bad)
            }
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A string that is neither an address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRangeError(String);

impl std::fmt::Display for IpRangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not an IP address or CIDR range (such as 10.0.0.0/8)", self.0)
    }
}

impl std::error::Error for IpRangeError {}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// The key an address is limited under: IPv4 as is, IPv6 by its `/64`.
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => mask(v6, 64),
    }
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Registration,
    /// The per-address hourly registration quota (counted with `Registration`).
    RegistrationHourly,
    Authorize,
    SignIn,
    Token,
}

impl Class {
    /// The prefix of the class's keys in the shared store.
    fn key_prefix(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::RegistrationHourly => "registration_hourly",
            Self::Authorize => "authorize",
            Self::SignIn => "sign_in",
            Self::Token => "token",
        }
    }
}

/// The store key of the server-wide registration quota.
const REGISTRATION_TOTAL_KEY: &str = "registration_total";

/// Why a request was refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) wait: Duration,
    /// The limit that refused it.
    pub(crate) class: Class,
    /// The server-wide registration quota, not this address's.
    pub(crate) total: bool,
    /// The first refusal since the key was last allowed: worth a flow event.
    pub(crate) first: bool,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    limits: RateLimits,
    buckets: Mutex<Lru<(Class, IpAddr), Bucket>>,
    registrations: Mutex<Bucket>,
    accounts: Mutex<Lru<String, Account>>,
    warned_forwarded: AtomicBool,
    /// The limits every replica shares, when there are several.
    shared: Option<Arc<dyn LimitStore>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    refused: bool,
    /// The shared bucket of the same key refused the last request: one flow event per run.
    shared_refused: bool,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, at: now, refused: false, shared_refused: false }
    }

    /// Takes one token; `Err` carries the wait and whether this is the first refusal.
    fn take(&mut self, burst: f64, per_sec: f64, now: Instant) -> Result<(), (Duration, bool)> {
        let refilled = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_sec).min(burst);
        self.at = now;
        if refilled >= 1.0 {
            self.tokens = refilled - 1.0;
            self.refused = false;
            Ok(())
        } else {
            self.tokens = refilled;
            let first = !self.refused;
            self.refused = true;
            Err((Duration::from_secs_f64(((1.0 - refilled) / per_sec).ceil().max(1.0)), first))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Account {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
    reported: bool,
}

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        let cap = limits.max_tracked.max(1);
        let total = f64::from(limits.registration_quota.total_per_hour.max(1));
        Self {
            buckets: Mutex::new(Lru::new(cap)),
            registrations: Mutex::new(Bucket::full(total, Instant::now())),
            accounts: Mutex::new(Lru::new(cap)),
            limits,
            warned_forwarded: AtomicBool::new(false),
            shared: None,
        }
    }

    /// Also counts every limit but the token endpoint's in `store`, which every replica shares.
    pub(crate) fn with_shared(mut self, store: Option<Arc<dyn LimitStore>>) -> Self {
        self.shared = store;
        self
    }

    /// The store the limits are shared through, if any.
    pub(crate) fn shared(&self) -> Option<&Arc<dyn LimitStore>> {
        self.shared.as_ref()
    }

    /// Counts one request of `class` from `addr` here and then, when the limits are shared, in
    /// the store every replica takes from.
    pub(crate) async fn admit(&self, class: Class, addr: IpAddr) -> Result<(), Refusal> {
        self.check(class, addr, Instant::now())?;
        let Some(store) = self.shared.as_ref().filter(|_| class != Class::Token) else { return Ok(()) };
        let key = limit_key(addr);
        let now_ms = unix_ms();
        self.take_shared(store, class, &format!("{}:{key}", class.key_prefix()), addr, false, now_ms).await?;
        if class == Class::Registration {
            let hourly = Class::RegistrationHourly;
            self.take_shared(store, hourly, &format!("{}:{key}", hourly.key_prefix()), addr, false, now_ms).await?;
            self.take_shared(store, class, REGISTRATION_TOTAL_KEY, addr, true, now_ms).await?;
        }
        Ok(())
    }

    async fn take_shared(
        &self,
        store: &Arc<dyn LimitStore>,
        class: Class,
        key: &str,
        addr: IpAddr,
        total: bool,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let rate = if total {
            let n = self.limits.registration_quota.total_per_hour.max(1);
            BucketRate::new(n, f64::from(n) / 3600.0)
        } else {
            let (burst, per_sec) = self.rate(class);
            BucketRate::new(burst as u32, per_sec)
        };
        let wait = match store.take_token(key, rate, now_ms).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, class = ?class, "the shared rate limit could not be read; this replica's own limit applies");
                None
            }
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (burst, _) = self.rate(class);
        let local = buckets.entry((class, limit_key(addr)), Instant::now(), || Bucket::full(burst, Instant::now()));
        let first = !local.shared_refused;
        local.shared_refused = wait.is_some();
        match wait {
            None => Ok(()),
            Some(wait) => Err(Refusal { wait, class, total, first }),
        }
    }

    /// (burst, refill per second) of a class.
    fn rate(&self, class: Class) -> (f64, f64) {
        let per_minute = |l: Limit| (f64::from(l.burst.max(1)), f64::from(l.per_minute.max(1)) / 60.0);
        match class {
            Class::Registration => per_minute(self.limits.registration),
            Class::RegistrationHourly => {
                let n = f64::from(self.limits.registration_quota.per_address_per_hour.max(1));
                (n, n / 3600.0)
            }
            Class::Authorize => per_minute(self.limits.authorize),
            Class::SignIn => per_minute(self.limits.sign_in),
            Class::Token => per_minute(self.limits.token),
        }
    }

    /// Counts one request of `class` from `addr`. Registration also counts against the hourly
    /// quotas of the address and of the whole server.
    pub(crate) fn check(&self, class: Class, addr: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.take(class, addr, now)?;
        if class == Class::Registration {
            self.take(Class::RegistrationHourly, addr, now)?;
            let n = f64::from(self.limits.registration_quota.total_per_hour.max(1));
            let mut total = self.registrations.lock().unwrap_or_else(|p| p.into_inner());
            total.take(n, n / 3600.0, now).map_err(|(wait, first)| Refusal { wait, class, total: true, first })?;
        }
        Ok(())
    }

    fn take(&self, class: Class, addr: IpAddr, now: Instant) -> Result<(), Refusal> {
        let (burst, per_sec) = self.rate(class);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry((class, limit_key(addr)), now, || Bucket::full(burst, now));
        bucket.take(burst, per_sec, now).map_err(|(wait, first)| Refusal { wait, class, total: false, first })
    }

    /// [`Self::account_blocked`], through the shared store when there is one.
    pub(crate) async fn account_block(&self, username: &str) -> Option<(Duration, bool)> {
        let Some(store) = self.shared.as_ref() else { return self.account_blocked(username, Instant::now()) };
        let now = SystemClock.now();
        match store.blocked(&shared_account_key(username), now).await {
            Ok(block) => block.map(|(until, first)| (secs_between(now, until), first)),
            Err(e) => {
                tracing::warn!(error = %e, "the shared sign-in throttle could not be read; this replica's applies");
                self.account_blocked(username, Instant::now())
            }
        }
    }

    /// [`Self::account_failed`], through the shared store when there is one.
    pub(crate) async fn account_failure(&self, username: &str) {
        let local = self.account_failed(username, Instant::now());
        let Some(store) = self.shared.as_ref() else { return };
        let backoff = self.limits.sign_in_backoff;
        let block_after = move |n: u32| backoff.block_after(n);
        if let Err(e) = store
            .record_failure(&shared_account_key(username), SystemClock.now(), backoff.forget_after, &block_after)
            .await
        {
            tracing::warn!(error = %e, blocks = ?local, "a sign-in failure could not be counted in the shared throttle");
        }
    }

    /// [`Self::account_succeeded`], through the shared store when there is one.
    pub(crate) async fn account_success(&self, username: &str) {
        self.account_succeeded(username);
        let Some(store) = self.shared.as_ref() else { return };
        if let Err(e) = store.clear_failures(&shared_account_key(username)).await {
            tracing::warn!(error = %e, "a sign-in success could not clear the shared throttle");
        }
    }

    /// Forgets, in the shared store, buckets that are full again and accounts idle for the
    /// backoff's `forget_after`, and keeps each table within `max_tracked`.
    pub(crate) async fn sweep_shared(&self) {
        let Some(store) = &self.shared else { return };
        let now = SystemClock.now();
        let max = self.limits.max_tracked as u64;
        match store.sweep_limits(unix_ms(), now.minus(self.limits.sign_in_backoff.forget_after), max).await {
            Ok(n) => tracing::debug!(rows = n, "swept the shared limits"),
            Err(e) => tracing::warn!(error = %e, "sweeping the shared limits failed; retrying at the next tick"),
        }
    }

    /// When the account is blocked: how long it still is, and whether this is the first
    /// attempt refused in this block.
    pub(crate) fn account_blocked(&self, username: &str, now: Instant) -> Option<(Duration, bool)> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let key = account_key(username);
        let a = accounts.get_mut(&key, now)?;
        let until = a.blocked_until.filter(|u| *u > now)?;
        let first = !a.reported;
        a.reported = true;
        Some((until - now, first))
    }

    /// Records a wrong password for the account; returns the block it now starts, if any.
    pub(crate) fn account_failed(&self, username: &str, now: Instant) -> Option<Duration> {
        let backoff = self.limits.sign_in_backoff;
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let a = accounts.entry(account_key(username), now, || Account {
            failures: 0,
            last_failure: now,
            blocked_until: None,
            reported: false,
        });
        if now.saturating_duration_since(a.last_failure) > backoff.forget_after {
            a.failures = 0;
        }
        a.failures = a.failures.saturating_add(1);
        a.last_failure = now;
        let block = backoff.block_after(a.failures)?;
        a.blocked_until = Some(now + block);
        a.reported = false;
        Some(block)
    }

    /// How many per-address buckets are held.
    #[cfg(any(test, feature = "bench-internals"))]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A successful sign-in clears the account's record.
    pub(crate) fn account_succeeded(&self, username: &str) {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).remove(&account_key(username));
    }

    /// The client's address: the peer, or behind a trusted proxy the last untrusted address
    /// of `X-Forwarded-For`.
    pub(crate) fn client_addr(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        let trusted = |ip: &IpAddr| self.limits.trusted_proxies.iter().any(|r| r.contains(*ip));
        if !trusted(&peer) {
            if self.limits.trusted_proxies.is_empty()
                && peer.is_loopback()
                && headers.contains_key("x-forwarded-for")
                && !self.warned_forwarded.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    "X-Forwarded-For arrives from the loopback peer {peer} but no proxy is trusted: every visitor \
                     shares one rate-limit bucket. If a reverse proxy or tunnel runs on this host, trust it \
                     (RateLimits::with_trusted_proxies, the example's --trusted-proxy 127.0.0.1)"
                );
            }
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .take(64)
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        Some(forwarded.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer))
    }
}

/// Usernames as the throttle counts them: trimmed, case-folded, bounded.
fn account_key(username: &str) -> String {
    username.trim().chars().take(256).flat_map(char::to_lowercase).collect()
}

/// The account's key in the shared store: a SHA-256 of [`account_key`], so that the names
/// strangers try are not kept as they were typed, and every key has one length.
fn shared_account_key(username: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, account_key(username).as_bytes());
    let hex: String = digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("account:{hex}")
}

/// Milliseconds since the epoch, as the shared buckets count time.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time from `now` to `until`, at least a second.
fn secs_between(now: UnixTime, until: UnixTime) -> Duration {
    Duration::from_secs(u64::try_from(until.seconds_since(now)).unwrap_or(0).max(1))
}

/// A map of at most `cap` entries that evicts the least recently used eighth when full.
#[derive(Debug)]
struct Lru<K, V> {
    cap: usize,
    map: HashMap<K, (Instant, V)>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    fn new(cap: usize) -> Self {
        Self { cap, map: HashMap::new() }
    }

    fn get_mut(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        let (seen, v) = self.map.get_mut(key)?;
        *seen = now;
        Some(v)
    }

    fn entry(&mut self, key: K, now: Instant, new: impl FnOnce() -> V) -> &mut V {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.evict();
        }
        let (seen, v) = self.map.entry(key).or_insert_with(|| (now, new()));
        *seen = now;
        v
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Drops the least recently used eighth (at least one): amortised O(1) per insert.
    fn evict(&mut self) {
        let n = (self.map.len() / 8).max(1);
        let mut seen: Vec<Instant> = self.map.values().map(|(s, _)| *s).collect();
        let (_, cutoff, _) = seen.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        let mut left = n;
        self.map.retain(|_, (s, _)| {
            if left > 0 && *s <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
    }

    #[cfg(any(test, feature = "bench-internals"))]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let l = Limiter::new(RateLimits::default().with_sign_in(Limit::new(3, 6)));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(l.check(Class::SignIn, a, t0).is_ok());
        }
        let r = l.check(Class::SignIn, a, t0).unwrap_err();
        assert_eq!(r.wait, Duration::from_secs(10), "6 a minute: one every 10 s");
        assert!(r.first);
        assert!(!l.check(Class::SignIn, a, t0).unwrap_err().first, "one event per refusal run");
        assert!(l.check(Class::SignIn, ip("192.0.2.2"), t0).is_ok(), "other addresses are not affected");
        assert!(l.check(Class::Token, a, t0).is_ok(), "other classes are not affected");
        assert!(l.check(Class::SignIn, a, t0 + Duration::from_secs(10)).is_ok());
        assert!(l.check(Class::SignIn, a, t0 + Duration::from_secs(11)).is_err());
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let l = Limiter::new(RateLimits::default().with_authorize(Limit::new(2, 1)));
        let t0 = Instant::now();
        assert!(l.check(Class::Authorize, ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(Class::Authorize, ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0).is_ok());
        assert!(l.check(Class::Authorize, ip("2001:db8:1:2:abcd::9"), t0).is_err(), "one /64, one bucket");
        assert!(l.check(Class::Authorize, ip("2001:db8:1:3::1"), t0).is_ok(), "the next /64 is another subscriber");
        assert_eq!(limit_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"), "mapped IPv4 is IPv4");
        assert_eq!(limit_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn a_full_table_evicts_the_least_recent_not_everything() {
        let l = Limiter::new(RateLimits::default().with_sign_in(Limit::new(1, 1)).with_max_tracked(16));
        let t0 = Instant::now();
        let hammered = ip("198.51.100.1");
        assert!(l.check(Class::SignIn, hammered, t0).is_ok());
        for i in 0..200u32 {
            let t = t0 + Duration::from_millis(u64::from(i) + 1);
            // The attacker keeps its own bucket recent while spraying new addresses...
            assert!(l.check(Class::SignIn, hammered, t).is_err(), "round {i}: the limit must hold");
            let spray = IpAddr::from([203, 0, (i >> 8) as u8, i as u8]);
            assert!(l.check(Class::SignIn, spray, t).is_ok());
            assert!(l.tracked() <= 16, "bounded");
        }
        // ...and an address not seen since the start was forgotten, not the whole table.
        let mut lru = Lru::new(4);
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            lru.entry(k, t0 + Duration::from_secs(i as u64), || i);
        }
        lru.get_mut(&"a", t0 + Duration::from_secs(9));
        lru.entry("e", t0 + Duration::from_secs(10), || 4);
        assert_eq!(lru.len(), 4);
        assert!(lru.get_mut(&"b", t0).is_none(), "the least recently used is gone");
        assert!(lru.get_mut(&"a", t0).is_some(), "a recently used one stays");
    }

    #[test]
    fn accounts_back_off_exponentially_up_to_a_cap_and_success_resets() {
        let l = Limiter::new(RateLimits::default());
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(l.account_failed("Alice", t0), None, "failure {i} is free");
        }
        assert_eq!(l.account_failed(" alice ", t0), Some(Duration::from_secs(2)), "one account, however written");
        assert_eq!(l.account_blocked("ALICE", t0), Some((Duration::from_secs(2), true)));
        assert_eq!(l.account_blocked("alice", t0).map(|b| b.1), Some(false), "reported once per block");
        assert_eq!(l.account_blocked("alice", t0 + Duration::from_secs(2)), None, "the block ends");
        assert_eq!(l.account_failed("alice", t0), Some(Duration::from_secs(4)));
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = l.account_failed("alice", t0).unwrap();
        }
        assert_eq!(last, Duration::from_secs(15 * 60), "capped: never locked out for longer");
        assert!(l.account_blocked("bob", t0).is_none(), "other accounts are not affected");
        l.account_succeeded("alice");
        assert!(l.account_blocked("alice", t0).is_none());
        assert_eq!(l.account_failed("alice", t0), None, "a success starts the count again");
    }

    #[test]
    fn registration_has_a_server_wide_hourly_quota() {
        let l = Limiter::new(RateLimits::default().with_registration_quota(RegistrationQuota::new(2, 3)));
        let t0 = Instant::now();
        assert!(l.check(Class::Registration, ip("192.0.2.1"), t0).is_ok());
        assert!(l.check(Class::Registration, ip("192.0.2.1"), t0).is_ok());
        let r = l.check(Class::Registration, ip("192.0.2.1"), t0).unwrap_err();
        assert!(!r.total && r.class == Class::RegistrationHourly);
        assert_eq!(r.wait, Duration::from_secs(1800), "two an hour: one every 30 min");
        assert!(l.check(Class::Registration, ip("192.0.2.2"), t0).is_ok());
        let r = l.check(Class::Registration, ip("192.0.2.3"), t0).unwrap_err();
        assert!(r.total, "three an hour from everyone");
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let peer: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let untrusting = Limiter::new(RateLimits::default());
        assert_eq!(untrusting.client_addr(Some(peer), &h), Some(ip("10.0.0.1")), "the header is ignored");
        let trusting = Limiter::new(RateLimits::default().with_trusted_proxies(vec![ip("10.0.0.1"), ip("10.0.0.2")]));
        assert_eq!(trusting.client_addr(Some(peer), &h), Some(ip("203.0.113.9")));
        let other: SocketAddr = "198.51.100.7:1234".parse().unwrap();
        assert_eq!(trusting.client_addr(Some(other), &h), Some(ip("198.51.100.7")), "only from the proxy");
        assert_eq!(trusting.client_addr(None, &h), None);
        let range: IpRange = "10.0.0.0/30".parse().unwrap();
        let cidr = Limiter::new(RateLimits::default().with_trusted_proxies([range]));
        assert_eq!(cidr.client_addr(Some(peer), &h), Some(ip("203.0.113.9")), "a CIDR range is trusted whole");
        let outside: SocketAddr = "10.0.0.4:1".parse().unwrap();
        assert_eq!(cidr.client_addr(Some(outside), &h), Some(ip("10.0.0.4")));
    }

    #[test]
    fn ranges_parse_as_cidr_or_single_addresses() {
        let r: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(r.contains(ip("2001:db8:ffff::1")) && !r.contains(ip("2001:db9::1")));
        assert!(!r.contains(ip("192.0.2.1")));
        let one: IpRange = "192.0.2.1".parse().unwrap();
        assert!(one.contains(ip("192.0.2.1")) && !one.contains(ip("192.0.2.2")));
        assert!(one.contains(ip("::ffff:192.0.2.1")));
        assert_eq!("10.9.8.7/8".parse::<IpRange>().unwrap().to_string(), "10.0.0.0/8");
        assert!("0.0.0.0/0".parse::<IpRange>().unwrap().contains(ip("203.0.113.1")));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }
}
