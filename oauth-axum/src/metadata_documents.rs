//! [`HttpsDocumentFetcher`]: fetches Client ID Metadata Documents for
//! `AuthorizationServer::with_metadata_documents`, with the defences a server needs when
//! anyone on the internet can make it fetch a URL (server-side request forgery). The fetch
//! itself is [`oauth_fetch`]'s, configured for URLs a stranger chose:
//!
//! - https only, on any port; no user info in the URL; no proxy, whatever the environment says;
//! - the host is resolved inside the time budget, and every address must be globally
//!   reachable (the IANA special-purpose registries, multicast, IPv4 in its IPv6 forms:
//!   [`oauth_fetch::address`]); the connection then goes to exactly the addresses checked, so
//!   a second DNS answer cannot point it elsewhere;
//! - no redirects; 5 s for the whole exchange, resolution included; at most
//!   [`MAX_DOCUMENT_BYTES`];
//! - at most 10 fetches a minute per host ([`HostBudget`]), so that made-up `client_id` URLs
//!   on one host spend that host's budget, not the real clients'.
//!
//! A failure's detail (what the name resolved to, why the connection failed) goes to the log
//! and to the `registration` flow event; the person at the sign-in page is only told that the
//! document could not be fetched, so the page is no probe of the server's network.
//!
//! ```no_run
//! # async fn demo(server: oauth_core::AuthorizationServer) {
//! use std::sync::Arc;
//! use oauth_axum::metadata_documents::HttpsDocumentFetcher;
//!
//! let server = server.with_metadata_documents(Arc::new(HttpsDocumentFetcher::new()));
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oauth_core::{BucketRate, LimitStore};
use oauth_core::{DocumentFetchError, FetchedDocument, MAX_DOCUMENT_BYTES, MetadataDocumentFetcher};
pub use oauth_fetch::HostBudget;
pub use oauth_fetch::Resolver;
pub use oauth_fetch::address::is_public;
use oauth_fetch::{FetchConfig, Fetcher, Request};

/// Time limit of one fetch, resolution included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The SSRF-safe fetcher of Client ID Metadata Documents.
#[derive(Debug, Clone)]
pub struct HttpsDocumentFetcher {
    config: FetchConfig,
    fetcher: Fetcher,
    /// The per-host budget again, in the store every replica shares.
    shared: Option<Arc<dyn LimitStore>>,
}

impl Default for HttpsDocumentFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpsDocumentFetcher {
    /// A fetcher trusting the system's roots, refusing every address that is not globally
    /// reachable.
    pub fn new() -> Self {
        let config = FetchConfig::public_only()
            .with_timeout(TIMEOUT)
            .with_max_body(MAX_DOCUMENT_BYTES)
            .with_user_agent(concat!("oauth-axum/", env!("CARGO_PKG_VERSION")));
        Self { fetcher: Fetcher::new(config.clone()), config, shared: None }
    }

    fn with_config(self, config: FetchConfig) -> Self {
        Self { fetcher: Fetcher::new(config.clone()), config, shared: self.shared }
    }

    /// Also spends each host's budget in `store` (`Stores::limits`), which every replica
    /// shares, so that N replicas do not fetch from a host N times as often. Default: `None`,
    /// this process's budget only.
    #[must_use]
    pub fn with_shared_budget(mut self, store: Option<Arc<dyn LimitStore>>) -> Self {
        self.shared = store;
        self
    }

    /// Takes one fetch of `url`'s host from the shared budget; the refusal's detail when it is
    /// spent. A store that fails does not stop the fetch: this process's budget still holds.
    async fn spend_shared_budget(&self, url: &str) -> Result<(), DocumentFetchError> {
        let (Some(store), Some(budget)) = (&self.shared, self.config.host_budget()) else { return Ok(()) };
        let Some(host) = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)) else {
            return Ok(());
        };
        let window = budget.window.as_secs_f64().max(1.0);
        let rate = BucketRate::new(budget.per_window, f64::from(budget.per_window.max(1)) / window);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        match store.take_token(&fetch_budget_key(&host), rate, now_ms).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(DocumentFetchError::Fetch(format!(
                "{host} was fetched from too many times by the replicas together; retry in {} s",
                wait.as_secs().max(1)
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "the shared fetch budget could not be read; this process's applies");
                Ok(())
            }
        }
    }

    /// Trusts only this certificate (DER) as a root: for a private CA, or a test server.
    #[must_use]
    pub fn with_only_root_certificate(self, der: &[u8]) -> Self {
        let config = self.config.clone().with_only_root_certificate(der);
        self.with_config(config)
    }

    /// Fetches allowed per host. Default: [`HostBudget::default`] (10 a minute, 4096 hosts
    /// remembered).
    #[must_use]
    pub fn with_host_budget(self, budget: HostBudget) -> Self {
        let config = self.config.clone().with_host_budget(Some(budget));
        self.with_config(config)
    }

    /// Resolves names with `resolver` (its answers are checked and pinned like the system's).
    #[must_use]
    pub fn with_resolver(self, resolver: Arc<dyn Resolver>) -> Self {
        let config = self.config.clone().with_resolver(resolver);
        self.with_config(config)
    }

    /// Lets documents be fetched from loopback and private addresses. Default: off. Risk: with
    /// it on, anyone who can start an authorization request makes this server send requests
    /// into its own network; only for tests and closed networks.
    #[must_use]
    pub fn dangerous_allow_private_addresses(self, allow: bool) -> Self {
        let config = self.config.clone().dangerous_allow_private_addresses(allow);
        self.with_config(config)
    }

    async fn fetch_checked(&self, url: &str) -> Result<FetchedDocument, DocumentFetchError> {
        self.spend_shared_budget(url).await?;
        let resp =
            self.fetcher.send(Request::get_json(url)).await.map_err(|e| DocumentFetchError::Fetch(e.to_string()))?;
        let status = resp.status;
        if !status.is_success() {
            let location = status.is_redirection().then(|| resp.header("location").chars().take(512).collect());
            return Err(DocumentFetchError::Status { status: status.as_u16(), location });
        }
        let max_age = max_age(resp.header("cache-control"));
        Ok(FetchedDocument::new(resp.body, max_age))
    }
}

#[async_trait]
impl MetadataDocumentFetcher for HttpsDocumentFetcher {
    /// Fetches `url`; the error is the operator's detail (see the module documentation).
    async fn fetch(&self, url: &str) -> Result<FetchedDocument, DocumentFetchError> {
        let result = self.fetch_checked(url).await;
        match &result {
            Ok(doc) => tracing::info!(url, bytes = doc.body.len(), "fetched a client metadata document"),
            Err(why) => tracing::warn!(url, reason = %why, "could not fetch a client metadata document"),
        }
        result
    }
}

/// A host's key in the shared store: the name itself when it fits, else a hash of it.
fn fetch_budget_key(host: &str) -> String {
    if host.len() <= oauth_core::MAX_LIMIT_KEY - 6 {
        return format!("fetch:{host}");
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, host.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("fetch:{hex}")
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` count as zero.
pub(crate) fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_read() {
        assert_eq!(max_age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[tokio::test]
    async fn urls_that_are_not_public_https_are_refused_before_any_request() {
        let f = HttpsDocumentFetcher::new();
        for (url, why) in [
            ("http://example.com/client.json", "must be https"),
            ("https://user:pw@example.com/client.json", "user info"),
            ("https://127.0.0.1/client.json", "not a public address"),
            ("https://[::1]:8443/client.json", "not a public address"),
            ("https://localhost/client.json", "not a public address"),
        ] {
            let e = f.fetch(url).await.unwrap_err();
            assert!(e.to_string().contains(why), "{url}: {e}");
        }
    }
}
