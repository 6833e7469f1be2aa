//! Storage traits.
//! Documented in the crate docs, "Storage".

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::clock::UnixTime;
use crate::error::StoreError;
use crate::events::{EventQuery, FlowEvent};
use crate::keys::StoredKey;
use crate::pkce::CodeChallenge;
use crate::secret::SecretHash;
use crate::types::{
    ClientId, GrantId, RedirectUri, ResourceUri, ScopeSet, UpstreamProviderId, UpstreamSubject, UserId,
};

/// Result type of every store method.
pub type StoreResult<T> = Result<T, StoreError>;

/// Registered clients.
#[async_trait]
pub trait ClientStore: Debug + Send + Sync + 'static {
    /// Inserts a new client; [`StoreError::Conflict`] if the id exists.
    async fn create_client(&self, client: &Client) -> StoreResult<()>;
    /// The client with this id.
    async fn client(&self, id: &ClientId) -> StoreResult<Option<Client>>;
    /// Replaces a client's record; `false` if there is none.
    async fn update_client(&self, client: &Client) -> StoreResult<bool>;
    /// Deletes a client; `false` if there was none.
    async fn delete_client(&self, id: &ClientId) -> StoreResult<bool>;
    /// Every client, oldest first.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// Records that the client completed a token request at `at`.
    async fn touch_client(&self, id: &ClientId, at: UnixTime) -> StoreResult<()>;
    /// Deletes dynamically registered and metadata-document clients last used before `before`
    /// (or, never used, created before it). Pre-registered clients are never deleted. Returns
    /// how many.
    async fn delete_unused_dynamic_clients(&self, before: UnixTime) -> StoreResult<u64>;
}

/// An authorization request that passed validation and awaits the user's sign-in and consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingAuthorization {
    /// Random handle carried by the sign-in and consent forms.
    pub id: String,
    /// The client.
    pub client_id: ClientId,
    /// The redirect URI as the client sent it (loopback: with its port).
    pub redirect_uri: RedirectUri,
    /// Whether the client sent `redirect_uri` (else the single registered one is used).
    pub redirect_uri_explicit: bool,
    /// `state`, echoed in the response.
    pub state: Option<String>,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// The resource the grant will be bound to.
    pub resource: ResourceUri,
    /// PKCE challenge.
    pub code_challenge: CodeChallenge,
    /// When the request was validated.
    pub created_at: UnixTime,
    /// When it stops being usable.
    pub expires_at: UnixTime,
    /// The tokens of the person's upstream sign-in, sealed with the vault key for the user
    /// who signed in, on their way to the grant ([`crate::upstream::VaultKeys`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// An issued authorization code, stored under the hash of the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthorizationCodeRecord {
    /// SHA-256 of the code.
    pub hash: SecretHash,
    /// The grant this code starts; revoked if the code is replayed.
    pub grant_id: GrantId,
    /// The client the code was issued to.
    pub client_id: ClientId,
    /// The user who approved.
    pub user: UserId,
    /// The redirect URI the code was delivered to.
    pub redirect_uri: RedirectUri,
    /// Whether the authorization request carried `redirect_uri` explicitly.
    pub redirect_uri_explicit: bool,
    /// PKCE challenge.
    pub code_challenge: CodeChallenge,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Bound resource.
    pub resource: ResourceUri,
    /// When the user signed in.
    pub auth_time: UnixTime,
    /// When the code was issued.
    pub issued_at: UnixTime,
    /// When it expires.
    pub expires_at: UnixTime,
    /// The upstream tokens of the sign-in that approved it, sealed as in
    /// [`PendingAuthorization::upstream`]: kept with the grant when the code is redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// The outcome of redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeRedemption {
    /// First redemption: the code is now spent.
    Redeemed(AuthorizationCodeRecord),
    /// The code was redeemed before: a replay. The record names the grant to revoke.
    AlreadyRedeemed(AuthorizationCodeRecord),
    /// The code exists but has expired.
    Expired {
        /// The client it was issued to.
        client_id: ClientId,
    },
    /// No such code.
    NotFound,
}

impl CodeRedemption {
    /// Whether a stored code can be redeemed at `now`: never redeemed and unexpired. A store
    /// spends the code when this holds, atomically with the check.
    pub fn redeemable(record: &AuthorizationCodeRecord, redeemed: bool, now: UnixTime) -> bool {
        !redeemed && record.expires_at > now
    }

    /// Why a stored code that this redemption did not spend is refused, the one rule every
    /// store applies: a replay when it was redeemed before, even after it expired (the grant
    /// it made must still be revoked, RFC 6749 4.1.2); expired past its `expires_at`; and
    /// otherwise not found, since it was stored after the redemption looked for it.
    pub fn refused(record: AuthorizationCodeRecord, redeemed: bool, now: UnixTime) -> Self {
        if redeemed {
            Self::AlreadyRedeemed(record)
        } else if record.expires_at <= now {
            Self::Expired { client_id: record.client_id }
        } else {
            Self::NotFound
        }
    }
}

/// Pending authorization requests and authorization codes.
#[async_trait]
pub trait AuthorizationStore: Debug + Send + Sync + 'static {
    /// Stores a pending request.
    async fn put_pending(&self, pending: &PendingAuthorization) -> StoreResult<()>;
    /// The pending request `id`, if it exists and has not expired at `now`.
    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>>;
    /// Removes and returns the pending request `id` if unexpired: single use under concurrency.
    async fn take_pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>>;
    /// Stores an issued code.
    async fn put_code(&self, code: &AuthorizationCodeRecord) -> StoreResult<()>;
    /// The code exchange: redeems the code with this hash, atomically marking it spent so that
    /// exactly one of any number of concurrent calls gets [`CodeRedemption::Redeemed`], and, in
    /// the same transaction, stores the grant that `issue` makes of the redeemed record, so that a
    /// failure midway (the database going away, a conflicting id) leaves the code unspent and
    /// no grant, never a spent code without its grant. `issue` decides on the record of an
    /// unspent code; what it returns is stored only by the call that spends the code (a
    /// backend may run it before the spending write, and a call that then loses the race
    /// answers [`CodeRedemption::AlreadyRedeemed`] and stores nothing); when it returns `None` (the request failed the checks the record allows:
    /// PKCE, client, redirect URI, resource) the code stays spent and nothing else is stored,
    /// so that a wrong verifier cannot be retried.
    async fn exchange_code(
        &self,
        hash: &SecretHash,
        now: UnixTime,
        issue: &GrantForCode<'_>,
    ) -> StoreResult<CodeRedemption>;
    /// Deletes pending requests expired at `now` and codes expired before `codes_before` (kept
    /// a while after expiry so that a late replay is still recognised). Returns how many rows.
    async fn sweep_authorizations(&self, now: UnixTime, codes_before: UnixTime) -> StoreResult<u64>;
}

/// What a code exchange stores beside the spent code: the new grant and the hash of its first
/// refresh token, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewGrant {
    /// The grant, as [`GrantStore::create_grant`] would store it.
    pub grant: Grant,
    /// The hash of its first refresh token (generation `grant.generation`).
    pub refresh_token: Option<SecretHash>,
}

impl NewGrant {
    /// A grant and the hash of its first refresh token.
    pub fn new(grant: Grant, refresh_token: Option<SecretHash>) -> Self {
        Self { grant, refresh_token }
    }
}

/// Decides, from the record of a code just redeemed, the grant to store with it
/// ([`AuthorizationStore::exchange_code`]); `None` refuses the exchange.
pub type GrantForCode<'a> = dyn Fn(&AuthorizationCodeRecord) -> Option<NewGrant> + Send + Sync + 'a;

/// A grant: one approved authorization and the refresh-token family it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Grant {
    /// Grant id.
    pub id: GrantId,
    /// The client.
    pub client_id: ClientId,
    /// The user.
    pub user: UserId,
    /// Granted scopes (a refresh may narrow the access token, never this).
    pub scopes: ScopeSet,
    /// Bound resource: every access token's `aud`.
    pub resource: ResourceUri,
    /// When the user signed in.
    pub auth_time: UnixTime,
    /// When the grant was created.
    pub created_at: UnixTime,
    /// Generation of the current refresh token (0 for the first).
    pub generation: u64,
    /// Whether the grant has refresh tokens at all.
    pub has_refresh_token: bool,
    /// When the current refresh token replaced its predecessor.
    pub rotated_at: Option<UnixTime>,
    /// When the current refresh token expires.
    pub refresh_expires_at: Option<UnixTime>,
    /// When the grant was revoked.
    pub revoked_at: Option<UnixTime>,
}

impl Grant {
    /// A new grant that issues access tokens only (a machine token, an enterprise assertion):
    /// no refresh-token family, swept like any grant once its tokens have expired.
    pub fn access_only(
        client_id: ClientId,
        user: UserId,
        scopes: ScopeSet,
        resource: ResourceUri,
        auth_time: UnixTime,
        now: UnixTime,
    ) -> Self {
        Self {
            id: GrantId::generate(),
            client_id,
            user,
            scopes,
            resource,
            auth_time,
            created_at: now,
            generation: 0,
            has_refresh_token: false,
            rotated_at: None,
            refresh_expires_at: None,
            revoked_at: None,
        }
    }
}

/// One entry of the revocation feed ([`GrantStore::revocations_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation {
    /// The entry's position in the feed.
    pub position: u64,
    /// The grant revoked.
    pub grant: GrantId,
    /// When it was revoked.
    pub at: UnixTime,
}

impl Revocation {
    /// An entry, as a store reads it back.
    pub fn new(position: u64, grant: GrantId, at: UnixTime) -> Self {
        Self { position, grant, at }
    }
}

/// Grants and their refresh-token families.
#[async_trait]
pub trait GrantStore: Debug + Send + Sync + 'static {
    /// Stores a new grant and, if given, the hash of its first refresh token (generation
    /// `grant.generation`). [`StoreError::Conflict`] if the id exists.
    async fn create_grant(&self, grant: &Grant, refresh_token: Option<&SecretHash>) -> StoreResult<()>;
    /// The grant with this id, revoked or not.
    async fn grant(&self, id: &GrantId) -> StoreResult<Option<Grant>>;
    /// The grant a refresh token (any generation) belongs to, and that token's generation.
    async fn find_refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<(Grant, u64)>>;
    /// Compare-and-swap: if the grant is unrevoked and at `expected_generation`, records
    /// `new_token` as generation `expected_generation + 1`, sets `rotated_at = now` and
    /// `refresh_expires_at`, and returns `true`. Otherwise changes nothing and returns `false`.
    async fn rotate_refresh_token(
        &self,
        id: &GrantId,
        expected_generation: u64,
        new_token: &SecretHash,
        now: UnixTime,
        refresh_expires_at: UnixTime,
    ) -> StoreResult<bool>;
    /// Revokes a grant and so its whole refresh-token family; `false` if it was not active.
    /// Its [upstream tokens](UpstreamStore::upstream_tokens) and refresh lease are deleted in
    /// the same step.
    async fn revoke_grant(&self, id: &GrantId, now: UnixTime) -> StoreResult<bool>;
    /// Revokes every grant of a client, deleting their upstream tokens in the same step.
    /// Returns how many.
    async fn revoke_client_grants(&self, client_id: &ClientId, now: UnixTime) -> StoreResult<u64>;
    /// The grants of a client, newest first.
    async fn client_grants(&self, client_id: &ClientId) -> StoreResult<Vec<Grant>>;
    /// Deletes grants revoked, or whose refresh token expired, before `before`, with their
    /// tokens and [upstream tokens](UpstreamStore::upstream_tokens), and the
    /// [revocations](Self::revocations_since) recorded before `before`. Returns how many grants.
    async fn sweep_grants(&self, before: UnixTime) -> StoreResult<u64>;
    /// The revocation feed: the grants revoked after position `after` (`0`: from the oldest
    /// kept), in order of position, at most `limit`. Every grant the store marks revoked, by
    /// [`Self::revoke_grant`], [`Self::revoke_client_grants`] or any other way, is in the feed
    /// once, at a position greater than every earlier one, until [`Self::sweep_grants`] drops
    /// it; what another process on the same store follows to refuse a revoked grant's tokens.
    async fn revocations_since(&self, after: u64, limit: usize) -> StoreResult<Vec<Revocation>>;
    /// Waits until the feed may have grown, at most `max`: a backend that can be told (such as
    /// PostgreSQL's `LISTEN`) returns early; the others simply wait `max`, and the follower
    /// polls.
    async fn wait_for_revocations(&self, max: std::time::Duration) {
        tokio::time::sleep(max).await;
    }
    /// The user's grants that are not revoked and whose refresh token (if any) has not
    /// expired at `now`, newest first (by `created_at`, then id), at most `limit`: what the
    /// user's "Connected apps" page lists.
    async fn user_grants(&self, user: &UserId, now: UnixTime, limit: usize) -> StoreResult<Vec<Grant>>;
}

/// A user's consent to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Consent {
    /// The user.
    pub user: UserId,
    /// The client.
    pub client_id: ClientId,
    /// Scopes consented to.
    pub scopes: ScopeSet,
    /// When.
    pub granted_at: UnixTime,
}

impl Consent {
    /// A consent record.
    pub fn new(user: UserId, client_id: ClientId, scopes: ScopeSet, granted_at: UnixTime) -> Self {
        Self { user, client_id, scopes, granted_at }
    }
}

/// Consent per user and client.
#[async_trait]
pub trait ConsentStore: Debug + Send + Sync + 'static {
    /// The user's consent to the client.
    async fn consent(&self, user: &UserId, client_id: &ClientId) -> StoreResult<Option<Consent>>;
    /// Records (or replaces) a consent.
    async fn put_consent(&self, consent: &Consent) -> StoreResult<()>;
    /// Withdraws a consent; `false` if there was none.
    async fn revoke_consent(&self, user: &UserId, client_id: &ClientId) -> StoreResult<bool>;
}

/// A user of the built-in sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct User {
    /// Stable id: the token's `sub`.
    pub id: UserId,
    /// Sign-in name, unique.
    pub username: String,
    /// Argon2id PHC hash of the password.
    pub password_hash: String,
    /// When the user was created.
    pub created_at: UnixTime,
    /// Disabled users cannot sign in.
    pub disabled: bool,
    /// Bumped at every password change: a sign-in session made at an older version is refused.
    #[serde(default)]
    pub credential_version: u64,
}

impl User {
    /// A user record.
    pub fn new(id: UserId, username: String, password_hash: String, created_at: UnixTime) -> Self {
        Self { id, username, password_hash, created_at, disabled: false, credential_version: 0 }
    }
}

/// Users of the built-in sign-in.
#[async_trait]
pub trait UserStore: Debug + Send + Sync + 'static {
    /// Inserts a user; [`StoreError::Conflict`] if the id or username exists.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// The user with this id.
    async fn user(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// The user with this username.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Replaces a user's record; `false` if there is none.
    async fn update_user(&self, user: &User) -> StoreResult<bool>;
    /// Deletes a user; `false` if there was none. A backend that is also the
    /// [`UpstreamStore`] deletes the user's [upstream links](UpstreamStore::links_of) in the
    /// same step, so that no upstream identity signs in as a removed user.
    async fn delete_user(&self, id: &UserId) -> StoreResult<bool>;
    /// Every user, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
}

/// Signing keys, persisted so that tokens survive a restart and replicas agree.
#[async_trait]
pub trait KeyStore: Debug + Send + Sync + 'static {
    /// Every key, oldest first.
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Inserts a key; [`StoreError::Conflict`] if the kid exists.
    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()>;
    /// Marks a key retired at `at` (still published, no longer used to sign).
    async fn retire_key(&self, kid: &str, at: UnixTime) -> StoreResult<bool>;
    /// Deletes a key.
    async fn delete_key(&self, kid: &str) -> StoreResult<bool>;
    /// The server secret `name` (a key only this server uses, such as the one refresh-token
    /// successors are derived with), storing `candidate` if there is none yet. Atomic: of any
    /// number of callers, on any number of replicas, every one gets the value stored first.
    async fn server_secret(&self, name: &str, candidate: &[u8], now: UnixTime) -> StoreResult<Vec<u8>>;
    /// Replaces the server secret `name`, or stores it if there is none (a rotation).
    async fn replace_server_secret(&self, name: &str, value: &[u8], now: UnixTime) -> StoreResult<()>;
}

/// Flow events, for the operator's "what happened to client X".
#[async_trait]
pub trait EventStore: Debug + Send + Sync + 'static {
    /// Appends an event.
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()>;
    /// Appends events in their order, in one transaction where the store has them (the
    /// server's event writer stores what has queued with one call). By default, one
    /// [`Self::record_event`] after the other.
    async fn record_events(&self, events: &[FlowEvent]) -> StoreResult<()> {
        for event in events {
            self.record_event(event).await?;
        }
        Ok(())
    }
    /// Events matching the query, oldest first.
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>>;
    /// Deletes events older than `before`. Returns how many.
    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64>;
}

/// Longest key a [`LimitStore`] is given, in bytes: callers build keys from a limit's name and
/// an address or a hash, never from unbounded input.
pub const MAX_LIMIT_KEY: usize = 128;

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BucketRate {
    /// Tokens a full bucket holds (at least 1).
    pub burst: u32,
    /// Tokens added per second (more than 0).
    pub per_second: f64,
}

impl BucketRate {
    /// `burst` at once, `per_second` sustained; a zero burst counts as one and a rate that is
    /// not positive as one token an hour.
    pub fn new(burst: u32, per_second: f64) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 { per_second } else { 1.0 / 3600.0 };
        Self { burst: burst.max(1), per_second }
    }

    /// The tokens a bucket that held `tokens` at `at_ms` holds at `now_ms` (never more than
    /// the burst; a clock that went back refills nothing).
    pub fn refilled(&self, tokens: f64, at_ms: i64, now_ms: i64) -> f64 {
        let elapsed = now_ms.saturating_sub(at_ms).max(0) as f64 / 1000.0;
        (tokens + elapsed * self.per_second).min(f64::from(self.burst))
    }

    /// How long a bucket holding `tokens` (fewer than one) waits for its next token.
    pub fn wait(&self, tokens: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64(((1.0 - tokens).max(0.0) / self.per_second).min(86_400.0))
    }
}

/// How an account's failures turn into blocks: given the count of failures in a row, the
/// block the latest one starts, if any.
pub type BlockAfter = dyn Fn(u32) -> Option<std::time::Duration> + Send + Sync;

/// Limits every replica shares: rate-limit token buckets and per-account sign-in failures, so
/// that N replicas behind one balancer do not give a stranger N times the guesses. Keys are
/// built by the caller from a limit's name and an address or a hash, at most
/// [`MAX_LIMIT_KEY`] bytes; nothing secret is in them. Bounded: [`LimitStore::sweep_limits`]
/// drops what no longer limits anyone and caps each table.
#[async_trait]
pub trait LimitStore: Debug + Send + Sync + 'static {
    /// Takes one token from bucket `key` at `now_ms` (milliseconds since the epoch), creating
    /// it full. `None` when a token was taken; `Some(wait)` when the bucket is empty, with the
    /// time until one is back. One atomic step: replicas racing for the last token never both
    /// get it.
    async fn take_token(&self, key: &str, rate: BucketRate, now_ms: i64) -> StoreResult<Option<std::time::Duration>>;
    /// Counts one failure for `key` at `now` (a count whose last failure is older than
    /// `forget_after` starts again), then blocks the key for `block_after(count)` from `now`
    /// unless a longer block is already set. Returns the block this failure started, if any.
    async fn record_failure(
        &self,
        key: &str,
        now: UnixTime,
        forget_after: std::time::Duration,
        block_after: &BlockAfter,
    ) -> StoreResult<Option<UnixTime>>;
    /// When `key` is blocked at `now`: the end of its block, and whether this is the first time
    /// the block is asked about (one flow event per block, from whichever replica).
    async fn blocked(&self, key: &str, now: UnixTime) -> StoreResult<Option<(UnixTime, bool)>>;
    /// Forgets `key`'s failures and block (a successful sign-in).
    async fn clear_failures(&self, key: &str) -> StoreResult<()>;
    /// Marks `key` used until `until`, if it is not already marked at `now`: `true` for its
    /// first use, `false` for a replay (a client assertion's or an ID-JAG's `jti`). One atomic
    /// step: of replicas racing with the same key, one wins. A mark is never evicted before
    /// `until` (which would let a replay through); callers bound `until` and the rate of new
    /// keys, which bounds the table.
    async fn first_use(&self, key: &str, until: UnixTime, now: UnixTime) -> StoreResult<bool>;
    /// Deletes buckets that are full again at `now_ms`, failure records whose last failure is
    /// before `failures_before` and whose block is over, single-use marks past their `until`,
    /// then the least recently used rows beyond `max_rows` in the buckets and failures tables.
    /// Returns how many rows went.
    async fn sweep_limits(&self, now_ms: i64, failures_before: UnixTime, max_rows: u64) -> StoreResult<u64>;
    /// Whether other processes may share this store (a database server several replicas
    /// connect to): servers then share their limits through it unless told otherwise.
    /// Default: `false`.
    fn shared_by_processes(&self) -> bool {
        false
    }
}

/// Every store the server needs.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Clients.
    pub clients: Arc<dyn ClientStore>,
    /// Pending requests and codes.
    pub authorizations: Arc<dyn AuthorizationStore>,
    /// Grants and refresh tokens.
    pub grants: Arc<dyn GrantStore>,
    /// Consents.
    pub consents: Arc<dyn ConsentStore>,
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Signing keys.
    pub keys: Arc<dyn KeyStore>,
    /// Flow events.
    pub events: Arc<dyn EventStore>,
    /// Sign-in sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Limits shared by every replica.
    pub limits: Arc<dyn LimitStore>,
    /// Upstream sign-in links and the upstream-token vault. The same backend as
    /// [`Self::grants`] (as [`Self::from_backend`] makes it): revoking or sweeping a grant
    /// deletes its vault record there.
    pub upstream: Arc<dyn UpstreamStore>,
}

impl Stores {
    /// All stores from one backend that implements every trait.
    pub fn from_backend<B>(backend: Arc<B>) -> Self
    where
        B: ClientStore + AuthorizationStore + GrantStore + ConsentStore + UserStore + KeyStore + EventStore,
        B: SessionStore + LimitStore + UpstreamStore,
    {
        Self {
            clients: backend.clone(),
            authorizations: backend.clone(),
            grants: backend.clone(),
            consents: backend.clone(),
            users: backend.clone(),
            keys: backend.clone(),
            events: backend.clone(),
            sessions: backend.clone(),
            limits: backend.clone(),
            upstream: backend,
        }
    }
}

/// A signed-in browser, stored under the SHA-256 hash of the random token its cookie carries:
/// the token itself is never stored, so a copy of the table signs no one in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignInSession {
    /// SHA-256 of the session token.
    pub hash: SecretHash,
    /// The user.
    pub user: UserId,
    /// Name to show ("Signed in as …").
    pub name: String,
    /// The user's credential version at sign-in; a password change since ends the session.
    pub credential_version: u64,
    /// When the user signed in (the grants' `auth_time`).
    pub auth_time: UnixTime,
    /// When the session stops being usable.
    pub expires_at: UnixTime,
}

impl SignInSession {
    /// A session record.
    pub fn new(
        hash: SecretHash,
        user: UserId,
        name: String,
        credential_version: u64,
        auth_time: UnixTime,
        expires_at: UnixTime,
    ) -> Self {
        Self { hash, user, name, credential_version, auth_time, expires_at }
    }
}

/// Sign-in sessions, so that the server can end them: sign-out, and removing, disabling or
/// re-passwording a user. Bounded: at most `max_per_user` sessions per user, expired ones swept.
#[async_trait]
pub trait SessionStore: Debug + Send + Sync + 'static {
    /// Stores a new session, then deletes the user's oldest sessions (by `auth_time`, then
    /// insertion order) so that at most `max_per_user` remain. [`StoreError::Conflict`] if the
    /// hash exists.
    async fn create_session(&self, session: &SignInSession, max_per_user: usize) -> StoreResult<()>;
    /// The session with this token hash, if it has not expired at `now`.
    async fn session(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<Option<SignInSession>>;
    /// Deletes a session; `false` if there was none.
    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<bool>;
    /// Deletes every session of a user. Returns how many.
    async fn delete_user_sessions(&self, user: &UserId) -> StoreResult<u64>;
    /// Deletes sessions expired at `now`. Returns how many.
    async fn sweep_sessions(&self, now: UnixTime) -> StoreResult<u64>;
}

/// Largest sealed upstream-token record a store accepts, in bytes: room for an access token, a
/// refresh token and an ID token of any provider seen, sealed, with margin.
pub const MAX_SEALED_UPSTREAM_LEN: usize = 64 * 1024;
/// Longest refresh-lease holder a store accepts, in bytes (a replica's random name).
pub const MAX_LEASE_HOLDER_LEN: usize = 128;

/// `Ok` if a store accepts `sealed` as an upstream-token record: 1 to
/// [`MAX_SEALED_UPSTREAM_LEN`] bytes. Every [`UpstreamStore`] checks this before it writes, and
/// refuses anything else with [`StoreError::Refused`].
pub fn check_sealed_upstream(sealed: &[u8]) -> StoreResult<()> {
    if sealed.is_empty() || sealed.len() > MAX_SEALED_UPSTREAM_LEN {
        return Err(StoreError::Refused(format!(
            "a sealed upstream-token record must be 1 to {MAX_SEALED_UPSTREAM_LEN} bytes, not {}",
            sealed.len()
        )));
    }
    Ok(())
}

/// `Ok` if a store accepts `holder` as a refresh-lease holder: 1 to [`MAX_LEASE_HOLDER_LEN`]
/// bytes. Every [`UpstreamStore`] checks this, and refuses anything else with
/// [`StoreError::Refused`].
pub fn check_lease_holder(holder: &str) -> StoreResult<()> {
    if holder.is_empty() || holder.len() > MAX_LEASE_HOLDER_LEN {
        return Err(StoreError::Refused(format!("a lease holder must be 1 to {MAX_LEASE_HOLDER_LEN} bytes")));
    }
    Ok(())
}

/// A person's identity at an upstream provider, as linked to a user here
/// ([`UpstreamStore::links_of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpstreamLink {
    /// The provider.
    pub provider: UpstreamProviderId,
    /// Who the person is there.
    pub subject: UpstreamSubject,
    /// When the link was made.
    pub linked_at: UnixTime,
}

impl UpstreamLink {
    /// A link, as a store reads it back.
    pub fn new(provider: UpstreamProviderId, subject: UpstreamSubject, linked_at: UnixTime) -> Self {
        Self { provider, subject, linked_at }
    }
}

/// A grant's upstream tokens, sealed (AES-256-GCM) before they reach the store: the store
/// keeps the bytes and never sees what they hold.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealedUpstream {
    /// The sealed record.
    pub sealed: Vec<u8>,
    /// Starts at 1 and grows by one at every write: what
    /// [`UpstreamStore::replace_upstream_tokens`] compares.
    pub version: u64,
    /// When the upstream access token expires, if the provider said.
    pub expires_at: Option<UnixTime>,
    /// When the record was last written.
    pub updated_at: UnixTime,
}

impl SealedUpstream {
    /// A record, as a store reads it back.
    pub fn new(sealed: Vec<u8>, version: u64, expires_at: Option<UnixTime>, updated_at: UnixTime) -> Self {
        Self { sealed, version, expires_at, updated_at }
    }
}

impl Debug for SealedUpstream {
    /// The length of the sealed bytes, not the bytes: they have no use in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedUpstream")
            .field("sealed", &format_args!("[{} bytes]", self.sealed.len()))
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Upstream sign-in: who a person is at an upstream identity provider (links), and, per grant,
/// the upstream tokens that sign-in obtained (the vault), with a lease so that one replica at a
/// time refreshes them.
///
/// - **Links** map (provider, subject) to one user, forever: a link is never moved to another
///   user, and of replicas racing to link one identity to different users exactly one wins.
///   They end with their user ([`UserStore::delete_user`], [`Self::unlink_user`]).
/// - **Vault records** are opaque sealed bytes, at most [`MAX_SEALED_UPSTREAM_LEN`], one per
///   live grant: stored only for an unrevoked grant, replaced by compare-and-swap on their
///   version, and deleted with their grant: in the same step as its revocation
///   ([`GrantStore::revoke_grant`], [`GrantStore::revoke_client_grants`], and so every path
///   that revokes: code replay, refresh replay, RFC 7009, the operator, the user's Connected
///   apps) and with its sweep ([`GrantStore::sweep_grants`]). The table is therefore bounded by
///   the grants.
/// - **The refresh lease** lives on the vault record and goes with it: one holder at a time
///   until its `until`, after which anyone may take it over.
///
/// A backend implements it beside [`GrantStore`] and [`UserStore`], on the same data, so that
/// those deletions happen in one transaction.
#[async_trait]
pub trait UpstreamStore: Debug + Send + Sync + 'static {
    /// The user `subject` at `provider` is linked to.
    async fn linked_user(
        &self,
        provider: &UpstreamProviderId,
        subject: &UpstreamSubject,
    ) -> StoreResult<Option<UserId>>;
    /// Links `subject` at `provider` to `user`, at `now`. `true` if it is now linked to `user`
    /// (newly, or already: `linked_at` then stays); `false` if it is linked to another user,
    /// which is never overwritten. One atomic step: of replicas racing to link one identity to
    /// different users, exactly one gets `true`.
    async fn link_user(
        &self,
        provider: &UpstreamProviderId,
        subject: &UpstreamSubject,
        user: &UserId,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Every identity linked to `user`, oldest link first, then by provider and subject (in
    /// byte order).
    async fn links_of(&self, user: &UserId) -> StoreResult<Vec<UpstreamLink>>;
    /// Deletes every link of `user` (the user is being removed). Returns how many.
    async fn unlink_user(&self, user: &UserId) -> StoreResult<u64>;

    /// Stores `sealed` as the upstream tokens of `grant`, written at `now`: a new record at
    /// version 1, or over the existing one at its version + 1 (never back to 1, so that a
    /// compare-and-swap prepared against the old record fails), keeping its lease. `false`,
    /// storing nothing, if the grant does not exist or is revoked: a revoked grant never gets
    /// a record back. [`StoreError::Refused`] if `sealed` fails [`check_sealed_upstream`].
    async fn put_upstream_tokens(
        &self,
        grant: &GrantId,
        sealed: &[u8],
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// The upstream tokens of `grant`.
    async fn upstream_tokens(&self, grant: &GrantId) -> StoreResult<Option<SealedUpstream>>;
    /// Compare-and-swap: if the record of `grant` is at `expected_version`, replaces it with
    /// `sealed` at version `expected_version + 1`, written at `now`, and returns `true`.
    /// Otherwise (replaced by someone else first, or gone) changes nothing and returns `false`.
    /// Of any number of racing replacements from one version, exactly one wins. The lease is
    /// kept (its holder releases it). [`StoreError::Refused`] if `sealed` fails
    /// [`check_sealed_upstream`].
    async fn replace_upstream_tokens(
        &self,
        grant: &GrantId,
        expected_version: u64,
        sealed: &[u8],
        expires_at: Option<UnixTime>,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Deletes the record of `grant` and its lease (the upstream refused its refresh token);
    /// `false` if there was none. A record put again afterwards starts over at version 1.
    async fn delete_upstream_tokens(&self, grant: &GrantId) -> StoreResult<bool>;

    /// Takes the refresh lease of `grant`'s record for `holder` until `until`: `true` if the
    /// record has no lease, one that has expired at `now` (`until <= now`), or one `holder`
    /// already holds (which is then extended or shortened to `until`); `false` if another
    /// holder's lease runs at `now`, or there is no record. One atomic step: of replicas racing
    /// for the lease, exactly one gets `true`. [`StoreError::Refused`] if `holder` fails
    /// [`check_lease_holder`].
    async fn take_refresh_lease(
        &self,
        grant: &GrantId,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Ends `holder`'s lease of `grant`'s record, expired or not: `true` if `holder` held it;
    /// `false`, changing nothing, if someone else holds it or no one does.
    /// [`StoreError::Refused`] if `holder` fails [`check_lease_holder`].
    async fn release_refresh_lease(&self, grant: &GrantId, holder: &str) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AuthorizationCode, CodeVerifier};
    use crate::types::{GrantId, RedirectUri, ResourceUri, ScopeSet, UserId};

    fn record(expires_at: i64) -> AuthorizationCodeRecord {
        AuthorizationCodeRecord {
            hash: AuthorizationCode::generate().hash(),
            grant_id: GrantId::generate(),
            client_id: ClientId::parse("c1").unwrap(),
            user: UserId::parse("user-1").unwrap(),
            redirect_uri: RedirectUri::parse("http://127.0.0.1:9/cb").unwrap(),
            redirect_uri_explicit: true,
            code_challenge: CodeChallenge::s256(&CodeVerifier::generate()),
            scopes: ScopeSet::parse("mcp:tools").unwrap(),
            resource: ResourceUri::parse("http://127.0.0.1:8080/mcp").unwrap(),
            auth_time: UnixTime::from_secs(0),
            issued_at: UnixTime::from_secs(0),
            expires_at: UnixTime::from_secs(expires_at),
            upstream: None,
        }
    }

    #[test]
    fn a_replay_wins_over_expiry_and_only_an_unspent_live_code_is_redeemable() {
        let now = UnixTime::from_secs(100);
        let c1 = ClientId::parse("c1").unwrap();
        // (expires_at, redeemed before) → redeemable, and the refusal otherwise.
        let table = [
            (101, false, true, CodeRedemption::NotFound),
            (100, false, false, CodeRedemption::Expired { client_id: c1.clone() }),
            (50, false, false, CodeRedemption::Expired { client_id: c1 }),
            (101, true, false, CodeRedemption::AlreadyRedeemed(record(101))),
            (50, true, false, CodeRedemption::AlreadyRedeemed(record(50))),
        ];
        for (expires_at, redeemed, redeemable, refusal) in table {
            let rec = record(expires_at);
            assert_eq!(CodeRedemption::redeemable(&rec, redeemed, now), redeemable, "{expires_at} {redeemed}");
            let got = CodeRedemption::refused(rec, redeemed, now);
            let same = match (&got, &refusal) {
                (CodeRedemption::AlreadyRedeemed(a), CodeRedemption::AlreadyRedeemed(b)) => {
                    a.expires_at == b.expires_at
                }
                (a, b) => a == b,
            };
            assert!(same, "{expires_at} {redeemed}: {got:?}");
        }
    }
}
