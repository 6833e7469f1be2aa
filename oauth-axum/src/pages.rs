//! Server-rendered pages: sign-in, consent, Connected apps, and errors shown to the user.
//! Askama escapes every value; no page needs JavaScript, and none may be framed.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauth_core::UnixTime;
use oauth_core::{ClientIdentity, ConnectedApp, ScopeDescription};

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
    /// The standalone sign-in of the Connected apps page: no client and no pending request.
    pub(crate) for_account: bool,
    /// The upstream providers offered (id, name on the button), and where their form goes.
    pub(crate) providers: &'a [(String, String)],
    pub(crate) upstream_action: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub(crate) struct Consent<'a> {
    pub(crate) client_name: &'a str,
    /// What the client is: who, if anyone, stands behind its name.
    pub(crate) about: About<'a>,
    /// The user consented before, but the consent is not replayed to this client (a public
    /// client with a loopback or private-use redirect): the page says why it asks again.
    pub(crate) asked_again: bool,
    pub(crate) redirect_host: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) scopes: &'a [ScopeDescription],
    pub(crate) user_name: &'a str,
    pub(crate) action: &'a str,
    /// Where "Not you? Sign out" posts.
    pub(crate) sign_out: &'a str,
    pub(crate) pending: &'a str,
    pub(crate) csrf: &'a str,
}

/// What a client is, as a page says it (from [`ClientIdentity`]).
pub(crate) struct About<'a> {
    /// Only the operator vouches for a name.
    pub(crate) name_verified: bool,
    /// The metadata document's host, for a metadata document client.
    pub(crate) published_by: Option<&'a str>,
}

impl<'a> About<'a> {
    pub(crate) fn new(identity: &'a ClientIdentity) -> Self {
        Self { name_verified: identity.name_verified(), published_by: identity.published_by() }
    }
}

/// The Connected apps page of a signed-in person.
#[derive(Template)]
#[template(path = "apps.html")]
pub(crate) struct Apps<'a> {
    pub(crate) user_name: &'a str,
    pub(crate) apps: Vec<AppRow<'a>>,
    pub(crate) revoke_action: &'a str,
    pub(crate) csrf: &'a str,
}

/// One connected app as the page lists it.
pub(crate) struct AppRow<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) about: About<'a>,
    pub(crate) approved: String,
    pub(crate) last_used: String,
    pub(crate) scopes: Vec<ScopeDescription>,
    pub(crate) connections: usize,
}

impl<'a> AppRow<'a> {
    pub(crate) fn new(app: &'a ConnectedApp, scopes: Vec<ScopeDescription>) -> Self {
        Self {
            client_id: app.client_id.as_str(),
            name: &app.name,
            about: About::new(&app.identity),
            approved: utc(app.approved_at),
            last_used: utc(app.last_used_at),
            scopes,
            connections: app.grants,
        }
    }
}

/// `2026-12-01 20:31 UTC`.
pub(crate) fn utc(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
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

    fn consent(identity: &ClientIdentity, scopes: &[ScopeDescription]) -> String {
        Consent {
            client_name: "Claude Code",
            about: About::new(identity),
            asked_again: false,
            redirect_host: "localhost",
            resource: "https://mcp.example.com/mcp",
            scopes,
            user_name: "alice",
            action: "/authorize/consent",
            sign_out: "/authorize/sign-out",
            pending: "p",
            csrf: "c",
        }
        .render()
        .unwrap()
    }

    fn scope(scope: &str, description: Option<&str>) -> ScopeDescription {
        ScopeDescription::new(scope, description.map(str::to_owned))
    }

    #[test]
    fn the_consent_page_says_what_the_client_is() {
        let scopes = [scope("mcp:tools", None)];
        let doc = consent(&ClientIdentity::MetadataDocument { host: "claude.ai".into() }, &scopes);
        assert!(doc.contains("metadata document from <code>claude.ai</code>"), "{doc}");
        assert!(doc.contains("unverified"), "{doc}");
        let dcr = consent(&ClientIdentity::Registered, &scopes);
        assert!(dcr.contains("registered itself on this server") && dcr.contains("unverified"), "{dcr}");
        let pre = consent(&ClientIdentity::PreRegistered, &scopes);
        assert!(pre.contains("pre-registered by the operator") && !pre.contains("unverified"), "{pre}");
    }

    #[test]
    fn scopes_are_described_in_words_with_the_raw_scope_as_fallback() {
        let page = consent(
            &ClientIdentity::Registered,
            &[scope("mcp:tools", Some("Read and add your notes")), scope("mcp:admin", None)],
        );
        assert!(page.contains("Read and add your notes"), "{page}");
        assert!(page.contains("<code class=\"scope\">mcp:admin</code>"), "{page}");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(UnixTime::from_secs(0)), "1970-01-01 00:00 UTC");
        assert_eq!(utc(UnixTime::from_secs(1_796_157_060)), "2026-12-01 20:31 UTC");
        assert_eq!(utc(UnixTime::from_secs(951_782_400)), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn the_consent_page_offers_sign_out_with_its_csrf_token() {
        let page = consent(&ClientIdentity::Registered, &[scope("mcp:tools", None)]);
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
