#![doc = include_str!("../README.md")]

pub mod address;
mod budget;
pub mod discovery;
mod resolve;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use budget::HostBudget;
pub use reqwest::header::{HeaderMap, HeaderValue};
pub use reqwest::{Method, StatusCode};
pub use resolve::{Resolver, SystemResolver};

use budget::Budgets;
use resolve::{CheckedResolver, ResolveFailure};

/// Where a fetch may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Targets {
    /// Only globally reachable unicast addresses ([`address::is_public`]): for URLs a stranger
    /// chose, such as a `client_id`.
    Public,
    /// Any address: for URLs the operator configured (an authorization server on a private
    /// network is normal).
    Any,
}

/// Which URL schemes are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schemes {
    /// https only.
    Https,
    /// https, and plain http to a loopback host (`localhost`, `127.0.0.0/8`, `::1`): a server
    /// on the same machine, as in development.
    HttpsOrLoopbackHttp,
}

/// What a [`Fetcher`] may do. [`Default`] is [`FetchConfig::public_only`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchConfig {
    targets: Targets,
    schemes: Schemes,
    timeout: Duration,
    max_body: usize,
    host_budget: Option<HostBudget>,
    roots: Option<Vec<Vec<u8>>>,
    resolver: Arc<dyn Resolver>,
    user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self::public_only()
    }
}

impl FetchConfig {
    /// For URLs a stranger chose: https only, public addresses only, 5 s, 64 KiB,
    /// [`HostBudget::default`] per host.
    pub fn public_only() -> Self {
        Self {
            targets: Targets::Public,
            schemes: Schemes::Https,
            timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            host_budget: Some(HostBudget::default()),
            roots: None,
            resolver: Arc::new(SystemResolver),
            user_agent: concat!("oauth-fetch/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// For URLs the operator configured (an authorization server's metadata, keys and
    /// introspection endpoint; a deployment to check): https, or plain http on loopback; any
    /// address; 10 s; 256 KiB; no host budget.
    pub fn operator_urls() -> Self {
        Self {
            targets: Targets::Any,
            schemes: Schemes::HttpsOrLoopbackHttp,
            timeout: Duration::from_secs(10),
            max_body: 256 * 1024,
            host_budget: None,
            ..Self::public_only()
        }
    }

    /// The time limit of one fetch, from before the name is resolved to the last byte of the
    /// body.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body read.
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The per-host budget, if any.
    pub fn host_budget(&self) -> Option<HostBudget> {
        self.host_budget
    }

    /// The per-host budget, or none.
    #[must_use]
    pub fn with_host_budget(mut self, budget: Option<HostBudget>) -> Self {
        self.host_budget = budget;
        self
    }

    /// Trusts only this certificate (DER) as a root: a private CA, or a test server. Default:
    /// the system's roots.
    #[must_use]
    pub fn with_only_root_certificate(mut self, der: &[u8]) -> Self {
        self.roots = Some(vec![der.to_vec()]);
        self
    }

    /// Resolves names with `resolver` instead of the system's. Its answers are checked like
    /// the system's, and the connection goes to exactly the addresses it returned.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The `User-Agent` sent.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Lets a [`Targets::Public`] configuration reach any address. Default: off. Risk: with it
    /// on, whoever chooses the URL makes this server send requests into its own network; only
    /// for tests and closed networks.
    #[must_use]
    pub fn dangerous_allow_private_addresses(mut self, allow: bool) -> Self {
        self.targets = if allow { Targets::Any } else { Targets::Public };
        self
    }

    /// Where fetches may go.
    pub fn targets(&self) -> Targets {
        self.targets
    }

    /// The time limit of one fetch.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `url` parsed, if this configuration fetches it at all (its scheme, no user info, a
    /// host); otherwise why not. Nothing is resolved or sent.
    pub fn check_url(&self, url: &str) -> Result<url::Url, FetchError> {
        let parsed = url::Url::parse(url).map_err(|e| FetchError::Url(format!("'{url}' is not a URL: {e}")))?;
        let host = parsed.host().ok_or_else(|| FetchError::Url(format!("{url} has no host")))?;
        let scheme_ok = match (parsed.scheme(), self.schemes) {
            ("https", _) => true,
            ("http", Schemes::HttpsOrLoopbackHttp) => match host {
                url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            },
            _ => false,
        };
        if !scheme_ok {
            return Err(FetchError::Url(match self.schemes {
                Schemes::Https => format!("{url} must be https"),
                Schemes::HttpsOrLoopbackHttp => format!("{url} must be https (plain http only to loopback)"),
            }));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(FetchError::Url(format!("{} carries user info", parsed.origin().ascii_serialization())));
        }
        Ok(parsed)
    }
}

/// Why a fetch failed: the precise detail, for the operator (logs, flow events). Say less to
/// whoever chose the URL: the detail can describe a private network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Refused before anything was resolved or sent: not a URL, a scheme or user info refused.
    #[error("{0}")]
    Url(String),
    /// The host is, or resolves to, an address this configuration may not reach.
    #[error("{0}")]
    Refused(String),
    /// The host's budget is spent.
    #[error("{0}")]
    Budget(String),
    /// The name does not resolve.
    #[error("{0}")]
    Dns(String),
    /// No complete answer within the time limit (resolution included).
    #[error("no complete answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The body is larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Network(String),
    /// The HTTP client could not be built (TLS roots), or the request is malformed.
    #[error("{0}")]
    Setup(String),
}

/// One request: method, URL, headers, body, optional Basic credentials.
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    basic: Option<(String, String)>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values and credentials may be secret.
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(n, _)| *n).collect::<Vec<_>>())
            .field("basic", &self.basic.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self { method, url: url.into(), headers: Vec::new(), body: None, basic: None }
    }

    /// A GET of a JSON document (`Accept: application/json`).
    pub fn get_json(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url).header("accept", "application/json")
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Authenticates with HTTP Basic. Security: the password is sent to the URL's host; it is
    /// never printed by `Debug`.
    #[must_use]
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic = Some((user.into(), password.into()));
        self
    }
}

/// A response, its body read whole (within the limit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name`, or "" when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// The one outbound HTTP client: see the crate documentation. Clones share the connection
/// pool and the budgets.
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: FetchConfig,
    http: Result<reqwest::Client, String>,
    budgets: Option<Budgets>,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new(FetchConfig::default())
    }
}

impl Fetcher {
    /// A fetcher with `config`. A client that cannot be built (unreadable roots) makes every
    /// fetch fail with [`FetchError::Setup`].
    pub fn new(config: FetchConfig) -> Self {
        let http = build_client(&config);
        if let Err(e) = &http {
            tracing::error!(error = %e, "the outbound HTTP client cannot be built");
        }
        let budgets = config.host_budget.map(Budgets::new);
        Self { inner: Arc::new(Inner { config, http, budgets }) }
    }

    /// The configuration.
    pub fn config(&self) -> &FetchConfig {
        &self.inner.config
    }

    /// GETs the JSON document at `url`.
    pub async fn get_json(&self, url: &str) -> Result<Response, FetchError> {
        self.send(Request::get_json(url)).await
    }

    /// Sends `request` and reads the answer, within the configuration's limits. A redirect is
    /// returned as it is, never followed.
    pub async fn send(&self, request: Request) -> Result<Response, FetchError> {
        let limit = self.inner.config.timeout;
        match tokio::time::timeout(limit, self.send_unbounded(request)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(limit)),
        }
    }

    async fn send_unbounded(&self, request: Request) -> Result<Response, FetchError> {
        let config = &self.inner.config;
        let url = config.check_url(&request.url)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        if let Some(budgets) = &self.inner.budgets
            && !budgets.take(&host, Instant::now())
        {
            return Err(FetchError::Budget(format!("{host} was fetched from too many times in this window")));
        }
        // An address in the URL is not resolved, so it is checked here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if config.targets == Targets::Public
            && let Some(ip) = literal
            && let Some(range) = address::refusal(ip)
        {
            return Err(FetchError::Refused(format!("{ip} is not a public address ({range})")));
        }
        let http = self.inner.http.as_ref().map_err(|e| FetchError::Setup(e.clone()))?;
        let mut builder = http.request(request.method, url);
        for (name, value) in request.headers {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| FetchError::Setup(format!("the {name} header is not a valid header value")))?;
            builder = builder.header(name, value);
        }
        if let Some((user, password)) = request.basic {
            builder = builder.basic_auth(user, Some(password));
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut resp = builder.send().await.map_err(|e| classify(&e))?;
        let max = config.max_body;
        if let Some(len) = resp.content_length()
            && len > max as u64
        {
            return Err(FetchError::TooLarge(format!("the answer has {len} bytes, more than {max}")));
        }
        let (status, headers) = (resp.status(), resp.headers().clone());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(format!("the answer is larger than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, headers, body })
    }
}

fn build_client(config: &FetchConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        // A proxy resolves the name again, elsewhere: the addresses checked would not be the
        // ones reached. HTTPS_PROXY, ALL_PROXY and HTTP_PROXY are ignored.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(config.schemes == Schemes::Https)
        .dns_resolver(Arc::new(CheckedResolver::new(config.resolver.clone(), config.targets)))
        .user_agent(config.user_agent.clone());
    if let Some(roots) = &config.roots {
        let certs = roots
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a root certificate cannot be read: {e}"))?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| describe(&e))
}

/// The failure of a request, from the resolver's own verdict when it was the cause.
fn classify(e: &reqwest::Error) -> FetchError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(failure) = s.downcast_ref::<ResolveFailure>() {
            return failure.to_fetch_error();
        }
        source = s.source();
    }
    FetchError::Network(describe(e))
}

/// A request error with its causes: "error sending request" alone says nothing.
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}
