//! Prometheus metrics: what an operator graphs and alerts on, read at each scrape.
//!
//! - `mcp_oauth_requests_total{route, status}`: requests to the authorization server's
//!   endpoints and pages, by route template (never the raw path, so the label set is bounded)
//!   and status code;
//! - `mcp_oauth_flow_events_total{step, reason}`: every flow event, by step and by the stable
//!   reason of a failure (`ok` for a success): what `diagnose` explains one by one;
//! - `mcp_oauth_token_checks_total{result}`: bearer tokens checked at the MCP endpoint,
//!   `cached` (answered from the token cache) or `cold` (verified in full);
//! - `mcp_oauth_revocations_followed_total` and `mcp_oauth_revocation_feed_age_seconds`: grants
//!   learned revoked from the store's feed (other replicas, `mcp-auth`), and how long since the
//!   feed was last read: past the sync interval plus a second, revocations made elsewhere are
//!   late here;
//! - `mcp_oauth_db_connections{state}` and `mcp_oauth_db_connections_max`: the database pool,
//!   `in_use` and `idle`.
//!
//! Nothing secret is in a label: routes are templates, reasons are fixed words.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mcp_guard::TokenCache;
use oauth_core::{Clock, EventQuery, EventStore, FlowEvent, FlowStep, Reason, StoreResult, UnixTime};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// How the database pool is used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolUse {
    /// Connections open, in use or idle.
    pub open: u32,
    /// Of those, idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolUse {
    /// `open` connections of which `idle` are idle, at most `max`.
    pub fn new(open: u32, idle: u32, max: u32) -> Self {
        Self { open, idle: idle.min(open), max }
    }
}

type PoolProbe = Arc<dyn Fn() -> PoolUse + Send + Sync>;

/// The metrics of one server: clones share them. [`Metrics::render`] writes the text format a
/// Prometheus scrape reads.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: Mutex<HashMap<(String, u16), u64>>,
    events: Mutex<HashMap<(FlowStep, Option<Reason>), u64>>,
    cache: Mutex<Option<TokenCache>>,
    pool: Mutex<Option<PoolProbe>>,
    clock: Mutex<Option<Arc<dyn Clock>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the database pool at each scrape through `probe`.
    pub fn with_pool(self, probe: impl Fn() -> PoolUse + Send + Sync + 'static) -> Self {
        *lock(&self.inner.pool) = Some(Arc::new(probe));
        self
    }

    pub(crate) fn watch_cache(&self, cache: TokenCache, clock: Arc<dyn Clock>) {
        *lock(&self.inner.cache) = Some(cache);
        *lock(&self.inner.clock) = Some(clock);
    }

    /// `events` counted here as they are written.
    pub(crate) fn count_events(&self, events: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
        Arc::new(CountedEvents { inner: events, metrics: self.clone() })
    }

    fn count(&self, event: &FlowEvent) {
        *lock(&self.inner.events).entry((event.step, event.reason)).or_default() += 1;
    }

    fn count_request(&self, route: &str, status: u16) {
        let mut requests = lock(&self.inner.requests);
        if let Some(n) = requests.get_mut(&(route.to_owned(), status)) {
            *n += 1;
        } else {
            requests.insert((route.to_owned(), status), 1);
        }
    }

    /// The metrics in the Prometheus text exposition format (OpenMetrics).
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            // Writing to a String cannot fail; an encoder error would be a bug, not data.
            out.clear();
            let _ = writeln!(out, "# the metrics could not be encoded");
        }
        out
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let requests: Vec<((String, u16), u64)> =
            lock(&self.inner.requests).iter().map(|(k, v)| (k.clone(), *v)).collect();
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "mcp_oauth_requests",
            "Requests to the authorization server's endpoints and pages, by route and status.",
            None,
            counter.metric_type(),
        )?;
        for ((route, status), n) in requests {
            let status = status.to_string();
            let labels = [("route", route.as_str()), ("status", status.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }

        let events: Vec<((FlowStep, Option<Reason>), u64)> =
            lock(&self.inner.events).iter().map(|(k, v)| (*k, *v)).collect();
        let mut family = encoder.encode_descriptor(
            "mcp_oauth_flow_events",
            "Flow events, by step and by the reason of a failure ('ok' for a success).",
            None,
            counter.metric_type(),
        )?;
        for ((step, reason), n) in events {
            let labels = [("step", step.as_str()), ("reason", reason.map_or("ok", Reason::as_str))];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }

        let cache = lock(&self.inner.cache).clone();
        if let Some(cache) = cache {
            let stats = cache.stats();
            let mut family = encoder.encode_descriptor(
                "mcp_oauth_token_checks",
                "Bearer tokens checked at the MCP endpoint: answered from the cache, or verified in full.",
                None,
                counter.metric_type(),
            )?;
            ConstCounter::new(stats.hits).encode(family.encode_family(&[("result", "cached")])?)?;
            ConstCounter::new(stats.misses).encode(family.encode_family(&[("result", "cold")])?)?;
            let followed = encoder.encode_descriptor(
                "mcp_oauth_revocations_followed",
                "Grants learned revoked from the store's revocation feed (other replicas, the command line).",
                None,
                counter.metric_type(),
            )?;
            ConstCounter::new(stats.followed).encode(followed)?;
            let now = lock(&self.inner.clock).as_ref().map(|c| c.now());
            if let (Some(read), Some(now)) = (stats.feed_read_at, now) {
                let age = ConstGauge::new(now.seconds_since(read).max(0));
                let gauge = encoder.encode_descriptor(
                    "mcp_oauth_revocation_feed_age_seconds",
                    "Seconds since the revocation feed was last read without error.",
                    None,
                    age.metric_type(),
                )?;
                age.encode(gauge)?;
            }
        }

        let pool = lock(&self.inner.pool).clone();
        if let Some(probe) = pool {
            let used = probe();
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "mcp_oauth_db_connections",
                "Database connections open, by state.",
                None,
                gauge.metric_type(),
            )?;
            ConstGauge::new(i64::from(used.open - used.idle)).encode(family.encode_family(&[("state", "in_use")])?)?;
            ConstGauge::new(i64::from(used.idle)).encode(family.encode_family(&[("state", "idle")])?)?;
            let max = encoder.encode_descriptor(
                "mcp_oauth_db_connections_max",
                "The most connections the database pool opens.",
                None,
                gauge.metric_type(),
            )?;
            ConstGauge::new(i64::from(used.max)).encode(max)?;
        }
        Ok(())
    }
}

/// `GET /metrics` behind `token`: 401 without it.
pub(crate) fn router(metrics: Metrics, token: oauth_axum::AdminToken) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse as _;
    let serve = move |headers: HeaderMap| {
        let (metrics, token) = (metrics.clone(), token.clone());
        async move {
            if !token.admits(&headers) {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "the admin token is required\n",
                )
                    .into_response();
            }
            (
                [
                    (header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                metrics.render(),
            )
                .into_response()
        }
    };
    axum::Router::new().route("/metrics", axum::routing::get(serve))
}

/// Counts each request by its route template and status.
pub(crate) async fn count_requests(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics.count_request(route.as_deref().unwrap_or("unmatched"), response.status().as_u16());
    response
}

/// The event store, counting what is written through it.
#[derive(Debug)]
struct CountedEvents {
    inner: Arc<dyn EventStore>,
    metrics: Metrics,
}

#[async_trait]
impl EventStore for CountedEvents {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        self.metrics.count(event);
        self.inner.record_event(event).await
    }

    async fn record_events(&self, events: &[FlowEvent]) -> StoreResult<()> {
        for event in events {
            self.metrics.count(event);
        }
        self.inner.record_events(events).await
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        self.inner.events(query).await
    }

    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64> {
        self.inner.sweep_events(before).await
    }
}
