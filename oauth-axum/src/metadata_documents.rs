//! [`HttpsDocumentFetcher`]: fetches Client ID Metadata Documents for
//! `AuthorizationServer::with_metadata_documents`, with the defences a server needs when
//! anyone on the internet can make it fetch a URL (server-side request forgery):
//!
//! - https only, on any port; no user info in the URL;
//! - the host is resolved first, and every address must be public: loopback, private,
//!   link-local, shared (CGNAT), multicast, documentation and unspecified ranges are refused,
//!   IPv4-mapped IPv6 included; the connection then goes to exactly the addresses checked, so a
//!   second DNS answer cannot point it elsewhere;
//! - no redirects; 5 s for the whole exchange; at most
//!   [`MAX_DOCUMENT_BYTES`];
//! - at most 60 fetches a minute in all, so that made-up `client_id` URLs cannot turn the
//!   server into a crawler.
//!
//! ```no_run
//! # async fn demo(server: oauth_core::AuthorizationServer) {
//! use std::sync::Arc;
//! use oauth_axum::metadata_documents::HttpsDocumentFetcher;
//!
//! let server = server.with_metadata_documents(Arc::new(HttpsDocumentFetcher::new()));
//! # }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oauth_core::metadata_document::{FetchedDocument, MAX_DOCUMENT_BYTES, MetadataDocumentFetcher};

/// Time limit of one fetch, resolution included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Fetches allowed per minute, in all.
const FETCHES_PER_MINUTE: u32 = 60;

/// The SSRF-safe fetcher of Client ID Metadata Documents.
#[derive(Debug)]
pub struct HttpsDocumentFetcher {
    extra_roots: Vec<reqwest::Certificate>,
    allow_private: bool,
    budget: Mutex<(Instant, u32)>,
}

impl Default for HttpsDocumentFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpsDocumentFetcher {
    /// A fetcher trusting the system's roots, refusing every non-public address.
    pub fn new() -> Self {
        Self { extra_roots: Vec::new(), allow_private: false, budget: Mutex::new((Instant::now(), 0)) }
    }

    /// Trusts only this certificate (DER) as a root: for a private CA, or a test server.
    #[must_use]
    pub fn with_only_root_certificate(mut self, der: &[u8]) -> Self {
        if let Ok(cert) = reqwest::Certificate::from_der(der) {
            self.extra_roots = vec![cert];
        }
        self
    }

    /// Lets documents be fetched from loopback and private addresses. Default: off. Risk: with
    /// it on, anyone who can start an authorization request makes this server send requests
    /// into its own network; only for tests and closed networks.
    #[must_use]
    pub fn dangerous_allow_private_addresses(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    fn take_budget(&self) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.0.elapsed() >= Duration::from_secs(60) {
            *b = (Instant::now(), 0);
        }
        if b.1 >= FETCHES_PER_MINUTE {
            return false;
        }
        b.1 += 1;
        true
    }

    async fn fetch_checked(&self, url: &str) -> Result<FetchedDocument, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if parsed.scheme() != "https" {
            return Err("only https URLs are fetched".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("the URL carries user info".into());
        }
        let host = parsed.host_str().ok_or("the URL has no host")?.to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let lookup_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup_host.as_str(), port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} does not resolve"));
        }
        if !self.allow_private
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(format!("{host} resolves to {}, which is not a public address", bad.ip()));
        }
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .resolve_to_addrs(&host, &addrs)
            .user_agent(concat!("oauth-axum/", env!("CARGO_PKG_VERSION")));
        if !self.extra_roots.is_empty() {
            builder = builder.tls_certs_only(self.extra_roots.clone());
        }
        let http = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut resp =
            http.get(parsed.as_str()).header("accept", "application/json").send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
            return Err(if status.is_redirection() {
                format!("answered {status} (redirects are not followed) to {location}")
            } else {
                format!("answered {status}")
            });
        }
        let max_age = resp.headers().get("cache-control").and_then(|v| v.to_str().ok()).and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchedDocument::new(body, max_age))
    }
}

#[async_trait]
impl MetadataDocumentFetcher for HttpsDocumentFetcher {
    async fn fetch(&self, url: &str) -> Result<FetchedDocument, String> {
        if !self.take_budget() {
            tracing::warn!(url, "metadata document fetch refused: more than {FETCHES_PER_MINUTE} a minute");
            return Err("this server is fetching too many client metadata documents; try again in a minute".into());
        }
        let result = self.fetch_checked(url).await;
        match &result {
            Ok(doc) => tracing::info!(url, bytes = doc.body.len(), "fetched a client metadata document"),
            Err(why) => tracing::warn!(url, reason = %why, "could not fetch a client metadata document"),
        }
        result
    }
}

/// A request error with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` count as zero.
fn max_age(value: &str) -> Option<Duration> {
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

/// Whether `ip` is a public unicast address: what a metadata document may be fetched from.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: could reach private IPv4
        || s[0] == 0x2002) // 6to4: could reach private IPv4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_fetched_from() {
        for (ip, public) in [
            ("93.184.216.34", true),
            ("2606:2800:220:1:248:1893:25c8:1946", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false), // cloud metadata
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("::1", false),
            ("::", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("64:ff9b::a00:1", false),
            ("2002:a00:1::", false),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

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
            ("http://example.com/client.json", "only https"),
            ("https://user:pw@example.com/client.json", "user info"),
            ("https://127.0.0.1/client.json", "not a public address"),
            ("https://[::1]:8443/client.json", "not a public address"),
            ("https://localhost/client.json", "not a public address"),
        ] {
            let e = f.fetch(url).await.unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
