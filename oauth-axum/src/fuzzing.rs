//! Entry points for the fuzz targets (feature `fuzzing`): thin wrappers over the private
//! parsers of what a browser or a document host sends, and over page rendering. Not a stable
//! API.

use std::collections::HashMap;

use askama::Template as _;
use axum::http::HeaderMap;
use oauth_core::OAuthError;
use oauth_core::{ClientIdentity, ScopeDescription};

use crate::pages;
use crate::session::{self, Cookies};

/// The session cookie's value in `headers`, with the cookie names of `issuer`.
pub fn session_cookie(issuer: &str, headers: &HeaderMap) -> Option<String> {
    Cookies::for_issuer(issuer).session_value(headers)
}

/// The CSRF nonce cookie's value in `headers`, with the cookie names of `issuer`.
pub fn csrf_cookie(issuer: &str, headers: &HeaderMap) -> Option<String> {
    Cookies::for_issuer(issuer).csrf_nonce(headers)
}

/// The CSRF token a form carries for this nonce and pending request.
pub fn csrf_token(key: &[u8; 32], nonce: &str, pending: &str) -> String {
    session::csrf_token(key, nonce, pending)
}

/// Whether a submitted CSRF token is the one for this nonce and pending request.
pub fn csrf_valid(key: &[u8; 32], nonce: Option<&str>, pending: &str, submitted: &str) -> bool {
    session::csrf_valid(key, nonce, pending, submitted)
}

/// The fields `names` of a page's form POST, as the sign-in and consent handlers read them.
pub fn form_fields(headers: &HeaderMap, body: &[u8], names: &[&str]) -> Result<HashMap<String, String>, OAuthError> {
    crate::FormFields::parse(headers, body, names).map(|f| f.0)
}

/// The `max-age` the metadata-document fetcher reads from a `Cache-Control` value.
#[cfg(feature = "metadata-documents")]
pub fn max_age(value: &str) -> Option<std::time::Duration> {
    crate::metadata_documents::max_age(value)
}

/// The sign-in page for a client, with a username and an error echoed back.
pub fn sign_in_page(
    client_name: &str,
    redirect_host: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
) -> Result<String, String> {
    pages::SignIn {
        client_name,
        redirect_host,
        action: "/authorize/sign-in",
        pending: "pending-id",
        csrf,
        username,
        error,
        for_account: false,
        providers: &[],
        upstream_action: "",
    }
    .render()
    .map_err(|e| e.to_string())
}

/// The consent page of a metadata-document client published on `host`.
pub fn consent_page(
    client_name: &str,
    host: &str,
    redirect_host: &str,
    scopes: &[(String, Option<String>)],
    user_name: &str,
) -> Result<String, String> {
    let identity = ClientIdentity::MetadataDocument { host: host.to_owned() };
    let scopes: Vec<ScopeDescription> =
        scopes.iter().map(|(s, d)| ScopeDescription::new(s.as_str(), d.clone())).collect();
    pages::Consent {
        client_name,
        about: pages::About::new(&identity),
        asked_again: true,
        redirect_host,
        resource: "https://mcp.example.com/mcp",
        scopes: &scopes,
        user_name,
        action: "/authorize/consent",
        sign_out: "/authorize/sign-out",
        pending: "pending-id",
        csrf: "csrf",
    }
    .render()
    .map_err(|e| e.to_string())
}

/// The error page shown for an error that is never redirected.
pub fn error_page(title: &str, message: &str, code: &str) -> Result<String, String> {
    pages::ErrorPage { title, message, code }.render().map_err(|e| e.to_string())
}
