//! Server-rendered pages: sign-in, consent, and errors shown to the user. Askama escapes every
//! value; no page needs JavaScript, and none may be framed.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Template)]
#[template(path = "signin.html")]
pub(crate) struct SignIn<'a> {
    pub(crate) client_name: &'a str,
    pub(crate) redirect_host: &'a str,
    pub(crate) action: &'a str,
    pub(crate) pending: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) username: &'a str,
    pub(crate) error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub(crate) struct Consent<'a> {
    pub(crate) client_name: &'a str,
    /// For a Client ID Metadata Document client: the host that published its name, the one
    /// part of its identity that is not self-declared.
    pub(crate) published_by: Option<&'a str>,
    pub(crate) redirect_host: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) scopes: Vec<&'a str>,
    pub(crate) user_name: &'a str,
    pub(crate) action: &'a str,
    /// Where "Not you? Sign out" posts.
    pub(crate) sign_out: &'a str,
    pub(crate) pending: &'a str,
    pub(crate) csrf: &'a str,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
pub(crate) struct SignedOut {}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage<'a> {
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
    pub(crate) code: &'a str,
}

/// Headers every page carries: no caching, no framing, no scripts, no referrer.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// Renders a page with the security headers.
pub(crate) fn page(status: StatusCode, template: &impl Template, set_cookies: &[String]) -> Response {
    let body = match template.render() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// An error page.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str, code: &str) -> Response {
    page(status, &ErrorPage { title, message, code }, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(published_by: Option<&str>) -> String {
        Consent {
            client_name: "Claude Code",
            published_by,
            redirect_host: "localhost",
            resource: "https://mcp.example.com/mcp",
            scopes: vec!["mcp:tools"],
            user_name: "alice",
            action: "/authorize/consent",
            sign_out: "/authorize/sign-out",
            pending: "p",
            csrf: "c",
        }
        .render()
        .unwrap()
    }

    #[test]
    fn a_metadata_document_client_shows_who_published_its_name() {
        let page = consent(Some("claude.ai"));
        assert!(page.contains("describes itself at <code>claude.ai</code>"), "{page}");
        assert!(!consent(None).contains("describes itself"));
    }

    #[test]
    fn the_consent_page_offers_sign_out_with_its_csrf_token() {
        let page = consent(None);
        let form = &page[page.find("class=\"sign-out\"").expect("a sign-out form")..];
        assert!(
            form.contains("action=\"&#x2f;authorize&#x2f;sign-out\"")
                || form.contains("action=\"/authorize/sign-out\""),
            "{form}"
        );
        assert!(form.contains("name=\"csrf\" value=\"c\"") && form.contains("name=\"pending\" value=\"p\""), "{form}");
        assert!(form.contains("Not <strong>alice</strong>?") && form.contains("Sign out"), "{form}");
    }
}
