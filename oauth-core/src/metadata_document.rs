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

/// The client described by the document `body` fetched from `id`, checked as the module says,
/// and, when its declared `token_endpoint_auth_method` could not be honoured but the
/// `token_endpoint_auth_methods_supported` it also lists offers one that can (ChatGPT's
/// documents declare `private_key_jwt` and list `none`), the note of that fallback.
/// `private_key_jwt` is honoured when `accept_private_key_jwt` and the document carries
/// `jwks_uri` or `jwks`; a document client never has a secret.
pub fn client_from_document(
    id: &ClientId,
    body: &[u8],
    policy: &RedirectPolicy,
    accept_private_key_jwt: bool,
    now: UnixTime,
) -> Result<(Client, Option<String>), OAuthError> {
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
    let (method, fallback) = document_auth_method(&request, accept_private_key_jwt)?;
    let mut request = request;
    request.token_endpoint_auth_method = Some(method.as_str().into());
    let valid = request.validate(policy)?;
    let mut client = valid.into_client(id.clone(), None, now);
    client.origin = ClientOrigin::MetadataDocument;
    Ok((client, fallback))
}

/// The method a document client authenticates with: the one it declares when this server
/// can honour it, else one it lists among `token_endpoint_auth_methods_supported` that this
/// server can (`private_key_jwt` first, then `none`), with a note saying so.
fn document_auth_method(
    request: &RegistrationRequest,
    accept_private_key_jwt: bool,
) -> Result<(TokenEndpointAuthMethod, Option<String>), OAuthError> {
    use TokenEndpointAuthMethod as M;
    let has_keys = request.jwks.is_some() || request.jwks_uri.is_some();
    let usable = |m: &str| match m {
        "none" => Some(M::None),
        "private_key_jwt" if accept_private_key_jwt && has_keys => Some(M::PrivateKeyJwt),
        _ => None,
    };
    let declared = request.token_endpoint_auth_method.as_deref().unwrap_or("none");
    if let Some(m) = usable(declared) {
        return Ok((m, None));
    }
    let listed: Vec<&str> = match request.other.get("token_endpoint_auth_methods_supported") {
        Some(serde_json::Value::Array(items)) => items.iter().take(16).filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    let pick = ["private_key_jwt", "none"].into_iter().filter(|m| listed.contains(m)).find_map(usable);
    let declared = crate::params::clip(declared);
    let why = match declared.as_str() {
        "private_key_jwt" if !accept_private_key_jwt => "private_key_jwt is turned off on this server",
        "private_key_jwt" => "the document has neither jwks_uri nor jwks",
        "client_secret_post" | "client_secret_basic" => "a metadata document client has no secret",
        _ => "this server does not support it",
    };
    match pick {
        Some(m) => Ok((m, Some(format!("declared '{declared}' ({why}); using '{}', which it also lists", m.as_str())))),
        None => {
            let accepted =
                if accept_private_key_jwt { "'none' or 'private_key_jwt' (with jwks_uri)" } else { "'none'" };
            Err(OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method '{declared}' cannot be used for a metadata-document client ({why}); this server accepts {accepted}"
            )))
        }
    }
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
        parse_with(body, true).map(|(c, _)| c)
    }

    fn parse_with(body: &[u8], private_key_jwt: bool) -> Result<(Client, Option<String>), OAuthError> {
        let id = ClientId::parse(URL).unwrap();
        client_from_document(&id, body, &RedirectPolicy::default(), private_key_jwt, UnixTime::from_secs(9))
    }

    /// Shaped like ChatGPT's published documents: declares private_key_jwt, lists none too.
    fn chatgpt_shaped() -> Vec<u8> {
        doc(
            r#","token_endpoint_auth_method":"private_key_jwt","token_endpoint_auth_methods_supported":["none","private_key_jwt"],"token_endpoint_auth_signing_alg":"RS256","jwks_uri":"https://app.example/oauth/jwks.json""#,
        )
    }

    #[test]
    fn a_chatgpt_shaped_document_is_a_private_key_jwt_client_or_falls_back_to_none() {
        let (c, note) = parse_with(&chatgpt_shaped(), true).unwrap();
        assert_eq!(c.auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
        assert_eq!(c.jwks_uri.as_deref(), Some("https://app.example/oauth/jwks.json"));
        assert_eq!(c.assertion_alg.as_deref(), Some("RS256"));
        assert!(c.secret_hash.is_none() && !c.is_public() && note.is_none());
        let (c, note) = parse_with(&chatgpt_shaped(), false).unwrap();
        assert_eq!(c.auth_method, TokenEndpointAuthMethod::None);
        assert!(c.jwks_uri.is_none(), "keys are kept only for private_key_jwt");
        assert!(note.unwrap().contains("turned off"));
        // Without keys, private_key_jwt cannot be honoured; the listed none is used.
        let keyless = doc(
            r#","token_endpoint_auth_method":"private_key_jwt","token_endpoint_auth_methods_supported":["none","private_key_jwt"]"#,
        );
        let (c, note) = parse_with(&keyless, true).unwrap();
        assert_eq!(c.auth_method, TokenEndpointAuthMethod::None);
        assert!(note.unwrap().contains("neither jwks_uri nor jwks"));
        // A method nobody here speaks, with private_key_jwt listed: private_key_jwt.
        let listed = doc(
            r#","token_endpoint_auth_method":"tls_client_auth","token_endpoint_auth_methods_supported":["tls_client_auth","private_key_jwt"],"jwks_uri":"https://app.example/k.json""#,
        );
        assert_eq!(parse(&listed).unwrap().auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
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
        let cases: [(Vec<u8>, &str); 9] = [
            (doc(r#","token_endpoint_auth_method":"client_secret_post""#), "has no secret"),
            (doc(r#","token_endpoint_auth_method":"private_key_jwt""#), "neither jwks_uri nor jwks"),
            (
                doc(r#","token_endpoint_auth_method":"private_key_jwt","jwks_uri":"http://app.example/k.json""#),
                "jwks_uri must be an https URL",
            ),
            (
                doc(
                    r#","token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://app.example/k.json","token_endpoint_auth_signing_alg":"HS256""#,
                ),
                "'HS256' is not supported",
            ),
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
