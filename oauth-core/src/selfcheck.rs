//! The startup self-check.
//! Documented in the crate docs, "The startup self-check".

use std::fmt;

use crate::config::ServerConfig;
pub use crate::known_client::KnownClient;
use crate::metadata::ProtectedResourceMetadata;
use crate::types::{RedirectUri, ResourceUri};

/// A configuration problem and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// What is wrong.
    pub what: String,
    /// What to change.
    pub fix: String,
}

impl Problem {
    fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { what: what.into(), fix: fix.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.what, self.fix)
    }
}

/// Every problem of a deployment: `config`, the protected-resource metadata `prm` it serves,
/// and `served_mcp_url`, the URL where the MCP endpoint is actually mounted.
pub fn check(config: &ServerConfig, prm: &ProtectedResourceMetadata, served_mcp_url: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let resource = &config.resource;
    let issuer = config.issuer.as_str();

    if !is_https_or_loopback(resource) {
        problems.push(Problem::new(
            format!("the MCP resource URL '{resource}' is plain http outside loopback: clients refuse it and tokens would cross the network in clear"),
            "serve the endpoint over https (a TLS-terminating proxy or tunnel) and give its https URL as the public URL",
        ));
    }
    if served_mcp_url.trim_end_matches('/') != resource.as_str().trim_end_matches('/') {
        problems.push(Problem::new(
            format!("the MCP endpoint is mounted at '{served_mcp_url}' but tokens are issued for the resource '{resource}': the guard would refuse every token (audience mismatch)"),
            "mount the MCP endpoint at the resource URL's path, or configure the resource URL to be where the endpoint is mounted",
        ));
    }
    if prm.resource != resource.as_str() {
        problems.push(Problem::new(
            format!("the protected-resource metadata names the resource '{}' but tokens are issued for '{resource}'", prm.resource),
            "build the protected-resource metadata from the same resource URL as the authorization server's configuration",
        ));
    }
    match prm.authorization_servers.first() {
        Some(first) if first == issuer => {}
        Some(first) => problems.push(Problem::new(
            format!("the protected-resource metadata lists the authorization server '{first}', but the issuer is '{issuer}': clients compare them as exact strings (a trailing slash or http/https difference breaks discovery)"),
            format!("list the issuer exactly as '{issuer}' first in authorization_servers"),
        )),
        None => problems.push(Problem::new(
            "the protected-resource metadata lists no authorization server: clients cannot find where to sign in",
            format!("list the issuer '{issuer}' in authorization_servers"),
        )),
    }
    for client in &config.expected_clients {
        for uri in client.redirect_uris() {
            let refused = match RedirectUri::parse(uri) {
                Ok(parsed) => config.redirect_policy.check(&parsed, None).err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = refused {
                problems.push(Problem::new(
                    format!("{client} is expected, but its callback is refused: {why}"),
                    redirect_fix(uri),
                ));
            }
        }
        if client.connects_from_the_internet() && !is_public_https(resource) {
            problems.push(Problem::new(
                format!("{client} is expected, but it connects from its own servers on the internet and cannot reach '{resource}'"),
                "run behind an https tunnel or reverse proxy and give its public https URL as the public URL",
            ));
        }
    }
    problems
}

fn redirect_fix(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, _)) if !matches!(scheme, "http" | "https") => {
            format!("allow the private-use scheme '{scheme}' in the redirect policy")
        }
        _ => format!("allow '{uri}' in the redirect policy"),
    }
}

fn host_of(resource: &ResourceUri) -> Option<(String, String)> {
    let url = url::Url::parse(resource.as_str()).ok()?;
    Some((url.scheme().to_owned(), url.host_str()?.to_owned()))
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host == "[::1]"
}

fn is_https_or_loopback(resource: &ResourceUri) -> bool {
    host_of(resource).is_some_and(|(scheme, host)| scheme == "https" || is_loopback_host(&host))
}

fn is_public_https(resource: &ResourceUri) -> bool {
    host_of(resource).is_some_and(|(scheme, host)| scheme == "https" && !is_loopback_host(&host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RedirectPolicy;
    use crate::types::Issuer;

    fn config(public: &str) -> ServerConfig {
        ServerConfig::new(Issuer::parse(public).unwrap(), ResourceUri::parse(&format!("{public}/mcp")).unwrap())
    }

    fn problems(config: &ServerConfig, served: &str) -> Vec<String> {
        let prm = ProtectedResourceMetadata::new(&config.resource, &config.issuer);
        check(config, &prm, served).iter().map(Problem::to_string).collect()
    }

    #[test]
    fn a_consistent_deployment_has_no_problem() {
        let c = config("https://mcp.example.com")
            .with_expected_clients(KnownClient::ALL)
            .with_redirect_policy(RedirectPolicy::default().with_private_use_schemes(["cursor"]));
        assert!(problems(&c, "https://mcp.example.com/mcp").is_empty());
        let local = config("http://127.0.0.1:8080").with_expected_clients([KnownClient::ClaudeCode]);
        assert!(
            problems(&local, "http://127.0.0.1:8080/mcp/").is_empty(),
            "a trailing slash on the mount is the same endpoint"
        );
    }

    #[test]
    fn a_resource_that_is_not_where_the_endpoint_is_mounted_is_refused() {
        let p = problems(&config("https://mcp.example.com"), "https://mcp.example.com/api/mcp");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("audience mismatch"), "{p:?}");
    }

    #[test]
    fn plain_http_outside_loopback_is_refused() {
        let c = ServerConfig::new(
            Issuer::parse("https://mcp.example.com").unwrap(),
            ResourceUri::parse("http://mcp.example.com/mcp").unwrap(),
        );
        let p = problems(&c, "http://mcp.example.com/mcp");
        assert!(p.iter().any(|p| p.contains("plain http outside loopback")), "{p:?}");
    }

    #[test]
    fn an_issuer_the_metadata_does_not_name_exactly_is_refused() {
        let c = config("https://mcp.example.com");
        let mut prm = ProtectedResourceMetadata::new(&c.resource, &c.issuer);
        prm.authorization_servers = vec!["https://mcp.example.com/".into()];
        let p = check(&c, &prm, "https://mcp.example.com/mcp");
        assert_eq!(p.len(), 1);
        assert!(p[0].what.contains("exact strings") && p[0].fix.contains("'https://mcp.example.com'"), "{p:?}");
        prm.authorization_servers.clear();
        assert!(check(&c, &prm, "https://mcp.example.com/mcp")[0].what.contains("no authorization server"));
        prm = ProtectedResourceMetadata::new(&ResourceUri::parse("https://mcp.example.com/other").unwrap(), &c.issuer);
        assert!(check(&c, &prm, "https://mcp.example.com/mcp")[0].what.contains("names the resource"));
    }

    #[test]
    fn expected_clients_must_be_able_to_connect() {
        let c = config("http://127.0.0.1:8080").with_expected_clients([KnownClient::Claude, KnownClient::Cursor]);
        let p = problems(&c, "http://127.0.0.1:8080/mcp");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|p| p.contains("claude is expected") && p.contains("https tunnel")), "{p:?}");
        assert!(
            p.iter().any(|p| p.contains("cursor is expected") && p.contains("private-use scheme 'cursor'")),
            "{p:?}"
        );
    }

    #[test]
    fn known_clients_parse_by_name() {
        for c in KnownClient::ALL {
            assert_eq!(KnownClient::parse(c.as_str()), Some(c));
            for uri in c.redirect_uris() {
                assert!(RedirectUri::parse(uri).is_ok(), "{uri}");
            }
        }
        assert_eq!(KnownClient::parse(" Claude "), Some(KnownClient::Claude));
        assert_eq!(KnownClient::parse("netscape"), None);
    }
}
