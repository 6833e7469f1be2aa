//! Authorization server discovery (RFC 8414), as a client does it: the metadata document of
//! an issuer, from `/.well-known/oauth-authorization-server` with the issuer's path inserted
//! after it (RFC 8414 3.1), else from OpenID Connect Discovery's
//! `{issuer}/.well-known/openid-configuration`, and refused unless it states exactly that
//! issuer (RFC 8414 3.3: otherwise the document may be someone else's).
//!
//! ```
//! use oauth_fetch::discovery::metadata_urls;
//!
//! let [rfc8414, oidc] = metadata_urls("https://auth.example.com/tenant").unwrap();
//! assert_eq!(rfc8414, "https://auth.example.com/.well-known/oauth-authorization-server/tenant");
//! assert_eq!(oidc, "https://auth.example.com/tenant/.well-known/openid-configuration");
//! ```

use crate::{FetchError, Fetcher};

/// A discovered metadata document.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Discovered {
    /// Where it was read.
    pub url: String,
    /// The document, whose `issuer` is the one asked for.
    pub document: serde_json::Value,
}

/// Why discovery failed: each names the URL it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer is not an absolute URL, or has a query or fragment (RFC 8414 2).
    #[error("'{0}' is not an issuer identifier: an https URL without query or fragment")]
    NotAnIssuer(String),
    /// Neither document could be fetched; the error of the RFC 8414 one.
    #[error("{url}: {error}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        error: FetchError,
    },
    /// The document was answered with a status other than 200.
    #[error("{url}: answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer is not a JSON object.
    #[error("{url}: not a JSON metadata document ({reason})")]
    NotJson {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The document states another issuer.
    #[error("{url}: the metadata's issuer is '{stated}', not '{expected}'")]
    IssuerMismatch {
        /// The URL.
        url: String,
        /// What it states.
        stated: String,
        /// The issuer asked for.
        expected: String,
    },
}

impl DiscoveryError {
    /// The URL the failure concerns (the issuer itself when it is not one).
    pub fn url(&self) -> &str {
        match self {
            Self::NotAnIssuer(url) => url,
            Self::Fetch { url, .. } | Self::Status { url, .. } | Self::NotJson { url, .. } => url,
            Self::IssuerMismatch { url, .. } => url,
        }
    }
}

/// The two places `issuer`'s metadata may be: RFC 8414's, then OpenID Connect Discovery's.
pub fn metadata_urls(issuer: &str) -> Result<[String; 2], DiscoveryError> {
    let not_an_issuer = || DiscoveryError::NotAnIssuer(issuer.chars().take(256).collect());
    let url = url::Url::parse(issuer).map_err(|_| not_an_issuer())?;
    if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
        return Err(not_an_issuer());
    }
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Ok([
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

/// `issuer`'s metadata, fetched with `fetcher` and checked: see the [module docs](self). The
/// OpenID document is tried only when the RFC 8414 one cannot be read at all; a document
/// that states another issuer is refused, wherever it came from.
pub async fn discover(fetcher: &Fetcher, issuer: &str) -> Result<Discovered, DiscoveryError> {
    let [primary, oidc] = metadata_urls(issuer)?;
    let found = match fetch_document(fetcher, &primary).await {
        Ok(found) => found,
        Err(first) => fetch_document(fetcher, &oidc).await.map_err(|_| first)?,
    };
    let stated = found.document.get("issuer").and_then(serde_json::Value::as_str).unwrap_or_default();
    if stated != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            url: found.url,
            stated: stated.chars().take(256).collect(),
            expected: issuer.to_owned(),
        });
    }
    Ok(found)
}

async fn fetch_document(fetcher: &Fetcher, url: &str) -> Result<Discovered, DiscoveryError> {
    let resp = fetcher.get_json(url).await.map_err(|error| DiscoveryError::Fetch { url: url.to_owned(), error })?;
    if resp.status != crate::StatusCode::OK {
        return Err(DiscoveryError::Status { url: url.to_owned(), status: resp.status.as_u16() });
    }
    let document: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| DiscoveryError::NotJson { url: url.to_owned(), reason: e.to_string() })?;
    if !document.is_object() {
        return Err(DiscoveryError::NotJson { url: url.to_owned(), reason: "not an object".into() });
    }
    Ok(Discovered { url: url.to_owned(), document })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_paths_follow_rfc_8414_and_openid_discovery() {
        let table = [
            (
                "https://a.example",
                "https://a.example/.well-known/oauth-authorization-server",
                "https://a.example/.well-known/openid-configuration",
            ),
            (
                "https://a.example/",
                "https://a.example/.well-known/oauth-authorization-server",
                "https://a.example/.well-known/openid-configuration",
            ),
            (
                "https://a.example:8443/t/1",
                "https://a.example:8443/.well-known/oauth-authorization-server/t/1",
                "https://a.example:8443/t/1/.well-known/openid-configuration",
            ),
        ];
        for (issuer, rfc8414, oidc) in table {
            assert_eq!(metadata_urls(issuer).unwrap(), [rfc8414.to_owned(), oidc.to_owned()], "{issuer}");
        }
    }

    #[test]
    fn what_is_not_an_issuer_is_refused_before_any_fetch() {
        for issuer in ["", "auth.example", "https://a.example/?tenant=1", "https://a.example/#x", "mailto:a@b"] {
            assert!(matches!(metadata_urls(issuer), Err(DiscoveryError::NotAnIssuer(_))), "{issuer}");
        }
    }
}
