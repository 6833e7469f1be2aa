//! The requests of upstream sign-in ([`oauth_core::upstream`]) over [`oauth_fetch`], with the
//! rules for URLs the operator configured: https (plain http only to loopback, for
//! development), any address (the provider is the operator's choice), no proxy, redirects
//! never followed, 10 s per request including DNS, [`MAX_UPSTREAM_ANSWER`] per answer.

use async_trait::async_trait;
use oauth_core::DocumentFetchError;
use oauth_core::upstream::{MAX_UPSTREAM_ANSWER, UpstreamAnswer, UpstreamHttp};
use oauth_fetch::{FetchConfig, Fetcher, Method, Request};

/// [`UpstreamHttp`] over the project's one outbound client.
#[derive(Debug, Clone)]
pub struct FetchUpstream {
    fetcher: Fetcher,
}

impl Default for FetchUpstream {
    fn default() -> Self {
        Self::new()
    }
}

impl FetchUpstream {
    /// The operator-URL rules.
    pub fn new() -> Self {
        Self::with_config(FetchConfig::operator_urls())
    }

    /// Trusts only the certificate authority `der` (tests with a CA of their own).
    #[must_use]
    pub fn with_only_root_certificate(self, der: &[u8]) -> Self {
        Self::with_config(FetchConfig::operator_urls().with_only_root_certificate(der))
    }

    fn with_config(config: FetchConfig) -> Self {
        Self { fetcher: Fetcher::new(config.with_max_body(MAX_UPSTREAM_ANSWER)) }
    }

    async fn send(&self, request: Request) -> Result<UpstreamAnswer, DocumentFetchError> {
        // A redirect is an answer like any other (never followed): the caller refuses it.
        match self.fetcher.send(request).await {
            Ok(r) => Ok(UpstreamAnswer { status: r.status.as_u16(), body: r.body }),
            Err(e) => Err(DocumentFetchError::Fetch(e.to_string())),
        }
    }
}

#[async_trait]
impl UpstreamHttp for FetchUpstream {
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<UpstreamAnswer, DocumentFetchError> {
        let mut request = Request::get_json(url);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request).await
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<UpstreamAnswer, DocumentFetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut request = Request::new(Method::POST, url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        if let Some((user, password)) = basic {
            // RFC 6749 2.3.1: each part form-urlencoded before Basic encoding.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(enc(user), enc(password));
        }
        self.send(request).await
    }
}
