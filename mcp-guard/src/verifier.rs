//! Token verification: the [`TokenVerifier`] trait and the [`LocalVerifier`] of an embedded
//! authorization server.

use std::sync::Arc;

use async_trait::async_trait;
use oauth_core::AccessEvent;
use oauth_core::AccessTokenClaims;
use oauth_core::Reason;
use oauth_core::{AuthorizationServer, Clock, SystemClock, UnixTime};
use oauth_core::{ClientId, GrantId, ScopeSet, UserId};

use crate::cache::{TokenCache, TokenCacheConfig};
use crate::context::{AuthContext, Rejection};
use crate::upstream::UpstreamToken;

/// Checks a bearer token and says who presented it.
#[async_trait]
pub trait TokenVerifier: std::fmt::Debug + Send + Sync + 'static {
    /// The caller's identity, or why the token is refused.
    async fn verify(&self, token: &str) -> Result<AuthContext, Rejection>;

    /// Records an event of the protected resource (a first call, a refused token or call).
    /// Default: `tracing` only.
    async fn record(&self, event: AccessEvent) {
        event.event().trace();
    }

    /// The current time, for events.
    fn now(&self) -> UnixTime {
        SystemClock.now()
    }
}

/// Verifies tokens with the keys of an embedded [`AuthorizationServer`]: signature, `typ`,
/// issuer, audience (the canonical resource) and expiry. Events go to the server's event store.
///
/// Accepted tokens are cached by default (see [`crate::cache`] for why that is safe); share a
/// [`TokenCache`] that watches the server's revocations with [`Self::with_cache`], or turn it
/// off with [`Self::without_cache`].
#[derive(Debug, Clone)]
pub struct LocalVerifier {
    server: Arc<AuthorizationServer>,
    cache: Option<TokenCache>,
}

impl LocalVerifier {
    /// A verifier for tokens of `server`, with its own [`TokenCache`] sized by
    /// [`TokenCacheConfig::for_server`].
    pub fn new(server: Arc<AuthorizationServer>) -> Self {
        let cache = TokenCache::new(TokenCacheConfig::for_server(server.config()));
        Self { server, cache: Some(cache) }
    }

    /// Caches accepted tokens in `cache`, typically one that
    /// [watches the server's revocations](TokenCache::watch_revocations). Default: a cache of
    /// its own, which sees no revocation.
    #[must_use]
    pub fn with_cache(mut self, cache: TokenCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Checks every token's signature on every request. Default: cached.
    #[must_use]
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// The cache, if any: to invalidate tokens or grants, or to clear it.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    fn verify_uncached(&self, token: &str) -> Result<AuthContext, Rejection> {
        let claims = self.server.verify_access_token(token).map_err(|e| Rejection::new(e.reason(), e.to_string()))?;
        context_from_claims(claims)
    }
}

/// `token`'s context from `cache` when it holds it, else from `verify`, admitted to the cache
/// on success. `verify` is only polled on a miss.
pub(crate) async fn through_cache(
    cache: Option<&TokenCache>,
    token: &str,
    now: UnixTime,
    verify: impl Future<Output = Result<AuthContext, Rejection>>,
) -> Result<AuthContext, Rejection> {
    let Some(cache) = cache else {
        return verify.await;
    };
    let key = cache.key_of(token);
    if let Some(ctx) = cache.lookup(key, now) {
        return Ok(ctx);
    }
    let ctx = verify.await?;
    cache.admit_key(key, &ctx, now)?;
    Ok(ctx)
}

/// The caller described by a verified token's claims.
pub(crate) fn context_from_claims(claims: AccessTokenClaims) -> Result<AuthContext, Rejection> {
    let malformed = |what: &str| Rejection::new(Reason::TokenMalformed, format!("the token's {what} is malformed"));
    let grant_id = match claims.gid.as_deref() {
        Some(g) => Some(GrantId::parse(g).map_err(|_| malformed("gid"))?),
        None => None,
    };
    let subject = UserId::parse(&claims.sub).map_err(|_| malformed("sub"))?;
    let client_id = ClientId::parse(&claims.client_id).map_err(|_| malformed("client_id"))?;
    // The machine claim and the subject's namespace must agree, and a machine token names its
    // own client: no token can pass a machine off as a person or one client as another.
    let consistent = if claims.machine { subject == UserId::for_client(&client_id) } else { subject.is_user() };
    if !consistent {
        return Err(malformed("sub"));
    }
    Ok(AuthContext {
        subject,
        client_id,
        scopes: ScopeSet::parse(&claims.scope).map_err(|_| malformed("scope"))?,
        expires_at: UnixTime::from_secs(claims.exp),
        issuer: claims.iss.into(),
        token_id: claims.jti.into(),
        grant_id,
        upstream: None,
    })
}

#[async_trait]
impl TokenVerifier for LocalVerifier {
    async fn verify(&self, token: &str) -> Result<AuthContext, Rejection> {
        let mut ctx =
            through_cache(self.cache.as_ref(), token, self.server.now(), async { self.verify_uncached(token) }).await?;
        // A person's grant may hold upstream tokens; a machine's never does.
        if self.server.keeps_upstream_tokens()
            && ctx.subject.is_user()
            && let Some(grant) = &ctx.grant_id
        {
            ctx.upstream = Some(UpstreamToken::new(self.server.clone(), grant.clone(), ctx.client_id.clone()));
        }
        Ok(ctx)
    }

    async fn record(&self, event: AccessEvent) {
        self.server.record_access(event).await;
    }

    fn now(&self) -> UnixTime {
        self.server.now()
    }
}
