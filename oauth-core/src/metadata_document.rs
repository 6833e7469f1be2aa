//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; the preferred registration of MCP 2025-11-25 and later).
//! Documented in the crate docs, "Client ID Metadata Documents".

use std::time::Duration;

use async_trait::async_trait;

use crate::client::{Client, ClientOrigin, TokenEndpointAuthMethod};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::policy::RedirectPolicy;
use crate::registration::RegistrationRequest;
use crate::types::ClientId;

/// Largest metadata document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Shortest time a document is cached, whatever its `Cache-Control` says.
pub const MIN_CACHE: Duration = Duration::from_secs(300);
/// Longest time a document is cached.
pub const MAX_CACHE: Duration = Duration::from_secs(86_400);
/// How long a document without `max-age` is cached.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(3600);

/// A fetched document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchedDocument {
    /// The response body.
    pub body: Vec<u8>,
    /// The response's `Cache-Control: max-age`, if any.
    pub max_age: Option<Duration>,
}

impl FetchedDocument {
    /// A document with an optional `max-age`.
    pub fn new(body: Vec<u8>, max_age: Option<Duration>) -> Self {
        Self { body, max_age }
    }

    /// How long to keep it: its `max-age` within [`MIN_CACHE`] and [`MAX_CACHE`].
    pub fn cache_for(&self) -> Duration {
        self.max_age.unwrap_or(DEFAULT_CACHE).clamp(MIN_CACHE, MAX_CACHE)
    }
}

/// Fetches the document at a `client_id` URL. An implementation must refuse anything but
/// https, refuse addresses that are not public (loopback, private, link-local, …), not follow
/// redirects, and bound the time and the size ([`MAX_DOCUMENT_BYTES`]). The error is the
/// precise detail for the operator: it goes to the log and the `registration` flow event, and
/// the requester is only told that the document could not be fetched. It must not carry
/// secrets.
#[async_trait]
pub trait MetadataDocumentFetcher: std::fmt::Debug + Send + Sync + 'static {
    /// Fetches `url`.
    async fn fetch(&self, url: &str) -> Result<FetchedDocument, DocumentFetchError>;
}

/// Why a metadata document could not be fetched: the operator's detail (see
/// [`MetadataDocumentFetcher`]), never told to the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentFetchError {
    /// No answer: the URL or its address was refused, or resolving, connecting, TLS, the time
    /// or the size limit failed; the text says which.
    Fetch(String),
    /// An answer other than success. A redirect carries its `Location`, which is not followed.
    Status {
        /// The status code.
        status: u16,
        /// Where a redirect pointed.
        location: Option<String>,
    },
}

impl std::fmt::Display for DocumentFetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fetch(why) => f.write_str(why),
            Self::Status { status, location: Some(to) } => {
                write!(f, "answered {status} (redirects are not followed) to {to}")
            }
            Self::Status { status, location: None } => write!(f, "answered {status}"),
        }
    }
}

impl std::error::Error for DocumentFetchError {}

/// Whether `id` has the form of a metadata document URL: https, a path, no fragment, no user
/// info.
pub fn is_document_url(id: &ClientId) -> bool {
    id.is_metadata_document_url()
        && url::Url::parse(id.as_str())
            .is_ok_and(|u| u.fragment().is_none() && u.username().is_empty() && u.password().is_none())
}

/// The client described by the document `body` fetched from `id`, checked as the module says.
pub fn client_from_document(
    id: &ClientId,
    body: &[u8],
    policy: &RedirectPolicy,
    now: UnixTime,
) -> Result<Client, OAuthError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(OAuthError::invalid_client_metadata(format!(
            "the client's metadata document is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let request = RegistrationRequest::from_json(body).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("the client's metadata document: {}", e.description()))
    })?;
    match request.other.get("client_id").and_then(|v| v.as_str()) {
        Some(stated) if stated == id.as_str() => {}
        Some(stated) => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "the metadata document at {id} names client_id '{stated}'; it must be exactly its own URL"
            )));
        }
        None => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "the metadata document at {id} has no client_id; it must state its own URL"
            )));
        }
    }
    if request.other.contains_key("client_secret") || request.other.contains_key("client_secret_expires_at") {
        return Err(OAuthError::invalid_client_metadata(
            "a metadata document must not carry a client secret: it is public",
        ));
    }
    let method = request.token_endpoint_auth_method.as_deref().unwrap_or("none");
    if method != TokenEndpointAuthMethod::None.as_str() {
        return Err(OAuthError::invalid_client_metadata(format!(
            "token_endpoint_auth_method '{method}' is not supported for metadata-document clients; this server accepts only 'none'"
        )));
    }
    let mut request = request;
    request.token_endpoint_auth_method = Some("none".into());
    let valid = request.validate(policy)?;
    let mut client = valid.into_client(id.clone(), None, now);
    client.origin = ClientOrigin::MetadataDocument;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://app.example/oauth/client.json";

    fn doc(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"client_id":"{URL}","client_name":"App","redirect_uris":["http://localhost:7777/callback"]{extra}}}"#
        )
        .into_bytes()
    }

    fn parse(body: &[u8]) -> Result<Client, OAuthError> {
        client_from_document(&ClientId::parse(URL).unwrap(), body, &RedirectPolicy::default(), UnixTime::from_secs(9))
    }

    #[test]
    fn a_document_becomes_a_public_client() {
        let c = parse(&doc("")).unwrap();
        assert_eq!(
            (c.origin, c.auth_method, c.display_name()),
            (ClientOrigin::MetadataDocument, TokenEndpointAuthMethod::None, "App")
        );
        assert!(c.secret_hash.is_none());
        assert_eq!(c.redirect_uris[0].as_str(), "http://localhost:7777/callback");
        assert!(parse(&doc(r#","token_endpoint_auth_method":"none""#)).is_ok());
    }

    #[test]
    fn documents_that_break_the_rules_are_refused() {
        let cases: [(Vec<u8>, &str); 7] = [
            (doc(r#","token_endpoint_auth_method":"client_secret_post""#), "accepts only 'none'"),
            (doc(r#","token_endpoint_auth_method":"private_key_jwt""#), "accepts only 'none'"),
            (doc(r#","client_secret":"s3cret""#), "must not carry a client secret"),
            (
                br#"{"client_id":"https://app.example/other.json","redirect_uris":["http://localhost:7777/callback"]}"#
                    .to_vec(),
                "must be exactly its own URL",
            ),
            (br#"{"client_name":"x","redirect_uris":["https://a.example/cb"]}"#.to_vec(), "has no client_id"),
            (
                format!(r#"{{"client_id":"{URL}","redirect_uris":["http://evil.example/cb"]}}"#).into_bytes(),
                "plain http",
            ),
            (vec![b' '; MAX_DOCUMENT_BYTES + 1], "larger than"),
        ];
        for (body, why) in cases {
            let e = parse(&body).unwrap_err();
            assert!(e.description().contains(why), "{why}: {}", e.description());
        }
    }

    #[test]
    fn document_urls_and_cache_lifetimes() {
        for (s, ok) in [
            (URL, true),
            ("https://app.example/", false),
            ("http://app.example/client.json", false),
            ("https://user:pw@app.example/client.json", false),
            ("mcp_abc", false),
        ] {
            assert_eq!(is_document_url(&ClientId::parse(s).unwrap()), ok, "{s}");
        }
        let d = |age: Option<u64>| FetchedDocument::new(Vec::new(), age.map(Duration::from_secs)).cache_for();
        assert_eq!(d(None), DEFAULT_CACHE);
        assert_eq!(d(Some(0)), MIN_CACHE);
        assert_eq!(d(Some(10 * 86_400)), MAX_CACHE);
        assert_eq!(d(Some(900)), Duration::from_secs(900));
    }
}
