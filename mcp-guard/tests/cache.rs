//! The verified-token cache: bounds, expiry, invalidation, and revocation through the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::any;
use mcp_guard::{AuthContext, LocalVerifier, McpGuardLayer, TokenCache, TokenCacheConfig, TokenVerifier};
use oauth_core::Reason;
use oauth_core::TokenRequestForm;
use oauth_core::testing::{authorize_code, code_request, config, register_public_client};
use oauth_core::{AccessTokenClaims, mint};
use oauth_core::{AuthorizationServer, Clock, ManualClock, UnixTime};
use oauth_core::{ClientId, GrantId, ScopeSet, UserId};
use oauth_store_memory::MemoryStore;
use tower::ServiceExt as _;

const T0: UnixTime = UnixTime::from_secs(1_800_000_000);

struct Fixture {
    server: Arc<AuthorizationServer>,
    clock: Arc<ManualClock>,
    cache: TokenCache,
    verifier: LocalVerifier,
}

/// A server whose grant store reports revocations to the verifier's cache.
async fn fixture(cache: TokenCacheConfig) -> Fixture {
    let clock = Arc::new(ManualClock::new(T0));
    let cache = TokenCache::new(cache);
    let stores = cache.watch_revocations(MemoryStore::new().into_stores());
    let server = Arc::new(AuthorizationServer::with_clock(config(), stores, clock.clone()).await.unwrap());
    let verifier = LocalVerifier::new(server.clone()).with_cache(cache.clone());
    Fixture { server, clock, cache, verifier }
}

impl Fixture {
    /// A token minted directly, with `ttl` and an optional grant id.
    fn token(&self, sub: &str, ttl: u64, grant: Option<&str>) -> String {
        let c = config();
        let mut claims = AccessTokenClaims::new(
            c.issuer.as_str(),
            sub,
            c.resource.as_str(),
            "client-1",
            "mcp:tools",
            self.clock.now(),
            Duration::from_secs(ttl),
        );
        claims.gid = grant.map(str::to_owned);
        mint(&claims, &self.server.keys()).unwrap()
    }

    fn cached(&self, token: &str) -> bool {
        self.cache.get(token, self.clock.now()).is_some()
    }

    /// A guarded stand-in MCP endpoint that echoes the caller.
    fn app(&self) -> Router {
        let guard = McpGuardLayer::new(Arc::new(self.verifier.clone()), &config().resource);
        Router::new()
            .route(
                "/mcp",
                any(|req: Request<Body>| async move {
                    req.extensions().get::<AuthContext>().map(|c| c.subject.to_string()).unwrap_or_default()
                }),
            )
            .layer(guard)
    }

    async fn call(&self, token: &str) -> StatusCode {
        let req = Request::post("/mcp").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty());
        self.app().oneshot(req.unwrap()).await.unwrap().status()
    }
}

fn context(i: usize, exp: UnixTime) -> AuthContext {
    AuthContext::new(
        UserId::parse(&format!("user-{i}")).unwrap(),
        ClientId::parse("client-1").unwrap(),
        ScopeSet::parse("mcp:tools").unwrap(),
        exp,
        "https://as.example.com",
        format!("jti-{i}"),
    )
}

#[tokio::test]
async fn a_verified_token_is_served_from_the_cache_with_the_same_context() {
    let f = fixture(TokenCacheConfig::default()).await;
    let t = f.token("user-1", 600, Some("gr_abc"));
    assert!(!f.cached(&t));
    let cold = f.verifier.verify(&t).await.unwrap();
    assert_eq!(cold.grant_id, Some(GrantId::parse("gr_abc").unwrap()));
    assert!(f.cached(&t));
    assert_eq!(f.verifier.verify(&t).await.unwrap(), cold, "a hit gives what the check gave");
    assert_eq!(f.cache.len(), 1);

    let uncached = LocalVerifier::new(f.server.clone()).without_cache();
    assert!(uncached.cache().is_none());
    assert_eq!(uncached.verify(&t).await.unwrap(), cold);
}

#[test]
fn the_cache_holds_at_most_max_entries() {
    let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(64));
    let exp = T0.plus(Duration::from_secs(600));
    for i in 0..1000 {
        cache.admit(&format!("token-{i}"), &context(i, exp), T0).unwrap();
        assert!(cache.len() <= 64, "{} entries after {i} inserts", cache.len());
        assert!(cache.get(&format!("token-{i}"), T0).is_some(), "the newest entry is kept");
    }
    assert!(cache.len() >= 32, "evicts an eighth at a time, not everything: {}", cache.len());

    // The big default: 16 shards, each bounded, so the whole is too.
    let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(4096));
    for i in 0..20_000 {
        cache.admit(&format!("token-{i}"), &context(i, exp), T0).unwrap();
    }
    assert!((3000..=4096).contains(&cache.len()), "{}", cache.len());
}

#[test]
fn the_cache_holds_at_most_max_bytes() {
    let max = 64 * 1024;
    let cache = TokenCache::new(TokenCacheConfig::default().with_max_bytes(max));
    let exp = T0.plus(Duration::from_secs(600));
    for i in 0..5000 {
        cache.admit(&format!("token-{i}"), &context(i, exp), T0).unwrap();
        assert!(cache.stats().bytes <= max, "{} bytes after {i} inserts", cache.stats().bytes);
    }
    assert!(cache.len() > 100, "{} entries", cache.len());

    // Expired entries make room before live ones are evicted.
    let cache = TokenCache::new(TokenCacheConfig::default().with_max_entries(10));
    let soon = T0.plus(Duration::from_secs(10));
    for i in 0..5 {
        cache.admit(&format!("old-{i}"), &context(i, soon), T0).unwrap();
    }
    for i in 0..5 {
        cache.admit(&format!("live-{i}"), &context(i, exp), T0).unwrap();
    }
    let later = T0.plus(Duration::from_secs(20));
    cache.admit("one-more", &context(99, exp), later).unwrap();
    for i in 0..5 {
        assert!(cache.get(&format!("live-{i}"), later).is_some(), "live-{i} was evicted");
    }
}

#[tokio::test]
async fn an_entry_never_outlives_the_tokens_exp() {
    let f = fixture(TokenCacheConfig::default()).await;
    let t = f.token("user-1", 600, None);
    f.verifier.verify(&t).await.unwrap();
    f.clock.advance(Duration::from_secs(599));
    assert!(f.cached(&t));
    f.clock.advance(Duration::from_secs(1));
    assert!(!f.cached(&t), "gone at exp");
    // Within the leeway the signature check still accepts it, but it is not cached again.
    f.verifier.verify(&t).await.unwrap();
    assert!(f.cache.is_empty());
    f.clock.advance(Duration::from_secs(61));
    let r = f.verifier.verify(&t).await.unwrap_err();
    assert_eq!(r.reason, Reason::TokenExpired);

    // A max age ends an entry sooner, and the context still carries the token's exp.
    let f = fixture(TokenCacheConfig::default().with_max_age(Duration::from_secs(30))).await;
    let t = f.token("user-1", 600, None);
    let ctx = f.verifier.verify(&t).await.unwrap();
    assert_eq!(f.cache.get(&t, f.clock.now()).unwrap().expires_at, ctx.expires_at);
    f.clock.advance(Duration::from_secs(30));
    assert!(!f.cached(&t));
}

#[tokio::test]
async fn a_refused_token_is_never_cached() {
    let f = fixture(TokenCacheConfig::default()).await;
    let good = f.token("user-1", 600, None);
    let mut forged = good.clone();
    forged.truncate(good.len() - 4);
    forged.push_str("AAAA");
    let c = config();
    let other_aud = mint(
        &AccessTokenClaims::new(
            c.issuer.as_str(),
            "user-1",
            "https://other.example/mcp",
            "client-1",
            "mcp:tools",
            f.clock.now(),
            Duration::from_secs(600),
        ),
        &f.server.keys(),
    )
    .unwrap();
    let expired = f.token("user-1", 1, None);
    f.clock.advance(Duration::from_secs(120));
    for bad in [forged.as_str(), other_aud.as_str(), expired.as_str(), "garbage", ""] {
        for _ in 0..2 {
            assert!(f.verifier.verify(bad).await.is_err());
        }
        assert!(!f.cached(bad));
    }
    assert!(f.cache.is_empty());
    assert_eq!(f.call(&forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(f.call(&good).await, StatusCode::OK);
}

#[tokio::test]
async fn an_invalidated_token_is_refused_and_others_are_not() {
    let f = fixture(TokenCacheConfig::default()).await;
    let t1 = f.token("user-1", 600, Some("gr_1"));
    let t2 = f.token("user-2", 600, Some("gr_1"));
    for t in [&t1, &t2] {
        f.verifier.verify(t).await.unwrap();
    }
    f.cache.invalidate_token(&t1, f.clock.now());
    assert!(!f.cached(&t1));
    let r = f.verifier.verify(&t1).await.unwrap_err();
    assert_eq!(r.reason, Reason::GrantRevoked);
    assert!(!f.cached(&t1), "a refused token is not cached");
    assert!(f.cached(&t2), "the grant's other token stays");
    assert_eq!(f.call(&t1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(f.call(&t2).await, StatusCode::OK);
}

#[tokio::test]
async fn an_invalidated_grant_refuses_all_its_tokens_for_the_window() {
    let window = Duration::from_secs(900);
    let f = fixture(TokenCacheConfig::default().with_revocation_window(window)).await;
    let a1 = f.token("user-1", 3600, Some("gr_a"));
    let a2 = f.token("user-1", 3600, Some("gr_a"));
    let b = f.token("user-1", 3600, Some("gr_b"));
    let none = f.token("user-1", 3600, None);
    f.verifier.verify(&a1).await.unwrap();
    f.verifier.verify(&b).await.unwrap();
    f.cache.invalidate_grant(&GrantId::parse("gr_a").unwrap(), f.clock.now());
    for t in [&a1, &a2] {
        assert!(!f.cached(t));
        assert_eq!(f.verifier.verify(t).await.unwrap_err().reason, Reason::GrantRevoked);
        assert_eq!(f.call(t).await, StatusCode::UNAUTHORIZED);
    }
    for t in [&b, &none] {
        f.verifier.verify(t).await.unwrap();
        assert!(f.cached(t));
    }
    assert_eq!(f.cache.stats().revocations, 1);
    // After the window the grant is forgotten: its token is what a stateless JWT is again.
    f.clock.advance(window);
    f.verifier.verify(&a1).await.unwrap();
}

/// A burst (a removed client's grants, a page of the revocation feed) in one call: each of
/// its grants' tokens is refused, cached or not, and no other grant's.
#[tokio::test]
async fn grants_invalidated_together_are_each_refused() {
    let f = fixture(TokenCacheConfig::default()).await;
    let a = f.token("user-1", 3600, Some("gr_a"));
    let b = f.token("user-2", 3600, Some("gr_b"));
    let c = f.token("user-3", 3600, Some("gr_c"));
    for t in [&a, &c] {
        f.verifier.verify(t).await.unwrap();
    }
    let grants = [GrantId::parse("gr_a").unwrap(), GrantId::parse("gr_b").unwrap()];
    f.cache.invalidate_grants(&grants, f.clock.now());
    for t in [&a, &b] {
        assert!(!f.cached(t));
        assert_eq!(f.verifier.verify(t).await.unwrap_err().reason, Reason::GrantRevoked);
    }
    assert!(f.cached(&c), "another grant's token stays");
    f.verifier.verify(&c).await.unwrap();
    assert_eq!(f.cache.stats().revocations, 2);
    f.cache.invalidate_grants(&[], f.clock.now());
    assert_eq!(f.cache.stats().revocations, 2);
}

#[tokio::test]
async fn revoking_through_the_server_refuses_the_grants_tokens_at_once() {
    let f = fixture(TokenCacheConfig::for_server(&config())).await;
    let client = register_public_client(&f.server).await;
    let (code, verifier) = authorize_code(&f.server, &client).await;
    let tokens = f.server.token(code_request(&client, &code, &verifier), None).await.unwrap();
    let (code2, verifier2) = authorize_code(&f.server, &client).await;
    let other = f.server.token(code_request(&client, &code2, &verifier2), None).await.unwrap();
    for t in [&tokens.access_token, &other.access_token] {
        assert_eq!(f.call(t).await, StatusCode::OK);
        assert!(f.cached(t));
    }

    // RFC 7009: the client revokes its access token, and with it the grant.
    let form = TokenRequestForm::from_pairs([
        ("token", tokens.access_token.as_str()),
        ("token_type_hint", "access_token"),
        ("client_id", client.as_str()),
    ])
    .unwrap();
    f.server.revoke(form, None).await.unwrap();
    assert!(!f.cached(&tokens.access_token));
    assert_eq!(f.call(&tokens.access_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.verifier.verify(&tokens.access_token).await.unwrap_err().reason,
        Reason::GrantRevoked,
        "refused although its signature is still good"
    );
    assert_eq!(f.call(&other.access_token).await, StatusCode::OK, "another grant is untouched");

    // A replayed code revokes what it issued (RFC 6749 4.1.2): the cache hears of it too.
    assert!(f.server.token(code_request(&client, &code2, &verifier2), None).await.is_err());
    assert_eq!(f.call(&other.access_token).await, StatusCode::UNAUTHORIZED);
}
