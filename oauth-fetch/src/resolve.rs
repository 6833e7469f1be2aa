//! Name resolution inside the fetch: the resolver's answer is checked against the targets and
//! handed to the connector as the only addresses to try, so what was checked is what is
//! reached (no second resolution, no proxy).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;

use crate::{FetchError, Targets, address};

/// Resolves a host name to addresses.
#[async_trait]
pub trait Resolver: fmt::Debug + Send + Sync + 'static {
    /// The addresses of `host`.
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system's resolver (`getaddrinfo`, on tokio's blocking pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect())
    }
}

/// Why resolution ended the request; found again in the request error's causes.
#[derive(Debug)]
pub(crate) enum ResolveFailure {
    Dns(String),
    Refused(String),
}

impl ResolveFailure {
    pub(crate) fn to_fetch_error(&self) -> FetchError {
        match self {
            Self::Dns(d) => FetchError::Dns(d.clone()),
            Self::Refused(d) => FetchError::Refused(d.clone()),
        }
    }
}

impl fmt::Display for ResolveFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(d) | Self::Refused(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for ResolveFailure {}

/// The resolver reqwest's connector uses.
pub(crate) struct CheckedResolver {
    resolver: Arc<dyn Resolver>,
    targets: Targets,
}

impl CheckedResolver {
    pub(crate) fn new(resolver: Arc<dyn Resolver>, targets: Targets) -> Self {
        Self { resolver, targets }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (resolver, targets) = (self.resolver.clone(), self.targets);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = if host.eq_ignore_ascii_case("localhost") {
                // RFC 6761 6.3: localhost is loopback, whatever a resolver says.
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
            } else {
                resolver
                    .resolve(&host)
                    .await
                    .map_err(|e| ResolveFailure::Dns(format!("{host} does not resolve: {e}")))?
            };
            if ips.is_empty() {
                return Err(ResolveFailure::Dns(format!("{host} does not resolve")).into());
            }
            if targets == Targets::Public
                && let Some((ip, range)) = ips.iter().find_map(|ip| address::refusal(*ip).map(|r| (ip, r)))
            {
                return Err(ResolveFailure::Refused(format!(
                    "{host} resolves to {ip}, which is not a public address ({range})"
                ))
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
