//! Per-address rate limits for the endpoints an attacker would hammer: registration (filling
//! the client table), sign-in (guessing passwords) and the token endpoints.
//!
//! Limits are token buckets keyed on the client's address. The address is the socket's peer,
//! unless that peer is a configured trusted proxy, in which case it is the last address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Without a trusted proxy the header is
//! ignored: anyone can write it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

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

/// Rate limits per client address. `Default` is generous for real clients and tight for
/// scripts: registration 20 at once then 30 a minute, sign-in 10 then 10 a minute, token
/// requests 120 then 600 a minute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// `POST /register`.
    pub registration: Limit,
    /// `POST …/sign-in`.
    pub sign_in: Limit,
    /// `POST /token`, `/revoke`, `/introspect`.
    pub token: Limit,
    /// Proxies whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            registration: Limit::new(20, 30),
            sign_in: Limit::new(10, 10),
            token: Limit::new(120, 600),
            trusted_proxies: Vec::new(),
        }
    }
}

impl RateLimits {
    /// Believes `X-Forwarded-For` from these proxies (your reverse proxy or tunnel). Default:
    /// none. Risk: a proxy listed here that passes on a client's own `X-Forwarded-For` lets
    /// that client choose the address it is limited as.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Sets the registration limit.
    #[must_use]
    pub fn with_registration(mut self, limit: Limit) -> Self {
        self.registration = limit;
        self
    }

    /// Sets the sign-in limit.
    #[must_use]
    pub fn with_sign_in(mut self, limit: Limit) -> Self {
        self.sign_in = limit;
        self
    }

    /// Sets the token-endpoint limit.
    #[must_use]
    pub fn with_token(mut self, limit: Limit) -> Self {
        self.token = limit;
        self
    }
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Registration,
    SignIn,
    Token,
}

/// Most addresses tracked at once; beyond it, full buckets are forgotten first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub(crate) struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Class, IpAddr), Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Self { limits, buckets: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, class: Class) -> Limit {
        match class {
            Class::Registration => self.limits.registration,
            Class::SignIn => self.limits.sign_in,
            Class::Token => self.limits.token,
        }
    }

    /// Takes one request from the bucket; `Err` carries how long until the next is allowed.
    pub(crate) fn check(&self, class: Class, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let limit = self.limit(class);
        let burst = f64::from(limit.burst.max(1));
        let rate = f64::from(limit.per_minute.max(1)) / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&(class, addr)) {
            // Forget the buckets that have refilled: they hold no information.
            buckets.retain(|(c, _), b| {
                let l = self.limit(*c);
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * f64::from(l.per_minute.max(1)) / 60.0
                    < f64::from(l.burst.max(1))
            });
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let bucket = buckets.entry((class, addr)).or_insert(Bucket { tokens: burst, at: now });
        let refilled = (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64(((1.0 - refilled) / rate).ceil()))
        }
    }

    /// The client's address: the peer, or behind a trusted proxy the last untrusted address
    /// of `X-Forwarded-For`.
    pub(crate) fn client_addr(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip();
        if !self.limits.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        Some(forwarded.into_iter().rev().find(|ip| !self.limits.trusted_proxies.contains(ip)).unwrap_or(peer))
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
        let wait = l.check(Class::SignIn, a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10), "6 a minute: one every 10 s");
        assert!(l.check(Class::SignIn, ip("192.0.2.2"), t0).is_ok(), "other addresses are not affected");
        assert!(l.check(Class::Token, a, t0).is_ok(), "other classes are not affected");
        assert!(l.check(Class::SignIn, a, t0 + Duration::from_secs(10)).is_ok());
        assert!(l.check(Class::SignIn, a, t0 + Duration::from_secs(11)).is_err());
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
    }
}
