//! The per-address limiter, opened so that `oauth-benches` can measure it beside `governor`
//! (feature `bench-internals`). Hidden and unstable: a thin wrapper over the limiter the token
//! endpoint uses, so that what is measured is what runs, and nothing else becomes public.

use std::net::IpAddr;
use std::time::Instant;

use crate::RateLimits;
use crate::ratelimit::{Class, Limiter};

/// The token endpoint's per-address limiter.
#[derive(Debug)]
pub struct TokenLimiter(Limiter);

impl TokenLimiter {
    /// A limiter with these limits; only `token` and `max_tracked` matter here.
    pub fn new(limits: RateLimits) -> Self {
        Self(Limiter::new(limits))
    }

    /// Counts one token request from `addr` at `now`; whether it is allowed.
    pub fn check(&self, addr: IpAddr, now: Instant) -> bool {
        self.0.check(Class::Token, addr, now).is_ok()
    }

    /// How many buckets the limiter holds now: never more than `max_tracked`.
    pub fn tracked(&self) -> usize {
        self.0.tracked()
    }
}
