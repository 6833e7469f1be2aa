//! The store conformance kit: one suite of async tests that every store backend runs, so that
//! the storage contract (single-use codes, refresh rotation as compare-and-swap, expiry,
//! hashing) is proven for each of them, including under races.
//!
//! Run it with one macro call in a test file of the backend's crate; the expression is
//! evaluated once per test and must yield a fresh, empty [`Stores`]:
//!
//! ```text
//! oauth_core::store_conformance_tests!(async { my_store::MyStore::new().into_stores() });
//! ```
//!
//! Each test is also a public `async fn(Stores)` here, for backends that need their own
//! harness. The tests use `tokio`'s multi-threaded runtime, so the races are real.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::admin::NewClient;
use crate::authorize::AuthorizationRequest;
use crate::client::{Client, ClientOrigin, GrantType, TokenEndpointAuthMethod};
use crate::clock::{Clock, ManualClock, UnixTime};
use crate::error::{Error, ErrorCode, StoreError};
use crate::events::{EventQuery, FlowEvent, FlowStep, Reason};
use crate::keys::{SigningAlgorithm, StoredKey};
use crate::pkce::CodeChallenge;
use crate::registration::RegistrationRequest;
use crate::secret::{AuthorizationCode, ClientSecret, CodeVerifier, RefreshToken, SecretHash};
use crate::server::{AuthorizationServer, ServerConfig};
use crate::store::{
    AuthorizationCodeRecord, CodeRedemption, Consent, Grant, NewGrant, PendingAuthorization, SealedUpstream,
    SignInSession, Stores, UpstreamLink, User,
};
use crate::token::TokenRequest;
use crate::types::{
    ClientId, GrantId, Issuer, RedirectUri, ResourceUri, ScopeSet, UpstreamProviderId, UpstreamSubject, UserId,
};

/// Expands into one `#[tokio::test]` per conformance test, each on a fresh store from
/// `$factory` (an expression yielding a future of [`Stores`]).
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@each $factory;
            clients_roundtrip,
            unused_dynamic_clients_are_collected,
            pending_requests_expire_and_are_single_use,
            codes_redeem_once_and_expire,
            code_redemption_race_has_one_winner,
            a_code_exchange_stores_its_grant_with_the_spent_code,
            a_refused_exchange_spends_the_code_and_stores_no_grant,
            a_failed_exchange_spends_nothing,
            code_exchange_race_stores_one_grant,
            refresh_rotation_is_compare_and_swap,
            refresh_rotation_race_has_one_winner,
            grants_revoke_and_sweep,
            revocations_form_a_feed,
            a_follower_learns_of_each_revocation_once,
            consents_roundtrip,
            users_roundtrip,
            keys_roundtrip,
            events_query_and_sweep,
            sweep_removes_only_expired_authorizations,
            secrets_are_stored_only_as_hashes,
            full_flow_issues_verifiable_tokens,
            concurrent_code_exchanges_one_wins,
            code_replay_revokes_the_grant,
            concurrent_refreshes_rotate_once,
            refresh_replay_after_grace_revokes_family,
            grant_error_paths_write_nothing,
            keys_survive_a_restart,
            an_operators_key_rotation_reaches_running_servers,
            scheduled_rotation_replaces_an_old_key_once_across_replicas,
            sealed_keys_are_not_rotated_without_the_key_encryption_key,
            operator_manages_clients_and_users,
            server_secrets_are_shared_first_writer_wins,
            replicas_derive_the_same_refresh_successor,
            machine_tokens_are_marked_revocable_and_operator_only,
            introspection_answers_only_the_entitled,
            legacy_client_secret_hashes_verify_once_and_are_rehashed,
            user_grants_list_live_grants_newest_first,
            connected_apps_revoke_only_the_users_grants,
            sessions_roundtrip,
            sessions_are_bounded_per_user,
            sessions_end_with_their_user,
            shared_buckets_allow_a_burst_then_the_rate,
            racing_replicas_never_share_a_buckets_last_token,
            sign_in_failures_block_and_each_block_is_reported_once,
            limits_sweep_what_limits_no_one_and_stay_bounded,
            single_use_marks_refuse_replays_until_they_expire,
            racing_replicas_use_a_mark_once,
            upstream_links_are_never_moved,
            racing_replicas_link_an_identity_once,
            upstream_links_end_with_their_user,
            upstream_inputs_beyond_their_bounds_are_refused,
            upstream_tokens_are_replaced_by_compare_and_swap,
            racing_replacements_of_upstream_tokens_have_one_winner,
            upstream_tokens_end_with_every_revocation,
            a_write_racing_a_revocation_leaves_no_record,
            upstream_tokens_are_swept_with_their_grants,
            refresh_leases_have_one_holder_at_a_time,
            racing_replicas_take_a_refresh_lease_once,
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let stores: $crate::Stores = $factory.await;
                $crate::testing::$name(stores).await;
            }
        )*
    };
}

/// Spends a code and stores nothing with it: the exchange of a request that failed its checks.
async fn redeem(
    s: &dyn crate::store::AuthorizationStore,
    hash: &SecretHash,
    now: UnixTime,
) -> crate::store::StoreResult<CodeRedemption> {
    s.exchange_code(hash, now, &|_| None).await
}

/// The issuer of the kit's servers.
pub const ISSUER: &str = "https://as.example.com";
/// The resource the kit's servers protect.
pub const RESOURCE: &str = "https://as.example.com/mcp";
/// The redirect URI the kit's clients register.
pub const REDIRECT: &str = "http://127.0.0.1:7777/callback";
/// The redirect URI the kit's clients send: the registered loopback one on another port and
/// host spelling (RFC 8252 7.3).
pub const CALLBACK: &str = "http://localhost:45678/callback";
const T0: i64 = 1_800_000_000;

fn t(secs: i64) -> UnixTime {
    UnixTime::from_secs(T0 + secs)
}

fn cid(s: &str) -> ClientId {
    ClientId::parse(s).unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn client(id: &str, origin: ClientOrigin, created: UnixTime) -> Client {
    Client::new(cid(id), TokenEndpointAuthMethod::None, vec![RedirectUri::parse(REDIRECT).unwrap()], origin, created)
}

fn code_record(code: &AuthorizationCode, client: &str, expires: UnixTime) -> AuthorizationCodeRecord {
    AuthorizationCodeRecord {
        hash: code.hash(),
        grant_id: GrantId::generate(),
        client_id: cid(client),
        user: uid("user-1"),
        redirect_uri: RedirectUri::parse(REDIRECT).unwrap(),
        redirect_uri_explicit: true,
        code_challenge: CodeChallenge::s256(&CodeVerifier::generate()),
        scopes: ScopeSet::parse("mcp:tools").unwrap(),
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        auth_time: t(0),
        issued_at: t(0),
        expires_at: expires,
        upstream: None,
    }
}

fn grant(client: &str) -> Grant {
    Grant {
        id: GrantId::generate(),
        client_id: cid(client),
        user: uid("user-1"),
        scopes: ScopeSet::parse("mcp:tools").unwrap(),
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        auth_time: t(0),
        created_at: t(0),
        generation: 0,
        has_refresh_token: true,
        rotated_at: None,
        refresh_expires_at: Some(t(86_400)),
        revoked_at: None,
    }
}

pub async fn clients_roundtrip(stores: Stores) {
    let s = &stores.clients;
    let mut c = client("kit-client", ClientOrigin::Dynamic, t(0));
    c.secret_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    c.name = Some("Kit ✓".into());
    c.scope = Some(ScopeSet::parse("mcp:tools").unwrap());
    s.create_client(&c).await.unwrap();
    assert!(matches!(s.create_client(&c).await, Err(StoreError::Conflict(_))), "duplicate id must conflict");
    assert_eq!(s.client(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(s.client(&cid("nope")).await.unwrap(), None);

    c.trusted = true;
    c.redirect_uris.push(RedirectUri::parse("https://claude.ai/api/mcp/auth_callback").unwrap());
    assert!(s.update_client(&c).await.unwrap());
    assert_eq!(s.client(&c.id).await.unwrap(), Some(c.clone()));
    assert!(!s.update_client(&client("ghost", ClientOrigin::Dynamic, t(0))).await.unwrap());

    s.touch_client(&c.id, t(5)).await.unwrap();
    assert_eq!(s.client(&c.id).await.unwrap().unwrap().last_used_at, Some(t(5)));

    let other = client("kit-other", ClientOrigin::PreRegistered, t(1));
    s.create_client(&other).await.unwrap();
    let ids: Vec<ClientId> = s.list_clients().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![c.id.clone(), other.id.clone()], "oldest first");

    assert!(s.delete_client(&c.id).await.unwrap());
    assert!(!s.delete_client(&c.id).await.unwrap());
    assert_eq!(s.client(&c.id).await.unwrap(), None);
}

pub async fn unused_dynamic_clients_are_collected(stores: Stores) {
    let s = &stores.clients;
    let old_unused = client("old-unused", ClientOrigin::Dynamic, t(0));
    let used_long_ago = client("used-long-ago", ClientOrigin::Dynamic, t(0));
    let used_lately = client("used-lately", ClientOrigin::Dynamic, t(0));
    let old_document = client("https://app.example/old-doc.json", ClientOrigin::MetadataDocument, t(0));
    let used_document = client("https://app.example/used-doc.json", ClientOrigin::MetadataDocument, t(0));
    let old_pre = client("old-pre", ClientOrigin::PreRegistered, t(0));
    let new_unused = client("new-unused", ClientOrigin::Dynamic, t(1000));
    for c in [&old_unused, &used_long_ago, &used_lately, &old_document, &used_document, &old_pre, &new_unused] {
        s.create_client(c).await.unwrap();
    }
    s.touch_client(&used_long_ago.id, t(10)).await.unwrap();
    s.touch_client(&used_lately.id, t(600)).await.unwrap();
    s.touch_client(&used_document.id, t(700)).await.unwrap();
    // Unused since before 500: never used and old, used only long ago, an old document client.
    assert_eq!(s.delete_unused_dynamic_clients(t(500)).await.unwrap(), 3);
    for c in [&old_unused, &used_long_ago, &old_document] {
        assert!(s.client(&c.id).await.unwrap().is_none(), "{} must be collected", c.id);
    }
    for c in [&used_lately, &used_document, &old_pre, &new_unused] {
        assert!(s.client(&c.id).await.unwrap().is_some(), "{} must survive", c.id);
    }
    assert_eq!(s.delete_unused_dynamic_clients(t(500)).await.unwrap(), 0, "nothing left to collect");
}

fn pending(id: &str, expires: UnixTime) -> PendingAuthorization {
    PendingAuthorization {
        id: id.into(),
        client_id: cid("kit-client"),
        redirect_uri: RedirectUri::parse(REDIRECT).unwrap(),
        redirect_uri_explicit: true,
        state: Some("st".into()),
        scopes: ScopeSet::parse("mcp:tools").unwrap(),
        resource: ResourceUri::parse(RESOURCE).unwrap(),
        code_challenge: CodeChallenge::s256(&CodeVerifier::generate()),
        created_at: t(0),
        expires_at: expires,
        upstream: None,
    }
}

pub async fn pending_requests_expire_and_are_single_use(stores: Stores) {
    let s = &stores.authorizations;
    let p = pending("p1", t(600));
    s.put_pending(&p).await.unwrap();
    assert_eq!(s.pending("p1", t(10)).await.unwrap(), Some(p.clone()));
    assert_eq!(s.pending("p1", t(600)).await.unwrap(), None, "expired requests are not returned");
    assert_eq!(s.pending("nope", t(10)).await.unwrap(), None);
    assert_eq!(s.take_pending("p1", t(10)).await.unwrap(), Some(p));
    assert_eq!(s.take_pending("p1", t(10)).await.unwrap(), None, "taken once");
    assert_eq!(s.pending("p1", t(10)).await.unwrap(), None);

    s.put_pending(&pending("p2", t(600))).await.unwrap();
    assert_eq!(s.take_pending("p2", t(601)).await.unwrap(), None, "expired requests cannot be taken");

    // Racing takes: exactly one wins.
    s.put_pending(&pending("p3", t(600))).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.take_pending("p3", t(1)).await.unwrap().is_some() }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
}

pub async fn codes_redeem_once_and_expire(stores: Stores) {
    let s = &stores.authorizations;
    let code = AuthorizationCode::generate();
    let rec = code_record(&code, "kit-client", t(300));
    s.put_code(&rec).await.unwrap();
    assert_eq!(redeem(s.as_ref(), &code.hash(), t(10)).await.unwrap(), CodeRedemption::Redeemed(rec.clone()));
    assert_eq!(redeem(s.as_ref(), &code.hash(), t(11)).await.unwrap(), CodeRedemption::AlreadyRedeemed(rec));
    assert_eq!(
        redeem(s.as_ref(), &AuthorizationCode::generate().hash(), t(10)).await.unwrap(),
        CodeRedemption::NotFound
    );

    let late = AuthorizationCode::generate();
    s.put_code(&code_record(&late, "kit-client", t(300))).await.unwrap();
    assert_eq!(
        redeem(s.as_ref(), &late.hash(), t(300)).await.unwrap(),
        CodeRedemption::Expired { client_id: cid("kit-client") },
        "an expired code is never redeemed"
    );
    assert_eq!(
        redeem(s.as_ref(), &late.hash(), t(301)).await.unwrap(),
        CodeRedemption::Expired { client_id: cid("kit-client") },
        "and stays expired"
    );
}

pub async fn code_redemption_race_has_one_winner(stores: Stores) {
    let s = stores.authorizations.clone();
    let code = AuthorizationCode::generate();
    s.put_code(&code_record(&code, "kit-client", t(300))).await.unwrap();
    let hash = code.hash();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            redeem(s.as_ref(), &hash, t(1)).await.unwrap()
        }));
    }
    let (mut redeemed, mut replays) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            CodeRedemption::Redeemed(_) => redeemed += 1,
            CodeRedemption::AlreadyRedeemed(_) => replays += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((redeemed, replays), (1, 49), "exactly one of 50 concurrent redemptions wins");
}

/// The grant a code exchange would make of `record`, with a fresh refresh token.
fn grant_for(record: &AuthorizationCodeRecord) -> (NewGrant, RefreshToken) {
    let refresh = RefreshToken::generate();
    let g = Grant { id: record.grant_id.clone(), client_id: record.client_id.clone(), ..grant("kit-client") };
    (NewGrant::new(g, Some(refresh.hash())), refresh)
}

pub async fn a_code_exchange_stores_its_grant_with_the_spent_code(stores: Stores) {
    let code = AuthorizationCode::generate();
    let rec = code_record(&code, "kit-client", t(300));
    stores.authorizations.put_code(&rec).await.unwrap();
    let (new, refresh) = grant_for(&rec);
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let issue = |r: &AuthorizationCodeRecord| {
        asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r, &rec, "the grant is made of the stored record");
        Some(new.clone())
    };
    let first = stores.authorizations.exchange_code(&code.hash(), t(10), &issue).await.unwrap();
    assert_eq!(first, CodeRedemption::Redeemed(rec.clone()));
    assert_eq!(stores.grants.grant(&rec.grant_id).await.unwrap(), Some(new.grant.clone()));
    assert_eq!(stores.grants.find_refresh_token(&refresh.hash()).await.unwrap(), Some((new.grant.clone(), 0)));

    let again = stores.authorizations.exchange_code(&code.hash(), t(11), &issue).await.unwrap();
    assert_eq!(again, CodeRedemption::AlreadyRedeemed(rec.clone()), "the code was spent with its grant");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "a replay never makes another grant");
    assert_eq!(
        redeem(stores.authorizations.as_ref(), &code.hash(), t(12)).await.unwrap(),
        CodeRedemption::AlreadyRedeemed(rec.clone())
    );

    let unknown = AuthorizationCode::generate().hash();
    assert_eq!(stores.authorizations.exchange_code(&unknown, t(10), &issue).await.unwrap(), CodeRedemption::NotFound);
    let late = AuthorizationCode::generate();
    let late_rec = code_record(&late, "kit-client", t(300));
    stores.authorizations.put_code(&late_rec).await.unwrap();
    assert_eq!(
        stores.authorizations.exchange_code(&late.hash(), t(300), &issue).await.unwrap(),
        CodeRedemption::Expired { client_id: cid("kit-client") }
    );
    assert_eq!(stores.grants.grant(&late_rec.grant_id).await.unwrap(), None, "an expired code makes no grant");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
}

pub async fn a_refused_exchange_spends_the_code_and_stores_no_grant(stores: Stores) {
    let code = AuthorizationCode::generate();
    let rec = code_record(&code, "kit-client", t(300));
    stores.authorizations.put_code(&rec).await.unwrap();
    // As when the verifier is wrong: the record is read, the grant refused.
    let refused = stores.authorizations.exchange_code(&code.hash(), t(10), &|_| None).await.unwrap();
    assert_eq!(refused, CodeRedemption::Redeemed(rec.clone()));
    assert_eq!(stores.grants.grant(&rec.grant_id).await.unwrap(), None);
    let (new, _) = grant_for(&rec);
    let retry = stores.authorizations.exchange_code(&code.hash(), t(11), &|_| Some(new.clone())).await.unwrap();
    assert_eq!(retry, CodeRedemption::AlreadyRedeemed(rec.clone()), "a refused code cannot be tried again");
    assert_eq!(stores.grants.grant(&rec.grant_id).await.unwrap(), None);
}

pub async fn a_failed_exchange_spends_nothing(stores: Stores) {
    let code = AuthorizationCode::generate();
    let rec = code_record(&code, "kit-client", t(300));
    stores.authorizations.put_code(&rec).await.unwrap();
    // A grant that cannot be stored (its id is taken) fails the whole exchange...
    let (new, refresh) = grant_for(&rec);
    let squatter = Grant { id: rec.grant_id.clone(), ..grant("other-client") };
    stores.grants.create_grant(&squatter, None).await.unwrap();
    let failed = stores.authorizations.exchange_code(&code.hash(), t(10), &|_| Some(new.clone())).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "got {failed:?}");
    assert_eq!(stores.grants.find_refresh_token(&refresh.hash()).await.unwrap(), None, "no half of the grant");
    assert_eq!(stores.grants.grant(&rec.grant_id).await.unwrap(), Some(squatter), "nothing overwritten");
    // ...and leaves the code as it was: not spent, so the client's retry can still succeed.
    assert_eq!(
        redeem(stores.authorizations.as_ref(), &code.hash(), t(11)).await.unwrap(),
        CodeRedemption::Redeemed(rec)
    );
}

pub async fn code_exchange_race_stores_one_grant(stores: Stores) {
    let s = stores.authorizations.clone();
    let code = AuthorizationCode::generate();
    let rec = code_record(&code, "kit-client", t(300));
    s.put_code(&rec).await.unwrap();
    let hash = code.hash();
    // Every grant `issue` makes, with its own refresh token: a backend may ask before it
    // knows whether it wins, but only the winner's may be stored.
    let made = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, barrier, made) = (s.clone(), barrier.clone(), made.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let issue = |r: &AuthorizationCodeRecord| {
                let (new, refresh) = grant_for(r);
                made.lock().unwrap().push(refresh.hash());
                Some(new)
            };
            s.exchange_code(&hash, t(1), &issue).await.unwrap()
        }));
    }
    let mut redeemed = 0;
    for task in tasks {
        match task.await.unwrap() {
            CodeRedemption::Redeemed(_) => redeemed += 1,
            CodeRedemption::AlreadyRedeemed(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(redeemed, 1, "one exchange wins");
    let made = made.lock().unwrap().clone();
    assert!(!made.is_empty(), "the winner's grant was asked for");
    let mut stored = 0;
    for refresh in &made {
        if stores.grants.find_refresh_token(refresh).await.unwrap().is_some() {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "of {} grants made, only the winner's refresh token is stored", made.len());
    assert!(stores.grants.grant(&rec.grant_id).await.unwrap().is_some());
    assert_eq!(stores.grants.client_grants(&rec.client_id).await.unwrap().len(), 1, "one grant");
}

pub async fn refresh_rotation_is_compare_and_swap(stores: Stores) {
    let s = &stores.grants;
    let g = grant("kit-client");
    let first = RefreshToken::generate().hash();
    s.create_grant(&g, Some(&first)).await.unwrap();
    assert!(matches!(s.create_grant(&g, None).await, Err(StoreError::Conflict(_))));
    let (found, generation) = s.find_refresh_token(&first).await.unwrap().unwrap();
    assert_eq!((found.clone(), generation), (g.clone(), 0));

    let second = RefreshToken::generate().hash();
    assert!(s.rotate_refresh_token(&g.id, 0, &second, t(10), t(1000)).await.unwrap());
    assert!(
        !s.rotate_refresh_token(&g.id, 0, &RefreshToken::generate().hash(), t(11), t(1000)).await.unwrap(),
        "stale generation"
    );
    let (after, old_gen) = s.find_refresh_token(&first).await.unwrap().unwrap();
    assert_eq!((after.generation, old_gen), (1, 0), "the old token is still found, one generation behind");
    assert_eq!(after.rotated_at, Some(t(10)));
    assert_eq!(after.refresh_expires_at, Some(t(1000)));
    let (_, new_gen) = s.find_refresh_token(&second).await.unwrap().unwrap();
    assert_eq!(new_gen, 1);

    assert!(s.revoke_grant(&g.id, t(20)).await.unwrap());
    assert!(
        !s.rotate_refresh_token(&g.id, 1, &RefreshToken::generate().hash(), t(21), t(1000)).await.unwrap(),
        "revoked grants never rotate"
    );
    assert!(
        !s.rotate_refresh_token(&GrantId::generate(), 0, &RefreshToken::generate().hash(), t(21), t(1000))
            .await
            .unwrap()
    );
    assert!(s.find_refresh_token(&RefreshToken::generate().hash()).await.unwrap().is_none());
}

pub async fn refresh_rotation_race_has_one_winner(stores: Stores) {
    let s = stores.grants.clone();
    let g = grant("kit-client");
    s.create_grant(&g, Some(&RefreshToken::generate().hash())).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (s, barrier, id) = (s.clone(), barrier.clone(), g.id.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.rotate_refresh_token(&id, 0, &RefreshToken::generate().hash(), t(5), t(1000)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one of 50 concurrent rotations wins");
    assert_eq!(s.grant(&g.id).await.unwrap().unwrap().generation, 1);
}

pub async fn grants_revoke_and_sweep(stores: Stores) {
    let s = &stores.grants;
    let a = grant("kit-a");
    let mut b = grant("kit-a");
    b.created_at = t(5);
    let c = grant("kit-c");
    let (ha, hb, hc) =
        (RefreshToken::generate().hash(), RefreshToken::generate().hash(), RefreshToken::generate().hash());
    s.create_grant(&a, Some(&ha)).await.unwrap();
    s.create_grant(&b, Some(&hb)).await.unwrap();
    s.create_grant(&c, Some(&hc)).await.unwrap();
    let ids: Vec<GrantId> = s.client_grants(&cid("kit-a")).await.unwrap().into_iter().map(|g| g.id).collect();
    assert_eq!(ids, vec![b.id.clone(), a.id.clone()], "newest first");

    assert!(s.revoke_grant(&a.id, t(10)).await.unwrap());
    assert!(!s.revoke_grant(&a.id, t(11)).await.unwrap(), "already revoked");
    assert_eq!(s.grant(&a.id).await.unwrap().unwrap().revoked_at, Some(t(10)));
    assert_eq!(s.revoke_client_grants(&cid("kit-a"), t(12)).await.unwrap(), 1, "only b was still active");
    assert!(s.grant(&c.id).await.unwrap().unwrap().revoked_at.is_none());

    // Sweep: grants revoked before the cutoff go, with their refresh tokens.
    assert_eq!(s.sweep_grants(t(11)).await.unwrap(), 1);
    assert!(s.grant(&a.id).await.unwrap().is_none());
    assert!(s.find_refresh_token(&ha).await.unwrap().is_none());
    assert!(s.grant(&b.id).await.unwrap().is_some());
    // c's refresh token expires at t(86400): swept only after that.
    assert_eq!(s.sweep_grants(t(86_000)).await.unwrap(), 1);
    assert!(s.grant(&c.id).await.unwrap().is_some());
    assert_eq!(s.sweep_grants(t(86_401)).await.unwrap(), 1);
    assert!(s.find_refresh_token(&hc).await.unwrap().is_none());
}

/// Every revocation is in the feed once, in order, whichever call revoked; a repeated
/// revocation adds nothing; the sweep drops entries older than its cutoff.
pub async fn revocations_form_a_feed(stores: Stores) {
    let s = &stores.grants;
    let (a, b, c) = (grant("kit-feed-a"), grant("kit-feed-b"), grant("kit-feed-b"));
    for g in [&a, &b, &c] {
        s.create_grant(g, Some(&RefreshToken::generate().hash())).await.unwrap();
    }
    let start = s.revocations_since(0, 1000).await.unwrap().last().map_or(0, |r| r.position);
    assert!(s.revocations_since(start, 1000).await.unwrap().is_empty(), "nothing revoked yet");
    assert!(s.revoke_grant(&a.id, t(10)).await.unwrap());
    assert!(!s.revoke_grant(&a.id, t(11)).await.unwrap());
    assert_eq!(s.revoke_client_grants(&cid("kit-feed-b"), t(12)).await.unwrap(), 2);
    let feed = s.revocations_since(start, 1000).await.unwrap();
    let grants: Vec<&GrantId> = feed.iter().map(|r| &r.grant).collect();
    assert_eq!(grants.len(), 3, "one entry per revoked grant: {feed:?}");
    assert_eq!(grants[0], &a.id, "in the order revoked");
    assert!(grants[1..].contains(&&b.id) && grants[1..].contains(&&c.id), "{feed:?}");
    assert!(feed.windows(2).all(|w| w[0].position < w[1].position), "positions grow: {feed:?}");
    assert_eq!((feed[0].at, feed[1].at), (t(10), t(12)));
    // Reading on from a position, and in pages.
    assert_eq!(s.revocations_since(feed[0].position, 1000).await.unwrap(), feed[1..].to_vec());
    assert_eq!(s.revocations_since(start, 1).await.unwrap(), feed[..1].to_vec());
    // The sweep keeps what is newer than its cutoff.
    s.sweep_grants(t(11)).await.unwrap();
    let kept = s.revocations_since(start, 1000).await.unwrap();
    assert_eq!(kept, feed[1..].to_vec(), "the entry of t(10) is swept, those of t(12) are kept");
    s.sweep_grants(t(13)).await.unwrap();
    assert!(s.revocations_since(start, 1000).await.unwrap().is_empty());
}

/// A follower (what every other process on the store runs) learns of a revocation, once.
pub async fn a_follower_learns_of_each_revocation_once(stores: Stores) {
    let g = grant("kit-follow");
    stores.grants.create_grant(&g, None).await.unwrap();
    let mut follower = crate::RevocationFollower::new();
    let before = follower.poll(stores.grants.as_ref(), t(20)).await.unwrap();
    assert!(!before.contains(&g.id));
    assert!(stores.grants.revoke_grant(&g.id, t(21)).await.unwrap());
    // Waiting is a hint: it returns by its bound whether or not the backend can be told.
    stores.grants.wait_for_revocations(Duration::from_millis(50)).await;
    assert_eq!(follower.poll(stores.grants.as_ref(), t(22)).await.unwrap(), vec![g.id.clone()]);
    assert!(follower.poll(stores.grants.as_ref(), t(23)).await.unwrap().is_empty());
}

pub async fn consents_roundtrip(stores: Stores) {
    let s = &stores.consents;
    let c = Consent::new(uid("u1"), cid("c1"), ScopeSet::parse("mcp:tools").unwrap(), t(0));
    assert_eq!(s.consent(&c.user, &c.client_id).await.unwrap(), None);
    s.put_consent(&c).await.unwrap();
    assert_eq!(s.consent(&c.user, &c.client_id).await.unwrap(), Some(c.clone()));
    let wider = Consent::new(uid("u1"), cid("c1"), ScopeSet::parse("mcp:tools mcp:admin").unwrap(), t(5));
    s.put_consent(&wider).await.unwrap();
    assert_eq!(s.consent(&c.user, &c.client_id).await.unwrap(), Some(wider));
    assert_eq!(s.consent(&uid("u2"), &c.client_id).await.unwrap(), None);
    assert!(s.revoke_consent(&c.user, &c.client_id).await.unwrap());
    assert!(!s.revoke_consent(&c.user, &c.client_id).await.unwrap());
}

pub async fn users_roundtrip(stores: Stores) {
    let s = &stores.users;
    let u = User::new(uid("usr-1"), "alice".into(), "$argon2id$hash".into(), t(0));
    s.create_user(&u).await.unwrap();
    let same_name = User::new(uid("usr-2"), "alice".into(), "h".into(), t(1));
    assert!(matches!(s.create_user(&same_name).await, Err(StoreError::Conflict(_))), "usernames are unique");
    assert_eq!(s.user(&u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_username("alice").await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_username("Alice").await.unwrap(), None, "usernames are case-sensitive");
    let mut changed = u.clone();
    changed.disabled = true;
    changed.password_hash = "$argon2id$other".into();
    changed.credential_version = 7;
    assert!(s.update_user(&changed).await.unwrap());
    assert_eq!(s.user(&u.id).await.unwrap(), Some(changed));
    let bob = User::new(uid("usr-3"), "bob".into(), "h".into(), t(2));
    s.create_user(&bob).await.unwrap();
    assert_eq!(s.list_users().await.unwrap().len(), 2);
    assert!(s.delete_user(&u.id).await.unwrap());
    assert!(!s.delete_user(&u.id).await.unwrap());
    assert_eq!(s.user_by_username("alice").await.unwrap(), None);
}

pub async fn keys_roundtrip(stores: Stores) {
    let s = &stores.keys;
    let k1 = StoredKey::generate(SigningAlgorithm::Es256, t(0)).unwrap();
    let k2 = StoredKey::generate(SigningAlgorithm::EdDsa, t(1)).unwrap();
    s.insert_key(&k1).await.unwrap();
    s.insert_key(&k2).await.unwrap();
    assert!(matches!(s.insert_key(&k1).await, Err(StoreError::Conflict(_))));
    assert_eq!(
        s.list_keys().await.unwrap(),
        vec![k1.clone(), k2.clone()],
        "keys round-trip byte for byte, oldest first"
    );
    assert!(s.retire_key(&k1.kid, t(5)).await.unwrap());
    assert_eq!(s.list_keys().await.unwrap()[0].retired_at, Some(t(5)));
    assert!(s.delete_key(&k1.kid).await.unwrap());
    assert!(!s.delete_key(&k1.kid).await.unwrap());
    assert_eq!(s.list_keys().await.unwrap(), vec![k2]);
}

pub async fn events_query_and_sweep(stores: Stores) {
    let s = &stores.events;
    let a = cid("client-a");
    let b = cid("client-b");
    for i in 0..5 {
        let e = FlowEvent::success(t(i), FlowStep::AuthorizationRequest, format!("a{i}")).client(&a);
        s.record_event(&e).await.unwrap();
    }
    let failure =
        FlowEvent::failure(t(10), FlowStep::CodeExchange, Reason::PkceMismatch, "b failed").client(&b).user(&uid("u"));
    s.record_event(&failure).await.unwrap();
    s.record_event(&FlowEvent::success(t(11), FlowStep::Registration, "anonymous")).await.unwrap();

    let all = s.events(&EventQuery::all()).await.unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all[5], failure, "events round-trip with reason and user");
    let only_b = s.events(&EventQuery::all().for_client(&b)).await.unwrap();
    assert_eq!(only_b, vec![failure.clone()]);
    let recent_a = s.events(&EventQuery::all().for_client(&a).since(t(3))).await.unwrap();
    assert_eq!(recent_a.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), vec!["a3", "a4"]);
    let newest_two = s.events(&EventQuery::all().for_client(&a).limit(2)).await.unwrap();
    assert_eq!(
        newest_two.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        vec!["a3", "a4"],
        "the newest N, oldest first"
    );

    assert_eq!(s.sweep_events(t(4)).await.unwrap(), 4);
    assert_eq!(s.events(&EventQuery::all()).await.unwrap().len(), 3);
}

pub async fn sweep_removes_only_expired_authorizations(stores: Stores) {
    let s = &stores.authorizations;
    s.put_pending(&pending("old", t(100))).await.unwrap();
    s.put_pending(&pending("fresh", t(10_000))).await.unwrap();
    let old_code = AuthorizationCode::generate();
    let fresh_code = AuthorizationCode::generate();
    s.put_code(&code_record(&old_code, "c", t(100))).await.unwrap();
    s.put_code(&code_record(&fresh_code, "c", t(10_000))).await.unwrap();
    // now = t(200); codes that expired before t(150) go.
    assert_eq!(s.sweep_authorizations(t(200), t(150)).await.unwrap(), 2);
    assert!(s.pending("fresh", t(200)).await.unwrap().is_some());
    assert_eq!(redeem(s.as_ref(), &old_code.hash(), t(200)).await.unwrap(), CodeRedemption::NotFound);
    assert!(matches!(redeem(s.as_ref(), &fresh_code.hash(), t(200)).await.unwrap(), CodeRedemption::Redeemed(_)));
}

// ---------------------------------------------------------------------------------------------
// Through the server: the contract as clients exercise it.

struct Harness {
    server: Arc<AuthorizationServer>,
    clock: Arc<ManualClock>,
}

async fn harness(stores: Stores) -> Harness {
    let clock = Arc::new(ManualClock::new(t(0)));
    let server = AuthorizationServer::with_clock(config(), stores, clock.clone()).await.unwrap();
    Harness { server: Arc::new(server), clock }
}

/// The kit's server configuration: [`ISSUER`] protecting [`RESOURCE`].
pub fn config() -> ServerConfig {
    ServerConfig::new(Issuer::parse(ISSUER).unwrap(), ResourceUri::parse(RESOURCE).unwrap())
}

/// Registers a public client (DCR, `none`) with [`REDIRECT`].
pub async fn register_public_client(server: &AuthorizationServer) -> ClientId {
    let req = RegistrationRequest::from_json(
        format!(r#"{{"client_name":"kit","redirect_uris":["{REDIRECT}"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}}"#)
            .as_bytes(),
    )
    .unwrap();
    let resp = server.register(req).await.unwrap();
    assert!(resp.client_secret.is_none());
    cid(&resp.client_id)
}

/// Runs an authorization request to [`CALLBACK`] and its approval by `user-1`; returns the
/// code and its verifier, after checking that `state` and `iss` come back.
pub async fn authorize_code(server: &AuthorizationServer, client: &ClientId) -> (String, CodeVerifier) {
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let req = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "xyz"),
        ("resource", RESOURCE),
    ])
    .unwrap();
    let prompt = server.authorize(req).await.unwrap();
    assert_eq!(prompt.pending.redirect_uri.as_str(), CALLBACK, "the presented loopback port is kept");
    let location = server.approve(&prompt.pending.id, &uid("user-1"), server.now(), false).await.unwrap();
    let url = url::Url::parse(&location).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("xyz"));
    assert_eq!(q.get("iss").map(String::as_str), Some(ISSUER));
    assert_eq!(url.port(), Some(45678));
    (q["code"].clone(), verifier)
}

/// A JWT of any shape, signed with `keys`' active key: the header names that key's `alg`, the
/// given `typ` (none when `None`) and, when `kid` is set, the key's id. For tests that play an
/// identity provider whose tokens are not RFC 9068 ones.
pub fn sign_jwt(keys: &crate::keys::KeySet, typ: Option<&str>, kid: bool, claims: &serde_json::Value) -> String {
    let (key_id, alg, key) = keys.signing_key();
    let mut header = jsonwebtoken::Header::new(alg.jwt_algorithm());
    header.typ = typ.map(str::to_owned);
    header.kid = kid.then(|| key_id.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Registers a public client with `redirect` on `server`, lets `user` approve an authorization
/// request of it, and exchanges the code: the client id and its tokens. Unlike
/// [`authorize_code`] it assumes nothing of the server's issuer, so it serves any server, for
/// example a second one on the same stores.
pub async fn tokens_for_new_client(
    server: &AuthorizationServer,
    redirect: &str,
    user: &str,
) -> (ClientId, crate::token::TokenResponse) {
    let reg = format!(r#"{{"client_name":"kit","redirect_uris":["{redirect}"],"token_endpoint_auth_method":"none"}}"#);
    let client =
        cid(&server.register(RegistrationRequest::from_json(reg.as_bytes()).unwrap()).await.unwrap().client_id);
    let verifier = CodeVerifier::generate();
    let challenge = CodeChallenge::s256(&verifier);
    let request = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", redirect),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    let prompt = server.authorize(request).await.unwrap();
    let location = server.approve(&prompt.pending.id, &uid(user), server.now(), false).await.unwrap();
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let exchange = TokenRequest::from_pairs([
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", redirect),
        ("client_id", client.as_str()),
    ])
    .unwrap();
    let tokens = server.token(exchange, None).await.unwrap();
    (client, tokens)
}

/// The token request that exchanges `code`.
pub fn code_request(client: &ClientId, code: &str, verifier: &CodeVerifier) -> TokenRequest {
    TokenRequest::from_pairs([
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier.secret()),
        ("redirect_uri", CALLBACK),
        ("client_id", client.as_str()),
    ])
    .unwrap()
}

/// The token request that refreshes with `token`.
pub fn refresh_request(client: &ClientId, token: &str) -> TokenRequest {
    TokenRequest::from_pairs([
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", client.as_str()),
    ])
    .unwrap()
}

fn oauth_code(e: &Error) -> ErrorCode {
    match e {
        Error::OAuth(o) => o.code(),
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

async fn last_failure(h: &Harness, client: &ClientId) -> Option<Reason> {
    let events = h.server.stores().events.events(&EventQuery::all().for_client(client)).await.unwrap();
    events.iter().rev().find_map(|e| e.reason)
}

pub async fn secrets_are_stored_only_as_hashes(stores: Stores) {
    let h = harness(stores).await;
    let created = h
        .server
        .create_client(NewClient::new("confidential", vec![RedirectUri::parse(REDIRECT).unwrap()]).confidential())
        .await
        .unwrap();
    let secret = created.secret.as_ref().unwrap().secret().to_owned();
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let tokens = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let refresh = tokens.refresh_token.as_ref().unwrap().secret().to_owned();

    // Everything the stores hand back, serialised.
    let s = h.server.stores();
    let mut dump = String::new();
    for c in s.clients.list_clients().await.unwrap() {
        dump += &serde_json::to_string(&c).unwrap();
    }
    let (grant, _) = s.grants.find_refresh_token(&SecretHash::of(refresh.as_bytes())).await.unwrap().unwrap();
    dump += &serde_json::to_string(&grant).unwrap();
    match redeem(s.authorizations.as_ref(), &SecretHash::of(code.as_bytes()), h.clock.now()).await.unwrap() {
        CodeRedemption::AlreadyRedeemed(rec) => dump += &serde_json::to_string(&rec).unwrap(),
        other => panic!("{other:?}"),
    }
    for e in s.events.events(&EventQuery::all()).await.unwrap() {
        dump += &serde_json::to_string(&e).unwrap();
    }
    for clear in [secret.as_str(), code.as_str(), refresh.as_str(), tokens.access_token.as_str(), verifier.secret()] {
        assert!(!dump.contains(clear), "a secret was stored or logged in clear");
    }
    let stored = s.clients.client(&created.client.id).await.unwrap().unwrap();
    assert!(stored.secret_hash.unwrap().starts_with("hmac-sha256$"), "client secrets are peppered HMACs");
    assert_eq!(SecretHash::of(code.as_bytes()), AuthorizationCode::new(code.clone()).hash());
}

pub async fn full_flow_issues_verifiable_tokens(stores: Stores) {
    let h = harness(stores).await;
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let tokens = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    assert_eq!(tokens.scope.to_string(), "mcp:tools");
    assert_eq!(tokens.expires_in, 3600);
    let claims = h.server.verify_access_token(&tokens.access_token).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str(), claims.iss.as_str()),
        ("user-1", client.as_str(), ISSUER)
    );
    assert!(claims.aud.contains(RESOURCE));

    h.clock.advance(Duration::from_secs(60));
    let refreshed =
        h.server.token(refresh_request(&client, tokens.refresh_token.as_ref().unwrap().secret()), None).await.unwrap();
    assert_ne!(refreshed.refresh_token, tokens.refresh_token, "refresh tokens rotate");
    assert!(h.server.verify_access_token(&refreshed.access_token).is_ok());
    // `last_used_at` follows use at minute precision: once a minute at most, not per request.
    let last_used = || async { h.server.stores().clients.client(&client).await.unwrap().unwrap().last_used_at };
    assert_eq!(last_used().await, Some(t(60)));

    // A scope string that does not parse is refused, and nothing rotates; a scope this
    // server does not define is dropped, as at authorization (widening is refused by the
    // server's own tests).
    let next = refreshed.refresh_token.as_ref().unwrap().secret().to_owned();
    let mut malformed = refresh_request(&client, &next);
    malformed.scope = Some("mcp:tools \"x".into());
    let e = h.server.token(malformed, None).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidScope);
    assert_eq!(last_failure(&h, &client).await, Some(Reason::InvalidScope));
    h.clock.advance(Duration::from_secs(10));
    let refreshed = h.server.token(refresh_request(&client, &next), None).await.unwrap();
    assert_eq!(last_used().await, Some(t(60)), "not touched again within the minute");

    // The access token expires; the verifier says so.
    h.clock.advance(Duration::from_secs(3600 + 61));
    assert!(matches!(
        h.server.verify_access_token(&refreshed.access_token),
        Err(crate::jwt::VerifyError::Expired { .. })
    ));
    assert!(h.server.stores().clients.client(&client).await.unwrap().unwrap().last_used_at.is_some());
}

pub async fn concurrent_code_exchanges_one_wins(stores: Stores) {
    let h = harness(stores).await;
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (server, barrier, client, code) = (h.server.clone(), barrier.clone(), client.clone(), code.clone());
        let v = verifier.secret().to_owned();
        tasks.push(tokio::spawn(async move {
            let req = code_request(&client, &code, &CodeVerifier::new(v));
            barrier.wait().await;
            server.token(req, None).await
        }));
    }
    let (mut ok, mut invalid_grant) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if oauth_code(&e) == ErrorCode::InvalidGrant => invalid_grant += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, invalid_grant), (1, 49), "exactly one of 50 concurrent exchanges gets tokens");
}

pub async fn code_replay_revokes_the_grant(stores: Stores) {
    let h = harness(stores).await;
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let tokens = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let e = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidGrant);
    assert_eq!(last_failure(&h, &client).await, Some(Reason::CodeReused));
    let e = h
        .server
        .token(refresh_request(&client, tokens.refresh_token.as_ref().unwrap().secret()), None)
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidGrant, "the replay revoked the refresh token it had issued");
    assert_eq!(last_failure(&h, &client).await, Some(Reason::GrantRevoked));
}

pub async fn concurrent_refreshes_rotate_once(stores: Stores) {
    let h = harness(stores).await;
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let tokens = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let rt = tokens.refresh_token.as_ref().unwrap().secret().to_owned();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (server, barrier, client, rt) = (h.server.clone(), barrier.clone(), client.clone(), rt.clone());
        tasks.push(tokio::spawn(async move {
            let req = refresh_request(&client, &rt);
            barrier.wait().await;
            server.token(req, None).await
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for task in tasks {
        let resp = task.await.unwrap().expect("a concurrent refresh within the grace window succeeds");
        successors.insert(resp.refresh_token.unwrap().secret().to_owned());
    }
    assert_eq!(successors.len(), 1, "every concurrent refresh gets the same successor");
    let (grant, generation) = h
        .server
        .stores()
        .grants
        .find_refresh_token(&SecretHash::of(successors.iter().next().unwrap().as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((grant.generation, generation), (1, 1), "one rotation, not twenty");
}

pub async fn refresh_replay_after_grace_revokes_family(stores: Stores) {
    let h = harness(stores).await;
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let first = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap().refresh_token.unwrap();
    let second = h.server.token(refresh_request(&client, first.secret()), None).await.unwrap().refresh_token.unwrap();
    // A retry inside the window: the same successor.
    h.clock.advance(Duration::from_secs(29));
    let retry = h.server.token(refresh_request(&client, first.secret()), None).await.unwrap().refresh_token.unwrap();
    assert_eq!(retry, second);
    // After the window: a replay, and the whole family is revoked.
    h.clock.advance(Duration::from_secs(2));
    let e = h.server.token(refresh_request(&client, first.secret()), None).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidGrant);
    assert_eq!(last_failure(&h, &client).await, Some(Reason::RefreshReused));
    let e = h.server.token(refresh_request(&client, second.secret()), None).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidGrant, "the legitimate successor is revoked too");
    assert_eq!(last_failure(&h, &client).await, Some(Reason::GrantRevoked));
}

pub async fn grant_error_paths_write_nothing(stores: Stores) {
    let h = harness(stores).await;
    let client = register_public_client(&h.server).await;
    let other = register_public_client(&h.server).await;
    let confidential = h
        .server
        .create_client(NewClient::new("conf", vec![RedirectUri::parse(REDIRECT).unwrap()]).confidential())
        .await
        .unwrap();
    let conf_id = confidential.client.id.clone();
    let basic = |secret: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{conf_id}:{secret}")))
    };

    type Case = (
        &'static str,
        Box<dyn Fn(&ClientId, &str, &CodeVerifier) -> (TokenRequest, Option<String>)>,
        ErrorCode,
        Reason,
    );
    let cases: Vec<Case> = vec![
        (
            "wrong verifier",
            Box::new(|c, code, _| (code_request(c, code, &CodeVerifier::generate()), None)),
            ErrorCode::InvalidGrant,
            Reason::PkceMismatch,
        ),
        (
            "no verifier",
            Box::new(|c, code, _| {
                let mut r = code_request(c, code, &CodeVerifier::generate());
                r.code_verifier = None;
                (r, None)
            }),
            ErrorCode::InvalidRequest,
            Reason::PkceMissing,
        ),
        (
            "other redirect",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.redirect_uri = Some("http://localhost:45678/other".into());
                (r, None)
            }),
            ErrorCode::InvalidGrant,
            Reason::RedirectUriMismatch,
        ),
        (
            "no redirect",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.redirect_uri = None;
                (r, None)
            }),
            ErrorCode::InvalidRequest,
            Reason::RedirectUriMismatch,
        ),
        (
            "other resource",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.resource = vec!["https://evil.example/mcp".into()];
                (r, None)
            }),
            ErrorCode::InvalidTarget,
            Reason::ResourceMismatch,
        ),
        (
            "unknown code",
            Box::new(|c, _, v| (code_request(c, "not-a-code", v), None)),
            ErrorCode::InvalidGrant,
            Reason::CodeUnknown,
        ),
        (
            "unknown client",
            Box::new(|_, code, v| (code_request(&cid("mcp_deleted"), code, v), None)),
            ErrorCode::InvalidClient,
            Reason::ClientUnknown,
        ),
        (
            "no client",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.client_id = None;
                (r, None)
            }),
            ErrorCode::InvalidClient,
            Reason::ClientAuthFailed,
        ),
        (
            "public client with secret",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.client_secret = Some(ClientSecret::new("guess".into()));
                (r, None)
            }),
            ErrorCode::InvalidClient,
            Reason::ClientAuthFailed,
        ),
        (
            "unsupported grant",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.grant_type = Some("password".into());
                (r, None)
            }),
            ErrorCode::UnsupportedGrantType,
            Reason::UnsupportedGrantType,
        ),
        (
            "no grant type",
            Box::new(|c, code, v| {
                let mut r = code_request(c, code, v);
                r.grant_type = None;
                (r, None)
            }),
            ErrorCode::InvalidRequest,
            Reason::InvalidRequest,
        ),
        (
            "public client_credentials",
            Box::new(|c, _, _| {
                (
                    TokenRequest::from_pairs([("grant_type", "client_credentials"), ("client_id", c.as_str())])
                        .unwrap(),
                    None,
                )
            }),
            ErrorCode::UnauthorizedClient,
            Reason::UnauthorizedClient,
        ),
        (
            "unknown refresh",
            Box::new(|c, _, _| (refresh_request(c, "nope"), None)),
            ErrorCode::InvalidGrant,
            Reason::RefreshUnknown,
        ),
        (
            "missing refresh",
            Box::new(|c, _, _| {
                (TokenRequest::from_pairs([("grant_type", "refresh_token"), ("client_id", c.as_str())]).unwrap(), None)
            }),
            ErrorCode::InvalidRequest,
            Reason::InvalidRequest,
        ),
    ];
    let conf_cases: Vec<(&str, TokenRequest, Option<String>, ErrorCode, Reason)> = vec![
        (
            "wrong secret",
            TokenRequest::from_pairs([("grant_type", "client_credentials")]).unwrap(),
            Some(basic("wrong")),
            ErrorCode::InvalidClient,
            Reason::ClientAuthFailed,
        ),
        (
            "no secret",
            TokenRequest::from_pairs([("grant_type", "client_credentials"), ("client_id", conf_id.as_str())]).unwrap(),
            None,
            ErrorCode::InvalidClient,
            Reason::ClientAuthFailed,
        ),
        (
            "not registered for client_credentials",
            TokenRequest::from_pairs([("grant_type", "client_credentials")]).unwrap(),
            Some(basic(confidential.secret.as_ref().unwrap().secret())),
            ErrorCode::UnauthorizedClient,
            Reason::UnauthorizedClient,
        ),
    ];

    for (name, build, code, reason) in &cases {
        let (auth_code, verifier) = authorize_code(&h.server, &client).await;
        let (req, header) = build(&client, &auth_code, &verifier);
        let target = req.client_id.as_deref().and_then(|c| ClientId::parse(c).ok()).unwrap_or_else(|| client.clone());
        let e = h.server.token(req, header.as_deref()).await.expect_err(name);
        assert_eq!(oauth_code(&e), *code, "{name}: {e}");
        assert!(!e.to_oauth().description().is_empty(), "{name}: a helpful description");
        let recorded = if *reason == Reason::ClientAuthFailed && target == client && name.contains("no client") {
            // No client id at all: the event carries none.
            let all = h.server.stores().events.events(&EventQuery::all()).await.unwrap();
            all.last().and_then(|e| e.reason)
        } else {
            last_failure(&h, &target).await
        };
        assert_eq!(recorded, Some(*reason), "{name}");
        assert!(
            h.server.stores().grants.client_grants(&client).await.unwrap().is_empty(),
            "{name}: no grant was written"
        );
    }
    for (name, req, header, code, reason) in conf_cases {
        let e = h.server.token(req, header.as_deref()).await.expect_err(name);
        assert_eq!(oauth_code(&e), code, "{name}: {e}");
        assert_eq!(last_failure(&h, &conf_id).await, Some(reason), "{name}");
    }

    // A code issued to one client cannot be redeemed by another.
    let (auth_code, verifier) = authorize_code(&h.server, &client).await;
    let e = h.server.token(code_request(&other, &auth_code, &verifier), None).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidGrant);
    assert_eq!(last_failure(&h, &other).await, Some(Reason::CodeClientMismatch));

    // An expired code.
    let (auth_code, verifier) = authorize_code(&h.server, &client).await;
    h.clock.advance(Duration::from_secs(301));
    let e = h.server.token(code_request(&client, &auth_code, &verifier), None).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::InvalidGrant);
    assert_eq!(last_failure(&h, &client).await, Some(Reason::CodeExpired));
    assert!(h.server.stores().grants.client_grants(&client).await.unwrap().is_empty());
    assert!(h.server.stores().grants.client_grants(&other).await.unwrap().is_empty());
}

pub async fn keys_survive_a_restart(stores: Stores) {
    let h = harness(stores.clone()).await;
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let tokens = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let jwks_before = serde_json::to_value(h.server.jwks()).unwrap();
    drop(h);

    let again = harness(stores).await;
    assert_eq!(serde_json::to_value(again.server.jwks()).unwrap(), jwks_before, "the same keys after a restart");
    assert!(again.server.verify_access_token(&tokens.access_token).is_ok(), "tokens issued before a restart verify");
    let rotated =
        again.server.token(refresh_request(&client, tokens.refresh_token.as_ref().unwrap().secret()), None).await;
    assert!(rotated.is_ok(), "refresh tokens issued before a restart rotate");

    // Key rotation: old tokens still verify, new ones use the new key.
    again.server.rotate_signing_key().await.unwrap();
    assert!(again.server.verify_access_token(&tokens.access_token).is_ok());
    assert_eq!(again.server.jwks().len(), 2);
    let newer = again
        .server
        .token(refresh_request(&client, rotated.unwrap().refresh_token.unwrap().secret()), None)
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(&newer.access_token).unwrap().kid.unwrap();
    let active = again.server.keys().signing_key().0.to_owned();
    assert_eq!(kid, active);
    assert_ne!(jsonwebtoken::decode_header(&tokens.access_token).unwrap().kid.unwrap(), active);
    // After retention, the retired key is swept and its tokens no longer verify.
    again.clock.advance(Duration::from_secs(3 * 86_400));
    let report = again.server.sweep().await.unwrap();
    assert_eq!(report.keys, 1);
    assert_eq!(again.server.jwks().len(), 1);
}

pub async fn operator_manages_clients_and_users(stores: Stores) {
    use crate::admin::ClientUpdate;
    let h = harness(stores).await;
    let op = h.server.operator();
    let redirect = RedirectUri::parse(REDIRECT).unwrap();

    // A confidential client, its secret rotated: only the new secret verifies.
    let created = op.create_client(NewClient::new("Claude", vec![redirect.clone()]).confidential()).await.unwrap();
    let first = created.secret.unwrap();
    let second = op.rotate_client_secret(&created.client.id).await.unwrap();
    assert_ne!(first.secret(), second.secret());
    let stored = h.server.stores().clients.client(&created.client.id).await.unwrap().unwrap();
    let hash = stored.secret_hash.unwrap();
    let pepper = h.server.pepper();
    use crate::secret::{ClientSecretHash, SecretCheck};
    assert_eq!(ClientSecretHash::verify(second.secret(), &hash, pepper).await, SecretCheck::Valid);
    assert_eq!(
        ClientSecretHash::verify(first.secret(), &hash, pepper).await,
        SecretCheck::Invalid,
        "the old secret stops working"
    );

    // Updates change only what they name.
    let claude = RedirectUri::parse("https://claude.ai/api/mcp/auth_callback").unwrap();
    let updated = op
        .update_client(&created.client.id, ClientUpdate::default().redirect_uris(vec![claude.clone()]).trusted(true))
        .await
        .unwrap();
    assert_eq!((updated.redirect_uris.clone(), updated.trusted, updated.active), (vec![claude], true, true));
    assert_eq!(h.server.stores().clients.client(&created.client.id).await.unwrap(), Some(updated));
    let plain = RedirectUri::parse("http://example.com/cb").unwrap();
    let e = op.update_client(&created.client.id, ClientUpdate::default().redirect_uris(vec![plain])).await;
    assert_eq!(oauth_code(&e.unwrap_err()), ErrorCode::InvalidRedirectUri);
    assert!(op.update_client(&cid("ghost"), ClientUpdate::default().trusted(true)).await.is_err());
    assert!(
        op.rotate_client_secret(&register_public_client(&h.server).await).await.is_err(),
        "public clients have no secret"
    );

    // A public client's codes, counted from its flow events.
    let client = register_public_client(&h.server).await;
    let (code, verifier) = authorize_code(&h.server, &client).await;
    let tokens = h.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let _unused = authorize_code(&h.server, &client).await;
    let report = op.client_report(&client).await.unwrap().unwrap();
    assert_eq!(
        (report.codes_issued, report.codes_exchanged, report.codes_expired, report.codes_unused, report.active_grants),
        (2, 1, 0, 1, 1),
        "{report:?}"
    );
    assert!(!report.has_secret && report.render().contains("2 issued, 1 exchanged"));
    assert!(op.client_report(&cid("ghost")).await.unwrap().is_none());

    // Deactivating revokes the grants: the refresh token stops working.
    op.update_client(&client, ClientUpdate::default().active(false)).await.unwrap();
    assert_eq!(op.client_report(&client).await.unwrap().unwrap().active_grants, 0);
    let refresh = tokens.refresh_token.as_ref().unwrap().secret().to_owned();
    assert!(h.server.token(refresh_request(&client, &refresh), None).await.is_err());

    // Removing a user revokes what it approved; removing a client deletes it.
    let other = register_public_client(&h.server).await;
    let user = User::new(uid("user-1"), "alice".into(), crate::secret::hash_password("a long password").unwrap(), t(0));
    h.server.stores().users.create_user(&user).await.unwrap();
    let (code, verifier) = authorize_code(&h.server, &other).await;
    let tokens = h.server.token(code_request(&other, &code, &verifier), None).await.unwrap();
    assert!(op.remove_user("alice").await.unwrap());
    assert!(!op.remove_user("alice").await.unwrap());
    assert!(h.server.stores().users.user(&user.id).await.unwrap().is_none());
    assert!(h.server.stores().grants.client_grants(&other).await.unwrap().iter().all(|g| g.revoked_at.is_some()));
    let refresh = tokens.refresh_token.as_ref().unwrap().secret().to_owned();
    assert!(h.server.token(refresh_request(&other, &refresh), None).await.is_err());
    assert!(op.remove_client(&other).await.unwrap());
    assert!(!op.remove_client(&other).await.unwrap());
    assert!(h.server.stores().clients.client(&other).await.unwrap().is_none());
}

fn sign_in_session(token: &crate::sessions::SessionToken, user: &str, auth: i64, expires: i64) -> SignInSession {
    SignInSession::new(token.hash(), uid(user), format!("{user} ✓"), 3, t(auth), t(expires))
}

pub async fn sessions_roundtrip(stores: Stores) {
    use crate::sessions::SessionToken;
    let s = &stores.sessions;
    let (a, b, c) = (SessionToken::generate(), SessionToken::generate(), SessionToken::generate());
    let alice = sign_in_session(&a, "u-alice", 0, 100);
    s.create_session(&alice, 16).await.unwrap();
    s.create_session(&sign_in_session(&b, "u-alice", 1, 50), 16).await.unwrap();
    s.create_session(&sign_in_session(&c, "u-bob", 2, 100), 16).await.unwrap();
    assert!(matches!(s.create_session(&alice, 16).await, Err(StoreError::Conflict(_))), "a token hash is stored once");

    // Looked up by hash, unexpired only; nothing else finds it.
    assert_eq!(s.session(&a.hash(), t(10)).await.unwrap(), Some(alice.clone()));
    assert_eq!(s.session(&b.hash(), t(49)).await.unwrap().map(|x| x.auth_time), Some(t(1)));
    assert_eq!(s.session(&b.hash(), t(50)).await.unwrap(), None, "expired at expires_at");
    assert_eq!(s.session(&SessionToken::generate().hash(), t(10)).await.unwrap(), None);

    // Deleting one session leaves the others.
    assert!(s.delete_session(&a.hash()).await.unwrap());
    assert!(!s.delete_session(&a.hash()).await.unwrap());
    assert_eq!(s.session(&a.hash(), t(10)).await.unwrap(), None);
    assert!(s.session(&c.hash(), t(10)).await.unwrap().is_some());

    // Sweeping deletes only the expired ones.
    assert_eq!(s.sweep_sessions(t(60)).await.unwrap(), 1);
    assert_eq!(s.sweep_sessions(t(60)).await.unwrap(), 0);
    assert!(s.session(&c.hash(), t(60)).await.unwrap().is_some());

    // Every session of one user, and only that user's.
    let (d, e) = (SessionToken::generate(), SessionToken::generate());
    s.create_session(&sign_in_session(&d, "u-alice", 3, 100), 16).await.unwrap();
    s.create_session(&sign_in_session(&e, "u-alice", 4, 100), 16).await.unwrap();
    assert_eq!(s.delete_user_sessions(&uid("u-alice")).await.unwrap(), 2);
    assert_eq!(s.delete_user_sessions(&uid("u-alice")).await.unwrap(), 0);
    assert_eq!(s.session(&d.hash(), t(10)).await.unwrap(), None);
    assert!(s.session(&c.hash(), t(10)).await.unwrap().is_some(), "bob's session stays");
}

pub async fn sessions_are_bounded_per_user(stores: Stores) {
    use crate::sessions::SessionToken;
    let s = &stores.sessions;
    let tokens: Vec<SessionToken> = (0..6).map(|_| SessionToken::generate()).collect();
    let bob = SessionToken::generate();
    s.create_session(&sign_in_session(&bob, "u-bob", 0, 1000), 3).await.unwrap();
    // Two sessions in the same second: insertion order breaks the tie.
    for (i, tok) in tokens.iter().enumerate() {
        s.create_session(&sign_in_session(tok, "u-alice", (i as i64) / 2, 1000), 3).await.unwrap();
    }
    let mut alive = Vec::new();
    for tok in &tokens {
        alive.push(s.session(&tok.hash(), t(10)).await.unwrap().is_some());
    }
    assert_eq!(alive, [false, false, false, true, true, true], "the newest 3 remain");
    assert!(s.session(&bob.hash(), t(10)).await.unwrap().is_some(), "another user's sessions do not count");
    assert_eq!(s.delete_user_sessions(&uid("u-alice")).await.unwrap(), 3);

    // Concurrent sign-ins of one user still leave at most the cap.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = stores.sessions.clone();
        tasks.push(tokio::spawn(async move {
            let tok = SessionToken::generate();
            s.create_session(&sign_in_session(&tok, "u-carol", i, 1000), 4).await.unwrap();
            tok
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    let mut alive = 0;
    for tok in &all {
        alive += usize::from(s.session(&tok.hash(), t(10)).await.unwrap().is_some());
    }
    assert_eq!(alive, 4, "at most the cap survive racing sign-ins");
}

async fn sign_in_failures(server: &AuthorizationServer, client: &ClientId, reason: Reason) -> usize {
    let events = server.stores().events.events(&EventQuery::all().for_client(client)).await.unwrap();
    events.iter().filter(|e| e.reason == Some(reason) && e.step == FlowStep::SignIn).count()
}

pub async fn sessions_end_with_their_user(stores: Stores) {
    use crate::users::{Authenticator, StoreAuthenticator, create_user};
    let h = harness(stores).await;
    let (server, op) = (&h.server, h.server.operator());
    let users = server.stores().users.clone();
    let auth = StoreAuthenticator::new(users.clone());
    let ttl = Duration::from_secs(3600);
    let client = register_public_client(server).await;
    create_user(users.as_ref(), "alice", "a long password", t(0)).await.unwrap();
    let alice = auth.authenticate("alice", "a long password").await.unwrap().unwrap();

    // The store keeps only the hash; the session holds until it expires.
    let (token, record) = server.start_session(&alice, ttl, None).await.unwrap();
    assert_eq!(record.hash, token.hash());
    assert_eq!(record.expires_at, t(3600));
    assert_eq!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap(), Some(record.clone()));
    assert_eq!(server.check_session("short", &auth, Some(&client)).await.unwrap(), None);
    h.clock.advance(Duration::from_secs(3600));
    assert_eq!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap(), None, "expired");
    assert_eq!(server.sweep().await.unwrap().sessions, 1, "the sweep deletes expired sessions");

    // A password changed behind the operator's back: refused, deleted, recorded.
    let (token, _) = server.start_session(&alice, ttl, None).await.unwrap();
    crate::users::set_password(users.as_ref(), "alice", "another long one").await.unwrap();
    assert_eq!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap(), None);
    assert_eq!(server.stores().sessions.session(&token.hash(), server.now()).await.unwrap(), None, "deleted");
    assert_eq!(sign_in_failures(server, &client, Reason::SessionCredentialsChanged).await, 1);
    let alice = auth.authenticate("alice", "another long one").await.unwrap().unwrap();
    let (token, _) = server.start_session(&alice, ttl, None).await.unwrap();
    assert!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap().is_some(), "new password");

    // Disabled in the store directly: refused at the next use.
    let mut user = users.user_by_username("alice").await.unwrap().unwrap();
    user.disabled = true;
    users.update_user(&user).await.unwrap();
    assert_eq!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap(), None);
    assert_eq!(sign_in_failures(server, &client, Reason::SessionUserDisabled).await, 1);
    assert!(auth.authenticate("alice", "another long one").await.unwrap().is_none(), "disabled: no sign-in");
    // Someone who signs in only upstream has no password here, whatever is tried.
    let upstream_only = crate::store::User::new(
        UserId::generate(),
        "oidc:jane".into(),
        crate::upstream::NO_LOCAL_PASSWORD.into(),
        t(0),
    );
    users.create_user(&upstream_only).await.unwrap();
    for tried in ["", crate::upstream::NO_LOCAL_PASSWORD, "timing-equaliser"] {
        assert!(auth.authenticate("oidc:jane", tried).await.unwrap().is_none(), "{tried:?}");
    }
    user.disabled = false;
    users.update_user(&user).await.unwrap();

    // The operator's actions delete the sessions at once, whatever the authenticator checks.
    for action in ["passwd", "disable", "remove"] {
        let (token, _) = server.start_session(&alice, ttl, None).await.unwrap();
        let done = match action {
            "passwd" => op.set_password("alice", "a third long one").await.unwrap(),
            "disable" => op.disable_user("alice").await.unwrap(),
            _ => op.remove_user("alice").await.unwrap(),
        };
        assert!(done, "{action}");
        assert_eq!(server.stores().sessions.session(&token.hash(), server.now()).await.unwrap(), None, "{action}");
        if action == "disable" {
            assert!(users.user_by_username("alice").await.unwrap().unwrap().disabled);
            assert!(auth.authenticate("alice", "a third long one").await.unwrap().is_none(), "disabled");
            assert!(op.enable_user("alice").await.unwrap());
            assert!(auth.authenticate("alice", "a third long one").await.unwrap().is_some(), "enabled");
        }
    }
    assert!(!op.disable_user("alice").await.unwrap() && !op.enable_user("alice").await.unwrap());
    assert!(!op.set_password("alice", "a fourth long one").await.unwrap());

    // A removed user's session, had it survived: refused.
    let ghost = crate::users::AuthenticatedUser::new(uid("ghost"), "ghost");
    let (token, _) = server.start_session(&ghost, ttl, None).await.unwrap();
    assert_eq!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap(), None);
    assert_eq!(sign_in_failures(server, &client, Reason::SessionUserRemoved).await, 1);

    // Signing out ends the session and says so.
    create_user(users.as_ref(), "bob", "bob's long password", server.now()).await.unwrap();
    let bob = auth.authenticate("bob", "bob's long password").await.unwrap().unwrap();
    let (token, _) = server.start_session(&bob, ttl, None).await.unwrap();
    assert_eq!(server.end_session(token.secret(), Some(&client)).await.unwrap().map(|s| s.user), Some(bob.id));
    assert_eq!(server.end_session(token.secret(), Some(&client)).await.unwrap(), None);
    assert_eq!(server.check_session(token.secret(), &auth, Some(&client)).await.unwrap(), None);
    assert_eq!(sign_in_failures(server, &client, Reason::SignedOut).await, 1);
}

#[allow(dead_code)]
fn _assert_grant_type_is_used(g: GrantType) -> GrantType {
    g
}

pub async fn server_secrets_are_shared_first_writer_wins(stores: Stores) {
    let keys = stores.keys.clone();
    let racers: Vec<_> = (0u8..16)
        .map(|i| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.server_secret("kit", &[i; 32], t(0)).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for r in racers {
        seen.push(r.await.unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every caller gets the value stored first");
    assert_eq!(keys.server_secret("kit", &[99; 32], t(1)).await.unwrap(), seen[0], "a later candidate is ignored");
    assert_eq!(keys.server_secret("other", &[7; 32], t(1)).await.unwrap(), vec![7; 32], "names are independent");
    keys.replace_server_secret("kit", &[5; 32], t(2)).await.unwrap();
    assert_eq!(keys.server_secret("kit", &[6; 32], t(3)).await.unwrap(), vec![5; 32], "a rotation replaces it");
}

pub async fn replicas_derive_the_same_refresh_successor(stores: Stores) {
    // Two servers on one store: the successor key is shared, so a retry within the grace window
    // that lands on the other replica gets the same successor back.
    let a = harness(stores.clone()).await;
    let b = AuthorizationServer::with_clock(config(), stores, a.clock.clone()).await.unwrap();
    let client = register_public_client(&a.server).await;
    let (code, verifier) = authorize_code(&a.server, &client).await;
    let first = a.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let old = first.refresh_token.unwrap().secret().to_owned();
    let at_a = a.server.token(refresh_request(&client, &old), None).await.unwrap();
    let at_b = b.token(refresh_request(&client, &old), None).await.unwrap();
    assert_eq!(
        at_a.refresh_token.as_ref().unwrap().secret(),
        at_b.refresh_token.as_ref().unwrap().secret(),
        "the retry at another replica gets the same successor"
    );
    // The successor is not what the token alone would give.
    let alone = RefreshToken::new(old.clone())
        .successor(&crate::secret::ServerSecret::from_bytes(&[0; 32]).unwrap(), "x", 1)
        .secret()
        .to_owned();
    assert_ne!(at_a.refresh_token.as_ref().unwrap().secret(), alone);
    // After a rotation of the key, issued tokens still rotate.
    a.server.rotate_refresh_secret().await.unwrap();
    assert!(a.server.token(refresh_request(&client, at_a.refresh_token.unwrap().secret()), None).await.is_ok());
}

pub async fn machine_tokens_are_marked_revocable_and_operator_only(stores: Stores) {
    let clock = Arc::new(ManualClock::new(t(0)));
    let server = AuthorizationServer::with_clock(config().with_client_credentials(true), stores.clone(), clock.clone())
        .await
        .unwrap();
    let created = server.create_client(NewClient::machine("reporting job")).await.unwrap();
    let id = created.client.id.clone();
    let basic = |secret: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    };
    let secret = created.secret.as_ref().unwrap().secret().to_owned();
    let cc = || TokenRequest::from_pairs([("grant_type", "client_credentials")]).unwrap();
    let tokens = server.token(cc(), Some(&basic(&secret))).await.unwrap();
    assert!(tokens.refresh_token.is_none());
    let claims = server.verify_access_token(&tokens.access_token).unwrap();
    assert!(claims.machine, "a machine token says so");
    assert_eq!(claims.sub, format!("client:{id}"));
    assert!(!UserId::parse(&claims.sub).unwrap().is_user(), "no user can have this subject");
    assert!(claims.auth_time.is_none());
    let gid = GrantId::parse(claims.gid.as_deref().expect("backed by a grant")).unwrap();
    assert!(server.stores().grants.grant(&gid).await.unwrap().is_some());

    // Revocable like any token: RFC 7009 by the client itself.
    let form = crate::revoke::TokenRequestForm::from_pairs([("token", tokens.access_token.as_str())]).unwrap();
    server.revoke(form, Some(&basic(&secret))).await.unwrap();
    assert!(server.stores().grants.grant(&gid).await.unwrap().unwrap().revoked_at.is_some());
    let form = crate::revoke::TokenRequestForm::from_pairs([("token", tokens.access_token.as_str())]).unwrap();
    assert!(!server.introspect(form, Some(&basic(&secret))).await.unwrap().active);

    // A secret rotation ends every token minted with the old one.
    let second = server.token(cc(), Some(&basic(&secret))).await.unwrap();
    let gid2 =
        GrantId::parse(server.verify_access_token(&second.access_token).unwrap().gid.as_deref().unwrap()).unwrap();
    server.operator().rotate_client_secret(&id).await.unwrap();
    assert!(server.stores().grants.grant(&gid2).await.unwrap().unwrap().revoked_at.is_some());

    // A self-registered confidential client never gets the grant, even when it asks for it.
    let reg = RegistrationRequest::from_json(
        br#"{"client_name":"stranger","redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code","client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}"#,
    )
    .unwrap();
    let reg = server.register(reg).await.unwrap();
    assert!(!reg.grant_types.contains(&"client_credentials"), "{:?}", reg.grant_types);
    // Nor does a record that claims it without being an operator's machine client.
    let mut forged = server.stores().clients.client(&cid(&reg.client_id)).await.unwrap().unwrap();
    forged.grant_types.push(GrantType::ClientCredentials);
    forged.machine = true;
    server.stores().clients.update_client(&forged).await.unwrap();
    let stranger = {
        use base64::Engine as _;
        let s = reg.client_secret.as_ref().unwrap().secret();
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{s}", reg.client_id)))
    };
    let e = server.token(cc(), Some(&stranger)).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::UnauthorizedClient);

    // With the grant off (the default), not even the operator's machine client gets a token.
    let off = AuthorizationServer::with_clock(config(), stores, clock).await.unwrap();
    let fresh = off.operator().rotate_client_secret(&id).await.unwrap();
    let e = off.token(cc(), Some(&basic(fresh.secret()))).await.unwrap_err();
    assert_eq!(oauth_code(&e), ErrorCode::UnsupportedGrantType);
    // And a machine client cannot be made without a secret or with a user's grants.
    let mut bad = NewClient::machine("x");
    bad.confidential = false;
    assert!(off.create_client(bad).await.is_err());
    let mut bad = NewClient::new("x", vec![RedirectUri::parse(REDIRECT).unwrap()]);
    bad.grant_types.push(GrantType::ClientCredentials);
    assert!(off.create_client(bad).await.is_err(), "client_credentials without the machine flag");
}

pub async fn introspection_answers_only_the_entitled(stores: Stores) {
    use base64::Engine as _;
    let h = harness(stores).await;
    let basic = |id: &ClientId, secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    };
    let redirect = || vec![RedirectUri::parse(REDIRECT).unwrap()];
    let owner = h.server.create_client(NewClient::new("owner", redirect()).confidential()).await.unwrap();
    let other = h.server.create_client(NewClient::new("other", redirect()).confidential()).await.unwrap();
    let rs = h
        .server
        .create_client(NewClient::new("resource server", Vec::new()).confidential().introspection())
        .await
        .unwrap();
    let (code, verifier) = authorize_code(&h.server, &owner.client.id).await;
    let tokens = h
        .server
        .token(
            code_request(&owner.client.id, &code, &verifier),
            Some(&basic(&owner.client.id, owner.secret.as_ref().unwrap().secret())),
        )
        .await
        .unwrap();
    let access = tokens.access_token.clone();
    let refresh = tokens.refresh_token.as_ref().unwrap().secret().to_owned();
    let ask = |token: &str, who: &crate::admin::CreatedClient| {
        let form = crate::revoke::TokenRequestForm::from_pairs([("token", token)]).unwrap();
        let auth = basic(&who.client.id, who.secret.as_ref().unwrap().secret());
        let server = h.server.clone();
        async move { server.introspect(form, Some(&auth)).await.unwrap() }
    };
    assert!(ask(&access, &owner).await.active, "a client about its own access token");
    assert!(ask(&refresh, &owner).await.active, "a client about its own refresh token");
    assert!(ask(&access, &rs).await.active, "a registered resource server about any access token");
    let none = crate::introspect::IntrospectionResponse::inactive();
    assert_eq!(ask(&refresh, &rs).await, none, "refresh tokens are their own client's business");
    assert_eq!(ask(&access, &other).await, none, "another client learns nothing");
    assert_eq!(ask(&refresh, &other).await, none);
    assert_eq!(last_failure(&h, &other.client.id).await, Some(Reason::IntrospectionNotEntitled));
    // An introspecting client must have a secret.
    let mut public = NewClient::new("rs", Vec::new()).introspection();
    public.confidential = false;
    assert!(h.server.create_client(public).await.is_err());
}

pub async fn legacy_client_secret_hashes_verify_once_and_are_rehashed(stores: Stores) {
    use base64::Engine as _;
    let h = harness(stores).await;
    let created = h
        .server
        .create_client(NewClient::new("old", vec![RedirectUri::parse(REDIRECT).unwrap()]).confidential())
        .await
        .unwrap();
    let id = created.client.id.clone();
    let secret = created.secret.unwrap();
    let stored = h.server.stores().clients.client(&id).await.unwrap().unwrap();
    assert!(stored.secret_hash.as_deref().unwrap().starts_with("hmac-sha256$"), "new secrets are peppered HMACs");
    // A record written by an earlier version: an Argon2id hash of the same secret.
    let mut legacy = stored.clone();
    legacy.secret_hash = Some(crate::secret::hash_password(secret.secret()).unwrap());
    h.server.stores().clients.update_client(&legacy).await.unwrap();
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", secret.secret())));
    let (code, verifier) = authorize_code(&h.server, &id).await;
    h.server.token(code_request(&id, &code, &verifier), Some(&basic)).await.unwrap();
    let after = h.server.stores().clients.client(&id).await.unwrap().unwrap();
    assert!(after.secret_hash.as_deref().unwrap().starts_with("hmac-sha256$"), "rehashed on first use");
    let (code, verifier) = authorize_code(&h.server, &id).await;
    assert!(h.server.token(code_request(&id, &code, &verifier), Some(&basic)).await.is_ok(), "and still verifies");
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:nope")));
    let (code, verifier) = authorize_code(&h.server, &id).await;
    assert_eq!(
        oauth_code(&h.server.token(code_request(&id, &code, &verifier), Some(&wrong)).await.unwrap_err()),
        ErrorCode::InvalidClient
    );
}

pub async fn user_grants_list_live_grants_newest_first(stores: Stores) {
    let s = &stores.grants;
    let mut old = grant("kit-a");
    old.created_at = t(1);
    let mut new = grant("kit-b");
    new.created_at = t(3);
    let mut no_refresh = grant("kit-c");
    no_refresh.created_at = t(2);
    no_refresh.has_refresh_token = false;
    no_refresh.refresh_expires_at = None;
    let mut revoked = grant("kit-d");
    revoked.created_at = t(4);
    let mut expired = grant("kit-e");
    expired.created_at = t(5);
    expired.refresh_expires_at = Some(t(50));
    let mut someone_else = grant("kit-a");
    someone_else.user = uid("user-2");
    for g in [&old, &new, &no_refresh, &revoked, &expired, &someone_else] {
        let token = g.has_refresh_token.then(|| RefreshToken::generate().hash());
        s.create_grant(g, token.as_ref()).await.unwrap();
    }
    assert!(s.revoke_grant(&revoked.id, t(6)).await.unwrap());

    let ids = |v: Vec<Grant>| v.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let live = ids(s.user_grants(&uid("user-1"), t(100), 10).await.unwrap());
    assert_eq!(live, vec![new.id.clone(), no_refresh.id.clone(), old.id.clone()], "live grants, newest first");
    let before_expiry = ids(s.user_grants(&uid("user-1"), t(49), 10).await.unwrap());
    assert_eq!(before_expiry[0], expired.id, "a refresh token is live until it expires");
    assert_eq!(ids(s.user_grants(&uid("user-1"), t(100), 2).await.unwrap()), vec![new.id, no_refresh.id], "bounded");
    assert_eq!(ids(s.user_grants(&uid("user-2"), t(100), 10).await.unwrap()), vec![someone_else.id]);
    assert!(s.user_grants(&uid("user-3"), t(100), 10).await.unwrap().is_empty());
}

pub async fn connected_apps_revoke_only_the_users_grants(stores: Stores) {
    let h = harness(stores).await;
    let s = &h.server;
    let client = register_public_client(s).await;
    // Two people connect the same client.
    let mut refresh = HashMap::new();
    for user in ["user-1", "user-2"] {
        let verifier = CodeVerifier::generate();
        let challenge = CodeChallenge::s256(&verifier);
        let req = AuthorizationRequest::from_pairs([
            ("response_type", "code"),
            ("client_id", client.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .unwrap();
        let prompt = s.authorize(req).await.unwrap();
        let location = s.approve(&prompt.pending.id, &uid(user), s.now(), true).await.unwrap();
        let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let tokens = s.token(code_request(&client, &code, &verifier), None).await.unwrap();
        refresh.insert(user, tokens.refresh_token.unwrap().secret().to_owned());
    }
    let apps = s.connected_apps(&uid("user-1")).await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!((apps[0].client_id.clone(), apps[0].name.as_str(), apps[0].grants), (client.clone(), "kit", 1));
    assert_eq!(apps[0].identity, crate::account::ClientIdentity::Registered);
    assert_eq!(apps[0].scopes.to_string(), "mcp:tools");

    assert_eq!(s.revoke_connected_app(&uid("user-1"), &client).await.unwrap(), 1);
    assert!(s.connected_apps(&uid("user-1")).await.unwrap().is_empty());
    assert!(s.stores().consents.consent(&uid("user-1"), &client).await.unwrap().is_none(), "consent withdrawn");
    let err = s.token(refresh_request(&client, &refresh["user-1"]), None).await.unwrap_err();
    assert_eq!(err.to_oauth().code(), ErrorCode::InvalidGrant);
    // The other person's grant and consent are untouched.
    assert!(s.token(refresh_request(&client, &refresh["user-2"]), None).await.is_ok());
    assert!(s.stores().consents.consent(&uid("user-2"), &client).await.unwrap().is_some());
    assert_eq!(s.connected_apps(&uid("user-2")).await.unwrap().len(), 1);
    // Revoking again finds nothing.
    assert_eq!(s.revoke_connected_app(&uid("user-1"), &client).await.unwrap(), 0);
}

/// A rotation by the operator (another process) reaches a running server at its next sync:
/// it signs with the new key and still publishes the retired one.
pub async fn an_operators_key_rotation_reaches_running_servers(stores: Stores) {
    let clock = Arc::new(ManualClock::new(t(1_000)));
    let running = AuthorizationServer::with_clock(config(), stores.clone(), clock.clone()).await.unwrap();
    let first = running.keys().signing_key().0.to_owned();
    assert!(!running.sync_keys().await.unwrap(), "nothing changed yet");
    clock.advance(Duration::from_secs(60));
    let operator = crate::Operator::with_clock(stores.clone(), clock.clone());
    let new = operator.rotate_signing_key().await.unwrap();
    assert_ne!(new.kid, first);
    let keys = operator.signing_keys().await.unwrap();
    assert_eq!(keys[0].kid, new.kid, "newest first");
    assert_eq!((keys[0].retired_at, keys[1].retired_at), (None, Some(t(1_060))));
    assert_eq!(running.keys().signing_key().0, first, "until it syncs, the server signs with what it loaded");
    assert!(running.sync_keys().await.unwrap());
    assert_eq!(running.keys().signing_key().0, new.kid);
    assert_eq!(running.keys().len(), 2, "the retired key is still published");
    assert!(!running.sync_keys().await.unwrap());
}

/// Scheduled rotation: nothing while the signing key is young; once it is old, every replica
/// on the store tries at the same moment and exactly one new key ends up signing, the old
/// key and any loser's key retired but still published.
pub async fn scheduled_rotation_replaces_an_old_key_once_across_replicas(stores: Stores) {
    let clock = Arc::new(ManualClock::new(t(1_000)));
    let running = AuthorizationServer::with_clock(config(), stores.clone(), clock.clone()).await.unwrap();
    let first = running.keys().signing_key().0.to_owned();
    let every = Duration::from_secs(3_600);
    let operator = crate::Operator::with_clock(stores.clone(), clock.clone());
    clock.advance(Duration::from_secs(3_599));
    assert_eq!(operator.rotate_signing_key_if_older_than(every).await.unwrap(), None, "the key is not old yet");

    clock.advance(Duration::from_secs(1));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let replicas: Vec<_> = (0..8)
        .map(|_| {
            let (operator, barrier) = (crate::Operator::with_clock(stores.clone(), clock.clone()), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                operator.rotate_signing_key_if_older_than(every).await.unwrap()
            })
        })
        .collect();
    let mut rotated = Vec::new();
    for r in replicas {
        rotated.extend(r.await.unwrap());
    }
    let keys = operator.signing_keys().await.unwrap();
    let active: Vec<_> = keys.iter().filter(|k| k.retired_at.is_none()).collect();
    assert_eq!(active.len(), 1, "one signing key after racing rotations: {keys:?}");
    assert_eq!(rotated.len(), 1, "one replica reports the rotation: {rotated:?}");
    assert_eq!(active[0].kid, rotated[0].kid);
    assert!(keys.iter().any(|k| k.kid == first && k.retired_at == Some(t(4_600))), "the old key is retired: {keys:?}");

    assert!(running.sync_keys().await.unwrap());
    assert_eq!(running.keys().signing_key().0, rotated[0].kid, "the running server signs with the new key");
    assert_eq!(running.keys().len(), keys.len(), "every key, retired ones too, is still published");
    assert_eq!(operator.rotate_signing_key_if_older_than(every).await.unwrap(), None, "and the new key is young");
}

/// Sealed keys are not rotated by an operator without the key-encryption key: a new key in
/// clear beside sealed ones would leak what sealing protects.
pub async fn sealed_keys_are_not_rotated_without_the_key_encryption_key(stores: Stores) {
    let kek = crate::KeyEncryption::from_bytes(&[7; 32]).unwrap();
    let clock = Arc::new(ManualClock::new(t(1_000)));
    let sealed = crate::KeyEncryption::protect(Some(&kek), stores.clone());
    drop(AuthorizationServer::with_clock(config(), sealed.clone(), clock.clone()).await.unwrap());
    let without = crate::Operator::with_clock(stores.clone(), clock.clone());
    assert!(matches!(without.rotate_signing_key().await, Err(Error::Config(_))));
    let keys = without.signing_keys().await.unwrap();
    assert!(keys.len() == 1 && keys[0].sealed, "nothing was written: {keys:?}");
    let with = crate::Operator::with_clock(sealed, clock);
    let new = with.rotate_signing_key().await.unwrap();
    assert!(without.signing_keys().await.unwrap().iter().all(|k| k.sealed), "the new key {} is sealed", new.kid);
}

const LIMIT_T0_MS: i64 = 1_800_000_000_000;

pub async fn shared_buckets_allow_a_burst_then_the_rate(stores: Stores) {
    use crate::store::BucketRate;
    let l = &stores.limits;
    // Three at once, then one every two seconds.
    let rate = BucketRate::new(3, 0.5);
    for i in 0..3 {
        assert_eq!(l.take_token("sign_in:192.0.2.1", rate, LIMIT_T0_MS).await.unwrap(), None, "token {i}");
    }
    let wait = l.take_token("sign_in:192.0.2.1", rate, LIMIT_T0_MS).await.unwrap().expect("the burst is spent");
    assert!((1900..=2000).contains(&wait.as_millis()), "one token every 2 s: {wait:?}");
    assert_eq!(
        l.take_token("sign_in:192.0.2.2", rate, LIMIT_T0_MS).await.unwrap(),
        None,
        "other keys are not affected"
    );
    let half = l.take_token("sign_in:192.0.2.1", rate, LIMIT_T0_MS + 1000).await.unwrap().expect("half a token");
    assert!((900..=1000).contains(&half.as_millis()), "{half:?}");
    assert_eq!(l.take_token("sign_in:192.0.2.1", rate, LIMIT_T0_MS + 2000).await.unwrap(), None, "refilled");
    assert!(l.take_token("sign_in:192.0.2.1", rate, LIMIT_T0_MS + 2000).await.unwrap().is_some());
    // A replica whose clock is behind refills nothing and takes nothing it is not owed.
    assert!(l.take_token("sign_in:192.0.2.1", rate, LIMIT_T0_MS).await.unwrap().is_some(), "no refill backwards");
    // A long rest fills the bucket to its burst, no more.
    let later = LIMIT_T0_MS + 3_600_000;
    for _ in 0..3 {
        assert_eq!(l.take_token("sign_in:192.0.2.1", rate, later).await.unwrap(), None);
    }
    assert!(l.take_token("sign_in:192.0.2.1", rate, later).await.unwrap().is_some(), "capped at the burst");
}

pub async fn racing_replicas_never_share_a_buckets_last_token(stores: Stores) {
    use crate::store::BucketRate;
    let rate = BucketRate::new(10, 1.0 / 3600.0);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let l = stores.limits.clone();
        tasks.push(tokio::spawn(async move { l.take_token("authorize:198.51.100.7", rate, LIMIT_T0_MS).await }));
    }
    let mut taken = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().is_none() {
            taken += 1;
        }
    }
    assert_eq!(taken, 10, "exactly the burst, however the takes interleave");
}

pub async fn sign_in_failures_block_and_each_block_is_reported_once(stores: Stores) {
    let l = &stores.limits;
    let forget = Duration::from_secs(3600);
    // Two free failures, then blocks of 10 s, 20 s, ...
    let block_after = |n: u32| n.checked_sub(3).map(|over| Duration::from_secs(10 << over.min(10)));
    let now = t(1_000_000);
    assert_eq!(l.record_failure("acct:alice", now, forget, &block_after).await.unwrap(), None);
    assert_eq!(l.record_failure("acct:alice", now, forget, &block_after).await.unwrap(), None);
    assert_eq!(l.blocked("acct:alice", now).await.unwrap(), None, "not blocked yet");
    let until = l.record_failure("acct:alice", now, forget, &block_after).await.unwrap();
    assert_eq!(until, Some(now.plus(Duration::from_secs(10))));
    assert_eq!(l.blocked("acct:alice", now).await.unwrap(), Some((now.plus(Duration::from_secs(10)), true)));
    assert_eq!(l.blocked("acct:alice", now).await.unwrap().map(|b| b.1), Some(false), "reported once");
    assert_eq!(l.blocked("acct:bob", now).await.unwrap(), None, "other accounts are not affected");
    assert_eq!(l.blocked("acct:alice", now.plus(Duration::from_secs(10))).await.unwrap(), None, "the block ends");
    // The next failure doubles the block, and that block is reported again.
    let later = now.plus(Duration::from_secs(10));
    assert_eq!(
        l.record_failure("acct:alice", later, forget, &block_after).await.unwrap(),
        Some(later.plus(Duration::from_secs(20)))
    );
    assert_eq!(l.blocked("acct:alice", later).await.unwrap().map(|b| b.1), Some(true), "a new block is news");
    // A success forgets everything.
    l.clear_failures("acct:alice").await.unwrap();
    assert_eq!(l.blocked("acct:alice", later).await.unwrap(), None);
    for _ in 0..2 {
        assert_eq!(l.record_failure("acct:alice", later, forget, &block_after).await.unwrap(), None);
    }
    // Failures further apart than `forget_after` start the count again.
    let much_later = later.plus(forget).plus(Duration::from_secs(1));
    assert_eq!(
        l.record_failure("acct:alice", much_later, forget, &block_after).await.unwrap(),
        None,
        "count restarted"
    );
    assert_eq!(l.record_failure("acct:alice", much_later, forget, &block_after).await.unwrap(), None);
    assert!(l.record_failure("acct:alice", much_later, forget, &block_after).await.unwrap().is_some());
}

pub async fn limits_sweep_what_limits_no_one_and_stay_bounded(stores: Stores) {
    use crate::store::BucketRate;
    let l = &stores.limits;
    let slow = BucketRate::new(1, 1.0 / 3600.0);
    let fast = BucketRate::new(1, 1.0);
    // A bucket that is full again by the sweep goes; one still drained stays.
    assert_eq!(l.take_token("fast", fast, LIMIT_T0_MS).await.unwrap(), None);
    assert_eq!(l.take_token("slow", slow, LIMIT_T0_MS).await.unwrap(), None);
    let block_after = |n: u32| (n >= 2).then_some(Duration::from_secs(600));
    let now = UnixTime::from_secs(LIMIT_T0_MS / 1000);
    l.record_failure("old", now.minus(Duration::from_secs(7200)), Duration::from_secs(3600), &block_after)
        .await
        .unwrap();
    let three_hours = |n: u32| (n >= 2).then_some(Duration::from_secs(3 * 3600));
    for _ in 0..2 {
        l.record_failure("blocked", now.minus(Duration::from_secs(7200)), Duration::from_secs(86_400), &three_hours)
            .await
            .unwrap();
    }
    l.record_failure("fresh", now, Duration::from_secs(3600), &block_after).await.unwrap();
    let swept = l.sweep_limits(LIMIT_T0_MS + 5000, now.minus(Duration::from_secs(3600)), 1000).await.unwrap();
    assert_eq!(swept, 2, "the refilled bucket and the old failure");
    assert!(l.take_token("slow", slow, LIMIT_T0_MS + 5000).await.unwrap().is_some(), "still drained: kept");
    assert!(l.blocked("blocked", now).await.unwrap().is_some(), "old failures, but a block still running: kept");
    // Past the cap, the least recently used buckets go and the newest stay.
    for i in 0..10i64 {
        assert_eq!(l.take_token(&format!("b{i}"), slow, LIMIT_T0_MS + 10_000 + i * 1000).await.unwrap(), None);
    }
    let cap_now = LIMIT_T0_MS + 30_000;
    l.sweep_limits(cap_now, now.minus(Duration::from_secs(3600)), 4).await.unwrap();
    for i in 0..6 {
        assert_eq!(
            l.take_token(&format!("b{i}"), slow, cap_now).await.unwrap(),
            None,
            "b{i} was forgotten: full again"
        );
    }
    for i in 6..10 {
        assert!(l.take_token(&format!("b{i}"), slow, cap_now).await.unwrap().is_some(), "b{i} is among the newest 4");
    }
    // An account blocked now survives any cap: a flood of new names must not lift a block.
    for _ in 0..2 {
        l.record_failure("target", now, Duration::from_secs(3600), &block_after).await.unwrap();
    }
    for i in 0..8 {
        l.record_failure(
            &format!("spray{i}"),
            now.plus(Duration::from_secs(1 + i)),
            Duration::from_secs(3600),
            &block_after,
        )
        .await
        .unwrap();
    }
    l.sweep_limits(cap_now, now.minus(Duration::from_secs(3600)), 2).await.unwrap();
    assert!(l.blocked("target", now.plus(Duration::from_secs(1))).await.unwrap().is_some(), "the block holds");
}

pub async fn single_use_marks_refuse_replays_until_they_expire(stores: Stores) {
    let l = &stores.limits;
    let now = t(2_000_000);
    let until = now.plus(Duration::from_secs(300));
    assert!(l.first_use("jti:a", until, now).await.unwrap(), "first use");
    assert!(!l.first_use("jti:a", until, now).await.unwrap(), "a replay");
    assert!(!l.first_use("jti:a", until, now.plus(Duration::from_secs(299))).await.unwrap(), "still marked");
    assert!(l.first_use("jti:b", until, now).await.unwrap(), "other keys are independent");
    // The sweep forgets only marks past their time, even under a cap of one row.
    let swept = l.sweep_limits((now.as_secs() + 60) * 1000, now, 1).await.unwrap();
    assert_eq!(swept, 0, "live marks are never evicted");
    assert!(!l.first_use("jti:b", until, now.plus(Duration::from_secs(60))).await.unwrap());
    let swept = l.sweep_limits(until.as_secs() * 1000, now, 1).await.unwrap();
    assert_eq!(swept, 2, "both marks are past their time");
    // Past its time a key may be used again (its assertion has expired and is refused anyway).
    assert!(l.first_use("jti:a", until.plus(Duration::from_secs(300)), until).await.unwrap());
}

pub async fn racing_replicas_use_a_mark_once(stores: Stores) {
    let now = t(2_000_000);
    let until = now.plus(Duration::from_secs(60));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let l = stores.limits.clone();
        tasks.push(tokio::spawn(async move { l.first_use("jti:raced", until, now).await }));
    }
    let mut first = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            first += 1;
        }
    }
    assert_eq!(first, 1, "exactly one of the racing uses is the first");
}

// ---------------------------------------------------------------------------------------------
// Upstream sign-in: links, the upstream-token vault and its refresh lease.

fn provider(s: &str) -> UpstreamProviderId {
    UpstreamProviderId::parse(s).unwrap()
}

fn subject(s: &str) -> UpstreamSubject {
    UpstreamSubject::parse(s).unwrap()
}

/// A live grant of `client`, stored.
async fn stored_grant(stores: &Stores, client: &str) -> Grant {
    let g = grant(client);
    stores.grants.create_grant(&g, Some(&RefreshToken::generate().hash())).await.unwrap();
    g
}

/// Sealed bytes the kit stores: what a store keeps is opaque to it, so any bytes do.
fn sealed(tag: u8) -> Vec<u8> {
    [&b"sealed-upstream:"[..], &[tag; 48][..]].concat()
}

pub async fn upstream_links_are_never_moved(stores: Stores) {
    let s = &stores.upstream;
    let (google, github) = (provider("google"), provider("github"));
    let sub = subject("110169484474386276334");
    assert_eq!(s.linked_user(&google, &sub).await.unwrap(), None);
    assert!(s.link_user(&google, &sub, &uid("u-alice"), t(10)).await.unwrap());
    assert_eq!(s.linked_user(&google, &sub).await.unwrap(), Some(uid("u-alice")));
    assert!(s.link_user(&google, &sub, &uid("u-alice"), t(20)).await.unwrap(), "linking again to the same user");
    assert!(!s.link_user(&google, &sub, &uid("u-mallory"), t(30)).await.unwrap(), "another user is refused");
    assert_eq!(s.linked_user(&google, &sub).await.unwrap(), Some(uid("u-alice")), "and nothing was overwritten");
    // The same subject at another provider is another person; subjects compare exactly.
    assert_eq!(s.linked_user(&github, &sub).await.unwrap(), None);
    assert!(s.link_user(&github, &sub, &uid("u-bob"), t(40)).await.unwrap());
    let upper = subject("AbC");
    assert!(s.link_user(&google, &upper, &uid("u-alice"), t(5)).await.unwrap());
    assert_eq!(s.linked_user(&google, &subject("abc")).await.unwrap(), None, "case matters");
    let same_time = subject("alice-at-github");
    assert!(s.link_user(&github, &same_time, &uid("u-alice"), t(10)).await.unwrap());

    let links = s.links_of(&uid("u-alice")).await.unwrap();
    assert_eq!(
        links,
        vec![
            UpstreamLink::new(google.clone(), upper, t(5)),
            UpstreamLink::new(github.clone(), same_time, t(10)),
            UpstreamLink::new(google.clone(), sub.clone(), t(10)),
        ],
        "oldest first, then by provider; a repeated link keeps its first time"
    );
    assert_eq!(s.links_of(&uid("u-bob")).await.unwrap(), vec![UpstreamLink::new(github.clone(), sub.clone(), t(40))]);
    assert!(s.links_of(&uid("u-mallory")).await.unwrap().is_empty());

    assert_eq!(s.unlink_user(&uid("u-alice")).await.unwrap(), 3);
    assert_eq!(s.unlink_user(&uid("u-alice")).await.unwrap(), 0);
    assert_eq!(s.linked_user(&google, &sub).await.unwrap(), None);
    assert_eq!(s.linked_user(&github, &sub).await.unwrap(), Some(uid("u-bob")), "another user's link stays");
}

pub async fn racing_replicas_link_an_identity_once(stores: Stores) {
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, barrier) = (stores.upstream.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let user = uid(&format!("u-racer-{i}"));
            barrier.wait().await;
            let linked = s.link_user(&provider("okta"), &subject("00u1abcd"), &user, t(1)).await.unwrap();
            (user, linked)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (user, linked) = task.await.unwrap();
        if linked {
            winners.push(user);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 20 racing links wins: {winners:?}");
    assert_eq!(
        stores.upstream.linked_user(&provider("okta"), &subject("00u1abcd")).await.unwrap().as_ref(),
        winners.first()
    );
}

/// Removing a user (the operator's action, and the store's own `delete_user`) ends its links:
/// the upstream identity no longer signs in as it.
pub async fn upstream_links_end_with_their_user(stores: Stores) {
    let h = harness(stores).await;
    let s = h.server.stores();
    let alice = User::new(uid("u-alice"), "alice".into(), "$argon2id$hash".into(), t(0));
    let bob = User::new(uid("u-bob"), "bob".into(), "$argon2id$hash".into(), t(0));
    for u in [&alice, &bob] {
        s.users.create_user(u).await.unwrap();
    }
    assert!(s.upstream.link_user(&provider("google"), &subject("g-alice"), &alice.id, t(1)).await.unwrap());
    assert!(s.upstream.link_user(&provider("github"), &subject("4242"), &alice.id, t(2)).await.unwrap());
    assert!(s.upstream.link_user(&provider("google"), &subject("g-bob"), &bob.id, t(3)).await.unwrap());

    assert!(h.server.operator().remove_user("alice").await.unwrap());
    assert!(s.upstream.links_of(&alice.id).await.unwrap().is_empty());
    assert_eq!(s.upstream.linked_user(&provider("google"), &subject("g-alice")).await.unwrap(), None);
    assert_eq!(s.upstream.linked_user(&provider("github"), &subject("4242")).await.unwrap(), None);
    assert_eq!(s.upstream.links_of(&bob.id).await.unwrap().len(), 1, "another user's links stay");
    // The identity is free again: a new user may be linked to it.
    assert!(s.upstream.link_user(&provider("google"), &subject("g-alice"), &uid("u-new"), t(4)).await.unwrap());

    // The store's own deletion takes the links with it too.
    assert!(s.users.delete_user(&bob.id).await.unwrap());
    assert_eq!(s.upstream.linked_user(&provider("google"), &subject("g-bob")).await.unwrap(), None);
}

pub async fn upstream_inputs_beyond_their_bounds_are_refused(stores: Stores) {
    use crate::store::{MAX_LEASE_HOLDER_LEN, MAX_SEALED_UPSTREAM_LEN};
    let s = &stores.upstream;
    let g = stored_grant(&stores, "kit-bounds").await;
    let largest = vec![7u8; MAX_SEALED_UPSTREAM_LEN];
    assert!(s.put_upstream_tokens(&g.id, &largest, None, t(1)).await.unwrap(), "the bound itself is accepted");
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap().unwrap().sealed, largest, "stored whole");
    let too_large = vec![7u8; MAX_SEALED_UPSTREAM_LEN + 1];
    for bad in [&too_large[..], &[][..]] {
        let put = s.put_upstream_tokens(&g.id, bad, None, t(2)).await;
        assert!(matches!(put, Err(StoreError::Refused(_))), "{} bytes: {put:?}", bad.len());
        let replaced = s.replace_upstream_tokens(&g.id, 1, bad, None, t(2)).await;
        assert!(matches!(replaced, Err(StoreError::Refused(_))), "{} bytes: {replaced:?}", bad.len());
    }
    let record = s.upstream_tokens(&g.id).await.unwrap().unwrap();
    assert_eq!((record.version, record.sealed.len()), (1, MAX_SEALED_UPSTREAM_LEN), "nothing was written");

    let longest = "h".repeat(MAX_LEASE_HOLDER_LEN);
    assert!(s.take_refresh_lease(&g.id, &longest, t(60), t(1)).await.unwrap());
    let too_long = "h".repeat(MAX_LEASE_HOLDER_LEN + 1);
    for bad in [too_long.as_str(), ""] {
        assert!(matches!(s.take_refresh_lease(&g.id, bad, t(60), t(1)).await, Err(StoreError::Refused(_))), "{bad:?}");
        assert!(matches!(s.release_refresh_lease(&g.id, bad).await, Err(StoreError::Refused(_))), "{bad:?}");
    }
    assert!(s.release_refresh_lease(&g.id, &longest).await.unwrap(), "the longest holder still held it");

    // Provider ids and subjects cannot even be built past their bounds: nothing is truncated.
    assert!(UpstreamProviderId::parse(&"p".repeat(crate::types::MAX_UPSTREAM_PROVIDER_LEN + 1)).is_err());
    assert!(UpstreamSubject::parse(&"s".repeat(crate::types::MAX_UPSTREAM_SUBJECT_LEN + 1)).is_err());
    let longest_subject = subject(&"s".repeat(crate::types::MAX_UPSTREAM_SUBJECT_LEN));
    let longest_provider = provider(&"p".repeat(crate::types::MAX_UPSTREAM_PROVIDER_LEN));
    assert!(s.link_user(&longest_provider, &longest_subject, &uid("u-long"), t(1)).await.unwrap());
    assert_eq!(s.links_of(&uid("u-long")).await.unwrap()[0].subject, longest_subject, "stored whole");
}

pub async fn upstream_tokens_are_replaced_by_compare_and_swap(stores: Stores) {
    let s = &stores.upstream;
    let g = stored_grant(&stores, "kit-vault").await;
    assert!(!s.put_upstream_tokens(&GrantId::generate(), &sealed(1), None, t(1)).await.unwrap(), "no such grant");
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap(), None);

    assert!(s.put_upstream_tokens(&g.id, &sealed(1), Some(t(3600)), t(1)).await.unwrap());
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap(), Some(SealedUpstream::new(sealed(1), 1, Some(t(3600)), t(1))));
    // Put over a record: its version goes on, so a swap prepared against the old one fails.
    assert!(s.put_upstream_tokens(&g.id, &sealed(2), None, t(2)).await.unwrap());
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap(), Some(SealedUpstream::new(sealed(2), 2, None, t(2))));
    assert!(!s.replace_upstream_tokens(&g.id, 1, &sealed(9), None, t(3)).await.unwrap(), "a stale version loses");
    assert!(s.replace_upstream_tokens(&g.id, 2, &sealed(3), Some(t(7200)), t(4)).await.unwrap());
    assert!(!s.replace_upstream_tokens(&g.id, 2, &sealed(9), None, t(5)).await.unwrap(), "a version wins once");
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap(), Some(SealedUpstream::new(sealed(3), 3, Some(t(7200)), t(4))));
    assert!(!s.replace_upstream_tokens(&GrantId::generate(), 1, &sealed(9), None, t(5)).await.unwrap());

    // Records are per grant.
    let other = stored_grant(&stores, "kit-vault").await;
    assert!(s.put_upstream_tokens(&other.id, &sealed(4), None, t(6)).await.unwrap());
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap().unwrap().sealed, sealed(3));

    assert!(s.delete_upstream_tokens(&g.id).await.unwrap());
    assert!(!s.delete_upstream_tokens(&g.id).await.unwrap());
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap(), None);
    assert!(!s.replace_upstream_tokens(&g.id, 3, &sealed(9), None, t(7)).await.unwrap(), "gone");
    assert!(s.put_upstream_tokens(&g.id, &sealed(5), None, t(8)).await.unwrap());
    assert_eq!(s.upstream_tokens(&g.id).await.unwrap().unwrap().version, 1, "a new record starts over");
    assert_eq!(s.upstream_tokens(&other.id).await.unwrap().unwrap().sealed, sealed(4), "the other is untouched");
}

pub async fn racing_replacements_of_upstream_tokens_have_one_winner(stores: Stores) {
    let g = stored_grant(&stores, "kit-vault-race").await;
    assert!(stores.upstream.put_upstream_tokens(&g.id, &sealed(0), None, t(1)).await.unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let (s, barrier, id) = (stores.upstream.clone(), barrier.clone(), g.id.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (i, s.replace_upstream_tokens(&id, 1, &sealed(i + 1), None, t(2)).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (i, won) = task.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 20 racing replacements wins: {winners:?}");
    let record = stores.upstream.upstream_tokens(&g.id).await.unwrap().unwrap();
    assert_eq!((record.version, record.sealed), (2, sealed(winners[0] + 1)), "the winner's record is stored");
}

/// Every way a grant is revoked deletes its upstream tokens: the store's two revocations, and
/// the server's paths through them (a replayed code, a replayed refresh token, RFC 7009, the
/// user's Connected apps, the operator removing a client or a user).
pub async fn upstream_tokens_end_with_every_revocation(stores: Stores) {
    let s = &stores;
    // The store's revocations, and a revoked grant never gets a record back.
    let one = stored_grant(s, "kit-rev-a").await;
    let (two, three, kept) =
        (stored_grant(s, "kit-rev-b").await, stored_grant(s, "kit-rev-b").await, stored_grant(s, "kit-rev-c").await);
    for g in [&one, &two, &three, &kept] {
        assert!(s.upstream.put_upstream_tokens(&g.id, &sealed(1), None, t(1)).await.unwrap());
    }
    assert!(s.upstream.take_refresh_lease(&one.id, "replica-a", t(60), t(1)).await.unwrap());
    assert!(s.grants.revoke_grant(&one.id, t(2)).await.unwrap());
    assert_eq!(s.upstream.upstream_tokens(&one.id).await.unwrap(), None, "revoke_grant");
    assert!(!s.upstream.take_refresh_lease(&one.id, "replica-b", t(60), t(3)).await.unwrap(), "the lease went too");
    assert!(!s.upstream.put_upstream_tokens(&one.id, &sealed(2), None, t(3)).await.unwrap(), "revoked: no record");
    assert_eq!(s.upstream.upstream_tokens(&one.id).await.unwrap(), None);
    assert_eq!(s.grants.revoke_client_grants(&cid("kit-rev-b"), t(2)).await.unwrap(), 2);
    for g in [&two, &three] {
        assert_eq!(s.upstream.upstream_tokens(&g.id).await.unwrap(), None, "revoke_client_grants");
    }
    assert!(s.upstream.upstream_tokens(&kept.id).await.unwrap().is_some(), "another client's grant keeps its record");

    // Through the server.
    let h = harness(stores.clone()).await;
    let server = &h.server;
    let grant_of = |refresh: String| {
        let grants = server.stores().grants.clone();
        async move { grants.find_refresh_token(&SecretHash::of(refresh.as_bytes())).await.unwrap().unwrap().0.id }
    };
    let vaulted = |id: GrantId| {
        let upstream = server.stores().upstream.clone();
        async move {
            assert!(upstream.put_upstream_tokens(&id, &sealed(3), None, t(0)).await.unwrap());
            id
        }
    };
    let gone = |id: GrantId, path: &'static str| {
        let upstream = server.stores().upstream.clone();
        async move { assert_eq!(upstream.upstream_tokens(&id).await.unwrap(), None, "{path}") }
    };
    let client = register_public_client(server).await;

    // A replayed code.
    let (code, verifier) = authorize_code(server, &client).await;
    let tokens = server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let replayed = vaulted(grant_of(tokens.refresh_token.unwrap().secret().to_owned()).await).await;
    assert!(server.token(code_request(&client, &code, &verifier), None).await.is_err());
    gone(replayed, "code replay").await;

    // A refresh token replayed after the grace window.
    let (code, verifier) = authorize_code(server, &client).await;
    let first = server.token(code_request(&client, &code, &verifier), None).await.unwrap().refresh_token.unwrap();
    let id = vaulted(grant_of(first.secret().to_owned()).await).await;
    server.token(refresh_request(&client, first.secret()), None).await.unwrap();
    h.clock.advance(Duration::from_secs(3600));
    assert!(server.token(refresh_request(&client, first.secret()), None).await.is_err());
    gone(id, "refresh replay").await;

    // RFC 7009.
    let (code, verifier) = authorize_code(server, &client).await;
    let refresh = server.token(code_request(&client, &code, &verifier), None).await.unwrap().refresh_token.unwrap();
    let id = vaulted(grant_of(refresh.secret().to_owned()).await).await;
    let form =
        crate::revoke::TokenRequestForm::from_pairs([("token", refresh.secret()), ("client_id", client.as_str())])
            .unwrap();
    server.revoke(form, None).await.unwrap();
    gone(id, "RFC 7009 revocation").await;

    // The user's Connected apps.
    let (code, verifier) = authorize_code(server, &client).await;
    let refresh = server.token(code_request(&client, &code, &verifier), None).await.unwrap().refresh_token.unwrap();
    let id = vaulted(grant_of(refresh.secret().to_owned()).await).await;
    assert_eq!(server.revoke_connected_app(&uid("user-1"), &client).await.unwrap(), 1);
    gone(id, "Connected apps").await;

    // The operator removing the user, then the client.
    let op = server.operator();
    let user = User::new(uid("user-1"), "alice".into(), "$argon2id$hash".into(), t(0));
    server.stores().users.create_user(&user).await.unwrap();
    let (code, verifier) = authorize_code(server, &client).await;
    let refresh = server.token(code_request(&client, &code, &verifier), None).await.unwrap().refresh_token.unwrap();
    let id = vaulted(grant_of(refresh.secret().to_owned()).await).await;
    assert!(op.remove_user("alice").await.unwrap());
    gone(id, "the operator removing the user").await;
    let (code, verifier) = authorize_code(server, &client).await;
    let refresh = server.token(code_request(&client, &code, &verifier), None).await.unwrap().refresh_token.unwrap();
    let id = vaulted(grant_of(refresh.secret().to_owned()).await).await;
    assert!(op.remove_client(&client).await.unwrap());
    gone(id, "the operator removing the client").await;
    assert!(server.stores().upstream.upstream_tokens(&kept.id).await.unwrap().is_some());
}

/// A write racing the grant's revocation never leaves a record behind: whichever comes first,
/// a revoked grant ends up with no upstream tokens.
pub async fn a_write_racing_a_revocation_leaves_no_record(stores: Stores) {
    let mut grants = Vec::new();
    for _ in 0..20 {
        grants.push(stored_grant(&stores, "kit-vault-revoke-race").await);
    }
    let mut tasks = Vec::new();
    for g in &grants {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (upstream, b, id) = (stores.upstream.clone(), barrier.clone(), g.id.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            upstream.put_upstream_tokens(&id, &sealed(1), None, t(1)).await.unwrap();
        }));
        let (store, b, id) = (stores.grants.clone(), barrier, g.id.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            assert!(store.revoke_grant(&id, t(1)).await.unwrap());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for g in &grants {
        assert_eq!(stores.upstream.upstream_tokens(&g.id).await.unwrap(), None, "grant {} is revoked", g.id);
    }
}

pub async fn upstream_tokens_are_swept_with_their_grants(stores: Stores) {
    let s = &stores;
    // `grant` makes refresh tokens that expire at t(86400).
    let expiring = stored_grant(s, "kit-vault-sweep").await;
    let mut live = grant("kit-vault-sweep");
    live.refresh_expires_at = Some(t(10 * 86_400));
    s.grants.create_grant(&live, Some(&RefreshToken::generate().hash())).await.unwrap();
    for g in [&expiring, &live] {
        assert!(s.upstream.put_upstream_tokens(&g.id, &sealed(1), None, t(1)).await.unwrap());
    }
    assert_eq!(s.grants.sweep_grants(t(86_000)).await.unwrap(), 0, "nothing has expired yet");
    assert!(s.upstream.upstream_tokens(&expiring.id).await.unwrap().is_some());
    assert_eq!(s.grants.sweep_grants(t(86_401)).await.unwrap(), 1);
    assert_eq!(s.upstream.upstream_tokens(&expiring.id).await.unwrap(), None, "swept with its grant");
    assert!(!s.upstream.put_upstream_tokens(&expiring.id, &sealed(2), None, t(86_402)).await.unwrap(), "gone for good");
    assert!(s.upstream.upstream_tokens(&live.id).await.unwrap().is_some(), "a live grant keeps its record");
}

pub async fn refresh_leases_have_one_holder_at_a_time(stores: Stores) {
    let s = &stores.upstream;
    let g = stored_grant(&stores, "kit-lease").await;
    assert!(!s.take_refresh_lease(&g.id, "replica-a", t(60), t(0)).await.unwrap(), "no record, no lease");
    assert!(s.put_upstream_tokens(&g.id, &sealed(1), None, t(0)).await.unwrap());

    assert!(s.take_refresh_lease(&g.id, "replica-a", t(60), t(0)).await.unwrap());
    assert!(!s.take_refresh_lease(&g.id, "replica-b", t(60), t(30)).await.unwrap(), "a's lease runs");
    assert!(s.take_refresh_lease(&g.id, "replica-a", t(90), t(30)).await.unwrap(), "its holder extends it");
    assert!(!s.take_refresh_lease(&g.id, "replica-b", t(120), t(89)).await.unwrap(), "until the new end");
    assert!(!s.release_refresh_lease(&g.id, "replica-b").await.unwrap(), "only the holder releases");
    assert!(!s.take_refresh_lease(&g.id, "replica-b", t(120), t(89)).await.unwrap(), "still a's");
    // A lease past its time is taken over, and its old holder can no longer release it.
    assert!(s.take_refresh_lease(&g.id, "replica-b", t(150), t(90)).await.unwrap(), "expired: taken over");
    assert!(!s.release_refresh_lease(&g.id, "replica-a").await.unwrap());
    assert!(!s.take_refresh_lease(&g.id, "replica-a", t(200), t(100)).await.unwrap(), "b holds it now");
    // A replacement keeps the lease; its holder releases it.
    assert!(s.replace_upstream_tokens(&g.id, 1, &sealed(2), None, t(100)).await.unwrap());
    assert!(!s.take_refresh_lease(&g.id, "replica-a", t(200), t(100)).await.unwrap());
    assert!(s.release_refresh_lease(&g.id, "replica-b").await.unwrap());
    assert!(!s.release_refresh_lease(&g.id, "replica-b").await.unwrap(), "released once");
    assert!(s.take_refresh_lease(&g.id, "replica-a", t(200), t(100)).await.unwrap(), "free again");

    // Leases are per grant, and go with their record.
    let other = stored_grant(&stores, "kit-lease").await;
    assert!(s.put_upstream_tokens(&other.id, &sealed(1), None, t(100)).await.unwrap());
    assert!(s.take_refresh_lease(&other.id, "replica-b", t(200), t(100)).await.unwrap());
    assert!(s.delete_upstream_tokens(&g.id).await.unwrap());
    assert!(!s.release_refresh_lease(&g.id, "replica-a").await.unwrap(), "deleted with its record");
    assert!(s.put_upstream_tokens(&g.id, &sealed(3), None, t(101)).await.unwrap());
    assert!(s.take_refresh_lease(&g.id, "replica-b", t(200), t(101)).await.unwrap(), "a new record has no lease");
    assert!(
        !s.take_refresh_lease(&other.id, "replica-a", t(200), t(101)).await.unwrap(),
        "the other grant's lease holds"
    );
}

pub async fn racing_replicas_take_a_refresh_lease_once(stores: Stores) {
    let g = stored_grant(&stores, "kit-lease-race").await;
    assert!(stores.upstream.put_upstream_tokens(&g.id, &sealed(1), None, t(0)).await.unwrap());
    // An expired lease, so that the racers contend for a takeover, not only for a free row.
    assert!(stores.upstream.take_refresh_lease(&g.id, "replica-old", t(5), t(0)).await.unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, barrier, id) = (stores.upstream.clone(), barrier.clone(), g.id.clone());
        tasks.push(tokio::spawn(async move {
            let holder = format!("replica-{i}");
            barrier.wait().await;
            let took = s.take_refresh_lease(&id, &holder, t(60), t(10)).await.unwrap();
            (holder, took)
        }));
    }
    let mut holders = Vec::new();
    for task in tasks {
        let (holder, took) = task.await.unwrap();
        if took {
            holders.push(holder);
        }
    }
    assert_eq!(holders.len(), 1, "exactly one of 20 racing replicas takes the lease: {holders:?}");
    assert!(stores.upstream.release_refresh_lease(&g.id, &holders[0]).await.unwrap(), "and it is the holder");
}
