#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use oauth_core::SecretHash;
use oauth_core::{
    AuthorizationCodeRecord, AuthorizationStore, ClientStore, CodeRedemption, Consent, ConsentStore, EventStore, Grant,
    GrantForCode, GrantStore, KeyStore, PendingAuthorization, StoreResult, Stores, User, UserStore,
};
use oauth_core::{BlockAfter, BucketRate, LimitStore};
use oauth_core::{Client, ClientOrigin};
use oauth_core::{ClientId, GrantId, UserId};
use oauth_core::{EventQuery, FlowEvent};
use oauth_core::{Revocation, StoredKey};
use oauth_core::{SealedUpstream, UpstreamLink, UpstreamProviderId, UpstreamStore, UpstreamSubject};
use oauth_core::{SessionStore, SignInSession};
use oauth_core::{StoreError, UnixTime};
use oauth_core::{check_lease_holder, check_sealed_upstream};

/// Every store in memory, behind one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    clients: Vec<Client>,
    pending: HashMap<String, PendingAuthorization>,
    codes: HashMap<SecretHash, (AuthorizationCodeRecord, bool)>,
    grants: HashMap<GrantId, Grant>,
    refresh_tokens: HashMap<SecretHash, (GrantId, u64)>,
    /// The revocation feed, oldest first, and the last position handed out.
    revocations: Vec<Revocation>,
    last_revocation: u64,
    consents: HashMap<(UserId, ClientId), Consent>,
    users: Vec<User>,
    keys: Vec<StoredKey>,
    server_secrets: HashMap<String, Vec<u8>>,
    events: Vec<FlowEvent>,
    /// In insertion order, so that the oldest of equal `auth_time`s comes first.
    sessions: Vec<SignInSession>,
    /// Token buckets: tokens, when last taken from (ms), when full again (ms).
    buckets: HashMap<String, (f64, i64, i64)>,
    failures: HashMap<String, Failures>,
    /// Single-use marks and when each may be forgotten.
    used_once: HashMap<String, UnixTime>,
    /// Upstream identities and the user each is linked to, with when.
    links: HashMap<(UpstreamProviderId, UpstreamSubject), (UserId, UnixTime)>,
    /// The vault: one record per live grant, removed with the grant's revocation or sweep.
    vault: HashMap<GrantId, Vaulted>,
}

#[derive(Debug, Clone)]
struct Vaulted {
    record: SealedUpstream,
    /// The refresh lease: who holds it, until when.
    lease: Option<(String, UnixTime)>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: UnixTime,
    blocked_until: Option<UnixTime>,
    reported: bool,
}

impl Inner {
    /// What every revocation does besides marking the grant: the feed entry, and the end of its
    /// upstream tokens.
    fn record_revocation(&mut self, grant: GrantId, at: UnixTime) {
        self.vault.remove(&grant);
        self.last_revocation += 1;
        self.revocations.push(Revocation::new(self.last_revocation, grant, at));
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store as the [`Stores`] bundle the server takes.
    pub fn into_stores(self) -> Stores {
        Stores::from_backend(Arc::new(self))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic while holding it; every mutation below is a single
        // step that leaves the maps consistent, so the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn create_client(&self, client: &Client) -> StoreResult<()> {
        let mut g = self.lock();
        if g.clients.iter().any(|c| c.id == client.id) {
            return Err(StoreError::Conflict(format!("client {} exists", client.id)));
        }
        g.clients.push(client.clone());
        Ok(())
    }

    async fn client(&self, id: &ClientId) -> StoreResult<Option<Client>> {
        Ok(self.lock().clients.iter().find(|c| &c.id == id).cloned())
    }

    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        let mut g = self.lock();
        match g.clients.iter_mut().find(|c| c.id == client.id) {
            Some(c) => {
                *c = client.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_client(&self, id: &ClientId) -> StoreResult<bool> {
        let mut g = self.lock();
        let before = g.clients.len();
        g.clients.retain(|c| &c.id != id);
        Ok(g.clients.len() != before)
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        Ok(self.lock().clients.clone())
    }

    async fn touch_client(&self, id: &ClientId, at: UnixTime) -> StoreResult<()> {
        if let Some(c) = self.lock().clients.iter_mut().find(|c| &c.id == id) {
            c.last_used_at = Some(at);
        }
        Ok(())
    }

    async fn delete_unused_dynamic_clients(&self, before: UnixTime) -> StoreResult<u64> {
        let mut g = self.lock();
        let n = g.clients.len();
        g.clients
            .retain(|c| c.origin == ClientOrigin::PreRegistered || c.last_used_at.unwrap_or(c.created_at) >= before);
        Ok((n - g.clients.len()) as u64)
    }
}

#[async_trait]
impl AuthorizationStore for MemoryStore {
    async fn put_pending(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        self.lock().pending.insert(pending.id.clone(), pending.clone());
        Ok(())
    }

    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        Ok(self.lock().pending.get(id).filter(|p| p.expires_at > now).cloned())
    }

    async fn take_pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        Ok(self.lock().pending.remove(id).filter(|p| p.expires_at > now))
    }

    async fn put_code(&self, code: &AuthorizationCodeRecord) -> StoreResult<()> {
        let mut g = self.lock();
        if g.codes.contains_key(&code.hash) {
            return Err(StoreError::Conflict("authorization code exists".into()));
        }
        g.codes.insert(code.hash, (code.clone(), false));
        Ok(())
    }

    async fn exchange_code(
        &self,
        hash: &SecretHash,
        now: UnixTime,
        issue: &GrantForCode<'_>,
    ) -> StoreResult<CodeRedemption> {
        // One lock over both maps: the code is spent and its grant stored together, or neither.
        let mut g = self.lock();
        let record = match g.codes.get(hash) {
            None => return Ok(CodeRedemption::NotFound),
            Some((rec, used)) if CodeRedemption::redeemable(rec, *used, now) => rec.clone(),
            Some((rec, used)) => return Ok(CodeRedemption::refused(rec.clone(), *used, now)),
        };
        if let Some(new) = issue(&record) {
            insert_grant(&mut g, &new.grant, new.refresh_token.as_ref())?;
        }
        if let Some((_, used)) = g.codes.get_mut(hash) {
            *used = true;
        }
        Ok(CodeRedemption::Redeemed(record))
    }

    async fn sweep_authorizations(&self, now: UnixTime, codes_before: UnixTime) -> StoreResult<u64> {
        let mut g = self.lock();
        let before = g.pending.len() + g.codes.len();
        g.pending.retain(|_, p| p.expires_at > now);
        g.codes.retain(|_, (c, _)| c.expires_at >= codes_before);
        Ok((before - g.pending.len() - g.codes.len()) as u64)
    }
}

/// Stores a new grant and its first refresh token, or nothing when either exists.
fn insert_grant(g: &mut Inner, grant: &Grant, refresh_token: Option<&SecretHash>) -> StoreResult<()> {
    if g.grants.contains_key(&grant.id) {
        return Err(StoreError::Conflict(format!("grant {} exists", grant.id)));
    }
    if let Some(h) = refresh_token {
        if g.refresh_tokens.contains_key(h) {
            return Err(StoreError::Conflict("refresh token exists".into()));
        }
        g.refresh_tokens.insert(*h, (grant.id.clone(), grant.generation));
    }
    g.grants.insert(grant.id.clone(), grant.clone());
    Ok(())
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn create_grant(&self, grant: &Grant, refresh_token: Option<&SecretHash>) -> StoreResult<()> {
        insert_grant(&mut self.lock(), grant, refresh_token)
    }

    async fn grant(&self, id: &GrantId) -> StoreResult<Option<Grant>> {
        Ok(self.lock().grants.get(id).cloned())
    }

    async fn find_refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<(Grant, u64)>> {
        let g = self.lock();
        Ok(g.refresh_tokens
            .get(hash)
            .and_then(|(id, generation)| g.grants.get(id).map(|grant| (grant.clone(), *generation))))
    }

    async fn rotate_refresh_token(
        &self,
        id: &GrantId,
        expected_generation: u64,
        new_token: &SecretHash,
        now: UnixTime,
        refresh_expires_at: UnixTime,
    ) -> StoreResult<bool> {
        let mut g = self.lock();
        let Some(grant) = g.grants.get_mut(id) else {
            return Ok(false);
        };
        if grant.revoked_at.is_some() || grant.generation != expected_generation {
            return Ok(false);
        }
        grant.generation += 1;
        grant.rotated_at = Some(now);
        grant.refresh_expires_at = Some(refresh_expires_at);
        let generation = grant.generation;
        g.refresh_tokens.insert(*new_token, (id.clone(), generation));
        Ok(true)
    }

    async fn revoke_grant(&self, id: &GrantId, now: UnixTime) -> StoreResult<bool> {
        let mut g = self.lock();
        Ok(match g.grants.get_mut(id) {
            Some(grant) if grant.revoked_at.is_none() => {
                grant.revoked_at = Some(now);
                g.record_revocation(id.clone(), now);
                true
            }
            _ => false,
        })
    }

    async fn revoke_client_grants(&self, client_id: &ClientId, now: UnixTime) -> StoreResult<u64> {
        let mut g = self.lock();
        let mut revoked = Vec::new();
        for grant in g.grants.values_mut() {
            if &grant.client_id == client_id && grant.revoked_at.is_none() {
                grant.revoked_at = Some(now);
                revoked.push(grant.id.clone());
            }
        }
        let n = revoked.len() as u64;
        for id in revoked {
            g.record_revocation(id, now);
        }
        Ok(n)
    }

    async fn revocations_since(&self, after: u64, limit: usize) -> StoreResult<Vec<Revocation>> {
        let g = self.lock();
        let start = g.revocations.partition_point(|r| r.position <= after);
        Ok(g.revocations[start..].iter().take(limit).cloned().collect())
    }

    async fn client_grants(&self, client_id: &ClientId) -> StoreResult<Vec<Grant>> {
        let mut v: Vec<Grant> = self.lock().grants.values().filter(|g| &g.client_id == client_id).cloned().collect();
        v.sort_by_key(|g| std::cmp::Reverse(g.created_at));
        Ok(v)
    }

    async fn sweep_grants(&self, before: UnixTime) -> StoreResult<u64> {
        let mut g = self.lock();
        let dead: Vec<GrantId> = g
            .grants
            .values()
            .filter(|gr| {
                gr.revoked_at.is_some_and(|t| t < before)
                    || gr.refresh_expires_at.is_some_and(|t| t < before)
                    || (!gr.has_refresh_token && gr.created_at < before)
            })
            .map(|gr| gr.id.clone())
            .collect();
        for id in &dead {
            g.grants.remove(id);
            g.vault.remove(id);
        }
        g.refresh_tokens.retain(|_, (id, _)| !dead.contains(id));
        g.revocations.retain(|r| r.at >= before);
        Ok(dead.len() as u64)
    }

    async fn user_grants(&self, user: &UserId, now: UnixTime, limit: usize) -> StoreResult<Vec<Grant>> {
        let mut v: Vec<Grant> = self
            .lock()
            .grants
            .values()
            .filter(|g| &g.user == user && g.revoked_at.is_none() && g.refresh_expires_at.is_none_or(|t| t > now))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.as_str().cmp(a.id.as_str())));
        v.truncate(limit);
        Ok(v)
    }
}

#[async_trait]
impl ConsentStore for MemoryStore {
    async fn consent(&self, user: &UserId, client_id: &ClientId) -> StoreResult<Option<Consent>> {
        Ok(self.lock().consents.get(&(user.clone(), client_id.clone())).cloned())
    }

    async fn put_consent(&self, consent: &Consent) -> StoreResult<()> {
        self.lock().consents.insert((consent.user.clone(), consent.client_id.clone()), consent.clone());
        Ok(())
    }

    async fn revoke_consent(&self, user: &UserId, client_id: &ClientId) -> StoreResult<bool> {
        Ok(self.lock().consents.remove(&(user.clone(), client_id.clone())).is_some())
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut g = self.lock();
        if g.users.iter().any(|u| u.id == user.id || u.username == user.username) {
            return Err(StoreError::Conflict(format!("user {} exists", user.username)));
        }
        g.users.push(user.clone());
        Ok(())
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        Ok(self.lock().users.iter().find(|u| &u.id == id).cloned())
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        Ok(self.lock().users.iter().find(|u| u.username == username).cloned())
    }

    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let mut g = self.lock();
        if g.users.iter().any(|u| u.username == user.username && u.id != user.id) {
            return Err(StoreError::Conflict(format!("user {} exists", user.username)));
        }
        match g.users.iter_mut().find(|u| u.id == user.id) {
            Some(u) => {
                *u = user.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<bool> {
        let mut g = self.lock();
        let n = g.users.len();
        g.users.retain(|u| &u.id != id);
        // Under the same lock: no upstream identity still signs in as the removed user.
        g.links.retain(|_, (user, _)| user != id);
        Ok(g.users.len() != n)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        Ok(self.lock().users.clone())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        Ok(self.lock().keys.clone())
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        let mut g = self.lock();
        if g.keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Conflict(format!("key {} exists", key.kid)));
        }
        g.keys.push(key.clone());
        Ok(())
    }

    async fn retire_key(&self, kid: &str, at: UnixTime) -> StoreResult<bool> {
        Ok(match self.lock().keys.iter_mut().find(|k| k.kid == kid) {
            Some(k) if k.retired_at.is_none() => {
                k.retired_at = Some(at);
                true
            }
            _ => false,
        })
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let mut g = self.lock();
        let n = g.keys.len();
        g.keys.retain(|k| k.kid != kid);
        Ok(g.keys.len() != n)
    }

    async fn server_secret(&self, name: &str, candidate: &[u8], _now: UnixTime) -> StoreResult<Vec<u8>> {
        Ok(self.lock().server_secrets.entry(name.to_owned()).or_insert_with(|| candidate.to_vec()).clone())
    }

    async fn replace_server_secret(&self, name: &str, value: &[u8], _now: UnixTime) -> StoreResult<()> {
        self.lock().server_secrets.insert(name.to_owned(), value.to_vec());
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        self.lock().events.push(event.clone());
        Ok(())
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        let g = self.lock();
        let matching: Vec<&FlowEvent> = g.events.iter().filter(|e| query.matches(e)).collect();
        let skip = matching.len().saturating_sub(query.effective_limit());
        Ok(matching.into_iter().skip(skip).cloned().collect())
    }

    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64> {
        let mut g = self.lock();
        let n = g.events.len();
        g.events.retain(|e| e.at >= before);
        Ok((n - g.events.len()) as u64)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &SignInSession, max_per_user: usize) -> StoreResult<()> {
        let mut g = self.lock();
        if g.sessions.iter().any(|s| s.hash == session.hash) {
            return Err(StoreError::Conflict("session exists".into()));
        }
        g.sessions.push(session.clone());
        let mut mine: Vec<(usize, UnixTime)> = g
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.user == session.user)
            .map(|(i, s)| (i, s.auth_time))
            .collect();
        if mine.len() > max_per_user {
            // Stable: equal times keep insertion order, so the oldest inserted goes first.
            mine.sort_by_key(|&(_, at)| at);
            let mut drop: Vec<usize> = mine[..mine.len() - max_per_user].iter().map(|&(i, _)| i).collect();
            drop.sort_unstable();
            for i in drop.into_iter().rev() {
                g.sessions.remove(i);
            }
        }
        Ok(())
    }

    async fn session(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<Option<SignInSession>> {
        Ok(self.lock().sessions.iter().find(|s| &s.hash == hash && s.expires_at > now).cloned())
    }

    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<bool> {
        let mut g = self.lock();
        let n = g.sessions.len();
        g.sessions.retain(|s| &s.hash != hash);
        Ok(g.sessions.len() != n)
    }

    async fn delete_user_sessions(&self, user: &UserId) -> StoreResult<u64> {
        let mut g = self.lock();
        let n = g.sessions.len();
        g.sessions.retain(|s| &s.user != user);
        Ok((n - g.sessions.len()) as u64)
    }

    async fn sweep_sessions(&self, now: UnixTime) -> StoreResult<u64> {
        let mut g = self.lock();
        let n = g.sessions.len();
        g.sessions.retain(|s| s.expires_at > now);
        Ok((n - g.sessions.len()) as u64)
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn take_token(&self, key: &str, rate: BucketRate, now_ms: i64) -> StoreResult<Option<std::time::Duration>> {
        let mut g = self.lock();
        let burst = f64::from(rate.burst);
        let (tokens, at, full_at) = g.buckets.entry(key.to_owned()).or_insert((burst, now_ms, now_ms));
        let refilled = rate.refilled(*tokens, *at, now_ms);
        *at = (*at).max(now_ms);
        let (left, refused) =
            if refilled >= 1.0 { (refilled - 1.0, None) } else { (refilled, Some(rate.wait(refilled))) };
        *tokens = left;
        *full_at = *at + ((burst - left) / rate.per_second * 1000.0).ceil() as i64;
        Ok(refused)
    }

    async fn record_failure(
        &self,
        key: &str,
        now: UnixTime,
        forget_after: std::time::Duration,
        block_after: &BlockAfter,
    ) -> StoreResult<Option<UnixTime>> {
        let mut g = self.lock();
        let f = g.failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
            reported: false,
        });
        if f.last < now.minus(forget_after) {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = f.last.max(now);
        let Some(block) = block_after(f.count) else { return Ok(None) };
        let until = now.plus(block);
        if f.blocked_until.is_none_or(|b| b < until) {
            f.blocked_until = Some(until);
            f.reported = false;
        }
        Ok(Some(until))
    }

    async fn blocked(&self, key: &str, now: UnixTime) -> StoreResult<Option<(UnixTime, bool)>> {
        let mut g = self.lock();
        let Some(f) = g.failures.get_mut(key) else { return Ok(None) };
        let Some(until) = f.blocked_until.filter(|u| *u > now) else { return Ok(None) };
        let first = !f.reported;
        f.reported = true;
        Ok(Some((until, first)))
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        self.lock().failures.remove(key);
        Ok(())
    }

    async fn first_use(&self, key: &str, until: UnixTime, now: UnixTime) -> StoreResult<bool> {
        let mut g = self.lock();
        match g.used_once.get(key) {
            Some(marked) if *marked > now => Ok(false),
            _ => {
                g.used_once.insert(key.to_owned(), until);
                Ok(true)
            }
        }
    }

    async fn sweep_limits(&self, now_ms: i64, failures_before: UnixTime, max_rows: u64) -> StoreResult<u64> {
        let mut g = self.lock();
        let before = g.buckets.len() + g.failures.len() + g.used_once.len();
        let now = UnixTime::from_secs(now_ms.div_euclid(1000));
        g.used_once.retain(|_, until| *until > now);
        g.buckets.retain(|_, (_, _, full_at)| *full_at > now_ms);
        g.failures.retain(|_, f| f.last >= failures_before || f.blocked_until.is_some_and(|b| b > now));
        let cap = usize::try_from(max_rows).unwrap_or(usize::MAX);
        if g.buckets.len() > cap {
            let mut by_use: Vec<(i64, String)> = g.buckets.iter().map(|(k, (_, at, _))| (*at, k.clone())).collect();
            by_use.sort();
            let excess = by_use.len() - cap;
            for (_, k) in by_use.into_iter().take(excess) {
                g.buckets.remove(&k);
            }
        }
        if g.failures.len() > cap {
            // Unblocked accounts go first: a flood of new names must not lift a block.
            let mut by_use: Vec<(bool, UnixTime, String)> =
                g.failures.iter().map(|(k, f)| (f.blocked_until.is_some_and(|b| b > now), f.last, k.clone())).collect();
            by_use.sort();
            let excess = by_use.len() - cap;
            for (_, _, k) in by_use.into_iter().take(excess) {
                g.failures.remove(&k);
            }
        }
        Ok((before - g.buckets.len() - g.failures.len() - g.used_once.len()) as u64)
    }
}

#[async_trait]
impl UpstreamStore for MemoryStore {
    async fn linked_user(
        &self,
        provider: &UpstreamProviderId,
        subject: &UpstreamSubject,
    ) -> StoreResult<Option<UserId>> {
        Ok(self.lock().links.get(&(provider.clone(), subject.clone())).map(|(user, _)| user.clone()))
    }

    async fn link_user(
        &self,
        provider: &UpstreamProviderId,
        subject: &UpstreamSubject,
        user: &UserId,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut g = self.lock();
        let (linked, _) = g.links.entry((provider.clone(), subject.clone())).or_insert_with(|| (user.clone(), now));
        Ok(linked == user)
    }

    async fn links_of(&self, user: &UserId) -> StoreResult<Vec<UpstreamLink>> {
        let mut links: Vec<UpstreamLink> = self
            .lock()
            .links
            .iter()
            .filter(|(_, (u, _))| u == user)
            .map(|((provider, subject), (_, at))| UpstreamLink::new(provider.clone(), subject.clone(), *at))
            .collect();
        links.sort_by(|a, b| (a.linked_at, &a.provider, &a.subject).cmp(&(b.linked_at, &b.provider, &b.subject)));
        Ok(links)
    }

    async fn unlink_user(&self, user: &UserId) -> StoreResult<u64> {
        let mut g = self.lock();
        let n = g.links.len();
        g.links.retain(|_, (u, _)| u != user);
        Ok((n - g.links.len()) as u64)
    }

    async fn put_upstream_tokens(
        &self,
        grant: &GrantId,
        sealed: &[u8],
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        check_sealed_upstream(sealed)?;
        let mut g = self.lock();
        if g.grants.get(grant).is_none_or(|gr| gr.revoked_at.is_some()) {
            return Ok(false);
        }
        let (version, lease) = match g.vault.get(grant) {
            Some(old) => (old.record.version.saturating_add(1), old.lease.clone()),
            None => (1, None),
        };
        let record = SealedUpstream::new(sealed.to_vec(), version, expires_at, now);
        g.vault.insert(grant.clone(), Vaulted { record, lease });
        Ok(true)
    }

    async fn upstream_tokens(&self, grant: &GrantId) -> StoreResult<Option<SealedUpstream>> {
        Ok(self.lock().vault.get(grant).map(|v| v.record.clone()))
    }

    async fn replace_upstream_tokens(
        &self,
        grant: &GrantId,
        expected_version: u64,
        sealed: &[u8],
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        check_sealed_upstream(sealed)?;
        let mut g = self.lock();
        match g.vault.get_mut(grant) {
            Some(v) if v.record.version == expected_version => {
                let Some(version) = expected_version.checked_add(1) else { return Ok(false) };
                v.record = SealedUpstream::new(sealed.to_vec(), version, expires_at, now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_upstream_tokens(&self, grant: &GrantId) -> StoreResult<bool> {
        Ok(self.lock().vault.remove(grant).is_some())
    }

    async fn take_refresh_lease(
        &self,
        grant: &GrantId,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        check_lease_holder(holder)?;
        let mut g = self.lock();
        let Some(v) = g.vault.get_mut(grant) else { return Ok(false) };
        match &v.lease {
            Some((other, running)) if other != holder && *running > now => Ok(false),
            _ => {
                v.lease = Some((holder.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn release_refresh_lease(&self, grant: &GrantId, holder: &str) -> StoreResult<bool> {
        check_lease_holder(holder)?;
        let mut g = self.lock();
        match g.vault.get_mut(grant) {
            Some(v) if v.lease.as_ref().is_some_and(|(h, _)| h == holder) => {
                v.lease = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
