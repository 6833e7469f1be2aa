//! Following the store's revocation feed from another process: which grants were revoked
//! since the last look, each reported once, although PostgreSQL may make an entry visible
//! after a later one.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use crate::clock::UnixTime;
use crate::store::{GrantStore, StoreResult};
use crate::types::GrantId;

/// Entries read per query; a longer feed is read in several.
const BATCH: usize = 1_000;

/// How long an entry may stay invisible behind a later one: the positions of concurrent
/// transactions are handed out before they commit, so one that commits late appears behind
/// positions already read. Everything past the settled checkpoint is read again on each poll
/// until it is this old.
const SETTLE: Duration = Duration::from_secs(30);

/// Where a follower is in the feed: every grant revoked since it started (and every one the
/// store still keeps from before) is reported by [`Self::poll`] exactly once.
///
/// ```
/// # async fn demo(stores: oauth_core::Stores) -> Result<(), oauth_core::StoreError> {
/// use oauth_core::{RevocationFollower, SystemClock, Clock as _};
///
/// let mut follower = RevocationFollower::new();
/// for grant in follower.poll(stores.grants.as_ref(), SystemClock.now()).await? {
///     println!("grant {grant} was revoked: refuse its tokens");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct RevocationFollower {
    /// Every entry at or below this position has been reported, or never will be.
    settled: u64,
    /// Positions above `settled` already reported.
    seen: BTreeSet<u64>,
    /// The highest position seen at each poll, oldest first, to settle them once old.
    history: VecDeque<(UnixTime, u64)>,
}

impl RevocationFollower {
    /// A follower at the start of the feed: its first poll reports every revocation the store
    /// keeps (those of the last day, by default), so a process that starts late still refuses
    /// the tokens of grants revoked before it started.
    pub fn new() -> Self {
        Self::default()
    }

    /// The grants revoked since the last poll, each once.
    pub async fn poll(&mut self, grants: &dyn GrantStore, now: UnixTime) -> StoreResult<Vec<GrantId>> {
        let mut revoked = Vec::new();
        let mut after = self.settled;
        loop {
            let batch = grants.revocations_since(after, BATCH).await?;
            let from = after;
            for r in &batch {
                after = after.max(r.position);
                if r.position > self.settled && self.seen.insert(r.position) {
                    revoked.push(r.grant.clone());
                }
            }
            // A short page is the end; a full one that did not move on (a store breaking its
            // contract) must not loop forever.
            if batch.len() < BATCH || after == from {
                break;
            }
        }
        self.settle(now);
        Ok(revoked)
    }

    /// Records the highest position seen now, and moves the checkpoint past the positions
    /// seen at least [`SETTLE`] ago.
    fn settle(&mut self, now: UnixTime) {
        let highest = self.seen.last().copied().unwrap_or(self.settled);
        self.history.push_back((now, highest));
        let horizon = now.minus(SETTLE);
        while let Some(&(at, position)) = self.history.front() {
            if at > horizon {
                break;
            }
            self.history.pop_front();
            self.settled = self.settled.max(position);
        }
        let settled = self.settled;
        self.seen.retain(|p| *p > settled);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::store::{Grant, Revocation};
    use crate::types::{ClientId, UserId};
    use crate::{SecretHash, StoreError};

    /// A feed whose entries become visible in the order the test says.
    #[derive(Debug, Default)]
    struct Feed(Mutex<Vec<Revocation>>);

    impl Feed {
        fn commit(&self, position: u64, at: i64) {
            let grant = GrantId::parse(&format!("g{position}")).unwrap();
            self.0.lock().unwrap().push(Revocation::new(position, grant, UnixTime::from_secs(at)));
        }
    }

    #[async_trait]
    impl GrantStore for Feed {
        async fn revocations_since(&self, after: u64, limit: usize) -> StoreResult<Vec<Revocation>> {
            let mut v: Vec<_> = self.0.lock().unwrap().iter().filter(|r| r.position > after).cloned().collect();
            v.sort_by_key(|r| r.position);
            v.truncate(limit);
            Ok(v)
        }
        async fn create_grant(&self, _: &Grant, _: Option<&SecretHash>) -> StoreResult<()> {
            Err(StoreError::Backend("not in this test".into()))
        }
        async fn grant(&self, _: &GrantId) -> StoreResult<Option<Grant>> {
            Ok(None)
        }
        async fn find_refresh_token(&self, _: &SecretHash) -> StoreResult<Option<(Grant, u64)>> {
            Ok(None)
        }
        async fn rotate_refresh_token(
            &self,
            _: &GrantId,
            _: u64,
            _: &SecretHash,
            _: UnixTime,
            _: UnixTime,
        ) -> StoreResult<bool> {
            Ok(false)
        }
        async fn revoke_grant(&self, _: &GrantId, _: UnixTime) -> StoreResult<bool> {
            Ok(false)
        }
        async fn revoke_client_grants(&self, _: &ClientId, _: UnixTime) -> StoreResult<u64> {
            Ok(0)
        }
        async fn client_grants(&self, _: &ClientId) -> StoreResult<Vec<Grant>> {
            Ok(Vec::new())
        }
        async fn sweep_grants(&self, _: UnixTime) -> StoreResult<u64> {
            Ok(0)
        }
        async fn user_grants(&self, _: &UserId, _: UnixTime, _: usize) -> StoreResult<Vec<Grant>> {
            Ok(Vec::new())
        }
    }

    fn names(v: Vec<GrantId>) -> Vec<String> {
        v.into_iter().map(|g| g.as_str().to_owned()).collect()
    }

    #[tokio::test]
    async fn each_revocation_is_reported_once_even_when_it_commits_behind_a_later_one() {
        let feed = Feed::default();
        let mut f = RevocationFollower::new();
        let t = UnixTime::from_secs;
        feed.commit(1, 100);
        feed.commit(3, 100);
        assert_eq!(names(f.poll(&feed, t(100)).await.unwrap()), ["g1", "g3"]);
        assert!(f.poll(&feed, t(101)).await.unwrap().is_empty(), "nothing new, nothing again");
        // Position 2 was handed out before 3 but committed after it was read.
        feed.commit(2, 100);
        assert_eq!(names(f.poll(&feed, t(102)).await.unwrap()), ["g2"]);
        feed.commit(4, 103);
        assert_eq!(names(f.poll(&feed, t(140)).await.unwrap()), ["g4"]);
        // Long after, the checkpoint has moved past what was read: only new entries are read.
        assert_eq!(f.poll(&feed, t(200)).await.unwrap().len(), 0);
        assert!(f.settled >= 3 && f.seen.len() <= 1, "settled {} seen {:?}", f.settled, f.seen);
        assert!(f.history.len() <= 2, "the history stays bounded: {:?}", f.history);
    }

    #[tokio::test]
    async fn a_long_feed_is_read_in_batches() {
        let feed = Feed::default();
        for p in 1..=(BATCH as u64 * 2 + 5) {
            feed.commit(p, 100);
        }
        let mut f = RevocationFollower::new();
        assert_eq!(f.poll(&feed, UnixTime::from_secs(100)).await.unwrap().len(), BATCH * 2 + 5);
        assert!(f.poll(&feed, UnixTime::from_secs(101)).await.unwrap().is_empty());
    }
}
