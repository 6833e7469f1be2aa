//! Per-host fetch budgets: each host may be fetched from a few times a window, so that made-up
//! URLs on one host (an attacker's) use up that host's budget and no one else's. The map of
//! hosts is bounded; past the bound, hosts whose window is over go first, then the one whose
//! window started earliest (which only gives that host a fresh budget).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many fetches per host and window, and how many hosts are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostBudget {
    /// Fetches allowed per host in one window.
    pub per_window: u32,
    /// The window.
    pub window: Duration,
    /// Hosts remembered at once.
    pub max_hosts: usize,
}

impl Default for HostBudget {
    /// 10 fetches a minute per host, 4096 hosts remembered.
    fn default() -> Self {
        Self { per_window: 10, window: Duration::from_secs(60), max_hosts: 4096 }
    }
}

impl HostBudget {
    /// `per_window` fetches per host in each `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window, window, ..Self::default() }
    }

    /// Hosts remembered at once. Default: 4096.
    #[must_use]
    pub fn with_max_hosts(mut self, max_hosts: usize) -> Self {
        self.max_hosts = max_hosts.max(1);
        self
    }
}

/// The budgets being spent.
#[derive(Debug)]
pub(crate) struct Budgets {
    config: HostBudget,
    hosts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Budgets {
    pub(crate) fn new(config: HostBudget) -> Self {
        Self { config, hosts: Mutex::new(HashMap::new()) }
    }

    /// Takes one fetch from `host`'s budget; false when it is spent.
    pub(crate) fn take(&self, host: &str, now: Instant) -> bool {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.config.window;
        if !hosts.contains_key(host) && hosts.len() >= self.config.max_hosts {
            hosts.retain(|_, (start, _)| now.duration_since(*start) < window);
            if hosts.len() >= self.config.max_hosts
                && let Some(oldest) = hosts.iter().min_by_key(|(_, (start, _))| *start).map(|(h, _)| h.clone())
            {
                hosts.remove(&oldest);
            }
        }
        let entry = hosts.entry(host.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        if entry.1 >= self.config.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_spending_its_budget_leaves_the_others_theirs() {
        let b = Budgets::new(HostBudget::new(3, Duration::from_secs(60)));
        let now = Instant::now();
        assert!((0..3).all(|_| b.take("evil.example", now)));
        assert!(!b.take("evil.example", now));
        assert!(b.take("claude.ai", now));
        assert!(b.take("evil.example", now + Duration::from_secs(60)), "a new window, a new budget");
    }

    #[test]
    fn the_map_of_hosts_is_bounded() {
        let b = Budgets::new(HostBudget::new(1, Duration::from_secs(60)).with_max_hosts(8));
        let now = Instant::now();
        for i in 0..1000 {
            assert!(b.take(&format!("h{i}.evil.example"), now + Duration::from_millis(i)));
        }
        assert_eq!(b.len(), 8);
    }
}
